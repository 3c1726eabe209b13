"""The release's tiled VAE (srlab.sampling.release_vae), checked against facts of the release's
utils/vaehook.py (commit cc4e44d; docs/research/release_inference.md section 5), worked by hand."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL
from helpers import seeded

from srlab.sampling import release_vae as rv
from srlab.sampling.release_vae import Box, TileBoxes


def _vae(attention: bool = True, dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """A small random VAE, factor 4 (3 levels), 8 GroupNorm groups, random GroupNorm affines."""
    with seeded(0):
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(16, 16, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8,
            mid_block_add_attention=attention,
        )  # fmt: skip
        for m in vae.modules():
            if isinstance(m, torch.nn.GroupNorm):
                torch.nn.init.normal_(m.weight, 1.0, 0.3)
                torch.nn.init.normal_(m.bias, 0.0, 0.3)
    return vae.eval().to(dtype)


def _randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- (a) geometry, worked by hand -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "limit", "expected"),
    [
        (114, 224, 128),  # 114 % 32 = 18 -> 114 - 18 + 32 = 128 <= 224
        (968, 1024, 992),  # 968 % 32 = 8 -> 992 <= 1024
        (149, 224, 160),  # 149 % 32 = 21 -> 160
        (36, 1024, 64),  # rounding up to 32 can almost double a short tile
        (64, 64, 64),  # already a multiple of 32
        (33, 40, 40),  # 32 -> 64 > 40; 16 -> 48 > 40; 8 -> 40 <= 40
        (97, 100, 100),  # 128, 112, 104 too big; 4 -> 100
        (100, 100, 100),  # 128, 112, 104 too big; 100 % 4 == 0 -> kept
        (99, 99, 99),  # 128, 112, 104, 100, 100 all > 99 -> unchanged
    ],
)
def test_best_tile_size_by_hand(length: int, limit: int, expected: int) -> None:
    assert rv.best_tile_size(length, limit) == expected


def test_thresholds_by_hand() -> None:
    # decoder: 2 * 11 + 224 = 246 latent px (1968 px at x8); encoder: 2 * 32 + 1024 = 1088 px
    assert not rv.needs_tiling(246, 246, 224, 11)
    assert rv.needs_tiling(247, 10, 224, 11)
    assert not rv.needs_tiling(1088, 720, 1024, 32)
    assert rv.needs_tiling(720, 1089, 1024, 32)
    assert not rv.needs_tiling(180, 160, 224, 11)  # 1280x720 at x1 -> latent 160x90


def test_decoder_split_2000px_by_hand() -> None:
    # latent 250 (2000 px / 8), tile 224, pad 11: n = ceil((250 - 22) / 224) = 2 per axis,
    # length ceil(228 / 2) = 114 -> best_tile_size 128. Cores [11, 139], [139, 250].
    # Output spans: 11 is not > 11 -> 0; 250 is not < 239 -> 250: [0, 139], [139, 250], x8 -> [0, 1112],
    # [1112, 2000]. Input spans = cores +- 11, clipped: [0, 150], [128, 250].
    a, b = (0, 150, 0, 1112), (128, 250, 1112, 2000)
    expected = [
        TileBoxes(Box(r[0], r[1], c[0], c[1]), Box(r[2], r[3], c[2], c[3])) for r in (a, b) for c in (a, b)
    ]
    assert rv.split_tiles(250, 250, 224, 11, 8, decoder=True) == expected


def test_encoder_split_2000px_by_hand() -> None:
    # 2000 px, tile 1024, pad 32: n = ceil(1936 / 1024) = 2, length 968 -> 992. Cores [32, 1024],
    # [1024, 2000]; output [0, 1024], [1024, 2000] // 8 -> [0, 128], [128, 250]; input [0, 1056], [992, 2000].
    a, b = (0, 1056, 0, 128), (992, 2000, 128, 250)
    expected = [
        TileBoxes(Box(r[0], r[1], c[0], c[1]), Box(r[2], r[3], c[2], c[3])) for r in (a, b) for c in (a, b)
    ]
    assert rv.split_tiles(2000, 2000, 1024, 32, 8, decoder=False) == expected


def test_decoder_split_non_square_by_hand() -> None:
    # 1280x720 at x2 -> latent 320 (h) x 180 (w).
    # h: n = ceil(298 / 224) = 2, ceil(298 / 2) = 149 -> 160; cores [11, 171], [171, 320];
    #    out [0, 171], [171, 320] -> x8 [0, 1368], [1368, 2560]; in [0, 182], [160, 320].
    # w: n = max(ceil(158 / 224), 1) = 1, 158 -> 160; core [11, min(171, 180)] = [11, 171];
    #    out: 171 is not < 180 - 11 = 169 -> extended to 180: [0, 1440]; in [0, min(180, 182)] = [0, 180].
    assert rv.split_tiles(320, 180, 224, 11, 8, decoder=True) == [
        TileBoxes(Box(0, 182, 0, 180), Box(0, 1368, 0, 1440)),
        TileBoxes(Box(160, 320, 0, 180), Box(1368, 2560, 0, 1440)),
    ]


def test_crop_slices_by_hand() -> None:
    # encoder tile 0 of the 2000 px split: input cols [0, 1056] -> tile output 132 wide (1056 / 8);
    # out [0, 128]: keep [0, 132 - 4]. Tile 1: input [992, 2000] -> 126 wide, starts at 124; out
    # [128, 250]: keep [4, 126].
    t0, t1 = (
        TileBoxes(Box(0, 1056, 0, 1056), Box(0, 128, 0, 128)),
        TileBoxes(Box(0, 1056, 992, 2000), Box(0, 128, 128, 250)),
    )
    assert rv.crop_slices(t0, 8, False, (132, 132)) == (slice(0, 128), slice(0, 128))
    assert rv.crop_slices(t1, 8, False, (132, 126)) == (slice(0, 128), slice(4, 126))


def test_axis_shorter_than_two_pads_by_hand() -> None:
    # 40 px, tile 64, pad 32: n = max(ceil(-24 / 64), 1) = 1, length ceil(-24) = -24; -24 % 32 = 8 in
    # Python -> -24 - 8 + 32 = 0 <= 64, so the core is [32, 32]; the output span extends to [0, 40]
    # (32 is not > 32; 32 is not < 8) and the input span is [0, min(40, 64)] = [0, 40]: the whole axis.
    assert rv.best_tile_size(-24, 64) == 0
    assert rv.split_axis(40, 64, 32) == [(0, 40, 0, 40)]


# --- GroupNorm statistics, by hand --------------------------------------------------------------------


def test_shared_stats_weight_by_pixel_count() -> None:
    # one group; tile A: 2x2 of 0, tile B: 2x6 of 1 -> mean (4 * 0 + 12 * 1) / 16 = 0.75, var 0
    var, mean = rv.shared_stats([torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 6)], groups=1)
    assert mean.item() == pytest.approx(0.75) and var.item() == 0.0
    assert var.dtype == mean.dtype == torch.float32


def test_shared_var_has_no_between_tile_term() -> None:
    # A = [-1, 1, -1, 1] (mean 0, biased var 1), B = [1, 3, 1, 3] (mean 2, var 1): shared mean 1, var 1,
    # while the union's var is 2 (the release averages per-tile vars, 503-506)
    a = torch.tensor([-1.0, 1.0, -1.0, 1.0]).view(1, 1, 2, 2)
    var, mean = rv.shared_stats([a, a + 2], groups=1)
    assert (var.item(), mean.item()) == (1.0, 1.0)
    assert torch.cat([a, a + 2]).var(unbiased=False).item() == 2.0


def test_fp16_var_overflow_falls_back_to_fp32() -> None:
    x = torch.tensor([300.0, -300.0] * 8).view(1, 2, 2, 4).half()  # var 90000 > fp16 max 65504
    var, mean = rv.tile_stats(x, groups=2)
    assert var.dtype == torch.float32 and torch.equal(var, torch.full((1, 2), 90000.0))
    assert torch.equal(mean, torch.zeros(1, 2))


def test_normalise_with_own_stats_is_group_norm() -> None:
    with seeded(3):
        norm = torch.nn.GroupNorm(4, 8, eps=1e-6)
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    x = _randn(2, 8, 5, 7) * 3 + 1
    var, mean = rv.shared_stats([x], groups=4)
    torch.testing.assert_close(rv.normalise(x, norm, var, mean), norm(x).detach(), atol=1e-5, rtol=1e-5)


# --- (b) below the threshold: the plain forward, bit for bit ----------------------------------------


def test_below_threshold_is_plain_forward() -> None:
    vae = _vae()
    z, x = _randn(1, 4, 12, 10), _randn(1, 3, 48, 40).clamp(-1, 1)
    with torch.no_grad():
        assert torch.equal(rv.decode(vae, z, tile=16), vae.decode(z).sample)  # 12 <= 2 * 11 + 16
        assert torch.equal(rv.encode(vae, x, tile=64), vae.encoder(x))  # 48 <= 2 * 32 + 64


# --- (e) one tile (or identical tiles) = the whole image: GroupNorm stats are exactly the global ones --


def test_whole_image_tiles_reproduce_plain_forward() -> None:
    vae = _vae()
    z, x = _randn(1, 4, 10, 12), _randn(1, 3, 24, 20).clamp(-1, 1)
    with torch.no_grad():
        h = vae.post_quant_conv(z)
        ref_d, ref_e = vae.decoder(h), vae.encoder(x)
        out_d = rv.decoder_tiles(vae.decoder, [h, h])
        out_e = rv.encoder_tiles(vae.encoder, [x])
    for out in out_d:
        torch.testing.assert_close(out, ref_d, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out_e[0], ref_e, atol=2e-5, rtol=1e-5)


# --- (c) tiled: shared GroupNorm is much closer to the plain decode than per-tile decoding --------------


def _naive_decode(vae: AutoencoderKL, z: torch.Tensor, tile: int, pad: int) -> torch.Tensor:
    """Each padded tile decoded on its own (own GroupNorm stats), cropped, no blending."""
    h = vae.post_quant_conv(z)
    out = torch.zeros(1, 3, z.shape[2] * 4, z.shape[3] * 4)
    for inp, box in rv.split_tiles(z.shape[2], z.shape[3], tile, pad, 4, decoder=True):
        dec = vae.decoder(h[:, :, inp.top : inp.bottom, inp.left : inp.right])
        out[:, :, box.top : box.bottom, box.left : box.right] = dec[
            :,
            :,
            box.top - 4 * inp.top : box.bottom - 4 * inp.top,
            box.left - 4 * inp.left : box.right - 4 * inp.left,
        ]
    return out


@pytest.mark.parametrize("attention", [False, True])
def test_shared_groupnorm_beats_per_tile(attention: bool) -> None:
    # latent 64x48, tile 16, pad 11 (threshold 38): h: ceil(42 / 16) = 3 tiles of 14 -> 16 (32 too big,
    # 16 fits); w: ceil(26 / 16) = 2 tiles of 13 -> 16: 6 tiles. The latent's statistics
    # drift from left to right, so a tile's own GroupNorm stats are far from the image's.
    # Measured (max / mean abs error vs the plain decode, output std 0.60 / 0.40):
    #   no attention: shared 0.730 / 0.0375, per tile 1.956 / 0.1363
    #   attention:    shared 0.446 / 0.0267, per tile 1.497 / 0.0948
    # The shared error is not small: no between-tile var term (the drift's variance is left out), the
    # padded overlaps counted twice, the per-tile mid attention, the receptive field cut at 11 latent px.
    vae = _vae(attention)
    ramp = torch.linspace(0, 1, 48).view(1, 1, 1, -1)
    z = _randn(1, 4, 64, 48) * (0.5 + 2 * ramp) + 3 * ramp
    with torch.no_grad():
        ref = vae.decode(z).sample
        tiled = rv.decode(vae, z, tile=16)
        naive = _naive_decode(vae, z, 16, 11)
    assert len(rv.split_tiles(64, 48, 16, 11, 4, decoder=True)) == 6
    err_sync, err_naive = (tiled - ref).abs(), (naive - ref).abs()
    assert err_sync.mean() < 0.05 and 3 * err_sync.mean() < err_naive.mean()
    assert 2 * err_sync.max() < err_naive.max()


# --- (d) dtype ----------------------------------------------------------------------------------------


def test_tiled_result_is_float32() -> None:
    vae = _vae(dtype=torch.bfloat16)
    z, x = _randn(1, 4, 30, 20).bfloat16(), _randn(1, 3, 132, 40).clamp(-1, 1).bfloat16()
    out_d, out_e = rv.decode(vae, z, tile=6), rv.encode(vae, x, tile=64)
    assert out_d.dtype == out_e.dtype == torch.float32
    assert out_d.shape == (1, 3, 120, 80) and out_e.shape == (1, 8, 33, 10)
    assert rv.decode(vae, z[:, :, :8, :8], tile=6).dtype == torch.bfloat16  # untiled: the plain forward's
