"""The authors' released tiled VAE ("vaehook"), reimplemented so that our numbers match theirs.

Why: for large images the release does not run the plain VAE. It replaces ``vae.encoder.forward`` and
``vae.decoder.forward`` by a tiled version whose GroupNorm statistics are shared across tiles
(``utils/vaehook.py`` of github Moonsofang/NTIRE-2025-SRlab at commit
cc4e44d89380931075ae5633fb2294485e6ccfb3, the same file as SeeSR's; docs/research/release_inference.md
section 5). Its output is not the plain VAE's, so reproducing the release's images needs it. This is
our own implementation from the facts of that file (line numbers below are ``utils/vaehook.py:LINE``);
instead of their per-tile task queues it runs the diffusers ``Encoder``/``Decoder`` blocks on a list
of tiles, with every GroupNorm synchronised across the list.

The facts reproduced:

- Untiled (the original forward) when ``max(H, W) <= 2 * pad + tile`` (553-555). Pads: decoder 11
  latent px, encoder 32 px (545); tile sizes come from the caller (release: encoder 1024 px, decoder
  224 latent px).
- Split (576-633): ``n = max(ceil((L - 2p) / tile), 1)`` tiles per axis, tile length
  ``ceil((L - 2p) / n)`` rounded up by ``best_tile_size`` (561-574); core ``[p + j t, min(p + (j+1) t,
  L)]``, extended to the border when within ``p`` of it, scaled to give the output box; input box =
  core widened by ``p`` and clipped. Tiles are row-major. The release hard-codes the scale as ``*8``
  / ``//8`` (622, 424, 803); we use the VAE's own factor, which equals it for the SD VAE (factor 8).
- Per-tile ops (247-358): conv_in; each resnet as shortcut (``conv_shortcut`` when the channels
  change, else identity) + [norm1, silu, conv1, norm2, silu, conv2]; up/down samplers applied to each
  tile as they are (so the encoder's ``Downsample2D`` zero-pads each tile's right/bottom edge); the
  mid block (resnet, attention, resnet) after the down blocks (encoder) or before the up blocks
  (decoder); conv_norm_out, silu, conv_out. No tanh, no dropout (eval), no dtype casts. The release
  hard-codes 2 resnets per encoder level and 3 per decoder level (298-313) and one mid attention
  (296, 327); we run the blocks' own resnets, which is the same for ``layers_per_block=2`` (SD).
- Every GroupNorm (resnet norm1/norm2, the mid attention's ``group_norm``, ``conv_norm_out``) is
  shared (756-825, 458-507): each tile's **biased** var and mean per (sample, group) over its whole
  padded extent (370-380, in the tile's dtype; an fp16 var that overflows to inf is recomputed in fp32,
  470-472); the tiles' var and mean are averaged **separately** with float32 weights
  ``pixels / max(pixels)`` normalised to sum 1 (no between-tile term, so the var is an
  approximation); every tile is normalised with them, eps 1e-6, then the layer's affine (383-412).
  The release hard-codes 32 groups (467, 507); we use the layer's ``num_groups`` (32 in the SD VAE).
  Tiles are visited in alternating directions per norm (753-815); we sum in the same order.
- The mid-block attention is computed **per tile** (its softmax sees only the tile's tokens) as plain
  softmax attention (136-170, diffusers' ``Attention.get_attention_scores``), with the residual added
  back (242-245).
- Stitching (415-426, 802-804): each tile's output is cropped to its output box and written into a
  ``torch.zeros`` float32 result, no blending. So the tiled result is float32 whatever the VAE dtype.

``encode`` returns what ``vae.encoder(x)`` returns (the moments *before* ``quant_conv``), because
that is the forward the release replaces; apply ``vae.quant_conv`` (if any) for the moments.
``decode`` returns what ``vae.decoder(vae.post_quant_conv(z))`` returns, i.e. ``vae.decode(z).sample``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor, nn

EPS = 1e-6  # custom_group_norm's eps (383, 532); diffusers' VAE GroupNorms use the same value
ENCODER_PAD = 32  # px (545)
DECODER_PAD = 11  # latent px (545)
ENCODER_TILE = 1024  # px, the release script's value
DECODER_TILE = 224  # latent px, the release script's value


class Box(NamedTuple):
    """A half-open rectangle ``[top, bottom) x [left, right)``."""

    top: int
    bottom: int
    left: int
    right: int


class TileBoxes(NamedTuple):
    """``inp``: the padded region read from the input (input coordinates); ``out``: the region of the
    result this tile writes (output coordinates)."""

    inp: Box
    out: Box


# ---------------------------------------------------------------------------------------------------
# Geometry (pure functions)


def needs_tiling(height: int, width: int, tile: int, pad: int) -> bool:
    """The release tiles only when ``max(H, W) > 2 * pad + tile`` (553)."""
    return max(height, width) > 2 * pad + tile


def best_tile_size(length: int, limit: int) -> int:
    """Round ``length`` up to the first multiple of 32, 16, 8, 4 or 2 (tried in that order) that stays
    ``<= limit``; a ``length`` already divisible by the divider tried is kept; else ``length`` (561-574)."""
    for divider in (32, 16, 8, 4, 2):
        if length % divider == 0:
            return length
        rounded = (length // divider + 1) * divider
        if rounded <= limit:
            return rounded
    return length


def split_axis(length: int, tile: int, pad: int) -> list[tuple[int, int, int, int]]:
    """One axis of the split: ``(in_start, in_stop, out_start, out_stop)`` per tile, all in input
    coordinates (the output span is not yet scaled)."""
    count = max(math.ceil((length - 2 * pad) / tile), 1)
    step = best_tile_size(math.ceil((length - 2 * pad) / count), tile)
    spans = []
    for j in range(count):
        start, stop = pad + j * step, min(pad + (j + 1) * step, length)
        out_start = start if start > pad else 0
        out_stop = stop if stop < length - pad else length
        spans.append((max(0, start - pad), min(length, stop + pad), out_start, out_stop))
    return spans


def split_tiles(height: int, width: int, tile: int, pad: int, factor: int, decoder: bool) -> list[TileBoxes]:
    """The release's tiles of a ``height x width`` input, row-major.

    The output box is the (input-coordinate) output span times ``factor`` for the decoder and floor-
    divided by ``factor`` for the encoder (release: ``factor`` fixed at 8).
    """

    def scale(v: int) -> int:
        return v * factor if decoder else v // factor

    tiles = []
    for y0, y1, oy0, oy1 in split_axis(height, tile, pad):
        for x0, x1, ox0, ox1 in split_axis(width, tile, pad):
            out = Box(scale(oy0), scale(oy1), scale(ox0), scale(ox1))
            tiles.append(TileBoxes(Box(y0, y1, x0, x1), out))
    return tiles


def crop_slices(
    boxes: TileBoxes, factor: int, decoder: bool, tile_shape: tuple[int, int]
) -> tuple[slice, slice]:
    """Where a tile's output (of spatial ``tile_shape``) holds its output box: the input box scaled like
    the output box gives the tile output's position; offsets from it are cut off (415-426)."""

    def scale(v: int) -> int:
        return v * factor if decoder else v // factor

    inp, out = boxes
    h, w = tile_shape
    top, left = out.top - scale(inp.top), out.left - scale(inp.left)
    bottom, right = h + out.bottom - scale(inp.bottom), w + out.right - scale(inp.right)
    return slice(top, bottom), slice(left, right)


# ---------------------------------------------------------------------------------------------------
# GroupNorm shared across tiles


def tile_stats(tile: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Biased var and mean per (sample, group) over the whole tile, shape ``(B, groups)``; computed in the
    tile's dtype, recomputed in float32 when an fp16 var overflows to inf (370-380, 466-472)."""
    b = tile.shape[0]
    var, mean = torch.var_mean(tile.reshape(b, groups, -1), dim=-1, unbiased=False)
    if var.dtype == torch.float16 and bool(var.isinf().any()):
        var, mean = torch.var_mean(tile.float().reshape(b, groups, -1), dim=-1, unbiased=False)
    return var, mean


def shared_stats(tiles: Sequence[Tensor], groups: int) -> tuple[Tensor, Tensor]:
    """float32 var and mean shared by ``tiles``: the per-tile values averaged separately, weighted by the
    tiles' pixel counts (488-507). No between-tile variance term."""
    stats = [tile_stats(t, groups) for t in tiles]
    pixels = [t.shape[-2] * t.shape[-1] for t in tiles]
    weights = torch.tensor(pixels, dtype=torch.float32, device=tiles[0].device) / max(pixels)
    weights = (weights / weights.sum())[:, None, None]
    var = (torch.stack([v.float() for v, _ in stats]) * weights).sum(dim=0)
    mean = (torch.stack([m.float() for _, m in stats]) * weights).sum(dim=0)
    return var, mean


def normalise(x: Tensor, norm: nn.GroupNorm, var: Tensor, mean: Tensor) -> Tensor:
    """GroupNorm of ``x`` with given float32 stats ``(B, groups)``, eps 1e-6, then the layer's affine."""
    b, c = x.shape[:2]
    # each (sample, group) as a batch-norm channel: (x - mean) / sqrt(var + eps) with the given stats
    grouped = x.reshape(1, b * norm.num_groups, -1)
    out = F.batch_norm(grouped, mean.reshape(-1), var.reshape(-1), training=False, eps=EPS).reshape(x.shape)
    # in place, so the result keeps the normalised tile's dtype even for float32 weights under autocast
    if norm.weight is not None:
        out.mul_(norm.weight.view(1, c, 1, 1))
    if norm.bias is not None:
        out.add_(norm.bias.view(1, c, 1, 1))
    return out


class _SyncedNorm:
    """Applies GroupNorms with statistics shared by all tiles; mirrors the release's alternating tile
    order (the k-th norm sees the tiles reversed when k is odd, 753-815) so float sums match."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, norm: nn.GroupNorm, tiles: list[Tensor]) -> list[Tensor]:
        order = list(range(len(tiles)))
        if self.calls % 2:
            order.reverse()
        self.calls += 1
        var, mean = shared_stats([tiles[i] for i in order], norm.num_groups)
        return [normalise(t, norm, var, mean) for t in tiles]


# ---------------------------------------------------------------------------------------------------
# Blocks on lists of tiles

Tiles = list[Tensor]


def _each(fn: Callable[[Tensor], Tensor], tiles: Tiles) -> Tiles:
    return [fn(t) for t in tiles]


def _add_residual(branch: Tiles, residual: Tiles) -> Tiles:
    """``branch + residual`` in the branch's dtype (the release adds in place, 786); ``branch`` is fresh."""
    return [a.add_(r) for a, r in zip(branch, residual, strict=True)]


def _resnet(block: nn.Module, tiles: Tiles, norm: _SyncedNorm) -> Tiles:
    shortcut = block.conv_shortcut if block.conv_shortcut is not None else (lambda t: t)
    residual = _each(shortcut, tiles)
    h = _each(block.conv1, _each(F.silu, norm(block.norm1, tiles)))
    h = _each(block.conv2, _each(F.silu, norm(block.norm2, h)))
    return _add_residual(h, residual)


def plain_attention(attn: nn.Module, x: Tensor) -> Tensor:
    """Softmax self-attention of a (normalised) feature map over its own tokens (136-170): q, k, v
    projections, ``Attention.get_attention_scores`` (scaled ``baddbmm``, softmax upcast when the layer
    says so, as the release calls it), heads folded into the batch, then ``to_out``."""
    b, c, h, w = x.shape
    seq = x.reshape(b, c, h * w).transpose(1, 2)

    def fold(t: Tensor) -> Tensor:  # (b, n, heads * d) -> (b * heads, n, d)
        return t.reshape(b, h * w, attn.heads, -1).transpose(1, 2).reshape(b * attn.heads, h * w, -1)

    q, k, v = fold(attn.to_q(seq)), fold(attn.to_k(seq)), fold(attn.to_v(seq))
    out = torch.bmm(attn.get_attention_scores(q, k), v)
    out = out.reshape(b, attn.heads, h * w, -1).transpose(1, 2).reshape(b, h * w, -1)
    for layer in attn.to_out:
        out = layer(out)
    return out.transpose(1, 2).reshape(b, c, h, w)


def _attention(attn: nn.Module, tiles: Tiles, norm: _SyncedNorm) -> Tiles:
    h = _each(lambda t: plain_attention(attn, t), norm(attn.group_norm, tiles))
    if attn.residual_connection:  # True in the VAE, as the release assumes (242-245)
        h = _add_residual(h, tiles)
    return [a / attn.rescale_output_factor for a in h]  # 1.0 in the VAE: exact no-op


def _mid(mid: nn.Module, tiles: Tiles, norm: _SyncedNorm) -> Tiles:
    tiles = _resnet(mid.resnets[0], tiles, norm)
    for attn, block in zip(mid.attentions, mid.resnets[1:], strict=True):
        if attn is not None:
            tiles = _attention(attn, tiles, norm)
        tiles = _resnet(block, tiles, norm)
    return tiles


def _tail(net: nn.Module, tiles: Tiles, norm: _SyncedNorm) -> Tiles:
    return _each(net.conv_out, _each(F.silu, norm(net.conv_norm_out, tiles)))


def encoder_tiles(encoder: nn.Module, tiles: Tiles) -> Tiles:
    """The diffusers ``Encoder`` run on each tile, GroupNorms shared across ``tiles``."""
    norm = _SyncedNorm()
    tiles = _each(encoder.conv_in, tiles)
    for down in encoder.down_blocks:
        for block in down.resnets:
            tiles = _resnet(block, tiles, norm)
        for sampler in down.downsamplers or ():
            tiles = _each(sampler, tiles)
    return _tail(encoder, _mid(encoder.mid_block, tiles, norm), norm)


def decoder_tiles(decoder: nn.Module, tiles: Tiles) -> Tiles:
    """The diffusers ``Decoder`` run on each tile, GroupNorms shared across ``tiles``."""
    norm = _SyncedNorm()
    tiles = _mid(decoder.mid_block, _each(decoder.conv_in, tiles), norm)
    for up in decoder.up_blocks:
        for block in up.resnets:
            tiles = _resnet(block, tiles, norm)
        for sampler in up.upsamplers or ():
            tiles = _each(sampler, tiles)
    return _tail(decoder, tiles, norm)


def vae_factor(vae: AutoencoderKL) -> int:
    """The spatial factor between image and latent: 2 per down block that downsamples."""
    return 2 ** sum(1 for down in vae.encoder.down_blocks if down.downsamplers)


def _tiled(
    run: Callable[[nn.Module, Tiles], Tiles], net: nn.Module, x: Tensor, tile: int, pad: int, factor: int,
    decoder: bool,
) -> Tensor:  # fmt: skip
    n, _, height, width = x.shape
    boxes = split_tiles(height, width, tile, pad, factor, decoder)
    outs = run(net, [x[:, :, b.inp.top : b.inp.bottom, b.inp.left : b.inp.right] for b in boxes])
    size = (height * factor, width * factor) if decoder else (height // factor, width // factor)
    device = next(net.parameters()).device
    result = torch.zeros((n, outs[0].shape[1], *size), dtype=torch.float32, device=device)
    for b, out in zip(boxes, outs, strict=True):
        rows, cols = crop_slices(b, factor, decoder, (out.shape[-2], out.shape[-1]))
        result[:, :, b.out.top : b.out.bottom, b.out.left : b.out.right] = out[:, :, rows, cols]
    return result


@torch.no_grad()
def encode(vae: AutoencoderKL, image_m11: Tensor, tile: int = ENCODER_TILE, pad: int = ENCODER_PAD) -> Tensor:
    """``vae.encoder(image_m11)`` as the release computes it: the plain forward (same dtype, bit-identical)
    up to ``max(H, W) <= 2 * pad + tile`` px, else tiled (float32). Before ``quant_conv``."""
    if not needs_tiling(image_m11.shape[-2], image_m11.shape[-1], tile, pad):
        return vae.encoder(image_m11)
    return _tiled(encoder_tiles, vae.encoder, image_m11, tile, pad, vae_factor(vae), decoder=False)


@torch.no_grad()
def decode(vae: AutoencoderKL, z: Tensor, tile: int = DECODER_TILE, pad: int = DECODER_PAD) -> Tensor:
    """``vae.decode(z).sample`` as the release computes it: ``post_quant_conv`` then the decoder, plain
    (bit-identical) up to ``max(h, w) <= 2 * pad + tile`` latent px, else tiled (float32)."""
    if vae.post_quant_conv is not None:
        z = vae.post_quant_conv(z)
    if not needs_tiling(z.shape[-2], z.shape[-1], tile, pad):
        return vae.decoder(z)
    return _tiled(decoder_tiles, vae.decoder, z, tile, pad, vae_factor(vae), decoder=True)
