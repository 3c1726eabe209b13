"""Source notebooks stay thin and output-free, except the cells whose output is their contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebook_is_stripped_and_parameterized(path: Path) -> None:
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", []), "first code cell must be tagged `parameters`"
    for cell in code:
        kept = cell["metadata"].get("keep_output", False)
        if not kept:
            assert cell.get("outputs") == [], f"{path.name}: commit without outputs (run `make notebooks`)"
        else:
            assert "NBVAL_CHECK_OUTPUT" in "".join(cell["source"]), "kept outputs are checked by nbval"
            assert cell.get("outputs"), f"{path.name}: a keep_output cell lost its output"


def test_every_notebook_is_a_dvc_stage() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    commands = " ".join(str(s.get("cmd", "")) for s in stages.values())
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in commands, f"{path.name} is not driven by any dvc.yaml stage"
