"""The release's training-data recipe (docs/research/release_training.md 3-4) as degrade/data knobs.

Every expected value here comes from the authors' code as that note cites it (make_paired_data.py,
BasicSR's USMSharp, realesrgan_dataset.py, paired_sam_dataset.py), computed by hand in numpy/scipy
or plain torch, not from srlab's functions.
"""

from __future__ import annotations

import collections
import copy
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from scipy import ndimage

from srlab import config, io
from srlab.data import build as data
from srlab.data import datasets, degrade
from srlab.data import kernels as dk

ROOT = Path(__file__).resolve().parents[1]

# The overrides the release recipe needs in the data/degrade sections (reported to the recipe's owner)
RELEASE = {
    "data": {"loader": {"order": "sorted"}},
    "degrade": {
        "train": {
            "hr_crops_per_image": 1,
            "sharpen_target": "usm_target",
            "bicubic_prob": 0.5,
            "bicubic_antialias": False,
            "bicubic_group": 10,
            "hr_pipeline": "release_mild",
            "wild_pipeline": "release_mild",
            "wild_bicubic_prob": 0.5,
            "mix": "proportional",
        }
    },
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def _photo(seed: int, height: int = 40, width: int = 48) -> np.ndarray:
    """A random uint8 RGB photo with edges (smooth field + a bright square), (H, W, 3)."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.random((1, 3, height // 8, width // 8)))
    image = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)[0] * 0.7
    image[:, 8:20, 10:26] += 0.3
    return io.to_uint8(image.clamp(0, 1))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for folder, count, start in (("photos", 6, 0), ("eval", 1, 50)):
        (tmp_path / folder).mkdir()
        for i in range(start, start + count):
            Image.fromarray(_photo(i)).save(tmp_path / folder / f"p{i:02d}.png")
    return tmp_path


def _params(
    tmp_path: Path, over: dict | None = None, edit: Callable[[dict], None] | None = None
) -> config.Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(
        hr_train_dir=str(tmp_path / "photos"), eval_sets={"mini": str(tmp_path / "eval")}, val_fraction=0.2,
        paired_holdout=2,
    )  # fmt: skip
    raw["data"]["loader"]["crop_size"] = 16
    raw["degrade"].update(eval_pipelines=["synthetic"])
    raw["degrade"]["train"].update(crop_size=32, hr_crops_per_image=2, paired_overlap=8)
    raw = _merge(raw, over or {})
    if edit:
        edit(raw)
    path = tmp_path / f"params_{len(list(tmp_path.glob('params_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return config.load_params(path, None, data.SECTIONS)


def _train(manifest: dict) -> list[dict]:
    return [s for s in manifest["samples"] if s["split"] == "train"]


def _source_crop(s: dict) -> torch.Tensor:
    """A training sample's unsharpened HR crop, cut from its source photo by hand."""
    image = io.read_image(s["source"])
    if s["part"] != "hr":  # paired stand-in and wild: crop boxes in the photo centre-cropped to x4
        h, w = image.shape[1:]
        image = image[:, (h - h // 4 * 4) // 2 :, (w - w // 4 * 4) // 2 :][:, : h // 4 * 4, : w // 4 * 4]
    top, left, h, w = s["crop_box"]
    return image[:, top : top + h, left : left + w]


# --- USM on the saved target (make_paired_data.py:141-145; img_process_util.py:63-83) ----------------


def usmsharp_by_hand(img: np.ndarray, weight: float = 0.5, threshold: float = 10) -> np.ndarray:
    """BasicSR USMSharp(radius=50, sigma=0).forward(img, 0.5, 10) in numpy/scipy, (H, W, 3) float64.

    radius 50 is made odd (51); cv2.getGaussianKernel(51, 0) uses sigma = 0.3 ((51 - 1) / 2 - 1) + 0.8
    = 8.0; the 2-D kernel is the outer product (float32); filter2D pads with torch's 'reflect'
    (scipy's 'mirror') and correlates; the mask |img - blur| * 255 > threshold is blurred by the same
    kernel (the soft mask); sharp = clip(img + weight (img - blur), 0, 1).
    """
    k = 51
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    assert math.isclose(sigma, 8.0)
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    kernel = np.outer(g, g).astype(np.float32).astype(np.float64)

    def filt(a: np.ndarray) -> np.ndarray:
        return np.stack([ndimage.correlate(a[..., c], kernel, mode="mirror") for c in range(3)], -1)

    residual = img - filt(img)
    soft = filt((np.abs(residual) * 255 > threshold).astype(np.float64))
    sharp = np.clip(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


def test_usm_target_is_basicsrs_usmsharp(tmp_path: Path) -> None:
    params = _params(tmp_path).degrade
    image = io.read_image(ROOT / "data/set5/butterfly.png")[:, :40, :56]
    ours = degrade.apply_op(image[None], params, "usm_target", torch.Generator().manual_seed(0)).lr[0]
    hand = usmsharp_by_hand(image.permute(1, 2, 0).double().numpy())
    ours_levels = ours.permute(1, 2, 0).double().numpy() * 255
    assert np.abs(ours_levels - hand * 255).max() <= 0.5 + 1e-6  # the 8-bit rounding, nothing else
    assert np.abs(hand - image.permute(1, 2, 0).numpy()).max() > 0.05  # it does sharpen


def test_sharpened_target_and_lr_from_the_unsharpened_crop(tmp_path: Path, photos: Path) -> None:
    plain = _params(tmp_path, {"degrade": {"train": {"wild_pipeline": "release_mild"}}})
    sharp = _params(
        tmp_path, {"degrade": {"train": {"wild_pipeline": "release_mild", "sharpen_target": "usm_target"}}}
    )
    m0 = data.build_stage(plain, tmp_path / "plain")
    m1 = data.build_stage(sharp, tmp_path / "sharp")
    s0, s1 = _train(m0), _train(m1)
    assert [s["id"] for s in s0] == [s["id"] for s in s1]
    assert {s["part"] for s in s1} == {"hr", "paired", "wild"}
    changed = 0
    for a, b in zip(s0, s1, strict=True):
        # LR: the same bytes as without sharpening (same seed, made from the unsharpened crop)
        assert (tmp_path / "plain" / a["lr"]).read_bytes() == (tmp_path / "sharp" / b["lr"]).read_bytes()
        assert a["degradation"] == b["degradation"] and "target" in b and "target" not in a
        crop = _source_crop(b)
        assert torch.equal(io.read_image(tmp_path / "plain" / a["hr"]), crop)  # null: the crop itself
        hand = usmsharp_by_hand(crop.permute(1, 2, 0).double().numpy())
        saved = io.read_image(tmp_path / "sharp" / b["hr"]).permute(1, 2, 0).double().numpy()
        assert np.abs(saved * 255 - hand * 255).max() <= 0.5 + 1e-6
        changed += int(not np.array_equal(saved, crop.permute(1, 2, 0).double().numpy()))
    assert changed > len(s1) // 2  # the targets are sharpened (edges of the bright square)
    # the wild component's LR is the mild x4 recipe of the (unsharpened) paired crop
    wild = next(s for s in s1 if s["part"] == "wild" and s["lr_from"] == "release_mild")
    redo = degrade.degrade(
        _source_crop(wild)[None], sharp.degrade, "release_mild", torch.Generator().manual_seed(wild["seed"])
    )
    assert torch.equal(redo.lr[0], io.read_image(tmp_path / "sharp" / wild["lr"]))


# --- the bicubic half (make_paired_data.py:156-162) --------------------------------------------------


def test_aliased_bicubic_is_plain_f_interpolate(tmp_path: Path, photos: Path) -> None:
    image = io.read_image(ROOT / "data/set5/baby.png")[:, :64, :48]
    x = image[None].double()
    plain = F.interpolate(x, size=(16, 12), mode="bicubic")[0]  # torch's defaults: antialias=False
    expected = (plain.clamp(0, 1) * 255).round()
    ours = data.bicubic_downsample(image, 4, antialias=False) * 255
    assert torch.equal(ours.double(), expected)
    assert not torch.equal(data.bicubic_downsample(image, 4) * 255, ours)  # today's default: antialiased
    params = _params(tmp_path, {"degrade": {"train": {"bicubic_prob": 1.0, "bicubic_antialias": False}}})
    manifest = data.build_stage(params, tmp_path / "out")
    hr = [s for s in _train(manifest) if s["part"] == "hr"]
    assert hr and all(s["lr_from"] == "bicubic" for s in hr)
    for s in hr:
        crop = _source_crop(s)[None].double()
        want = (F.interpolate(crop, scale_factor=0.25, mode="bicubic")[0].clamp(0, 1) * 255).round()
        assert torch.equal((io.read_image(tmp_path / "out" / s["lr"]).double() * 255).round(), want)


def test_bicubic_coin_is_shared_by_groups_of_ten_consecutive_crops(tmp_path: Path, photos: Path) -> None:
    over = {"degrade": {"train": {"hr_crops_per_image": 8, "bicubic_group": 10}}}
    grouped = data.build_stage(_params(tmp_path, over), tmp_path / "grouped")
    single = data.build_stage(
        _params(tmp_path, {"degrade": {"train": {"hr_crops_per_image": 8}}}), tmp_path / "one"
    )
    made = [s["lr_from"] for s in _train(grouped) if s["part"] == "hr"]
    assert len(made) == 24  # 3 photos x 8 crops, in build order (sorted photos, crop k)
    groups = [set(made[i : i + 10]) for i in range(0, len(made), 10)]
    assert all(len(g) == 1 for g in groups)  # crops 0-9 share one draw, 10-19 the next, 20-23 a third
    per_crop = [s["lr_from"] for s in _train(single) if s["part"] == "hr"]
    assert any(len(set(per_crop[i : i + 10])) == 2 for i in range(0, 24, 10))  # group 1: a coin per crop
    # a crop degraded in both builds got the same LR: the grouping does not move the pipeline's draws
    same = [
        (a, b) for a, b in zip(_train(single), _train(grouped), strict=True) if a["lr_from"] == b["lr_from"]
    ]
    assert same and all(
        (tmp_path / "one" / a["lr"]).read_bytes() == (tmp_path / "grouped" / b["lr"]).read_bytes()
        for a, b in same
    )


# --- the mild pipeline (make_paired_data.py:101-129, 163-280) ----------------------------------------


def _records(params: config.DegradeParams, runs: int = 60, batch: int = 4) -> list[list[dict]]:
    images = torch.rand(batch, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    images = F.interpolate(images, size=32, mode="bilinear", align_corners=False)
    out = []
    for r in range(runs):
        result = degrade.degrade(images, params, "release_mild", torch.Generator().manual_seed(r))
        assert result.lr.shape == (batch, 3, 8, 8)
        out += result.records
    return out


def test_mild_pipeline_draws_stay_in_the_release_ranges(tmp_path: Path) -> None:
    params = _params(tmp_path).degrade
    records = _records(params)
    steps = collections.defaultdict(list)
    for rec in records:
        for r in rec:
            steps[r["step"]].append(r)
    sincs, kinds = 0, collections.Counter()
    for name in ("mild_blur1", "mild_blur2"):
        for r in steps[name]:
            if not r["applied"]:
                continue
            assert r["size"] in range(7, 22, 2)  # realesrgan_dataset.py:114
            if r["kernel"] == "sinc":
                sincs += 1
                lo = math.pi / 3 if r["size"] < 13 else math.pi / 5  # :183-189
                assert lo <= r["cutoff"] <= math.pi
                continue
            kinds[r["kernel"]] += 1
            assert 0.01 <= r["sigma_x"] <= 0.02 and 0.01 <= r.get("sigma_y", 0.015) <= 0.02  # :55,71
            assert -math.pi <= r.get("theta", 0.0) <= math.pi
            if "beta" in r:
                assert 0.01 <= r["beta"] <= 1.0  # U(0.01, 1) or U(1, 0.02): degradations.py:261-264
    assert "plateau_aniso" not in kinds and kinds["iso"] > kinds["aniso"] > 0  # :53 (0.6, 0.2, ..., 0)
    applied2 = [r["applied"] for r in steps["mild_blur2"]]
    assert 0.02 < sum(applied2) / len(applied2) < 0.2  # second_blur_prob 0.1 (:119)
    assert all(r["applied"] for r in steps["mild_blur1"]) and sincs > 0
    for name, base in (("mild_resize1", "input"), ("mild_resize2", "target")):
        for r in steps[name]:
            assert 0.95 <= r["factor"] <= 1.05 and r["mode"] in ("area", "bilinear", "bicubic")  # :101-102
            assert (r["direction"] == "keep") == (r["factor"] == 1.0)
            if base == "target":
                assert r["size"] == [int(8 * r["factor"])] * 2  # int(H / 4 * s): :207-223
    for name in ("mild_noise1", "mild_noise2"):
        kinds_n = collections.Counter(r["noise"] for r in steps[name])
        assert kinds_n["poisson"] > 10 * kinds_n["gaussian"]  # gaussian_noise_prob 0.03 (:103)
        for r in steps[name]:
            if r["noise"] == "gaussian":
                assert 0.01 <= r["sigma"] <= 0.03  # x 1/255 (degradations.py:535)
            else:
                assert 0.01 <= r["scale"] <= 0.1  # poisson_scale_range (:105)
    for name in ("mild_jpeg1", "mild_jpeg2"):
        assert all(80 <= r["quality"] <= 100 for r in steps[name])  # jpeg_range (:107, :126)
    finals = [r for r in steps["mild_final"]]
    assert {r["branch"] for r in finals} == {0, 1}
    sinc = [r for r in steps["mild_sinc_final"]]
    assert all(
        math.pi / 3 <= r["cutoff"] <= math.pi and r["size"] in range(7, 22, 2) for r in sinc if r["applied"]
    )
    assert 0.25 < sum(r["applied"] for r in sinc) / len(sinc) < 0.55  # final_sinc_prob 0.4 (:75)


def test_mild_gaussian_kernels_are_deltas(tmp_path: Path) -> None:
    params = _params(tmp_path).degrade
    for name in ("mild_blur1", "mild_blur2"):
        op = params.ops[name]
        settings = {f: getattr(op, f) for f in op.__dataclass_fields__ if f not in ("op", "prob")}
        kernels, records = dk.random_blur_kernel(600, generator=torch.Generator().manual_seed(0), **settings)
        gauss = [i for i, r in enumerate(records) if r["kernel"] in ("iso", "aniso")]
        assert len(gauss) > 400
        centre = kernels[gauss, 10, 10]
        assert torch.all((centre - 1).abs() <= 1e-6)
        # by hand: exp(-d^2 / (2 sigma^2)) at 1 px and sigma 0.02 is exp(-1250) = 0 in float64
        assert math.exp(-1 / (2 * 0.02**2)) == 0.0


# --- the third component at x4 and the data order (paired_sam_dataset.py:45-47, shuffle=False) --------


def test_release_overrides_validate_and_build_a_x4_third_component(tmp_path: Path, photos: Path) -> None:
    params = _params(tmp_path, RELEASE)
    manifest = data.build_stage(params, tmp_path / "out")
    counts = collections.Counter(s["part"] for s in _train(manifest))
    assert counts["wild"] == counts["paired"] > 0 and counts["hr"] == 3  # one crop per photo
    for s in _train(manifest):
        # paired: the stand-in's LR (the release's NTIRE_syn: the challenge's own LR)
        made = ("synthetic",) if s["part"] == "paired" else ("bicubic", "release_mild")
        assert s["scale"] == 4 and s["lr_size"] == [8, 8] and s["lr_from"] in made
    pairs = datasets.TrainPairs(tmp_path / "out", params.data.loader, seed=0)
    item = pairs[len(pairs) - 1]
    assert item["part"] == "wild" and item["lr"].shape == item["hr"].shape == (3, 16, 16)
    with pytest.raises(
        config.ConfigError, match=r"wild_bicubic_prob 0\.5 needs a downsampling wild_pipeline"
    ):
        _params(tmp_path, RELEASE, lambda raw: raw["degrade"]["train"].update(wild_pipeline="wild"))
    with pytest.raises(config.ConfigError, match="sharpen_target: unknown op 'usm_targ'"):
        _params(tmp_path, RELEASE, lambda raw: raw["degrade"]["train"].update(sharpen_target="usm_targ"))


def test_sorted_order_visits_every_pair_once_per_epoch_in_path_order(tmp_path: Path, photos: Path) -> None:
    params = _params(tmp_path, RELEASE)
    data.build_stage(params, tmp_path / "out")
    pairs = datasets.TrainPairs(tmp_path / "out", params.data.loader, seed=0)
    n = len(pairs)
    by_path = sorted(range(n), key=lambda i: f"train/lr/{pairs.samples[i]['id']}.png")
    parts = [pairs.samples[i]["part"] for i in by_path]
    assert parts == sorted(parts, key=["hr", "paired", "wild"].index)  # LSDIR, NTIRE_syn, NTIRE_syn_deg
    weights = pairs.sample_weights("proportional")
    assert torch.allclose(weights, torch.full((n,), 1 / n, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"set degrade\.train\.mix: proportional"):
        pairs.sample_weights({"hr": 0.5, "paired": 0.25, "wild": 0.25})
    for world, batch in ((1, 3), (2, 2), (3, 1)):
        seen = []
        for k in range(2 * n):  # micro-steps: process r's k-th batch is global batch k * world + r
            for rank in range(world):
                gen = torch.Generator().manual_seed(k)
                seen += pairs.batch_indices(k, rank, world, batch, weights, gen).tolist()
        epochs = [seen[e * n : (e + 1) * n] for e in range(len(seen) // n)]
        assert len(epochs) >= 2 and all(epoch == by_path for epoch in epochs)
    # a restarted feed (new Dataset, any step first) serves the same indices: resume needs no state
    again = datasets.TrainPairs(tmp_path / "out", params.data.loader, seed=0)
    gen = torch.Generator()
    assert (
        again.batch_indices(7, 1, 2, 2, weights, gen).tolist()
        == pairs.batch_indices(7, 1, 2, 2, weights, gen).tolist()
    )


def test_mixed_order_is_todays_multinomial(tmp_path: Path, photos: Path) -> None:
    params = _params(tmp_path)
    data.build_stage(params, tmp_path / "out")
    pairs = datasets.TrainPairs(tmp_path / "out", params.data.loader, seed=0)
    assert params.data.loader.order == "mixed"
    weights = pairs.sample_weights(params.degrade.train.mix)
    got = pairs.batch_indices(5, 0, 1, 4, weights, torch.Generator().manual_seed(3))
    want = torch.multinomial(weights, 4, replacement=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, want)
    prop = pairs.sample_weights("proportional")
    share = {p: float(prop[[s["part"] == p for s in pairs.samples]].sum()) for p in ("hr", "paired", "wild")}
    sizes = collections.Counter(s["part"] for s in pairs.samples)
    assert all(abs(share[p] - sizes[p] / len(pairs)) < 1e-12 for p in share)
