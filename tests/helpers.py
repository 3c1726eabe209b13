"""Small helpers shared by test modules (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Module initialisation uses torch's global RNG; fork it so tests stay independent."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
