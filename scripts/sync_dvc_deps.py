"""Rewrite each dvc.yaml stage's srlab/ deps to its import closure (sorted), keeping other lines."""
import sys
sys.path.insert(0, "tests")
from pathlib import Path
import test_dvc_deps as t

text = Path("dvc.yaml").read_text().split("\n")
out, i = [], 0
stage = None
stages = t.STAGES
# map a stage name line to its closure
import re
while i < len(text):
    line = text[i]
    m = re.match(r"^  ([a-z_]+):\s*(#.*)?$", line)
    if m and m.group(1) in stages:
        stage = m.group(1)
    if stage and (line.strip() == "deps:" or line.strip().startswith("deps: &")):
        out.append(line)
        i += 1
        deps = []
        indent = None
        while i < len(text) and text[i].lstrip().startswith("- "):
            deps.append(text[i]); indent = text[i][: len(text[i]) - len(text[i].lstrip())]; i += 1
        needed = sorted(t.closure(t.stage_source(stages[stage]["cmd"])))
        others = [d for d in deps if not d.strip()[2:].startswith("srlab/")]
        first_srlab = next((k for k, d in enumerate(deps) if d.strip()[2:].startswith("srlab/")), len(others))
        new = [d for d in deps[:first_srlab] if not d.strip()[2:].startswith("srlab/")]
        new += [f"{indent}- {n}" for n in needed]
        new += [d for d in deps[first_srlab:] if not d.strip()[2:].startswith("srlab/")]
        out += new
        continue
    out.append(line)
    i += 1
Path("dvc.yaml").write_text("\n".join(out))
