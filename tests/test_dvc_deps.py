"""dvc.yaml lists, for every stage, exactly the srlab modules its code imports (transitively).

A module a stage imports but does not depend on leaves stale results that `dvc status` calls up to
date; a module it depends on but never imports re-runs it for nothing. Imports are read from the
source (AST of the notebook's code cells or of the `python -m` module), function-level imports
included, so the check needs no import of the code itself.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOP_INIT = "srlab/__init__.py"


def _imports(source: str) -> set[str]:
    """srlab modules named by the import statements of ``source`` (``from srlab import x`` -> srlab.x)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "srlab"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "srlab":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if _file(m) is not None}


def _file(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def closure(source: str) -> set[str]:
    """Files (relative to the repo) of every srlab module ``source`` imports, transitively."""
    todo, seen = list(_imports(source)), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages' __init__
        todo += list(_imports(_file(module).read_text()))
    files = {_file(m).relative_to(ROOT).as_posix() for m in seen}
    return files - {TOP_INIT}  # holds no code (test_top_package_holds_no_code), so no stage's dep


def stage_source(cmd: str) -> str:
    notebook = re.search(r"papermill (?:--log-output )?(notebooks/\S+\.ipynb)", cmd)
    if notebook:
        cells = json.loads((ROOT / notebook.group(1)).read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        lines = "\n".join(code).splitlines()
        return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
    module = re.search(r"python -m (srlab[\w.]*)", cmd)
    assert module, f"cannot tell what {cmd!r} runs"
    return f"import {module.group(1)}"


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_its_import_closure(name: str) -> None:
    stage = STAGES[name]
    listed = {d for d in stage["deps"] if d.startswith("srlab/")}
    needed = closure(stage_source(stage["cmd"]))
    assert not needed - listed, f"{name}: imports but does not depend on {sorted(needed - listed)}"
    assert not listed - needed, f"{name}: depends on but never imports {sorted(listed - needed)}"


def test_top_package_holds_no_code() -> None:
    """srlab/__init__.py runs with every import but is no stage's dep: it may hold only its docstring
    and plain assignments (the version), nothing that could change what a stage computes."""
    body = ast.parse((ROOT / TOP_INIT).read_text()).body
    assert all(
        isinstance(node, ast.Assign) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        for node in body
    )
