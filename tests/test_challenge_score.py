"""The NTIRE 2025 challenge scorer (srlab.evaluation.challenge) against hand-computed values.

Reference values are computed here independently, straight from the formulas (explicit loops, skimage),
not with the module's own helpers.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlab.evaluation import challenge as ch

# ---------------------------------------------------------------------------------------------------
# independent references, written from the formulas


def ref_y(rgb: np.ndarray) -> np.ndarray:
    """Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, pixel by pixel."""
    h, w, _ = rgb.shape
    out = np.empty((h, w), dtype=np.float64)
    for i in range(h):
        for j in range(w):
            r, g, b = (float(v) for v in rgb[i, j])
            out[i, j] = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    return out


def ref_psnr(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    a = ref_y(sr[crop:-crop, crop:-crop] if crop else sr)
    b = ref_y(hr[crop:-crop, crop:-crop] if crop else hr)
    mse = sum((x - y) ** 2 for x, y in zip(a.ravel(), b.ravel(), strict=True)) / a.size
    return 10.0 * math.log10(255.0**2 / mse)


def ref_ssim(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """SSIM over explicit 11x11 windows inside the image ('valid'), Gaussian sigma 1.5, biased moments."""
    a = ref_y(sr[crop:-crop, crop:-crop] if crop else sr)
    b = ref_y(hr[crop:-crop, crop:-crop] if crop else hr)
    g = np.array(
        [[math.exp(-((u - 5) ** 2 + (v - 5) ** 2) / (2 * 1.5**2)) for v in range(11)] for u in range(11)]
    )
    g /= g.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            wa, wb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (g * wa).sum(), (g * wb).sum()
            va = (g * (wa - ma) ** 2).sum()
            vb = (g * (wb - mb) ** 2).sum()
            cov = (g * (wa - ma) * (wb - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def rand_pair(seed: int, size: int, noise: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(np.float64) + rng.normal(0, noise, hr.shape), 0, 255).round().astype(np.uint8)
    return sr, hr


# ---------------------------------------------------------------------------------------------------
# Y, PSNR, SSIM


def test_y_of_grey_is_studio_range():
    v = np.arange(256, dtype=np.uint8)
    grey = np.stack([v, v, v], axis=-1)[None]  # R = G = B = v  ->  Y = 16 + 219 v / 255
    np.testing.assert_allclose(ch.rgb_to_y(grey)[0], 16.0 + 219.0 * v / 255.0, rtol=0, atol=1e-12)
    assert ch.rgb_to_y(grey)[0, 0] == pytest.approx(16.0) and ch.rgb_to_y(grey)[0, 255] == pytest.approx(
        235.0
    )


@pytest.mark.parametrize("d", [1, 3, 10])
def test_psnr_constant_offset_by_hand(d):
    rng = np.random.default_rng(d)
    hr = rng.integers(20, 200, (16, 16, 3), dtype=np.uint8)
    sr = hr + np.uint8(d)  # every R, G, B up by d  ->  Y up by 219 d / 255 everywhere
    dy = 219.0 * d / 255.0
    assert ch.psnr_y(sr, hr) == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-6)
    # only G up by d  ->  Y up by 128.553 d / 255
    sr_g = hr.copy()
    sr_g[..., 1] += np.uint8(d)
    dy_g = 128.553 * d / 255.0
    assert ch.psnr_y(sr_g, hr) == pytest.approx(20 * math.log10(255 / dy_g), abs=1e-6)


@pytest.mark.parametrize(("seed", "crop"), [(0, 4), (1, 4), (2, 0), (3, 2)])
def test_psnr_matches_loop_reference(seed, crop):
    sr, hr = rand_pair(seed, 16)
    assert ch.psnr_y(sr, hr, crop_border=crop) == pytest.approx(ref_psnr(sr, hr, crop), abs=1e-6)


def test_psnr_identical_is_inf():
    _, hr = rand_pair(0, 12)
    assert ch.psnr_y(hr, hr) == math.inf


@pytest.mark.parametrize(
    ("seed", "size", "crop", "noise"), [(0, 24, 4, 12.0), (1, 26, 4, 3.0), (2, 16, 0, 30.0)]
)
def test_ssim_matches_loop_reference(seed, size, crop, noise):
    sr, hr = rand_pair(seed, size, noise)
    assert ch.ssim_y(sr, hr, crop_border=crop) == pytest.approx(ref_ssim(sr, hr, crop), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage_gaussian(seed):
    metrics = pytest.importorskip("skimage.metrics")
    sr, hr = rand_pair(seed, 32, 8.0)
    ref = metrics.structural_similarity(
        ref_y(sr[4:-4, 4:-4]),
        ref_y(hr[4:-4, 4:-4]),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ch.ssim_y(sr, hr) == pytest.approx(ref, abs=1e-6)


def test_identical_ssim_is_one():
    _, hr = rand_pair(5, 20)
    assert ch.ssim_y(hr, hr) == pytest.approx(1.0, abs=1e-12)


def test_border_crop_excludes_exactly_the_edges():
    _, hr = rand_pair(7, 24)
    sr = hr.copy()
    sr[:4] = 255 - sr[:4]  # change only the 4-pixel top, bottom, left and right bands
    sr[-4:] = 255 - sr[-4:]
    sr[:, :4] = 255 - sr[:, :4]
    sr[:, -4:] = 255 - sr[:, -4:]
    assert ch.psnr_y(sr, hr) == math.inf  # default crop_border = 4 removes every change
    assert ch.ssim_y(sr, hr) == pytest.approx(1.0, abs=1e-12)
    assert math.isfinite(ch.psnr_y(sr, hr, crop_border=3))  # one pixel less: the changes count
    assert ch.ssim_y(sr, hr, crop_border=0) < 0.99
    assert ch.psnr_y(sr, hr, crop_border=0) == pytest.approx(ref_psnr(sr, hr, 0), abs=1e-6)
    sr2 = hr.copy()
    sr2[4, 10] = 255 - sr2[4, 10]  # the first row kept by the crop
    assert math.isfinite(ch.psnr_y(sr2, hr))


def test_bad_inputs_raise():
    sr, hr = rand_pair(0, 24)
    with pytest.raises(ValueError, match="shapes differ"):
        ch.psnr_y(sr[:-1], hr)
    with pytest.raises(ValueError, match="uint8"):
        ch.psnr_y(sr.astype(np.float32) / 255, hr.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="11x11"):
        ch.ssim_y(sr[:16, :16], hr[:16, :16])  # 8x8 after the crop


# ---------------------------------------------------------------------------------------------------
# folders


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_layout(tmp_path: Path, names=("a.png", "b.png"), wild=("w1.png", "w2.png"), size=24):
    sub, tru = tmp_path / "sub", tmp_path / "truth"
    pairs = {}
    for k, name in enumerate(names):
        sr, hr = rand_pair(10 + k, size)
        _save(sub / "synthetic" / name, sr)
        _save(tru / "synthetic" / name, hr)
        pairs[name] = (sr, hr)
    for k, name in enumerate(wild):
        _save(sub / "wild" / name, rand_pair(30 + k, size)[0])
        _save(tru / "wild" / name, rand_pair(40 + k, size // 4)[0])  # LR inputs, never read
    return sub, tru, pairs


@pytest.fixture
def no_sockets(monkeypatch):
    """Any IP connection attempt fails the test."""

    def boom(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", boom)
    monkeypatch.setattr(socket, "getaddrinfo", boom)


class FakeMetrics:
    def __init__(self):
        self.values = {"lpips": 0.2, "musiq": 50.0, "maniqa": 0.4, "clipiqa": 0.5}
        self.calls: list[tuple] = []

    def __call__(self, name, device):
        def fn(*paths):
            assert all(isinstance(p, str) for p in paths)
            self.calls.append((name, *paths))
            return torch.tensor([[self.values[name]]])  # like pyiqa: a tensor of shape (1, 1)

        return fn


def test_score_folder_formula_with_fake_metrics(tmp_path):
    sub, tru, pairs = make_layout(tmp_path)
    fake = FakeMetrics()
    res = ch.score_folder(sub, tru, metrics_factory=fake)
    psnr = np.mean([ref_psnr(sr, hr, 4) for sr, hr in pairs.values()])
    ssim = np.mean([ref_ssim(sr, hr, 4) for sr, hr in pairs.values()])
    assert res.metrics["psnr"] == pytest.approx(psnr, abs=1e-6)
    assert res.metrics["ssim"] == pytest.approx(ssim, abs=1e-6)
    assert res.metrics["lpips"] == pytest.approx(0.2) and res.metrics["musiq"] == pytest.approx(50.0)
    expected = psnr + 10 * ssim - 10 * 0.2 + 0.1 * 50.0 + 10 * 0.4 + 10 * 0.5
    assert res.final == pytest.approx(expected, abs=1e-5)
    assert res.unavailable == {} and res.complete and res.partial_sum == res.final
    assert (res.n_synthetic, res.n_wild) == (2, 2)
    lp = [c for c in fake.calls if c[0] == "lpips"]  # LPIPS(sr, hr) on synthetic pairs
    assert [(Path(s).parent.name, Path(h).parent.parent.name) for _, s, h in lp] == [
        ("synthetic", "truth")
    ] * 2
    nr = [c for c in fake.calls if c[0] != "lpips"]  # NR metrics on the submission's wild images only
    assert len(nr) == 6 and all(Path(c[1]).parent == sub / "wild" for c in nr)


def test_missing_submission_file_is_named(tmp_path):
    sub, tru, _ = make_layout(tmp_path, names=("a.png", "b.png", "c.png"))
    (sub / "synthetic" / "b.png").unlink()
    with pytest.raises(ch.ChallengeLayoutError, match=r"missing from .*synthetic.*b\.png"):
        ch.score_folder(sub, tru, metrics_factory=FakeMetrics())


def test_extra_or_renamed_files_are_named(tmp_path):
    sub, tru, _ = make_layout(tmp_path)
    (sub / "synthetic" / "a.png").rename(sub / "synthetic" / "a2.png")
    with pytest.raises(ch.ChallengeLayoutError) as err:
        ch.match_layout(sub, tru)
    assert "a.png" in str(err.value) and "a2.png" in str(err.value)


def test_wild_names_checked_against_truth_when_present(tmp_path):
    sub, tru, _ = make_layout(tmp_path)
    (sub / "wild" / "w2.png").unlink()
    with pytest.raises(ch.ChallengeLayoutError, match=r"w2\.png"):
        ch.match_layout(sub, tru)
    pairs, wild = ch.match_layout(sub, tru, check_wild=False)  # the script's behaviour: score what is there
    assert len(pairs) == 2 and [p.name for p in wild] == ["w1.png"]


def test_only_png_and_jpg_are_read(tmp_path):
    sub, tru, _ = make_layout(tmp_path)
    (sub / "synthetic" / "notes.txt").write_text("x")
    _save(sub / "synthetic" / "x.bmp", rand_pair(0, 24)[0])
    pairs, _ = ch.match_layout(sub, tru)
    assert sorted(p[0].name for p in pairs) == ["a.png", "b.png"]


def test_missing_weights_make_final_none(tmp_path, no_sockets):
    sub, tru, pairs = make_layout(tmp_path)
    factory = ch.PyiqaFactory(hub_dir=tmp_path / "empty_hub", hf_cache=tmp_path / "empty_hf")
    res = ch.score_folder(sub, tru, metrics_factory=factory)
    assert res.final is None and not res.complete
    assert set(res.unavailable) == {"lpips", "musiq", "maniqa", "clipiqa"}
    assert all(res.metrics[m] is None for m in res.unavailable)
    assert "LPIPS_v0.1_alex" in res.unavailable["lpips"] and "missing" in res.unavailable["lpips"]
    assert "RN50.pt" in res.unavailable["clipiqa"]
    assert "ckpt_koniq10k.pt" in res.unavailable["maniqa"]
    assert res.metrics["psnr"] == pytest.approx(
        np.mean([ref_psnr(s, h, 4) for s, h in pairs.values()]), abs=1e-6
    )
    assert res.partial_terms == ["psnr", "ssim"]
    assert res.partial_sum == pytest.approx(res.metrics["psnr"] + 10 * res.metrics["ssim"])
    assert not (tmp_path / "empty_hub").exists()  # nothing created, nothing downloaded


def test_factory_failure_reason_is_kept_and_not_substituted(tmp_path):
    sub, tru, _ = make_layout(tmp_path)
    fake = FakeMetrics()

    def factory(name, device):
        if name == "maniqa":
            raise ch.MetricUnavailable("no maniqa weights here")
        return fake(name, device)

    res = ch.score_folder(sub, tru, metrics_factory=factory)
    assert res.final is None and res.unavailable == {"maniqa": "no maniqa weights here"}
    assert res.metrics["maniqa"] is None and res.metrics["clipiqa"] == pytest.approx(0.5)
    psnr, ssim = res.metrics["psnr"], res.metrics["ssim"]
    assert res.partial_sum == pytest.approx(psnr + 10 * ssim - 2.0 + 5.0 + 5.0)


def test_no_network_blocks_and_restores():
    original = socket.create_connection
    with ch.no_network() as refused, pytest.raises(OSError, match="network access disabled"):
        socket.create_connection(("example.invalid", 80), timeout=1)
    assert refused and socket.create_connection is original


def test_factory_needing_network_is_unavailable(tmp_path, monkeypatch):
    factory = ch.PyiqaFactory(hub_dir=tmp_path / "hub")
    monkeypatch.setattr(factory, "missing", lambda name: [])  # pretend every known file is there
    import pyiqa

    def create_metric(name, device=None):  # stands in for a download attempt inside pyiqa
        socket.create_connection(("huggingface.co", 443))

    monkeypatch.setattr(pyiqa, "create_metric", create_metric)
    with pytest.raises(ch.MetricUnavailable, match="needed the network"):
        factory("musiq", "cpu")


def test_required_files_follow_installed_pyiqa(tmp_path):
    names = {m: [p.name for p in ch.required_files(m, tmp_path, tmp_path)] for m in ch.LEARNED_METRICS}
    assert names == {
        "lpips": ["LPIPS_v0.1_alex-df73285e.pth", "alexnet-owt-7be5be79.pth"],
        "musiq": ["musiq_koniq_ckpt-e95806b9.pth"],
        "maniqa": ["ckpt_koniq10k.pt", "models--timm--vit_base_patch8_224.augreg2_in21k_ft_in1k"],
        "clipiqa": ["RN50.pt"],
    }


def test_reader_matches_cv2(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb = rand_pair(3, 20)[0]
    _save(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(
        ch.read_image_rgb(tmp_path / "x.png"), cv2.imread(str(tmp_path / "x.png"))[..., ::-1]
    )
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_array_equal(ch.read_image_rgb(tmp_path / "g.png"), np.stack([grey] * 3, axis=-1))
    Image.fromarray(np.full((8, 8), 1000, dtype=np.uint16)).save(tmp_path / "d.png")
    with pytest.raises(ValueError, match="8-bit"):
        ch.read_image_rgb(tmp_path / "d.png")


# ---------------------------------------------------------------------------------------------------
# command line


def test_main_reports_unavailable_and_writes_json(tmp_path, monkeypatch, capsys, no_sockets):
    sub, tru, _ = make_layout(tmp_path)
    empty = ch.PyiqaFactory(hub_dir=tmp_path / "hub", hf_cache=tmp_path / "hf")
    monkeypatch.setattr(ch, "PyiqaFactory", lambda: empty)
    out = tmp_path / "score.json"
    rc = ch.main([str(sub), "--truth", str(tru), "--device", "cpu", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    for label in ("PSNR", "SSIM", "LPIPS", "MUSIQ", "MANIQA", "CLIPIQA"):
        assert label in text
    assert "FinalScore unavailable" in text and "PARTIAL" in text
    data = json.loads(out.read_text())
    assert data["final"] is None and set(data["unavailable"]) == {"lpips", "musiq", "maniqa", "clipiqa"}
    assert data["metrics"]["psnr"] > 0


def test_main_complete_score_and_layout_error(tmp_path, monkeypatch, capsys):
    sub, tru, _ = make_layout(tmp_path)
    monkeypatch.setattr(ch, "PyiqaFactory", FakeMetrics)
    assert ch.main([str(sub), "--truth", str(tru)]) == 0
    assert "FinalScore" in capsys.readouterr().out
    (sub / "synthetic" / "a.png").unlink()
    assert ch.main([str(sub), "--truth", str(tru)]) == 2
    assert "a.png" in capsys.readouterr().err


def test_srlab_cli_dispatches_score(tmp_path, capsys) -> None:
    from srlab import cli

    assert cli.main(["score", str(tmp_path / "missing"), "--truth", str(tmp_path)]) == 2
    assert "srlab score: error" in capsys.readouterr().err
