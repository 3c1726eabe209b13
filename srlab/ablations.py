"""Ablations: paper Tables 3, 4 and 5 and the start point, one DVC cell per grid value.

A cell changes one knob and keeps the rest of params.yaml (``ablations`` holds the grids):

- ``prompt`` (Table 3): ``added_prompt`` / ``negative_prompt`` of the kind's ``infer.settings``;
- ``guidance_scale`` (Table 4): the kind's guidance scale (CFG runs only above 1, as released);
- ``start_point``: pure noise or the LR latent noised to t = 999;
- ``extractor`` (Table 5): ``model.semantic.extractor``. The SR phase is retrained with the ``train``
  section's settings on the train stage's prior; the extractor the train stage already used is not
  trained twice (same settings, same seeds: its weights are the train stage's). Both kinds of set.

dvc.yaml expands each grid with ``matrix`` and runs ``notebooks/06_ablation.ipynb`` per cell with
(axis, kind, value). A cell writes ``<ablations>/<cell name>/``: ``metrics.json`` (the evaluate
stage's schema: ``srlab`` and ``bicubic`` on the cell's sets), ``cell.json`` (what changed and the
exact sampler settings), the SR images ``<set>/<name>.png`` and the inputs they came from,
``inputs/<set>/{lr,hr}`` (the first ``ablations.max_images`` images, centre crops of
``ablations.crop``). The report reads the cells that params.yaml defines now, so the folder of a value
removed from a grid is ignored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from srlab import evaluate, io, metrics, report, train
from srlab.config import ConfigError, Params, SamplerParams, as_dict
from srlab.upscale import build_pipeline, upscale_files

TABLES = {  # axis -> title, in report order
    "prompt": "Table 3: text prompt",
    "guidance_scale": "Table 4: guidance scale",
    "start_point": "Start point",
    "extractor": "Table 5: semantic extractor",
}
KINDS = ("synthetic", "wild")
BOTH = "both"  # the kind of an extractor cell: one trained model, measured on both sets
INPUTS = "inputs"  # <cell>/inputs/<set>/{lr,hr}: the (cropped) images the cell ran on


@dataclass(frozen=True)
class Cell:
    """One grid value: ``axis`` (a TABLES key), ``kind`` (synthetic | wild | both), ``value`` as text
    (as DVC renders it in the stage name: ``10.0``, ``none``)."""

    axis: str
    kind: str
    value: str

    @property
    def name(self) -> str:
        return f"{self.axis}-{self.kind}-{self.value}"

    @property
    def stage(self) -> str:
        """The dvc.yaml stage (matrix group) that runs this cell."""
        return "ablate_guidance_" + self.kind if self.axis == "guidance_scale" else "ablate_" + self.axis

    def sets(self, params: Params) -> list[str]:
        """The eval sets this cell runs on: ``<ablations.eval_set>_<kind>``."""
        kinds = KINDS if self.kind == BOTH else (self.kind,)
        return [f"{params.ablations.eval_set}_{k}" for k in kinds]


def cells(params: Params) -> list[Cell]:
    """Every cell of the grids in params.yaml, in report order (the cells dvc.yaml expands)."""
    ab = params.ablations
    found = [Cell("prompt", kind, name) for kind in KINDS for name in ab.prompt]
    found += [
        Cell("guidance_scale", kind, str(v)) for kind, scales in ab.guidance_scale.items() for v in scales
    ]
    found += [Cell("start_point", kind, v) for kind in KINDS for v in ab.start_point]
    found += [Cell("extractor", BOTH, v) for v in ab.extractor]
    return found


def find_cell(params: Params, axis: str, kind: str, value: Any) -> Cell:
    """The grid cell (axis, kind, value); an error naming params.yaml's grids if it is not one."""
    wanted = Cell(axis, kind, str(value))
    for cell in cells(params):
        if cell == wanted or (axis == "guidance_scale" and cell.axis == axis and cell.kind == kind
                              and float(cell.value) == float(value)):  # fmt: skip
            return cell
    known = ", ".join(c.name for c in cells(params))
    raise ConfigError(
        f"ablation cell {wanted.name!r} is not in params.yaml's ablations grids; known: {known}"
    )


def cell_params(params: Params, cell: Cell) -> Params:
    """``params`` with the cell's knob turned (every kind's sampler settings, or the extractor)."""
    if cell.axis == "extractor":
        semantic = dataclasses.replace(params.model.semantic, extractor=cell.value)
        return dataclasses.replace(params, model=dataclasses.replace(params.model, semantic=semantic))
    settings = dict(params.infer.settings)
    settings[cell.kind] = sampler_settings(settings[cell.kind], params, cell)
    return dataclasses.replace(params, infer=dataclasses.replace(params.infer, settings=settings))


def sampler_settings(base: SamplerParams, params: Params, cell: Cell) -> SamplerParams:
    """The sampler settings of one kind of set with the cell's knob turned."""
    if cell.axis == "prompt":
        variant = params.ablations.prompt[cell.value]
        return dataclasses.replace(
            base, added_prompt=variant.added_prompt, negative_prompt=variant.negative_prompt
        )
    if cell.axis == "guidance_scale":
        return dataclasses.replace(base, guidance_scale=float(cell.value))
    if cell.axis == "start_point":
        return dataclasses.replace(base, start_point=cell.value)
    return base


def cell_weights(params: Params, cell: Cell, degrade_dir: Path, train_dir: Path, work_dir: Path) -> Params:
    """Params whose model loads the weights the cell runs: the train stage's, or (extractor cells whose
    extractor differs) the SR phase retrained into ``work_dir/train`` on the train stage's prior."""
    turned = train.sr_model_params(cell_params(params, cell), train_dir)
    weights = train_dir / train.FINAL_DIR
    if cell.axis == "extractor" and cell.value != params.model.semantic.extractor:
        weights = train.train_sr(turned, degrade_dir, work_dir / "train", train.accelerator_for(turned))
    return dataclasses.replace(turned, model=dataclasses.replace(turned.model, checkpoint=str(weights)))


def cell_inputs(eval_set: evaluate.EvalSet, n: int, crop: int, root: Path) -> evaluate.EvalSet:
    """The set as a cell sees it: its first ``n`` images by name (0: all), each cut to the centre
    ``crop`` px of the output size (LR: ``crop / scale``; 0: whole), written to ``root/<set>/{lr,hr}``
    (kept in the cell's folder: the figures show exactly what the cell saw)."""
    s = eval_set.scale
    hr_paths = metrics.images_by_name(eval_set.hr_dir) if eval_set.hr_dir else {}
    out = dataclasses.replace(eval_set, lr_dir=root / eval_set.name / "lr")
    out = dataclasses.replace(out, hr_dir=root / eval_set.name / "hr" if hr_paths else None)
    for name, lr_path in list(metrics.images_by_name(eval_set.lr_dir).items())[: n or None]:
        lr = io.read_image(lr_path)
        hr = io.read_image(hr_paths[name]) if hr_paths else None
        if crop:
            side = min(crop, lr.shape[1] * s, lr.shape[2] * s) // s * s
            full = hr if hr is not None else lr.repeat_interleave(s, 1).repeat_interleave(s, 2)
            full, lr = train.centre_crop_pair(full, lr, side, s)
            hr = full if hr is not None else None
        io.write_image(lr, out.lr_dir / f"{name}.png")
        if hr is not None:
            io.write_image(hr, out.hr_dir / f"{name}.png")
    return out


def run_cell(params: Params, cell: Cell, degrade_dir: Path, train_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Run one cell into ``out_dir/<cell name>`` (atomically); returns its metrics.json document."""
    degrade_dir, train_dir = Path(degrade_dir), Path(train_dir)
    available = {s.name: s for s in evaluate.find_eval_sets(degrade_dir)}
    missing = [s for s in cell.sets(params) if s not in available]
    if missing:
        raise FileNotFoundError(
            f"ablations.eval_set {params.ablations.eval_set!r}: no eval set(s) {missing} in "
            f"{degrade_dir}/eval (have {sorted(available)}); it must name one of data.eval_sets"
        )
    with io.atomic_dir(Path(out_dir) / cell.name) as tmp:
        run = cell_weights(params, cell, degrade_dir, train_dir, tmp)
        pipe = build_pipeline(run)
        sets, used, ab = [], {}, params.ablations
        for name in cell.sets(params):
            eval_set = cell_inputs(available[name], ab.max_images, ab.crop, tmp / INPUTS)
            settings = run.infer.settings[name.rsplit("_", 1)[-1]]
            upscale_files(pipe, io.list_images(eval_set.lr_dir), tmp / name, settings, params.base.seed)
            sets.append(eval_set)
            used[name] = as_dict(settings)
        measured = evaluate.evaluate_sets(sets, tmp, dataclasses.replace(params.evaluate, other_methods={}))
        document = evaluate.metrics_json(measured)
        (tmp / "metrics.json").write_text(json.dumps(document, indent=1))
        info = {"axis": cell.axis, "kind": cell.kind, "value": cell.value, "settings": used,
                "extractor": run.model.semantic.extractor, "weights": run.model.checkpoint}  # fmt: skip
        (tmp / "cell.json").write_text(json.dumps(info, indent=1))
    return document


# ---------------------------------------------------------------------------------------------
# Tables and figures (the report)
# ---------------------------------------------------------------------------------------------


def read_cells(params: Params, ablation_dir: Path) -> dict[Cell, dict[str, Any] | None]:
    """{cell: its metrics.json document, or None if it has not run} for the grids in params.yaml."""
    found: dict[Cell, dict[str, Any] | None] = {}
    for cell in cells(params):
        path = Path(ablation_dir) / cell.name / "metrics.json"
        found[cell] = json.loads(path.read_text()) if path.is_file() else None
    return found


def table_rows(params: Params, results: dict[Cell, dict[str, Any] | None], axis: str) -> list[dict[str, Any]]:
    """One row per (cell, set) of ``axis``: our metrics on the set, with the partial challenge score
    the set feeds (score_fr on synthetic, score_nr on wild); "n/a" where a metric is unavailable, and a
    status column for cells that have not run."""
    rows = []
    for cell, document in results.items():
        if cell.axis != axis:
            continue
        for set_name in cell.sets(params):
            row: dict[str, Any] = {axis: cell.value, "set": set_name}
            if document is None:
                row["status"] = f"not run (`dvc repro {cell.stage}`)"
            else:
                values = document["sets"].get(set_name, {}).get(evaluate.OURS, {})
                row.update(report.results_rows({evaluate.OURS: values})[0])
                row.pop("method")
            rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row if k != "status"))
    if any("status" in row for row in rows):
        columns.append("status")
    return [{c: row.get(c, "") for c in columns} for row in rows]


def summary(params: Params, results: dict[Cell, dict[str, Any] | None]) -> dict[str, Any]:
    """{axis: {value or kind-value: {set: {metric or partial score: number | None}}}} of the cells that
    have run: the DVC metrics document of the ``ablations`` stage (``dvc metrics show``)."""
    out: dict[str, Any] = {}
    for cell, document in results.items():
        if document is not None:
            key = cell.value if cell.kind == BOTH else f"{cell.kind}-{cell.value}"
            out.setdefault(cell.axis, {})[key] = {
                s: document["sets"].get(s, {}).get(evaluate.OURS, {}) for s in cell.sets(params)
            }
    return out


def scale_figure(params: Params, ablation_dir: Path, kind: str) -> plt.Figure | None:
    """The same crop of the set's first image across the guidance scales of ``kind`` (Table 4's figure):
    LR, one panel per scale, HR where the set has it. None if no scale of ``kind`` has run."""
    scales = [c for c in cells(params) if c.axis == "guidance_scale" and c.kind == kind]
    set_name = f"{params.ablations.eval_set}_{kind}"
    outputs = {f"gs {c.value}": Path(ablation_dir) / c.name / set_name for c in scales}
    outputs = {k: v for k, v in outputs.items() if v.is_dir() and io.list_images(v)}
    if not outputs:
        return None
    first_dir = next(iter(outputs.values()))
    first = io.list_images(first_dir)[0]
    inputs = first_dir.parent / INPUTS / set_name  # every cell of a kind saw the same inputs
    lr = io.read_image(inputs / "lr" / first.name)
    panels = {"LR": lr, **{k: io.read_image(v / first.name) for k, v in outputs.items()}}
    if (inputs / "hr" / first.name).is_file():
        panels["HR"] = io.read_image(inputs / "hr" / first.name)
    reference = panels.get("HR", panels[next(iter(outputs))])
    scale = reference.shape[-1] // lr.shape[-1]
    box = report.detail_box(reference, params.report.crop_size, stride=scale)
    return report.comparison_figure(
        panels, box, {"LR": scale}, params.report.panel_inches, title=f"{set_name} / {first.stem}"
    )


def main() -> None:
    """``python -m srlab.ablations``: the ``ablations`` stage, all cells' results in one metrics file."""
    import argparse

    from srlab.config import load_params

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--cells", default="build/ablations", help="the ablate_* stages' output folder")
    parser.add_argument("--out", default="build/ablations.json")
    args = parser.parse_args()
    params = load_params(args.params)
    results = read_cells(params, Path(args.cells))
    missing = [c.name for c, d in results.items() if d is None]
    if missing:
        raise FileNotFoundError(f"ablation cells not run: {missing}; run `dvc repro ablations`")
    with io.atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(summary(params, results), indent=1))
    print(f"{args.out}: {len(results)} cells")


if __name__ == "__main__":
    main()
