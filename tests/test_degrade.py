"""Degradation operators against reference computations, and the pipelines built from params.yaml."""

from __future__ import annotations

import dataclasses
import io as pyio
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import load_all
from PIL import Image
from scipy import fft, special, stats

from srlab import config, io
from srlab.data import degrade, ops, ugc
from srlab.data import kernels as dk

ROOT = Path(__file__).resolve().parents[1]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_images(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Natural-ish test images: upsampled noise, float32 (b, 3, size, size) in [0, 1]."""
    low = torch.rand(b, 3, size // 4, size // 4, generator=gen(seed))
    return F.interpolate(low, size=size, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def params() -> config.DegradeParams:
    return load_all(ROOT / "params.yaml").degrade


# --- kernels -----------------------------------------------------------------------------------


def grid(k: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(k) - (k - 1) / 2
    return np.meshgrid(r, r)  # x: column offset, y: row offset


def test_anisotropic_gaussian_is_the_bivariate_normal_density() -> None:
    sx, sy, theta = 2.0, 0.8, 0.6
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sx**2, sy**2]) @ rot.T
    x, y = grid(15)
    ref = stats.multivariate_normal([0, 0], cov).pdf(np.dstack([x, y]))
    ours = dk.gaussian_kernel(15, sx, sy, theta)
    assert ours.shape == (1, 15, 15) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours[0].numpy(), ref / ref.sum(), atol=1e-7)


def test_generalized_and_plateau_kernels_follow_their_formulas() -> None:
    x, y = grid(11)
    q = (x**2 + y**2) / 1.5**2
    for beta in (0.5, 2.0):
        gen_ref = np.exp(-0.5 * q**beta)
        plat_ref = 1 / (1 + q**beta)
        np.testing.assert_allclose(
            dk.generalized_gaussian_kernel(11, 1.5, beta=beta)[0], gen_ref / gen_ref.sum(), atol=1e-7
        )
        np.testing.assert_allclose(
            dk.plateau_kernel(11, 1.5, beta=beta)[0], plat_ref / plat_ref.sum(), atol=1e-7
        )
    assert torch.allclose(
        dk.generalized_gaussian_kernel(9, 1.2, 0.7, 0.3, 1.0), dk.gaussian_kernel(9, 1.2, 0.7, 0.3)
    )


def test_sinc_kernel_is_the_truncated_circular_lowpass() -> None:
    cutoff = 0.4 * math.pi
    x, y = grid(21)
    r = np.hypot(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    ref[10, 10] = cutoff**2 / (4 * np.pi)
    ours = dk.sinc_kernel(21, cutoff)[0]
    np.testing.assert_allclose(ours, ref / ref.sum(), atol=1e-7)
    assert ours.min() < 0  # the ringing lobes
    response = np.abs(np.fft.fft2(ours.numpy(), s=(256, 256)))
    assert abs(response[0, 0] - 1) < 1e-6 and response[0, 128] < 0.1  # passes DC, stops Nyquist


def test_random_blur_kernels_respect_sizes_and_types(params: config.DegradeParams) -> None:
    op = params.ops["blur1"]
    settings = {f.name: getattr(op, f.name) for f in dataclasses.fields(op) if f.name not in ("op", "prob")}
    kernels, records = dk.random_blur_kernel(64, generator=gen(1), **settings)
    again, same = dk.random_blur_kernel(64, generator=gen(1), **settings)
    assert torch.equal(kernels, again) and records == same
    assert kernels.shape == (64, 21, 21)
    torch.testing.assert_close(kernels.sum((1, 2)), torch.ones(64))
    for kernel, rec in zip(kernels, records, strict=True):
        pad = (21 - rec["size"]) // 2  # zero-padded around its own odd support
        outside = kernel.clone()
        outside[pad : 21 - pad, pad : 21 - pad] = 0
        assert rec["size"] % 2 == 1 and outside.eq(0).all() and kernel[10, 10] > 0
        assert rec["kernel"] in (*dk.KERNEL_TYPES, "sinc")
        assert torch.allclose(
            kernel, kernel.flip(0, 1), atol=1e-7
        )  # point-symmetric: correlation = convolution
        if rec["kernel"] in ("iso", "generalized_iso", "plateau_iso"):
            assert "theta" not in rec and torch.allclose(kernel, kernel.T, atol=1e-7)
    assert {r["kernel"] for r in records} >= {"iso", "aniso", "sinc"}


# --- filtering, USM ------------------------------------------------------------------------------


def correlate(x: torch.Tensor, kernel: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """Reference: pad, then F.conv2d (a correlation) of every channel of x (1, C, H, W) with kernel (k, k)."""
    r = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x, (r, r, r, r), mode=mode).transpose(0, 1), kernel[None, None]).transpose(0, 1)


def test_filter2d_matches_a_direct_correlation_with_reflect_borders() -> None:
    x = torch.rand(3, 3, 20, 26, generator=gen(2))
    kernels = torch.rand(3, 7, 7, generator=gen(3))  # asymmetric: tests the orientation
    ref = torch.cat([correlate(x[i : i + 1], kernels[i]) for i in range(3)])
    torch.testing.assert_close(dk.filter2d(x, kernels), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dk.filter2d(x, kernels[1]), dk.filter2d(x, kernels[1].expand(3, 7, 7)))
    tiny = torch.rand(1, 3, 4, 5, generator=gen(4))  # not above the kernel radius: replicate padding
    k = torch.rand(11, 11, generator=gen(5))
    torch.testing.assert_close(dk.filter2d(tiny, k), correlate(tiny, k, "replicate"), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="odd side"):
        dk.filter2d(x, torch.ones(4, 4))


def test_usm_sharpen_matches_its_definition() -> None:
    x = smooth_images(1, 32)
    kernel = dk.gaussian_kernel(9, 1.5)[0]
    residual = x - correlate(x, kernel)
    mask = correlate((residual.abs() * 255 > 2).float(), kernel)
    ref = mask * (x + 1.5 * residual).clamp(0, 1) + (1 - mask) * x
    torch.testing.assert_close(
        dk.usm_sharpen(x, 1.5, 1.5, threshold=2, kernel_size=9), ref, atol=1e-5, rtol=0
    )
    assert torch.equal(
        dk.usm_sharpen(x, 1.0, 1.5, threshold=255, kernel_size=9), x
    )  # nothing above threshold


# --- noise -----------------------------------------------------------------------------------------


def test_gaussian_noise_statistics_color_and_gray() -> None:
    img = torch.full((2, 3, 64, 64), 0.5)
    out = ops.add_gaussian_noise(img, torch.tensor([10.0, 20.0]), torch.tensor([False, True]), gen(6))
    noise = (out - img) * 255
    assert abs(noise[0].std().item() - 10) < 0.4 and abs(noise[1].std().item() - 20) < 0.8
    assert abs(noise.mean().item()) < 0.3
    assert not torch.equal(noise[0, 0], noise[0, 1]) and torch.equal(noise[1, 0], noise[1, 2])
    assert ops.add_gaussian_noise(img, 500.0, False, gen(6)).min() == 0  # clipped to [0, 1]


def test_poisson_noise_variance_follows_the_signal() -> None:
    img = torch.full((1, 3, 128, 128), 128 / 255)
    img.view(-1)[:256] = torch.arange(256) / 255  # all 256 levels present: L = 256
    noise = (ops.add_poisson_noise(img, 1.5, False, gen(8)) - img).view(-1)[256:]
    expected = 1.5**2 * (128 / 255) / 256  # Var = scale^2 * v / L
    assert abs(noise.var() / expected - 1) < 0.05 and abs(noise.mean()) < 1.5e-3
    gray = ops.add_poisson_noise(torch.full((1, 3, 16, 16), 0.5), 1.0, True, gen(9)) - 0.5
    assert torch.equal(gray[0, 0], gray[0, 1])


def test_random_noise_records_what_each_sample_got() -> None:
    img = torch.full((6, 3, 8, 8), 0.5)
    out, records = ops.random_add_noise(img, 0.5, (1.0, 30.0), (0.05, 3.0), 0.4, gen(10))
    out2, records2 = ops.random_add_noise(img, 0.5, (1.0, 30.0), (0.05, 3.0), 0.4, gen(10))
    assert torch.equal(out, out2) and records == records2
    for rec in records:
        assert rec["noise"] in ("gaussian", "poisson") and isinstance(rec["gray"], bool)
        assert 1 <= rec["sigma"] <= 30 if rec["noise"] == "gaussian" else 0.05 <= rec["scale"] <= 3


# --- resize, JPEG ------------------------------------------------------------------------------------


def test_resize_modes_and_random_resize_sizes() -> None:
    x = smooth_images(2, 32)
    torch.testing.assert_close(ops.resize(x, (16, 16), "area"), F.avg_pool2d(x, 2))
    assert ops.resize(x, (32, 32), "bicubic") is x
    out, recs = ops.random_resize(x, (1.0, 0.0, 0.0), (0.5, 1.5), ["bilinear"], "input", (8, 8), gen(11))
    f = recs[0]["factor"]
    assert recs[0]["direction"] == "up" and 1 <= f <= 1.5 and out.shape[-2:] == (int(32 * f), int(32 * f))
    out, recs = ops.random_resize(x, (0.0, 1.0, 0.0), (0.5, 1.5), ["area"], "target", (8, 8), gen(11))
    assert out.shape[-1] == int(8 * recs[1]["factor"]) and recs[0] == recs[1]  # one draw per batch


def test_jpeg_is_exactly_libjpeg_as_pil_writes_it() -> None:
    x = smooth_images(2, 40)
    x[1] = torch.rand(3, 40, 40, generator=gen(12))
    out = ops.jpeg_compress(x, torch.tensor([20, 90]))
    for i, quality in enumerate((20, 90)):
        buf = pyio.BytesIO()
        Image.fromarray(io.to_uint8(x[i])).save(buf, format="JPEG", quality=quality)
        ref = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float() / 255
        assert torch.equal(out[i], ref)
    _, recs = ops.random_jpeg_compress(x, (30, 95), gen(13))
    assert all(isinstance(r["quality"], int) and 30 <= r["quality"] <= 95 for r in recs)


# --- UGC --------------------------------------------------------------------------------------------


def test_chroma_subsampling_keeps_luma_and_2x2_colour_blocks() -> None:
    blocks = torch.rand(1, 3, 8, 8, generator=gen(14)) * 0.5 + 0.25
    x = F.interpolate(blocks, scale_factor=2, mode="nearest")  # colour constant on 2x2 blocks
    torch.testing.assert_close(ugc.chroma_subsample(x, "nearest"), x, atol=1e-6, rtol=0)
    y = smooth_images(1, 16, seed=3) * 0.5 + 0.25
    out = ugc.chroma_subsample(y, "bilinear")
    torch.testing.assert_close(ugc.rgb_to_ycbcr(out)[:, 0], ugc.rgb_to_ycbcr(y)[:, 0], atol=1e-6, rtol=0)
    assert (out - y).abs().max() > 1e-3
    torch.testing.assert_close(ugc.ycbcr_to_rgb(ugc.rgb_to_ycbcr(y)), y, atol=1e-6, rtol=0)


def test_codec_dct_quantizer_and_blocking() -> None:
    np.testing.assert_allclose(
        ugc.dct_matrix(8).numpy(), fft.dct(np.eye(8), norm="ortho", axis=0), atol=1e-12
    )
    assert ugc.qp_step(torch.tensor([4, 10, 28])).tolist() == [1.0, 2.0, 16.0]
    gray = smooth_images(1, 32).mean(1, keepdim=True).expand(1, 3, 32, 32).contiguous()
    fine = ugc.codec_compress(gray, 0, rounding=0.5)  # step 0.63 levels
    assert (fine - gray).abs().max() * 255 < 2.0
    ramp = torch.linspace(0.3, 0.5, 32).reshape(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    coarse = ugc.codec_compress(ramp, 45)  # AC steps of ~100 levels wipe the gentle ramp within blocks
    blocks = coarse[0, 0].reshape(4, 8, 4, 8).permute(0, 2, 1, 3).reshape(16, 64)
    assert (
        torch.allclose(blocks, blocks[:, :1].expand(16, 64), atol=1e-5) and blocks[:, 0].unique().numel() > 1
    )
    offsets = ugc.qp_offset_map(5, 3, (2, 2))
    assert torch.equal(offsets, ugc.qp_offset_map(5, 3, (2, 2))) and offsets.abs().max() <= 3
    with pytest.raises(ValueError, match="multiple of 2 x block"):
        ugc.codec_compress(gray, 30, block=8, macroblock=8)


def test_low_light_noise_model() -> None:
    x = smooth_images(1, 16)
    torch.testing.assert_close(ugc.srgb_to_linear(ugc.linear_to_srgb(x)), x, atol=1e-6, rtol=0)
    assert torch.allclose(ugc.low_light(x, 1.0, 0.0, 0.0, 0, gen(15)), x, atol=1e-6)
    flat = torch.full((1, 3, 128, 128), 0.6)
    e, shot, read = 0.2, 0.002, 0.003
    out = ugc.low_light(flat, e, shot, read, 0, gen(16))
    signal = ugc.srgb_to_linear(torch.tensor(0.6)) * e
    measured = (ugc.srgb_to_linear(out) * e).std()  # back in the dark capture's linear units
    assert abs(measured / math.sqrt(shot * signal + read**2) - 1) < 0.05
    stored = ugc.low_light(flat, e, 0.0, 0.0, 4, gen(16))  # 4-bit dark frame: posterized
    assert stored.unique().numel() == 1 and abs(stored.mean() - 0.6) > 1e-3


# --- pipelines --------------------------------------------------------------------------------------


def test_pipelines_sizes_determinism_and_records(params: config.DegradeParams) -> None:
    hr = smooth_images(2, 64, seed=5)
    for name, pipe in params.pipelines.items():
        first = degrade.degrade(hr, params, name, gen(20))
        second = degrade.degrade(hr, params, name, gen(20))
        assert torch.equal(first.lr, second.lr) and first.records == second.records
        side = 64 // params.scale if pipe.downsample else 64
        assert first.lr.shape == (2, 3, side, side)
        assert torch.equal(first.lr, (first.lr * 255).round() / 255)  # 8-bit levels
        steps = [r["step"] for r in first.records[0]]
        top = [s for s in steps if s in pipe.order]
        assert top == list(pipe.order)  # every step recorded, in order (choice branches nested after)
    other = degrade.degrade(hr, params, "wild", gen(21))
    assert not torch.equal(other.lr, degrade.degrade(hr, params, "wild", gen(20)).lr)


def test_pipeline_input_errors(params: config.DegradeParams) -> None:
    hr = smooth_images(1, 32)
    with pytest.raises(ValueError, match="unknown pipeline 'nope'"):
        degrade.degrade(hr, params, "nope", gen())
    with pytest.raises(ValueError, match=r"does not divide by degrade\.scale 4"):
        degrade.degrade(hr[..., :30], params, "synthetic", gen())
    with pytest.raises(ValueError, match=r"expected float images \(B, 3, H, W\)"):
        degrade.degrade(hr[:, :1], params, "wild", gen())


def test_sample_generator_is_stable_and_keyed() -> None:
    (g1, s1), (g2, s2) = (
        degrade.sample_generator(0, "hr", "a.png", 1),
        degrade.sample_generator(0, "hr", "a.png", 1),
    )
    assert s1 == s2 == 4914399366623323392 and torch.equal(
        torch.rand(3, generator=g1), torch.rand(3, generator=g2)
    )
    assert (
        degrade.sample_generator(0, "hr", "a.png", 2)[1] != s1
        and degrade.sample_generator(1, "hr", "a.png", 1)[1] != s1
    )


def test_gallery_covers_every_op(params: config.DegradeParams) -> None:
    image = smooth_images(1, 32)[0]
    titles = [t.split(" ")[0] for t, _ in degrade.operator_gallery(image, params, seed=0)]
    assert titles == [n for n, op in params.ops.items() if op.op != "choice"]
    assert next(t for t, _ in degrade.kernel_gallery(params.ops["blur1"])) == "iso"


# --- params validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["ops"]["blur1"].update(sigma=[3.0, 0.2]),
            r"degrade\.ops\.blur1\.sigma: a range \[lo, hi\] needs lo <= hi, got \[3\.0, 0\.2\]",
        ),
        (
            lambda d: d["ops"]["blur1"].update(kernel_size=[7, 20]),
            r"degrade\.ops\.blur1\.kernel_size: kernel sizes must be odd, got \[7, 20\]",
        ),
        (
            lambda d: d["ops"]["resize1"].update(updown=[0.5, 0.5, 0.5]),
            r"degrade\.ops\.resize1\.updown: probabilities must be >= 0 and sum to 1",
        ),
        (lambda d: d["ops"]["jpeg1"].update(op="jpg"), r"degrade\.ops\.jpeg1\.op: expected one of"),
        (
            lambda d: d["ops"]["jpeg1"].update(qualty=[1, 2]),
            r"degrade\.ops\.jpeg1\.qualty: unknown key, got \[1, 2\]",
        ),
        (
            lambda d: d["pipelines"]["wild"]["order"].append("blurr"),
            r"pipelines\.wild\.order: unknown op 'blurr'",
        ),
        (lambda d: d.update(eval_pipelines=["wlid"]), r"eval_pipelines: unknown pipeline 'wlid'"),
        (
            lambda d: d["train"].update(crop_size=130),
            r"degrade: train: crop_size 130 .* must be multiples of scale 4",
        ),
    ],
)
def test_bad_degrade_params_name_the_key(tmp_path: Path, edit, message: str) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw["degrade"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(config.ConfigError, match=message):
        load_all(tmp_path / "params.yaml")


# --- GPU -------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_operators_match_cpu_and_pipelines_are_deterministic(params: config.DegradeParams) -> None:
    x = smooth_images(2, 64, seed=7)
    cu = x.cuda()
    kernel = dk.gaussian_kernel(9, 1.5, 0.7, 0.4)
    same = {
        "filter2d": lambda t: dk.filter2d(t, kernel),
        "usm": lambda t: dk.usm_sharpen(t, 1.5, 1.5, 0, 9),
        "resize": lambda t: ops.resize(t, (40, 24), "bicubic"),
        "jpeg": lambda t: ops.jpeg_compress(t, torch.tensor([30, 80])),
        "chroma420": lambda t: ugc.chroma_subsample(t, "bilinear"),
        "codec": lambda t: ugc.codec_compress(t, torch.tensor([30, 40])),
    }
    for name, fn in same.items():
        out = fn(cu)
        assert out.is_cuda, name
        torch.testing.assert_close(out.cpu(), fn(x), atol=2e-5 if name != "codec" else 1e-3, rtol=0, msg=name)
    for name, pipe in params.pipelines.items():
        first = degrade.degrade(cu, params, name, torch.Generator("cuda").manual_seed(3))
        second = degrade.degrade(cu, params, name, torch.Generator("cuda").manual_seed(3))
        assert first.lr.is_cuda and torch.equal(first.lr, second.lr) and first.records == second.records
        assert first.lr.shape[-1] == (64 // params.scale if pipe.downsample else 64)
    with pytest.raises(ValueError, match="make it on the images' device"):
        degrade.degrade(cu, params, "wild", gen())
