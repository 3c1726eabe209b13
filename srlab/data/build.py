"""Data sets on disk (paper 4.1): the training set, the evaluation sets, their manifest, a Dataset.

``build_stage`` writes the ``degrade`` stage's folder in one go (srlab.io.atomic_dir: a run that fails
leaves nothing that DVC or the next stage would take for a data set)::

    train/hr/<id>.png  train/lr/<id>.png   training pairs: HR crop_size^2; LR 1/scale of it (wild: HR size)
    eval/<set>_<pipeline>/hr/<name>.png    HR, center-cropped to a multiple of lcm(hr_multiple, scale)
                                           and to at most eval_max_side (0: whole)
    eval/<set>_<pipeline>/lr/<name>.png    LR from that HR (pipelines without downsampling: LR only)
    manifest.json                          every sample, the params sections used, counts, skipped files

Training components (``degrade.train``; drawn in the ratios ``degrade.train.mix``, see ``TrainPairs``):

- ``hr``: random HR crops of the photos in ``data.hr_train_dir``; LR is bicubic x scale with
  probability ``bicubic_prob`` (antialiased or not: ``bicubic_antialias``; one coin per
  ``bicubic_group`` consecutive crops, as the release's batch of 10), else ``hr_pipeline``.
- ``paired``: the official paired set (``data.paired_dir`` with hr/ and lr/) cut into overlapping
  crops (``paired_overlap``), each LR crop the same box / scale. Without one (the tiny profile),
  ``data.paired_holdout`` photos are set aside and paired with ``paired_pipeline``'s LR of the whole
  photo, then cut the same way, so the cutting code runs on every profile.
- ``wild``: the paired set's HR crops through ``wild_pipeline``, at that pipeline's scale (the
  tiny/paper ``wild``: x1; the release's third component: x4), bicubic with ``wild_bicubic_prob``
  (same antialias and grouping as ``hr``). Their manifest entries point at the paired HR crop file.

``sharpen_target`` (an op name, e.g. the release's USM): every saved training HR crop goes through it
(own generator, key (seed, "sharpen", part, name)); every LR is made from the unsharpened crop, so the
LRs are those of ``sharpen_target: null``. The manifest then records the op under "target".

The HR photos are split by a seeded hash of their names (stable when photos are added): validation
(``data.val_fraction``, written as the eval set ``val``), the paired stand-in, and the rest.

A manifest sample: id, split (train | eval), part (component | eval set), source (file), crop_box
[top, left, height, width] in the source HR, hr / lr (paths in the stage folder; hr null for wild
eval), hr_size / lr_size [H, W], scale, lr_from (bicubic | a pipeline | official), seed, and
degradation: every step of the pipeline with the values it drew (srlab.data.degrade.Degraded.records).
``torch.Generator().manual_seed(seed)`` through the same pipeline reproduces a sample exactly.

Bad input: unreadable files raise srlab.io.ImageReadError naming the file; grayscale, alpha and
16-bit files are converted by srlab.io.read_image; a photo smaller than the crop raises a ValueError
naming it (``data.on_small_image: error``) or is left out and listed under "skipped" (``skip``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from srlab import io
from srlab.config import Params, as_dict
from srlab.data.degrade import apply_op, degrade
from srlab.data.degrade_params import DegradeParams
from srlab.data.ops import bernoulli, randint
from srlab.data.params import DataParams
from srlab.data.photos import bicubic_downsample, sample_generator, split_photos

Box = tuple[int, int, int, int]  # (top, left, height, width)


SECTIONS = {"data": DataParams, "degrade": DegradeParams}  # what the degrade stage reads


def center_crop_to_multiple(
    image: torch.Tensor, multiple: int, max_side: int = 0
) -> tuple[torch.Tensor, Box]:
    """Crop (3, H, W) centrally so both sides divide by ``multiple`` (and, if ``max_side``, are at most
    ``max_side`` rounded down to the multiple); returns the crop and its box."""
    h, w = image.shape[1:]
    side_h, side_w = (min(h, max_side), min(w, max_side)) if max_side else (h, w)
    ch, cw = side_h - side_h % multiple, side_w - side_w % multiple
    if ch == 0 or cw == 0:
        raise ValueError(f"image of size {h}x{w} is smaller than the required multiple {multiple}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[:, top : top + ch, left : left + cw], (top, left, ch, cw)


def tile_boxes(height: int, width: int, crop: int, overlap: int, multiple: int = 1) -> list[Box]:
    """Overlapping square crops covering an image: stride crop - overlap, row-major.

    The last row and column sit flush with the bottom/right edge (moved up/left to a multiple of
    ``multiple``, so LR boxes stay whole pixels). An image smaller than ``crop`` gives no boxes.
    """

    def starts(length: int) -> list[int]:
        if length < crop:
            return []
        last = (length - crop) // multiple * multiple
        out = list(range(0, last + 1, crop - overlap))
        return out if out[-1] == last else [*out, last]

    return [(top, left, crop, crop) for top in starts(height) for left in starts(width)]


def random_boxes(
    height: int, width: int, crop: int, count: int, generator: torch.Generator, multiple: int = 1
) -> list[Box]:
    """``count`` square crops at uniform random positions (multiples of ``multiple``)."""
    tops = randint(count, (0, (height - crop) // multiple * multiple), generator, step=multiple)
    lefts = randint(count, (0, (width - crop) // multiple * multiple), generator, step=multiple)
    return [(int(t), int(left), crop, crop) for t, left in zip(tops, lefts, strict=True)]


def _size(image: torch.Tensor) -> str:
    return "x".join(map(str, image.shape[1:]))


def cut(image: torch.Tensor, box: Sequence[int], scale: int = 1) -> torch.Tensor:
    top, left, h, w = (v // scale for v in box)
    return image[:, top : top + h, left : left + w]


class _Writer:
    """Writes images under the stage folder and collects manifest samples (ids must be unique)."""

    def __init__(self, root: Path, params: Params) -> None:
        self.root, self.params = root, params
        self.samples: list[dict[str, Any]] = []
        self.eval_sets: dict[str, dict[str, Any]] = {}  # folder -> source, kind, scale, paired
        self.skipped: list[dict[str, str]] = []
        self._ids: dict[str, str] = {}

    def add(
        self,
        split: str,
        part: str,
        name: str,
        source: Path,
        box: Sequence[int],
        hr: Any,
        lr: torch.Tensor,
        meta: dict,
    ) -> dict[str, Any]:
        """One sample. hr: an image, or the path of one written before (with meta["hr_size"]), or None."""
        folder = Path(split) if split == "train" else Path(split) / part
        sample_id = f"{part}_{name}" if split == "train" else name
        key = f"{folder}/{sample_id}"
        if key in self._ids:
            raise ValueError(
                f"{source} and {self._ids[key]} both map to {key}: rename one (same name, other suffix)"
            )
        self._ids[key] = str(source)
        if isinstance(hr, torch.Tensor):
            io.write_image(hr, self.root / folder / "hr" / f"{sample_id}.png")
            hr_size, hr = list(hr.shape[1:]), f"{folder}/hr/{sample_id}.png"
        else:  # a file written before (wild: the paired HR crop) or none (wild eval sets)
            meta = dict(meta)
            hr_size = meta.pop("hr_size", None)
        io.write_image(lr, self.root / folder / "lr" / f"{sample_id}.png")
        sample = dict(
            id=sample_id, split=split, part=part, source=source.as_posix(), crop_box=list(box), hr=hr,
            lr=f"{folder}/lr/{sample_id}.png", hr_size=hr_size, lr_size=list(lr.shape[1:]), **meta,
        )  # fmt: skip
        self.samples.append(sample)
        return sample

    def read_for_crop(self, path: Path, crop: int) -> torch.Tensor | None:
        """The photo, or None if it is smaller than ``crop`` and data.on_small_image is skip."""
        image = io.read_image(path)
        if min(image.shape[1:]) >= crop:
            return image
        reason = f"{_size(image)} is smaller than the {crop}x{crop} training crop (degrade.train.crop_size)"
        if self.params.data.on_small_image == "error":
            raise ValueError(
                f"{path}: {reason}; remove it, lower the crop size or set data.on_small_image: skip"
            )
        self.skipped.append({"source": path.as_posix(), "reason": reason})
        return None


def _degraded(
    hr: torch.Tensor, params: Params, pipeline: str, generator: torch.Generator
) -> tuple[torch.Tensor, list]:
    result = degrade(hr[None], params.degrade, pipeline, generator)
    return result.lr[0], result.records[0]


def _bicubic_coin(params: Params, part: str, prob: float, index: int, generator: torch.Generator) -> bool:
    """Is crop ``index`` (build order) of component ``part`` bicubic? ``generator`` draws the coin
    (always, so the pipeline's draws do not depend on the grouping); with bicubic_group > 1 the coin
    of the crop's group, from its own generator, is used instead."""
    coin = bool(bernoulli(1, prob, generator).item())
    group = params.degrade.train.bicubic_group
    if group == 1:
        return coin
    grouped, _ = sample_generator(params.base.seed, f"{part}-bicubic", index // group)
    return bool(bernoulli(1, prob, grouped).item())


def _lr_of(
    hr: torch.Tensor, params: Params, pipeline: str, bicubic: bool, generator: torch.Generator
) -> tuple[torch.Tensor, str, list]:
    """(LR, lr_from, records): bicubic x scale, or ``pipeline`` drawing from ``generator``."""
    if bicubic:
        lr = bicubic_downsample(hr, params.degrade.scale, params.degrade.train.bicubic_antialias)
        return lr, "bicubic", []
    lr, records = _degraded(hr, params, pipeline, generator)
    return lr, pipeline, records


def _target(hr: torch.Tensor, params: Params, part: str, name: str) -> tuple[torch.Tensor, dict]:
    """The HR crop as saved: through degrade.train.sharpen_target if set; and the manifest's extra keys."""
    op = params.degrade.train.sharpen_target
    if op is None:
        return hr, {}
    generator, seed = sample_generator(params.base.seed, "sharpen", part, name)
    result = apply_op(hr[None], params.degrade, op, generator)
    return result.lr[0], {"target": {"seed": seed, "records": result.records[0]}}


def _hr_component(photos: Sequence[Path], params: Params, out: _Writer) -> None:
    train, scale, seed = params.degrade.train, params.degrade.scale, params.base.seed
    index = 0  # crops in build order (the bicubic groups)
    for path in photos:
        image = out.read_for_crop(path, train.crop_size)
        if image is None:
            continue
        positions, _ = sample_generator(seed, "hr-crops", path.name)
        boxes = random_boxes(*image.shape[1:], train.crop_size, train.hr_crops_per_image, positions)
        for k, box in enumerate(boxes):
            hr, name = cut(image, box), f"{path.stem}_{k:03d}"
            generator, sample_seed = sample_generator(seed, "hr", path.name, k)
            bicubic = _bicubic_coin(params, "hr", train.bicubic_prob, index, generator)
            lr, lr_from, records = _lr_of(hr, params, train.hr_pipeline, bicubic, generator)
            saved, extra = _target(hr, params, "hr", name)
            meta = dict(scale=scale, lr_from=lr_from, seed=sample_seed, degradation=records, **extra)
            out.add("train", "hr", name, path, box, saved, lr, meta)
            index += 1


def _paired_sources(photos: Sequence[Path], params: Params, out: _Writer) -> Iterator[tuple]:
    """(hr path, HR image, LR image, metadata) of the official paired set or of its stand-in."""
    scale, seed, data = params.degrade.scale, params.base.seed, params.data
    if data.paired_dir is None:
        for path in photos:
            image = out.read_for_crop(path, params.degrade.train.crop_size)
            if image is not None:
                hr, _ = center_crop_to_multiple(image, scale)
                generator, sample_seed = sample_generator(seed, "paired", path.name)
                lr, records = _degraded(hr, params, params.degrade.train.paired_pipeline, generator)
                pipeline = params.degrade.train.paired_pipeline
                yield path, hr, lr, dict(scale=scale, lr_from=pipeline, seed=sample_seed, degradation=records)
        return
    lr_files = {p.stem: p for p in io.list_images(Path(data.paired_dir) / "lr")}
    for path in io.list_images(Path(data.paired_dir) / "hr"):
        if path.stem not in lr_files:
            raise FileNotFoundError(f"{path}: no LR image of that name in {Path(data.paired_dir) / 'lr'}")
        hr, lr = out.read_for_crop(path, params.degrade.train.crop_size), io.read_image(lr_files[path.stem])
        if hr is not None:
            if tuple(hr.shape[1:]) != (lr.shape[1] * scale, lr.shape[2] * scale):
                raise ValueError(
                    f"{path} is {_size(hr)} but {lr_files[path.stem]} is {_size(lr)}: the LR times"
                    f" degrade.scale ({scale}) must give the HR size"
                )
            yield path, hr, lr, dict(scale=scale, lr_from="official", seed=None, degradation=[])


def _paired_and_wild_components(photos: Sequence[Path], params: Params, out: _Writer) -> None:
    """Per paired photo: its crops (component paired), then each crop (unsharpened) through the wild
    pipeline (component wild); the manifest lists all paired samples before all wild ones."""
    train, scale, seed = params.degrade.train, params.degrade.scale, params.base.seed
    wild_scale = scale if params.degrade.pipelines[train.wild_pipeline].downsample else 1
    start, index = len(out.samples), 0
    for path, hr, lr, meta in _paired_sources(photos, params, out):
        for j, box in enumerate(tile_boxes(*hr.shape[1:], train.crop_size, train.paired_overlap, scale)):
            name = f"{path.stem}_{j:03d}"
            crop = cut(hr, box)
            saved, extra = _target(crop, params, "paired", name)
            s = out.add("train", "paired", name, path, box, saved, cut(lr, box, scale), {**meta, **extra})
            # the wild component: the unsharpened crop through wild_pipeline; its HR is the paired file
            generator, sample_seed = sample_generator(seed, "wild", s["id"])
            if train.wild_bicubic_prob > 0:
                coin_gen, _ = sample_generator(seed, "wild-bicubic", s["id"])
                bicubic = _bicubic_coin(params, "wild", train.wild_bicubic_prob, index, coin_gen)
            else:
                bicubic = False
            wild_lr, lr_from, records = _lr_of(crop, params, train.wild_pipeline, bicubic, generator)
            wild_meta = dict(
                scale=wild_scale, lr_from=lr_from, seed=sample_seed, degradation=records, **extra
            )
            out.add(
                "train", "wild", name, path, box, s["hr"], wild_lr, {**wild_meta, "hr_size": s["hr_size"]}
            )
            index += 1
    mine = out.samples[start:]
    out.samples[start:] = sorted(mine, key=lambda s: s["part"] == "wild")  # stable: paired, then wild


def build_eval_sets(params: Params, out: _Writer, extra: Mapping[str, Sequence[Path]] | None = None) -> None:
    """Each set of data.eval_sets (plus ``extra``, e.g. validation photos) once per eval pipeline."""
    sets = {name: io.list_images(folder) for name, folder in params.data.eval_sets.items()}
    sets.update(extra or {})
    crop = math.lcm(params.degrade.hr_multiple, params.degrade.scale)
    for set_name, paths in sets.items():
        for pipeline in params.degrade.eval_pipelines:
            paired = params.degrade.pipelines[pipeline].downsample  # wild sets: LR only
            kind = params.degrade.pipelines[pipeline].sampled_as or pipeline
            out.eval_sets[f"{set_name}_{pipeline}"] = {
                "source": set_name, "kind": kind, "pipeline": pipeline,
                "scale": params.degrade.scale if paired else 1, "paired": paired,
            }  # fmt: skip
        for path in paths:
            try:
                hr, box = center_crop_to_multiple(io.read_image(path), crop, params.degrade.eval_max_side)
            except ValueError as err:
                raise ValueError(f"{path}: {err} (degrade.hr_multiple and degrade.scale)") from err
            for pipeline in params.degrade.eval_pipelines:
                generator, sample_seed = sample_generator(
                    params.base.seed, "eval", set_name, pipeline, path.name
                )
                lr, records = _degraded(hr, params, pipeline, generator)
                keep_hr = params.degrade.pipelines[pipeline].downsample  # wild sets: LR only
                scale = params.degrade.scale if keep_hr else 1
                meta = dict(scale=scale, lr_from=pipeline, seed=sample_seed, degradation=records)
                out.add(
                    "eval", f"{set_name}_{pipeline}", path.stem, path, box, hr if keep_hr else None, lr, meta
                )


def build_stage(params: Params, out_dir: str | Path) -> dict[str, Any]:
    """Write the training set, the eval sets and manifest.json to ``out_dir``, atomically.

    Same params and files, same bytes out. Returns the manifest.
    """
    paired = [Path(params.data.paired_dir) / sub for sub in ("hr", "lr")] if params.data.paired_dir else []
    for folder in (*params.data.eval_sets.values(), *paired):
        io.list_images(folder)  # a missing folder fails here, before any work
    split = split_photos(io.list_images(params.data.hr_train_dir), params)
    with io.atomic_dir(out_dir) as staging:
        out = _Writer(staging, params)
        _hr_component(split["hr"], params, out)
        _paired_and_wild_components(split["paired"], params, out)
        build_eval_sets(params, out, {"val": split["val"]} if split["val"] else {})
        counts: dict[str, int] = {}
        for s in out.samples:
            counts[f"{s['split']}/{s['part']}"] = counts.get(f"{s['split']}/{s['part']}", 0) + 1
        manifest = {
            "params": {
                "base": as_dict(params.base),
                "data": as_dict(params.data),
                "degrade": as_dict(params.degrade),
            },
            "counts": counts,
            "eval_sets": out.eval_sets,
            "skipped": out.skipped,
            "samples": out.samples,
        }
        text = json.dumps(manifest, indent=1) + "\n"
        (staging / "manifest.json").write_text(text)
    return json.loads(text)  # as the file reads (lists, not tuples)


def summary(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (split, part): sample count, HR and LR sizes, how the LR was made (for a table)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in manifest["samples"]:
        groups.setdefault((s["split"], s["part"]), []).append(s)

    def sizes(key: str, items: list[dict[str, Any]]) -> str:
        found = sorted({"x".join(map(str, s[key])) for s in items if s[key]})
        return "-" if not found else found[0] if len(found) == 1 else f"{len(found)} sizes"

    rows = []
    for (split, part), items in groups.items():
        made: dict[str, int] = {}
        for s in items:
            made[s["lr_from"]] = made.get(s["lr_from"], 0) + 1
        rows.append({
            "split": split, "part": part, "samples": len(items), "HR": sizes("hr_size", items),
            "LR": sizes("lr_size", items), "LR from": ", ".join(f"{k} {v}" for k, v in made.items()),
        })  # fmt: skip
    return rows
