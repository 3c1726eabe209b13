"""srlab.evaluation.metrics and weights: PSNR/SSIM vs scikit-image, scores, weights, no network, folders."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import socket
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import load_all
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srlab import io
from srlab.data import build as data
from srlab.evaluation import metrics
from srlab.evaluation import params as evaluation_params
from srlab.evaluation import weights as metric_weights
from srlab.evaluation.params import EvaluateParams

ROOT = Path(__file__).resolve().parents[1]
LEARNED = [n for n, spec in metric_weights.METRICS.items() if spec.files]
YIQ = np.array([0.299, 0.587, 0.114])
YCBCR = np.array([65.481, 128.553, 24.966])


def evaluate_params(hub: Path, **changes: typing.Any) -> EvaluateParams:
    """The project's evaluate section with the weight cache pointed at ``hub`` (empty = no weights)."""
    base = load_all(ROOT / "params.yaml").evaluate
    return dataclasses.replace(base, torch_hub_dir=str(hub), device="cpu", **changes)


def photo(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """A smooth-plus-texture 8-bit image (3, h, w) in [0, 1], like a decoded PNG."""
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bicubic")
    image = (smooth[0] + 0.05 * torch.randn(3, h, w, generator=g)).clamp(0, 1)
    return image.mul(255).round().div(255)


def distort(image: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (image + 0.04 * torch.randn(image.shape, generator=g)).clamp(0, 1).mul(255).round().div(255)


def hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).double().numpy()  # (3, H, W) -> (H, W, 3)


def write_set(folder: Path, images: dict[str, torch.Tensor]) -> Path:
    for name, image in images.items():
        io.write_image(image, folder / f"{name}.png")
    return folder


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Record (and refuse) every connection or DNS lookup, independently of srlab's own guard."""
    attempts: list[tuple] = []

    def record(*args: typing.Any, **kwargs: typing.Any) -> typing.NoReturn:
        attempts.append(args)
        raise OSError("test: network disabled")

    monkeypatch.setattr(socket.socket, "connect", record)
    monkeypatch.setattr(socket, "getaddrinfo", record)
    return attempts


# ---------------------------------------------------------------------------------------------
# PSNR / SSIM against independent implementations
# ---------------------------------------------------------------------------------------------


def test_psnr_matches_skimage_on_rgb_and_both_y_definitions() -> None:
    hr = photo(0)
    sr = distort(hr, 1)
    a, b = hwc(sr), hwc(hr)
    rgb = metrics.psnr(sr, hr, y_channel=False)
    assert rgb == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-9)
    yiq = metrics.psnr(sr, hr, y_channel=True, color_space="yiq")
    assert yiq == pytest.approx(peak_signal_noise_ratio(b @ YIQ, a @ YIQ, data_range=1.0), abs=1e-5)
    to_ycbcr = lambda x: (x @ YCBCR + 16) / 255  # noqa: E731  (BT.601 studio range, as MATLAB)
    ycbcr = metrics.psnr(sr, hr, y_channel=True, color_space="ycbcr")
    assert ycbcr == pytest.approx(peak_signal_noise_ratio(to_ycbcr(b), to_ycbcr(a), data_range=1.0), abs=1e-5)
    assert ycbcr - yiq == pytest.approx(20 * math.log10(255 / 219), abs=0.01)  # the documented offset
    cropped = metrics.psnr(sr, hr, y_channel=False, crop_border=4)
    assert cropped == pytest.approx(peak_signal_noise_ratio(b[4:-4, 4:-4], a[4:-4, 4:-4], data_range=1.0))


def test_ssim_matches_skimage_with_matching_protocol() -> None:
    hr = photo(2)
    sr = distort(hr, 3)
    a, b = hwc(sr) * 255, hwc(hr) * 255
    gaussian = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    rgb_ref = structural_similarity(b, a, channel_axis=2, **gaussian)
    assert metrics.ssim(sr, hr, y_channel=False) == pytest.approx(rgb_ref, abs=1e-7)
    crop_ref = structural_similarity(b[3:-3, 3:-3], a[3:-3, 3:-3], channel_axis=2, **gaussian)
    assert metrics.ssim(sr, hr, y_channel=False, crop_border=3) == pytest.approx(crop_ref, abs=1e-7)
    # Y is rounded to 8 bits; pyiqa computes it in float32, so an exact .5 tie (~1 pixel in 1000) may
    # round the other way than this float64 reference: one such pixel moves SSIM by ~2e-5 here.
    y_ref = structural_similarity(np.round(b @ YIQ), np.round(a @ YIQ), **gaussian)
    assert metrics.ssim(sr, hr, y_channel=True, color_space="yiq") == pytest.approx(y_ref, abs=1e-4)
    to_ycbcr = lambda x: np.round(x @ YCBCR / 255 + 16)  # noqa: E731
    ycbcr_ref = structural_similarity(to_ycbcr(b), to_ycbcr(a), **gaussian)
    assert metrics.ssim(sr, hr, y_channel=True, color_space="ycbcr") == pytest.approx(ycbcr_ref, abs=1e-4)


def test_set5_bicubic_x4_reproduces_the_published_baseline() -> None:
    """Set5 x4 bicubic, Y of YCbCr, 4-pixel border: 28.42 dB / 0.8104 in the SR literature (MATLAB)."""
    psnrs, ssims = [], []
    for path in io.list_images(ROOT / "data" / "set5"):
        hr = io.read_image(path)
        hr = hr[:, : hr.shape[1] // 4 * 4, : hr.shape[2] // 4 * 4]  # modcrop to the scale, as those tables
        sr = metrics.bicubic_upsample(data.bicubic_downsample(hr, 4).mul(255).round().div(255), 4)
        psnrs.append(metrics.psnr(sr, hr, y_channel=True, color_space="ycbcr", crop_border=4))
        ssims.append(metrics.ssim(sr, hr, y_channel=True, color_space="ycbcr", crop_border=4))
    assert len(psnrs) == 5
    assert np.mean(psnrs) == pytest.approx(28.42, abs=0.03) and np.mean(ssims) == pytest.approx(
        0.8104, abs=1e-3
    )


def test_our_psnr_agrees_with_pyiqas_psnr() -> None:
    """Our PSNR (computed here) against pyiqa's metric of that name. SSIM is not checked here: ours runs
    pyiqa's SSIM code, so the independent reference is scikit-image (test_ssim_matches_skimage_...)."""
    import pyiqa

    hr = photo(4)
    sr = distort(hr, 5)
    ref = {n: float(pyiqa.create_metric(n, device="cpu")(sr[None], hr[None])) for n in ("psnr", "psnry")}
    assert metrics.psnr(sr, hr, y_channel=False) == pytest.approx(ref["psnr"], abs=1e-3)  # pyiqa: MSE + 1e-8
    assert metrics.psnr(sr, hr, y_channel=True) == pytest.approx(ref["psnry"], abs=1e-3)


def test_identical_images_give_inf_psnr_and_unit_ssim() -> None:
    image = photo(6)
    for y_channel in (False, True):
        assert metrics.psnr(image, image.clone(), y_channel=y_channel) == math.inf
        assert metrics.ssim(image, image.clone(), y_channel=y_channel) == pytest.approx(1.0, abs=1e-12)


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"same size"):
        metrics.psnr(torch.rand(3, 16, 16), torch.rand(3, 16, 18), y_channel=False)
    with pytest.raises(ValueError, match=r"crop_border 8 leaves nothing of a 16x16 image"):
        metrics.psnr(torch.rand(3, 16, 16), torch.rand(3, 16, 16), y_channel=False, crop_border=8)
    with pytest.raises(ValueError, match=r"color_space 'yuv' unknown; use one of \['yiq', 'ycbcr'\]"):
        metrics.psnr(
            torch.rand(3, 16, 16),
            torch.rand(3, 16, 16),
            y_channel=True,
            color_space=typing.cast(typing.Any, "yuv"),
        )
    with pytest.raises(ValueError, match=r"SSIM needs at least 11x11"):
        metrics.ssim(torch.rand(3, 8, 40), torch.rand(3, 8, 40), y_channel=True)
    suite = metrics.MetricSuite(["psnr_y"], evaluate_params(tmp_path))
    with pytest.raises(ValueError, match=r"SR: values must lie in \[0, 1\], got \[1\.5, 1\.5\]"):
        suite.score(torch.full((3, 16, 16), 1.5), torch.rand(3, 16, 16))
    with pytest.raises(
        ValueError, match=r"HR: expected float RGB \(3, H, W\), got torch.uint8 \(3, 16, 16\)"
    ):
        suite.score(torch.rand(3, 16, 16), torch.zeros(3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"unknown or repeated \['psnr'\]; known: psnr_rgb"):
        metrics.MetricSuite(["psnr"], evaluate_params(tmp_path))


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def test_challenge_score_arithmetic(tmp_path: Path) -> None:
    params = evaluate_params(tmp_path)
    means = {"psnr_rgb": 25.0, "psnr_y": 26.5, "ssim_y": 0.7, "lpips": 0.3, "musiq": 60.0, "maniqa": 0.5}
    means |= {"clipiqa": 0.6, "psnr_ntire": 27.0, "ssim_ntire": 0.75}
    names = list(means)
    scores, reasons = metrics.compute_scores(means, names, {}, params)
    assert reasons == {}
    # the organisers' terms: psnr_ntire + 10 ssim_ntire - 10 lpips
    assert scores["score_fr"] == pytest.approx(27 + 10 * 0.75 - 10 * 0.3)  # 31.5
    assert scores["score_nr"] == pytest.approx(0.1 * 60 + 10 * 0.5 + 10 * 0.6)  # 17
    assert scores["challenge"] == pytest.approx(48.5)
    # the pyiqa variant: evaluate.score_psnr / score_ssim
    assert scores["score_fr_pyiqa"] == pytest.approx(25 + 10 * 0.7 - 10 * 0.3)  # 29
    assert scores["challenge_pyiqa"] == pytest.approx(46.0)
    y_params = dataclasses.replace(params, score_psnr="psnr_y")
    y_scores = metrics.compute_scores(means, names, {}, y_params)[0]
    assert y_scores["score_fr_pyiqa"] == pytest.approx(30.5) and y_scores["score_fr"] == scores["score_fr"]
    # Only the parts whose metrics were requested apply; an unavailable term blocks its scores.
    fr_only, why = metrics.compute_scores(means, ["psnr_rgb", "ssim_y", "lpips"], {"lpips": "x"}, params)
    assert fr_only == {} and why == {"score_fr_pyiqa": "needs lpips, unavailable (see there)"}
    assert metrics.protocol(params, names)["score_fr_pyiqa"] == "1*psnr_rgb + 10*ssim_y - 10*lpips"
    assert metrics.protocol(params, names)["score_fr"] == "1*psnr_ntire + 10*ssim_ntire - 10*lpips"


def test_challenge_score_across_a_paired_and_a_wild_set() -> None:
    fr = {"set": "syn", "score_fr": 29.0, "score_fr_pyiqa": 28.0}
    both = metrics.challenge_score(fr, {"set": "wild", "score_nr": 17.0})
    assert both == {"fr_set": "syn", "nr_set": "wild", "score_fr": 29.0, "score_nr": 17.0, "challenge": 46.0,
                    "score_fr_pyiqa": 28.0, "challenge_pyiqa": 45.0}  # fmt: skip
    half = metrics.challenge_score(fr, {"set": "wild", "unavailable": {"score_nr": "needs musiq"}})
    assert "challenge" not in half and half["unavailable"] == {
        "challenge": "score_nr of wild: needs musiq",
        "challenge_pyiqa": "score_nr of wild: needs musiq",
    }


# ---------------------------------------------------------------------------------------------
# Learned metrics: local cache only, never the network
# ---------------------------------------------------------------------------------------------


def test_missing_weights_make_metric_and_its_scores_unavailable(tmp_path: Path, no_sockets: list) -> None:
    suite = metrics.MetricSuite(["psnr_rgb", "ssim_y", "lpips"], evaluate_params(tmp_path / "hub"))
    assert set(suite.metrics) == {"psnr_rgb", "ssim_y"}  # weight-free metrics always run
    reason = suite.unavailable["lpips"]
    for f in metric_weights.METRICS["lpips"].files:
        assert f"missing {tmp_path / 'hub' / f.path} (download {f.url})" in reason
    hr = photo(7)
    result = suite.evaluate_images(
        [("a", distort(hr, 8))], write_set(tmp_path / "hr", {"a": hr}), set_name="s", method="m"
    )
    summary = result.summary
    assert "lpips" not in summary and "score_fr_pyiqa" not in summary
    assert summary["unavailable"] == {
        "lpips": reason,
        "score_fr_pyiqa": "needs lpips, unavailable (see there)",
    }
    assert no_sockets == []


def test_building_every_learned_metric_on_an_empty_cache_never_touches_the_network(
    tmp_path: Path, no_sockets: list
) -> None:
    params = evaluate_params(tmp_path)
    suite = metrics.MetricSuite(LEARNED, params)
    assert suite.metrics == {} and set(suite.unavailable) == set(LEARNED)
    for name in LEARNED:
        assert (
            "missing" in suite.unavailable[name]
            and "tried to reach the network" not in suite.unavailable[name]
        )
    assert no_sockets == []
    table = metric_weights.weights_table(params)
    assert {row["metric"] for row in table} == set(LEARNED) and {row["present"] for row in table} == {"False"}


def test_no_network_guard_refuses_connections_and_restores_socket() -> None:
    before = socket.socket.connect, socket.getaddrinfo
    with (
        metric_weights.no_network("unit test"),
        pytest.raises(metric_weights.NetworkBlocked, match="unit test tried"),
    ):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
    assert (socket.socket.connect, socket.getaddrinfo) == before


def test_learned_metrics_load_strictly_from_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_sockets: list
) -> None:
    """Fake HyperIQA and MUSIQ checkpoints in the pyiqa layout: built offline, weights are the files'."""
    import timm
    from pyiqa.archs.hypernet_arch import HyperNet
    from pyiqa.archs.musiq_arch import MUSIQ

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **kw: create(*a, **{**kw, "pretrained": False}))
    hyper = HyperNet(pretrained=False).state_dict()
    monkeypatch.setattr(timm, "create_model", create)  # from here on srlab alone keeps timm offline
    (tmp_path / "pyiqa").mkdir()
    torch.save({"params": hyper}, tmp_path / metric_weights.METRICS["hyperiqa"].files[0].path)
    torch.save(MUSIQ(pretrained=False).state_dict(), tmp_path / metric_weights.METRICS["musiq"].files[0].path)

    suite = metrics.MetricSuite(["hyperiqa"], evaluate_params(tmp_path))
    assert suite.unavailable == {}
    loaded = suite.pyiqa_models["hyperiqa"].net.state_dict()
    assert loaded.keys() == hyper.keys() and all(torch.equal(loaded[k], v) for k, v in hyper.items())
    assert timm.create_model is create and torch.hub.get_dir() != str(tmp_path)  # patches undone
    musiq = metrics.MetricSuite(["musiq"], evaluate_params(tmp_path))
    (score,) = musiq.score(photo(9, 32, 32)).values()  # the no-reference call path, end to end
    assert math.isfinite(score) and no_sockets == []


def test_checksums_and_imports_are_checked_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "RN50.pt").write_bytes(b"truncated download")

    def broken_import(name: str) -> typing.NoReturn:
        raise ModuleNotFoundError("No module named 'pkg_resources'")

    monkeypatch.setattr(metric_weights.importlib, "import_module", broken_import)
    reason = metric_weights.missing_weights("clipiqa", tmp_path)
    assert f"{tmp_path / 'clip' / 'RN50.pt'} has the wrong sha256" in reason
    assert "imports `clip`, which fails (No module named 'pkg_resources'); install setuptools<81" in reason


def test_corrupt_weight_file_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "pyiqa").mkdir()
    (tmp_path / metric_weights.METRICS["musiq"].files[0].path).write_bytes(b"not a checkpoint")
    suite = metrics.MetricSuite(["musiq"], evaluate_params(tmp_path))
    assert suite.unavailable["musiq"].startswith(f"pyiqa could not build it from {tmp_path}")


def test_metric_table_matches_config_and_pyiqa_source() -> None:
    import pyiqa

    assert pyiqa.__version__ == metrics.PYIQA_VERSION
    assert set(typing.get_args(evaluation_params.MetricName)) == set(metric_weights.METRICS)
    assert set(typing.get_args(evaluation_params.NoRefMetric)) == {
        n for n, s in metric_weights.METRICS.items() if s.mode == "NR"
    }
    archs = Path(pyiqa.__file__).parent / "archs"
    source = "".join(p.read_text() for p in archs.glob("*_arch.py")) + (archs / "clip_model.py").read_text()
    for name in LEARNED:
        for f in metric_weights.METRICS[name].files:
            if f.path.startswith("pyiqa/"):
                assert f"get_url_from_name('{Path(f.path).name}')" in source, f.path
    assert metric_weights.METRICS["clipiqa"].files[0].url in source


# ---------------------------------------------------------------------------------------------
# Folders, baselines, tables
# ---------------------------------------------------------------------------------------------


def test_folder_evaluation_end_to_end(tmp_path: Path) -> None:
    hr = {"bird": photo(10, 40, 48), "zebra": photo(11, 56, 40), "ant": photo(12, 32, 32)}
    sr = {name: distort(image, 20 + i) for i, (name, image) in enumerate(hr.items())}
    hr_dir, sr_dir = write_set(tmp_path / "hr", hr), write_set(tmp_path / "sr", sr)
    params = evaluate_params(tmp_path / "empty-hub", crop_border=2)
    suite = metrics.MetricSuite(params.paired_metrics, params)
    result = suite.evaluate_folder(sr_dir, hr_dir, set_name="set3", method="noisy")

    assert [row["image"] for row in result.rows] == ["ant", "bird", "zebra"]  # sorted by file name
    bird = result.rows[1]  # against scikit-image on the files, with the 2 px border cut
    a, b = (np.asarray(Image.open(d / "bird.png").convert("RGB"))[2:-2, 2:-2] for d in (sr_dir, hr_dir))
    assert bird["psnr_rgb"] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-6)
    gaussian = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    reference = structural_similarity(b.astype(float), a.astype(float), channel_axis=2, **gaussian)
    assert bird["ssim_rgb"] == pytest.approx(reference, abs=1e-6)
    # the organisers' PSNR by hand: BT.601 Y (unrounded) of the 8-bit files, 4 px cut whatever crop_border
    a8, b8 = (np.asarray(Image.open(d / "bird.png").convert("RGB")).astype(float) for d in (sr_dir, hr_dir))
    luma = lambda x: 16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255  # noqa: E731
    mse = np.mean((luma(a8)[4:-4, 4:-4] - luma(b8)[4:-4, 4:-4]) ** 2)
    assert bird["psnr_ntire"] == pytest.approx(20 * np.log10(255 / np.sqrt(mse)), abs=1e-9)
    summary = result.summary
    assert summary["n_images"] == 3
    assert summary["psnr_rgb"] == pytest.approx(np.mean([r["psnr_rgb"] for r in result.rows]))
    assert set(summary["unavailable"]) == {"lpips", "score_fr", "score_fr_pyiqa"}
    assert summary["protocol"]["crop_border"] == 2 and "YIQ" in summary["protocol"]["y_channel"]

    rows = list(csv.DictReader(metrics.write_rows_csv(result.rows, tmp_path / "out" / "rows.csv").open()))
    assert rows[0]["set"] == "set3" and float(rows[1]["psnr_rgb"]) == bird["psnr_rgb"]  # full precision
    tree = metrics.metrics_tree([result])
    written = json.loads(metrics.write_json(tree, tmp_path / "out" / "metrics.json").read_text())
    assert written["set3"]["noisy"]["psnr_y"] == pytest.approx(summary["psnr_y"])
    assert "set" not in written["set3"]["noisy"]


def test_bicubic_baseline_matches_pil_and_sits_in_the_same_table(tmp_path: Path) -> None:
    hr = {"a": photo(30, 32, 48), "b": photo(31, 40, 40)}
    lr = {name: data.bicubic_downsample(image, 4) for name, image in hr.items()}
    lr_dir, hr_dir = write_set(tmp_path / "lr", lr), write_set(tmp_path / "hr", hr)
    small = io.read_image(lr_dir / "a.png")
    exact = metrics.bicubic_upsample(small, 4, quantize=False)
    # PIL's float ("F") bicubic, one channel at a time: the same Keys (a = -0.5) kernel and borders.
    pil = [Image.fromarray(c.numpy(), mode="F").resize((48, 32), Image.BICUBIC) for c in small]
    reference = torch.stack([torch.from_numpy(np.array(c)) for c in pil]).clamp(0, 1)
    assert exact.shape == (3, 32, 48) and (exact - reference).abs().max() < 1e-5
    up = metrics.bicubic_upsample(small, 4)
    assert torch.equal(up, exact.mul(255).round().div(255))  # 8-bit values, like any method's files
    params = evaluate_params(tmp_path / "hub")
    suite = metrics.MetricSuite(["psnr_y", "ssim_y"], params)
    result = suite.evaluate_images(metrics.bicubic_images(lr_dir, 4), hr_dir, set_name="s", method="bicubic")
    assert [r["image"] for r in result.rows] == ["a", "b"] and math.isfinite(result.summary["psnr_y"])


def test_pairing_and_size_errors_name_files_and_fix(tmp_path: Path) -> None:
    hr_dir = write_set(tmp_path / "hr", {"a": photo(40, 32, 32), "b": photo(41, 32, 32)})
    suite = metrics.MetricSuite(["psnr_rgb"], evaluate_params(tmp_path / "hub"))
    small = write_set(tmp_path / "lr", {"a": torch.rand(3, 8, 8), "b": torch.rand(3, 8, 8)})
    with pytest.raises(ValueError, match=r"lr/a\.png is 8x8 but HR .*hr/a\.png is 32x32.*1/4 of HR"):
        suite.evaluate_folder(small, hr_dir, set_name="s", method="m")
    partial = write_set(tmp_path / "partial", {"a": photo(40, 32, 32), "c": photo(42, 32, 32)})
    with pytest.raises(ValueError, match=r"no SR output for \['b'\], no HR for \['c'\]"):
        suite.evaluate_folder(partial, hr_dir, set_name="s", method="m")
    io.write_image(photo(43, 32, 32), partial / "a.jpg")
    with pytest.raises(ValueError, match=r"a\.jpg and a\.png share the name 'a'|a\.png and a\.jpg share"):
        metrics.images_by_name(partial)
    with pytest.raises(ValueError, match=r"need an HR reference"):
        suite.evaluate_folder(hr_dir, set_name="s", method="m")
    with pytest.raises(FileNotFoundError, match=r"no outputs of esrgan for set set5"):
        metrics.method_dirs(
            dataclasses.replace(suite.params, other_methods={"esrgan": str(tmp_path)}), "set5"
        )


def test_wild_set_without_weights_reports_every_metric_and_score(tmp_path: Path) -> None:
    params = evaluate_params(tmp_path / "hub")
    suite = metrics.MetricSuite(params.wild_metrics, params)
    image = photo(50, 96, 128)  # NIQE's smallest: one 96 px block
    result = suite.evaluate_folder(write_set(tmp_path / "sr", {"x": image}), set_name="wild", method="m")
    learned = [m for m in params.wild_metrics if metric_weights.METRICS[m].files]
    measured = {k: v for k, v in result.rows[0].items() if k not in ("set", "method", "image")}
    assert set(measured) == set(params.wild_metrics) - set(learned)  # piqe needs no weights
    assert set(result.summary["unavailable"]) == {*learned, "score_nr"}
    written = json.loads(metrics.write_json({"v": [math.inf, -math.inf]}, tmp_path / "j.json").read_text())
    assert written == {"v": ["inf", "-inf"]}


def test_piqe_runs_offline_and_prefers_the_clean_photo(tmp_path: Path) -> None:
    """PIQE, the wild sets' no-reference metric that needs no weights: noise and blocking score worse."""
    params = evaluate_params(tmp_path / "hub")
    suite = metrics.MetricSuite(["piqe"], params)
    clean = io.read_image(Path(__file__).resolve().parents[1] / "data" / "set5" / "baby.png")[:, :256, :256]
    noisy = (clean + 0.08 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    blocky = F.interpolate(F.avg_pool2d(clean[None], 8), scale_factor=8, mode="nearest")[0]
    scores = [suite.score(image)["piqe"] for image in (clean, noisy, blocky)]
    assert scores[0] < scores[1] and scores[0] < scores[2], scores
    assert not suite.unavailable


def test_niqe_runs_offline_on_the_bundled_basicsr_parameters(tmp_path: Path) -> None:
    """NIQE with BasicSR's pristine model, bundled: clean BSD68 photos score about 2-4 with those parameters
    (../shared/OFFLINE.md: 2.8-4.0 on the photos checked there), and noise or blur make the score worse."""
    params = evaluate_params(tmp_path / "hub")  # an empty hub: NIQE needs nothing from it
    suite = metrics.MetricSuite(["niqe"], params)
    assert not suite.unavailable
    g = torch.Generator().manual_seed(0)
    for name in ("101085", "12084", "108082"):
        clean = io.read_image(ROOT / "data" / "bsd68" / f"{name}.png")
        noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
        blurred = F.avg_pool2d(F.pad(clean[None], (2, 2, 2, 2), mode="replicate"), 5, 1)[0]
        scores = [suite.score(image)["niqe"] for image in (clean, noisy, blurred)]
        assert 2.0 <= scores[0] <= 4.0, (name, scores)
        assert scores[1] > scores[0] + 3 and scores[2] > scores[0] + 1, (name, scores)
    with pytest.raises(ValueError, match=r"\['niqe'\] need images of at least \[96\] px"):
        suite.score(photo(1, 64, 200))
