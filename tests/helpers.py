"""Small helpers shared by test modules (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def toy_phase(
    steps: int,
    checkpoint_every: int = 0,
    *,
    scaler: bool = False,
    lr: float = 1e-2,
    log_every: int = 1,
    record_params: bool = False,
    **phase_kwargs: Any,
) -> tuple[Any, Any]:
    """(``loop.Phase``, Accelerator) of a small regression problem for srlab.training.loop; each step
    draws its batch from the step's generator, the weights start fixed (no global seeding).

    ``scaler``: a CPU GradScaler whose huge initial scale overflows the first steps (skipped, the scale
    halved each time), so what a step does depends on the scaler's state (what fp16 sets up on a GPU).
    ``record_params``: the phase records ``train.lr`` / ``train.log_every`` (``train.log_every`` ignored
    on resume), so a resume compares them."""
    from accelerate import Accelerator

    from srlab.training import loop

    accelerator = Accelerator(cpu=True)
    if scaler:
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, growth_interval=1000)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    torch.nn.init.constant_(model[0].weight, 0.1)
    torch.nn.init.zeros_(model[0].bias)
    torch.nn.init.constant_(model[2].weight, -0.2)
    torch.nn.init.zeros_(model[2].bias)
    model, optimizer = accelerator.prepare(model, torch.optim.Adam(model.parameters(), lr=lr))
    target = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def loss(step: int, micro: int, gen: torch.Generator) -> torch.Tensor:
        x = torch.randn(16, 4, generator=gen)
        return torch.nn.functional.mse_loss(model(x), x @ target)

    def save(folder: Path, models: dict[str, torch.nn.Module]) -> None:
        torch.save(models["toy"].state_dict(), folder / "toy.pt")

    if record_params:
        phase_kwargs |= {"params": {"base": {"seed": 3}, "train": {"lr": lr, "log_every": log_every}},
                         "params_ignored": ("train.log_every",)}  # fmt: skip
    phase = loop.Phase(
        "toy", steps, {"toy": model}, optimizer, loss, save, checkpoint_every, log_every=log_every,
        **phase_kwargs,
    )  # fmt: skip
    return phase, accelerator
