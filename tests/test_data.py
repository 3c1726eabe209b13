"""The degrade stage's data sets: crops, splits, the three training components, eval sets, the Dataset."""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from srlab import config, io
from srlab.data import build as data
from srlab.data import datasets, degrade
from srlab.data.params import LoaderParams

ROOT = Path(__file__).resolve().parents[1]


def photo(seed: int, height: int = 40, width: int = 48) -> np.ndarray:
    """A smooth random uint8 RGB photo (H, W, 3)."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.random((1, 3, height // 8, width // 8)))
    image = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)[0]
    return io.to_uint8(image)


def make_photos(folder: Path, count: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        Image.fromarray(photo(i)).save(folder / f"p{i:02d}.png")


def tiny_params(tmp_path: Path, edit: Callable[[dict], None] | None = None) -> config.Params:
    """The project's params with small folders and crops (HR crops 32, loader crops 16)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(
        hr_train_dir=str(tmp_path / "photos"), eval_sets={"mini": str(tmp_path / "eval")}, val_fraction=0.2
    )
    raw["data"]["paired_holdout"] = 2
    raw["data"]["loader"]["crop_size"] = 16
    raw["degrade"]["train"].update(crop_size=32, hr_crops_per_image=2, paired_overlap=8)
    if edit:
        edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return config.load_params(path, None, data.SECTIONS)


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    make_photos(tmp_path / "photos", 6)
    gray = photo(90).mean(axis=2).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "photos" / "gray.png")  # converted by srlab.io
    rgba = np.dstack([photo(91), np.full((40, 48), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photos" / "alpha.png")
    Image.fromarray(photo(92)[..., 0].astype(np.uint16) * 257).save(
        tmp_path / "photos" / "deep.png"
    )  # 16-bit
    make_photos(tmp_path / "eval", 2, start=50)
    return tmp_path


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


# --- crops and splits ---------------------------------------------------------------------------------


def test_center_crop_to_multiple() -> None:
    image = torch.rand(3, 37, 50)
    crop, box = data.center_crop_to_multiple(image, 8)
    assert crop.shape == (3, 32, 48) and box == (2, 1, 32, 48)
    assert torch.equal(crop, image[:, 2:34, 1:49])
    with pytest.raises(ValueError, match="smaller than the required multiple"):
        data.center_crop_to_multiple(torch.rand(3, 5, 40), 8)


def test_bicubic_downsample_matches_pil_closely() -> None:
    smooth = F.interpolate(
        torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), size=64, mode="bilinear"
    )[0]
    ours = data.bicubic_downsample(smooth, 4)
    pil = Image.fromarray(io.to_uint8(smooth)).resize((16, 16), Image.BICUBIC)
    ref = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255
    assert ours.shape == (3, 16, 16) and (ours - ref).abs().mean() < 0.01
    with pytest.raises(ValueError, match="does not divide by scale"):
        data.bicubic_downsample(torch.rand(3, 10, 12), 4)


def test_tile_boxes_overlap_and_cover() -> None:
    boxes = data.tile_boxes(40, 50, 32, 8, multiple=4)
    assert boxes == [(0, 0, 32, 32), (0, 16, 32, 32), (8, 0, 32, 32), (8, 16, 32, 32)]
    covered = torch.zeros(40, 50, dtype=torch.bool)
    for top, left, h, w in boxes:
        covered[top : top + h, left : left + w] = True
    assert covered[:, :48].all()  # all but the last 50 % 4 columns, which no LR-aligned crop reaches
    assert [b[1] for b in data.tile_boxes(32, 100, 32, 8)] == [0, 24, 48, 68]  # stride 24, last flush
    assert data.tile_boxes(20, 100, 32, 8) == []


def test_split_is_seeded_and_stable_when_photos_are_added(tmp_path: Path, folders: Path) -> None:
    params = tiny_params(tmp_path)
    photos = io.list_images(params.data.hr_train_dir)
    split = data.split_photos(photos, params)
    assert [len(split[k]) for k in ("val", "paired", "hr")] == [2, 2, 5]
    assert sorted(p for part in split.values() for p in part) == photos
    make_photos(tmp_path / "photos", 1, start=70)
    grown = data.split_photos(io.list_images(params.data.hr_train_dir), params)
    part = lambda parts, p: next(k for k, v in parts.items() if p in v)  # noqa: E731
    assert sum(part(split, p) != part(grown, p) for p in photos) <= 2  # a photo moves at most a boundary
    with pytest.raises(ValueError, match=r"data\.paired_holdout"):
        data.split_photos(photos[:3], params)


# --- the stage ------------------------------------------------------------------------------------------


def test_build_stage_layout_reproducibility_and_determinism(tmp_path: Path, folders: Path) -> None:
    params = tiny_params(tmp_path)
    manifest = data.build_stage(params, tmp_path / "out")
    assert manifest["counts"] == {
        "train/hr": 10, "train/paired": 8, "train/wild": 8,
        "eval/mini_synthetic": 2, "eval/mini_wild": 2, "eval/val_synthetic": 2, "eval/val_wild": 2,
        "eval/mini_bicubic": 2, "eval/val_bicubic": 2,
    }  # fmt: skip
    assert json.loads((tmp_path / "out/manifest.json").read_text()) == manifest
    by_id = {}
    for s in manifest["samples"]:
        lr = io.read_image(tmp_path / "out" / s["lr"])
        assert list(lr.shape[1:]) == s["lr_size"]
        if s["hr"]:
            hr = io.read_image(tmp_path / "out" / s["hr"])
            assert list(hr.shape[1:]) == s["hr_size"] == [lr.shape[1] * s["scale"], lr.shape[2] * s["scale"]]
        by_id[(s["split"], s["part"], s["id"])] = s
    hr_parts = {s["lr_from"] for s in manifest["samples"] if s["part"] == "hr"}
    assert hr_parts == {"bicubic", "synthetic"}  # bicubic_prob 0.5
    assert all(
        s["hr"] is None and s["scale"] == 1 for s in manifest["samples"] if s["part"].endswith("_wild")
    )

    # a paired crop: the seed reproduces its photo's LR, and the LR crop sits at box / scale
    paired = next(s for s in manifest["samples"] if s["part"] == "paired" and s["crop_box"][0] > 0)
    full, _ = data.center_crop_to_multiple(io.read_image(paired["source"]), 4)
    redone = degrade.degrade(
        full[None], params.degrade, "synthetic", torch.Generator().manual_seed(paired["seed"])
    )
    assert redone.records[0] == paired["degradation"]
    top, left, h, w = (v // 4 for v in paired["crop_box"])
    assert torch.equal(
        io.read_image(tmp_path / "out" / paired["lr"]), redone.lr[0, :, top : top + h, left : left + w]
    )
    # its wild twin: the same HR file, degraded at full size
    wild = by_id[("train", "wild", paired["id"].replace("paired_", "wild_"))]
    assert wild["hr"] == paired["hr"] and wild["lr_size"] == paired["hr_size"]

    data.build_stage(params, tmp_path / "again")
    assert digest(tmp_path / "out") == digest(tmp_path / "again")  # same seed, same bytes
    rows = data.summary(manifest)
    made = collections.Counter(s["lr_from"] for s in manifest["samples"] if s["part"] == "hr")
    assert {k: v for k, v in rows[0].items() if k != "LR from"} == {
        "split": "train", "part": "hr", "samples": 10, "HR": "32x32", "LR": "8x8",
    }  # fmt: skip
    told = dict(item.rsplit(" ", 1) for item in rows[0]["LR from"].split(", "))
    assert {k: int(v) for k, v in told.items()} == made and sum(made.values()) == 10


def test_official_paired_set_keeps_hr_lr_correspondence(tmp_path: Path, folders: Path) -> None:
    for i in range(2):
        hr = torch.from_numpy(photo(60 + i, 48, 64)).permute(2, 0, 1).float() / 255
        io.write_image(hr, tmp_path / "official/hr" / f"o{i}.png")
        io.write_image(F.avg_pool2d(hr[None], 4)[0], tmp_path / "official/lr" / f"o{i}.png")

    def official(raw: dict) -> None:
        raw["data"].update(paired_dir=str(tmp_path / "official"), paired_holdout=0)

    params = tiny_params(tmp_path, official)
    manifest = data.build_stage(params, tmp_path / "out")
    paired = [s for s in manifest["samples"] if s["part"] == "paired"]
    assert len(paired) == 2 * 6 and all(s["lr_from"] == "official" for s in paired)
    for s in paired:
        top, left, h, w = (v // 4 for v in s["crop_box"])
        lr_file = io.read_image(Path(s["source"]).parent.parent / "lr" / Path(s["source"]).name)
        assert torch.equal(
            io.read_image(tmp_path / "out" / s["lr"]), lr_file[:, top : top + h, left : left + w]
        )

    dataset = datasets.TrainPairs(tmp_path / "out", params.data.loader, seed=0, parts=("paired",))
    item = dataset[3]
    assert item["hr"].shape == item["lr"].shape == (3, 16, 16)
    expected = F.interpolate(F.avg_pool2d(item["hr"][None], 4), size=16, mode="bicubic", align_corners=False)[
        0
    ]
    assert (item["lr"] - expected.clamp(0, 1)).abs().max() < 3 / 255  # crop and flip kept HR and LR aligned

    io.write_image(torch.rand(3, 10, 10), tmp_path / "official/lr/o1.png")
    with pytest.raises(ValueError, match=r"o1\.png is 48x64 but .*o1\.png is 10x10"):
        data.build_stage(params, tmp_path / "bad")
    (tmp_path / "official/lr/o1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"o1\.png: no LR image of that name"):
        data.build_stage(params, tmp_path / "bad")


def test_bad_input_names_the_file_and_leaves_no_partial_set(tmp_path: Path, folders: Path) -> None:
    params = tiny_params(tmp_path)
    data.build_stage(params, tmp_path / "out")
    before = digest(tmp_path / "out")
    (tmp_path / "photos" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    with pytest.raises(io.ImageReadError, match=r"zz_broken\.png: cannot read image"):
        data.build_stage(params, tmp_path / "out")
    assert digest(tmp_path / "out") == before  # the last good set stays, nothing half-written beside it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    (tmp_path / "photos" / "zz_broken.png").unlink()

    Image.fromarray(photo(80, 24, 24)).save(tmp_path / "photos" / "small.png")
    with pytest.raises(ValueError, match=r"small\.png: 24x24 is smaller than the 32x32 training crop"):
        data.build_stage(params, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    skipping = tiny_params(tmp_path, lambda raw: raw["data"].update(on_small_image="skip"))
    manifest = data.build_stage(skipping, tmp_path / "new")
    assert [Path(s["source"]).name for s in manifest["skipped"]] == ["small.png"]


def test_train_pairs_dataset(tmp_path: Path, folders: Path) -> None:
    params = tiny_params(tmp_path)
    data.build_stage(params, tmp_path / "out")
    dataset = datasets.TrainPairs(tmp_path / "out", params.data.loader, seed=0)
    assert len(dataset) == 26
    parts = {dataset[i]["part"]: dataset[i] for i in range(len(dataset))}
    for part, item in parts.items():
        assert item["hr"].shape == item["lr"].shape == (3, 16, 16) and item["scale"] == (
            1 if part == "wild" else 4
        )
        assert item["hr"].dtype == torch.float32 and item["lr"].min() >= 0 and item["lr"].max() <= 1
    first = dataset[5]
    assert torch.equal(first["hr"], dataset[5]["hr"])  # same (seed, epoch, index), same crop
    dataset.set_epoch(1)
    again = datasets.TrainPairs(tmp_path / "out", params.data.loader, 0)  # epoch 0
    assert any(not torch.equal(dataset[i]["hr"], again[i]["hr"]) for i in range(4))
    weights = dataset.sample_weights(params.degrade.train.mix)
    for part, share in params.degrade.train.mix.items():
        chosen = torch.tensor([s["part"] == part for s in dataset.samples])
        assert abs(weights[chosen].sum().item() - share) < 1e-12
    with pytest.raises(ValueError, match="no such samples"):
        datasets.TrainPairs(tmp_path / "out", params.data.loader, 0, parts=("hr",)).sample_weights(
            params.degrade.train.mix
        )
    big = LoaderParams(crop_size=64, hflip_prob=0.5, lr_upsample="bicubic", order="mixed")
    with pytest.raises(ValueError, match=r"data\.loader\.crop_size 64 must be <= the stored crops"):
        datasets.TrainPairs(tmp_path / "out", big, seed=0)
