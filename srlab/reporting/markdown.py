"""Markdown tables from rows of dicts (no srlab imports: the degrade notebook prints with it too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def markdown_table(rows: Sequence[Mapping[str, Any]], floatfmt: str = ".4g") -> str:
    """Rows of dicts -> a GitHub markdown table; floats formatted with ``floatfmt``.

    Columns: every key, in first-seen order (a row without one gets an empty cell). ``|`` in a value is
    escaped and newlines become spaces, so a long reason stays in its cell.
    """
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> str:
        text = format(value, floatfmt) if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
