"""The tag stage: each image's tags computed once, for training and for every eval set (srlab.models.tagging).

Reads the degrade stage's folder and writes ``<build>/tags/`` atomically:
- ``train.csv`` (``model.prompts.train_tags`` is ram | dape): every training sample's HR crop tagged, as
  the authors tagged their GT crops with RAM (make_tags.py:29,49-76); columns image (the sample id), tags,
  key (srlab.models.tagging.image_key);
- ``<set>.csv`` per eval set (``model.prompts.tags`` is ram | dape): every LR image tagged, as the release
  tags the LR with DAPE (test_seesr_sam.py:156-161); columns image (file name), tags, key;
- ``tags.json``: the tagger signature of each part (its readers refuse or skip a cache made by another),
  image counts, and whether the tagger is the tiny random one (meaningless tags).
``none`` / ``file`` need no tagging: the folder then holds ``tags.json`` alone.

``python -m srlab.sampling.tag_stage --build build`` (dvc.yaml stage ``tag``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from srlab import io
from srlab.config import Params, Subset, load_params
from srlab.data.eval_sets import find_eval_sets
from srlab.models.params import TaggerModel
from srlab.models.ram import Ram
from srlab.models.tagging import (
    INFO_FILE,
    KINDS,
    MEANINGLESS,
    TRAIN_FILE,
    Kind,
    build_tagger,
    image_key,
    is_random,
    signature,
    tag_cache_dir,
    tag_image,
)

# What the stage reads of `model`: the tagger sizes and files (dvc.yaml lists exactly these keys)
SECTIONS = {"model": Subset(TaggerModel, ("size", "semantic.width", "prompts"))}


def _tag_files(tagger: Ram, items: list[tuple[str, Path]], out: Path, desc: str) -> int:
    """Tag each (name, image file) into the CSV ``out``; returns the count. (No timings in the outputs, so
    a rerun writes the same bytes: benchmarks/bench_tagger.py measures the time per image.)"""
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "tags", "key"])
        for name, path in tqdm(items, desc=desc):
            image = io.read_image(path)
            writer.writerow([name, tag_image(tagger, image), image_key(image)])
    return len(items)


def run(params: Params, degrade_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Tag the training samples and the eval sets of ``degrade_dir`` into ``out_dir``; returns tags.json."""
    model, degrade_dir = params.model, Path(degrade_dir)
    prompts = model.prompts
    device = "cuda" if torch.cuda.is_available() else "cpu"
    taggers: dict[str, Ram] = {}
    info: dict[str, Any] = {"train": None, "images": None, "sets": [], "counts": {}}
    info["random_tagger"] = is_random(model) and (prompts.train_tags in KINDS or prompts.tags in KINDS)
    if info["random_tagger"]:
        info["note"] = MEANINGLESS

    def tagger(kind: Kind) -> Ram:
        if kind not in taggers:
            taggers[kind] = build_tagger(model, kind, device)
        return taggers[kind]

    with io.atomic_dir(out_dir) as tmp:
        if prompts.train_tags in KINDS:
            manifest = json.loads((degrade_dir / "manifest.json").read_text())
            samples = [(s["id"], degrade_dir / s["hr"]) for s in manifest["samples"] if s["split"] == "train"]
            desc = f"{prompts.train_tags} train"
            info["counts"]["train"] = _tag_files(tagger(prompts.train_tags), samples, tmp / TRAIN_FILE, desc)
            info["train"] = signature(model, prompts.train_tags)
        if prompts.tags in KINDS:
            for s in find_eval_sets(degrade_dir):
                files = [(p.name, p) for p in io.list_images(s.lr_dir)]
                out = tmp / f"{s.name}.csv"
                desc = f"{prompts.tags} {s.name}"
                info["counts"][s.name] = _tag_files(tagger(prompts.tags), files, out, desc)
                info["sets"].append(s.name)
            info["images"] = signature(model, prompts.tags)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    parser.add_argument("--profile", default=None, help="tiny | paper | smoke (default: base.profile)")
    parser.add_argument("--build", default="build", help="build folder: reads degrade/, writes tags/")
    args = parser.parse_args()
    build = Path(args.build)
    params = load_params(args.params, args.profile, SECTIONS)
    print(json.dumps(run(params, build / "degrade", tag_cache_dir(build)), indent=1))


if __name__ == "__main__":
    main()
