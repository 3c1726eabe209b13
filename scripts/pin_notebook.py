"""Drop what varies between runs of an executed notebook: wall-clock timestamps, durations and
random cell ids (papermill and nbclient write them). The rest (code, outputs, figures) is kept, so a
stage whose computation is byte-stable writes a byte-stable executed notebook and dvc.lock does not
change when it re-runs.

Usage: python scripts/pin_notebook.py build/notebooks/01_degrade.ipynb
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat

TIMING = ("start_time", "end_time", "duration")


def pin(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for key in TIMING:
        nb.metadata.get("papermill", {}).pop(key, None)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
        cell.metadata.pop("execution", None)
        for key in TIMING:
            cell.metadata.get("papermill", {}).pop(key, None)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".ipynb")
    with os.fdopen(fd, "w") as f:
        nbformat.write(nb, f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)  # atomic: a failed run leaves papermill's file, never half of this one


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        pin(arg)
