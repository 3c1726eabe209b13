"""The import rules of docs/architecture.md, checked on the source (AST, as tests/test_dvc_deps.py).

Each package may import only the packages its row allows, and the closures that matter most are
checked whole: photo upscaling never reaches training, data building or metrics; models know no
dataset; metrics know no model; the report reads results and imports no model code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dvc_deps import _imports, closure

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {  # package -> the srlab packages its modules may import (besides itself)
    "config": set(),
    "io": set(),
    "provenance": set(),
    "data": {"config", "io"},
    "models": {"config", "io"},
    "sampling": {"config", "io", "models", "data"},  # data: eval_sets only (the infer stage's inputs)
    "evaluation": {"config", "io", "data"},  # data: eval_sets only
    "training": {"config", "io", "data", "models", "sampling", "evaluation", "provenance"},
    "ablations": {"config", "io", "data", "models", "sampling", "training", "evaluation", "reporting"},
    "reporting": {"config", "io", "data", "evaluation", "ablations", "provenance"},
    "cli": {"config", "models", "sampling", "evaluation"},
}


def _package(path: Path) -> str:
    return path.relative_to(ROOT / "srlab").with_suffix("").parts[0]


MODULES = sorted(
    p for p in (ROOT / "srlab").rglob("*.py") if p.name != "__init__.py" or p.parent.name != "srlab"
)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_each_module_imports_only_what_its_package_may(path: Path) -> None:
    package = _package(path)
    used = {m.split(".")[1] for m in _imports(path.read_text()) if m.count(".") >= 1} - {package}
    assert used <= ALLOWED[package], (
        f"{path}: imports {sorted(used - ALLOWED[package])}, not allowed for {package}"
    )


def _closure_of(*modules: str) -> set[str]:
    return closure("\n".join(f"import {m}" for m in modules))


def test_photo_upscaling_reaches_no_training_data_or_metric_code() -> None:
    reached = _closure_of("srlab.sampling.batch", "srlab.sampling.upscale")
    banned = [
        f
        for f in reached
        if f.startswith(("srlab/training", "srlab/data", "srlab/evaluation", "srlab/reporting"))
    ]
    assert not banned and "srlab/sampling/pipeline.py" in reached


def test_models_know_no_dataset_and_metrics_know_no_model() -> None:
    models = _closure_of(*(f"srlab.models.{p.stem}" for p in (ROOT / "srlab/models").glob("[!_]*.py")))
    assert all(f.startswith(("srlab/models", "srlab/config", "srlab/io")) for f in models), sorted(models)
    metrics = _closure_of(
        "srlab.evaluation.metrics", "srlab.evaluation.challenge", "srlab.evaluation.evaluate"
    )
    assert not [f for f in metrics if f.startswith(("srlab/models", "srlab/sampling", "srlab/training"))]


def test_the_report_imports_no_model_or_training_code() -> None:
    report = _closure_of("srlab.reporting.document")
    assert not [f for f in report if f.startswith(("srlab/models", "srlab/sampling", "srlab/training"))]
    assert "srlab/ablations/cells.py" not in report  # tables only: the cells' runner imports training
