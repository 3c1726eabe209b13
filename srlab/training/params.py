"""Schema of params.yaml `train`: the SR phase (Eq. 4) and the tiny profile's prior."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema


@schema
class PriorParams:
    """The tiny profile's from-scratch prior (VAE, then UNet) on crops of the training photos (the prior
    stage, srlab.training.prior); the paper uses SD2 instead."""

    crop_size: Annotated[int, Field(ge=8)]  # random crops of the training photos (HR px)
    vae_steps: Annotated[int, Field(ge=0)]
    vae_lr: Annotated[float, Field(ge=0.0, le=1.0)]
    kl_weight: Annotated[float, Field(ge=0.0)]  # KL(posterior || N(0, 1)) weight beside the L1 reconstruction
    unet_steps: Annotated[int, Field(ge=0)]
    unet_lr: Annotated[float, Field(ge=0.0, le=1.0)]
    batch_size: Annotated[int, Field(ge=1)]
    scaling_batches: Annotated[int, Field(ge=1)]  # batches whose latent std sets vae.config.scaling_factor
    max_grad_norm: Annotated[float, Field(ge=0.0)]  # 0 disables clipping
    checkpoint_every: Annotated[int, Field(ge=0)]  # resume points (the newest is kept); 0: only at the end
    log_every: Annotated[int, Field(ge=1)]
    val_crop: Annotated[int, Field(ge=0)]  # centre crop of the held-out photos in reconstruction.json


@schema
class TrainParams:
    """ControlNet + semantic blocks (Eq. 4), on HF Accelerate."""

    steps: Annotated[int, Field(ge=1)]  # optimizer steps (paper: 90k)
    batch_size: Annotated[int, Field(ge=1)]  # per process and micro-batch
    grad_accum: Annotated[int, Field(ge=1)]
    lr: Annotated[float, Field(ge=0.0, le=1.0)]  # paper: Adam 5e-5
    adam_betas: tuple[float, float]
    weight_decay: Annotated[float, Field(ge=0.0)]  # 0: Adam as the paper (SeeSR's script uses AdamW 1e-2)
    optimizer: Literal["adamw", "adamw8bit"]  # adamw8bit: bitsandbytes on CUDA, else AdamW (said in the log)
    init_from: str | None  # SeeSR's released folder (unet/ + controlnet/) to start the SR phase from
    max_grad_norm: Annotated[float, Field(ge=0.0)]  # 0 disables clipping
    null_prompt_prob: Annotated[
        float, Field(ge=0.0, le=1.0)
    ]  # prompt dropped to "" (classifier-free guidance training)
    mixed_precision: Literal["no", "bf16", "fp16"]
    checkpoint_every: Annotated[int, Field(ge=0)]  # 0: only at the end
    keep_checkpoints: Annotated[int, Field(ge=0)]  # the newest N are kept; 0: all
    log_every: Annotated[int, Field(ge=1)]
    num_workers: Annotated[int, Field(ge=0)]  # DataLoader worker processes reading the crops
    sample_images: Annotated[int, Field(ge=0)]  # validation LR images super-resolved at every checkpoint
    val_crop: Annotated[
        int, Field(ge=0)
    ]  # HR side of the held-out pairs' centre crops that validation scores; 0: all
    prior: PriorParams | None  # tiny profile only: train a VAE + UNet prior first
