"""Schema of params.yaml `infer`: the sampler settings per kind of evaluation set (paper Table 1)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema


@schema
class SamplerParams:
    """How to sample one kind of evaluation set (Table 1); see srlab.sampling.pipeline."""

    start_point: Literal["noise", "lr"]  # lr: the LR latent noised to start_steps (LRE strategy)
    start_steps: Annotated[int, Field(ge=0, le=999)]  # the lr start's noise level; later steps are skipped
    guidance_scale: Annotated[float, Field(ge=0.0, le=50.0)]  # CFG only when > 1 (released rule)
    user_prompt: str
    added_prompt: str  # appended to the tag prompt (wild: a positive prompt)
    negative_prompt: str  # the unconditional branch of CFG
    scheduler: Literal["ddpm", "ddim", "dpmpp"]
    steps: Annotated[int, Field(ge=1, le=1000)]
    upscale: Annotated[int, Field(ge=1, le=8)]  # 4: synthetic track, 1: wild (same size out)
    process_size: Annotated[int, Field(ge=8)]  # LR enlarged first if short side * upscale is below this
    conditioning_scale: Annotated[float, Field(ge=0.0, le=10.0)]
    color_fix: Literal["none", "adain", "wavelet"]  # released default: adain
    latent_tile: Annotated[int, Field(ge=4)]  # denoiser tile and overlap in latent px (released: 96 / 32)
    latent_overlap: Annotated[int, Field(ge=0)]
    vae_encoder_tile: Annotated[int, Field(ge=8)]  # image px
    vae_decoder_tile: Annotated[int, Field(ge=4)]  # latent px


@schema
class InferParams:
    """The infer stage: sampler settings per kind of evaluation set (the eval set name's suffix)."""

    settings: dict[str, SamplerParams]  # synthetic / wild -> settings (paper Table 1)
    device: Literal["auto", "cpu", "cuda"]
    dtype: Literal["auto", "float32", "bfloat16", "float16"]  # auto: bf16 on CUDA, fp32 on CPU
