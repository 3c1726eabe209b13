"""The ablation tables: the cells' results read back, the ``ablations`` stage's one metrics file, and
the guidance-scale figure (paper Tables 3-5). Reads cell folders only: no model or training code."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt

from srlab import io
from srlab.ablations.grid import BOTH, INPUTS, Cell, cells
from srlab.ablations.params import AblationParams
from srlab.config import Params, load_params
from srlab.evaluation.evaluate import OURS
from srlab.reporting import figures
from srlab.reporting.tables import results_rows

if TYPE_CHECKING:  # the report passes its section; the ablations stage itself never reads it
    from srlab.reporting.params import ReportParams

SECTIONS = {"ablations": AblationParams}


def read_cells(params: Params, ablation_dir: Path) -> dict[Cell, dict[str, Any] | None]:
    """{cell: its metrics.json document, or None if it has not run} for the grids in params.yaml."""
    found: dict[Cell, dict[str, Any] | None] = {}
    for cell in cells(params):
        path = Path(ablation_dir) / cell.name / "metrics.json"
        found[cell] = json.loads(path.read_text()) if path.is_file() else None
    return found


def table_rows(
    params: Params,
    results: dict[Cell, dict[str, Any] | None],
    axis: str,
    paper: Mapping[tuple[str, str, str], float] | None = None,
) -> list[dict[str, Any]]:
    """One row per (cell, set) of ``axis``: our metrics on the set, with the partial challenge score
    the set feeds (score_fr on synthetic, score_nr on wild); "n/a" where a metric is unavailable, and a
    status column for cells that have not run. ``paper``: (axis, kind, value) -> the paper's score,
    shown in a last "paper score" column where it has one."""
    rows = []
    for cell, document in results.items():
        if cell.axis != axis:
            continue
        for kind, set_name in zip(cell.kinds, cell.sets(params), strict=True):
            row: dict[str, Any] = {axis: cell.value, "set": set_name}
            if document is None:
                row["status"] = f"not run (`dvc repro {cell.stage}`)"
            else:
                values = document["sets"].get(set_name, {}).get(OURS, {})
                row.update(results_rows({OURS: values})[0])
                row.pop("method")
            if paper is not None:
                score = paper.get((axis, kind, cell.value))
                row["paper score"] = "" if score is None else format(score, ".4f")
            rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row if k not in ("status", "paper score")))
    if any("status" in row for row in rows):
        columns.append("status")
    if paper is not None:
        columns.append("paper score")
    return [{c: row.get(c, "") for c in columns} for row in rows]


def summary(params: Params, results: dict[Cell, dict[str, Any] | None]) -> dict[str, Any]:
    """{axis: {value or kind-value: {set: {metric or partial score: number | None}}}} of the cells that
    have run: the DVC metrics document of the ``ablations`` stage (``dvc metrics show``)."""
    out: dict[str, Any] = {}
    for cell, document in results.items():
        if document is not None:
            key = cell.value if cell.kind == BOTH else f"{cell.kind}-{cell.value}"
            out.setdefault(cell.axis, {})[key] = {
                s: document["sets"].get(s, {}).get(OURS, {}) for s in cell.sets(params)
            }
    return out


def scale_figure(params: Params, rp: ReportParams, ablation_dir: Path, kind: str) -> plt.Figure | None:
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
    return figures.comparison_grid(panels, rp.crop_size, rp.panel_inches, title=f"{set_name} / {first.stem}")


def main() -> None:
    """``python -m srlab.ablations.tables``: the ``ablations`` stage, every cell's results in one file."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    parser.add_argument("--cells", default="build/ablations", help="the ablate_* stages' output folder")
    parser.add_argument("--out", default="build/ablations.json")
    args = parser.parse_args()
    params = load_params(args.params, None, SECTIONS)
    results = read_cells(params, Path(args.cells))
    missing = [c.name for c, d in results.items() if d is None]
    if missing:
        raise FileNotFoundError(f"ablation cells not run: {missing}; run `dvc repro ablations`")
    with io.atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(summary(params, results), indent=1))
    print(f"{args.out}: {len(results)} cells")


if __name__ == "__main__":
    main()
