"""The generic training loop: HF Accelerate, step-indexed batches, atomic checkpoints, exact resume.

Why step-indexed: every random draw of a step (which samples, crops, noise, timesteps) comes from a
generator seeded by (seed, step, micro-batch, process). A step's work is then a pure function of the
step number, so resuming from a checkpoint at step k replays steps k+1.. exactly as an uninterrupted
run would, with no data-loader state to save. The same holds on N processes: each process draws its
own share from its own seed stream, and Accelerate averages the gradients.

Checkpoints are written to a hidden temporary folder and renamed into place
(``checkpoint-90000/``, named like the authors' release), so a crash never leaves a checkpoint that loads
but is half-written.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.pt"
LOSS_COLUMNS = ("phase", "step", "loss", "lr", "steps_per_s")


def step_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator whose stream depends only on (seed, *keys): e.g. (seed, step, micro, rank)."""
    mixed = seed
    for key in keys:  # splitmix-style mixing keeps nearby keys far apart
        mixed = (mixed * 6364136223846793005 + key + 1442695040888963407) % (2**63)
    return torch.Generator(device=device).manual_seed(mixed)


@dataclass
class Phase:
    """One training phase (e.g. the tiny prior's VAE, its UNet, then ControlNet + semantic blocks).

    ``loss(step, micro, generator)`` draws its own batch from the generator and returns the scalar
    loss of one micro-batch on this process. ``save(folder, models)`` writes the model weights of a
    checkpoint (for the SR phase: the authors' ``unet/`` + ``controlnet/`` layout) from the
    unwrapped trainable modules.
    """

    name: str
    steps: int
    models: dict[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    loss: Callable[[int, int, torch.Generator], torch.Tensor]
    save: Callable[[Path, dict[str, torch.nn.Module]], None]
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    max_grad_norm: float = 1.0
    log_every: int = 10
    on_checkpoint: Callable[[int, Path], None] | None = None
    extra_state: dict[str, Any] = field(default_factory=dict)  # recorded in every checkpoint
    loss_log: Path | None = None  # CSV shared by phases (column `phase`); None: <out_dir>/loss.csv


def checkpoints(folder: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``folder``, sorted by step (temporary folders are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return sorted(c for c in found if (c[1] / STATE_FILE).is_file())


def run_phase(
    phase: Phase, accelerator: Accelerator, out_dir: str | os.PathLike[str], seed: int
) -> Path | None:
    """Train ``phase`` to ``phase.steps`` optimizer steps, resuming from the newest checkpoint in
    ``out_dir`` if there is one. Returns the final checkpoint folder (None for a 0-step phase)."""
    out_dir = Path(out_dir)
    if phase.steps == 0:
        return None
    done = checkpoints(out_dir)
    start = 0
    if done:
        start, last = done[-1]
        _load_state(phase, accelerator, last)
        if start >= phase.steps:
            return last
    models = list(phase.models.values())
    params = [p for m in models for p in m.parameters() if p.requires_grad]
    log = _LossLog(phase.loss_log or out_dir / "loss.csv", phase.name, start, accelerator.is_main_process)
    bar = tqdm(
        range(start, phase.steps),
        initial=start,
        total=phase.steps,
        desc=phase.name,
        disable=not accelerator.is_main_process,
        dynamic_ncols=True,
    )
    accum = accelerator.gradient_accumulation_steps
    tick, last_dir = time.perf_counter(), None
    for step in bar:
        for m in models:
            m.train()
        total = 0.0
        for micro in range(accum):
            gen = step_generator(seed, step, micro, accelerator.process_index)
            with accelerator.accumulate(*models):
                loss = phase.loss(step, micro, gen)
                accelerator.backward(loss)
                if accelerator.sync_gradients and phase.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, phase.max_grad_norm)
                phase.optimizer.step()
                phase.optimizer.zero_grad(set_to_none=True)
            total += loss.detach().float().item() / accum
        loss_avg = accelerator.reduce(torch.tensor(total, device=accelerator.device), "mean").item()
        now = time.perf_counter()
        rate = 1.0 / max(now - tick, 1e-9)
        tick = now
        bar.set_postfix(loss=f"{loss_avg:.4f}", it_s=f"{rate:.2f}")
        if (step + 1) % phase.log_every == 0 or step + 1 == phase.steps:
            log.write(step + 1, loss_avg, phase.optimizer.param_groups[0]["lr"], rate)
        every = phase.checkpoint_every
        if step + 1 == phase.steps or (every and (step + 1) % every == 0):
            last_dir = _save_state(phase, accelerator, out_dir, step + 1)
    bar.close()
    return last_dir if last_dir is not None else checkpoints(out_dir)[-1][1]


def _save_state(phase: Phase, accelerator: Accelerator, out_dir: Path, step: int) -> Path:
    """Write checkpoint-{step}/ atomically (main process), then prune old ones."""
    final = out_dir / f"checkpoint-{step}"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = out_dir / f".checkpoint-{step}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        unwrapped = {k: accelerator.unwrap_model(m) for k, m in phase.models.items()}
        phase.save(tmp, unwrapped)
        state = {
            "phase": phase.name,
            "step": step,
            "optimizer": phase.optimizer.state_dict(),
            "trainable": {k: _trainable_state(m) for k, m in unwrapped.items()},
            **phase.extra_state,
        }
        torch.save(state, tmp / STATE_FILE)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in checkpoints(out_dir)[: -max(phase.keep_checkpoints, 1)]:
            shutil.rmtree(old)
        if phase.on_checkpoint is not None:
            phase.on_checkpoint(step, final)
    accelerator.wait_for_everyone()
    return final


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k in names}


def _load_state(phase: Phase, accelerator: Accelerator, folder: Path) -> None:
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    if state["phase"] != phase.name:
        raise RuntimeError(f"{folder}: checkpoint of phase {state['phase']!r}, expected {phase.name!r}")
    for key, model in phase.models.items():
        missing = accelerator.unwrap_model(model).load_state_dict(state["trainable"][key], strict=False)
        if missing.unexpected_keys:
            extra = missing.unexpected_keys[:5]
            raise RuntimeError(f"{folder}: unexpected trainable keys for {key}: {extra}")
    phase.optimizer.load_state_dict(state["optimizer"])


class _LossLog:
    """loss.csv for DVC plots; on resume, rows past the resumed step are dropped (no duplicates)."""

    def __init__(self, path: Path, phase: str, start: int, active: bool) -> None:
        self.path, self.phase, self.active = path, phase, active
        if not active:
            return
        rows = self._read()
        rows = [r for r in rows if r["phase"] != phase or int(r["step"]) <= start]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_all(rows)

    def _read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open() as f:
            return list(csv.DictReader(f))

    def _write_all(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, LOSS_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, step: int, loss: float, lr: float, rate: float) -> None:
        if self.active:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([self.phase, step, f"{loss:.6g}", f"{lr:.3g}", f"{rate:.3g}"])
