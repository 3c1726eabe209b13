"""Strict loading of the official RAM / DAPE files into ``srlab.models.ram.Ram``.

Official files (facts and citations: ``docs/research/ram_dape.md``):

- ``ram_swin_large_14m.pth``: ``{'model': state_dict}`` of the whole official ``RAM`` module: the Swin
  encoder (with its persistent buffers ``relative_position_index`` / ``attn_mask``), ``image_proj``,
  ``tagging_head``, ``label_embed``, ``wordvec_proj``, ``fc``, and the Tag2Text parts ``tag_encoder`` and
  ``text_decoder`` that tagging never runs. The official loader renames ``vision_multi.*`` to
  ``tagging_head.*`` and drops the two Swin buffers; we accept the same alias.
- SeeSR ``DAPE.pth``: a flat dict of LoRA tensors only (every key contains ``lora_``), i.e. the
  ``lora_A``/``lora_B`` of every LoRA layer of the official ``RAMLora`` (Swin qkv, the query/key of every
  BERT attention of tagging_head, tag_encoder and text_decoder), applied on top of
  ``ram_swin_large_14m.pth``.

Every tensor name and shape in a file is compared with the layout expected from a weightless skeleton
built on the meta device, before any tensor data is read (files are opened with ``mmap``). Tensors that
tagging does not use (Tag2Text parts, Swin buffers that we rebuild) are still checked by name and shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from srlab.models.ram import LoraConfig, LoraLinear, Ram, RamConfig, TagVocabulary

Layout = dict[str, tuple[int, ...]]

WHERE_TO_GET = {
    "ram": "ram_swin_large_14m.pth from the RAM (14M) row of github.com/xinyu1205/recognize-anything README: "
    "https://huggingface.co/spaces/xinyu1205/Recognize_Anything-Tag2Text/blob/main/ram_swin_large_14m.pth",
    "dape": "DAPE.pth from the SeeSR README (github.com/cswry/SeeSR, 'Download the SeeSR and DAPE models'): "
    "Google Drive folder 12HXrRGEXUAnmHRaf0bIn-S8XSK4Ku0JO or the PolyU OneDrive link there",
    "tag_list": "ram/data/ram_tag_list.txt of github.com/xinyu1205/recognize-anything "
    "(same file in cswry/SeeSR)",
    "thresholds": "ram/data/ram_tag_list_threshold.txt of github.com/xinyu1205/recognize-anything "
    "(same file in cswry/SeeSR)",
}

#: Official name -> srlab name. Everything not matched keeps its name. Tested in tests/test_ram.py.
RENAMING: tuple[tuple[str, str], ...] = (
    # timm puts PatchMerging at the start of the next stage; the official Swin at the end of its stage.
    (r"^visual_encoder\.layers\.(\d+)\.downsample\.", "visual_encoder.layers.{i+1}.downsample."),
    # Alias handled by the official loader (ram/models/utils.py load_checkpoint_swinlarge).
    (r"^vision_multi\.", "tagging_head."),
    # DAPE only: LoRA of the tag_encoder layers whose weights the tagging head shares (tied weights).
    (
        r"^tag_encoder\.encoder\.layer\.(\d+)\.crossattention\.self\.(query|key)\.lora_(A|B)$",
        "tagging_head.encoder.layer.{l}.crossattention.self.{qk}.tied_lora_{AB}  (l < head_layers)",
    ),
)


class RamCheckpointError(ValueError):
    """A file's tensor names/shapes do not match the expected layout."""


class RamFileMissingError(FileNotFoundError):
    pass


def require_file(path: str | Path | None, what: str) -> Path:
    p = Path(path) if path is not None else None
    if p is None or not p.is_file():
        raise RamFileMissingError(f"{what} file not found: {p}. Get it: {WHERE_TO_GET[what]}")
    return p


# ---- name mapping -------------------------------------------------------------------------------------
def official_to_srlab(name: str, cfg: RamConfig, lora: bool = False) -> str | None:
    """srlab name of an official tensor, or None when the tensor is checked but not loaded."""
    if name.startswith("vision_multi."):
        name = "tagging_head." + name[len("vision_multi.") :]
    m = re.match(r"^visual_encoder\.layers\.(\d+)\.downsample\.(.*)$", name)
    if m:
        return f"visual_encoder.layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"
    if name.startswith("visual_encoder.") and (
        name.endswith(".relative_position_index") or name.endswith(".attn_mask")
    ):
        return None  # buffers, rebuilt identically (the official loader deletes them too)
    m = re.match(r"^tag_encoder\.encoder\.layer\.(\d+)\.crossattention\.self\.(query|key)\.lora_(A|B)$", name)
    if m and lora and int(m.group(1)) < cfg.head_layers:
        return (
            f"tagging_head.encoder.layer.{m.group(1)}.crossattention.self.{m.group(2)}.tied_lora_{m.group(3)}"
        )
    if name.startswith(("tag_encoder.", "text_decoder.")):
        return None  # Tag2Text parts, not used for tagging
    return name


def srlab_to_official(name: str) -> str:
    m = re.match(r"^visual_encoder\.layers\.(\d+)\.downsample\.(.*)$", name)
    if m:
        return f"visual_encoder.layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
    m = re.match(
        r"^tagging_head\.encoder\.layer\.(\d+)\.crossattention\.self\.(query|key)\.tied_lora_(A|B)$", name
    )
    if m:
        return f"tag_encoder.encoder.layer.{m.group(1)}.crossattention.self.{m.group(2)}.lora_{m.group(3)}"
    return name


# ---- expected layouts ---------------------------------------------------------------------------------
def build_skeleton(cfg: RamConfig, lora: LoraConfig | None = None) -> Ram:
    """Weightless model on the meta device."""
    with torch.device("meta"):
        return Ram(cfg, lora)


def _bert_layout(prefix: str, cfg: RamConfig, cross_width: int, lora_r: int | None) -> Layout:
    h, f, out = cfg.t2t_hidden, cfg.t2t_intermediate, {}
    emb = f"{prefix}embeddings."
    if lora_r is None:
        out |= {
            emb + "position_ids": (1, cfg.t2t_max_positions),
            emb + "word_embeddings.weight": (cfg.t2t_vocab, h),
            emb + "position_embeddings.weight": (cfg.t2t_max_positions, h),
            emb + "LayerNorm.weight": (h,),
            emb + "LayerNorm.bias": (h,),
        }
    for li in range(cfg.t2t_layers):
        p = f"{prefix}encoder.layer.{li}."
        for att, kv_in in (("attention", h), ("crossattention", cross_width)):
            ins = {"query": h, "key": kv_in, "value": kv_in}
            if lora_r is not None:
                for t in ("query", "key"):
                    out[f"{p}{att}.self.{t}.lora_A"] = (lora_r, ins[t])
                    out[f"{p}{att}.self.{t}.lora_B"] = (h, lora_r)
                continue
            for t, n_in in ins.items():
                out[f"{p}{att}.self.{t}.weight"] = (h, n_in)
                out[f"{p}{att}.self.{t}.bias"] = (h,)
            out |= {
                f"{p}{att}.output.dense.weight": (h, h),
                f"{p}{att}.output.dense.bias": (h,),
                f"{p}{att}.output.LayerNorm.weight": (h,),
                f"{p}{att}.output.LayerNorm.bias": (h,),
            }
        if lora_r is None:
            out |= {
                f"{p}intermediate.dense.weight": (f, h),
                f"{p}intermediate.dense.bias": (f,),
                f"{p}output.dense.weight": (h, f),
                f"{p}output.dense.bias": (h,),
                f"{p}output.LayerNorm.weight": (h,),
                f"{p}output.LayerNorm.bias": (h,),
            }
    return out


def tag2text_layout(cfg: RamConfig, lora_r: int | None = None) -> Layout:
    """Names/shapes of the official ``tag_encoder`` (BertModel, no pooler, cross-attention input width 512)
    and ``text_decoder`` (BertLMHeadModel, cross-attention input width = med_config encoder_width);
    the LoRA tensors of both instead when ``lora_r`` is given."""
    out = _bert_layout("tag_encoder.", cfg, cfg.embed_width, lora_r)
    out |= _bert_layout("text_decoder.bert.", cfg, cfg.t2t_decoder_cross_width, lora_r)
    if lora_r is None:
        h, v = cfg.t2t_hidden, cfg.t2t_vocab
        pre = "text_decoder.cls.predictions."
        out |= {
            pre + "bias": (v,),
            pre + "transform.dense.weight": (h, h),
            pre + "transform.dense.bias": (h,),
            pre + "transform.LayerNorm.weight": (h,),
            pre + "transform.LayerNorm.bias": (h,),
            pre + "decoder.weight": (v, h),
            pre + "decoder.bias": (v,),
        }
    return out


def _swin_buffer_layout(skeleton: Ram) -> Layout:
    out: Layout = {}
    for name, buf in skeleton.visual_encoder.named_buffers():
        if name.endswith("relative_position_index") or name.endswith("attn_mask"):
            out["visual_encoder." + name] = tuple(buf.shape)
    return out


def ram_file_layout(cfg: RamConfig) -> Layout:
    """Every tensor name/shape expected in ``ram_swin_large_14m.pth['model']`` (official names)."""
    sk = build_skeleton(cfg)
    out = {srlab_to_official(k): tuple(v.shape) for k, v in sk.state_dict().items()}
    out |= _swin_buffer_layout(sk)
    out |= tag2text_layout(cfg)
    return out


def dape_file_layout(cfg: RamConfig, lora: LoraConfig | None = None) -> Layout:
    """Every tensor name/shape expected in SeeSR's ``DAPE.pth`` (LoRA only, official names)."""
    lora = lora or LoraConfig()
    sk = build_skeleton(cfg, lora)
    out = {
        srlab_to_official(k): tuple(v.shape)
        for k, v in sk.state_dict().items()
        if ".lora_" in k or ".tied_lora_" in k
    }
    out |= tag2text_layout(cfg, lora_r=lora.rank)
    return out


# ---- checks and loading ---------------------------------------------------------------------------------
def _open(path: Path) -> Mapping[str, object]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def check_layout(found: Mapping[str, torch.Tensor], expected: Layout, path: Path, what: str) -> None:
    names = {
        ("tagging_head." + k[len("vision_multi.") :]) if k.startswith("vision_multi.") else k: k
        for k in found
    }
    missing = sorted(set(expected) - set(names))
    unexpected = sorted(names[k] for k in set(names) - set(expected))
    misshapen = sorted(
        f"{names[k]}: file {tuple(found[names[k]].shape)} vs expected {expected[k]}"
        for k in set(names) & set(expected)
        if tuple(found[names[k]].shape) != expected[k]
    )
    if missing or unexpected or misshapen:
        lines = [f"{what} file {path} does not have the expected layout:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)):
            if items:
                lines.append(
                    f"  {title} ({len(items)}): "
                    + ", ".join(items[:50])
                    + (" ..." if len(items) > 50 else "")
                )
        raise RamCheckpointError("\n".join(lines))


def read_ram_file(path: str | Path, cfg: RamConfig) -> dict[str, torch.Tensor]:
    p = require_file(path, "ram")
    ckpt = _open(p)
    if not isinstance(ckpt, Mapping) or "model" not in ckpt or not isinstance(ckpt["model"], Mapping):
        raise RamCheckpointError(f"ram file {p}: expected a dict {{'model': state_dict}} (official layout)")
    sd = dict(ckpt["model"])
    check_layout(sd, ram_file_layout(cfg), p, "ram")
    return sd


def read_dape_file(path: str | Path, cfg: RamConfig, lora: LoraConfig) -> dict[str, torch.Tensor]:
    p = require_file(path, "dape")
    sd = _open(p)
    if not isinstance(sd, Mapping) or any(not isinstance(v, torch.Tensor) for v in sd.values()):
        raise RamCheckpointError(f"dape file {p}: expected a flat dict of LoRA tensors (official layout)")
    sd = dict(sd)
    check_layout(sd, dape_file_layout(cfg, lora), p, "dape")
    return sd


def _to_srlab(sd: Mapping[str, torch.Tensor], cfg: RamConfig, lora: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        name = official_to_srlab(k, cfg, lora=lora)
        if name is not None:
            out[name] = v
    return out


def load_ram(
    ram_path: str | Path,
    cfg: RamConfig | None = None,
    *,
    dape_path: str | Path | None = None,
    lora: LoraConfig | None = None,
    tag_list: str | Path | None = None,
    thresholds: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Ram:
    """RAM from ``ram_swin_large_14m.pth`` (or DAPE when ``dape_path``: SeeSR's ``ram(pretrained=...,
    pretrained_condition=DAPE.pth)`` followed by ``eval()``). Both files are checked before loading;
    the final ``load_state_dict`` is strict. ``tag_list``/``thresholds``: local text files (the tag list
    is required for tag strings; without a thresholds file every class uses ``cfg.default_threshold``)."""
    cfg = cfg or RamConfig.paper()
    if dape_path is not None:
        lora = lora or LoraConfig()
    vocab = (
        TagVocabulary.from_files(tag_list, thresholds, cfg.default_threshold)
        if tag_list is not None
        else None
    )
    if vocab is None and thresholds is not None:
        raise ValueError("thresholds given without tag_list")
    sd = _to_srlab(read_ram_file(ram_path, cfg), cfg, lora=False)
    if lora is not None:
        if dape_path is None:
            raise ValueError("a LoRA model needs dape_path")
        sd |= _to_srlab(read_dape_file(dape_path, cfg, lora), cfg, lora=True)
    model = Ram(cfg, lora)
    model.load_state_dict(sd, strict=True)
    if vocab is not None:
        model.set_vocabulary(vocab)
    return model.to(device).eval()


def load_dape(ram_path: str | Path, dape_path: str | Path, cfg: RamConfig | None = None, **kw) -> Ram:
    return load_ram(ram_path, cfg, dape_path=dape_path, **kw)


def official_state_dicts(
    model: Ram, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(ram file ``model`` dict, DAPE dict) in the official names/layout for ``model``'s weights; tensors the
    model does not hold (Tag2Text parts, Swin buffers) are filled deterministically. Used to write
    official-format test files and to export."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    ram_sd: dict[str, torch.Tensor] = {}
    for name, shape in ram_file_layout(cfg).items():
        mine = official_to_srlab(name, cfg)
        if mine is not None and mine in sd:
            ram_sd[name] = sd[mine].detach().clone()
        else:
            ram_sd[name] = torch.randn(shape, generator=g)
    # Official state dicts store the tied tag_encoder layers with the tagging head's values.
    for name in list(ram_sd):
        m = re.match(
            r"^tag_encoder\.encoder\.layer\.(\d+)\.(crossattention|intermediate|output)\.(.*)$", name
        )
        if m and int(m.group(1)) < cfg.head_layers and not name.endswith(".position_ids"):
            twin = f"tagging_head.encoder.layer.{m.group(1)}.{m.group(2)}.{m.group(3)}"
            if twin in ram_sd and ram_sd[twin].shape == ram_sd[name].shape:
                ram_sd[name] = ram_sd[twin].clone()
    dape_sd: dict[str, torch.Tensor] = {}
    if model.lora is not None:
        for name, shape in dape_file_layout(cfg, model.lora).items():
            mine = official_to_srlab(name, cfg, lora=True)
            dape_sd[name] = sd[mine].detach().clone() if mine in sd else torch.zeros(shape)
    return ram_sd, dape_sd


def lora_modules(model: Ram) -> dict[str, LoraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLinear)}
