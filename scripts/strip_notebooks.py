"""Strip source notebooks for commit: no outputs, counts or run metadata, except in cells marked
``"keep_output": true``, whose output is the notebook's contract that nbval compares
(`pytest --nbval-lax` checks the cells tagged ``# NBVAL_CHECK_OUTPUT``; nbval needs an execution
count on a cell with stored outputs, which nbstripout would drop).

Usage: python scripts/strip_notebooks.py notebooks/*.ipynb
"""

from __future__ import annotations

import sys

import nbformat

KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")


def _merged_streams(outputs: list) -> list:
    """Consecutive stdout (or stderr) chunks as one output: how a kernel splits a print depends on
    its buffering, not on what the cell printed."""
    merged: list = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (
            output.output_type == "stream"
            and last is not None
            and last.output_type == "stream"
            and (last.name == output.name)
        ):
            last.text += output.text
        else:
            merged.append(output)
    return merged


def strip(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NOTEBOOK_METADATA}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags", "keep_output")}
        if cell.metadata.get("keep_output"):
            cell.execution_count = 1
            cell.outputs = _merged_streams(cell.outputs)
            for output in cell.outputs:
                output.pop("execution_count", None)
                output.get("metadata", {}).clear()
        else:
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        strip(arg)
