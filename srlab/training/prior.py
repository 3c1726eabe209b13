"""The prior stage (tiny profile): an SD2 stand-in trained from scratch on the training photos.

The paper freezes SD2 base as its prior. The tiny profile has no pretrained SD2 to lean on, so it trains
one of its own, once, at length: a VAE (L1 + a small KL), its latent scale, then an unconditional UNet on
its latents, written as an SD2-like diffusers folder (vae/, unet/, text_encoder/, scheduler/) that the
train stage loads exactly as the paper profile loads SD2 base. It is its own DVC stage because it is the
slow part and depends only on the photos and ``train.prior`` / ``model.tiny``: a change to the
degradations or the SR phase reuses it from the cache (``dvc pull`` restores it on a fresh clone).

The VAE caps everything downstream: the SR output is a VAE decode, so it can be no more faithful than the
VAE's reconstruction. ``prior.json`` (beside the stage folder; DVC metrics) records that cap on the
held-out photos (never trained on): PSNR of the VAE's reconstruction of the HR crop and of its bicubic
x4 image, beside bicubic's own.

    python -m srlab.training.prior --out build/prior
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler, UNet2DConditionModel
from pydantic import Field
from torch.utils.data import DataLoader, Dataset

from srlab import io
from srlab.config import Params, Subset, as_dict, load_params, schema
from srlab.data.photos import bicubic_downsample, split_photos
from srlab.evaluation.fullref import psnr
from srlab.io import atomic_dir, to_vae_range
from srlab.models.text import OpenClipTokenizer, encode_prompts, tiny_text_encoder
from srlab.models.tiny import TINY_SCHEDULER, TinySizes, tiny_unet_config, tiny_vae
from srlab.training import loop
from srlab.training.params import PriorParams


@schema
class PhotoSplit:
    """The keys of ``data`` that say which photos the prior trains on (srlab.data.build.split_photos)."""

    hr_train_dir: str
    val_fraction: Annotated[float, Field(ge=0.0, le=0.5)]
    paired_dir: str | None
    paired_holdout: Annotated[int, Field(ge=0)]


@schema
class TinyPart:
    tiny: TinySizes


@schema
class PriorPart:
    prior: PriorParams | None


# What the stage reads: the photos and their split, the tiny sizes, the prior's own settings (each
# validated as in its section's schema).
SECTIONS = {
    "data": Subset(PhotoSplit, tuple(f.name for f in dataclasses.fields(PhotoSplit))),
    "model": Subset(TinyPart, ("tiny",)),
    "train": Subset(PriorPart, ("prior",)),
}
LIVE_DIR = "dvclive"
CHECKPOINTS = "checkpoints"  # <out>/checkpoints/{vae,unet}/checkpoint-N: resume state (the newest only)
METRICS = "prior.json"  # in the build folder, beside prior/
SCALE = 4  # the bicubic row of prior.json: the synthetic track's x4


def training_photos(params: Params) -> tuple[list[Path], list[Path]]:
    """(the photos the prior trains on, the held-out validation photos): degrade's split of
    ``data.hr_train_dir``, so the prior never sees a photo the train stage validates on."""
    paths = io.list_images(params.data.hr_train_dir)
    parts = split_photos(paths, params)
    return sorted(parts["hr"] + parts["paired"]), parts["val"]


class PhotoCrops(Dataset):
    """Item k = a batch of random ``crop`` x ``crop`` crops (and flips) of the photos, drawn from a
    generator keyed by (seed, k, rank): a pure function of the step, so a resumed run sees the same data."""

    def __init__(self, photos: list[torch.Tensor], crop: int, batch: int, seed: int, rank: int = 0) -> None:
        small = [tuple(p.shape[1:]) for p in photos if min(p.shape[1:]) < crop]
        if small:
            raise ValueError(f"train.prior.crop_size {crop} is larger than photos of size {small[:3]}")
        self.photos, self.crop, self.batch, self.seed, self.rank = photos, crop, batch, seed, rank

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, k: int) -> torch.Tensor:
        gen = loop.step_generator(self.seed, k, self.rank, 11)
        out = []
        for _ in range(self.batch):
            photo = self.photos[int(torch.randint(len(self.photos), (1,), generator=gen))]
            h, w = photo.shape[1:]
            top = int(torch.randint(h - self.crop + 1, (1,), generator=gen))
            left = int(torch.randint(w - self.crop + 1, (1,), generator=gen))
            crop = photo[:, top : top + self.crop, left : left + self.crop]
            out.append(crop.flip(2) if torch.rand((), generator=gen) < 0.5 else crop)
        return torch.stack(out)


class _Feed:
    """Serves step k's batch from a DataLoader (restartable at any step)."""

    def __init__(self, crops: PhotoCrops, start: int) -> None:
        self.crops, self.next_k, self.iterator = crops, None, None
        self._restart(start)

    def _restart(self, k: int) -> None:
        self.iterator = iter(DataLoader(self.crops, batch_size=None, sampler=range(k, 2**62)))
        self.next_k = k

    def __call__(self, k: int) -> torch.Tensor:
        if k != self.next_k:
            self._restart(k)
        self.next_k = k + 1
        return next(self.iterator)  # type: ignore[arg-type]


class VAEWithKL(torch.nn.Module):
    """forward(x in [0, 1], generator) -> (reconstruction in [-1, 1], KL to N(0, I)): one forward call, so
    DistributedDataParallel sees (and synchronises) the whole VAE step."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(to_vae_range(x)).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen).to(dist.mean)
        return self.vae.decode(z).sample, dist.kl().mean()


def encode_latents(vae: torch.nn.Module, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """[0, 1] images -> scaled latents, a posterior sample drawn from ``gen``."""
    with torch.no_grad():
        dist = vae.encode(to_vae_range(image)).latent_dist
        eps = torch.randn(dist.mean.shape, generator=gen).to(dist.mean)
        return (dist.mean + dist.std * eps) * vae.config.scaling_factor


def _phase(
    name: str, models: dict[str, torch.nn.Module], steps: int, lr: float, loss: Any, save: Any,
    params: Params, accelerator: Accelerator, live_dir: Path, batch: int,
) -> loop.Phase:  # fmt: skip
    prior: PriorParams = params.train.prior
    trainable = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    prepared = accelerator.prepare(*models.values(), torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0))
    wrapped = dict(zip(models, prepared[:-1], strict=True))
    return loop.Phase(
        name=name,
        steps=steps,
        models=wrapped,
        optimizer=prepared[-1],
        loss=lambda step, micro, gen: loss(wrapped, step, gen),
        save=save,
        checkpoint_every=prior.checkpoint_every,
        keep_checkpoints=1,
        max_grad_norm=prior.max_grad_norm,
        log_every=prior.log_every,
        live_dir=live_dir,
        samples_per_step=batch * accelerator.num_processes,
        params=as_dict(params),
        # a phase's step count only says where it stops (constant lr): a run may be extended
        params_ignored=("base.profile", "train.prior.checkpoint_every", "train.prior.log_every",
                        *(("train.prior.vae_steps",) if name == "vae" else ()),
                        "train.prior.unet_steps"),
    )  # fmt: skip


def train_prior(params: Params, out_dir: str | Path, allow_params_change: bool = False) -> dict[str, Any]:
    """Train the prior into ``out_dir`` (``model/``, a diffusers folder, + checkpoints/, dvclive/); returns
    the VAE's reconstruction scores on the held-out photos (``reconstruction``).

    Re-running continues from the newest checkpoints; ``allow_params_change`` resumes checkpoints
    trained with other params (``loop.run_phase``)."""
    out_dir = Path(out_dir)
    prior = params.train.prior
    if prior is None:
        raise ValueError("train.prior is null: the paper profile uses SD2 base (model.sd2_path) instead")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    device, seed, sizes = accelerator.device, params.base.seed, params.model.tiny
    train_paths, val_paths = training_photos(params)
    photos = [io.read_image(p) for p in train_paths]
    print(f"prior: {len(photos)} training photos of {params.data.hr_train_dir} ({len(val_paths)} held out)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # module initialisation only; no training draw uses the global RNG
        vae, text_encoder = tiny_vae(sizes), tiny_text_encoder(sizes)
        unet = UNet2DConditionModel.from_config(tiny_unet_config(sizes))
    scheduler = DDPMScheduler(**TINY_SCHEDULER)
    text_encoder.requires_grad_(False).to(device)
    live = out_dir / LIVE_DIR
    crops = PhotoCrops(photos, prior.crop_size, prior.batch_size, seed, accelerator.process_index)

    # 1. VAE
    vae_dir = out_dir / CHECKPOINTS / "vae"
    feed = _Feed(crops, _start(vae_dir))

    def vae_loss(models: dict[str, torch.nn.Module], step: int, g: torch.Generator) -> torch.Tensor:
        hr = feed(step).to(device)
        recon, kl = models["vae"](hr, g)
        return F.l1_loss(recon, to_vae_range(hr)) + prior.kl_weight * kl

    def save_vae(folder: Path, models: dict[str, torch.nn.Module]) -> None:
        models["vae"].vae.save_pretrained(folder / "vae")

    vae.train().requires_grad_(True)
    phase = _phase("vae", {"vae": VAEWithKL(vae)}, prior.vae_steps, prior.vae_lr, vae_loss, save_vae,
                   params, accelerator, live, prior.batch_size)  # fmt: skip
    loop.run_phase(phase, accelerator, vae_dir, seed, allow_params_change)
    vae = accelerator.unwrap_model(phase.models["vae"]).vae.requires_grad_(False).eval()

    # 2. Latent scale: unit-variance latents, as SD's 0.18215 was chosen for its VAE
    with torch.no_grad():
        zs = [encode_latents(vae, crops[10**9 + i].to(device), loop.step_generator(seed, i))
              for i in range(prior.scaling_batches)]  # fmt: skip
        std = torch.cat(zs).std().item() / vae.config.scaling_factor
    vae.register_to_config(scaling_factor=1.0 / std)

    # 3. Unconditional UNet on the prior's latents (empty prompt)
    unet_dir = out_dir / CHECKPOINTS / "unet"
    feed = _Feed(crops, _start(unet_dir))
    with torch.no_grad():
        empty = encode_prompts(OpenClipTokenizer(), text_encoder, [""]).to(device)

    def unet_loss(models: dict[str, torch.nn.Module], step: int, g: torch.Generator) -> torch.Tensor:
        latents = encode_latents(vae, feed(step).to(device), g)
        noise = torch.randn(latents.shape, generator=g).to(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=g).to(device)
        noisy = scheduler.add_noise(latents, noise, t)
        pred = models["unet"](noisy, t, encoder_hidden_states=empty.expand(len(latents), -1, -1)).sample
        return F.mse_loss(pred.float(), noise.float())  # epsilon prediction, as SD2 base

    def save_unet(folder: Path, models: dict[str, torch.nn.Module]) -> None:
        models["unet"].save_pretrained(folder / "unet")

    unet.train().requires_grad_(True)
    phase = _phase("unet", {"unet": unet}, prior.unet_steps, prior.unet_lr, unet_loss, save_unet,
                   params, accelerator, live, prior.batch_size)  # fmt: skip
    loop.run_phase(phase, accelerator, unet_dir, seed, allow_params_change)
    unet = accelerator.unwrap_model(phase.models["unet"])

    # 4. The SD2-like folder
    if accelerator.is_main_process:
        with atomic_dir(out_dir / "model") as tmp:
            vae.save_pretrained(tmp / "vae")
            unet.save_pretrained(tmp / "unet")
            text_encoder.save_pretrained(tmp / "text_encoder")
            scheduler.save_pretrained(tmp / "scheduler")
    accelerator.wait_for_everyone()
    return reconstruction(vae, [io.read_image(p) for p in val_paths], prior.val_crop)


def _start(folder: Path) -> int:
    done = loop.checkpoints(folder)
    return done[-1][0] if done else 0


def centre(image: torch.Tensor, crop: int) -> torch.Tensor:
    """The centre ``crop`` px square (a multiple of the x4 scale), or the whole image when 0."""
    h, w = image.shape[1:]
    side = min(crop or min(h, w), h, w) // SCALE * SCALE
    top, left = (h - side) // 2, (w - side) // 2
    return image[:, top : top + side, left : left + side]


def bicubic_x4(hr: torch.Tensor) -> torch.Tensor:
    """The clean x4 round trip: antialiased bicubic down, bicubic back up to the HR size."""
    lr = bicubic_downsample(hr, SCALE)
    return F.interpolate(lr[None], size=hr.shape[1:], mode="bicubic", align_corners=False)[0].clamp(0, 1)


@torch.no_grad()
def reconstruct(vae: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """VAE decode of the posterior mean, [0, 1]."""
    z = vae.encode(to_vae_range(image[None])).latent_dist.mean
    return ((vae.decode(z).sample[0].clamp(-1, 1) + 1) / 2).float()


def reconstruction(vae: torch.nn.Module, photos: list[torch.Tensor], crop: int) -> dict[str, Any]:
    """Mean PSNR (RGB, dB) on held-out centre crops: the VAE's HR reconstruction (the ceiling of any SR
    output), its reconstruction of the clean bicubic x4 image, and bicubic x4 itself."""
    rows: dict[str, list[float]] = {"vae_hr": [], "vae_bicubic": [], "bicubic": []}
    for photo in photos:
        hr = centre(photo, crop)
        bic = bicubic_x4(hr)
        rows["vae_hr"].append(psnr(reconstruct(vae, hr), hr, y_channel=False))
        rows["vae_bicubic"].append(psnr(reconstruct(vae, bic), hr, y_channel=False))
        rows["bicubic"].append(psnr(bic, hr, y_channel=False))
    return {"images": len(photos), "crop": crop, **{k: sum(v) / max(len(v), 1) for k, v in rows.items()}}


def run_stage(params: Params, out_dir: str | Path) -> dict[str, Any]:
    """The prior stage: the trained prior in ``out_dir/model`` and its reconstruction scores in
    ``out_dir/../prior.json``; without ``train.prior`` (SD2 base is the prior) a note in both, so the stage
    has its outputs in every profile."""
    out_dir = Path(out_dir)
    if params.train.prior is None:
        report: dict[str, Any] = {"prior": None, "why": "train.prior is null: model.sd2_path is the prior"}
        with atomic_dir(out_dir) as tmp:
            (tmp / "README.json").write_text(json.dumps(report, indent=1) + "\n")
    else:
        report = train_prior(params, out_dir)
    print("prior, held-out photos (PSNR dB):", json.dumps(report))
    with io.atomic_path(out_dir.parent / METRICS) as tmp_file:
        tmp_file.write_text(json.dumps(report, indent=1) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    parser.add_argument("--profile", default=None, help="tiny | paper | smoke (default: base.profile)")
    parser.add_argument("--out", default="build/prior")
    args = parser.parse_args()
    print(json.dumps(run_stage(load_params(args.params, args.profile, SECTIONS), args.out)))


if __name__ == "__main__":
    main()
