from __future__ import annotations

import pytest
import torch

from srlab.sampling import sampler as sampling

SD2_SCHEDULER = {  # scheduler/scheduler_config.json of stable-diffusion-2-base
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def test_working_size_follows_the_released_rules() -> None:
    # big enough: just x4 and multiple of 8
    assert sampling.working_size(130, 200, 4, 512) == (520, 800, 1.0)
    # short side below process_size / upscale (128): enlarged first
    h, w, pre = sampling.working_size(77, 123, 4, 512)
    assert pre == pytest.approx(128 / 77) and h % 8 == 0 and w % 8 == 0 and h == 512
    # wild (x1): short side brought to 512
    assert sampling.working_size(300, 400, 1, 512)[:2] == (512, 680)
    with pytest.raises(ValueError, match="must be positive"):
        sampling.working_size(0, 10, 4, 512)


def test_condition_and_restore_sizes() -> None:
    lr = torch.rand(1, 3, 77, 123)
    cond = sampling.prepare_condition(lr, 4, 512)
    assert cond.shape[-2:] == sampling.working_size(77, 123, 4, 512)[:2]
    assert cond.min() >= 0 and cond.max() <= 1
    out = sampling.restore_size(cond, 77 * 4, 123 * 4)
    assert out.shape == (1, 3, 308, 492)


def test_guidance_scale_one_is_the_conditional_branch() -> None:
    uncond, cond = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(sampling.combine_guidance(uncond, cond, 1.0), cond)
    assert not sampling.uses_guidance(0.9) and not sampling.uses_guidance(1.0) and sampling.uses_guidance(8.5)


def test_prompt_matches_released_format() -> None:
    assert sampling.build_prompt("", "", "clean, high-resolution, 8k") == ", ,clean, high-resolution, 8k"
    assert sampling.build_prompt("dog, grass", "", "") == "dog, grass, ,"


@pytest.mark.parametrize("name", sorted(sampling.SCHEDULERS))
def test_schedulers_build_from_sd2_config(name: str) -> None:
    scheduler = sampling.make_scheduler(name, SD2_SCHEDULER)
    scheduler.set_timesteps(20)
    assert len(scheduler.timesteps) == 20
    assert scheduler.config.prediction_type == "epsilon"
    with pytest.raises(ValueError, match="unknown scheduler"):
        sampling.make_scheduler("euler-magic", SD2_SCHEDULER)
