"""Shared test setup (at the root so it also applies to `pytest notebooks/` alone). Notebooks run under
nbval write to a temporary build folder, not to build/, with the smoke profile."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    # nbval starts each notebook's kernel with this environment. The notebooks' parameter cells read
    # SRLAB_BUILD_DIR (so test runs never touch the DVC outputs in build/) and SRLAB_PROFILE (the
    # `smoke` profile of params.yaml: the tiny profile cut to a few steps and images).
    os.environ.setdefault("SRLAB_BUILD_DIR", tempfile.mkdtemp(prefix="srlab-nbval-"))
    os.environ.setdefault("SRLAB_PROFILE", "smoke")
    # OpenMP threads sleep instead of spinning while they wait: on 2 shared cores spinning threads
    # stall each other on small tensor ops (measured 91 s instead of 12 s for the degrade stage).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def params_text() -> str:
    return (ROOT / "params.yaml").read_text()
