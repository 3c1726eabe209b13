"""Photo-level helpers shared by the degrade and prior stages: keyed generators, the photo split, bicubic x4.

Apart from the degradation code so the prior stage (srlab.training.prior), which needs only these, does
not re-run when a degradation changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from srlab.config import Params
from srlab.io import to_levels


def sample_generator(
    seed: int, *key: object, device: str | torch.device = "cpu"
) -> tuple[torch.Generator, int]:
    """A generator seeded from (seed, *key), e.g. (base.seed, "hr", "12084", 3), and its seed.

    The derivation is a hash of the key, stable across runs, machines and Python versions, so a sample
    keeps its degradation when other images are added or removed.
    """
    text = "/".join(str(k) for k in (seed, *key)).encode()
    derived = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1  # 63 bits
    return torch.Generator(device=device).manual_seed(derived), derived


def bicubic_downsample(image: torch.Tensor, scale: int, antialias: bool = True) -> torch.Tensor:
    """(3, H, W) -> (3, H/scale, W/scale), antialiased bicubic (as PIL / MATLAB imresize), or with
    ``antialias=False`` torch's plain bicubic decimation (a = -0.75, F.interpolate's default).

    Computed in float64 and rounded to 8-bit levels (srlab.io.to_levels), so the file is the
    same on any thread count and CPU (srlab.data.degrade).
    """
    _, h, w = image.shape
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} does not divide by scale {scale}")
    x = image[None].to(torch.float64)
    lr = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", antialias=antialias)
    return (to_levels(lr[0]) / 255).to(image.dtype)


def split_photos(paths: Sequence[Path], params: Params) -> dict[str, list[Path]]:
    """HR photos -> {"val", "paired" (stand-in, only without data.paired_dir), "hr"}, each sorted.

    Photos are ordered by a hash of (base.seed, name), so a photo stays in its split when others are
    added; ``val`` takes round(val_fraction * n) of them, ``paired`` the next paired_holdout.
    """
    data = params.data
    order = sorted(paths, key=lambda p: sample_generator(params.base.seed, "split", p.name)[1])
    n_val = round(data.val_fraction * len(paths))
    n_paired = data.paired_holdout if data.paired_dir is None else 0
    if n_val + n_paired >= len(paths):
        raise ValueError(
            f"{data.hr_train_dir}: {len(paths)} photos, but {n_val} go to validation (data.val_fraction) and "
            f"{n_paired} to the paired stand-in (data.paired_holdout); add photos or lower those"
        )
    parts = {"val": order[:n_val], "paired": order[n_val : n_val + n_paired], "hr": order[n_val + n_paired :]}
    return {name: sorted(part) for name, part in parts.items()}
