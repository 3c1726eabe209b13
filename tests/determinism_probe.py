"""Degrade a few bundled photos through every pipeline and print the SHA-256 of the 8-bit LR bytes.

Run as a script by tests/test_determinism.py in subprocesses (another thread count, another
ATEN_CPU_CAPABILITY); ``probe_digest`` is the same computation in-process.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("data/set5/butterfly.png", "data/set5/baby.png", "data/bsd68/101085.png")
CROP = 96  # px: small enough to run in seconds, large enough for every op's kernels and blocks


def probe_digest() -> str:
    from srlab import io
    from srlab.config import load_params
    from srlab.data import build as data
    from srlab.data.degrade import degrade, sample_generator

    params = load_params(ROOT / "params.yaml", None, data.SECTIONS)
    digest = hashlib.sha256()
    for photo in PHOTOS:
        image = io.read_image(ROOT / photo)[:, :CROP, :CROP]
        for pipeline in params.degrade.pipelines:
            generator, _ = sample_generator(0, "determinism", pipeline, photo)
            lr = degrade(image[None], params.degrade, pipeline, generator).lr[0]
            digest.update(io.to_uint8(lr).tobytes())
        digest.update(io.to_uint8(data.bicubic_downsample(image, params.degrade.scale)).tobytes())
    # Two wild training samples of the tiny profile whose last (bilinear, 79 -> 128 px) resize puts
    # pixels on exact ties k + 1/2: plain rounding gave other bytes on 1 thread / default kernels
    train, scale = params.degrade.train, params.degrade.scale
    for stem, j in (("105025", 0), ("147091", 13)):
        image, _ = data.center_crop_to_multiple(io.read_image(ROOT / f"data/bsd68/{stem}.png"), scale)
        top, left, h, w = data.tile_boxes(*image.shape[1:], train.crop_size, train.paired_overlap, scale)[j]
        generator, _ = sample_generator(0, "wild", f"paired_{stem}_{j:03d}")
        lr = degrade(image[None, :, top : top + h, left : left + w], params.degrade, "wild", generator).lr[0]
        digest.update(io.to_uint8(lr).tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]))
    print(torch.backends.cpu.get_cpu_capability(), probe_digest())
