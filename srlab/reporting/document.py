"""The ``report`` stage: one markdown + HTML document that a reader opens without Jupyter.

``build_report`` reads the other stages' outputs (every one optional: a missing input becomes a line
saying what is missing and which stage makes it) and writes::

    report.md            results tables, unavailable metrics and why, comparison grids, ablations,
                         training curve and samples, inference settings, exact params, git revision
    report.html          the same; figures embedded (report.html_images: embed) or linked (link)
    figures/*.png        every figure, linked relatively from report.md
    plots/loss/<phase>.csv   step, loss, loss_smoothed per training phase (DVC plots: steps restart)

Inputs, relative to the build folder: degrade/eval/<set>/{lr,hr} (srlab.data.eval_sets),
infer/<set>/*.png and infer/settings.json, evaluate/metrics.json and
summary.json (srlab.evaluation.evaluate), train/dvclive/, train/samples/ and train_validation.json,
ablations/<cell>/ (srlab.ablations.cells).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import yaml

from srlab import io
from srlab.ablations import grid, tables
from srlab.ablations.params import AblationParams
from srlab.config import Params, as_dict
from srlab.data.eval_sets import find_eval_sets
from srlab.evaluation import evaluate, metrics
from srlab.evaluation import weights as metric_weights
from srlab.evaluation.params import EvaluateParams
from srlab.provenance import git_revision
from srlab.reporting import figures, paper
from srlab.reporting.markdown import markdown_table
from srlab.reporting.params import ReportParams
from srlab.reporting.tables import results_rows

# What the report reads; the other stages' params are shown as those stages recorded them.
SECTIONS = {"report": ReportParams, "evaluate": EvaluateParams, "ablations": AblationParams}
RECORDS = {  # stage -> the file in the build folder where it recorded the params it ran with
    "degrade": "degrade/manifest.json",
    "train": "train/final/srlab_provenance.json",
    "infer": "infer/settings.json",
}

_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^":]+\.png)(")')
_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
code{font-size:.9em}"""


class ReportDoc:
    """A document built block by block; figures are saved as PNG under ``out_dir/figures``."""

    def __init__(self, out_dir: str | Path, title: str, dpi: int = 100) -> None:
        self.out_dir, self.title, self.dpi = Path(out_dir), title, dpi
        self.blocks: list[str] = [f"# {title}"]

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(f"{'#' * level} {text}")

    def text(self, markdown: str) -> None:
        self.blocks.append(markdown.strip())

    def table(self, rows: list[dict[str, Any]]) -> None:
        self.blocks.append(markdown_table(rows))

    def code(self, text: str, language: str = "") -> None:
        self.blocks.append(f"```{language}\n{text.rstrip()}\n```")

    def figure(self, figure: plt.Figure | Path, name: str, caption: str) -> Path:
        """Save a matplotlib figure (then close it) or copy a PNG to figures/<name>.png; link it."""
        path = self.out_dir / "figures" / f"{name}.png"
        with io.atomic_path(path) as tmp:
            if isinstance(figure, Path):
                shutil.copyfile(figure, tmp)
            else:
                figure.savefig(tmp, format="png", dpi=self.dpi, metadata={"Software": None})
                plt.close(figure)
        self.blocks.append(f"![{caption}](figures/{name}.png)\n\n*{caption}*")
        return path

    def markdown(self) -> str:
        return "\n\n".join(self.blocks) + "\n"

    def html(self, images: Literal["embed", "link"]) -> str:
        """Standalone HTML (python-markdown with tables); ``embed`` inlines every figure as base64."""
        import markdown

        body = markdown.markdown(self.markdown(), extensions=["tables", "fenced_code"])
        if images == "embed":

            def inline(match: re.Match[str]) -> str:
                data = base64.b64encode((self.out_dir / match[2]).read_bytes()).decode("ascii")
                return f"{match[1]}data:image/png;base64,{data}{match[3]}"

            body = _IMG_SRC.sub(inline, body)
        return (
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{self.title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
        )

    def write(self, images: Literal["embed", "link"] = "embed") -> tuple[Path, Path]:
        """Write report.md and report.html into ``out_dir`` (atomically, each)."""
        paths = self.out_dir / "report.md", self.out_dir / "report.html"
        for path, text in zip(paths, (self.markdown(), self.html(images)), strict=True):
            with io.atomic_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
        return paths


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


def params_yaml(params: Any) -> str:
    """A params dataclass (e.g. the whole resolved Params) as YAML, in the file's order."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return yaml.safe_dump(plain(as_dict(params)), sort_keys=False, allow_unicode=True, width=110)


# ---------------------------------------------------------------------------------------------
# The report stage
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _missing(doc: ReportDoc, what: str, path: Path, stage: str, log: Callable[[str], None]) -> None:
    line = f"No {what}: `{path}` does not exist (made by the `{stage}` stage)."
    doc.text(line)
    log(line)


# Offline, no downloads. Wild sets: NIQE (clean photos ~3-5, noisy ones ~9-12), not PIQE, which takes
# the wild pipeline's noise for detail: it rates the wild inputs better than their own clean HR
# (benchmarks/bench_noref.py; README "Measured").
HEADLINE = {"paired": ("psnr_rgb", "PSNR RGB dB ↑"), "wild": ("niqe", "NIQE ↓")}


def headline_rows(document: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours vs bicubic (on x1 wild sets: the input itself) per set, on the metric every machine has:
    PSNR where the set has HR, else NIQE; ``verdict`` says which is better, by the metric's direction."""
    rows = []
    for set_name, methods in document["sets"].items():
        ours, base = methods.get(evaluate.OURS, {}), methods.get(evaluate.BICUBIC, {})
        key, label = HEADLINE["paired" if ours.get("psnr_rgb") is not None else "wild"]
        a, b = ours.get(key), base.get(key)
        if a is None or b is None:
            continue
        higher = not metric_weights.METRICS[key].lower_better
        verdict = "ours" if (a > b if higher else a < b) else ("tie" if a == b else "bicubic / input")
        kind = summary.get("sets", {}).get(set_name, {}).get("kind", "?")
        rows.append({"set": set_name, "kind": kind, "metric": label, "ours": round(a, 3),
                     "bicubic / input": round(b, 3), "better": verdict})  # fmt: skip
    return rows


def _headline(doc: ReportDoc, build: Path) -> None:
    """The first thing a reader needs: does the model beat bicubic on images it never trained on?"""
    document = _read_json(build / "evaluate" / "metrics.json")
    if document is None:
        return
    doc.heading("Ours vs bicubic")
    doc.text(
        "Every eval set is made from photos the training never saw (`data.eval_sets`, and `val_*` from the "
        "held-out share of the training photos); `*_bicubic` sets are clean x4 (bicubic down only). PSNR on "
        "sets with HR, NIQE (BasicSR's parameters, runs offline) on the x1 wild sets, where the baseline is "
        "the input."
    )
    doc.table(headline_rows(document, _read_json(build / "evaluate" / "summary.json") or {}))
    cap = _read_json(build / "prior.json")
    if cap and cap.get("vae_hr") is not None:
        doc.text(vae_cap_text(cap))


def vae_cap_text(cap: dict[str, Any]) -> str:
    """What the tiny prior's VAE allows (``build/prior.json``): an SR image is a VAE decode, so its
    reconstruction of the HR bounds every output; above bicubic, the shortfall is the denoiser's."""
    text = (
        f"The tiny prior's VAE caps every output (an SR image is a VAE decode): on the {cap['images']} "
        f"held-out photos' centre {cap['crop']} px, its reconstruction of the HR is {cap['vae_hr']:.2f} dB "
        f"and of the clean bicubic x4 image {cap['vae_bicubic']:.2f} dB, bicubic itself "
        f"{cap['bicubic']:.2f} dB (`build/prior.json`). "
    )
    if cap["vae_hr"] > cap["bicubic"]:
        return text + (
            "The HR's reconstruction is above bicubic, so the VAE leaves room to beat it; whether the "
            "denoiser moves the LR latent towards the HR one is what `benchmarks/bench_x0.py` measures."
        )
    return text + "The HR's own reconstruction is under bicubic: no denoiser on this VAE can beat it in PSNR."


def _results(doc: ReportDoc, build: Path, log: Callable[[str], None]) -> None:
    doc.heading("Results")
    document = _read_json(build / "evaluate" / "metrics.json")
    if document is None:
        _missing(doc, "evaluation results", build / "evaluate" / "metrics.json", "evaluate", log)
        return
    summary = _read_json(build / "evaluate" / "summary.json") or {}
    doc.text(
        "Means over each set; ↑ higher is better, ↓ lower; n/a: unavailable (see Unavailable metrics). "
        "On x1 (wild) sets, bicubic is the LR input itself."
    )
    for set_name, methods in document["sets"].items():
        about = summary.get("sets", {}).get(set_name, {})
        doc.heading(f"{set_name} ({about.get('kind', '?')}, x{about.get('scale', '?')})", 3)
        doc.table(results_rows(methods))
    if document.get("challenge"):
        doc.heading("Challenge score (FR part of the paired set + NR part of the wild set)", 3)
        doc.text(
            "`challenge` and `score_fr` are the organisers' protocol (score_release.py: BT.601 Y, 4 px "
            "border cut, MATLAB-form SSIM; `srlab score` computes the same); `*_pyiqa` are the labelled "
            "variant with pyiqa's PSNR/SSIM (`evaluate.score_psnr` / `score_ssim`), as many papers report."
        )
        for group, methods in document["challenge"].items():
            doc.text(f"**{group}**")
            doc.table(results_rows(methods))
    skipped = [
        {"set": s, "method": m, "why": why}
        for s, ms in summary.get("skipped", {}).items()
        for m, why in ms.items()
    ]
    if skipped:
        doc.heading("Methods without outputs", 3)
        doc.table(skipped)
    protocols = {
        json.dumps(p, sort_keys=True): p
        for methods in summary.get("results", {}).values()
        for s in methods.values()
        if (p := s.get("protocol"))
    }
    if protocols:
        doc.heading("Protocol", 3)
        merged: dict[str, Any] = {}
        for p in protocols.values():
            merged.update(p)
        doc.table([{"item": k, "how": v} for k, v in merged.items()])
    doc.heading("Unavailable metrics")
    if document.get("unavailable"):
        doc.text("Not computed, and never replaced by another metric under the same name:")
        doc.table([{"metric or score": k, "why": v} for k, v in document["unavailable"].items()])
    else:
        doc.text("Every requested metric and score was computed.")


def _grids(doc: ReportDoc, params: Params, build: Path, log: Callable[[str], None]) -> None:
    doc.heading("Comparisons")
    rp: ReportParams = params.report
    if not (build / "degrade" / "eval").is_dir():
        _missing(doc, "evaluation sets", build / "degrade" / "eval", "degrade", log)
        return
    doc.text(
        f"LR (nearest) / bicubic / ours / other methods / HR; below each, the {rp.crop_size} px crop "
        "outlined in red, chosen where the reference (HR, else LR) has the most detail."
    )
    for s in find_eval_sets(build / "degrade"):
        folders, skipped = evaluate.method_folders(s, build / "infer", params.evaluate)
        if evaluate.OURS in skipped:
            doc.text(f"{s.name}: no SR outputs of ours ({skipped[evaluate.OURS]}).")
        for name, lr_path in list(metrics.images_by_name(s.lr_dir).items())[: rp.grid_images]:
            lr = io.read_image(lr_path)
            panels = {"LR": lr}
            if s.scale > 1:
                panels[evaluate.BICUBIC] = metrics.bicubic_upsample(lr, s.scale)
            for method, folder in folders.items():
                found = metrics.images_by_name(folder)
                if name in found:
                    panels[method] = io.read_image(found[name])
            if s.hr_dir is not None:
                panels["HR"] = io.read_image(metrics.images_by_name(s.hr_dir)[name])
            figure = figures.comparison_grid(
                panels, rp.crop_size, rp.panel_inches, title=f"{s.name} / {name}"
            )
            doc.figure(figure, f"grid_{s.name}_{name}", f"{s.name} / {name}: {' / '.join(panels)}")


_SCALE_NOTE = (
    "Profile **{profile}**. In the tiny profile these are a from-scratch model a few MB in size, trained for "
    "minutes on 2 CPU cores on BSD68 crops and measured on {images}; the paper's are SD2 base "
    "(866M-parameter UNet) + ControlNet trained 90k steps at 512 px on LSDIR and the challenge's pairs, "
    "measured on the challenge's validation sets. The last column is the paper's own score for the same "
    "row (Tables 3-5, srlab/reporting/paper.py): compare directions of effects, not values. Partial "
    "scores: score_fr = PSNR + 10 SSIM - 10 LPIPS on the synthetic set, score_nr = 0.1 MUSIQ + 10 MANIQA + "
    "10 CLIPIQA on the wild set (n/a where weights are missing). Table 5 compares the paper's SAM2 tokens "
    "with DAPE's (SeeSR's RAM image embeddings, 145 x 512: srlab.models.tagging), each SR phase trained with "
    "the same settings; srlab adds `none` (no semantic tokens), which the paper does not have."
)
_TINY_TAGGER_NOTE = (
    "In the tiny profile `model.prompts.ram_checkpoint` is null, so the `dape` row's extractor is a tiny "
    "random RAM (seeded, nothing to download): its embeddings, like its tags, are meaningless; the row "
    "checks the mechanics only."
)


def _ablations(doc: ReportDoc, params: Params, build: Path, log: Callable[[str], None]) -> None:
    doc.heading("Ablations")
    results = tables.read_cells(params, build / "ablations")
    ab = params.ablations
    images = f"{ab.max_images or 'all'} image(s) of {ab.eval_set}"
    images = f"the centre {ab.crop} px of {images}" if ab.crop else images
    doc.text(_SCALE_NOTE.format(profile=params.base.profile, images=images))
    for axis, title in grid.TABLES.items():
        doc.heading(title, 3)
        if axis == "extractor":
            doc.text("The paper's Table 5 (the challenge's wild validation set):")
            doc.table([{"extractor": k, **{m: format(v, ".4f") for m, v in row.items()}}
                       for k, row in paper.TABLE5.items()])  # fmt: skip
            if params.base.profile != "paper":
                doc.text(_TINY_TAGGER_NOTE)
        rows = tables.table_rows(params, results, axis, paper.ABLATION_SCORES)
        for set_name in dict.fromkeys(r["set"] for r in rows):  # one table per set: its own metrics
            mine = [r for r in rows if r["set"] == set_name]
            filled = [k for k in mine[0] if k != "set" and any(r[k] != "" for r in mine)]
            doc.text(f"**{set_name}**")
            doc.table([{k: r[k] for k in filled} for r in mine])
        if axis != "guidance_scale":
            continue
        for kind in grid.KINDS:
            figure = tables.scale_figure(params, params.report, build / "ablations", kind)
            if figure is not None:
                doc.figure(figure, f"guidance_{kind}", f"{kind}: the same crop across guidance scales")
    not_run = [c.name for c, d in results.items() if d is None]
    if not_run:
        log(f"ablation cells not run yet: {not_run}")


def _checkpoint_samples(doc: ReportDoc, folder: Path, limit: int) -> None:
    paths = io.list_images(folder)[-limit:] if folder.is_dir() and limit else []
    for path in paths:
        doc.figure(path, f"train_checkpoint_{path.stem}", f"LR / SR / HR at {path.stem}")


def _training(doc: ReportDoc, rp: ReportParams, build: Path, out: Path, log: Callable[[str], None]) -> None:
    doc.heading("Training")
    loss = build / "train" / "dvclive"
    if not (loss / "plots" / "metrics").is_dir():
        _missing(doc, "training log", loss, "train", log)
    else:
        curves = figures.read_live_losses(loss)
        doc.figure(figures.loss_figure(curves, rp.loss_window), "loss", f"training loss ({loss})")
        for phase, rows in figures.loss_plot_rows(curves, rp.loss_window).items():
            metrics.write_rows_csv(rows, out / "plots" / "loss" / f"{phase}.csv")
    validation = _read_json(build / "train_validation.json")
    if validation:
        doc.text("Held-out pairs (the degrade stage's validation photos), before and after SR training:")
        doc.table(list(validation.values()))
    samples = build / "train" / "samples"
    names = (
        sorted(p for p in samples.iterdir() if p.is_dir() and p.name != "checkpoints")
        if samples.is_dir()
        else []
    )
    for folder in names[-rp.max_samples :] if rp.max_samples else []:
        panels = {p.stem: io.read_image(p) for p in sorted(folder.glob("*.png"), key=_panel_order)}
        figure = figures.comparison_grid(
            panels, rp.crop_size, rp.panel_inches, title=f"held out / {folder.name}"
        )
        doc.figure(figure, f"train_{folder.name}", f"held out / {folder.name}: {' / '.join(panels)}")
    _checkpoint_samples(doc, samples / "checkpoints", rp.max_samples)


def _panel_order(path: Path) -> int:
    order = ("LR", "bicubic", "untrained", "trained", "HR")
    return order.index(path.stem) if path.stem in order else len(order)


def _inference(doc: ReportDoc, build: Path, log: Callable[[str], None]) -> None:
    doc.heading("Inference settings")
    settings = build / "infer" / "settings.json"
    if settings.is_file():
        doc.code(settings.read_text(), "json")
    else:
        _missing(doc, "inference settings", settings, "infer", log)


def build_report(
    params: Params,
    build_dir: str | Path,
    out_dir: str | Path,
    root: str | Path,
    log: Callable[[str], None] = print,
) -> tuple[Path, Path]:
    """Write the report of the stage outputs under ``build_dir`` into ``out_dir``; (report.md, .html).

    ``root``: the project checkout whose git revision is recorded. Build ``out_dir`` inside
    srlab.io.atomic_dir so a failure leaves no half report.
    """
    build, out = Path(build_dir), Path(out_dir)
    revision = git_revision(root)
    doc = ReportDoc(out, "srlab report", params.report.dpi)
    doc.text(
        f"Profile **{params.base.profile}**, seed {params.base.seed}; git revision `{revision['text']}`. "
        "Exact parameters at the end."
    )
    _headline(doc, build)
    _grids(doc, params, build, log)
    _results(doc, build, log)
    _ablations(doc, params, build, log)
    _training(doc, params.report, build, out, log)
    _inference(doc, build, log)
    doc.heading("Learned-metric weights")
    doc.text(
        "Where each learned metric's files must be (`evaluate.torch_hub_dir`, srlab/evaluation/weights.py)."
    )
    doc.table(metric_weights.weights_table(params.evaluate))
    doc.heading("Provenance")
    doc.text(f"git revision: `{revision['text']}`\n\nThe report's own parameters (params.yaml as resolved):")
    doc.code(params_yaml(params), "yaml")
    for stage, record in RECORDS.items():
        where = "recorded" if (build / record).is_file() else "to be recorded (not built yet)"
        doc.text(f"The `{stage}` stage's parameters: {where} in `{record}`.")
    return doc.write(params.report.html_images)
