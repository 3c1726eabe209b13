"""A paper-size SRModel with random weights, for speed and memory benchmarks (no files, no downloads).

Same classes and shapes as SD2 base + the authors' checkpoint + sam2.1 hiera-t: the UNet config comes
from tests/fixtures/seesr_layout_checkpoint.json, the VAE and text encoder configs are SD2 base's.
Timing does not depend on the weights' values, so random weights measure what the real ones would.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab.config import load_params  # noqa: E402
from srlab.models.params import ModelParams  # noqa: E402
from srlab.models.prompts import NoTags  # noqa: E402
from srlab.models.semantic import build_extractor  # noqa: E402
from srlab.models.sr_model import TINY_SCHEDULER, SRModel, build_denoisers, plain_config  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "seesr_layout_checkpoint.json"
SD2_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    sample_size=768,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    scaling_factor=0.18215,
)
SD2_TEXT = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    num_hidden_layers=23,
    projection_dim=512,
    hidden_act="gelu",
    vocab_size=49408,
    max_position_embeddings=77,
)


class ZeroTokenizer:
    """77 token ids per prompt; prompt content does not change the cost of a step."""

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return torch.zeros(len(prompts), 77, dtype=torch.long)


def paper_model(device: str = "cuda", tokens: int = 4096, block: str = "full") -> SRModel:
    """The paper-size model (fp32 weights on ``device``) with the given semantic variant."""
    params = load_params(ROOT / "params.yaml", "paper", {"model": ModelParams}).model
    semantic = dataclasses.replace(params.semantic, tokens=tokens, block=block, sam2_checkpoint=None)
    params = dataclasses.replace(params, semantic=semantic)
    unet_config = plain_config(json.loads(FIXTURE.read_text())["unet_config"])
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(unet_config)
        unet, controlnet = build_denoisers(unet, params.controlnet_cond_channels, semantic)
        vae = AutoencoderKL(**SD2_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD2_TEXT))
    extractor = build_extractor(semantic, device)
    for net in (vae, text_encoder, unet, controlnet):
        net.requires_grad_(False).eval()
    return SRModel(
        params,
        vae,
        unet,
        controlnet,
        text_encoder,
        ZeroTokenizer(),
        DDPMScheduler(**TINY_SCHEDULER),
        extractor,
        NoTags(),
    )
