"""Bring dvc.yaml in line with the code: each stage's srlab/ deps become its import closure, and each
profile or recipe overlay of a section it loads whole is listed in its params (tests/test_dvc_deps.py
computes both; this writes them). Other lines are kept as they are.

    python scripts/sync_dvc_deps.py && python -m pytest tests/test_dvc_deps.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import test_dvc_deps as deps  # noqa: E402  (the test's own reading of stages and closures)

STAGE = re.compile(r"^  ([a-z_]+):\s*(#.*)?$")
ITEM = re.compile(r"^(\s+)- (\S+)")


def _items(lines: list[str], i: int) -> tuple[list[str], int]:
    block = []
    while i < len(lines) and ITEM.match(lines[i]):
        block.append(lines[i])
        i += 1
    return block, i


def main() -> None:
    lines = (ROOT / "dvc.yaml").read_text().split("\n")
    out: list[str] = []
    stage, i = None, 0
    while i < len(lines):
        line = lines[i]
        if (m := STAGE.match(line)) and m.group(1) in deps.STAGES:
            stage = m.group(1)
        key = line.strip()
        if stage and (key == "deps:" or key.startswith("deps: &")):
            out.append(line)
            block, i = _items(lines, i + 1)
            indent = ITEM.match(block[0]).group(1)
            needed = sorted(deps.closure(deps.stage_source(deps.STAGES[stage]["cmd"])))
            first = next((k for k, b in enumerate(block) if ITEM.match(b).group(2).startswith("srlab/")), 0)
            keep = [b for b in block if not ITEM.match(b).group(2).startswith("srlab/")]
            head = [b for b in keep if block.index(b) < first]
            out += head + [f"{indent}- {n}" for n in needed] + [b for b in keep if b not in head]
            continue
        if stage and key == "params:":
            out.append(line)
            block, i = _items(lines, i + 1)
            indent = ITEM.match(block[0]).group(1)
            listed = {ITEM.match(b).group(2) for b in block}
            whole, _ = deps.stage_param_keys(deps.STAGES[stage]["cmd"])
            extra = sorted(f"{p}.{s}" for p, s in whole if p is not None and f"{p}.{s}" not in listed)
            out += block + [f"{indent}- {e}" for e in extra]
            continue
        out.append(line)
        i += 1
    (ROOT / "dvc.yaml").write_text("\n".join(out))


if __name__ == "__main__":
    main()
