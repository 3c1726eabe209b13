"""Shared fixtures. Notebooks run under nbval write to a temporary build folder, not to build/."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # nbval starts each notebook's kernel with this environment; the notebooks' parameter cells
    # read SRLAB_BUILD_DIR, so test runs never touch the DVC outputs in build/.
    os.environ.setdefault("SRLAB_BUILD_DIR", tempfile.mkdtemp(prefix="srlab-nbval-"))


@pytest.fixture
def params_text() -> str:
    return (ROOT / "params.yaml").read_text()
