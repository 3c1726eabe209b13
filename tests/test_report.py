"""srlab.evaluation.evaluate and srlab.reporting: the evaluate and report stages on a tiny fake build."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import load_all
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from srlab import config, io
from srlab.config import Params
from srlab.data import build as data
from srlab.data.eval_sets import EvalSet, find_eval_sets
from srlab.evaluation import evaluate
from srlab.reporting import document as report_doc
from srlab.reporting import figures as report
from srlab.reporting import tables
from srlab.reporting.markdown import markdown_table

ROOT = Path(__file__).resolve().parents[1]


def photo(seed: int, h: int = 32, w: int = 32) -> torch.Tensor:
    """A smooth-plus-texture 8-bit image (3, h, w) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bicubic")
    return (smooth[0] + 0.05 * torch.randn(3, h, w, generator=g)).clamp(0, 1).mul(255).round().div(255)


def quantized(image: torch.Tensor) -> torch.Tensor:
    return image.clamp(0, 1).mul(255).round().div(255)


def tiny_params(build: Path) -> Params:
    """The project's params with a tiny metric list, an empty weight cache and small figures."""
    p = load_all(ROOT / "params.yaml")
    ev = dataclasses.replace(
        p.evaluate,
        paired_metrics=["psnr_rgb", "ssim_y", "psnr_ntire", "ssim_ntire", "lpips"],
        wild_metrics=["musiq"],
        torch_hub_dir=str(build / "empty-hub"),
        device="cpu",
        other_methods={"esrgan": str(build / "esrgan")},
    )
    rp = dataclasses.replace(p.report, grid_images=1, crop_size=16, dpi=30, panel_inches=1.0, loss_window=3)
    return p.replace(evaluate=ev, report=rp)


@pytest.fixture(scope="module")
def fake_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """degrade/ (a paired x4 set and a wild x1 set with manifest), infer/ and another method's outputs
    for the paired set only; evaluated once for the tests below."""
    build = tmp_path_factory.mktemp("build")
    hr = {"a": photo(1, 32, 48), "b": photo(2, 40, 32)}
    lr = {k: quantized(data.bicubic_downsample(v, 4)) for k, v in hr.items()}
    ours = {
        k: quantized(v + 0.03 * torch.randn(v.shape, generator=torch.Generator().manual_seed(5)))
        for k, v in hr.items()
    }
    for name in hr:
        io.write_image(hr[name], build / "degrade/eval/s_synthetic/hr" / f"{name}.png")
        io.write_image(lr[name], build / "degrade/eval/s_synthetic/lr" / f"{name}.png")
        io.write_image(photo(7, 24, 24), build / "degrade/eval/s_wild/lr" / f"{name}.png")
        io.write_image(ours[name], build / "infer/s_synthetic" / f"{name}.png")
        io.write_image(hr[name], build / "esrgan/s_synthetic" / f"{name}.png")  # a perfect "other method"
    eval_sets = {
        "s_synthetic": {"source": "s", "kind": "synthetic", "scale": 4, "paired": True},
        "s_wild": {"source": "s", "kind": "wild", "scale": 1, "paired": False},
    }
    (build / "degrade/manifest.json").write_text(json.dumps({"eval_sets": eval_sets, "samples": []}))
    params = tiny_params(build)
    logged: list[str] = []
    sets = find_eval_sets(build / "degrade")
    evaluation = evaluate.evaluate_sets(sets, build / "infer", params.evaluate, log=logged.append)
    evaluate.write_outputs(evaluation, build / "evaluate")
    return {"build": build, "params": params, "hr": hr, "lr": lr, "ours": ours, "log": logged}


# ---------------------------------------------------------------------------------------------
# The evaluate stage
# ---------------------------------------------------------------------------------------------


def test_evaluate_stage_writes_metrics_against_reference_values(fake_build: dict[str, Any]) -> None:
    build, hr = fake_build["build"], fake_build["hr"]
    document = json.loads((build / "evaluate/metrics.json").read_text())
    paired = document["sets"]["s_synthetic"]
    assert list(paired) == ["srlab", "bicubic", "esrgan"]  # ours first, then the baselines

    # references from other libraries: scikit-image's PSNR on the files, PIL's bicubic for the baseline
    def files(folder: str) -> dict[str, np.ndarray]:
        return {k: np.asarray(Image.open(build / folder / f"{k}.png").convert("RGB")) for k in hr}

    truth, sr = files("degrade/eval/s_synthetic/hr"), files("infer/s_synthetic")
    ref_ours = np.mean([peak_signal_noise_ratio(truth[k], sr[k], data_range=255) for k in hr])
    small = {k: Image.open(build / "degrade/eval/s_synthetic/lr" / f"{k}.png").convert("RGB") for k in hr}
    bicubic = Image.Resampling.BICUBIC
    pil = {k: np.asarray(im.resize((im.width * 4, im.height * 4), bicubic)) for k, im in small.items()}
    ref_bicubic = np.mean([peak_signal_noise_ratio(truth[k], pil[k], data_range=255) for k in hr])
    assert paired["srlab"]["psnr_rgb"] == pytest.approx(ref_ours, abs=1e-6)  # float32 file levels
    assert paired["bicubic"]["psnr_rgb"] == pytest.approx(ref_bicubic, abs=0.02)  # PIL rounds in integers
    assert paired["esrgan"]["psnr_rgb"] == "inf" and paired["esrgan"]["ssim_y"] == pytest.approx(1.0)
    assert paired["srlab"]["n_images"] == 2 and paired["srlab"]["lpips"] is None
    assert paired["srlab"]["score_fr"] is None  # needs lpips: not computed from the rest
    assert (
        list(document["sets"]["s_wild"]) == ["bicubic"]
        and document["sets"]["s_wild"]["bicubic"]["musiq"] is None
    )
    unavailable = document["unavailable"]
    assert (
        unavailable["lpips"].startswith(f"missing {build / 'empty-hub'}")
        and "download https://" in unavailable["lpips"]
    )
    assert unavailable["score_fr"] == "needs lpips, unavailable (see there)"
    assert document["challenge"] == {
        "s": {
            "bicubic": dict.fromkeys(
                ["score_fr", "score_nr", "challenge", "score_fr_pyiqa", "challenge_pyiqa"]
            )
        }
    }
    assert unavailable["score_fr_pyiqa"] == "needs lpips, unavailable (see there)"
    assert "score_fr of s_synthetic: needs lpips" in unavailable["challenge"]


def test_evaluate_stage_side_files_and_skip_reasons(fake_build: dict[str, Any]) -> None:
    build = fake_build["build"]
    summary = json.loads((build / "evaluate/summary.json").read_text())
    assert summary["sets"]["s_synthetic"]["scale"] == 4 and summary["sets"]["s_wild"]["kind"] == "wild"
    assert summary["sets"]["s_wild"]["paired"] == "LR only"
    skipped = summary["skipped"]["s_wild"]
    assert (
        skipped["srlab"]
        == f"{build / 'infer/s_wild'} does not exist: the infer stage wrote no outputs for this set"
    )
    assert skipped["esrgan"].startswith(f"{build / 'esrgan/s_wild'}: no outputs of esrgan for set s_wild")
    assert any("s_wild: srlab skipped" in line for line in fake_build["log"])
    assert summary["results"]["s_synthetic"]["srlab"]["protocol"]["crop_border"] == 0
    rows = list(csv.DictReader((build / "evaluate/per_image.csv").open()))
    assert [(r["set"], r["method"]) for r in rows].count(("s_synthetic", "bicubic")) == 2 and len(rows) == 8
    plot = list(csv.DictReader((build / "evaluate/plots/psnr_rgb.csv").open()))
    assert {r["label"] for r in plot} == {"s_synthetic / srlab", "s_synthetic / bicubic"}  # inf left out
    document = json.loads((build / "evaluate/metrics.json").read_text())
    ours = next(r for r in plot if r["method"] == "srlab")
    assert float(ours["value"]) == document["sets"]["s_synthetic"]["srlab"]["psnr_rgb"]


def test_find_eval_sets_reads_kinds_from_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no degrade manifest; run the degrade stage first"):
        find_eval_sets(tmp_path)
    io.write_image(photo(3, 32, 32), tmp_path / "eval/p_x/hr/x.png")
    io.write_image(photo(3, 16, 16), tmp_path / "eval/p_x/lr/x.png")
    io.write_image(photo(4, 16, 16), tmp_path / "eval/w/lr/x.png")
    records = {  # folder names say nothing: the kind and scale are the manifest's
        "p_x": {"source": "p", "kind": "synthetic", "scale": 2, "paired": True},
        "w": {"source": "p", "kind": "wild", "scale": 1, "paired": False},
    }
    (tmp_path / "manifest.json").write_text(json.dumps({"eval_sets": records}))
    found = find_eval_sets(tmp_path)
    assert [(s.name, s.kind, s.source, s.scale, s.paired) for s in found] == [
        ("p_x", "synthetic", "p", 2, True), ("w", "wild", "p", 1, False)
    ]  # fmt: skip
    assert evaluate.challenge_groups(found) == {"p": ("p_x", "w")}
    shutil.rmtree(tmp_path / "eval/p_x/hr")
    with pytest.raises(FileNotFoundError, match=r"eval/p_x: the manifest records HR images but no hr/"):
        find_eval_sets(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"samples": []}))
    with pytest.raises(ValueError, match=r"no eval_sets record .*run `dvc repro degrade`"):
        find_eval_sets(tmp_path)


def test_method_folders_errors(tmp_path: Path) -> None:
    params = tiny_params(tmp_path).evaluate
    eval_set = EvalSet("p", tmp_path / "eval/p/lr", tmp_path / "eval/p/hr", 2, "synthetic", "p")
    with pytest.raises(
        FileNotFoundError, match=r"evaluate.other_methods.esrgan = '.*esrgan': folder not found"
    ):
        evaluate.method_folders(eval_set, tmp_path / "infer", params)
    reserved = dataclasses.replace(params, other_methods={"bicubic": str(tmp_path)})
    with pytest.raises(ValueError, match=r"other_methods.bicubic: 'bicubic' is reserved"):
        evaluate.method_folders(eval_set, tmp_path / "infer", reserved)
    _, skipped = evaluate.method_folders(
        eval_set, tmp_path / "infer", dataclasses.replace(params, other_methods={})
    )
    assert skipped == {
        "srlab": f"{tmp_path / 'infer'} does not exist: the infer stage has not run (`dvc repro infer`)"
    }


def test_challenge_groups_pair_one_paired_with_one_wild_set() -> None:
    def s(name: str, source: str, paired: bool) -> EvalSet:
        kind = "synthetic" if paired else "wild"
        return EvalSet(name, Path("lr"), Path("hr") if paired else None, 4 if paired else 1, kind, source)

    sets = [s("a", "set5", True), s("b", "set5", False), s("c", "val", True), s("d", "lone", True)]
    assert evaluate.challenge_groups(sets) == {"set5": ("a", "b")}  # by source set, not by name


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def test_results_tables_show_unavailable_and_direction() -> None:
    methods = {
        "srlab": {"n_images": 3, "psnr_y": 25.123456, "lpips": None},
        "bicubic": {"n_images": 3, "psnr_y": "inf"},
    }
    rows = tables.results_rows(methods)
    assert rows[0] == {"method": "srlab", "images": "3", "psnr_y ↑": "25.12", "lpips ↓": "n/a"}
    table = markdown_table(rows)
    assert table.splitlines()[0] == "| method | images | psnr_y ↑ | lpips ↓ |"
    assert table.splitlines()[3] == "| bicubic | 3 | inf |  |"  # missing key: empty cell
    assert markdown_table([{"why": "a | b\nc"}]).splitlines()[2] == "| a \\| b c |"
    document = {"sets": {"p": methods, "w": {"srlab": {"n_images": 3, "musiq": None}}}}
    only_psnr = {"set": "p", "method": "srlab", "images": "3", "psnr_y ↑": "25.12"}
    assert tables.method_rows(document, "srlab", ["psnr_y"]) == [only_psnr]  # set w lacks psnr_y


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def test_detail_box_finds_texture_on_the_scale_grid_and_crops_align() -> None:
    image = torch.full((3, 48, 64), 0.5)
    image[:, 24:40, 8:24] = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert report.detail_box(image, 16, stride=4) == (24, 8, 16, 16)
    assert report.detail_box(image, 100) == (0, 0, 48, 48)  # shrinks to fit, first maximum
    lr = F.avg_pool2d(image[None], 4)[0]  # (3, 12, 16)
    assert torch.equal(report.crop(lr, (24, 8, 16, 16), scale=4), lr[:, 6:10, 2:6])
    assert torch.equal(report.crop(image, (24, 8, 16, 16)), image[:, 24:40, 8:24])
    with pytest.raises(ValueError, match=r"box \(2, 8, 16, 16\) is not on the 4 px grid"):
        report.crop(lr, (2, 8, 16, 16), scale=4)
    with pytest.raises(ValueError, match=r"lies outside an image"):
        report.crop(lr, (40, 0, 16, 16), scale=4)


def test_comparison_figure_lays_out_whole_and_zoomed_panels() -> None:
    hr = photo(9, 32, 32)
    lr = hr[:, ::4, ::4]
    fig = report.comparison_figure(
        {"LR": lr, "ours": hr, "HR": hr}, (8, 8, 16, 16), {"LR": 4}, panel_inches=1.0
    )
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[:3]] == ["LR", "ours", "HR"]
    assert len(fig.axes) == 6 and np.array_equal(
        fig.axes[4].images[0].get_array(), report.crop(hr, (8, 8, 16, 16)).permute(1, 2, 0).numpy()
    )
    report.plt.close(fig)
    with pytest.raises(ValueError, match=r"panel 'LR' is \(8, 8\) x1, not the output size"):
        report.comparison_figure({"HR": hr, "LR": lr}, (8, 8, 16, 16))


def test_loss_csv_moving_average_and_errors(tmp_path: Path) -> None:
    values = [float(v) for v in np.random.default_rng(0).random(11)]
    for window in (1, 2, 5):
        expected = [np.mean(values[max(0, i - window // 2) : i + (window - 1) // 2 + 1]) for i in range(11)]
        assert report.moving_average(values, window) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        report.moving_average(values, 0)
    live = tmp_path / "dvclive"
    for phase, text in (("sr", "step\tloss\n0\t1.0\n"), ("prior_vae", "step\tloss\n0\t2.0\n1\t1.5\n")):
        (live / "plots/metrics" / phase).mkdir(parents=True)
        (live / "plots/metrics" / phase / "loss.tsv").write_text(text)
    curves = report.read_live_losses(live)
    assert curves == {"prior_vae": ([0, 1], [2.0, 1.5]), "sr": ([0], [1.0])}
    assert list(curves) == ["prior_vae", "sr"]  # training order
    rows = report.loss_plot_rows(curves, 2)
    assert rows["prior_vae"] == [
        {"step": 0, "loss": 2.0, "loss_smoothed": 2.0},  # window 2: this value and the one before
        {"step": 1, "loss": 1.5, "loss_smoothed": 1.75},
    ]
    (live / "plots/metrics/sr/loss.tsv").write_text("step\tloss\n0\tnope\n")
    with pytest.raises(ValueError, match=r"loss\.tsv, line 2: step/loss not numbers"):
        report.read_live_losses(live)
    with pytest.raises(ValueError, match=r"no plots/metrics/<phase>/loss\.tsv"):
        report.read_live_losses(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# The report document
# ---------------------------------------------------------------------------------------------


def test_report_collects_every_stage_and_embeds_figures(fake_build: dict[str, Any], tmp_path: Path) -> None:
    build, params = fake_build["build"], fake_build["params"]
    (build / "train").mkdir(exist_ok=True)
    (build / "train/dvclive/plots/metrics/sr").mkdir(parents=True)
    (build / "train/dvclive/plots/metrics/sr/loss.tsv").write_text(
        "step\tloss\n" + "".join(f"{i}\t{1 / (i + 1)}\n" for i in range(6))
    )
    for method, side in (("LR", 8), ("trained", 32), ("HR", 32)):  # one held-out pair's panels
        io.write_image(photo(11, side, side), build / "train/samples/a" / f"{method}.png")
    (build / "train_validation.json").write_text('{"trained": {"method": "trained", "psnr": 20.5}}')
    io.write_image(photo(12, 16, 48), build / "train/samples/checkpoints/step_000020.png")
    (build / "infer/settings.json").write_text('{"synthetic": {"guidance_scale": 0.9}}')
    params = params.replace(ablations=dataclasses.replace(params.ablations, eval_set="s"))
    for scale in ("0.8", "1.1"):  # two cells of Table 4 on the paired set
        cell = build / f"ablations/guidance_scale-synthetic-{scale}"
        (cell / "metrics.json").parent.mkdir(parents=True, exist_ok=True)
        (cell / "metrics.json").write_text((build / "evaluate/metrics.json").read_text())
        for name, image in fake_build["ours"].items():
            io.write_image(image, cell / "s_synthetic" / f"{name}.png")
        for sub in ("lr", "hr"):  # the inputs the cell saw (here: uncut)
            shutil.copytree(build / "degrade/eval/s_synthetic" / sub, cell / "inputs/s_synthetic" / sub)

    md_path, html_path = report_doc.build_report(params, build, tmp_path / "report", ROOT, log=lambda _: None)
    md, html = md_path.read_text(), html_path.read_text()
    psnr = json.loads((build / "evaluate/metrics.json").read_text())["sets"]["s_synthetic"]["bicubic"][
        "psnr_rgb"
    ]
    assert f"| bicubic | 2 | {psnr:.4g} | " in md and "| srlab | 2 | " in md and "n/a" in md
    assert "## Unavailable metrics" in md and "| lpips | missing " in md
    assert "| s_wild | esrgan | " in md  # methods without outputs, with the reason
    ours_psnr = json.loads((build / "evaluate/metrics.json").read_text())["sets"]["s_synthetic"]["srlab"]
    assert (
        "### Table 4: guidance scale" in md
        and "**s_synthetic**\n\n| guidance_scale | images | psnr_rgb ↑ |" in md
        and f"| 1.1 | 2 | {ours_psnr['psnr_rgb']:.4g} |" in md
    )
    assert "| not run (`dvc repro ablate_guidance_synthetic`) |" in md  # cells still to run
    links = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert "figures/grid_s_synthetic_a.png" in links and "figures/loss.png" in links
    assert "figures/guidance_synthetic.png" in links and "figures/guidance_wild.png" not in links
    assert "figures/train_a.png" in links and all((md_path.parent / p).is_file() for p in links)
    assert "| trained | 20.5 |" in md  # the held-out table of the train stage
    assert "figures/train_checkpoint_step_000020.png" in links  # samples during training
    assert '"guidance_scale": 0.9' in md
    assert 'src="figures/' not in html and html.count('src="data:image/png;base64,') == len(links)
    assert (tmp_path / "report/plots/loss/sr.csv").read_text().startswith("step,loss,loss_smoothed\n0,1.0,")
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert f"git revision: `{head} (" in md
    params_block = md.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(params_block) == json.loads(json.dumps(config.as_dict(params)))  # exact params

    linked = params.replace(report=dataclasses.replace(params.report, html_images="link"))
    _, html_path = report_doc.build_report(linked, build, tmp_path / "linked", ROOT, log=lambda _: None)
    assert (
        'src="figures/grid_s_synthetic_a.png"' in html_path.read_text()
        and "base64" not in html_path.read_text()
    )


def test_report_of_an_empty_build_says_what_is_missing(tmp_path: Path) -> None:
    lines: list[str] = []
    md_path, html_path = report_doc.build_report(
        tiny_params(tmp_path), tmp_path / "build", tmp_path / "out", tmp_path, log=lines.append
    )
    md = md_path.read_text()
    for what, stage in (
        ("evaluation results", "evaluate"),
        ("evaluation sets", "degrade"),
        ("training log", "train"),
    ):
        assert re.search(rf"No {what}: `[^`]+` does not exist \(made by the `{stage}` stage\)\.", md), what
    assert "| sam2 | not run (`dvc repro ablate_extractor`) |" in md and len(lines) == 5
    assert "git revision: `unknown (no git revision:" in md and "<table>" in html_path.read_text()


def test_git_revision_marks_a_dirty_tree(tmp_path: Path) -> None:
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    clean = report_doc.git_revision(tmp_path)
    assert (
        clean["dirty"] is False
        and clean["text"] == f"{clean['commit']} (clean)"
        and len(clean["commit"]) == 40
    )
    (tmp_path / "a.txt").write_text("2")
    dirty = report_doc.git_revision(tmp_path)
    assert dirty["dirty"] is True and dirty["text"] == f"{clean['commit']} (dirty: 1 files differ from it)"


def test_the_headline_says_which_is_better_by_each_metric_direction() -> None:
    from srlab.reporting.document import headline_rows

    document = {"sets": {
        "a_bicubic": {"srlab": {"psnr_rgb": 24.5, "piqe": 70.0}, "bicubic": {"psnr_rgb": 27.2, "piqe": 30.0}},
        "a_wild": {"srlab": {"psnr_rgb": None, "piqe": 35.0, "niqe": 6.0},
                   "bicubic": {"psnr_rgb": None, "piqe": 28.0, "niqe": 8.0}},
        "b_synthetic": {"srlab": {"psnr_rgb": 23.0}, "bicubic": {"psnr_rgb": 22.5}},
    }}  # fmt: skip
    summary = {"sets": {"a_bicubic": {"kind": "synthetic"}, "a_wild": {"kind": "wild"}}}
    rows = {r["set"]: r for r in headline_rows(document, summary)}
    assert rows["a_bicubic"]["metric"].startswith("PSNR") and rows["a_bicubic"]["better"] == "bicubic / input"
    assert rows["a_wild"]["metric"].startswith("NIQE") and rows["a_wild"]["better"] == "ours"  # lower wins
    assert rows["b_synthetic"]["better"] == "ours" and rows["b_synthetic"]["kind"] == "?"
    assert rows["a_wild"]["ours"] == 6.0 and rows["a_wild"]["bicubic / input"] == 8.0


def test_the_vae_cap_sentence_says_whether_the_vae_leaves_room_above_bicubic() -> None:
    cap = {"images": 7, "crop": 128, "vae_hr": 23.64, "vae_bicubic": 22.04, "bicubic": 23.37}
    room = report_doc.vae_cap_text(cap)
    assert "HR is 23.64 dB" in room and "bicubic itself 23.37 dB" in room
    assert "leaves room to beat it" in room and "no denoiser" not in room
    capped = report_doc.vae_cap_text({**cap, "vae_hr": 23.0})
    assert "no denoiser on this VAE can beat it" in capped and "leaves room" not in capped
