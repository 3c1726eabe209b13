"""Tiled processing with smooth blending, for images larger than a model's comfortable size.

One mechanism serves the three tiled operations of the sampler: the denoiser on the latent (scale 1),
the VAE encoder (image -> latent, scale 1/f) and the VAE decoder (latent -> image, scale f). Tiles
overlap; each tile's output is weighted by a separable Gaussian window and the weighted sum is
normalised, so seams vanish and a region covered by one tile is reproduced exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import torch

Box = tuple[int, int, int, int]  # (top, left, height, width)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least ``overlap`` overlap.

    The last tile is aligned to the end, so every tile has full length when ``size >= tile``.
    """
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > 0 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def tile_boxes(height: int, width: int, tile: int, overlap: int) -> list[Box]:
    """All (top, left, h, w) tiles of a height x width map."""
    return [
        (top, left, min(tile, height), min(tile, width))
        for top in tile_starts(height, tile, overlap)
        for left in tile_starts(width, tile, overlap)
    ]


def gaussian_window(
    height: int, width: int, sigma: float = 0.25, device: torch.device | None = None
) -> torch.Tensor:
    """Separable Gaussian (height, width) peaking at the centre; sigma as a fraction of the side."""

    def axis(n: int) -> torch.Tensor:
        x = (torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2) / max(n, 1)
        return torch.exp(-0.5 * (x / sigma) ** 2)

    return axis(height)[:, None] * axis(width)[None, :]


def tiled(
    fn: Callable[[torch.Tensor, Box], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    scale: float | Fraction = 1,
    out_channels: int | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping tiles of ``x`` (B, C, H, W) and blend the results.

    ``fn(tile, box)`` maps a (B, C, h, w) tile at ``box`` = (top, left, h, w) of ``x`` (so it can cut
    matching regions of other inputs) to (B, C', h*scale, w*scale); ``scale`` must map tile borders to
    whole pixels (e.g. 8 for a VAE decoder, 1/8 for its encoder with tile and overlap multiples of 8).
    A map that fits in one tile is passed to ``fn`` whole.
    """
    b, _, h, w = x.shape
    boxes = tile_boxes(h, w, tile, overlap)
    if len(boxes) == 1:
        return fn(x, (0, 0, h, w))
    scale = Fraction(scale).limit_denominator(64)
    out_h, out_w = _scaled(h, scale), _scaled(w, scale)
    out: torch.Tensor | None = None
    weight = torch.zeros(1, 1, out_h, out_w, device=x.device, dtype=torch.float32)
    for top, left, th, tw in boxes:
        y = fn(x[:, :, top : top + th, left : left + tw], (top, left, th, tw))
        oh, ow = _scaled(th, scale), _scaled(tw, scale)
        if y.shape[-2:] != (oh, ow):
            raise ValueError(
                f"tile function returned {tuple(y.shape[-2:])}, expected {(oh, ow)} at scale {scale}"
            )
        if out is None:
            out = torch.zeros(
                b, out_channels or y.shape[1], out_h, out_w, device=x.device, dtype=torch.float32
            )
        win = gaussian_window(oh, ow, device=x.device)[None, None]
        ot, ol = _scaled(top, scale), _scaled(left, scale)
        out[:, :, ot : ot + oh, ol : ol + ow] += y.float() * win
        weight[:, :, ot : ot + oh, ol : ol + ow] += win
    assert out is not None
    return (out / weight).to(x.dtype)


def _scaled(n: int, scale: Fraction) -> int:
    value = n * scale
    if value.denominator != 1:
        raise ValueError(f"tile border {n} times scale {scale} is not a whole number of pixels")
    return int(value)
