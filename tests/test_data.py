from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from srlab import config, data, io

ROOT = Path(__file__).resolve().parents[1]


def test_center_crop_to_multiple() -> None:
    image = torch.rand(3, 37, 50)
    crop, box = data.center_crop_to_multiple(image, 8)
    assert crop.shape == (3, 32, 48) and box == (2, 1, 32, 48)
    assert torch.equal(crop, image[:, 2:34, 1:49])
    with pytest.raises(ValueError, match="smaller than the required multiple"):
        data.center_crop_to_multiple(torch.rand(3, 5, 40), 8)


def test_bicubic_downsample_matches_pil_closely() -> None:
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=64, mode="bilinear")[0]
    ours = data.bicubic_downsample(smooth, 4)
    pil = Image.fromarray(io.to_uint8(smooth)).resize((16, 16), Image.BICUBIC)
    ref = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255
    assert ours.shape == (3, 16, 16)
    assert (ours - ref).abs().mean() < 0.01
    with pytest.raises(ValueError, match="does not divide by scale"):
        data.bicubic_downsample(torch.rand(3, 10, 12), 4)


def test_build_eval_sets_writes_pairs_and_manifest(tmp_path: Path) -> None:
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    for name, size in (("a", (50, 37)), ("b", (64, 64))):
        io.write_image(torch.rand(3, size[1], size[0]), hr_dir / f"{name}.png")
    params = config.load_params(ROOT / "params.yaml")
    params = type(params)(
        base=params.base,
        data=type(params.data)(hr_train_dir=str(hr_dir), eval_sets={"mini": str(hr_dir)}, val_fraction=0.1),
        degrade=params.degrade,
    )
    samples = data.build_eval_sets(params, tmp_path / "out")
    scale = params.degrade.scale
    assert [s.name for s in samples] == ["a", "b"]
    for s in samples:
        hr = io.read_image(tmp_path / "out/eval/mini/hr" / f"{s.name}.png")
        lr = io.read_image(tmp_path / "out/eval/mini/lr" / f"{s.name}.png")
        assert tuple(hr.shape[1:]) == s.hr_size and tuple(lr.shape[1:]) == s.lr_size
        assert hr.shape[1] == lr.shape[1] * scale and hr.shape[2] == lr.shape[2] * scale
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["samples"][0]["crop_box"] == [2, 1, 32, 48]
