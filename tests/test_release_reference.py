"""srlab's release fidelity against the authors' released inference code itself.

``tests/fixtures/release_reference/<case>/released/`` holds images that the RELEASED code wrote
(Moonsofang/NTIRE-2025-SRlab at cc4e44d: its ``pipelines/pipeline_seesr.py``, ``models/``,
``utils/vaehook.py`` and ``utils/wavelet_color_fix.py`` driven through ``test_seesr_sam.py``'s per-image
flow on the CPU in fp32, diffusers 0.21.0, transformers 4.37.2, Pillow 10.4.0) from the inputs beside
them, on a small random model in the authors' format. ``scripts/release_reference/`` has the harness
and the model builder (README there). The model is rebuilt here from the same seeds with srlab's code;
the test then runs ``SRPipeline(fidelity="release")`` with the same seed and settings and compares pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_all
from PIL import Image

from srlab import config, io
from srlab.models.params import ModelParams
from srlab.models.semantic import Sam2Extractor, load_sam2
from srlab.models.sr_model import SRModel, build_sr_model
from srlab.sampling.pipeline import SRPipeline
from srlab.sampling.upscale import RandomStreams

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "release_reference"
SEED = 2025  # scripts/release_reference/make_checkpoint.py: model seed; SAM2 seed + 1, ControlNet re-init + 2
MODEL = {  # the tiny profile's model with a VAE factor of 8 (the release hard-codes 8) and 32 norm groups
    "size": "tiny", "sd2_path": None, "checkpoint": None, "controlnet_cond_channels": [16, 32, 32, 64],
    "semantic": {"init": "random", "sam2_checkpoint": None}, "prompts": {"tags": "none", "tags_file": None},
    "tiny": {"unet_channels": [32, 64], "unet_heads": [2, 4], "layers_per_block": 2, "norm_groups": 32,
             "vae_channels": [32, 32, 32, 32], "latent_channels": 4, "vae_scaling_factor": 0.5},
}  # fmt: skip
PROMPT = "clean, high-resolution, 8k"  # the script's default added prompt
CASES = {  # scripts/release_reference/run_cases.sh; all: tags "", prompt "", 4 DDPM steps, process size 128
    "x4_lr": dict(seed=123, upscale=4, start_point="lr", guidance_scale=0.9, added_prompt=PROMPT),
    "tiled_vae": dict(seed=5, upscale=1, start_point="lr", guidance_scale=8.5, added_prompt=PROMPT,
                      latent_tile=12, latent_overlap=4, vae_encoder_tile=64, vae_decoder_tile=8),
}  # fmt: skip


def reference_model() -> SRModel:
    raw = config.overlay(config.resolve_profile(config.read_yaml(ROOT / "params.yaml"))["model"], MODEL)
    params = config.validate(ModelParams, raw, "test", "model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED + 1)
        sam = load_sam2(params.semantic.sam2_config, None, params.semantic.sam2_overrides)
    model = build_sr_model(params, "cpu", generator=torch.Generator().manual_seed(SEED))
    model = dataclasses.replace(
        model, semantic=Sam2Extractor(sam, params.semantic.tokens, params.semantic.width)
    )
    cn = model.controlnet  # from_unet zero-initialises these; random so that the LR image matters
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(SEED + 2)
        for m in (cn.controlnet_cond_embedding.conv_out, *cn.controlnet_down_blocks, cn.controlnet_mid_block):
            m.reset_parameters()
        emb = cn.controlnet_cond_embedding
        for conv in (emb.conv_in, *emb.blocks, emb.conv_out):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        emb.conv_out.weight.mul_(4.0)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_release_fidelity_reproduces_the_released_codes_images(case: str) -> None:
    """Every pixel within one 8-bit level of the released code's, but for rare rounding flips (an
    8-bit rounding of the decoded image that lands the other way, which AdaIN's gain then widens to
    2-3 levels): measured at most 3 levels on 1 of 196,608 values (x4_lr), 1 level (tiled_vae)."""
    pipe = SRPipeline(reference_model(), fidelity="release")
    kw = dict(CASES[case])
    seed = kw.pop("seed")
    infer = load_all(ROOT / "params.yaml").infer
    # the release preset as the released script runs it: not the tiny profile's sampling knobs
    settings = dataclasses.replace(infer, kind_overrides={}).sampler("wild", preset="release")
    settings = dataclasses.replace(settings, steps=4, process_size=128, user_prompt="", **kw)
    streams = RandomStreams(seed, torch.device("cpu"), "release")
    values, off = 0, 0
    for path in sorted((FIXTURES / case / "inputs").glob("*.png"), key=str):  # the script's order
        generator, posterior = streams.for_image(path.stem)
        out = pipe(io.read_image(path), settings, generator, name=path.stem, posterior_generator=posterior)
        ours = io.to_uint8(out).astype(int)
        released = np.asarray(Image.open(FIXTURES / case / "released" / path.name).convert("RGB")).astype(int)
        assert ours.shape == released.shape, path.name
        diff = np.abs(ours - released)
        assert diff.max() <= 3, f"{path.name}: {diff.max()} levels off"
        values, off = values + diff.size, off + int((diff > 1).sum())
    assert off <= max(2, values // 10_000), f"{off} of {values} values more than one level off"
