"""Blur kernels (Gaussian iso/aniso, generalized Gaussian, plateau, sinc), FFT filtering, blur, USM.

Real-ESRGAN's kernel families (BasicSR ``basicsr/data/degradations.py``) and filters
(``basicsr/utils/img_process_util.py``), batched and on any device. Tensor contract, the two forms of
every operator (fixed / sampling with a generator) and the records: see srlab.data.ops.
Kernels are (B, k, k) float32 with odd k and sum 1; sigma in px, angles and cutoffs in rad.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from srlab.data.ops import (
    Range,
    Records,
    bernoulli,
    categorical,
    check_images,
    make_records,
    per_sample,
    randint,
    uniform,
)

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


# ------------------------------------------------------------------------------------------------
# Blur kernels (k x k, odd k, sum 1). sigma in px; theta in rad; beta: shape parameter
# ------------------------------------------------------------------------------------------------


def _grid(size: int, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Column (x) and row (y) offsets from the kernel centre, each (size, size) float64."""
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    return x, y


def _batch(*values: float | torch.Tensor, device: torch.device | None = None) -> list[torch.Tensor]:
    """Scalars and (B,) tensors -> (B, 1, 1) float64 tensors broadcast to one batch size.

    They go to ``device``, or else to the device of the first tensor among ``values``.
    """
    if device is None:
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
    ts = [torch.as_tensor(v, dtype=torch.float64, device=device).reshape(-1) for v in values]
    ts = torch.broadcast_tensors(*ts)
    return [t.reshape(-1, 1, 1) for t in ts]


def _quadratic_form(
    size: int, sigma_x: Any, sigma_y: Any, theta: Any, device: torch.device | None = None
) -> torch.Tensor:
    """Q = [x y] Sigma^-1 [x y]^T on the kernel grid, Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T.

    Returns (B, size, size) float64. ``sigma_y=None`` means isotropic (sigma_y = sigma_x, theta = 0).
    """
    if sigma_y is None:
        sigma_y, theta = sigma_x, 0.0
    sx, sy, th = _batch(sigma_x, sigma_y, theta, device=device)
    x, y = _grid(size, sx.device)
    u = torch.cos(th) * x + torch.sin(th) * y  # coordinates along the kernel's principal axes
    v = -torch.sin(th) * x + torch.cos(th) * y
    return (u / sx) ** 2 + (v / sy) ** 2


def _normalized(kernel: torch.Tensor) -> torch.Tensor:
    return (kernel / kernel.sum(dim=(-2, -1), keepdim=True)).float()


def gaussian_kernel(size: int, sigma_x: Any, sigma_y: Any = None, theta: Any = 0.0) -> torch.Tensor:
    """Bivariate Gaussian exp(-Q/2), (B, size, size) float32; isotropic when ``sigma_y`` is None."""
    return _normalized(torch.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(
    size: int, sigma_x: Any, sigma_y: Any = None, theta: Any = 0.0, beta: Any = 1.0
) -> torch.Tensor:
    """Generalized Gaussian exp(-Q^beta / 2) (Pascal et al. 2013); beta = 1 is the Gaussian.

    beta < 1: heavier tails; beta > 1: a flatter top. (B, size, size) float32.
    """
    q = _quadratic_form(size, sigma_x, sigma_y, theta)
    (b,) = _batch(beta, device=q.device)
    return _normalized(torch.exp(-0.5 * q**b))


def plateau_kernel(
    size: int, sigma_x: Any, sigma_y: Any = None, theta: Any = 0.0, beta: Any = 1.0
) -> torch.Tensor:
    """Plateau-shaped kernel 1 / (1 + Q^beta): flat top, polynomial tails. (B, size, size) float32."""
    q = _quadratic_form(size, sigma_x, sigma_y, theta)
    (b,) = _batch(beta, device=q.device)
    return _normalized(1.0 / (q**b + 1.0))


def _sinc(size: int, cutoff: torch.Tensor) -> torch.Tensor:
    """Unnormalized circular low-pass (B, size, size) float64 for cutoff (B, 1, 1) in rad."""
    x, y = _grid(size, cutoff.device)
    r = torch.sqrt(x**2 + y**2)
    safe_r = torch.where(r == 0, torch.ones_like(r), r)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe_r) / (2 * math.pi * safe_r)
    return torch.where(r == 0, cutoff**2 / (4 * math.pi), kernel)  # the limit at r = 0


def sinc_kernel(size: int, cutoff: Any) -> torch.Tensor:
    """2-D sinc: the ideal circular low-pass filter with ``cutoff`` in rad (0, pi], truncated to k x k.

    w J1(w r) / (2 pi r), J1 the Bessel function of the first kind; truncation makes it ring
    (overshoot at edges), the artifact Real-ESRGAN adds with it. (B, size, size) float32.
    """
    (w,) = _batch(cutoff)
    return _normalized(_sinc(size, w))


def _support(size: int, sizes: torch.Tensor) -> torch.Tensor:
    """(B, size, size) mask of the central sizes[b] x sizes[b] square (kernels padded to one size)."""
    x, y = _grid(size, sizes.device)
    half = (sizes.reshape(-1, 1, 1) // 2).to(torch.float64)
    return (x.abs() <= half) & (y.abs() <= half)


def random_blur_kernel(
    n: int,
    kernel_size: tuple[int, int],
    types: Mapping[str, float],
    sigma: Range,
    rotation: Range,
    betag: Range,
    betap: Range,
    sinc_prob: float,
    sinc_cutoff: Range,
    sinc_cutoff_small: Range,
    sinc_small_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, Records]:
    """Draw n kernels as Real-ESRGAN does; returns (n, K, K) float32 (K = kernel_size[1]) and records.

    Per sample: an odd size from ``kernel_size``; with ``sinc_prob`` a sinc kernel (cutoff in
    ``sinc_cutoff_small`` below ``sinc_small_size`` px, else ``sinc_cutoff``; both x pi rad); otherwise
    a family from ``types`` (names in KERNEL_TYPES) with sigma_x, sigma_y from ``sigma`` (px), theta
    from ``rotation`` (x pi rad) and beta from half [lo, 1], half [1, hi] of ``betag``/``betap``.
    Smaller kernels are zero-padded to K, so the batch filters in one call.
    """
    unknown = set(types) - set(KERNEL_TYPES)
    if unknown:
        raise ValueError(f"unknown kernel types {sorted(unknown)}; known: {KERNEL_TYPES}")
    g, k = generator, kernel_size[1]
    sizes = randint(n, kernel_size, g, step=2)
    is_sinc = bernoulli(n, sinc_prob, g)
    family = categorical(n, list(types.values()), g)
    sx, sy = uniform(n, sigma, g), uniform(n, sigma, g)
    theta = uniform(n, rotation, g) * math.pi

    def beta(bounds: Range) -> torch.Tensor:  # half the draws below 1, half above (as the reference)
        low, high = uniform(n, (bounds[0], 1.0), g), uniform(n, (1.0, bounds[1]), g)
        return torch.where(bernoulli(n, 0.5, g), low, high)

    bg, bp = beta(betag), beta(betap)
    cutoff = (
        torch.where(sizes < sinc_small_size, uniform(n, sinc_cutoff_small, g), uniform(n, sinc_cutoff, g))
        * math.pi
    )
    names = [list(types)[i] for i in family.tolist()]
    iso = torch.tensor([name.endswith("_iso") or name == "iso" for name in names], device=sx.device)
    sy, theta = torch.where(iso, sx, sy), torch.where(iso, torch.zeros_like(theta), theta)

    q = _quadratic_form(k, sx, sy, theta)
    kind = torch.tensor([KERNEL_TYPES.index(name) // 2 for name in names], device=q.device).reshape(-1, 1, 1)
    shaped = torch.where(
        kind == 0,
        torch.exp(-0.5 * q),
        torch.where(
            kind == 1, torch.exp(-0.5 * q ** bg.reshape(-1, 1, 1)), 1.0 / (q ** bp.reshape(-1, 1, 1) + 1)
        ),
    )
    kernels = torch.where(is_sinc.reshape(-1, 1, 1), _sinc(k, cutoff.reshape(-1, 1, 1)), shaped)
    kernels = _normalized(kernels * _support(k, sizes))

    records = []
    for i, name in enumerate(names):
        if is_sinc[i]:
            records.append({"kernel": "sinc", "size": int(sizes[i]), "cutoff": float(cutoff[i])})
            continue
        rec: dict[str, Any] = {"kernel": name, "size": int(sizes[i]), "sigma_x": float(sx[i])}
        if not iso[i]:
            rec.update(sigma_y=float(sy[i]), theta=float(theta[i]))
        if name.startswith(("generalized", "plateau")):
            rec["beta"] = float(bg[i] if name.startswith("generalized") else bp[i])
        records.append(rec)
    return kernels, records


# ------------------------------------------------------------------------------------------------
# Filtering
# ------------------------------------------------------------------------------------------------


def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate each image with its own kernel (B, k, k), or all with one (k, k) / (1, k, k); k odd.

    As BasicSR's filter2D (cv2.filter2D semantics, reflect borders), computed by FFT so the cost does
    not grow with k (a 51 px USM kernel costs what a 3 px one does). A side of k // 2 px or less
    cannot be reflected and is padded by replication instead. img: (B, C, H, W) float.
    """
    k = kernel.shape[-1]
    if k % 2 == 0 or kernel.shape[-2] != k:
        raise ValueError(f"kernel must be square with an odd side, got {tuple(kernel.shape)}")
    h, w = img.shape[-2:]
    r = k // 2
    work = img if img.dtype in (torch.float32, torch.float64) else img.float()
    padded = F.pad(work, (r, r, r, r), mode="reflect" if min(h, w) > r else "replicate")
    hp, wp = padded.shape[-2:]
    flipped = kernel.to(work).reshape(-1, 1, k, k).flip(-2, -1)  # correlation = convolution, flipped
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(flipped, s=(hp, wp))
    out = torch.fft.irfft2(spectrum, s=(hp, wp))[..., 2 * r : 2 * r + h, 2 * r : 2 * r + w]
    return out.to(img.dtype)


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur with given kernels (see ``filter2d``); Real-ESRGAN does not clip after blurring."""
    check_images(img)
    return filter2d(img, kernel)


def random_blur(
    img: torch.Tensor, generator: torch.Generator, **kernel_ranges: Any
) -> tuple[torch.Tensor, Records]:
    """Blur each image with a kernel from ``random_blur_kernel(**kernel_ranges)``."""
    kernels, records = random_blur_kernel(img.shape[0], generator=generator, **kernel_ranges)
    return blur(img, kernels), records


def random_sinc_filter(
    img: torch.Tensor, kernel_size: tuple[int, int], cutoff: Range, generator: torch.Generator
) -> tuple[torch.Tensor, Records]:
    """Real-ESRGAN's final sinc filter: size from ``kernel_size`` (odd), cutoff from ``cutoff`` x pi rad."""
    n, k = img.shape[0], kernel_size[1]
    sizes = randint(n, kernel_size, generator, step=2)
    w = uniform(n, cutoff, generator) * math.pi
    kernels = _normalized(_sinc(k, w.reshape(-1, 1, 1)) * _support(k, sizes))
    return blur(img, kernels), make_records(n, kernel="sinc", size=sizes, cutoff=w)


def usm_sharpen(
    img: torch.Tensor, weight: Any, sigma: Any, threshold: float = 10.0, kernel_size: int = 51
) -> torch.Tensor:
    """Unsharp masking as BasicSR's USMSharp: img + weight * (img - blur), blended by a soft mask.

    The mask is 1 where |img - blur| > ``threshold`` (0-255 levels), blurred by the same Gaussian
    (``sigma`` px, ``kernel_size`` px, odd). Real-ESRGAN: weight 0.5, 51 px (sigma 8, OpenCV's
    default for that size), threshold 10. Over-sharpening halos: weight 1-2, small sigma, threshold 0.
    """
    check_images(img)
    kernel = gaussian_kernel(kernel_size, sigma)
    residual = img - filter2d(img, kernel)
    mask = filter2d((residual.abs() * 255 > threshold).to(img.dtype), kernel)
    sharp = (img + per_sample(weight, img) * residual).clamp(0, 1)
    return mask * sharp + (1 - mask) * img


def random_usm_sharpen(
    img: torch.Tensor,
    weight: Range,
    sigma: Range,
    threshold: float,
    kernel_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, Records]:
    n = img.shape[0]
    w, s = uniform(n, weight, generator), uniform(n, sigma, generator)
    out = usm_sharpen(img, w, s, threshold, kernel_size)
    return out, make_records(n, weight=w, sigma=s, threshold=threshold, kernel_size=kernel_size)
