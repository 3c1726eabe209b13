"""Degradation operators of the Real-ESRGAN recipe, in torch: noise, resize, JPEG (this module), blur
kernels, sinc, USM (srlab.data.kernels); UGC additions in srlab.data.ugc. This module also holds
what the three share: the random draws, the per-sample records, the input check.

Reference: XPixelGroup/BasicSR, ``basicsr/data/degradations.py`` (kernels, noise),
``basicsr/utils/img_process_util.py`` (filter2D, USMSharp) and ``basicsr/models/realesrgan_model.py``.
The formulas are the same; the implementation is batched, runs on any device, and draws every random
number from an explicit ``torch.Generator``.

Tensor contract (every operator of the three modules): ``img`` is float (B, 3, H, W) RGB in [0, 1] on
any device; the output has the same dtype and device, and is clipped to [0, 1] where the reference
clips. Each operator has two forms:

- fixed: ``add_gaussian_noise(img, sigma, gray, generator)``: parameters given, as floats (the same for
  the whole batch) or (B,) tensors (one per sample); a generator only where noise is drawn;
- sampling: ``random_add_gaussian_noise(img, sigma, gray_prob, generator)``: draws one parameter set
  per sample from the ranges (uniform on [lo, hi]) and returns ``(out, records)``, where
  ``records[i]`` is a JSON-ready dict of what sample i got.

The generator must live on the images' device. Parameter draws are float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.functional import rgb_to_grayscale

from srlab.io import to_levels

Range = tuple[float, float]
Records = list[dict[str, Any]]


# ------------------------------------------------------------------------------------------------
# Shared by the operator modules: random draws (all from the caller's generator), records, checks
# ------------------------------------------------------------------------------------------------


def uniform(n: int, bounds: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """(n,) float64 values drawn uniformly from [lo, hi]."""
    lo, hi = bounds
    u = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)
    return u * (hi - lo) + lo


def bernoulli(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """(n,) bool, each True with probability ``p``."""
    return torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64) < p


def categorical(n: int, probs: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """(n,) int64 indices into ``probs``."""
    weights = torch.tensor(list(probs), dtype=torch.float64, device=generator.device)
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def randint(n: int, bounds: Sequence[int], generator: torch.Generator, step: int = 1) -> torch.Tensor:
    """(n,) int64 drawn uniformly from lo, lo + step, ..., <= hi."""
    lo, hi = bounds
    k = torch.randint(0, (hi - lo) // step + 1, (n,), generator=generator, device=generator.device)
    return lo + step * k


def make_records(n: int, **columns: Any) -> Records:
    """Per-sample dicts from columns given as (n,) tensors, length-n lists or one value for all."""
    cols = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in columns.items()}
    return [{k: v[i] if isinstance(v, list) else v for k, v in cols.items()} for i in range(n)]


def per_sample(value: float | torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """A float or (B,) tensor -> (B, 1, 1, 1) in the image's dtype and device, for broadcasting."""
    t = torch.as_tensor(value, dtype=img.dtype, device=img.device)
    return t.reshape(-1, 1, 1, 1).expand(img.shape[0], 1, 1, 1)


def check_images(img: torch.Tensor) -> None:
    if img.ndim != 4 or img.shape[1] != 3 or not img.is_floating_point():
        raise ValueError(f"expected float images (B, 3, H, W) in [0, 1], got {img.dtype} {tuple(img.shape)}")


# ------------------------------------------------------------------------------------------------
# Noise (sigma in 0-255 levels; clipped to [0, 1] as Real-ESRGAN, no rounding)
# ------------------------------------------------------------------------------------------------


def _gray_mask(gray: bool | torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(gray, dtype=torch.bool, device=img.device).reshape(-1).expand(img.shape[0])


def add_gaussian_noise(
    img: torch.Tensor, sigma: Any, gray: bool | torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """img + N(0, (sigma/255)^2), independent per channel, or one field for all channels if ``gray``."""
    check_images(img)
    gray = _gray_mask(gray, img)
    _, c, h, w = img.shape
    noise = torch.empty_like(img)
    for mask, channels in ((~gray, c), (gray, 1)):
        if mask.any():
            draw = torch.randn(
                (int(mask.sum()), channels, h, w), generator=generator, device=img.device, dtype=img.dtype
            )
            noise[mask] = draw.expand(-1, c, -1, -1)
    return (img + noise * per_sample(sigma, img) / 255.0).clamp(0, 1)


def add_poisson_noise(
    img: torch.Tensor, scale: Any, gray: bool | torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Shot noise as Real-ESRGAN: Poisson(v * L) / L - v, times ``scale``, added to img.

    v is the image rounded to 8 bits (gray: BT.601 luma of it, noise shared by the channels) and L the
    number of distinct 8-bit levels in the image rounded up to a power of two.
    """
    check_images(img)
    gray = _gray_mask(gray, img)
    noise = torch.empty_like(img)
    for mask, is_gray in ((~gray, False), (gray, True)):
        if mask.any():
            sub = img[mask]
            src = rgb_to_grayscale(sub, num_output_channels=1) if is_gray else sub
            levels = to_levels(src)
            present = torch.zeros(src.shape[0], 256, device=img.device)
            present.scatter_(1, levels.reshape(src.shape[0], -1).long(), 1.0)  # distinct levels per image
            vals = torch.exp2(torch.ceil(torch.log2(present.sum(1)))).to(img.dtype).reshape(-1, 1, 1, 1)
            v = levels / 255
            noise[mask] = (torch.poisson(v * vals, generator=generator) / vals - v).expand_as(sub)
    return (img + noise * per_sample(scale, img)).clamp(0, 1)


def random_add_gaussian_noise(
    img: torch.Tensor, sigma: Range, gray_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, Records]:
    n = img.shape[0]
    s, gray = uniform(n, sigma, generator), bernoulli(n, gray_prob, generator)
    return add_gaussian_noise(img, s, gray, generator), make_records(n, noise="gaussian", gray=gray, sigma=s)


def random_add_poisson_noise(
    img: torch.Tensor, scale: Range, gray_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, Records]:
    n = img.shape[0]
    s, gray = uniform(n, scale, generator), bernoulli(n, gray_prob, generator)
    return add_poisson_noise(img, s, gray, generator), make_records(n, noise="poisson", gray=gray, scale=s)


def random_add_noise(
    img: torch.Tensor,
    gaussian_prob: float,
    sigma: Range,
    poisson_scale: Range,
    gray_prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, Records]:
    """Per sample: Gaussian noise with ``gaussian_prob``, else Poisson noise (Real-ESRGAN's noise step)."""
    n = img.shape[0]
    is_gauss = bernoulli(n, gaussian_prob, generator).to(img.device)
    out, records = img.clone(), [{} for _ in range(n)]
    for mask, fn, ranges in (
        (is_gauss, random_add_gaussian_noise, sigma),
        (~is_gauss, random_add_poisson_noise, poisson_scale),
    ):
        if mask.any():
            out[mask], recs = fn(img[mask], ranges, gray_prob, generator)
            for i, rec in zip(mask.nonzero().flatten().tolist(), recs, strict=True):
                records[i] = rec
    return out, records


# ------------------------------------------------------------------------------------------------
# Resize and JPEG
# ------------------------------------------------------------------------------------------------


def resize(img: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool = False) -> torch.Tensor:
    """F.interpolate to ``size`` (H, W) with ``mode`` in area/bilinear/bicubic/nearest; no clipping.

    ``antialias`` low-passes bilinear/bicubic downsampling (as PIL); Real-ESRGAN resizes without it.
    """
    if tuple(size) == tuple(img.shape[-2:]):
        return img
    smooth = mode in ("bilinear", "bicubic")
    return F.interpolate(
        img,
        size=tuple(size),
        mode=mode,
        align_corners=False if smooth else None,
        antialias=antialias and smooth,
    )


def random_resize(
    img: torch.Tensor,
    updown: tuple[float, float, float],
    scale: Range,
    modes: Sequence[str],
    relative_to: str,
    target_size: tuple[int, int],
    generator: torch.Generator,
    antialias: bool = False,
) -> tuple[torch.Tensor, Records]:
    """Resize the whole batch (one size for all) by a random factor, as Real-ESRGAN.

    Direction from ``updown`` = P(up, down, keep); factor from [1, scale[1]] up or [scale[0], 1] down;
    mode uniformly from ``modes``. The factor multiplies the current size (``relative_to="input"``) or
    ``target_size`` (``"target"``: the pipeline's output size), rounded down, at least 1 px.
    """
    direction = ("up", "down", "keep")[int(categorical(1, updown, generator))]
    bounds = {"up": (1.0, scale[1]), "down": (scale[0], 1.0), "keep": (1.0, 1.0)}[direction]
    factor = float(uniform(1, bounds, generator))
    mode = modes[int(categorical(1, [1.0] * len(modes), generator))]
    base = img.shape[-2:] if relative_to == "input" else target_size
    size = (max(1, int(base[0] * factor)), max(1, int(base[1] * factor)))
    out = resize(img, size, mode, antialias)
    return out, make_records(
        img.shape[0], direction=direction, factor=factor, mode=mode, size=[list(size)] * img.shape[0]
    )


def jpeg_compress(img: torch.Tensor, quality: int | torch.Tensor) -> torch.Tensor:
    """Encode and decode with libjpeg (torchvision.io) at ``quality`` (1-100), per sample.

    Exactly what a libjpeg-based encoder (PIL, OpenCV) writes: the image is rounded to 8 bits,
    chroma is subsampled 4:2:0 and quantized with the IJG tables scaled by quality. Runs on the CPU
    (libjpeg); the result returns to the images' device.
    """
    check_images(img)
    q = torch.as_tensor(quality).reshape(-1).expand(img.shape[0]).tolist()
    u8 = to_levels(img.detach()).to(torch.uint8).cpu()
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs for torchcodec (not a dep)
        warnings.simplefilter("ignore", DeprecationWarning)
        encoded = [encode_jpeg(u8[i], quality=int(q[i])) for i in range(img.shape[0])]
        decoded = torch.stack(decode_jpeg(encoded))
    return decoded.to(device=img.device, dtype=img.dtype) / 255.0


def random_jpeg_compress(
    img: torch.Tensor, quality: tuple[int, int], generator: torch.Generator
) -> tuple[torch.Tensor, Records]:
    """JPEG with an integer quality drawn uniformly from ``quality`` = [lo, hi] per sample."""
    q = randint(img.shape[0], quality, generator)
    return jpeg_compress(img, q), make_records(img.shape[0], quality=q)
