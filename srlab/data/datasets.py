"""The training Dataset: the pairs of a built degrade stage folder, randomly cropped and flipped."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from srlab import io
from srlab.data.build import cut, random_boxes
from srlab.data.degrade import sample_generator
from srlab.data.ops import bernoulli
from srlab.data.params import LoaderParams


class TrainPairs(Dataset):
    """The training pairs of a built stage folder, with a random aligned crop and a horizontal flip.

    Item: {"hr": (3, S, S), "lr": (3, S, S), "scale": int, "part": str, "id": str}, S =
    ``loader.crop_size``, both float32 in [0, 1]. The LR is returned at HR size, upsampled by
    ``loader.lr_upsample`` (1/scale LR of hr/paired samples; wild LR already has HR size): SeeSR's
    ControlNet takes the LR upsampled to the HR size, so every sample gives the training loop one LR size.

    Randomness: each item draws from a generator seeded by (seed, epoch, index), so crops and flips
    are the same for any number of DataLoader workers; call ``set_epoch`` at each epoch.

    Which samples a step sees (``loader.order``), by ``batch_indices``, a pure function of the micro-step
    (so a resumed run sees what an uninterrupted one would): ``mixed`` draws them i.i.d. with
    ``sample_weights(degrade.train.mix)``; ``sorted`` walks ``sorted_indices`` (every pair once per
    epoch, in path order, no shuffle: the release's DataLoader) with the batches dealt round-robin to
    the processes, as Accelerate shards a DataLoader.
    """

    def __init__(
        self,
        root: str | Path,
        loader: LoaderParams,
        seed: int,
        parts: Sequence[str] = ("hr", "paired", "wild"),
    ) -> None:
        self.root, self.loader, self.seed, self.epoch = Path(root), loader, seed, 0
        manifest = json.loads((self.root / "manifest.json").read_text())
        self.samples = [s for s in manifest["samples"] if s["split"] == "train" and s["part"] in parts]
        for s in self.samples:
            if min(s["hr_size"]) < loader.crop_size or loader.crop_size % s["scale"]:
                raise ValueError(
                    f"data.loader.crop_size {loader.crop_size} must be <= the stored crops ({s['hr_size']}, "
                    f"degrade.train.crop_size) and a multiple of the scale {s['scale']}"
                )

        # path order of the stored LR files (train/lr/<part>_<name>.png): hr, then paired, then wild
        self.sorted_indices = sorted(range(len(self.samples)), key=lambda i: self.samples[i]["lr"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        hr, lr = io.read_image(self.root / s["hr"]), io.read_image(self.root / s["lr"])
        scale, size = s["scale"], self.loader.crop_size
        generator, _ = sample_generator(self.seed, "loader", self.epoch, index)
        (box,) = random_boxes(*hr.shape[1:], size, 1, generator, multiple=scale)
        hr, lr = cut(hr, box), cut(lr, box, scale)
        if bernoulli(1, self.loader.hflip_prob, generator).item():
            hr, lr = hr.flip(-1), lr.flip(-1)
        if scale > 1:
            mode = self.loader.lr_upsample
            smooth = mode in ("bilinear", "bicubic")
            lr = F.interpolate(
                lr[None], size=(size, size), mode=mode, align_corners=False if smooth else None
            )[0]
        return {
            "hr": hr.contiguous(),
            "lr": lr.clamp(0, 1).contiguous(),
            "scale": scale,
            "part": s["part"],
            "id": s["id"],
        }

    def batch_indices(
        self,
        step: int,
        rank: int,
        world: int,
        batch_size: int,
        weights: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """(batch_size,) int64 sample indices of global micro-step ``step`` on process ``rank`` of ``world``.

        mixed: ``torch.multinomial(weights, batch_size, replacement=True, generator)``. sorted: positions
        ((step * world + rank) * batch_size + j) of the endless sequence of epochs, each epoch
        ``sorted_indices`` (``weights`` and ``generator`` unused); epoch = position // len(self).
        """
        if self.loader.order == "mixed":
            return torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        start = (step * world + rank) * batch_size
        positions = (start + torch.arange(batch_size, dtype=torch.int64)) % len(self.samples)
        return torch.tensor(self.sorted_indices, dtype=torch.int64)[positions]

    def sample_weights(self, mix: Mapping[str, float] | str) -> torch.Tensor:
        """(N,) float64 weights giving each part its share of ``mix`` (for WeightedRandomSampler);
        ``mix="proportional"``: every sample the same weight, so each part's share is its size."""
        if self.loader.order == "sorted" and mix != "proportional":
            raise ValueError(
                "data.loader.order: sorted visits every pair once per epoch, so each component's share is"
                f" its size: set degrade.train.mix: proportional (it is {dict(mix)})"
            )
        if mix == "proportional":
            return torch.full((len(self.samples),), 1.0 / len(self.samples), dtype=torch.float64)
        counts: dict[str, int] = {}
        for s in self.samples:
            counts[s["part"]] = counts.get(s["part"], 0) + 1
        missing = [p for p, share in mix.items() if share > 0 and p not in counts]
        if missing:
            raise ValueError(f"degrade.train.mix gives {missing} a share but the set has no such samples")
        return torch.tensor(
            [mix.get(s["part"], 0.0) / counts[s["part"]] for s in self.samples], dtype=torch.float64
        )
