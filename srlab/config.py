"""Typed, validated view of ``params.yaml``.

``params.yaml`` is the single source of every number. Each top-level section (``base`` plus one per
DVC stage) loads into a frozen dataclass; unknown keys, wrong types and out-of-range values fail at
load time with the file and the dotted key in the message, so a typo never silently falls back to a
default.

Profiles: the sections hold the embedded ``tiny`` profile. The top-level ``paper`` section holds only
the values that differ in the paper's configuration, with the same nesting; ``base.profile: paper``
overlays it. Switch with ``dvc exp run -S base.profile=paper`` (or edit the file). The ``smoke``
section does the same for the test suite: the tiny profile cut to a few steps and images, so nbval
runs every notebook in minutes (notebooks take a ``profile`` parameter; tests pass ``smoke``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

PARAMS_FILE = "params.yaml"
PROFILES = ("tiny", "paper", "smoke")

T = TypeVar("T")


class ConfigError(ValueError):
    """A value in params.yaml is missing, unknown, mistyped or out of range."""


def _range(lo: float | None = None, hi: float | None = None, **kw: Any) -> Any:
    """A dataclass field whose value must lie in the closed interval [lo, hi]."""
    return field(metadata={"range": (lo, hi)}, **kw)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseParams:
    """Settings shared by every stage."""

    seed: int = _range(0)
    profile: Literal["tiny", "paper", "smoke"] = "tiny"


@dataclass(frozen=True)
class LoaderParams:
    """The training Dataset (srlab.data.TrainPairs): random crop + flip of the pairs in build/degrade."""

    crop_size: int = _range(8, 4096)  # HR side of the random training crop (LR crop: crop_size / scale)
    hflip_prob: float = _range(0.0, 1.0)  # P(horizontal flip), HR and LR together
    lr_upsample: Literal["bicubic", "bilinear", "nearest"]  # LR is returned at HR size (SeeSR's ControlNet)


@dataclass(frozen=True)
class DataParams:
    """Where the raw images live (folders of PNG/JPEG, relative to the project root)."""

    hr_train_dir: str  # HR photos for training (paper: LSDIR)
    eval_sets: dict[str, str]  # name -> folder of HR images, degraded into paired evaluation sets
    val_fraction: float = _range(0.0, 0.5)  # share of hr_train_dir held out for validation
    paired_dir: str | None  # official paired training set: <dir>/hr and <dir>/lr, same file names
    paired_holdout: int = _range(0)  # no paired_dir: this many HR photos stand in for it (synthetic LR)
    on_small_image: Literal["error", "skip"]  # an HR photo smaller than a training crop
    loader: LoaderParams


# --- degrade: every operator setting, the pipelines (ordered lists of settings), the training set ---
# A [lo, hi] range is drawn uniformly. The metadata below is checked by _check_fields (range ends,
# odd kernel sizes, probabilities summing to 1); `build` checks keys, types and scalar ranges.

KernelType = Literal["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
ResizeMode = Literal["area", "bilinear", "bicubic", "nearest"]


def _pair(lo: float | None = None, hi: float | None = None, odd: bool = False, one: bool = False) -> Any:
    """A [lo, hi] range field: lo <= hi, both within [lo, hi] bounds; odd ints; `one`: lo <= 1 <= hi."""
    return field(metadata={"pair": (lo, hi), "odd": odd, "one": one})


def _odd(lo: int, hi: int) -> Any:
    """An odd integer in [lo, hi] (kernel sizes)."""
    return field(metadata={"range": (lo, hi), "odd": True})


def _probs() -> Any:
    """Probabilities (a list, or a mapping to them) that are >= 0 and sum to 1."""
    return field(metadata={"probs": True})


def _check_fields(obj: Any, key: str) -> None:
    """Check the `_pair` / `_odd` / `_probs` metadata of a params dataclass; errors name ``key.field``."""
    for f in dataclasses.fields(obj):
        value, where = getattr(obj, f.name), f"{PARAMS_FILE}: {key}.{f.name} = {getattr(obj, f.name)!r}"
        if "pair" in f.metadata:
            lo, hi = f.metadata["pair"]
            if value[0] > value[1]:
                raise ConfigError(f"{where}: a range [lo, hi] needs lo <= hi")
            if (lo is not None and value[0] < lo) or (hi is not None and value[1] > hi):
                raise ConfigError(f"{where}: both ends must lie in [{lo}, {hi}]")
            if f.metadata["one"] and not value[0] <= 1 <= value[1]:
                raise ConfigError(
                    f"{where}: the range must contain 1 (half the draws lie below 1, half above)"
                )
        values = value if isinstance(value, tuple | list) else [value]
        if f.metadata.get("odd") and any(v % 2 == 0 for v in values):
            raise ConfigError(f"{where}: kernel sizes must be odd")
        if f.metadata.get("probs"):
            probs = list(value.values()) if isinstance(value, Mapping) else list(value)
            if not probs or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
                raise ConfigError(f"{where}: probabilities must be >= 0 and sum to 1")


@dataclass(frozen=True)
class UsmOp:
    """Unsharp masking. Real-ESRGAN sharpens the HR before degrading it; phone ISPs and video apps
    over-sharpen UGC, which leaves halos along edges (weight > 1, small sigma, threshold 0)."""

    op: Literal["usm"]
    weight: tuple[float, float] = _pair(0.0, 10.0)  # gain on the residual img - blur
    sigma: tuple[float, float] = _pair(0.1, 50.0)  # Gaussian blur sigma, px
    kernel_size: int = _odd(3, 201)  # Gaussian support, px
    threshold: float = _range(0.0, 255.0)  # residuals below this (0-255 levels) stay unsharpened
    prob: float = _range(0.0, 1.0, default=1.0)


@dataclass(frozen=True)
class BlurOp:
    """Blur with a random kernel: Gaussian (iso/aniso), generalized Gaussian, plateau, or sinc."""

    op: Literal["blur"]
    kernel_size: tuple[int, int] = _pair(1, 101, odd=True)  # odd sizes drawn uniformly in [lo, hi]
    types: dict[KernelType, float] = _probs()  # noqa: RUF009  kernel family -> probability
    sigma: tuple[float, float] = _pair(0.01, 50.0)  # px, each principal axis
    rotation: tuple[float, float] = _pair(-1.0, 1.0)  # x pi rad, anisotropic kernels
    betag: tuple[float, float] = _pair(0.01, 20.0, one=True)  # generalized Gaussian shape
    betap: tuple[float, float] = _pair(0.01, 20.0, one=True)  # plateau shape
    sinc_prob: float = _range(0.0, 1.0)  # P(a sinc (ringing) kernel instead of the families above)
    sinc_cutoff: tuple[float, float] = _pair(0.01, 1.0)  # x pi rad, kernels >= sinc_small_size
    sinc_cutoff_small: tuple[float, float] = _pair(0.01, 1.0)  # x pi rad, smaller kernels
    sinc_small_size: int = _range(1, 101)
    prob: float = _range(0.0, 1.0, default=1.0)


@dataclass(frozen=True)
class SincOp:
    """Sinc (ideal circular low-pass) filter: ringing and overshoot, as from a sharp resampler."""

    op: Literal["sinc"]
    kernel_size: tuple[int, int] = _pair(1, 101, odd=True)
    cutoff: tuple[float, float] = _pair(0.01, 1.0)  # x pi rad
    prob: float = _range(0.0, 1.0, default=1.0)  # otherwise the identity


@dataclass(frozen=True)
class ResizeOp:
    """Resize by a random factor with a random interpolation mode (one draw per batch)."""

    op: Literal["resize"]
    updown: tuple[float, float, float] = _probs()  # P(up), P(down), P(keep)
    scale: tuple[float, float] = _pair(0.01, 16.0, one=True)  # up: factor from [1, hi]; down: [lo, 1]
    modes: tuple[ResizeMode, ...]  # drawn uniformly
    relative_to: Literal["input", "target"]  # factor times the current size, or the pipeline's output size
    antialias: bool = False  # low-pass before bilinear/bicubic downsampling (as PIL); Real-ESRGAN: off


@dataclass(frozen=True)
class NoiseOp:
    """Additive Gaussian noise or Poisson (shot) noise, in color or gray (same in all channels)."""

    op: Literal["noise"]
    gaussian_prob: float = _range(0.0, 1.0)  # otherwise Poisson
    sigma: tuple[float, float] = _pair(0.0, 255.0)  # Gaussian std, 0-255 levels
    poisson_scale: tuple[float, float] = _pair(0.0, 100.0)  # multiplies the Poisson noise
    gray_prob: float = _range(0.0, 1.0)
    prob: float = _range(0.0, 1.0, default=1.0)


@dataclass(frozen=True)
class JpegOp:
    """JPEG compression by libjpeg (torchvision), 4:2:0 chroma."""

    op: Literal["jpeg"]
    quality: tuple[int, int] = _pair(1, 100)  # libjpeg quality, integers drawn uniformly
    prob: float = _range(0.0, 1.0, default=1.0)


@dataclass(frozen=True)
class Chroma420Op:
    """4:2:0 chroma subsampling, as every consumer video codec stores colour: colour bleeds at edges."""

    op: Literal["chroma420"]
    upsample: tuple[Literal["nearest", "bilinear"], ...]  # the decoder's chroma upsampling, drawn uniformly
    prob: float = _range(0.0, 1.0, default=1.0)


@dataclass(frozen=True)
class CodecOp:
    """Video-codec block artifacts: block-DCT quantization with H.264's QP law, per-macroblock QP."""

    op: Literal["codec"]
    qp: tuple[int, int] = _pair(0, 51)  # H.264/HEVC QP; quantizer step 2^((qp - 4) / 6) levels
    qp_jitter: int = _range(0, 51)  # per-macroblock QP offset from [-j, j] (adaptive quantization)
    block: int = _range(2, 64)  # transform size, px
    macroblock: int = _range(4, 256)  # QP granularity, px; a multiple of 2 x block (chroma: half)
    chroma_qp_offset: int = _range(-12, 12)
    rounding: float = _range(0.0, 0.5)  # dead-zone rounding offset (x264/JM: 1/3 intra, 1/6 inter)
    prob: float = _range(0.0, 1.0, default=1.0)


@dataclass(frozen=True)
class LowLightOp:
    """Low light: a dark capture with Poisson-Gaussian sensor noise, stored, then gained back."""

    op: Literal["lowlight"]
    exposure: tuple[float, float] = _pair(0.001, 1.0)  # linear-light gain of the capture; 1/exposure back
    shot: tuple[float, float] = _pair(0.0, 1.0)  # signal-dependent noise variance per unit signal (linear)
    read: tuple[float, float] = _pair(0.0, 1.0)  # signal-independent noise std (linear)
    bits: int = _range(0, 16)  # the dark frame is stored with this many bits before the gain; 0: not
    prob: float = _range(0.0, 1.0, default=1.0)


@dataclass(frozen=True)
class ChoiceOp:
    """One of several orders of ops (names in degrade.ops), drawn per batch."""

    op: Literal["choice"]
    probs: tuple[float, ...] = _probs()
    branches: tuple[tuple[str, ...], ...]


OP_TYPES: dict[str, type] = {
    "usm": UsmOp,
    "blur": BlurOp,
    "sinc": SincOp,
    "resize": ResizeOp,
    "noise": NoiseOp,
    "jpeg": JpegOp,
    "chroma420": Chroma420Op,
    "codec": CodecOp,
    "lowlight": LowLightOp,
    "choice": ChoiceOp,
}
OpParams = (
    UsmOp | BlurOp | SincOp | ResizeOp | NoiseOp | JpegOp | Chroma420Op | CodecOp | LowLightOp | ChoiceOp
)


@dataclass(frozen=True)
class PipelineParams:
    """A degradation pipeline: names from degrade.ops, applied in this order."""

    downsample: bool  # True: the output is 1/scale of the input (synthetic); False: same size (wild)
    order: tuple[str, ...]


@dataclass(frozen=True)
class TrainSetParams:
    """The training set of paper 4.1: three components and their mix."""

    crop_size: int = _range(8, 8192)  # HR crop side written to train/ (paper: 512)
    hr_crops_per_image: int = _range(1)  # component hr: random crops per HR photo
    bicubic_prob: float = _range(0.0, 1.0)  # component hr: P(LR = bicubic), else hr_pipeline
    hr_pipeline: str
    paired_overlap: int = _range(0)  # component paired: px shared by neighbouring crops
    paired_pipeline: str  # makes the stand-in paired set when data.paired_dir is null
    wild_pipeline: str  # component wild: the paired set's HR crops through this pipeline
    mix: dict[Literal["hr", "paired", "wild"], float] = _probs()  # noqa: RUF009 share of draws per component


@dataclass(frozen=True)
class DegradeParams:
    """Degradation operators and pipelines, the training set of paper 4.1 and the evaluation sets."""

    scale: int = _range(1, 8)  # HR side / LR side of the synthetic set
    hr_multiple: int = _range(1, 512)  # HR eval images are center-cropped so both sides divide by this
    eval_max_side: int = _range(0)  # HR eval images are center-cropped to at most this side; 0: whole
    eval_pipelines: tuple[str, ...]  # each eval set is written once per pipeline: eval/<set>_<pipeline>
    train: TrainSetParams
    ops: dict[str, Any]  # name -> operator settings; parsed into OP_TYPES[settings["op"]]
    pipelines: dict[str, PipelineParams]

    def __post_init__(self) -> None:
        ops = {name: _parse_op(name, raw) for name, raw in self.ops.items()}
        object.__setattr__(self, "ops", ops)
        _check_fields(self.train, "degrade.train")
        for name, pipe in self.pipelines.items():
            self._check_names(pipe.order, f"degrade.pipelines.{name}.order")
        for name, op in ops.items():
            if isinstance(op, ChoiceOp):
                if len(op.branches) != len(op.probs):
                    raise ConfigError(f"{PARAMS_FILE}: degrade.ops.{name}: one probability per branch")
                for branch in op.branches:
                    self._check_names(branch, f"degrade.ops.{name}.branches", nested=True)
        used = {
            "degrade.eval_pipelines": self.eval_pipelines,
            "degrade.train": (self.train.hr_pipeline, self.train.paired_pipeline, self.train.wild_pipeline),
        }
        for key, names in used.items():
            for name in names:
                if name not in self.pipelines:
                    known = ", ".join(self.pipelines)
                    raise ConfigError(f"{PARAMS_FILE}: {key}: unknown pipeline {name!r}; known: {known}")
        t = self.train
        if t.crop_size % self.scale or t.paired_overlap % self.scale or t.paired_overlap >= t.crop_size:
            raise ConfigError(
                f"{PARAMS_FILE}: degrade.train: crop_size {t.crop_size} and paired_overlap {t.paired_overlap}"
                f" must be multiples of degrade.scale {self.scale}, with paired_overlap < crop_size"
            )

    def _check_names(self, names: tuple[str, ...], key: str, nested: bool = False) -> None:
        for name in names:
            if name not in self.ops:
                raise ConfigError(f"{PARAMS_FILE}: {key}: unknown op {name!r}; known: {', '.join(self.ops)}")
            if nested and isinstance(self.ops[name], ChoiceOp):
                raise ConfigError(f"{PARAMS_FILE}: {key}: a choice inside a choice is not supported")


def _parse_op(name: str, raw: Any) -> OpParams:
    """One entry of degrade.ops -> its dataclass, chosen by its `op` key."""
    if not isinstance(raw, Mapping):
        return raw  # already parsed (dataclasses.replace re-runs __post_init__)
    kind = raw.get("op")
    if kind not in OP_TYPES:
        raise ConfigError(
            f"{PARAMS_FILE}: degrade.ops.{name}.op: expected one of {list(OP_TYPES)}, got {kind!r}"
        )
    op = build(OP_TYPES[kind], raw, PARAMS_FILE, f"degrade.ops.{name}")
    _check_fields(op, f"degrade.ops.{name}")
    if isinstance(op, CodecOp) and op.macroblock % (2 * op.block):
        raise ConfigError(f"{PARAMS_FILE}: degrade.ops.{name}: macroblock must be a multiple of 2 x block")
    if isinstance(op, ResizeOp | Chroma420Op) and not (op.modes if isinstance(op, ResizeOp) else op.upsample):
        raise ConfigError(f"{PARAMS_FILE}: degrade.ops.{name}: list at least one interpolation mode")
    return op


# Metric names of srlab.metrics (its table METRICS; a test keeps the two in step).
NoRefMetric = Literal["musiq", "maniqa", "clipiqa", "nrqm", "hyperiqa", "piqe"]
MetricName = Literal[
    "psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y", "lpips",
    "musiq", "maniqa", "clipiqa", "nrqm", "hyperiqa", "piqe",
]  # fmt: skip


@dataclass(frozen=True)
class EvaluateParams:
    """Measuring SR outputs (srlab.metrics): which metrics on which kind of set, and their protocol."""

    paired_metrics: list[MetricName]  # sets with HR (synthetic): full-reference, no-reference allowed too
    wild_metrics: list[NoRefMetric]  # sets without HR (wild): no-reference only
    crop_border: int = _range(0, 64)  # pixels cut from every edge before PSNR/SSIM (not LPIPS, NR metrics)
    y_color_space: Literal["yiq", "ycbcr"]  # Y of psnr_y/ssim_y: yiq = pyiqa default, ycbcr = BT.601
    score_psnr: Literal["psnr_rgb", "psnr_y"]  # the PSNR that enters the challenge scores
    score_ssim: Literal["ssim_y", "ssim_rgb"]  # the SSIM that enters the challenge scores
    torch_hub_dir: str | None  # learned-metric weights: pyiqa/, checkpoints/, clip/ in it; None = torch's
    device: Literal["auto", "cpu", "cuda"]  # learned metrics; auto = cuda when available
    other_methods: dict[str, str]  # method name -> folder of its outputs, one subfolder per eval set


@dataclass(frozen=True)
class ReportParams:
    """The report stage (srlab.report, srlab.report_doc): comparison grids, curves, the HTML file."""

    grid_images: int = _range(0, 1000)  # images per eval set in the comparison grids (first by name)
    crop_size: int = _range(4, 4096)  # zoomed crop side, output px, where the reference has most detail
    panel_inches: float = _range(0.5, 20.0)  # width of one grid panel in the figure, inches
    dpi: int = _range(30, 600)  # figure resolution
    loss_window: int = _range(1)  # training steps in the moving average drawn over the raw loss
    max_samples: int = _range(0, 1000)  # training / inference sample images shown (last by name)
    html_images: Literal["embed", "link"]  # embed: report.html is one self-contained file; link: figures/


@dataclass(frozen=True)
class SemanticParams:
    """The semantic guidance: which extractor makes c_sem, and the semantic blocks that read it."""

    extractor: Literal["sam2", "none"]  # none: no c_sem, the semantic blocks are skipped (ablation)
    tokens: int = _range(1, 65536)  # c_sem tokens: the SAM2 map average-pooled to sqrt(tokens)^2
    block: Literal["full", "cross_only"]  # full: a whole transformer block (released code)
    init: Literal["zero", "random"]  # zero: proj_out zeroed, a pretrained UNet is unchanged at step 0
    width: int = _range(1, 8192)  # c_sem channels (released code: SAM2's 256 duplicated to 512)
    sam2_config: str  # config inside the sam2 package
    sam2_checkpoint: str | None  # official {"model": state_dict} file; null = random weights
    sam2_overrides: tuple[str, ...]  # hydra overrides on sam2_config (tiny: a small Hiera)


@dataclass(frozen=True)
class PromptParams:
    """The tag prompt c of Eq. 4 (the released code prompts with RAM tags of the LR image)."""

    tags: Literal["none", "file"]  # none: empty tags (offline default); file: tags_file
    tags_file: str | None  # CSV with columns image,tags or a folder of <image stem>.txt


@dataclass(frozen=True)
class TinySizes:
    """Sizes of the tiny profile's models (same classes as the paper's, small and random)."""

    unet_channels: tuple[int, ...]  # UNet block_out_channels; the last level has no attention
    unet_heads: tuple[int, ...]  # attention heads per level (diffusers' `attention_head_dim`)
    layers_per_block: int = _range(1, 4)
    norm_groups: int = _range(1, 64)  # GroupNorm groups in UNet and VAE
    text_width: int = _range(8, 4096)  # CLIP text encoder hidden size (= UNet cross_attention_dim)
    text_layers: int = _range(1, 48)
    text_heads: int = _range(1, 64)
    vae_channels: tuple[int, ...]  # VAE block_out_channels; downscale factor 2^(len - 1)
    latent_channels: int = _range(1, 64)
    vae_scaling_factor: float = _range(0.0)  # latent = scaling_factor * VAE mean (refit after the prior)


@dataclass(frozen=True)
class ModelParams:
    """The model (issue 10): SD2 + LR ControlNet + SAM2 semantic blocks, or its tiny twin."""

    size: Literal["tiny", "paper"]  # paper: SD2-base + sam2.1 hiera-t; tiny: TinySizes, random init
    sd2_path: str | None  # diffusers folder: SD2-base (paper) or the tiny prior; null = random tiny parts
    checkpoint: str | None  # folder with unet/ and controlnet/ in the authors' layout, loaded last
    controlnet_cond_channels: tuple[int, ...]  # LR conditioning embedding; 2^(len - 1) = VAE factor
    semantic: SemanticParams
    prompts: PromptParams
    tiny: TinySizes


@dataclass(frozen=True)
class PriorParams:
    """The tiny profile's from-scratch prior (VAE, then UNet) on HR crops; the paper uses SD2 instead."""

    vae_steps: int = _range(0)
    vae_lr: float = _range(0.0, 1.0)
    kl_weight: float = _range(0.0)  # KL(posterior || N(0, 1)) weight beside the L1 reconstruction
    unet_steps: int = _range(0)
    unet_lr: float = _range(0.0, 1.0)
    batch_size: int = _range(1)
    scaling_batches: int = _range(1)  # batches whose latent std sets vae.config.scaling_factor


@dataclass(frozen=True)
class TrainParams:
    """ControlNet + semantic blocks (Eq. 4), on HF Accelerate."""

    steps: int = _range(1)  # optimizer steps (paper: 90k)
    batch_size: int = _range(1)  # per process and micro-batch
    grad_accum: int = _range(1)
    lr: float = _range(0.0, 1.0)  # paper: Adam 5e-5
    adam_betas: tuple[float, float]
    weight_decay: float = _range(0.0)  # 0: Adam as the paper (SeeSR's script uses AdamW 1e-2)
    max_grad_norm: float = _range(0.0)  # 0 disables clipping
    null_prompt_prob: float = _range(0.0, 1.0)  # prompt dropped to "" (classifier-free guidance training)
    mixed_precision: Literal["no", "bf16", "fp16"]
    checkpoint_every: int = _range(0)  # 0: only at the end
    keep_checkpoints: int = _range(1)
    log_every: int = _range(1)
    num_workers: int = _range(0)  # DataLoader worker processes reading the crops
    sample_images: int = _range(0)  # validation LR images super-resolved at every checkpoint
    val_crop: int = _range(0)  # HR side of the held-out pairs' centre crops that validation scores; 0: all
    prior: PriorParams | None = None  # tiny profile only: train a VAE + UNet prior first


@dataclass(frozen=True)
class SamplerParams:
    """How to sample one kind of evaluation set (Table 1); see srlab.pipeline."""

    start_point: Literal["noise", "lr"] = "lr"  # lr: the LR latent noised to start_steps (LRE strategy)
    start_steps: int = _range(0, 999, default=999)  # the lr start's noise level; later steps are skipped
    guidance_scale: float = _range(0.0, 50.0, default=0.9)  # CFG only when > 1 (released rule)
    user_prompt: str = ""
    added_prompt: str = ""  # appended to the tag prompt (wild: a positive prompt)
    negative_prompt: str = ""  # the unconditional branch of CFG
    scheduler: Literal["ddpm", "ddim", "dpmpp"] = "ddpm"
    steps: int = _range(1, 1000, default=50)
    upscale: int = _range(1, 8, default=4)  # 4: synthetic track, 1: wild (same size out)
    process_size: int = _range(8, default=512)  # LR enlarged first if short side * upscale is below this
    conditioning_scale: float = _range(0.0, 10.0, default=1.0)
    color_fix: Literal["none", "adain", "wavelet"] = "adain"  # released default: adain
    latent_tile: int = _range(4, default=96)  # denoiser tile and overlap in latent px (released: 96 / 32)
    latent_overlap: int = _range(0, default=32)
    vae_encoder_tile: int = _range(8, default=1024)  # image px
    vae_decoder_tile: int = _range(4, default=224)  # latent px


@dataclass(frozen=True)
class InferParams:
    """The infer stage: sampler settings per kind of evaluation set (the eval set name's suffix)."""

    settings: dict[str, SamplerParams]  # synthetic / wild -> settings (paper Table 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU


@dataclass(frozen=True)
class PromptVariant:
    """One row of the prompt ablation (Table 3): what the sampler adds to the prompts."""

    added_prompt: str  # appended to the tag prompt (the positive prompt)
    negative_prompt: str  # the unconditional branch of CFG


@dataclass(frozen=True)
class AblationParams:
    """The ablations stage (srlab.ablations): the grids of paper Tables 3-5 and the start point.

    Every value is one DVC cell (dvc.yaml ``matrix``); a cell changes one knob of ``infer.settings``
    (or, for the extractor, of ``model.semantic``) and keeps everything else."""

    eval_set: str  # a data.eval_sets name: cells run on <eval_set>_synthetic and <eval_set>_wild
    max_images: int = _range(0)  # images per set and cell, first by name; 0 = all
    crop: int = _range(0)  # side of the HR-size centre crop of each image the cells run on; 0 = whole
    prompt: dict[str, PromptVariant]  # Table 3: name -> prompts
    guidance_scale: dict[str, list[float]]  # Table 4: kind (synthetic / wild) -> scales
    start_point: list[Literal["noise", "lr"]]  # start point, both kinds
    extractor: list[Literal["sam2", "none"]]  # Table 5: each trained with the train section's settings


@dataclass(frozen=True)
class Params:
    """All of params.yaml, after the profile overlay."""

    base: BaseParams
    data: DataParams
    degrade: DegradeParams
    evaluate: EvaluateParams
    report: ReportParams
    model: ModelParams
    train: TrainParams
    infer: InferParams
    ablations: AblationParams


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds params.yaml.

    Notebooks run from ``notebooks/`` under Jupyter and from the root under papermill; both call
    this to find the project.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"no {PARAMS_FILE} found in {here} or any parent folder; run from inside the srlab checkout"
    )


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (true/false only), as DVC reads and writes the file.

    PyYAML follows YAML 1.1, where unquoted ``no``/``yes``/``on``/``off`` are booleans. ``dvc exp run
    -S`` rewrites params.yaml with ruamel (YAML 1.2) and drops quotes, so ``"no"`` came back as ``no``
    and loaded here as False."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found")
    with path.open() as f:
        raw = yaml.load(f, Loader=_Yaml12Loader) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def overlay(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, anything else in ``update`` replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_profile(raw: Mapping[str, Any], source: str = PARAMS_FILE) -> dict[str, Any]:
    """Apply the overlay section named by ``base.profile`` (``paper`` or ``smoke``); drop all overlays."""
    raw = dict(raw)
    overlays = {name: raw.pop(name, {}) or {} for name in PROFILES if name != "tiny"}
    profile = (raw.get("base") or {}).get("profile", "tiny")
    if profile not in PROFILES:
        raise ConfigError(f"{source}: base.profile: expected one of {PROFILES}, got {profile!r}")
    for name, overrides in overlays.items():
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{source}: {name}: expected a mapping of overrides")
        for section in overrides:
            if section not in raw:
                raise ConfigError(f"{source}: {name}.{section}: overrides a section that does not exist")
    return overlay(raw, overlays[profile]) if profile in overlays else raw


def load_params(path: str | os.PathLike[str] | None = None, profile: str | None = None) -> Params:
    """Load and validate the whole params file (default: the project's params.yaml).

    ``profile`` (tiny | paper | smoke), when given, replaces the file's ``base.profile``."""
    path = Path(path) if path is not None else project_root() / PARAMS_FILE
    raw = read_yaml(path)
    if profile is not None:
        raw["base"] = {**(raw.get("base") or {}), "profile": profile}
    raw = resolve_profile(raw, str(path))
    return build(Params, raw, str(path), "")


def load_section(name: str, path: str | os.PathLike[str] | None = None) -> Any:
    """One validated section, e.g. ``load_section("degrade")``."""
    params = load_params(path)
    if name not in {f.name for f in dataclasses.fields(Params)}:
        raise ConfigError(f"unknown params section {name!r}")
    return getattr(params, name)


def as_dict(obj: Any) -> Any:
    """Plain-data view of a params dataclass (for provenance records and JSON)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def build(cls: type[T], raw: Any, source: str, key: str) -> T:
    """Build dataclass ``cls`` from ``raw``, checking keys, types and ranges recursively."""
    where = f"{source}: {key or '<top level>'}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(f"{key}.{u}".lstrip(".") for u in unknown)
        raise ConfigError(f"{source}: unknown key(s) {names}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        dotted = f"{key}.{name}".lstrip(".")
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing key {dotted}")
            continue
        value = _coerce(hints[name], raw[name], source, dotted)
        lo, hi = f.metadata.get("range", (None, None))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise ConfigError(f"{source}: {dotted} = {value!r} is out of range {bounds}")
        values[name] = value
    return cls(**values)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, source, key)
            except ConfigError:
                pass
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise bad
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: {key}: expected {len(args)} values, got {len(value)}")
            return tuple(
                _coerce(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        items = [_coerce(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad
        kt, vt = args or (Any, Any)
        return {_coerce(kt, k, source, key): _coerce(vt, v, source, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp in (str, bool) and not isinstance(value, tp):
        raise bad
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
