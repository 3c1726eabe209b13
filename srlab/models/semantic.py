"""Semantic guidance (paper 3.3, Eq. 6): the tokens c_sem and the semantic blocks that attend to them.

What the released code does (Moonsofang/NTIRE-2025-SRlab, built on SeeSR; read for facts):
- c_sem: the LR image in [0, 1] is resized to 1024x1024 (torchvision ``Resize``, bilinear), normalised
  with ImageNet mean/std and run through the SAM2.1 hiera-t image encoder (trunk + FPN neck). The
  lowest-resolution kept level (64x64 = 4096 tokens of 256 channels) plus the model's ``no_mem_embed``
  is taken, and its 256 channels are concatenated with themselves to 512. The duplication carries no
  information; we keep it because the released semantic blocks have key/value projections of input
  width 512 (compatibility with their weights).
- Semantic blocks: after every text-attention ``Transformer2DModel`` ``attentions[i]`` of each
  cross-attention down, mid and up block (UNet) and down and mid block (ControlNet) sits a second
  ``Transformer2DModel`` ``image_attentions[i]`` with the same heads, width and linear projections
  (self-attention, cross-attention, feed-forward) whose cross-attention reads c_sem (key/value input
  width 512). Order inside a block: resnet -> text attention -> semantic block.

How we build it on diffusers without forking its block files: each cross-attention block gets an
``image_attentions`` ``nn.ModuleList`` (so state-dict names match the authors' layout as they are), and
each text attention gets two hooks that run its semantic twin on its output.

c_sem reaches the blocks per call through diffusers' own channel, ``cross_attention_kwargs``:
``unet(..., cross_attention_kwargs={"c_sem": c_sem})``. Why: no state lives between calls (thread-safe,
re-entrant, survives gradient checkpointing re-computation and ``copy.deepcopy``), and DDP/accelerate
wrappers pass it through. The pre-hook takes ``c_sem`` out of the dict before diffusers' attention
processors see it (they would warn about an unknown key at every layer). ``{"c_sem": None}`` skips the
semantic blocks (the ``none`` extractor); a missing key raises, so training can never silently run
without semantics.

Tensor contract: c_sem is float, shape (B, T, width): T tokens (4096 = 64x64 in the paper; the ``dape``
extractor of Table 5, srlab.models.tagging: RAM's 145), width channels (512); batch 1 broadcasts over
the model batch (e.g. both halves of classifier-free guidance).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_2d import Transformer2DModel, Transformer2DModelOutput
from torch import nn

from srlab.models.params import ModelParams, SemanticParams

C_SEM = "c_sem"  # the cross_attention_kwargs key
SEMANTIC_ATTR = "image_attentions"  # the authors' name: state-dict keys *.image_attentions.N.*
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # SAM2's preprocessing (and the released code's sam_transforms)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAM2_SOURCE = (
    "download sam2.1_hiera_tiny.pt from Hugging Face facebook/sam2.1-hiera-tiny (or the sam2 README's "
    "checkpoint links) and set model.semantic.sam2_checkpoint to its path"
)


class CheckpointMismatchError(ValueError):
    """A weights file does not hold exactly the tensors (names and shapes) the model has."""


def require_same_tensors(
    model: Mapping[str, Sequence[int]], file: Mapping[str, Sequence[int]], source: str, fix: str
) -> None:
    """Raise ``CheckpointMismatchError`` listing missing, unexpected and misshapen tensors.

    ``model`` and ``file`` map tensor name -> shape. Nothing is loaded half-way: callers check first.
    """
    missing = sorted(set(model) - set(file))
    unexpected = sorted(set(file) - set(model))
    misshapen = sorted(k for k in set(model) & set(file) if tuple(model[k]) != tuple(file[k]))
    if not (missing or unexpected or misshapen):
        return

    def listing(names: list[str], fmt: Callable[[str], str] = str) -> str:
        shown = ", ".join(fmt(n) for n in names[:8])
        return shown + (f", ... and {len(names) - 8} more" if len(names) > 8 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({listing(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({listing(unexpected)})")
    if misshapen:
        shape = lambda k: f"{k}: file {tuple(file[k])} vs model {tuple(model[k])}"  # noqa: E731
        parts.append(f"{len(misshapen)} misshapen ({listing(misshapen, shape)})")
    raise CheckpointMismatchError(f"{source}: does not match the model: {'; '.join(parts)}. {fix}")


def shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


# ---------------------------------------------------------------------------------------------
# Semantic blocks in the UNet and the ControlNet
# ---------------------------------------------------------------------------------------------


class CrossOnlySemanticBlock(nn.Module):
    """The light variant (``semantic.block: cross_only``): GroupNorm, proj_in, LayerNorm + cross-attention
    to c_sem, proj_out, residual. It drops the full block's self-attention and feed-forward, whose cost
    grows with the latent size. Sub-module names are those of the full block, so its state-dict keys are
    a subset of the authors' layout.

    Contract: hidden (B, C, H, W), c_sem (B, T, width) -> (B, C, H, W) (as a 1-tuple, like diffusers).
    """

    def __init__(
        self, channels: int, heads: int, head_dim: int, width: int, norm_groups: int, upcast_attention: bool
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)  # as Transformer2DModel
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [_CrossAttentionOnly(inner, heads, head_dim, width, upcast_attention)]
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cross_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = False,
        **_: Any,
    ) -> tuple[torch.Tensor]:
        batch, channels, height, width = hidden_states.shape
        x = (
            self.norm(hidden_states).permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        )  # (B, HW, C)
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, encoder_hidden_states, cross_attention_kwargs or {})
        x = self.proj_out(x).reshape(batch, height, width, channels).permute(0, 3, 1, 2)  # (B, C, H, W)
        return (x.contiguous() + hidden_states,)


class _CrossAttentionOnly(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, width: int, upcast_attention: bool) -> None:
        super().__init__()
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)  # as BasicTransformerBlock (norm_eps 1e-5)
        self.attn2 = Attention(
            query_dim=dim,
            cross_attention_dim=width,
            heads=heads,
            dim_head=head_dim,
            bias=False,
            upcast_attention=upcast_attention,
            out_bias=True,
        )

    def forward(self, x: torch.Tensor, c_sem: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        return self.attn2(self.norm2(x), encoder_hidden_states=c_sem, **kwargs) + x


def semantic_block_like(
    text_attention: Transformer2DModel, width: int, kind: Literal["full", "cross_only"]
) -> nn.Module:
    """A semantic block shaped like ``text_attention`` (same heads, width, norms) reading c_sem."""
    cfg = {k: v for k, v in text_attention.config.items() if not k.startswith("_")}
    if kind == "full":
        return Transformer2DModel.from_config({**cfg, "cross_attention_dim": width})
    if kind == "cross_only":
        return CrossOnlySemanticBlock(
            channels=cfg["in_channels"],
            heads=cfg["num_attention_heads"],
            head_dim=cfg["attention_head_dim"],
            width=width,
            norm_groups=cfg["norm_num_groups"],
            upcast_attention=cfg["upcast_attention"],
        )
    raise ValueError(f"semantic block kind {kind!r} unknown; use 'full' or 'cross_only'")


class _CSemCarrier(dict):
    """The text attention's cross_attention_kwargs without c_sem, carrying it as an attribute.

    diffusers copies the dict (``dict.copy`` gives a plain dict) before it reaches the attention
    processors, so c_sem never gets there; the post-hook reads it back from this object.
    """

    c_sem: torch.Tensor | None


class _SemanticTwin:
    """Hooks on ``block.attentions[index]`` that run ``block.image_attentions[index]`` on its output."""

    def __init__(self, block: nn.Module, index: int) -> None:
        self.block = block
        self.index = index

    def before(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        extra = kwargs.get("cross_attention_kwargs") or {}
        if isinstance(extra, _CSemCarrier):  # already split (a re-entrant call)
            return args, kwargs
        if C_SEM not in extra:
            raise ValueError(
                "this model has semantic blocks and needs c_sem: call it with "
                "cross_attention_kwargs={'c_sem': tokens} (tokens (B, T, width) from the extractor), "
                "or {'c_sem': None} to skip the semantic blocks (the `none` extractor)"
            )
        carrier = _CSemCarrier((k, v) for k, v in extra.items() if k != C_SEM)
        carrier.c_sem = extra[C_SEM]
        return args, {**kwargs, "cross_attention_kwargs": carrier}

    def after(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        carrier = kwargs["cross_attention_kwargs"]
        c_sem = carrier.c_sem
        if c_sem is None:
            return output
        hidden = output[0] if isinstance(output, tuple) else output.sample
        c_sem = _match_batch(c_sem, hidden)
        semantic = getattr(self.block, SEMANTIC_ATTR)[self.index]
        out = semantic(
            hidden,
            encoder_hidden_states=c_sem,
            attention_mask=kwargs.get("attention_mask"),
            cross_attention_kwargs=dict(carrier) or None,
            return_dict=False,
        )[0]
        return (out, *output[1:]) if isinstance(output, tuple) else Transformer2DModelOutput(sample=out)


def _match_batch(c_sem: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    if c_sem.ndim != 3:
        raise ValueError(f"c_sem must have shape (B, T, width), got {tuple(c_sem.shape)}")
    if c_sem.shape[0] not in (1, hidden.shape[0]):
        raise ValueError(
            f"c_sem batch {c_sem.shape[0]} does not match the model batch {hidden.shape[0]}; pass one c_sem "
            "per sample (repeat it for classifier-free guidance) or a batch of 1 to share it"
        )
    return c_sem.to(hidden.dtype).expand(hidden.shape[0], -1, -1)


def _cross_attention_blocks(model: nn.Module) -> Iterator[nn.Module]:
    """The down, mid and up blocks with text attentions (UNet2DConditionModel or ControlNetModel)."""
    blocks = [*model.down_blocks, model.mid_block, *getattr(model, "up_blocks", [])]
    yield from (b for b in blocks if b is not None and getattr(b, "has_cross_attention", False))


def add_semantic_blocks(
    model: nn.Module, width: int, kind: Literal["full", "cross_only"], init: Literal["zero", "random"]
) -> None:
    """Give every cross-attention block of ``model`` its ``image_attentions`` and hook them in.

    ``init``: ``random`` keeps torch's default initialisation (as SeeSR); ``zero`` also zeroes each
    block's ``proj_out``, so the block starts as the identity and a pretrained UNet's output is unchanged
    at step 0 (training starts from the prior instead of from noise injected into every level).
    Random draws come from torch's global generator: ``srlab.models.sr_model`` calls this in a seeded fork.
    The config records ``use_image_cross_attention: true`` (the authors' flag; ``cross_only`` also
    records ``srlab_semantic_block``), so ``save_pretrained`` writes the authors' layout.
    """
    if semantic_modules(model):
        raise ValueError(f"{type(model).__name__} already has semantic blocks")
    for block in _cross_attention_blocks(model):
        param = next(block.attentions[0].parameters())
        with torch.device(param.device):  # build in place (meta stays meta: no allocation)
            twins = nn.ModuleList(semantic_block_like(a, width, kind) for a in block.attentions)
        setattr(block, SEMANTIC_ATTR, twins.to(param.dtype))
        for i, attention in enumerate(block.attentions):
            twin = _SemanticTwin(block, i)
            attention.register_forward_pre_hook(twin.before, with_kwargs=True)
            attention.register_forward_hook(twin.after, with_kwargs=True)
    if init == "zero":
        for module in semantic_modules(model):
            nn.init.zeros_(module.proj_out.weight)
            nn.init.zeros_(module.proj_out.bias)
    model.register_to_config(use_image_cross_attention=True)
    if kind != "full":
        model.register_to_config(srlab_semantic_block=kind)


def semantic_modules(model: nn.Module) -> list[nn.Module]:
    """The semantic blocks of ``model`` in state-dict order (empty if it has none)."""
    return [m for b in _cross_attention_blocks(model) for m in getattr(b, SEMANTIC_ATTR, [])]


# ---------------------------------------------------------------------------------------------
# Extractors: LR image -> c_sem
# ---------------------------------------------------------------------------------------------


class SemanticExtractor(Protocol):
    """LR image (B, 3, h, w) float in [0, 1], any size -> c_sem (B, tokens, width), or None (no semantics)."""

    tokens: int
    width: int

    def __call__(self, lr: torch.Tensor, antialias: bool = True) -> torch.Tensor | None: ...


def check_lr_batch(lr: torch.Tensor) -> None:
    """What every extractor takes: a (B, 3, h, w) batch in [0, 1] (a small float tolerance)."""
    if lr.ndim != 4 or lr.shape[1] != 3:
        raise ValueError(f"LR image must have shape (B, 3, h, w), got {tuple(lr.shape)}")
    if lr.min() < -1e-3 or lr.max() > 1 + 1e-3:
        raise ValueError(f"LR image must be in [0, 1], got [{lr.min():.3f}, {lr.max():.3f}]")


class Sam2Extractor(nn.Module):
    """c_sem from a frozen SAM2 image encoder, as the released inference computes it (module docstring).

    Computed once per image and reused over all denoising steps. Beyond the paper, ``tokens`` below the
    native map (64x64 at 1024 px) average-pools the map to sqrt(tokens) x sqrt(tokens) (after adding
    ``no_mem_embed``; both are linear, so the order does not matter).
    """

    def __init__(self, sam: nn.Module, tokens: int, width: int) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder  # the memory/mask parts of SAM2 are not needed
        self.register_buffer("no_mem_embed", sam.no_mem_embed.detach().clone())  # (1, 1, C)
        self.add_no_mem_embed = bool(sam.directly_add_no_mem_embed)
        self.image_size = int(sam.image_size)
        self.native_side = self.image_size // int(sam.backbone_stride)
        channels = int(self.no_mem_embed.shape[-1])
        side = math.isqrt(tokens)
        if side * side != tokens or side > self.native_side or self.native_side % side:
            raise ValueError(
                f"model.semantic.tokens = {tokens}: SAM2 at {self.image_size} px gives a "
                f"{self.native_side}x{self.native_side} map; use a square side**2 whose side divides "
                f"{self.native_side} (e.g. {self.native_side**2}, {(self.native_side // 2) ** 2}, "
                f"{(self.native_side // 4) ** 2})"
            )
        if width % channels:
            raise ValueError(
                f"model.semantic.width = {width} must be a multiple of SAM2's {channels} channels "
                f"(the released code duplicates 256 to 512)"
            )
        self.tokens, self.width, self.side = tokens, width, side
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, lr: torch.Tensor, antialias: bool = True) -> torch.Tensor:
        check_lr_batch(lr)
        dtype = self.no_mem_embed.dtype
        # bilinear as Resize; the released code's torchvision 0.15 did not antialias tensors
        x = TF.resize(lr.to(dtype), [self.image_size, self.image_size], antialias=antialias)
        x = TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        level = self.image_encoder(x)["backbone_fpn"][-1]  # (B, C, s, s): the 64x64 level at 1024 px
        if self.add_no_mem_embed:
            level = level + self.no_mem_embed.reshape(1, -1, 1, 1)
        if self.side < level.shape[-1]:
            level = F.avg_pool2d(level, level.shape[-1] // self.side)  # (B, C, side, side)
        tokens = level.flatten(2).transpose(1, 2)  # (B, side*side, C)
        return torch.cat([tokens] * (self.width // tokens.shape[-1]), dim=-1)  # (B, T, width)


class NoSemantics:
    """The ``none`` extractor (ablation): no c_sem, so the semantic blocks are skipped."""

    def __init__(self, tokens: int, width: int) -> None:
        self.tokens, self.width = tokens, width

    def __call__(self, lr: torch.Tensor, antialias: bool = True) -> None:
        return None


def load_sam2(
    config: str, checkpoint: str | None, overrides: Sequence[str] = (), device: str | torch.device = "cpu"
) -> nn.Module:
    """SAM2 built by sam2's own builder from ``config`` (+ hydra ``overrides``), weights loaded strictly.

    ``checkpoint`` is the official file ``{"model": state_dict}`` of the whole SAM2 model (None: random
    weights). Missing or mismatched files fail before the model is built or loaded. Frozen, eval mode.
    """
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{Path(checkpoint).resolve()}: SAM2 checkpoint not found; {SAM2_SOURCE}")
    from sam2.build_sam import build_sam2  # imports hydra; only when needed

    try:
        sam = build_sam2(
            config,
            None,
            device="cpu",
            mode="eval",
            hydra_overrides_extra=list(overrides),
            apply_postprocessing=False,
        )
    except Exception as err:  # hydra's errors do not say which setting was wrong
        raise ValueError(
            f"model.semantic.sam2_config {config!r} with overrides {list(overrides)} does not build a SAM2 "
            f"model ({type(err).__name__}: {err})"
        ) from err
    if checkpoint is not None:
        raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), Mapping):
            raise CheckpointMismatchError(
                f"{checkpoint}: expected the official format {{'model': state_dict}}"
            )
        require_same_tensors(
            shapes(sam.state_dict()),
            shapes(raw["model"]),
            str(checkpoint),
            f"Is it the checkpoint of {config}? {SAM2_SOURCE}",
        )
        sam.load_state_dict(raw["model"], strict=True)
    return sam.requires_grad_(False).eval().to(device)


def _build_sam2(
    params: SemanticParams, device: str | torch.device, model: ModelParams | None
) -> Sam2Extractor:
    sam = load_sam2(params.sam2_config, params.sam2_checkpoint, params.sam2_overrides, device)
    return Sam2Extractor(sam, params.tokens, params.width)


def _build_none(params: SemanticParams, device: str | torch.device, model: ModelParams | None) -> NoSemantics:
    return NoSemantics(params.tokens, params.width)


def _build_dape(params: SemanticParams, device: str | torch.device, model: ModelParams | None) -> nn.Module:
    from srlab.models import tagging  # RAM, timm: only for this extractor

    if model is None:
        raise ValueError("model.semantic.extractor dape reads its weights from model.prompts: pass model=")
    return tagging.build_dape_extractor(dataclasses.replace(model, semantic=params), device)


# name -> builder (semantic params, device, the whole model params: dape's weights are in model.prompts)
EXTRACTORS: dict[
    str, Callable[[SemanticParams, str | torch.device, ModelParams | None], SemanticExtractor]
] = {
    "sam2": _build_sam2,
    "none": _build_none,
    "dape": _build_dape,
}


def build_extractor(
    params: SemanticParams, device: str | torch.device = "cpu", model: ModelParams | None = None
) -> SemanticExtractor:
    """The extractor named by ``params.extractor`` (frozen, eval, on ``device``); ``dape`` needs ``model``."""
    if params.extractor not in EXTRACTORS:
        raise ValueError(
            f"model.semantic.extractor {params.extractor!r} unknown; known: {', '.join(EXTRACTORS)}"
        )
    return EXTRACTORS[params.extractor](params, device, model)
