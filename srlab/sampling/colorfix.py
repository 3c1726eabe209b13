"""Colour correction of the SR output towards the LR input's colours.

Diffusion SR drifts in colour; StableSR and SeeSR correct it after decoding. Both methods take the
SR output and the LR image upsampled to the same size, float (B, 3, H, W) in [0, 1]:
- ``adain``: per-channel mean and std of the output matched to the reference;
- ``wavelet``: the output's high frequencies plus the reference's low frequencies, split by a
  5-level a-trous wavelet (3x3 binomial blur with dilations 1, 2, 4, 8, 16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METHODS = ("none", "adain", "wavelet")


def adain(content: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Match per-image, per-channel mean/std of ``content`` to ``reference``."""
    c_mean, c_std = content.mean((2, 3), keepdim=True), content.std((2, 3), keepdim=True)
    r_mean, r_std = reference.mean((2, 3), keepdim=True), reference.std((2, 3), keepdim=True)
    return ((content - c_mean) / (c_std + eps) * r_std + r_mean).clamp(0, 1)


def wavelet_split(image: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) with high + low == image; low is the image blurred at every level in turn."""
    kernel = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=image.dtype, device=image.device) / 16
    kernel = kernel.expand(image.shape[1], 1, 3, 3)
    low = image
    for level in range(levels):
        d = 2**level
        padded = F.pad(low, (d, d, d, d), mode="replicate")
        low = F.conv2d(padded, kernel, groups=image.shape[1], dilation=d)
    return image - low, low


def wavelet(content: torch.Tensor, reference: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """High frequencies of ``content`` + low frequencies of ``reference``."""
    high, _ = wavelet_split(content, levels)
    _, low = wavelet_split(reference, levels)
    return (high + low).clamp(0, 1)


def color_fix(content: torch.Tensor, reference: torch.Tensor, method: str) -> torch.Tensor:
    """Apply the named correction (``none`` returns ``content`` unchanged)."""
    if content.shape != reference.shape:
        raise ValueError(
            f"colour fix needs equal shapes, got {tuple(content.shape)} and {tuple(reference.shape)}"
        )
    if method == "none":
        return content
    if method == "adain":
        return adain(content, reference)
    if method == "wavelet":
        return wavelet(content, reference)
    raise ValueError(f"unknown colour fix {method!r}; choose one of {METHODS}")
