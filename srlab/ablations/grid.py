"""The ablation grids of params.yaml ``ablations`` as cells: one (axis, kind, value) per DVC stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from srlab.config import ConfigError, Params

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

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of set the cell is measured on (both for an extractor cell)."""
        return KINDS if self.kind == BOTH else (self.kind,)

    def sets(self, params: Params) -> list[str]:
        """The eval sets this cell runs on: ``<ablations.eval_set>_<kind>``, one per kind."""
        return [f"{params.ablations.eval_set}_{k}" for k in self.kinds]


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
