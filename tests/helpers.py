"""Small helpers shared by test modules (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from srlab.config import Params


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Module initialisation uses torch's global RNG; fork it so tests stay independent."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def all_sections() -> dict[str, type]:
    """Every params.yaml section's schema (a stage loads only its own; tests check them all)."""
    from srlab.ablations.params import AblationParams
    from srlab.data.degrade_params import DegradeParams
    from srlab.data.params import DataParams
    from srlab.evaluation.params import EvaluateParams
    from srlab.models.params import ModelParams
    from srlab.reporting.params import ReportParams
    from srlab.sampling.params import InferParams
    from srlab.training.params import TrainParams

    return {
        "data": DataParams, "degrade": DegradeParams, "evaluate": EvaluateParams, "report": ReportParams,
        "model": ModelParams, "train": TrainParams, "infer": InferParams, "ablations": AblationParams,
    }  # fmt: skip


def load_all(path: object, profile: str | None = None) -> Params:
    """The whole params file, every section and every cross-section rule checked."""
    from srlab.config import load_params

    return load_params(path, profile, all_sections())
