"""Schema of params.yaml `data`: where the photos live, the split, the training Dataset."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema


@schema
class LoaderParams:
    """The training Dataset (srlab.data.datasets.TrainPairs): random crop + flip of build/degrade's pairs."""

    crop_size: Annotated[
        int, Field(ge=8, le=4096)
    ]  # HR side of the random training crop (LR crop: crop_size / scale)
    hflip_prob: Annotated[float, Field(ge=0.0, le=1.0)]  # P(horizontal flip), HR and LR together
    lr_upsample: Literal["bicubic", "bilinear", "nearest"]  # LR is returned at HR size (SeeSR's ControlNet)
    # mixed: i.i.d. draws with degrade.train.mix; sorted: every pair once per epoch in path order
    # (train/lr/<part>_<name>.png: hr, paired, wild), no shuffle, as the release (needs mix: proportional)
    order: Literal["mixed", "sorted"]


@schema
class DataParams:
    """Where the raw images live (folders of PNG/JPEG, relative to the project root)."""

    hr_train_dir: str  # HR photos for training (paper: LSDIR)
    eval_sets: dict[str, str]  # name -> folder of HR images, degraded into paired evaluation sets
    val_fraction: Annotated[float, Field(ge=0.0, le=0.5)]  # share of hr_train_dir held out for validation
    paired_dir: str | None  # official paired training set: <dir>/hr and <dir>/lr, same file names
    paired_holdout: Annotated[
        int, Field(ge=0)
    ]  # no paired_dir: this many HR photos stand in for it (synthetic LR)
    on_small_image: Literal["error", "skip"]  # an HR photo smaller than a training crop
    loader: LoaderParams
