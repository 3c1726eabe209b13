"""Schema of params.yaml `model`: the SR model's parts, semantic blocks, tag prompts, tiny sizes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema
from srlab.models.tiny import TinySizes

# none: empty tags | file: tags_file | ram: RAM (Swin-L) | dape: SeeSR's DAPE (RAM + LoRA)
TagKind = Literal["none", "file", "ram", "dape"]


@schema
class SemanticParams:
    """The semantic guidance: which extractor makes c_sem, and the semantic blocks that read it."""

    # sam2 (the paper) | none: no c_sem, the semantic blocks are skipped | dape: RAM's image embeddings
    # (SeeSR's c_sem, Table 5's other row); dape reads its weight files from model.prompts
    extractor: Literal["sam2", "none", "dape"]
    tokens: Annotated[
        int, Field(ge=1, le=65536)
    ]  # c_sem tokens (sam2 only): the SAM2 map average-pooled to sqrt(tokens)^2; dape: RAM's 145
    block: Literal["full", "cross_only"]  # full: a whole transformer block (released code)
    init: Literal["zero", "random"]  # zero: proj_out zeroed, a pretrained UNet is unchanged at step 0
    width: Annotated[
        int, Field(ge=1, le=8192)
    ]  # c_sem channels (released code: SAM2's 256 duplicated to 512)
    sam2_config: str  # config inside the sam2 package
    sam2_checkpoint: str | None  # official {"model": state_dict} file; null = random weights
    sam2_overrides: tuple[str, ...]  # hydra overrides on sam2_config (tiny: a small Hiera)


@schema
class PromptParams:
    """The tag prompt c of Eq. 4 (the released code prompts with RAM tags of the LR image)."""

    tags: TagKind  # eval sets, validation and `srlab upscale`: the LR image's tags (release: dape)
    train_tags: TagKind  # training samples: the HR crop's tags (the authors: ram), by sample id
    tags_file: str | None  # file: CSV with columns image,tags or a folder of <image stem>.txt
    tags_dir: str | None  # the tag stage's cache; set by train/infer from their build folder; null: none
    ram_checkpoint: str | None  # ram_swin_large_14m.pth; null (tiny only): a random tiny tagger
    dape_checkpoint: str | None  # SeeSR's DAPE.pth (LoRA over ram_checkpoint)
    tag_list: str | None  # ram_tag_list.txt (one tag per line); needed with ram_checkpoint
    tag_thresholds: str | None  # ram_tag_list_threshold.txt; null: 0.68 for every class


@schema
class SemanticWidth:
    width: Annotated[int, Field(ge=1, le=8192)]  # as SemanticParams.width


@schema
class TaggerModel:
    """The keys of ``model`` the tag stage reads (srlab.models.tagging takes it or a whole ModelParams):
    the size, the semantic width (the tiny tagger's embedding width) and the prompts."""

    size: Literal["tiny", "paper"]
    semantic: SemanticWidth
    prompts: PromptParams


@schema
class ModelParams:
    """The model (issue 10): SD2 + LR ControlNet + SAM2 semantic blocks, or its tiny twin."""

    size: Literal["tiny", "paper"]  # paper: SD2-base + sam2.1 hiera-t; tiny: TinySizes, random init
    sd2_path: str | None  # diffusers folder: SD2-base (paper) or the tiny prior; null = random tiny parts
    checkpoint: str | None  # folder with unet/ and controlnet/ in the authors' layout, loaded last
    controlnet_cond_channels: tuple[int, ...]  # LR conditioning embedding; 2^(len - 1) = VAE factor
    semantic: SemanticParams
    prompts: PromptParams
    tiny: TinySizes
