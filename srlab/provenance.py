"""Where an output came from: the git revision recorded in checkpoints and in the report."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def git_revision(root: str | Path) -> dict[str, Any]:
    """{"commit", "dirty", "text"} of the checkout at ``root``; dirty = tracked or untracked files
    (not ignored ones) differ from the commit. Outside git: commit None and the reason in "text"."""

    def run(*args: str) -> str:
        command = ["git", "-C", str(root), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout

    try:
        commit, changed = run("rev-parse", "HEAD").strip(), run("status", "--porcelain").splitlines()
    except (OSError, subprocess.SubprocessError) as err:
        why = getattr(err, "stderr", None) or str(err)
        return {"commit": None, "dirty": None, "text": f"unknown (no git revision: {why.strip()})"}
    text = f"{commit} (dirty: {len(changed)} files differ from it)" if changed else f"{commit} (clean)"
    return {"commit": commit, "dirty": bool(changed), "text": text}
