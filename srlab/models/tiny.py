"""The tiny profile's parts: SD2's layouts at small sizes, its noise schedule, where its prior lives.

Apart from srlab.models.sr_model so the prior stage (srlab.training.prior), which builds only these,
does not depend on the SR model's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from diffusers import AutoencoderKL
from pydantic import Field

from srlab.config import schema

PRIOR_DIR = "prior"  # the prior stage's folder in a build folder, beside train/ (srlab.training.prior)


@schema
class TinySizes:
    """Sizes of the tiny profile's models (same classes as the paper's, small and random)."""

    unet_channels: tuple[int, ...]  # UNet block_out_channels; the last level has no attention
    unet_heads: tuple[int, ...]  # attention heads per level (diffusers' `attention_head_dim`)
    layers_per_block: Annotated[int, Field(ge=1, le=4)]
    norm_groups: Annotated[int, Field(ge=1, le=64)]  # GroupNorm groups in UNet and VAE
    text_width: Annotated[
        int, Field(ge=8, le=4096)
    ]  # CLIP text encoder hidden size (= UNet cross_attention_dim)
    text_layers: Annotated[int, Field(ge=1, le=48)]
    text_heads: Annotated[int, Field(ge=1, le=64)]
    vae_channels: tuple[int, ...]  # VAE block_out_channels; downscale factor 2^(len - 1)
    latent_channels: Annotated[int, Field(ge=1, le=64)]
    vae_scaling_factor: Annotated[
        float, Field(ge=0.0)
    ]  # latent = scaling_factor * VAE mean (refit after the prior)


# SD2-base's scheduler_config.json, so the tiny prior is trained on the same noise schedule.
TINY_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
    steps_offset=1,
)


def prior_model_dir(build_dir: str | Path) -> Path:
    """The tiny prior's SD2-like folder (vae/, unet/, text_encoder/, scheduler/) in a build folder."""
    return Path(build_dir) / PRIOR_DIR / "model"


def tiny_unet_config(sizes: TinySizes) -> dict[str, Any]:
    """SD2's UNet layout at tiny sizes: attention at every level but the last, linear projections."""
    n = len(sizes.unet_channels)
    return dict(
        in_channels=sizes.latent_channels,
        out_channels=sizes.latent_channels,
        down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
        block_out_channels=list(sizes.unet_channels),
        layers_per_block=sizes.layers_per_block,
        attention_head_dim=list(sizes.unet_heads),  # diffusers' SD2 naming: the number of heads
        cross_attention_dim=sizes.text_width,
        norm_num_groups=sizes.norm_groups,
        use_linear_projection=True,
    )


def tiny_vae(sizes: TinySizes) -> AutoencoderKL:
    n = len(sizes.vae_channels)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(sizes.vae_channels),
        layers_per_block=sizes.layers_per_block,
        latent_channels=sizes.latent_channels,
        norm_num_groups=sizes.norm_groups,
        scaling_factor=sizes.vae_scaling_factor,
    )
