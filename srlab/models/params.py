"""Schema of params.yaml `model`: the SR model's parts, semantic blocks, tag prompts, tiny sizes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema


@schema
class SemanticParams:
    """The semantic guidance: which extractor makes c_sem, and the semantic blocks that read it."""

    extractor: Literal["sam2", "none"]  # none: no c_sem, the semantic blocks are skipped (ablation)
    tokens: Annotated[
        int, Field(ge=1, le=65536)
    ]  # c_sem tokens: the SAM2 map average-pooled to sqrt(tokens)^2
    block: Literal["full", "cross_only"]  # full: a whole transformer block (released code)
    init: Literal["zero", "random"]  # zero: proj_out zeroed, a pretrained UNet is unchanged at step 0
    width: Annotated[
        int, Field(ge=1, le=8192)
    ]  # c_sem channels (released code: SAM2's 256 duplicated to 512)
    sam2_config: str  # config inside the sam2 package
    sam2_checkpoint: str | None  # official {"model": state_dict} file; null = random weights
    sam2_overrides: tuple[str, ...]  # hydra overrides on sam2_config (tiny: a small Hiera)


@schema
class PromptParams:
    """The tag prompt c of Eq. 4 (the released code prompts with RAM tags of the LR image)."""

    tags: Literal["none", "file"]  # none: empty tags (offline default); file: tags_file
    tags_file: str | None  # CSV with columns image,tags or a folder of <image stem>.txt


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


@schema
class ModelParams:
    """The model (issue 10): SD2 + LR ControlNet + SAM2 semantic blocks, or its tiny twin."""

    size: Literal["tiny", "paper"]  # paper: SD2-base + sam2.1 hiera-t; tiny: TinySizes, random init
    sd2_path: str | None  # diffusers folder: SD2-base (paper) or the tiny prior; null = random tiny parts
    checkpoint: str | None  # folder with unet/ and controlnet/ in the authors' layout, loaded last
    controlnet_cond_channels: tuple[int, ...]  # LR conditioning embedding; 2^(len - 1) = VAE factor
    semantic: SemanticParams
    prompts: PromptParams
    tiny: TinySizes
