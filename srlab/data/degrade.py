"""Degradation pipelines: HR images -> LR images by ordered lists of named operators from params.yaml.

``params.degrade.ops`` names every operator setting (a Real-ESRGAN stage, a UGC artifact, ...);
``params.degrade.pipelines`` lists, per pipeline, the names to apply in order. Nothing about the order
lives in code. The paper's two pipelines (section 4.1):

- ``synthetic``: bicubic x4 downsampling, then degradation at LR size (the challenge's synthetic set);
- ``wild``: degradation without downsampling (in-the-wild UGC): Real-ESRGAN's two orders plus what
  short videos suffer and Real-ESRGAN lacks (srlab.data.ugc: low light, over-sharpening,
  4:2:0 chroma, codec blocks);

plus ``realesrgan``, Real-ESRGAN x4plus's second-order pipeline as BasicSR runs it (the reference
and the benchmark, benchmarks/bench_degrade.py).

Batching: shape-preserving ops draw their probability and parameters per sample; ``resize`` and
``choice`` draw once per batch, because a batch shares one size (Real-ESRGAN draws those per batch
too). To make every sample independent of what it is batched with (the dataset builder does
this), degrade one image per call with its own generator from ``sample_generator``.

Operators: srlab.data.kernels and srlab.data.ops (Real-ESRGAN's), srlab.data.ugc (UGC);
tensor contract (srlab.data.ops): float (B, 3, H, W) RGB in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from srlab.data import kernels, ops, ugc
from srlab.data.degrade_params import BlurOp, ChoiceOp, DegradeParams, OpParams, ResizeOp
from srlab.data.photos import sample_generator
from srlab.io import to_levels

# op kind (the `op` key in params.yaml) -> sampling form; keyword arguments are the settings' fields
SAMPLERS: dict[str, Callable[..., tuple[torch.Tensor, ops.Records]]] = {
    "usm": kernels.random_usm_sharpen,
    "blur": kernels.random_blur,
    "sinc": kernels.random_sinc_filter,
    "noise": ops.random_add_noise,
    "jpeg": ops.random_jpeg_compress,
    "chroma420": ugc.random_chroma_subsample,
    "codec": ugc.random_codec_compress,
    "lowlight": ugc.random_low_light,
}


@dataclass
class Degraded:
    """What ``degrade`` returns: the LR batch and, per sample, every step with what it drew.

    ``records[i]`` is a list of {"step": name in params, "op": kind, "applied": bool, **drawn values},
    JSON-ready (the manifest stores it).
    """

    lr: torch.Tensor
    records: list[list[dict[str, Any]]]


def degrade(hr: torch.Tensor, params: DegradeParams, pipeline: str, generator: torch.Generator) -> Degraded:
    """Run the named pipeline on a batch of HR images.

    hr: float (B, 3, H, W) in [0, 1]; with ``downsample: true`` H and W must divide by
    ``params.scale`` and the LR is (B, 3, H/scale, W/scale), else it has the input's size. The LR is
    rounded to 8-bit levels (as Real-ESRGAN's last step; it is saved as 8-bit PNG anyway).
    ``generator`` must be on hr's device; its state advances.

    Every operator computes in float64 whatever ``hr``'s dtype (the LR comes back in it): float32
    results of convolutions, FFTs, reductions and vectorised maths depend on the thread split and
    on the CPU's kernels (AVX2 vs AVX-512), which moved some pixels by one 8-bit level between
    machines. In float64 those differences are ~1e-16 relative, and every rounding to 8-bit levels
    snaps them away first (srlab.io.to_levels: exact ties stay ties), so the same seed gives
    the same bytes on any thread count and x86-64 CPU (tests/test_determinism.py). The CPU is the
    canonical device for building data.
    """
    # 1. check inputs
    if pipeline not in params.pipelines:
        raise ValueError(
            f"unknown pipeline {pipeline!r}; params.yaml degrade.pipelines has {list(params.pipelines)}"
        )
    ops.check_images(hr)
    if generator.device.type != hr.device.type:
        raise ValueError(
            f"generator on {generator.device} but images on {hr.device}: make it on the images' device"
        )
    pipe = params.pipelines[pipeline]
    h, w = hr.shape[-2:]
    scale = params.scale if pipe.downsample else 1
    if h % scale or w % scale:
        raise ValueError(
            f"HR size {h}x{w} does not divide by degrade.scale {scale}; crop it first "
            "(srlab.data.build.center_crop_to_multiple)"
        )
    # 2. apply the steps in order
    records: list[list[dict[str, Any]]] = [[] for _ in range(hr.shape[0])]
    out = hr.to(torch.float64)
    for name in pipe.order:
        out = _step(out, name, params, (h // scale, w // scale), generator, records)
    # 3. the output size and 8-bit levels
    if tuple(out.shape[-2:]) != (h // scale, w // scale):
        raise ValueError(
            f"pipeline {pipeline!r} ends at {tuple(out.shape[-2:])}: its last resize must be to the target"
        )
    return Degraded(lr=(to_levels(out) / 255).to(hr.dtype), records=records)


def apply_op(img: torch.Tensor, params: DegradeParams, name: str, generator: torch.Generator) -> Degraded:
    """One shape-preserving op of params.ops (not a resize or a choice) on a batch, as a pipeline step:
    float64 inside, 8-bit levels out (e.g. degrade.train.sharpen_target on the saved HR crops)."""
    if isinstance(params.ops[name], (ResizeOp, ChoiceOp)):
        raise ValueError(f"{name!r} is a {params.ops[name].op} op: it would change the size")
    ops.check_images(img)
    records: list[list[dict[str, Any]]] = [[] for _ in range(img.shape[0])]
    out = _step(img.to(torch.float64), name, params, tuple(img.shape[-2:]), generator, records)
    return Degraded(lr=(to_levels(out) / 255).to(img.dtype), records=records)


def _step(
    img: torch.Tensor,
    name: str,
    params: DegradeParams,
    target: tuple[int, int],
    generator: torch.Generator,
    records: list[list[dict[str, Any]]],
) -> torch.Tensor:
    """Apply the op ``name`` of params.ops to the batch; append one record per sample."""
    op = params.ops[name]
    n = img.shape[0]
    if isinstance(op, ChoiceOp):
        branch = int(ops.categorical(1, op.probs, generator))
        for rec in records:
            rec.append({"step": name, "op": "choice", "applied": True, "branch": branch})
        for sub in op.branches[branch]:
            img = _step(img, sub, params, target, generator, records)
        return img
    if isinstance(op, ResizeOp):
        out, recs = ops.random_resize(img, target_size=target, generator=generator, **_settings(op))
        for rec, drawn in zip(records, recs, strict=True):
            rec.append({"step": name, "op": "resize", "applied": True, **drawn})
        return out
    chosen = ops.bernoulli(n, op.prob, generator).to(img.device)
    out = img
    drawn_by_sample: dict[int, dict[str, Any]] = {}
    if chosen.any():
        index = chosen.nonzero().flatten()
        result, recs = SAMPLERS[op.op](img[index], generator=generator, **_settings(op))
        out = img.index_copy(0, index, result)
        drawn_by_sample = dict(zip(index.tolist(), recs, strict=True))
    for i, rec in enumerate(records):
        rec.append({"step": name, "op": op.op, "applied": i in drawn_by_sample, **drawn_by_sample.get(i, {})})
    return out


def _settings(op: OpParams) -> dict[str, Any]:
    """An op's settings as keyword arguments of its sampling form (everything but `op` and `prob`)."""
    return {f.name: getattr(op, f.name) for f in dataclasses.fields(op) if f.name not in ("op", "prob")}


# ------------------------------------------------------------------------------------------------
# Gallery (what the notebook shows)
# ------------------------------------------------------------------------------------------------


def operator_gallery(image: torch.Tensor, params: DegradeParams, seed: int) -> list[tuple[str, torch.Tensor]]:
    """One image (3, H, W) through every configured op on its own (probability forced to 1).

    Returns (title, image) pairs in params order; each op draws from its own generator (seed, name).
    Resizes relative to the target go to 1/scale of the image (as in a x4 pipeline); ``choice``
    entries are skipped (their branches are listed ops).
    """
    out = []
    for name, op in params.ops.items():
        if isinstance(op, ChoiceOp):
            continue
        generator, _ = sample_generator(seed, "gallery", name)
        forced = dataclasses.replace(op, prob=1.0) if hasattr(op, "prob") else op
        records: list[list[dict[str, Any]]] = [[]]
        one = dataclasses.replace(params, ops={**params.ops, name: forced})
        target = (image.shape[-2] // params.scale, image.shape[-1] // params.scale)
        result = _step(image[None], name, one, target, generator, records)
        drawn = {k: v for k, v in records[0][0].items() if k not in ("step", "op", "applied")}
        out.append((f"{name} ({op.op})\n{_short(drawn)}", result[0].clamp(0, 1)))
    return out


def kernel_gallery(op: BlurOp) -> list[tuple[str, torch.Tensor]]:
    """One kernel of each family (and the sinc) at the centre of ``op``'s ranges, largest size.

    Returns (title, (3, K, K) image scaled to its maximum) pairs for display.
    """
    k = op.kernel_size[1]
    sx, sy = op.sigma[1] * 0.75, op.sigma[0] + (op.sigma[1] - op.sigma[0]) * 0.25
    theta, cutoff = math.pi / 4, sum(op.sinc_cutoff) / 2 * math.pi
    shown = {
        "iso": kernels.gaussian_kernel(k, sx),
        "aniso": kernels.gaussian_kernel(k, sx, sy, theta),
        f"generalized (beta {op.betag[1]:g})": kernels.generalized_gaussian_kernel(
            k, sx, sy, theta, op.betag[1]
        ),
        f"plateau (beta {op.betap[1]:g})": kernels.plateau_kernel(k, sx, sy, theta, op.betap[1]),
        "sinc": kernels.sinc_kernel(k, cutoff),
    }
    return [
        (name, (kern[0] / kern[0].abs().max()).clamp(0, 1).expand(3, k, k)) for name, kern in shown.items()
    ]


def _short(drawn: dict[str, Any]) -> str:
    parts = [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in drawn.items()]
    return ", ".join(parts[:3])
