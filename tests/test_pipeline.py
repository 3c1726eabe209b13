from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import load_all

from srlab.models import sr_model as model
from srlab.sampling import sampler as sampling
from srlab.sampling.params import SamplerParams
from srlab.sampling.pipeline import SRPipeline

ROOT = Path(__file__).resolve().parents[1]
FAST = SamplerParams(steps=2, process_size=32, latent_tile=64, latent_overlap=16, color_fix="none")


@pytest.fixture(scope="module")
def pipe() -> SRPipeline:
    params = load_all(ROOT / "params.yaml")
    return SRPipeline(model.build_sr_model(params.model, generator=torch.Generator().manual_seed(0)))


def lr_image(h: int = 10, w: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def run(pipe: SRPipeline, lr: torch.Tensor, settings: SamplerParams, seed: int = 0) -> torch.Tensor:
    return pipe(lr, settings, torch.Generator().manual_seed(seed))


def test_same_seed_same_output_other_seed_differs(pipe: SRPipeline) -> None:
    settings = dataclasses.replace(FAST, start_point="noise")
    a, b = run(pipe, lr_image(), settings), run(pipe, lr_image(), settings)
    assert torch.equal(a, b)
    assert not torch.equal(a, run(pipe, lr_image(), settings, seed=1))


@pytest.mark.parametrize(("size", "upscale"), [((77, 123), 1), ((31, 23), 4), ((9, 14), 4)])
def test_output_is_exactly_upscale_times_input(pipe: SRPipeline, size: tuple[int, int], upscale: int) -> None:
    settings = dataclasses.replace(FAST, upscale=upscale, steps=1)
    out = run(pipe, lr_image(*size), settings)
    assert out.shape == (3, size[0] * upscale, size[1] * upscale)
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1


def test_one_tile_equals_untiled_and_many_tiles_stay_close(pipe: SRPipeline) -> None:
    lr = lr_image(24, 30)  # working size 96x120, latent 24x30 (tiny VAE factor 4)
    untiled = run(pipe, lr, dataclasses.replace(FAST, latent_tile=64, latent_overlap=8))
    one_tile = run(pipe, lr, dataclasses.replace(FAST, latent_tile=30, latent_overlap=8))
    torch.testing.assert_close(one_tile, untiled)
    tiled = run(pipe, lr, dataclasses.replace(FAST, latent_tile=16, latent_overlap=8))
    assert (tiled - untiled).abs().mean() < 0.05


def test_lr_start_at_a_late_timestep_stays_at_the_lr_latent(pipe: SRPipeline) -> None:
    """start_steps=0 skips every denoising step: the output is the decoded LR latent noised to t=0."""
    lr = lr_image(16, 16)
    settings = dataclasses.replace(FAST, start_point="lr", start_steps=0, steps=50)
    out = run(pipe, lr, settings)
    # the same draws in the same order: noise first, then the VAE posterior sample
    gen = torch.Generator().manual_seed(0)
    cond = sampling.prepare_condition(lr[None], settings.upscale, settings.process_size)
    noise = torch.randn(1, 4, 16, 16, generator=gen)
    latent = pipe.encode(cond, settings.vae_encoder_tile, gen)
    scheduler = sampling.make_scheduler("ddpm", pipe.model.scheduler.config)
    noised = scheduler.add_noise(latent, noise, torch.tensor([0]))
    torch.testing.assert_close(out, pipe.decode(noised, settings)[0], atol=1e-5, rtol=0)
    clean = pipe.decode(latent, settings)[0]
    late = (out - clean).abs().mean()
    assert late < 0.02  # t=0 noise barely moves the LR latent
    noise_start = run(pipe, lr, dataclasses.replace(settings, start_point="noise", start_steps=999))
    assert (noise_start - clean).abs().mean() > 3 * late


def test_guidance_scale_one_equals_the_conditional_branch(pipe: SRPipeline) -> None:
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=g)
    cond = torch.rand(1, 3, 32, 32, generator=g)
    embeds = pipe.model.encode_prompt(["a negative prompt", "a positive prompt"])
    c_sem = pipe.model.semantic_tokens(cond)
    t = torch.tensor(500)
    settings = dataclasses.replace(FAST, guidance_scale=1.0)
    guided = pipe.denoise(latents, t, embeds, cond, c_sem, settings, guided=True)
    conditional = pipe.denoise(latents, t, embeds[1:], cond, c_sem, settings, guided=False)
    torch.testing.assert_close(guided, conditional, atol=1e-5, rtol=1e-5)
    stronger = pipe.denoise(
        latents, t, embeds, cond, c_sem, dataclasses.replace(settings, guidance_scale=3.0), True
    )
    assert not torch.allclose(stronger, conditional, atol=1e-4)


def test_bad_inputs_are_refused_with_the_fix(pipe: SRPipeline) -> None:
    with pytest.raises(ValueError, match=r"\(3, h, w\)"):
        run(pipe, torch.rand(1, 3, 8, 8), FAST)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        run(pipe, lr_image() * 3, FAST)
    with pytest.raises(ValueError, match="latent_overlap"):
        run(pipe, lr_image(), dataclasses.replace(FAST, latent_overlap=64))
