"""Training: the ControlNet + semantic blocks of Eq. 4 (the train stage).

The paper trains only the ControlNet and the UNet's semantic blocks, with SD2 base frozen as the prior,
epsilon-prediction MSE (Eq. 4), Adam at 5e-5 for 90k steps. The tiny profile has no pretrained SD2 to
lean on: the prior stage (srlab.training.prior) trains one of its own, and this stage loads that folder
exactly as the paper profile loads SD2 base.

Runs in a notebook (one process) or on many GPUs/nodes with the same code:

    accelerate launch -m srlab.training.train --out build/train          # GPUs, per accelerate config
    torchrun --nproc_per_node 2 -m srlab.training.train --out build/train  # CPU processes (gloo)

Every step's randomness derives from (base.seed, step, micro-batch, process) (``srlab.training.loop``), so an
interrupted run resumes exactly; re-running the stage continues from the newest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from diffusers import DDPMScheduler
from torch.utils.data import DataLoader, Dataset

from srlab.config import PROFILES, SECTION_NAMES, Params, Subset, as_dict, load_params
from srlab.data.datasets import TrainPairs
from srlab.data.degrade_params import DegradeParams
from srlab.data.params import DataParams
from srlab.io import atomic_dir
from srlab.models.params import ModelParams
from srlab.models.sr_model import (
    FINAL_DIR,
    SRModel,
    build_sr_model,
    load_seesr_init,
    predict,
    prior_model_dir,
    save_checkpoint,
    trainable_parameters,
)
from srlab.models.tagging import with_tag_cache
from srlab.provenance import git_revision
from srlab.sampling.params import PRESETS, InferParams
from srlab.training import loop
from srlab.training.params import TrainParams
from srlab.training.prior import encode_latents

LIVE_DIR = "dvclive"  # the train stage's DVCLive folder: every phase's curves, validation scores

# What the train stage reads (dvc.yaml `params`): data/degrade for the Dataset and the scale; of infer,
# only the synthetic track's sampler and the device, for the validation samples (a change to the wild
# track's settings does not re-run training).
SECTIONS = {
    "data": DataParams, "degrade": DegradeParams, "model": ModelParams, "train": TrainParams,
    "infer": Subset(InferParams, ("preset", "set_presets", "fidelity", "overrides", "device", "dtype",
                                  "kind_overrides.synthetic", *(f"presets.{p}.synthetic" for p in PRESETS))),
}  # fmt: skip


# What a resumed run may change (``loop.Phase.params_ignored``): keys that change no trained weight.
# Every other key of the params a checkpoint records must equal the current one, else the resume
# refuses (``loop.ResumeError``), unless ``allow_params_change`` (``--allow-params-change``).
RESUME_IGNORED = (
    "base.profile",  # a name only: the values it selects are compared one by one
    "train.checkpoint_every", "train.keep_checkpoints", "train.log_every", "train.sample_images",
    "train.val_crop", "infer",  # checkpoints, logs and validation samples
    "train.num_workers",  # a batch is a function of its step, not of the DataLoader's workers
    *(s for s in SECTION_NAMES if s not in ("base", "data", "degrade", "model", "train", "infer")),
)  # fmt: skip
# What the SR phase may change on resume beyond that: its step count (no LR schedule, so a step count only
# says where it stops and a run may be extended).
PHASE_IGNORED = {"sr": ("train.steps",)}  # + model.sd2_path when it is the tiny prior (train_sr)


# ---------------------------------------------------------------------------------------------
# Batches: a pure function of (seed, step, micro, process)
# ---------------------------------------------------------------------------------------------


class StepBatches(Dataset):
    """Item k = the batch of global micro-step k: sample indices from ``TrainPairs.batch_indices``
    (drawn with the component weights, or the next ones in sorted order), each crop keyed by k. A
    DataLoader over ``range(start, stop)`` prefetches them in worker processes without changing what
    any step sees."""

    def __init__(
        self, pairs: TrainPairs, weights: torch.Tensor, batch_size: int, seed: int, rank: int, world: int = 1
    ):
        self.pairs, self.weights, self.batch_size = pairs, weights, batch_size
        self.seed, self.rank, self.world = seed, rank, world

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, k: int) -> dict[str, Any]:
        gen = loop.step_generator(self.seed, k, self.rank, 7)
        index = self.pairs.batch_indices(k, self.rank, self.world, self.batch_size, self.weights, gen)
        self.pairs.set_epoch(k * 1000 + self.rank)  # crop/flip randomness keyed by the micro-step
        items = [self.pairs[int(i)] for i in index]
        batch: dict[str, Any] = {key: torch.stack([it[key] for it in items]) for key in ("hr", "lr")}
        batch["id"] = [it["id"] for it in items]
        return batch


class _BatchFeed:
    """Serves micro-steps in order from a prefetching DataLoader (restartable at any step)."""

    def __init__(self, batches: StepBatches, start: int, accum: int, workers: int) -> None:
        self.batches, self.accum, self.workers = batches, accum, workers
        self.next_k, self.iterator = None, None
        self._restart(start * accum)

    def _restart(self, k: int) -> None:
        loader = DataLoader(self.batches, batch_size=None, sampler=range(k, 2**62), num_workers=self.workers)
        self.iterator, self.next_k = iter(loader), k

    def __call__(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        k = step * self.accum + micro
        if k != self.next_k:
            self._restart(k)
        self.next_k = k + 1
        return next(self.iterator)  # type: ignore[arg-type]


def _feed(
    params: Params, data_root: Path, batch_size: int, accelerator: Accelerator, start: int
) -> _BatchFeed:
    pairs = TrainPairs(data_root, params.data.loader, params.base.seed)
    weights = pairs.sample_weights(params.degrade.train.mix)
    batches = StepBatches(
        pairs, weights, batch_size, params.base.seed, accelerator.process_index, accelerator.num_processes
    )
    return _BatchFeed(batches, start, accelerator.gradient_accumulation_steps, params.train.num_workers)


def _start_step(folder: Path) -> int:
    done = loop.checkpoints(folder)
    return done[-1][0] if done else 0


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def diffusion_target(scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """What the denoiser must predict, read from the scheduler config (SD2 base: epsilon)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, t)
    raise ValueError(f"unsupported prediction_type {kind!r} in the scheduler config")


def noised(scheduler: DDPMScheduler, latents: torch.Tensor, gen: torch.Generator):
    """(noisy latents, timesteps, target) with t ~ U{0..T-1} and noise ~ N(0, I) from ``gen``."""
    noise = torch.randn(latents.shape, generator=gen).to(latents)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen)
    t = t.to(latents.device)
    return scheduler.add_noise(latents, noise, t), t, diffusion_target(scheduler, latents, noise, t)


def drop_prompts(prompts: list[str], prob: float, gen: torch.Generator) -> list[str]:
    """Replace each prompt by "" with probability ``prob`` (the null prompt CFG needs at inference)."""
    keep = torch.rand(len(prompts), generator=gen) >= prob
    return [p if k else "" for p, k in zip(prompts, keep.tolist(), strict=True)]


def sr_loss(
    model: SRModel,
    unet: torch.nn.Module,
    controlnet: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    gen: torch.Generator,
    null_prompt_prob: float,
) -> torch.Tensor:
    """Eq. 4: || eps - eps_theta(z_t, t, c, c_sem, LR) ||^2 on one micro-batch.

    batch: "hr" (B, 3, S, S) and "lr" (B, 3, S, S) (the LR upsampled to HR size), both [0, 1], and
    "id" (B sample ids, which the tag source maps to the prompt c)."""
    device = model.vae.device
    hr, lr = batch["hr"].to(device), batch["lr"].to(device)
    latents = encode_latents(model.vae, hr, gen)
    noisy, t, target = noised(model.scheduler, latents, gen)
    prompts = drop_prompts([model.tags(i, None) for i in batch["id"]], null_prompt_prob, gen)
    with torch.no_grad():
        embeds = model.encode_prompt(prompts).to(device)
        c_sem = model.semantic_tokens(lr)
    pred = predict(unet, controlnet, noisy, t, embeds, lr, c_sem)
    return F.mse_loss(pred.float(), target.float())


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------


def _optimizer(
    params: list[torch.nn.Parameter], lr: float, tp: Any, kind: str, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW (weight decay 0 is Adam); ``adamw8bit``: bitsandbytes' AdamW8bit as the authors'
    ``--use_8bit_adam`` (train_seesr_sam.py:825-835) where it runs (CUDA), else torch's AdamW with the
    same hyperparameters, said in the log."""
    kwargs = {"lr": lr, "betas": tp.adam_betas, "weight_decay": tp.weight_decay}
    if kind == "adamw8bit":
        if device.type == "cuda" and importlib.util.find_spec("bitsandbytes") is not None:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, **kwargs)
        print(
            "train.optimizer adamw8bit: needs bitsandbytes on CUDA; torch AdamW with the same hyperparameters"
        )
    return torch.optim.AdamW(params, **kwargs)


def _phase(
    name: str,
    steps: int,
    models: dict[str, torch.nn.Module],
    lr: float,
    loss: Callable[[dict[str, torch.nn.Module], int, int, torch.Generator], torch.Tensor],
    save: Callable[[Path, dict[str, torch.nn.Module]], None],
    params: Params,
    accelerator: Accelerator,
    live_dir: Path,
    ignored: tuple[str, ...] = (),
    optimizer_kind: str = "adamw",
    batch: int = 1,
) -> loop.Phase:
    """Prepare models + optimizer with ``accelerator`` and wrap them as a ``loop.Phase``; its
    checkpoints record ``params``, and a resume compares them but for RESUME_IGNORED, PHASE_IGNORED
    and ``ignored``."""
    trainable = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    optimizer = _optimizer(trainable, lr, params.train, optimizer_kind, accelerator.device)
    names = list(models)
    prepared = accelerator.prepare(*models.values(), optimizer)
    wrapped = dict(zip(names, prepared[:-1], strict=True))
    tp = params.train
    return loop.Phase(
        live_dir=live_dir,
        samples_per_step=batch * accelerator.gradient_accumulation_steps * accelerator.num_processes,
        name=name,
        steps=steps,
        models=wrapped,
        optimizer=prepared[-1],
        loss=lambda step, micro, gen: loss(wrapped, step, micro, gen),
        save=save,
        checkpoint_every=tp.checkpoint_every,
        keep_checkpoints=tp.keep_checkpoints,
        max_grad_norm=tp.max_grad_norm,
        log_every=tp.log_every,
        params=as_dict(params),
        params_ignored=(*RESUME_IGNORED, *PHASE_IGNORED[name], *ignored),
    )


def train_sr(
    params: Params,
    data_root: Path,
    out_dir: Path,
    accelerator: Accelerator,
    on_checkpoint: Callable[[int, Path], None] | None = None,
    allow_params_change: bool = False,
) -> Path:
    """ControlNet + the UNet's semantic blocks (Eq. 4); returns ``out_dir/final`` (authors' layout).

    ``allow_params_change``: resume a checkpoint trained with other params (``loop.run_phase``)."""
    model = build_sr_model(params.model, accelerator.device, torch.Generator().manual_seed(params.base.seed))
    if params.train.init_from is not None:  # the release recipe: SeeSR's weights as the starting point
        load_seesr_init(model, params.train.init_from)
    sr_dir = out_dir / "sr"
    feed = _feed(params, data_root, params.train.batch_size, accelerator, _start_step(sr_dir))
    tp = params.train
    provenance = {"params": as_dict(params), "git": git_revision(Path.cwd())}

    def loss(models: dict[str, torch.nn.Module], step: int, micro: int, g: torch.Generator) -> torch.Tensor:
        return sr_loss(model, models["unet"], models["controlnet"], feed(step, micro), g, tp.null_prompt_prob)

    def save(folder: Path, models: dict[str, torch.nn.Module]) -> None:
        model.unet, model.controlnet = models["unet"], models["controlnet"]
        save_checkpoint(model, folder / "weights", provenance)

    trainable = {id(p) for p in trainable_parameters(model)}
    assert all(
        id(p) in trainable for m in (model.unet, model.controlnet) for p in m.parameters() if p.requires_grad
    )
    model.controlnet.train()
    models = {"unet": model.unet, "controlnet": model.controlnet}
    # build-folder paths the stages fill in: what they hold (train.prior, the tag cache) is compared itself
    derived = ("model.prompts.tags_dir", *(("model.sd2_path",) if tp.prior is not None else ()))
    phase = _phase(
        "sr",
        tp.steps,
        models,
        tp.lr,
        loss,
        save,
        params,
        accelerator,
        out_dir / LIVE_DIR,
        derived,
        tp.optimizer,
        tp.batch_size,
    )
    phase.on_checkpoint = on_checkpoint
    last = loop.run_phase(phase, accelerator, sr_dir, params.base.seed, allow_params_change)
    final = out_dir / FINAL_DIR
    if accelerator.is_main_process:
        with atomic_dir(final) as tmp:
            for sub in ("unet", "controlnet", "srlab_provenance.json"):
                src = last / "weights" / sub
                if src.exists():
                    _copy(src, tmp / sub)
    accelerator.wait_for_everyone()
    return final


def sr_model_params(params: Params, train_dir: Path) -> Params:
    """Params whose model loads the prior stage's folder beside ``train_dir`` as its SD2 (tiny
    profile; no change for the paper profile, whose model.sd2_path is SD2 base), and the tag stage's cache."""
    params = with_tag_cache(params, Path(train_dir).parent)  # tags: ram | dape (srlab.models.tagging)
    if params.train.prior is None:
        return params
    prior = prior_model_dir(Path(train_dir).parent)
    if not (prior / "unet").is_dir():
        raise FileNotFoundError(f"{prior}: no tiny prior; run `dvc repro prior` (or `dvc pull prior`) first")
    model = dataclasses.replace(params.model, sd2_path=str(prior))
    return params.replace(model=model)


def accelerator_for(params: Params) -> Accelerator:
    """The Accelerator of the train section: mixed precision and accumulation; the CPU without CUDA."""
    return Accelerator(
        mixed_precision=params.train.mixed_precision,
        gradient_accumulation_steps=params.train.grad_accum,
        cpu=not torch.cuda.is_available(),
    )


def run(
    params: Params,
    data_root: str | Path,
    out_dir: str | Path,
    allow_params_change: bool = False,
    **sr_kwargs: Any,
) -> Path:
    """The SR phase on the prior stage's prior (tiny profile: ``<out_dir>/../prior``); returns the final
    folder.

    Re-running continues from the newest checkpoints in ``out_dir``; one trained with other params
    (but for what ``RESUME_IGNORED`` / ``PHASE_IGNORED`` allow) refuses with ``loop.ResumeError``
    unless ``allow_params_change``."""
    out_dir, data_root = Path(out_dir), Path(data_root)
    accelerator = accelerator_for(params)
    sr_params = sr_model_params(params, out_dir)
    return train_sr(
        sr_params, data_root, out_dir, accelerator, allow_params_change=allow_params_change, **sr_kwargs
    )


# ---------------------------------------------------------------------------------------------
# Is it a model? Validation loss and samples
# ---------------------------------------------------------------------------------------------


def centre_crop_pair(
    hr: torch.Tensor, lr: torch.Tensor, crop: int, scale: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre ``crop`` x ``crop`` of an HR image and the matching LR crop (offsets on the LR grid)."""
    if crop > min(hr.shape[1:]):
        raise ValueError(f"crop {crop} is larger than the HR image {tuple(hr.shape[1:])}")
    top, left = (hr.shape[1] - crop) // 2 // scale * scale, (hr.shape[2] - crop) // 2 // scale * scale
    hr = hr[:, top : top + crop, left : left + crop]
    lr = lr[:, top // scale : (top + crop) // scale, left // scale : (left + crop) // scale]
    return hr, lr


def validation_batches(pair_dir: Path, crop: int, batch_size: int, scale: int) -> list[dict[str, Any]]:
    """Centre crops of a held-out paired set (``hr/`` + ``lr/``), LR upsampled to HR size, batched."""
    from srlab import io

    items = []
    for hr_path in io.list_images(pair_dir / "hr"):
        hr, lr = centre_crop_pair(
            io.read_image(hr_path), io.read_image(pair_dir / "lr" / hr_path.name), crop, scale
        )
        lr = F.interpolate(lr[None], size=(crop, crop), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        items.append({"hr": hr, "lr": lr, "id": hr_path.stem})
    return [
        {
            "hr": torch.stack([it["hr"] for it in chunk]),
            "lr": torch.stack([it["lr"] for it in chunk]),
            "id": [it["id"] for it in chunk],
        }
        for chunk in (items[i : i + batch_size] for i in range(0, len(items), batch_size))
    ]


@torch.no_grad()
def validation_loss(model: SRModel, batches: list[dict[str, Any]], seed: int, repeats: int = 4) -> float:
    """Mean Eq. 4 loss over the batches, ``repeats`` noise/timestep draws each, without prompt dropout."""
    losses = []
    for r in range(repeats):
        for i, batch in enumerate(batches):
            gen = loop.step_generator(seed, r, i, 99)
            losses.append(sr_loss(model, model.unet, model.controlnet, batch, gen, 0.0).item())
    return sum(losses) / len(losses)


def _copy(src: Path, dst: Path) -> None:
    import shutil

    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def main() -> None:
    parser = argparse.ArgumentParser(description="Train srlab (the train stage) on one or many processes.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", choices=PROFILES, help="overrides base.profile of the params file")
    parser.add_argument("--data", default="build/degrade", help="the degrade stage's output folder")
    parser.add_argument("--out", default="build/train")
    parser.add_argument(
        "--allow-params-change",
        action="store_true",
        help="resume checkpoints in --out trained with other params (refused otherwise)",
    )
    args = parser.parse_args()
    params = load_params(args.params, args.profile, SECTIONS)
    final = run(params, args.data, args.out, args.allow_params_change)
    if PartialState().is_main_process:  # one line, not one per process interleaved on a shared stdout
        print(json.dumps({"final": str(final)}))


if __name__ == "__main__":
    main()
