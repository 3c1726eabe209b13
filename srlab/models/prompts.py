"""The text prompt c of Eq. 4: where an LR image's tags come from, and how text becomes embeddings.

Tags. The released code prompts with the DAPE tags of the LR image, e.g. "sky, tree, house", followed by
the user's prompt; the authors trained on RAM tags of the HR crops. Tag sources form a small registry,
one per ``model.prompts.tags`` (images) and ``train_tags`` (training samples, looked up by sample id):
- ``none``: empty tags (the offline default; the paper also trains with 50% empty prompts);
- ``file``: tags exported beforehand, a CSV with columns ``image,tags`` or a folder of ``<image stem>.txt``
  files (what the released test script writes with ``--save_prompts``);
- ``ram`` / ``dape``: RAM or SeeSR's DAPE (srlab.models.tagging): cached by the tag stage, images not in
  the cache tagged on the fly.
Add a source by writing a class with ``__call__(name, lr) -> str`` and an entry in ``TAG_SOURCES``
(and ``TagKind`` in srlab.models.params).

Text encoding (tokenizers, text encoders): srlab.models.text.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

import torch

from srlab.models.params import ModelParams, PromptParams
from srlab.models.text import (  # noqa: F401  (re-exported: the model's text side)
    CONTEXT_LENGTH,
    SD2_SOURCE,
    HFClipTokenizer,
    OpenClipTokenizer,
    Tokenizer,
    encode_prompts,
    load_sd2_text,
    tiny_text_encoder,
)

Device = str | torch.device

# ---------------------------------------------------------------------------------------------
# Tag sources
# ---------------------------------------------------------------------------------------------


class TagSource(Protocol):
    """Image name (file name or stem) and its LR image (3, h, w) in [0, 1] -> comma-separated tags; no
    image (``lr`` None): a training sample, looked up by its id."""

    def __call__(self, name: str, lr: torch.Tensor | None = None) -> str: ...


class NoTags:
    """The ``none`` source: every image gets empty tags."""

    def __call__(self, name: str, lr: torch.Tensor | None = None) -> str:
        return ""


def released_tags(text: str) -> str:
    """The tags of a prompt file the released script writes with ``--save_prompts`` (script:245-249):
    ``f"{tags}, {prompt}," + added_prompt``. Tags are joined by ", ", so the first comma not followed by a
    space ends ``{tags}, {prompt}``; the prompt and added prompt are dropped (srlab appends the sampler
    settings' own). Other text, e.g. the training tag files' ``"tag1, tag2,"`` (make_tags.py:72-76), is
    returned as is (stripped)."""
    text = text.strip()
    cut = next((i for i, ch in enumerate(text) if ch == "," and text[i + 1 : i + 2] != " "), None)
    if cut is None:
        return text
    head, rest = text[:cut], text[cut + 1 :]
    if head.endswith(", ") or head == ",":  # an empty --prompt: "{tags}, ," + added
        return head[:-2].strip() if head.endswith(", ") else ""
    if not rest:  # "tag1, tag2,": a tag file, not a saved prompt
        return text
    tags, _, _prompt = head.rpartition(", ")
    return tags.strip()


class FileTags:
    """The ``file`` source: tags read once from a CSV (``image,tags``) or a folder of ``<stem>.txt``
    (plain tags, or the prompt files of the released script's ``--save_prompts``: ``released_tags``).

    Images are matched by file stem (``0001.png`` -> ``0001``). An image without tags is an error naming
    the image and the file (a silent empty prompt would change results unnoticed).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.tags = {p.stem: released_tags(p.read_text()) for p in sorted(self.path.glob("*.txt"))}
        elif self.path.is_file():
            self.tags = self._read_csv(self.path)
        else:
            raise FileNotFoundError(
                f"{self.path.resolve()}: tags file not found (model.prompts.tags_file: a CSV with columns "
                "image,tags or a folder of <image stem>.txt)"
            )

    @staticmethod
    def _read_csv(path: Path) -> dict[str, str]:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"image", "tags"} <= set(reader.fieldnames):
                raise ValueError(
                    f"{path}: expected a CSV header with columns image,tags, got {reader.fieldnames}"
                )
            tags: dict[str, str] = {}
            for row in reader:
                stem = Path(row["image"]).stem
                if stem in tags:
                    raise ValueError(f"{path}: image {row['image']!r} is listed twice")
                tags[stem] = (row["tags"] or "").strip()
        return tags

    def __call__(self, name: str, lr: torch.Tensor | None = None) -> str:
        stem = Path(name).stem
        if stem not in self.tags:
            raise KeyError(f"{self.path}: no tags for image {name!r} ({len(self.tags)} images listed)")
        return self.tags[stem]


Role = Literal["images", "train"]  # an image at inference, or a training sample by id


class PromptTags:
    """The model's tags when images and training samples have different sources: a call with an image
    (``lr``) asks ``images``, a call without (a training sample id) asks ``train``."""

    def __init__(self, train: TagSource, images: TagSource) -> None:
        self.train, self.images = train, images

    def __call__(self, name: str, lr: torch.Tensor | None = None) -> str:
        return (self.train if lr is None else self.images)(name, lr)


def _file_source(params: PromptParams, role: Role, model: ModelParams | None, device: Device) -> TagSource:
    if params.tags_file is None:
        raise ValueError("model.prompts.tags is 'file' but model.prompts.tags_file is null; give its path")
    return FileTags(params.tags_file)


def _tagger_source(kind: Literal["ram", "dape"]) -> Callable[..., TagSource]:
    def build(params: PromptParams, role: Role, model: ModelParams | None, device: Device) -> TagSource:
        from srlab.models import tagging  # RAM, timm: only when a tagger is configured

        if model is None:
            raise ValueError(
                f"model.prompts {kind!r} tags need the model params: build_tag_source(..., model)"
            )
        return tagging.TrainTags(model, kind) if role == "train" else tagging.ImageTags(model, kind, device)

    return build


TAG_SOURCES: dict[str, Callable[[PromptParams, Role, ModelParams | None, Device], TagSource]] = {
    "none": lambda params, role, model, device: NoTags(),
    "file": _file_source,
    "ram": _tagger_source("ram"),
    "dape": _tagger_source("dape"),
}


def build_tag_source(
    params: PromptParams, model: ModelParams | None = None, device: Device = "cpu"
) -> TagSource:
    """The tag source of ``params.tags`` for images and of ``params.train_tags`` for training samples
    (one source when both are the same ``none`` or ``file``). ``model``: needed by ``ram`` / ``dape``."""
    for key in ("tags", "train_tags"):
        if getattr(params, key) not in TAG_SOURCES:
            known = ", ".join(TAG_SOURCES)
            raise ValueError(f"model.prompts.{key} {getattr(params, key)!r} unknown; known: {known}")
    images = TAG_SOURCES[params.tags](params, "images", model, device)
    if params.train_tags == params.tags and params.tags in ("none", "file"):
        return images
    return PromptTags(TAG_SOURCES[params.train_tags](params, "train", model, device), images)
