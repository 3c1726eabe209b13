"""RAM / DAPE in the model: the tagger behind the prompt c, DAPE's image embeddings as c_sem, and the tag
cache that the tag stage (srlab.sampling.tag_stage) writes. Facts and sources: docs/research/ram_dape.md.

Who tags what (the authors' split; ``model.prompts``):
- ``train_tags`` (training samples): the tagger on the HR crop (the authors: RAM on the GT crops,
  make_tags.py:29,49-76), computed once by the tag stage into ``<tags_dir>/train.csv`` and looked up by
  sample id; the prompt is ``"{tags},"``, as the authors' tag files hold it (make_tags.py:72-76).
- ``tags`` (eval sets, validation, ``srlab upscale``): the tagger on the LR image (the release: DAPE,
  test_seesr_sam.py:156-161). An image found in the tag stage's ``<tags_dir>/<set>.csv`` (matched by its
  8-bit pixels, so an eval set's image gets its own tags whatever its name, and a crop is tagged anew)
  takes its cached tags; any other image is tagged on the fly.
- ``model.semantic.extractor: dape``: DAPE's image embeddings, SeeSR's c_sem (``generate_image_embeds``).

Weights: ``model.prompts.ram_checkpoint`` / ``dape_checkpoint`` / ``tag_list`` / ``tag_thresholds``, read
strictly by srlab.models.ram_checkpoint. Tiny profile with ``ram_checkpoint: null``: a tiny random tagger
built from a fixed seed, so the pipeline runs offline; its tags and embeddings are meaningless.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from srlab.config import Params
from srlab.models.params import ModelParams, TaggerModel
from srlab.models.prompts import FileTags
from srlab.models.ram import LoraConfig, Ram, RamConfig, TagVocabulary
from srlab.models.ram_checkpoint import WHERE_TO_GET, RamFileMissingError, load_ram, require_file
from srlab.models.semantic import check_lr_batch

Kind = Literal["ram", "dape"]
ModelLike = ModelParams | TaggerModel  # what the tagger reads: size, semantic.width, prompts
KINDS = ("ram", "dape")
TAGS_DIR = "tags"  # the tag stage's folder in a build folder
TRAIN_FILE = "train.csv"  # training samples: image (sample id), tags, key
INFO_FILE = "tags.json"  # which tagger made the files (``signature``)
# The tiny random tagger: a fixed seed (base.seed would change it with every run seed), 16 classes
# named tag0..tag15 at threshold 0.5 (about half of them on), 64 px input (5 image tokens).
TINY_SEED = 0
TINY_CLASSES = 16
TINY_THRESHOLD = 0.5
TINY_IMAGE_SIZE = 64
MEANINGLESS = (
    "a tiny random tagger (model.prompts.ram_checkpoint is null): its tags and embeddings are meaningless"
)


# ---------------------------------------------------------------------------------------------
# The tagger
# ---------------------------------------------------------------------------------------------


def is_random(model: ModelLike) -> bool:
    """True when the tagger is the tiny random one (tiny profile, no ``ram_checkpoint``)."""
    return model.size == "tiny" and model.prompts.ram_checkpoint is None


def tagger_config(model: ModelLike, num_classes: int = TINY_CLASSES) -> RamConfig:
    """Paper: RAM Swin-L 384. Tiny: ``RamConfig.tiny`` at 64 px whose image embeddings have the semantic
    blocks' width (``model.semantic.width``), so the same tagger serves as the ``dape`` extractor."""
    if model.size == "paper":
        return RamConfig.paper()
    tiny = RamConfig.tiny(num_classes)
    return dataclasses.replace(tiny, image_size=TINY_IMAGE_SIZE, embed_width=model.semantic.width)


def _weight_file(model: ModelLike, key: str, what: str) -> Path:
    path = getattr(model.prompts, key)
    if path is None:
        raise RamFileMissingError(
            f"model.prompts.{key} is null; give the {what} file. Get it: {WHERE_TO_GET[what]}"
        )
    return require_file(path, what)


def tagger_files(model: ModelLike, kind: Kind) -> dict[str, Path]:
    """The weight files ``kind`` loads, each checked to exist (the error names its key, path and source)."""
    files = {"ram": _weight_file(model, "ram_checkpoint", "ram")}
    if kind == "dape":
        files["dape"] = _weight_file(model, "dape_checkpoint", "dape")
    files["tag_list"] = _weight_file(model, "tag_list", "tag_list")
    if model.prompts.tag_thresholds is not None:
        files["thresholds"] = require_file(model.prompts.tag_thresholds, "thresholds")
    return files


def random_tagger(cfg: RamConfig, kind: Kind) -> Ram:
    """RAM (or DAPE: the same RAM + random LoRA) with random weights from ``TINY_SEED``; the global RNG is
    left as it was. ``label_embed`` and the LoRA factors (zeros in ``Ram``) are drawn too, or every class
    would get the same logit and DAPE would equal RAM."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        ram = Ram(cfg)
        nn.init.normal_(ram.label_embed)
        if kind == "dape":  # the same RAM weights, then LoRA factors of its own
            dape = Ram(cfg, LoraConfig())
            missing, unexpected = dape.load_state_dict(ram.state_dict(), strict=False)
            assert not unexpected and all("lora_" in k for k in missing)
            torch.manual_seed(TINY_SEED + 1)
            for p in (p for name, p in dape.named_parameters() if "lora_" in name):
                nn.init.normal_(p, std=0.1)
            ram = dape
    names = [f"tag{i}" for i in range(cfg.num_classes)]
    ram.set_vocabulary(TagVocabulary(names, [TINY_THRESHOLD] * cfg.num_classes))
    return ram


def build_tagger(model: ModelLike, kind: Kind, device: str | torch.device = "cpu") -> Ram:
    """The ``kind`` tagger of ``model`` (frozen, eval mode, fp32 on ``device``): the official files through
    the strict loader, or (tiny, ``ram_checkpoint`` null) ``random_tagger``, said in the log."""
    if is_random(model):
        if model.prompts.dape_checkpoint is not None:
            raise ValueError(
                "model.prompts.dape_checkpoint is set but ram_checkpoint is null: DAPE is LoRA over RAM"
            )
        print(f"tagger {kind}: {MEANINGLESS}")
        ram = random_tagger(tagger_config(model), kind)
    else:
        files = tagger_files(model, kind)
        classes = len(files["tag_list"].read_text(encoding="utf-8").splitlines())
        ram = load_ram(
            files["ram"],
            tagger_config(model, classes),
            dape_path=files.get("dape"),
            tag_list=files["tag_list"],
            thresholds=files.get("thresholds"),
        )
    return ram.requires_grad_(False).eval().to(device)


def signature(model: ModelLike, kind: str) -> dict[str, Any]:
    """What makes a tagger's output: a cache made with another signature is not used."""
    pr = model.prompts
    files = {k: getattr(pr, k) for k in ("ram_checkpoint", "dape_checkpoint", "tag_list", "tag_thresholds")}
    sizes = {"size": model.size, "random": is_random(model), "width": model.semantic.width}
    return {"kind": kind, **sizes, **files}


# ---------------------------------------------------------------------------------------------
# Tagging an image
# ---------------------------------------------------------------------------------------------


def levels(image: torch.Tensor) -> torch.Tensor:
    """(3, h, w) in [0, 1], any dtype or device -> its 8-bit levels, uint8 on the CPU. An 8-bit file read
    by srlab.io gives back its own bytes even through bf16 (error < 0.5 level), so the cache key and the
    tagger's input do not depend on the pipeline's dtype."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image (3, h, w), got {tuple(image.shape)}")
    return (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)


def image_key(image: torch.Tensor) -> str:
    """A digest of the image's 8-bit pixels and size: the cache key of an LR image."""
    lv = levels(image)
    return hashlib.sha1(repr(tuple(lv.shape)).encode() + lv.numpy().tobytes()).hexdigest()


@torch.no_grad()
def tag_image(tagger: Ram, image: torch.Tensor) -> str:
    """Tags of one image (3, h, w) in [0, 1]: its 8-bit levels resized to the tagger's input (bilinear,
    no antialias: SeeSR's tensor ``Resize``), ImageNet-normalised, joined with ", "."""
    x = levels(image).float().div(255)[None].to(tagger.fc.weight.device)
    return tagger.generate_tags(x)[0]


# ---------------------------------------------------------------------------------------------
# Tag sources (srlab.models.prompts.TAG_SOURCES)
# ---------------------------------------------------------------------------------------------


def read_info(folder: Path) -> dict[str, Any] | None:
    path = folder / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class TrainTags:
    """``train_tags: ram | dape``: a training sample's tags by sample id, read once from the tag stage's
    ``train.csv``, as the authors' training prompt ``"{tags},"``. Read on first use, so a model built for
    inference only needs no cache; a missing cache or one made by another tagger is an error."""

    def __init__(self, model: ModelLike, kind: Kind) -> None:
        self.model, self.kind = model, kind
        self._tags: FileTags | None = None

    def _load(self) -> FileTags:
        folder = self.model.prompts.tags_dir
        fix = "run the tag stage (`dvc repro tag`, or python -m srlab.sampling.tag_stage)"
        if folder is None:
            raise FileNotFoundError(
                f"model.prompts.train_tags is {self.kind!r} but no tag cache is set: {fix}"
            )
        info = read_info(Path(folder))
        if info is None or not (Path(folder) / TRAIN_FILE).is_file():
            raise FileNotFoundError(f"{Path(folder) / TRAIN_FILE}: no training tags; {fix}")
        if info.get("train") != signature(self.model, self.kind):
            raise ValueError(
                f"{Path(folder) / INFO_FILE}: the training tags were made by {info.get('train')}, the params "
                f"ask for {signature(self.model, self.kind)}; {fix}"
            )
        return FileTags(Path(folder) / TRAIN_FILE)

    def __call__(self, name: str, lr: torch.Tensor | None = None) -> str:
        if self._tags is None:
            self._tags = self._load()
        return self._tags(name) + ","


class ImageTags:
    """``tags: ram | dape``: an image's tags, from the tag stage's eval-set files when the image (its 8-bit
    pixels) is there and they were made by the same tagger, else from the tagger, loaded on first use.
    The weight files are checked at once, so a missing one fails before any work."""

    def __init__(self, model: ModelLike, kind: Kind, device: str | torch.device = "cpu") -> None:
        self.model, self.kind, self.device = model, kind, device
        if not is_random(model):
            tagger_files(model, kind)
        self.cache = self._read_cache()
        self._tagger: Ram | None = None

    def _read_cache(self) -> dict[str, str]:
        folder = self.model.prompts.tags_dir
        info = read_info(Path(folder)) if folder is not None else None
        if info is None:
            return {}
        if info.get("images") != signature(self.model, self.kind):
            print(f"{Path(folder) / INFO_FILE}: made by another tagger than {self.kind}; tagging on the fly")
            return {}
        cache: dict[str, str] = {}
        for name in info.get("sets", []):
            with (Path(folder) / f"{name}.csv").open(newline="") as f:
                cache |= {row["key"]: row["tags"] for row in csv.DictReader(f)}
        return cache

    @property
    def tagger(self) -> Ram:
        if self._tagger is None:
            self._tagger = build_tagger(self.model, self.kind, self.device)
        return self._tagger

    def __call__(self, name: str, lr: torch.Tensor | None = None) -> str:
        if lr is None:
            raise ValueError(f"model.prompts.tags {self.kind!r} tags an image: none given for {name!r}")
        key = image_key(lr)
        if key not in self.cache:
            self.cache[key] = tag_image(self.tagger, lr)
        return self.cache[key]


def tag_cache_dir(build_dir: str | Path) -> Path:
    """The tag stage's folder in a build folder (beside degrade/, train/)."""
    return Path(build_dir) / TAGS_DIR


def with_tag_cache(params: Params, build_dir: str | Path) -> Params:
    """``params`` whose model reads the tag stage's cache in ``build_dir`` (when a tagger is configured)."""
    prompts = params.model.prompts
    if prompts.tags not in KINDS and prompts.train_tags not in KINDS:
        return params
    prompts = dataclasses.replace(prompts, tags_dir=str(tag_cache_dir(build_dir)))
    return params.replace(model=dataclasses.replace(params.model, prompts=prompts))


# ---------------------------------------------------------------------------------------------
# The dape extractor (srlab.models.semantic.EXTRACTORS)
# ---------------------------------------------------------------------------------------------


class DapeExtractor(nn.Module):
    """c_sem = DAPE's image embeddings ``image_proj(visual_encoder(x))``, (B, 1 + (S/32)^2, 512) = (B, 145,
    512) at paper size (SeeSR ram_lora.py:176-180), of the LR resized to S x S (384) and ImageNet-normalised
    (test_seesr.py:47-50,137-140). SeeSR's training resized its LR bicubic instead (paired_dataset.py:88-90);
    srlab resizes as at inference in both, like the SAM2 extractor."""

    def __init__(self, ram: Ram, width: int) -> None:
        super().__init__()
        if ram.cfg.embed_width != width:
            raise ValueError(
                f"model.semantic.width = {width}, but the dape extractor gives RAM's {ram.cfg.embed_width} "
                "channels (SeeSR's semantic blocks read 512): set width to it"
            )
        self.ram = ram
        self.tokens, self.width = ram.cfg.num_image_tokens, width
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, lr: torch.Tensor, antialias: bool = True) -> torch.Tensor:
        check_lr_batch(lr)
        x = self.ram.preprocess(lr.float(), antialias=antialias)  # (B, 3, S, S), float32
        return self.ram.image_embeds(x.to(self.ram.image_proj.weight.dtype))  # (B, T, width)


def build_dape_extractor(model: ModelParams, device: str | torch.device = "cpu") -> DapeExtractor:
    return DapeExtractor(build_tagger(model, "dape", device), model.semantic.width)
