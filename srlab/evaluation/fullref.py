"""Weight-free full-reference metrics: PSNR and SSIM as srlab.evaluation.metrics' protocol states them.

Their own module so that training's validation (which scores PSNR/SSIM only) does not depend on the
evaluation stage's metric suite or the challenge scorer.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

YSpace = Literal["yiq", "ycbcr"]
Y_DEFS = {
    "yiq": "Y of YIQ = 0.299R + 0.587G + 0.114B in [0, 1] (pyiqa default)",
    "ycbcr": "Y of BT.601 YCbCr, 16-235 (MATLAB rgb2ycbcr, BasicSR)",
}


def _as_pair(
    sr: torch.Tensor, hr: torch.Tensor, crop_border: int, color_space: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) or (1, 3, H, W) images -> (1, 3, H', W') float64, ``crop_border`` cut from each edge."""
    if color_space not in Y_DEFS:  # pyiqa would silently take the R channel as "Y"
        raise ValueError(f"color_space {color_space!r} unknown; use one of {list(Y_DEFS)}")
    x, y = (t[None] if t.ndim == 3 else t for t in (sr, hr))
    if x.ndim != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"expected one RGB image (3, H, W) or (1, 3, H, W), got {tuple(sr.shape)}")
    if x.shape != y.shape:
        raise ValueError(
            f"SR {tuple(x.shape[-2:])} and HR {tuple(y.shape[-2:])} must have the same size (H, W)"
        )
    h, w = x.shape[-2:]
    c = crop_border
    if min(h, w) <= 2 * c:
        raise ValueError(f"crop_border {c} leaves nothing of a {h}x{w} image; lower evaluate.crop_border")
    return x[..., c : h - c, c : w - c].double(), y[..., c : h - c, c : w - c].double()


def psnr(
    sr: torch.Tensor, hr: torch.Tensor, *, y_channel: bool, color_space: YSpace = "yiq", crop_border: int = 0
) -> float:
    """PSNR in dB of ``sr`` against ``hr`` (both [0, 1], same size); inf for identical images."""
    x, y = _as_pair(sr, hr, crop_border, color_space)
    if y_channel:
        from pyiqa.utils.color_util import to_y_channel

        x, y = to_y_channel(x, 1.0, color_space), to_y_channel(y, 1.0, color_space)  # (1, 1, H, W)
    mse = torch.mean((x - y) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(
    sr: torch.Tensor, hr: torch.Tensor, *, y_channel: bool, color_space: YSpace = "yiq", crop_border: int = 0
) -> float:
    """SSIM of ``sr`` against ``hr`` with pyiqa's implementation (see module docstring); 1 if identical."""
    from pyiqa.archs.ssim_arch import SSIM

    x, y = _as_pair(sr, hr, crop_border, color_space)
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {tuple(x.shape[-2:])}")
    metric = SSIM(test_y_channel=y_channel, color_space=color_space)
    return float(metric(x.float(), y.float()))  # float32 in, as pyiqa gets images; float64 inside
