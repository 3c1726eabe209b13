"""The prior stage (srlab.training.prior): what it trains on, its crops, its reconstruction cap, its note."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from srlab import io
from srlab.config import load_params
from srlab.training import prior

ROOT = Path(__file__).resolve().parents[1]


def _photos(folder: Path, count: int = 10, size: tuple[int, int] = (40, 56)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    return sorted(folder.iterdir())


def _params(hr_dir: Path, val_fraction: float = 0.2, holdout: int = 2):
    params = load_params(ROOT / "params.yaml", "smoke", prior.SECTIONS)
    split = dataclasses.replace(
        params.data, hr_train_dir=str(hr_dir), val_fraction=val_fraction, paired_holdout=holdout
    )
    return params.replace(data=split)


def test_the_prior_never_trains_on_a_held_out_photo(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "hr")
    train, val = prior.training_photos(_params(tmp_path / "hr"))
    assert len(val) == 2 and not set(train) & set(val)  # round(0.2 * 10) held out
    assert sorted(train + val) == paths  # the paired stand-in photos are training photos too


def test_photo_crops_are_a_function_of_the_step(tmp_path: Path) -> None:
    photos = [io.read_image(p) for p in _photos(tmp_path / "hr", count=3)]
    crops = prior.PhotoCrops(photos, crop=16, batch=4, seed=7)
    again = prior.PhotoCrops(photos, crop=16, batch=4, seed=7)
    assert crops[5].shape == (4, 3, 16, 16)
    assert torch.equal(crops[5], again[5]) and not torch.equal(crops[5], crops[6])
    # every crop is a window of one photo (possibly mirrored)
    for crop in crops[5]:
        windows = [
            p[:, t : t + 16, x : x + 16]
            for p in photos
            for t in range(p.shape[1] - 15)
            for x in range(p.shape[2] - 15)
        ]
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(2)) for w in windows)
    with pytest.raises(ValueError, match="crop_size 64"):
        prior.PhotoCrops(photos, crop=64, batch=1, seed=0)


class _OffsetVAE:
    """Encodes to the image itself, decodes with +0.1 in [-1, 1] (= +0.05 in [0, 1]) everywhere."""

    def encode(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=x))

    def decode(self, z: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(sample=z + 0.1)


def test_reconstruction_scores_the_vae_against_the_hr(tmp_path: Path) -> None:
    hr = torch.full((3, 40, 40), 127 / 255)  # an 8-bit level: bicubic x4 keeps it exactly
    report = prior.reconstruction(_OffsetVAE(), [hr], crop=32)  # type: ignore[arg-type]
    expected = 10 * math.log10(1 / 0.05**2)  # 26.02 dB: a uniform error of 0.05
    assert report["images"] == 1 and report["crop"] == 32
    assert report["vae_hr"] == pytest.approx(expected, abs=1e-3)
    assert report["vae_bicubic"] == pytest.approx(expected, abs=1e-3)
    assert prior.centre(torch.zeros(3, 50, 70), 0).shape == (3, 48, 48)  # whole: the short side, x4


def test_without_a_prior_the_stage_writes_a_note(tmp_path: Path) -> None:
    params = _params(tmp_path / "hr")
    params = params.replace(train=dataclasses.replace(params.train, prior=None))
    report = prior.run_stage(params, tmp_path / "prior")
    assert report["prior"] is None
    assert json.loads((tmp_path / "prior.json").read_text()) == report
    assert json.loads((tmp_path / "prior" / "README.json").read_text()) == report
