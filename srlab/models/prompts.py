"""The text prompt c of Eq. 4: where an LR image's tags come from, and how text becomes embeddings.

Tags. The released code prompts with the RAM (or DAPE) tags of the LR image, e.g. "sky, tree, house",
followed by the user's prompt. RAM/DAPE are not packaged here (their weights cannot be fetched offline
and their code is outside the pinned environment), so tag sources form a small registry:
- ``none``: empty tags (the offline default; the paper also trains with 50% empty prompts);
- ``file``: tags exported beforehand (e.g. with the authors' RAM), a CSV with columns ``image,tags`` or
  a folder of ``<image stem>.txt`` files (what the released test script writes with ``--save_prompts``).
Add a source by writing a class with ``__call__(name, lr) -> str`` and an entry in ``TAG_SOURCES``
(and ``PromptParams.tags``).

Text encoding. Paper size: SD2's ``CLIPTokenizer`` + ``CLIPTextModel`` (OpenCLIP ViT-H/14, hidden size
1024) from the local SD2 folder; the embeddings are the last hidden state (B, 77, 1024), as diffusers'
SD pipelines use. Tiny size: a small random ``CLIPTextModel`` of the same class, and open_clip's BPE
tokenizer for ViT-H-14 (shipped inside the package, so it works offline; same vocabulary and 77-token
padding as SD2's tokenizer).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch
from transformers import CLIPTextConfig, CLIPTextModel

from srlab.models.params import PromptParams, TinySizes

CONTEXT_LENGTH = 77  # CLIP's token context (SD2 and open_clip)
SD2_SOURCE = "Hugging Face stabilityai/stable-diffusion-2-base (diffusers layout)"


# ---------------------------------------------------------------------------------------------
# Tag sources
# ---------------------------------------------------------------------------------------------


class TagSource(Protocol):
    """Image name (file name or stem) and its LR image (3, h, w) in [0, 1] -> comma-separated tags."""

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


def _file_source(params: PromptParams) -> TagSource:
    if params.tags_file is None:
        raise ValueError("model.prompts.tags is 'file' but model.prompts.tags_file is null; give its path")
    return FileTags(params.tags_file)


TAG_SOURCES: dict[str, Callable[[PromptParams], TagSource]] = {
    "none": lambda params: NoTags(),
    "file": _file_source,
}


def build_tag_source(params: PromptParams) -> TagSource:
    """The tag source named by ``params.tags``."""
    if params.tags not in TAG_SOURCES:
        raise ValueError(f"model.prompts.tags {params.tags!r} unknown; known: {', '.join(TAG_SOURCES)}")
    return TAG_SOURCES[params.tags](params)


# ---------------------------------------------------------------------------------------------
# Tokenizers and text encoders
# ---------------------------------------------------------------------------------------------


class Tokenizer(Protocol):
    """Prompts -> token ids (N, 77) int64, padded/truncated to CLIP's context."""

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor: ...


class OpenClipTokenizer:
    """open_clip's BPE tokenizer of ViT-H-14 (SD2's text tower), shipped with the package: no download."""

    def __init__(self) -> None:
        import open_clip

        self._tokenize = open_clip.get_tokenizer("ViT-H-14", context_length=CONTEXT_LENGTH)

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        return self._tokenize(list(prompts)).long()  # (N, 77)


class HFClipTokenizer:
    """SD2's ``CLIPTokenizer`` (from the local SD2 folder) with the padding SD pipelines use."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from transformers import CLIPTokenizer

        self._tokenizer = CLIPTokenizer.from_pretrained(str(folder))

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        out = self._tokenizer(
            list(prompts),
            padding="max_length",
            max_length=CONTEXT_LENGTH,
            truncation=True,
            return_tensors="pt",
        )
        return out.input_ids  # (N, 77)


def tiny_text_encoder(sizes: TinySizes) -> CLIPTextModel:
    """A small random ``CLIPTextModel`` with CLIP's vocabulary (49408) and context (77)."""
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=sizes.text_width,
        intermediate_size=4 * sizes.text_width,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads,
        max_position_embeddings=CONTEXT_LENGTH,
        hidden_act="gelu",
        projection_dim=sizes.text_width,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=0,
    )
    return CLIPTextModel(config)


def load_sd2_text(sd2_path: str | os.PathLike[str]) -> tuple[Tokenizer, CLIPTextModel]:
    """Tokenizer and text encoder from a local diffusers folder: SD2's (tokenizer/, text_encoder/), or
    the tiny prior's, which has no tokenizer/ and uses open_clip's (same vocabulary and padding)."""
    folder = Path(sd2_path)
    if not (folder / "text_encoder").is_dir():
        raise FileNotFoundError(f"{(folder / 'text_encoder').resolve()}: not found; download {SD2_SOURCE}")
    tokenizer = (
        HFClipTokenizer(folder / "tokenizer") if (folder / "tokenizer").is_dir() else OpenClipTokenizer()
    )
    return tokenizer, CLIPTextModel.from_pretrained(str(folder / "text_encoder"))


def encode_prompts(tokenizer: Tokenizer, text_encoder: CLIPTextModel, prompts: Sequence[str]) -> torch.Tensor:
    """Prompts -> text embeddings (N, 77, hidden): the last hidden state, on the encoder's device."""
    ids = tokenizer(prompts).to(text_encoder.device)
    return text_encoder(ids)[0]
