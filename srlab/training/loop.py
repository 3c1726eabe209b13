"""The generic training loop: HF Accelerate, step-indexed batches, atomic checkpoints, exact resume.

Why step-indexed: every random draw of a step (which samples, crops, noise, timesteps) comes from a
generator seeded by (seed, step, micro-batch, process). A step's work is then a pure function of the
step number, so resuming from a checkpoint at step k replays steps k+1.. exactly as an uninterrupted
run would, with no data-loader state to save. The same holds on N processes: each process draws its
own share from its own seed stream, and Accelerate averages the gradients.

Checkpoints are written to a hidden temporary folder and renamed into place
(``checkpoint-90000/``, named like the authors' release), so a crash never leaves a checkpoint that loads
but is half-written.

Resuming is strict (``ResumeError`` otherwise, naming the checkpoint and the offending keys): every
trainable tensor of the phase's models must be in the checkpoint with its shape, and nothing else; the
optimizer state must match the param groups (sizes, parameter names, state shapes); the fp16 GradScaler
state is restored when the run uses one; and the params the checkpoint was trained with must equal the
current ones, except the keys the phase declares irrelevant to its weights (``Phase.params_ignored``),
unless ``run_phase(..., allow_params_change=True)``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.pt"
_SHOWN = 10  # offending keys listed per kind in a ResumeError


class ResumeError(RuntimeError):
    """A checkpoint that does not fit the run resuming from it; the message names the checkpoint file
    and the missing / unexpected / misshapen keys or the differing params."""


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
    live_dir: Path | None = None  # DVCLive folder shared by phases (``_LiveLog``); None: <out_dir>/dvclive
    samples_per_step: int = 1  # samples one optimizer step sees over all processes (the samples/s curve)
    # The run's params as nested plain data (params.yaml sections), recorded in every checkpoint and,
    # on resume, compared with the checkpoint's (None: neither recorded nor checked).
    params: Mapping[str, Any] | None = None
    # Dotted params.yaml keys (a key covers its sub-keys) that do not change what the phase trains
    # (e.g. train.log_every, the phase's own step count): they may differ on resume.
    params_ignored: tuple[str, ...] = ()


def checkpoints(folder: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``folder``, sorted by step (temporary folders are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return sorted(c for c in found if (c[1] / STATE_FILE).is_file())


def run_phase(
    phase: Phase,
    accelerator: Accelerator,
    out_dir: str | os.PathLike[str],
    seed: int,
    allow_params_change: bool = False,
) -> Path | None:
    """Train ``phase`` to ``phase.steps`` optimizer steps, resuming from the newest checkpoint in
    ``out_dir`` if there is one. Returns the final checkpoint folder (None for a 0-step phase).

    Resuming raises ``ResumeError`` on a checkpoint that does not fit the phase (see ``load_state``);
    ``allow_params_change`` resumes one trained with other params (the current ones then rule,
    the optimizer's hyperparameters included)."""
    out_dir = Path(out_dir)
    if phase.steps == 0:
        return None
    done = checkpoints(out_dir)
    start = 0
    if done:
        start, last = done[-1]
        load_state(phase, accelerator, last, allow_params_change)
        if start >= phase.steps:
            return last
    models = list(phase.models.values())
    params = [p for m in models for p in m.parameters() if p.requires_grad]
    log = _LiveLog(phase.live_dir or out_dir / "dvclive", phase.name, start, accelerator.is_main_process)
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
            log.write(
                step + 1, loss_avg, phase.optimizer.param_groups[0]["lr"], rate * phase.samples_per_step
            )
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
            **phase.extra_state,
            "phase": phase.name,
            "step": step,
            "optimizer": phase.optimizer.state_dict(),
            "optimizer_params": _optimizer_names(phase, accelerator),
            "trainable": {k: _trainable_state(m) for k, m in unwrapped.items()},
        }
        if phase.params is not None:
            state["params"] = _plain(phase.params)
        if accelerator.scaler is not None:  # fp16: the loss scale and its growth tracker
            state["scaler"] = accelerator.scaler.state_dict()
        torch.save(state, tmp / STATE_FILE)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in checkpoints(out_dir)[: -phase.keep_checkpoints] if phase.keep_checkpoints else []:
            shutil.rmtree(old)
        if phase.on_checkpoint is not None:
            phase.on_checkpoint(step, final)
    accelerator.wait_for_everyone()
    return final


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k in names}


def _optimizer_names(phase: Phase, accelerator: Accelerator) -> list[list[str]]:
    """The optimizer's parameters per group, each named ``<model key>.<parameter name>``."""
    names = {
        id(p): f"{key}.{n}"
        for key, m in phase.models.items()
        for n, p in accelerator.unwrap_model(m).named_parameters()
    }
    groups = phase.optimizer.param_groups
    return [[names.get(id(p), f"<unnamed {i}>") for i, p in enumerate(g["params"])] for g in groups]


def _plain(value: Any) -> Any:
    """Params as builtins only (dicts, lists, scalars), so ``torch.load(weights_only=True)`` reads them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: _plain(value)}


_ABSENT = "<absent>"


def params_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], ignored: Iterable[str] = ()
) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs, sorted; a key absent on one side
    shows as ``"<absent>"``. Keys in ``ignored`` (and their sub-keys) are skipped."""
    ignored = tuple(ignored)
    a, b = _flatten(old), _flatten(new)

    def skip(key: str) -> bool:
        return any(key == i or key.startswith(i + ".") for i in ignored)

    return [
        (k, a.get(k, _ABSENT), b.get(k, _ABSENT))
        for k in sorted(set(a) | set(b))
        if not skip(k) and a.get(k, _ABSENT) != b.get(k, _ABSENT)
    ]


def _listed(keys: list[str]) -> str:
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _check_params(phase: Phase, state: dict[str, Any], path: Path, allow_change: bool) -> None:
    if phase.params is None or allow_change:
        return
    hint = (
        "resume anyway with allow_params_change=True (python -m srlab.training.train "
        "--allow-params-change), or train into a fresh output folder"
    )
    if "params" not in state:
        raise ResumeError(f"{path}: checkpoint of phase {phase.name!r} records no params; {hint}")
    diff = params_diff(state["params"], _plain(phase.params), phase.params_ignored)
    if diff:
        lines = "".join(f"\n  {k}: {old!r} (checkpoint) -> {new!r} (now)" for k, old, new in diff)
        raise ResumeError(
            f"{path}: phase {phase.name!r} was trained with other params ({len(diff)} differing):"
            f"{lines}\n{hint}"
        )


def _check_trainable(phase: Phase, accelerator: Accelerator, stored: Any, path: Path) -> None:
    """Every trainable tensor present with its shape, and no others: else ResumeError naming them."""
    missing: list[str] = []
    unexpected: list[str] = []
    misshapen: list[str] = []
    stored = stored if isinstance(stored, Mapping) else {}
    unexpected += [f"{key} (a whole model)" for key in stored if key not in phase.models]
    for key, model in phase.models.items():
        want = {n: p.shape for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
        have = stored.get(key, {})
        missing += [f"{key}.{n}" for n in want if n not in have]
        unexpected += [f"{key}.{n}" for n in have if n not in want]
        misshapen += [
            f"{key}.{n} (checkpoint {tuple(have[n].shape)}, model {tuple(shape)})"
            for n, shape in want.items()
            if n in have and tuple(have[n].shape) != tuple(shape)
        ]
    problems = [
        f"{len(keys)} {kind}: {_listed(keys)}"
        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen))
        if keys
    ]
    if problems:
        raise ResumeError(
            f"{path}: the trainable state of phase {phase.name!r} does not match its models; "
            + "; ".join(problems)
        )


def _check_optimizer(phase: Phase, accelerator: Accelerator, state: dict[str, Any], path: Path) -> None:
    """The saved optimizer state fits the current param groups: group count and sizes, parameter names
    (checkpoints that record them), and each per-parameter state tensor's shape."""
    saved = state.get("optimizer")
    groups = phase.optimizer.param_groups
    if not isinstance(saved, Mapping) or "param_groups" not in saved or "state" not in saved:
        raise ResumeError(f"{path}: no optimizer state for phase {phase.name!r}")
    saved_groups = saved["param_groups"]
    if len(saved_groups) != len(groups):
        raise ResumeError(
            f"{path}: optimizer state of phase {phase.name!r} has {len(saved_groups)} param groups, "
            f"the optimizer {len(groups)}"
        )
    names = _optimizer_names(phase, accelerator)
    recorded = state.get("optimizer_params")
    problems: list[str] = []
    params: dict[Any, tuple[str, torch.Tensor]] = {}
    for g, (sg, cg) in enumerate(zip(saved_groups, groups, strict=True)):
        if len(sg["params"]) != len(cg["params"]):
            problems.append(
                f"group {g} holds {len(sg['params'])} parameters, the optimizer {len(cg['params'])}"
            )
            continue
        if recorded is not None:
            old = recorded[g] if g < len(recorded) else []
            if list(old) != names[g]:
                moved = [f"{a} -> {b}" for a, b in zip(old, names[g], strict=False) if a != b]
                problems.append(f"group {g} parameters differ: {_listed(moved or ['(count)'])}")
                continue
        params.update(
            {i: (names[g][j], p) for j, (i, p) in enumerate(zip(sg["params"], cg["params"], strict=True))}
        )
    for i, entry in saved["state"].items():
        if i not in params:
            problems.append(f"state for unknown parameter index {i}")
            continue
        name, p = params[i]
        for k, v in entry.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and tuple(v.shape) != tuple(p.shape):
                problems.append(f"{name} {k} (checkpoint {tuple(v.shape)}, parameter {tuple(p.shape)})")
    if problems:
        raise ResumeError(
            f"{path}: the optimizer state of phase {phase.name!r} does not match its param groups: "
            + _listed(problems)
        )


def load_state(
    phase: Phase, accelerator: Accelerator, folder: Path, allow_params_change: bool = False
) -> None:
    """Restore a checkpoint into ``phase`` (and the accelerator's GradScaler), checking it all first:
    the params (``Phase.params``), every trainable tensor, the optimizer's groups; raises ResumeError
    naming the checkpoint file and what does not fit, before anything is changed."""
    path = folder / STATE_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("phase") != phase.name:
        raise ResumeError(f"{path}: checkpoint of phase {state.get('phase')!r}, expected {phase.name!r}")
    _check_params(phase, state, path, allow_params_change)
    _check_trainable(phase, accelerator, state.get("trainable"), path)
    _check_optimizer(phase, accelerator, state, path)
    scaler = accelerator.scaler
    if scaler is not None and "scaler" not in state and not allow_params_change:
        raise ResumeError(
            f"{path}: the run uses an fp16 GradScaler but the checkpoint has no scaler state "
            "(written without fp16, or by an older srlab); resume with allow_params_change=True"
        )
    for key, model in phase.models.items():
        result = accelerator.unwrap_model(model).load_state_dict(state["trainable"][key], strict=False)
        assert not result.unexpected_keys, result.unexpected_keys  # checked above
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in phase.optimizer.param_groups]
    phase.optimizer.load_state_dict(state["optimizer"])
    if allow_params_change:  # the current params rule: lr, betas, weight decay as configured now
        for group, now in zip(phase.optimizer.param_groups, hyper, strict=True):
            group.update(now)
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])


class _LiveLog:
    """The phase's training curves through DVCLive in ``folder`` (``dvc plots show``, ``dvc exp show``):
    ``<phase>/loss``, ``<phase>/lr`` and ``<phase>/samples_per_s`` at every logged step, the last values
    in ``metrics.json``. Phases share the folder, each under its own name. On resume, rows past the resumed
    step are dropped first, so a resumed run's curves equal an uninterrupted run's."""

    def __init__(self, folder: Path, phase: str, start: int, active: bool) -> None:
        self.phase, self.live = phase, None
        if not active:
            return
        for tsv in (folder / "plots" / "metrics" / phase).glob("*.tsv"):
            lines = tsv.read_text().splitlines()
            kept = [lines[0], *(r for r in lines[1:] if int(r.split("\t")[0]) <= start)]
            tsv.write_text("\n".join(kept) + "\n")
        self.live = open_live(folder)

    def write(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        if self.live is not None:
            self.live.step = step
            for name, value in (("loss", loss), ("lr", lr), ("samples_per_s", samples_per_s)):
                self.live.log_metric(f"{self.phase}/{name}", value)
            self.live.make_summary()


def open_live(folder: str | os.PathLike[str]) -> Any:
    """A DVCLive logger on ``folder`` that appends to what is there and writes nothing else: no report,
    no DVC experiment of its own, no edit of the project's dvc.yaml (the stage declares the plots)."""
    from dvclive import Live

    return Live(str(folder), resume=True, report=None, save_dvc_exp=False, dvcyaml=None)
