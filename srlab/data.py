"""Data sets on disk: evaluation pairs and their manifests.

Layout written by the ``degrade`` stage (``build/degrade``)::

    eval/<set>/hr/<name>.png      HR, center-cropped so that every side divides by the scale
    eval/<set>/lr/<name>.png      LR made from HR
    manifest.json                 every sample: source file, crop box, sizes, how LR was made
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from srlab import io
from srlab.config import Params


@dataclass(frozen=True)
class EvalSample:
    """One paired evaluation image and where it came from."""

    set: str
    name: str
    source: str
    crop_box: tuple[int, int, int, int]  # (top, left, height, width) in the source image
    hr_size: tuple[int, int]  # (H, W)
    lr_size: tuple[int, int]
    lr_from: str


def center_crop_to_multiple(
    image: torch.Tensor, multiple: int
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Crop (3, H, W) centrally so both sides divide by ``multiple``; returns the crop and its box."""
    _, h, w = image.shape
    ch, cw = h - h % multiple, w - w % multiple
    if ch == 0 or cw == 0:
        raise ValueError(f"image of size {h}x{w} is smaller than the required multiple {multiple}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[:, top : top + ch, left : left + cw], (top, left, ch, cw)


def bicubic_downsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """(3, H, W) -> (3, H/scale, W/scale), antialiased bicubic (as PIL / MATLAB imresize)."""
    _, h, w = image.shape
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} does not divide by scale {scale}")
    lr = F.interpolate(image[None], size=(h // scale, w // scale), mode="bicubic", antialias=True)
    return lr[0].clamp(0, 1)


def build_eval_sets(params: Params, out_dir: str | Path) -> list[EvalSample]:
    """Write every evaluation set as HR/LR pairs under ``out_dir/eval`` plus ``manifest.json``.

    The LR images are bicubic downsamples for now; the synthetic degradation pipeline replaces
    this in the ``degrade`` issue.
    """
    out_dir = Path(out_dir)
    samples = []
    crop = math.lcm(params.degrade.hr_multiple, params.degrade.scale)
    for set_name, folder in params.data.eval_sets.items():
        for path in io.list_images(folder):
            hr, box = center_crop_to_multiple(io.read_image(path), crop)
            lr = bicubic_downsample(hr, params.degrade.scale)
            io.write_image(hr, out_dir / "eval" / set_name / "hr" / f"{path.stem}.png")
            io.write_image(lr, out_dir / "eval" / set_name / "lr" / f"{path.stem}.png")
            samples.append(
                EvalSample(
                    set=set_name,
                    name=path.stem,
                    source=str(path),
                    crop_box=box,
                    hr_size=tuple(hr.shape[1:]),
                    lr_size=tuple(lr.shape[1:]),
                    lr_from=f"bicubic x{params.degrade.scale}",
                )
            )
    manifest = {"samples": [asdict(s) for s in samples]}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return samples
