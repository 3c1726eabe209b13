"""RAM (Recognize Anything, Swin-L) and SeeSR's DAPE: the image tagger behind the text prompt c of Eq. 4.

Facts (with citations) are in ``docs/research/ram_dape.md``; no code of the released repositories is
copied here. Summary of what this module rebuilds:

- Image encoder: Swin-L at 384 px (embed 192, depths 2/2/18/2, heads 6/12/24/48, window 12), built from
  timm's ``SwinTransformer`` (same parameter names as the official Swin except where PatchMerging sits,
  see ``ram_checkpoint.RENAMING``). Its final-norm tokens (12x12 = 144 at 384 px, width 1536) get their
  mean prepended as token 0, then ``image_proj`` maps 1536 -> 512: RAM's image embeddings, shape
  (B, 1 + (S/32)^2, 512) = (B, 145, 512) at paper size. SeeSR feeds exactly these as c_sem
  (``generate_image_embeds``); they are what ``extractor: dape`` returns (srlab.models.tagging).
- Tag-recognition head (Query2Label-style): 2 BERT layers of width 768 whose self-attention was deleted;
  each layer is cross-attention (4 heads, queries = the 4585 label embeddings, keys/values = the 145 image
  tokens of width 512) + feed-forward 3072, post-LayerNorm (eps 1e-12). Label queries are
  ``relu(wordvec_proj(label_embed))``; ``fc`` (768 -> 1) gives one logit per class.
  transformers' ``BertLayer`` does not map: its cross-attention key/value take ``hidden_size`` inputs
  (here 512 != 768) and it always runs the self-attention the official head deleted, so the head is a
  minimal own module with the official parameter names.
- Tags: class ``i`` is on when ``sigmoid(logit_i) > threshold_i`` (strict), thresholds per class from
  ``ram_tag_list_threshold.txt`` (default 0.68); the on tags are joined with ``", "`` in tag-list index
  order (SeeSR's DAPE). The original RAM joins with ``" | "`` (``separator=``).
- DAPE = this model + LoRA (loralib, r=8, alpha=1, scaling 1/8): every Swin ``attn.qkv`` gets LoRA on
  the q and v thirds (``MergedLinear``, enable [True, False, True]); every BERT ``query`` and ``key``
  gets LoRA. In eval mode loralib merges ``W += scaling * B @ A``. Because the official tagging head's
  weights are tied to the lowest layers of the (unused) Tag2Text ``tag_encoder``, the merge adds that
  encoder's LoRA delta to the same shared weights too; we reproduce it with a second ("tied") LoRA pair.

Loading (names/shapes checked on a meta-device skeleton before any data is read) lives in
``srlab.models.ram_checkpoint``: ``load_ram(...)`` / ``load_dape(...)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class RamConfig:
    """Sizes of RAM. ``paper()`` = ram_swin_large_14m (configs/swin/config_swinL_384.json, q2l_config.json,
    med_config.json, code constants 512 / patch 4 / mlp 4); ``tiny()`` for tests."""

    image_size: int = 384
    patch_size: int = 4
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    mlp_ratio: float = 4.0
    embed_width: int = 512  # image_proj output = label_embed width = head cross-attention encoder_width
    head_hidden: int = 768
    head_layers: int = 2
    head_heads: int = 4
    head_intermediate: int = 3072
    head_layer_norm_eps: float = 1e-12
    num_classes: int = 4585
    default_threshold: float = 0.68
    # The Tag2Text parts stored in the official file but unused for tagging (med_config.json); only their
    # names and shapes are checked.
    t2t_layers: int = 12
    t2t_heads: int = 12
    t2t_hidden: int = 768
    t2t_intermediate: int = 3072
    t2t_vocab: int = 30524  # bert-base-uncased 30522 + [DEC] + [ENC]
    t2t_max_positions: int = 512
    t2t_decoder_cross_width: int = 768  # med_config.json encoder_width (text_decoder cross-attention input)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def paper(cls) -> RamConfig:
        return cls()

    @classmethod
    def tiny(cls, num_classes: int = 10) -> RamConfig:
        return cls(
            image_size=32,
            embed_dim=16,
            depths=(1, 1, 2, 1),
            num_heads=(1, 2, 2, 4),
            window_size=2,
            embed_width=24,
            head_hidden=32,
            head_layers=1,
            head_heads=2,
            head_intermediate=64,
            num_classes=num_classes,
            t2t_layers=2,
            t2t_heads=2,
            t2t_hidden=32,
            t2t_intermediate=64,
            t2t_vocab=50,
            t2t_max_positions=16,
            t2t_decoder_cross_width=32,
        )

    @property
    def vision_width(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def num_image_tokens(self) -> int:
        """1 mean token + (image_size / (patch * 2^(stages-1)))^2 spatial tokens (145 at paper size)."""
        side = self.image_size // (self.patch_size * 2 ** (len(self.depths) - 1))
        return 1 + side * side

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads):
            raise ValueError("depths and num_heads must have the same length")
        if self.head_hidden % self.head_heads:
            raise ValueError("head_hidden must be divisible by head_heads")
        if self.head_layers > self.t2t_layers:
            raise ValueError("the tagging head is tied to the lowest head_layers layers of tag_encoder")


@dataclass(frozen=True)
class LoraConfig:
    """SeeSR's DAPE LoRA (loralib defaults lora_alpha=1, dropout 0): r=8 everywhere."""

    rank: int = 8
    alpha: float = 1.0
    swin_qkv_enable: tuple[bool, bool, bool] = (True, False, True)  # q, k, v thirds of attn.qkv
    bert_targets: tuple[str, ...] = ("query", "key")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class LoraLinear(nn.Linear):
    """``nn.Linear`` plus loralib-layout LoRA: ``lora_A`` (r * groups_on, in), ``lora_B``
    (out / groups * groups_on, r). The effective weight is ``W + scaling * delta`` where, for each enabled
    output group g (in order), rows of group g get ``B_g @ A_g`` (B_g, A_g = g-th chunks). With
    ``tied=True`` a second pair ``tied_lora_A/B`` of the same shapes is added on top (see module doc)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        scaling: float,
        enable: Sequence[bool] = (True,),
        tied: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if out_features % len(enable) or not any(enable):
            raise ValueError("enable must divide out_features and enable at least one group")
        self.rank, self.scaling, self.enable = rank, scaling, tuple(bool(e) for e in enable)
        n_on = sum(self.enable)
        a_shape = (rank * n_on, in_features)
        b_shape = (out_features // len(enable) * n_on, rank)
        self.lora_A = nn.Parameter(torch.zeros(a_shape))
        self.lora_B = nn.Parameter(torch.zeros(b_shape))
        if tied:
            self.tied_lora_A = nn.Parameter(torch.zeros(a_shape))
            self.tied_lora_B = nn.Parameter(torch.zeros(b_shape))

    def _delta(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        group = self.out_features // len(self.enable)
        parts, k = [], 0
        for on in self.enable:
            if on:
                parts.append(b[k * group : (k + 1) * group] @ a[k * self.rank : (k + 1) * self.rank])
                k += 1
            else:
                parts.append(a.new_zeros(group, self.in_features))
        return torch.cat(parts, 0)

    def delta_weight(self) -> torch.Tensor:
        delta = self._delta(self.lora_A, self.lora_B)
        if hasattr(self, "tied_lora_A"):
            delta = delta + self._delta(self.tied_lora_A, self.tied_lora_B)
        return self.scaling * delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight + self.delta_weight(), self.bias)


class _CrossSelf(nn.Module):
    def __init__(self, cfg: RamConfig, lora: LoraConfig | None) -> None:
        super().__init__()
        h, w = cfg.head_hidden, cfg.embed_width
        self.heads = cfg.head_heads

        def lin(n_in: int, name: str) -> nn.Linear:
            if lora is not None and name in lora.bert_targets:
                return LoraLinear(n_in, h, lora.rank, lora.scaling, tied=True)
            return nn.Linear(n_in, h)

        self.query, self.key, self.value = lin(h, "query"), lin(w, "key"), lin(w, "value")

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        d = h // self.heads
        q = self.query(x).view(b, n, self.heads, d).transpose(1, 2)
        k = self.key(enc).view(b, enc.shape[1], self.heads, d).transpose(1, 2)
        v = self.value(enc).view(b, enc.shape[1], self.heads, d).transpose(1, 2)
        # All image tokens are attended (official mask is all ones -> additive 0).
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        return (attn @ v).transpose(1, 2).reshape(b, n, h)


class _DenseNorm(nn.Module):
    def __init__(self, n_in: int, n_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        self.LayerNorm = nn.LayerNorm(n_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _CrossAttention(nn.Module):
    def __init__(self, cfg: RamConfig, lora: LoraConfig | None) -> None:
        super().__init__()
        self.self = _CrossSelf(cfg, lora)
        self.output = _DenseNorm(cfg.head_hidden, cfg.head_hidden, cfg.head_layer_norm_eps)

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, enc), x)


class _Intermediate(nn.Module):
    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.head_hidden, cfg.head_intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # transformers ACT2FN["gelu"] = exact (erf) GELU


class TaggingLayer(nn.Module):
    """One official tagging-head layer in ``mode='tagging'``: cross-attention, then feed-forward."""

    def __init__(self, cfg: RamConfig, lora: LoraConfig | None) -> None:
        super().__init__()
        self.crossattention = _CrossAttention(cfg, lora)
        self.intermediate = _Intermediate(cfg)
        self.output = _DenseNorm(cfg.head_intermediate, cfg.head_hidden, cfg.head_layer_norm_eps)

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        a = self.crossattention(x, enc)
        return self.output(self.intermediate(a), a)


class _Encoder(nn.Module):
    def __init__(self, cfg: RamConfig, lora: LoraConfig | None) -> None:
        super().__init__()
        self.layer = nn.ModuleList(TaggingLayer(cfg, lora) for _ in range(cfg.head_layers))


class TaggingHead(nn.Module):
    def __init__(self, cfg: RamConfig, lora: LoraConfig | None) -> None:
        super().__init__()
        self.encoder = _Encoder(cfg, lora)

    def forward(self, queries: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        x = queries
        for layer in self.encoder.layer:
            x = layer(x, image_embeds)
        return x


def _build_swin(cfg: RamConfig, lora: LoraConfig | None) -> nn.Module:
    from timm.models.swin_transformer import SwinTransformer

    swin = SwinTransformer(
        img_size=cfg.image_size,
        patch_size=cfg.patch_size,
        in_chans=3,
        embed_dim=cfg.embed_dim,
        depths=cfg.depths,
        num_heads=cfg.num_heads,
        window_size=cfg.window_size,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=True,
        drop_path_rate=0.0,  # inference; the official 0.1 only matters in training
        num_classes=0,
        global_pool="",
    )
    if lora is not None:
        for stage in swin.layers:
            for blk in stage.blocks:
                old = blk.attn.qkv
                with torch.device(old.weight.device):
                    blk.attn.qkv = LoraLinear(
                        old.in_features, old.out_features, lora.rank, lora.scaling, lora.swin_qkv_enable
                    )
    return swin


@dataclass
class TagVocabulary:
    """The tag list (one tag per line, ``ram_tag_list.txt``) and per-class thresholds."""

    tags: list[str]
    thresholds: list[float] = field(default_factory=list)

    @classmethod
    def from_files(
        cls, tag_list: str | Path, thresholds: str | Path | None = None, default: float = 0.68
    ) -> TagVocabulary:
        from srlab.models.ram_checkpoint import require_file

        tags = require_file(tag_list, "tag_list").read_text(encoding="utf-8").splitlines()
        thr = (
            parse_thresholds(require_file(thresholds, "thresholds"), len(tags), default)
            if thresholds
            else None
        )
        return cls(tags, thr if thr is not None else [default] * len(tags))


def parse_thresholds(path: str | Path, num_classes: int, default: float = 0.68) -> list[float]:
    """Official semantics: start from ``default`` for every class, then line i (one float, surrounding
    whitespace stripped) sets class i. Fewer lines leave the rest at the default; more lines than classes
    or a line that is not a float is an error (naming the line)."""
    out = [float(default)] * num_classes
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if len(lines) > num_classes:
        raise ValueError(f"{path}: {len(lines)} thresholds for {num_classes} classes")
    for i, line in enumerate(lines):
        try:
            out[i] = float(line.strip())
        except ValueError as err:
            raise ValueError(f"{path}:{i + 1}: not a threshold: {line!r}") from err
    return out


class Ram(nn.Module):
    """RAM tagger (``lora=None``) or DAPE (``lora=LoraConfig()``). State-dict names are the official ones
    except the documented renamings in ``ram_checkpoint.RENAMING``."""

    def __init__(self, cfg: RamConfig, lora: LoraConfig | None = None) -> None:
        super().__init__()
        self.cfg, self.lora = cfg, lora
        self.visual_encoder = _build_swin(cfg, lora)
        self.image_proj = nn.Linear(cfg.vision_width, cfg.embed_width)
        self.tagging_head = TaggingHead(cfg, lora)
        self.label_embed = nn.Parameter(torch.zeros(cfg.num_classes, cfg.embed_width))
        self.wordvec_proj: nn.Module = (
            nn.Linear(cfg.embed_width, cfg.head_hidden)
            if cfg.head_hidden != cfg.embed_width
            else nn.Identity()
        )
        self.fc = nn.Linear(cfg.head_hidden, 1)
        self.register_buffer(
            "class_threshold", torch.full((cfg.num_classes,), float(cfg.default_threshold)), persistent=False
        )
        self.tag_list: list[str] = [f"tag{i}" for i in range(cfg.num_classes)]

    # ---- vocabulary -------------------------------------------------------------------------------
    def set_vocabulary(self, vocab: TagVocabulary) -> None:
        if len(vocab.tags) != self.cfg.num_classes or len(vocab.thresholds) != self.cfg.num_classes:
            raise ValueError(
                f"vocabulary has {len(vocab.tags)} tags / {len(vocab.thresholds)} thresholds, "
                f"model has {self.cfg.num_classes} classes"
            )
        self.tag_list = list(vocab.tags)
        self.class_threshold = torch.tensor(
            vocab.thresholds, dtype=torch.float32, device=self.fc.weight.device
        )

    # ---- forward pieces ---------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor, antialias: bool = False) -> torch.Tensor:
        """[0, 1] RGB (B, 3, H, W) -> bilinear resize to image_size x image_size, ImageNet-normalised.
        SeeSR applies torchvision ``Resize((384, 384))`` to a tensor; under its pinned torchvision 0.15 that
        means bilinear without antialias (``antialias=False`` here; newer torchvision defaults to True)."""
        s = self.cfg.image_size
        x = images.float()
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=antialias)
        mean = torch.tensor(self.cfg.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        """RAM image embeddings of preprocessed images: (B, 1 + (S/32)^2, embed_width) = (B, 145, 512) at
        paper size; token 0 is the mean of the Swin tokens, then the tokens in row-major order."""
        feats = self.visual_encoder.forward_features(images)  # (B, h, w, C), final norm applied
        tokens = feats.flatten(1, 2)
        x = torch.cat([tokens.mean(1, keepdim=True), tokens], 1)
        return self.image_proj(x)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Per-class logits (B, num_classes) of preprocessed images."""
        emb = self.image_embeds(images)
        queries = F.relu(self.wordvec_proj(self.label_embed)).unsqueeze(0).expand(emb.shape[0], -1, -1)
        return self.fc(self.tagging_head(queries, emb)).squeeze(-1)

    def tag_mask(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(images)) > self.class_threshold.to(images.device)

    @torch.no_grad()
    def generate_tags(
        self, images: torch.Tensor, preprocess: bool = True, separator: str = ", "
    ) -> list[str]:
        """Tags above their class threshold, in tag-list index order, joined by ``separator`` (DAPE: ", ")."""
        x = self.preprocess(images) if preprocess else images
        mask = self.tag_mask(x).cpu()
        return [separator.join(self.tag_list[i] for i in row.nonzero().flatten().tolist()) for row in mask]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
