"""Schema of params.yaml `degrade`: every operator setting, the pipelines, the training set of paper 4.1.

A [lo, hi] range (``span``) is drawn uniformly. Cross-field rules (known op and pipeline names,
branch probabilities, crop sizes divisible by the scale) run after the fields validate."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from srlab.config import odd_int, probs, schema, span

KernelType = Literal["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
ResizeMode = Literal["area", "bilinear", "bicubic", "nearest"]


@schema
class UsmOp:
    """Unsharp masking. Real-ESRGAN sharpens the HR before degrading it; phone ISPs and video apps
    over-sharpen UGC, which leaves halos along edges (weight > 1, small sigma, threshold 0)."""

    op: Literal["usm"]
    weight: span(0.0, 10.0, of=float)  # gain on the residual img - blur
    sigma: span(0.1, 50.0, of=float)  # Gaussian blur sigma, px
    kernel_size: odd_int(3, 201)  # Gaussian support, px
    threshold: Annotated[
        float, Field(ge=0.0, le=255.0)
    ]  # residuals below this (0-255 levels) stay unsharpened
    prob: Annotated[float, Field(ge=0.0, le=1.0)]


@schema
class BlurOp:
    """Blur with a random kernel: Gaussian (iso/aniso), generalized Gaussian, plateau, or sinc."""

    op: Literal["blur"]
    kernel_size: span(1, 101, odd=True, of=int)  # odd sizes drawn uniformly in [lo, hi]
    types: probs(dict[KernelType, float])  # kernel family -> probability
    sigma: span(0.01, 50.0, of=float)  # px, each principal axis
    rotation: span(-1.0, 1.0, of=float)  # x pi rad, anisotropic kernels
    # shapes, drawn as BasicSR: half U(lo, 1), half U(1, hi); with hi < 1 the latter is U(hi, 1)
    betag: span(0.01, 20.0, of=float)  # generalized Gaussian shape
    betap: span(0.01, 20.0, of=float)  # plateau shape
    sinc_prob: Annotated[
        float, Field(ge=0.0, le=1.0)
    ]  # P(a sinc (ringing) kernel instead of the families above)
    sinc_cutoff: span(0.01, 1.0, of=float)  # x pi rad, kernels >= sinc_small_size
    sinc_cutoff_small: span(0.01, 1.0, of=float)  # x pi rad, smaller kernels
    sinc_small_size: Annotated[int, Field(ge=1, le=101)]
    prob: Annotated[float, Field(ge=0.0, le=1.0)]


@schema
class SincOp:
    """Sinc (ideal circular low-pass) filter: ringing and overshoot, as from a sharp resampler."""

    op: Literal["sinc"]
    kernel_size: span(1, 101, odd=True, of=int)
    cutoff: span(0.01, 1.0, of=float)  # x pi rad
    prob: Annotated[float, Field(ge=0.0, le=1.0)]  # otherwise the identity


@schema
class ResizeOp:
    """Resize by a random factor with a random interpolation mode (one draw per batch)."""

    op: Literal["resize"]
    updown: probs(tuple[float, float, float])  # P(up), P(down), P(keep)
    scale: span(0.01, 16.0, one=True, of=float)  # up: factor from [1, hi]; down: [lo, 1]
    modes: tuple[ResizeMode, ...]  # drawn uniformly
    relative_to: Literal["input", "target"]  # factor times the current size, or the pipeline's output size
    antialias: bool  # low-pass before bilinear/bicubic downsampling (as PIL); Real-ESRGAN: off

    def __post_init__(self) -> None:
        if not self.modes:
            raise ValueError("list at least one interpolation mode")


@schema
class NoiseOp:
    """Additive Gaussian noise or Poisson (shot) noise, in color or gray (same in all channels)."""

    op: Literal["noise"]
    gaussian_prob: Annotated[float, Field(ge=0.0, le=1.0)]  # otherwise Poisson
    sigma: span(0.0, 255.0, of=float)  # Gaussian std, 0-255 levels
    poisson_scale: span(0.0, 100.0, of=float)  # multiplies the Poisson noise
    gray_prob: Annotated[float, Field(ge=0.0, le=1.0)]
    prob: Annotated[float, Field(ge=0.0, le=1.0)]


@schema
class JpegOp:
    """JPEG compression by libjpeg (torchvision), 4:2:0 chroma."""

    op: Literal["jpeg"]
    quality: span(1, 100, of=int)  # libjpeg quality, integers drawn uniformly
    prob: Annotated[float, Field(ge=0.0, le=1.0)]


@schema
class Chroma420Op:
    """4:2:0 chroma subsampling, as every consumer video codec stores colour: colour bleeds at edges."""

    op: Literal["chroma420"]
    upsample: tuple[Literal["nearest", "bilinear"], ...]  # the decoder's chroma upsampling, drawn uniformly
    prob: Annotated[float, Field(ge=0.0, le=1.0)]

    def __post_init__(self) -> None:
        if not self.upsample:
            raise ValueError("list at least one interpolation mode")


@schema
class CodecOp:
    """Video-codec block artifacts: block-DCT quantization with H.264's QP law, per-macroblock QP."""

    op: Literal["codec"]
    qp: span(0, 51, of=int)  # H.264/HEVC QP; quantizer step 2^((qp - 4) / 6) levels
    qp_jitter: Annotated[
        int, Field(ge=0, le=51)
    ]  # per-macroblock QP offset from [-j, j] (adaptive quantization)
    block: Annotated[int, Field(ge=2, le=64)]  # transform size, px
    macroblock: Annotated[
        int, Field(ge=4, le=256)
    ]  # QP granularity, px; a multiple of 2 x block (chroma: half)
    chroma_qp_offset: Annotated[int, Field(ge=-12, le=12)]
    rounding: Annotated[
        float, Field(ge=0.0, le=0.5)
    ]  # dead-zone rounding offset (x264/JM: 1/3 intra, 1/6 inter)
    prob: Annotated[float, Field(ge=0.0, le=1.0)]

    def __post_init__(self) -> None:
        if self.macroblock % (2 * self.block):
            raise ValueError("macroblock must be a multiple of 2 x block")


@schema
class LowLightOp:
    """Low light: a dark capture with Poisson-Gaussian sensor noise, stored, then gained back."""

    op: Literal["lowlight"]
    exposure: span(0.001, 1.0, of=float)  # linear-light gain of the capture; 1/exposure back
    shot: span(0.0, 1.0, of=float)  # signal-dependent noise variance per unit signal (linear)
    read: span(0.0, 1.0, of=float)  # signal-independent noise std (linear)
    bits: Annotated[
        int, Field(ge=0, le=16)
    ]  # the dark frame is stored with this many bits before the gain; 0: not
    prob: Annotated[float, Field(ge=0.0, le=1.0)]


@schema
class ChoiceOp:
    """One of several orders of ops (names in degrade.ops), drawn per batch."""

    op: Literal["choice"]
    probs: probs(tuple[float, ...])
    branches: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if len(self.branches) != len(self.probs):
            raise ValueError("one probability per branch")


# One entry of degrade.ops, told apart by its `op` key.
OpParams = Annotated[
    Union[UsmOp, BlurOp, SincOp, ResizeOp, NoiseOp, JpegOp, Chroma420Op, CodecOp, LowLightOp, ChoiceOp],  # noqa: UP007
    Field(discriminator="op"),
]


@schema
class PipelineParams:
    """A degradation pipeline: names from degrade.ops, applied in this order."""

    downsample: bool  # True: the output is 1/scale of the input (synthetic); False: same size (wild)
    order: tuple[str, ...]
    sampled_as: str | None  # its eval sets are sampled as infer.presets.<p>.<this kind>; null: its name


@schema
class TrainSetParams:
    """The training set of paper 4.1: three components and their mix."""

    crop_size: Annotated[int, Field(ge=8, le=8192)]  # HR crop side written to train/ (paper: 512)
    hr_crops_per_image: Annotated[int, Field(ge=1)]  # component hr: random crops per HR photo
    bicubic_prob: Annotated[float, Field(ge=0.0, le=1.0)]  # component hr: P(LR = bicubic), else hr_pipeline
    bicubic_antialias: bool  # the bicubic LR: antialiased (PIL/MATLAB) or plain F.interpolate (aliased)
    bicubic_group: Annotated[int, Field(ge=1)]  # one bicubic coin per this many consecutive crops
    hr_pipeline: str
    paired_overlap: Annotated[int, Field(ge=0)]  # component paired: px shared by neighbouring crops
    paired_pipeline: str  # makes the stand-in paired set when data.paired_dir is null
    wild_pipeline: str  # component wild: the paired set's HR crops through this pipeline (its scale)
    wild_bicubic_prob: Annotated[float, Field(ge=0.0, le=1.0)]  # component wild: P(LR = bicubic); x4 only
    sharpen_target: str | None  # an op of degrade.ops applied to every saved training HR (not to its LR)
    # share of draws per component, or `proportional`: each component's share is its size
    mix: dict[Literal["hr", "paired", "wild"], float] | Literal["proportional"]

    def __post_init__(self) -> None:
        if self.mix != "proportional":
            shares = list(self.mix.values())
            if not shares or min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
                raise ValueError("mix: probabilities must be >= 0 and sum to 1")


@schema
class DegradeParams:
    """Degradation operators and pipelines, the training set of paper 4.1 and the evaluation sets."""

    scale: Annotated[int, Field(ge=1, le=8)]  # HR side / LR side of the synthetic set
    hr_multiple: Annotated[
        int, Field(ge=1, le=512)
    ]  # HR eval images are center-cropped so both sides divide by this
    eval_max_side: Annotated[
        int, Field(ge=0)
    ]  # HR eval images are center-cropped to at most this side; 0: whole
    eval_pipelines: tuple[str, ...]  # each eval set is written once per pipeline: eval/<set>_<pipeline>
    train: TrainSetParams
    ops: dict[str, OpParams]  # name -> operator settings
    pipelines: dict[str, PipelineParams]

    def __post_init__(self) -> None:
        for name, pipe in self.pipelines.items():
            self._check_names(pipe.order, f"pipelines.{name}.order")
        for name, op in self.ops.items():
            if isinstance(op, ChoiceOp):
                for branch in op.branches:
                    self._check_names(branch, f"ops.{name}.branches", nested=True)
        used = {
            "eval_pipelines": self.eval_pipelines,
            "train": (self.train.hr_pipeline, self.train.paired_pipeline, self.train.wild_pipeline),
        }
        for key, names in used.items():
            for name in names:
                if name not in self.pipelines:
                    raise ValueError(f"{key}: unknown pipeline {name!r}; known: {', '.join(self.pipelines)}")
        t = self.train
        if t.sharpen_target is not None:
            self._check_names((t.sharpen_target,), "train.sharpen_target")
            if isinstance(self.ops[t.sharpen_target], (ResizeOp, ChoiceOp)):
                raise ValueError("train.sharpen_target: a resize or choice op would change the target's size")
        if t.wild_bicubic_prob > 0 and not self.pipelines[t.wild_pipeline].downsample:
            raise ValueError(
                f"train.wild_bicubic_prob {t.wild_bicubic_prob} needs a downsampling wild_pipeline"
                f" ({t.wild_pipeline!r} keeps the size)"
            )
        if t.crop_size % self.scale or t.paired_overlap % self.scale or t.paired_overlap >= t.crop_size:
            raise ValueError(
                f"train: crop_size {t.crop_size} and paired_overlap {t.paired_overlap} must be multiples"
                f" of scale {self.scale}, with paired_overlap < crop_size"
            )

    def _check_names(self, names: tuple[str, ...], key: str, nested: bool = False) -> None:
        for name in names:
            if name not in self.ops:
                raise ValueError(f"{key}: unknown op {name!r}; known: {', '.join(self.ops)}")
            if nested and isinstance(self.ops[name], ChoiceOp):
                raise ValueError(f"{key}: a choice inside a choice is not supported")
