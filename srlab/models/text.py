"""The text side of the prompt c: tokenizers and text encoders (SD2's, or the tiny profile's).

Paper size: SD2's ``CLIPTokenizer`` + ``CLIPTextModel`` (OpenCLIP ViT-H/14, hidden size 1024) from the
local SD2 folder; the embeddings are the last hidden state (B, 77, 1024), as diffusers' SD pipelines use.
Tiny size: a small random ``CLIPTextModel`` of the same class, and open_clip's BPE tokenizer for ViT-H-14
(shipped inside the package, so it works offline; same vocabulary and 77-token padding as SD2's
tokenizer). Apart from the tag sources (srlab.models.prompts) so the prior stage, which encodes only the
empty prompt, does not depend on them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from transformers import CLIPTextConfig, CLIPTextModel

from srlab.models.tiny import TinySizes

CONTEXT_LENGTH = 77  # CLIP's token context (SD2 and open_clip)
SD2_SOURCE = "Hugging Face stabilityai/stable-diffusion-2-base (diffusers layout)"


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
