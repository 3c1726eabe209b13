"""dvc.yaml lists, for every stage, exactly the srlab modules its code imports (transitively) and
exactly the params.yaml sections it loads.

A module a stage imports but does not depend on leaves stale results that `dvc status` calls up to
date; a module it depends on but never imports re-runs it for nothing. Imports are read from the
source (AST of the notebook's code cells or of the `python -m` module), function-level imports
included and ``if TYPE_CHECKING:`` blocks excluded, so the check needs no import of the code itself.
Sections: a stage loads ``srlab.config.load_params(..., X.SECTIONS)`` (plus ``base``), and reading any
other section raises (srlab.config.Params), so the stage's SECTIONS are exactly what it reads.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from srlab import config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_INITS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "srlab").rglob("__init__.py"))


def _nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_nodes(child)])
            continue
        yield node
        yield from _nodes(node)


def _imports(source: str) -> set[str]:
    """srlab modules named by the import statements of ``source`` (``from srlab import x`` -> srlab.x)."""
    found = set()
    for node in _nodes(ast.parse(source)):
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
    """Files (relative to the repo) of every srlab module ``source`` imports, transitively, and the
    ``assets/`` folders those modules read (``_assets``)."""
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
    files |= {d for m in seen if (d := _assets(_file(m))) is not None}
    return files - set(PACKAGE_INITS)  # they hold no code (test_package_inits_hold_no_code): no stage's dep


def _assets(path: Path) -> str | None:
    """The ``assets/`` folder beside a module that defines a top-level ``ASSETS`` (files it reads at run
    time, e.g. bundled metric parameters): a dep of every stage that imports the module."""
    tree = ast.parse(path.read_text())
    targets = [t for n in tree.body if isinstance(n, ast.Assign) for t in n.targets]
    targets += [n.target for n in tree.body if isinstance(n, ast.AnnAssign)]
    defines = any(isinstance(t, ast.Name) and t.id == "ASSETS" for t in targets)
    folder = path.parent / "assets"
    if defines and not folder.is_dir():
        raise AssertionError(f"{path} defines ASSETS but {folder} is not a folder")
    return folder.relative_to(ROOT).as_posix() if defines else None


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


def test_a_module_reading_bundled_assets_makes_them_a_dep() -> None:
    """NIQE's bundled .mat is read at run time by srlab.evaluation.metrics (weights.ASSETS): an edit to
    it must re-run what scores with it, and only that."""
    assert "srlab/evaluation/assets" in closure("from srlab.evaluation import metrics")
    assert "srlab/evaluation/assets" in STAGES["evaluate"]["deps"]
    assert "srlab/evaluation/assets" not in closure("import srlab.training.prior")


def test_package_inits_hold_no_code() -> None:
    """Package __init__ files run with every import but are no stage's dep: they may hold only their
    docstring and plain assignments (the version), nothing that could change what a stage computes."""
    for init in PACKAGE_INITS:
        body = ast.parse((ROOT / init).read_text()).body
        doc = (ast.Expr, ast.Constant)
        plain = [isinstance(n, ast.Assign) or (isinstance(n, doc[0]) and isinstance(n.value, doc[1]))
                 for n in body]  # fmt: skip
        assert all(plain), init


def stage_sections(cmd: str) -> dict[str, object]:
    """The params.yaml sections a stage loads: ``base`` and its SECTIONS (schemas or Subsets)."""
    source = stage_source(cmd)
    module = re.search(r"python -m (srlab[\w.]*)", cmd)
    if module:
        name = module.group(1)
    else:
        alias = re.search(r"load_params\([^)]*?\b(\w+)\.SECTIONS\)", source)
        assert alias, f"{cmd!r}: the notebook does not load its params with load_params(..., X.SECTIONS)"
        found = re.search(rf"from (srlab[\w.]*) import (?:[\w, ]*\b){alias.group(1)}\b", source)
        assert found, f"cannot tell which module {alias.group(1)} is"
        name = f"{found.group(1)}.{alias.group(1)}"
    sections = {"base": config.BaseParams, **importlib.import_module(name).SECTIONS}
    return {s: sections[s] for s in config.SECTION_NAMES if s in sections}


RAW = config.read_yaml(ROOT / "params.yaml")


def _has(raw: object, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return False
        raw = raw[part]
    return True


def stage_param_keys(cmd: str) -> tuple[set[tuple[str | None, str]], set[str]]:
    """What a stage must list: whole sections as (overlay or None, section), and the exact dotted keys of
    its Subset sections (with the overlays that set them)."""
    whole, exact = set(), set()
    for section, spec in stage_sections(cmd).items():
        if isinstance(spec, config.Subset):
            keys = [f"{section}.{k}" for k in spec.keys]
            exact |= set(keys) | {f"{p}.{k}" for p in config.OVERLAYS for k in keys if _has(RAW.get(p), k)}
        else:
            whole |= {(None, section)} | {
                (p, section) for p in config.OVERLAYS if section in (RAW.get(p) or {})
            }
    return whole, exact


def _section(key: str) -> str:
    """The section a params key belongs to: ``infer.device`` and ``paper.infer.device`` -> infer."""
    parts = key.split(".")
    return parts[1] if parts[0] in config.OVERLAYS else parts[0]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_are_the_sections_it_loads(name: str) -> None:
    """Each listed key's section (``infer``, ``paper.infer``, ``ablations.prompt.x`` -> ablations) is one
    the stage loads, and every loaded section and each of its profile overlays is listed; of a Subset
    (``infer.settings.synthetic`` for the train stage), exactly its keys."""
    stage = STAGES[name]
    listed = [k if isinstance(k, str) else next(iter(k)) for k in stage.get("params", [])]
    whole, exact = stage_param_keys(stage["cmd"])
    subset_sections = {_section(k) for k in exact}
    mine = [k for k in listed if _section(k) in subset_sections]
    assert set(mine) == exact, (
        f"{name}: lists {sorted(set(mine) - exact)}; misses {sorted(exact - set(mine))}"
    )
    parts = [k.split(".") for k in listed if k not in mine]
    got = {(p[0], p[1]) if p[0] in config.OVERLAYS else (None, p[0]) for p in parts}
    extra, missing = sorted(got - whole, key=str), sorted(whole - got, key=str)
    assert got == whole, f"{name}: lists {extra}, which it does not read; misses {missing}"


def test_a_report_only_edit_reruns_the_report_alone() -> None:
    """The edits of issue 15: a report parameter (``report.grid_images``), or any line of the module that
    defines the report's parameters, must leave every stage but ``report`` up to date."""
    by_param = {n for n, s in STAGES.items() if any(str(k).split(".")[-1] == "report" or str(k) == "report"
                                                    for k in s.get("params", []))}  # fmt: skip
    by_file = {n for n, s in STAGES.items() if "srlab/reporting/params.py" in s["deps"]}
    assert by_param == {"report"} and by_file == {"report"}
    # and the training stage does not re-run for figure or inference-prompt code it never imports
    train = set(STAGES["train"]["deps"])
    assert not train & {
        "srlab/reporting/params.py",
        "srlab/reporting/document.py",
        "srlab/evaluation/challenge.py",
    }
