"""The released inference code's arithmetic, where it differs from srlab's own (``fidelity: release``).

Facts from docs/research/release_inference.md, which cites the authors' code (Moonsofang/NTIRE-2025-SRlab
at cc4e44d, ``test_seesr_sam.py`` and ``pipelines/pipeline_seesr.py``, cited as ``script:L`` and
``pipeline:L``) and the libraries pinned there (Pillow 10.4, torchvision 0.15.2, diffusers 0.21.0).
Written from those facts; no code is taken from the release.

- Resampling (script:252-263, 290-291): PIL ``Image.resize`` with its default filter (bicubic for RGB)
  on 8-bit images, up to three times in a row on the way in and once on the way out.
- Latent tiles (pipeline:1004-1097): only when ``h * w > tile**2``; square tiles of
  ``min(tile, h, w)``; starts every ``tile - overlap``, the last one flush with the end.
- Tile weights (pipeline:763-778): a Gaussian of variance 0.01 in units of the tile side, centred at
  ``(W - 1) / 2`` across but at ``H / 2`` down, in float64.
- Decoded image (diffusers ``postprocess``): rounded to 8 bits before the colour fix.
- AdaIN (``utils/wavelet_color_fix.py:44-71``): std = sqrt(unbiased var + 1e-5); the result goes to 8
  bits through torchvision's ``ToPILImage``, which truncates (``mul(255).byte()``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from srlab.sampling import colorfix

ADAIN_EPS = 1e-5  # utils/wavelet_color_fix.py:54-55, inside the square root
WINDOW_VAR = 0.01  # pipeline:763-778: sigma = 0.1 tile sides


# ---------------------------------------------------------------------------------------------
# 8-bit images and PIL resampling
# ---------------------------------------------------------------------------------------------


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> 8-bit RGB, rounded to nearest (the input of the released script is an
    8-bit file; srlab.io reads those to exact multiples of 1/255)."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy(), "RGB")


def from_pil(image: Image.Image) -> torch.Tensor:
    """8-bit RGB -> (3, H, W) float32 in [0, 1], as torchvision's ``ToTensor``."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """PIL's default resize (bicubic for RGB); the same size returns a copy, as Pillow does."""
    return image.resize((width, height), Image.Resampling.BICUBIC)


def condition_image(lr: Image.Image, upscale: int, process_size: int) -> Image.Image:
    """The ControlNet input at working size (script:252-263): enlarge so the short side reaches
    ``process_size // upscale`` (sizes truncated by ``int``), times ``upscale``, then resampled (not
    cropped) to multiples of 8. Each step is its own 8-bit bicubic resize."""
    width, height = lr.size
    target = process_size // upscale
    if width < target or height < target:
        scale = target / min(width, height)
        lr = resize(lr, int(scale * width), int(scale * height))
    lr = resize(lr, lr.size[0] * upscale, lr.size[1] * upscale)
    return resize(lr, lr.size[0] // 8 * 8, lr.size[1] // 8 * 8)


def postprocess(decoded: torch.Tensor) -> Image.Image:
    """VAE output (1, 3, H, W) in [-1, 1] -> 8-bit RGB, as diffusers' ``postprocess`` rounds it."""
    image = (decoded[0].float() / 2 + 0.5).clamp(0, 1)
    array = (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array, "RGB")


def truncate_to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> 8-bit RGB by truncation, as torchvision's ``ToPILImage``."""
    array = image.clamp(0, 1).mul(255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


# ---------------------------------------------------------------------------------------------
# Colour fix
# ---------------------------------------------------------------------------------------------


def adain(content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per image and channel: ``(x - mean_x) / std_x * std_r + mean_r``, std = sqrt(var + eps), var
    unbiased over the pixels; (B, 3, H, W) in [0, 1], clamped."""
    b, c = content.shape[:2]

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(b, c, -1)
        return flat.mean(2).view(b, c, 1, 1), (flat.var(2) + ADAIN_EPS).sqrt().view(b, c, 1, 1)

    c_mean, c_std = stats(content)
    r_mean, r_std = stats(reference)
    return ((content - c_mean) / c_std * r_std + r_mean).clamp(0, 1)


def color_fix(sr: Image.Image, reference: Image.Image, method: str) -> Image.Image:
    """The released colour fix of the 8-bit SR output towards the 8-bit working-size LR (script:282-288)."""
    if method == "none":
        return sr
    content, ref = from_pil(sr)[None], from_pil(reference)[None]
    fixed = adain(content, ref) if method == "adain" else colorfix.color_fix(content, ref, method)
    return truncate_to_pil(fixed[0])


# ---------------------------------------------------------------------------------------------
# Latent tiles
# ---------------------------------------------------------------------------------------------


def tiles_needed(height: int, width: int, tile: int) -> bool:
    """The released rule: tile only when the latent has more than ``tile**2`` pixels (pipeline:1006)."""
    return height * width > tile * tile


def tile_side(height: int, width: int, tile: int) -> int:
    """Square tiles of ``min(tile, h, w)`` (pipeline:1067)."""
    return min(tile, height, width)


def tile_starts(size: int, side: int, overlap: int) -> list[int]:
    """Starts along one axis (pipeline:1070-1097): tiles until ``n * (side - overlap) + side >= size``,
    each at ``n * (side - overlap)``, the last one moved to ``size - side``."""
    if not 0 <= overlap < side:
        raise ValueError(f"need 0 <= overlap < tile side, got overlap={overlap}, side={side}")
    count, covered = 0, 0
    while covered < size:
        covered = max(count * side - overlap * count, 0) + side
        count += 1
    starts = [n * (side - overlap) for n in range(count)]
    starts[-1] = size - side
    return starts


def tile_boxes(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(top, left, side, side) of every released latent tile (one whole-map box when untiled)."""
    if not tiles_needed(height, width, tile):
        return [(0, 0, height, width)]
    side = tile_side(height, width, tile)
    return [
        (top, left, side, side)
        for top in tile_starts(height, side, overlap)
        for left in tile_starts(width, side, overlap)
    ]


def window(side: int) -> torch.Tensor:
    """The released tile weight (side, side), float64 (pipeline:763-778): ``y (x) x`` of
    ``exp(-(i - mid)**2 / side**2 / (2 * 0.01)) / sqrt(2 pi 0.01)``; mid = (side - 1) / 2 across, side / 2
    down."""
    i = torch.arange(side, dtype=torch.float64)
    norm = math.sqrt(2 * math.pi * WINDOW_VAR)

    def axis(mid: float) -> torch.Tensor:
        return torch.exp(-((i - mid) ** 2) / (side * side) / (2 * WINDOW_VAR)) / norm

    return axis(side / 2)[:, None] * axis((side - 1) / 2)[None, :]
