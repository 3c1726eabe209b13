"""The evaluation sets of a degrade stage folder, as its manifest records them.

The degrade stage writes ``eval/<set>_<pipeline>/{lr,hr}`` and, in ``manifest.json``, one ``eval_sets``
entry per folder: the source set, the kind (the pipeline that made it; infer samples it with
``infer.settings.<kind>``), the SR scale and whether HR is kept. Every reader takes these from the
manifest, never from the folder name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srlab import io


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: LR images, HR images if paired, its kind and SR scale."""

    name: str  # the folder under eval/
    lr_dir: Path
    hr_dir: Path | None  # None: LR only (wild), no-reference metrics only
    scale: int  # SR side / LR side (4 synthetic, 1 wild: restoration at the LR size)
    kind: str  # the infer.presets entry it is sampled with (the pipeline's sampled_as, else its name)
    source: str  # the data.eval_sets name (or "val") it was made from
    pipeline: str | None = None  # the degrade pipeline that made it (None: the same name as kind)

    @property
    def paired(self) -> bool:
        return self.hr_dir is not None

    def describe(self) -> dict[str, Any]:
        """A table row: name, kind, scale, image count, folders."""
        return {
            "set": self.name,
            "kind": self.kind,
            "paired": "HR + LR" if self.paired else "LR only",
            "scale": self.scale,
            "images": len(io.list_images(self.lr_dir)),
            "lr": self.lr_dir.as_posix(),
            "hr": self.hr_dir.as_posix() if self.hr_dir else "-",
        }


def find_eval_sets(degrade_dir: str | Path) -> list[EvalSet]:
    """Every set the manifest of ``degrade_dir`` records, sorted by name, its folders checked."""
    degrade_dir = Path(degrade_dir)
    manifest = degrade_dir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest}: no degrade manifest; run the degrade stage first (`dvc repro degrade`, or "
            "notebooks/01_degrade.ipynb with the same build_dir)"
        )
    records = json.loads(manifest.read_text()).get("eval_sets")
    if records is None:
        raise ValueError(f"{manifest}: no eval_sets record (made by an older srlab); run `dvc repro degrade`")
    sets = []
    for name, r in sorted(records.items()):
        folder = degrade_dir / "eval" / name
        lr, hr = folder / "lr", folder / "hr"
        if not lr.is_dir():
            raise FileNotFoundError(f"{folder}: no lr/ folder; every evaluation set needs its LR images")
        if r["paired"] and not hr.is_dir():
            raise FileNotFoundError(f"{folder}: the manifest records HR images but no hr/ folder is there")
        pipeline = r.get("pipeline", r["kind"])
        sets.append(
            EvalSet(name, lr, hr if r["paired"] else None, int(r["scale"]), r["kind"], r["source"], pipeline)
        )
    if not sets:
        raise FileNotFoundError(f"{manifest}: no evaluation sets; add data.eval_sets and `dvc repro degrade`")
    return sets
