from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from srlab.sampling import colorfix, tiling


def test_tile_starts_cover_and_align_to_end() -> None:
    assert tiling.tile_starts(10, 16, 4) == [0]
    assert tiling.tile_starts(40, 16, 4) == [0, 12, 24]
    starts = tiling.tile_starts(123, 32, 8)
    assert starts[0] == 0 and starts[-1] == 123 - 32
    assert all(b - a <= 32 - 8 for a, b in itertools.pairwise(starts))  # overlap kept
    with pytest.raises(ValueError, match="overlap < tile"):
        tiling.tile_starts(40, 16, 16)


def test_pointwise_fn_is_reproduced_exactly_by_tiles() -> None:
    x = torch.randn(2, 4, 37, 53)
    out = tiling.tiled(lambda t, _: t * 2 + 1, x, tile=16, overlap=6)
    torch.testing.assert_close(out, x * 2 + 1)


def test_scaled_tiles_match_whole_upsampling() -> None:
    x = torch.randn(1, 3, 24, 40)

    def up(t: torch.Tensor, _: tiling.Box) -> torch.Tensor:
        return F.interpolate(t, scale_factor=8, mode="nearest")

    torch.testing.assert_close(tiling.tiled(up, x, tile=16, overlap=8, scale=8), up(x, (0, 0, 24, 40)))

    def down(t: torch.Tensor, _: tiling.Box) -> torch.Tensor:
        return F.avg_pool2d(t, 8)

    big = torch.randn(1, 3, 192, 320)
    torch.testing.assert_close(
        tiling.tiled(down, big, tile=128, overlap=64, scale=1 / 8), down(big, (0, 0, 192, 320))
    )


def test_single_tile_calls_fn_once_on_the_whole_map() -> None:
    calls = []
    tiling.tiled(
        lambda t, box: calls.append((t.shape, box)) or t, torch.zeros(1, 1, 8, 8), tile=16, overlap=4
    )
    assert calls == [(torch.Size([1, 1, 8, 8]), (0, 0, 8, 8))]


def test_tile_scale_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="expected"):
        tiling.tiled(lambda t, _: t[..., :-1], torch.zeros(1, 1, 40, 40), tile=16, overlap=4)


def test_adain_matches_reference_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, 32, 32, generator=g) * 0.2 + 0.1
    reference = torch.rand(1, 3, 32, 32, generator=g) * 0.5 + 0.3
    out = colorfix.adain(content, reference)
    torch.testing.assert_close(out.mean((2, 3)), reference.mean((2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std((2, 3)), reference.std((2, 3)), atol=1e-3, rtol=0)


def test_wavelet_split_is_exact_and_fix_takes_reference_colour() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 48, 48, generator=g)
    high, low = colorfix.wavelet_split(image)
    torch.testing.assert_close(high + low, image)
    flat_ref = torch.full_like(image, 0.7)  # a constant colour: all low frequency
    fixed = colorfix.color_fix(image * 0.5, flat_ref, "wavelet")
    assert abs(fixed.mean().item() - 0.7) < 0.02  # colour from the reference
    assert (fixed - fixed.mean()).abs().mean() > 0.05  # detail from the content
    with pytest.raises(ValueError, match="unknown colour fix"):
        colorfix.color_fix(image, image, "magic")
    assert colorfix.color_fix(image, flat_ref, "none") is image


def test_boxes_let_fn_cut_matching_regions_of_another_input() -> None:
    x = torch.randn(1, 2, 30, 46)
    other = torch.randn(1, 2, 60, 92)  # at 2x: like the ControlNet condition beside the latent

    def fn(tile: torch.Tensor, box: tiling.Box) -> torch.Tensor:
        top, left, h, w = box
        return tile + other[:, :, 2 * top : 2 * (top + h) : 2, 2 * left : 2 * (left + w) : 2]

    torch.testing.assert_close(tiling.tiled(fn, x, tile=16, overlap=4), x + other[:, :, ::2, ::2])
