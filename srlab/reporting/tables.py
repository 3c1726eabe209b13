"""Markdown tables that notebooks and the report print: metrics documents as rows, "n/a" where unavailable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from srlab.evaluation.weights import METRICS

NOT_AVAILABLE = "n/a"


def metric_label(name: str) -> str:
    """Column title: the metric with the direction that is better (scores: higher)."""
    if name == "n_images":
        return "images"
    return f"{name} {'↓' if name in METRICS and METRICS[name].lower_better else '↑'}"


def results_rows(
    methods: Mapping[str, Mapping[str, Any]], key: str = "method", floatfmt: str = ".4g"
) -> list[dict[str, Any]]:
    """{method: {metric: value | None}} (one set of a metrics.json) -> table rows, None shown as n/a.

    Values are formatted here (``floatfmt``) so that "n/a", "inf" and numbers mix in one column.
    """
    rows = []
    for method, values in methods.items():
        row: dict[str, Any] = {key: method}
        for name, value in values.items():
            if value is None:
                text = NOT_AVAILABLE
            elif isinstance(value, float):
                text = format(value, floatfmt)
            else:
                text = str(value)
            row[metric_label(name)] = text
        rows.append(row)
    return rows


def method_rows(document: Mapping[str, Any], method: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per set of a metrics.json document where ``method`` has any of ``names``: its values."""
    rows = []
    for set_name, methods in document["sets"].items():
        values = methods.get(method, {})
        if any(n in values for n in names):
            kept = {n: values[n] for n in ("n_images", *names) if n in values}
            rows.append({"set": set_name, **results_rows({method: kept})[0]})
    return rows
