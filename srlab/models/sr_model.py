"""The model as the authors built it: SD2 base + an LR ControlNet + SAM2 semantic blocks (paper 3, Eq. 4).

One entry point, ``build_sr_model(params, device) -> SRModel``, holds every part the trainer and the
sampler need; ``trainable_parameters``, ``save_checkpoint`` and ``load_checkpoint`` complete the API.

Parts, and where their weights come from (size ``paper`` | ``tiny``):
- VAE, text encoder + tokenizer, UNet, noise scheduler: the local SD2-base diffusers folder | small
  configs of the same classes with random weights, or (``sd2_path`` set) the tiny prior that the train
  stage writes in the same layout (no tokenizer/: open_clip's BPE tokenizer is used).
- ControlNet: ``ControlNetModel.from_unet`` (weights copied from the UNet, zero output convolutions);
  its conditioning image is the LR image upsampled to the output size, RGB in [0, 1] (released code).
- Semantic blocks (``srlab.models.semantic``) in the UNet's down/mid/up and the ControlNet's down/mid blocks;
  the ControlNet's start as copies of the UNet's (as SeeSR's ``from_unet``).
- c_sem extractor (SAM2.1 hiera-t from its official checkpoint | a small random Hiera) and tag source.
- The authors' ``checkpoint-90000`` (``unet/`` + ``controlnet/``, diffusers ``save_pretrained`` output
  of SeeSR's classes) loads over the UNet and ControlNet, replacing their initialisation.

Trainable (paper and SeeSR): the whole ControlNet and the UNet's semantic blocks; everything else has
``requires_grad=False``. Model facts (prediction type, VAE scaling factor and downscale factor) are read
from the parts' configs, never assumed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModel

from srlab.io import atomic_dir
from srlab.models.params import ModelParams, SemanticParams
from srlab.models.prompts import (
    SD2_SOURCE,
    OpenClipTokenizer,
    TagSource,
    Tokenizer,
    build_tag_source,
    encode_prompts,
    load_sd2_text,
    tiny_text_encoder,
)
from srlab.models.semantic import (
    C_SEM,
    SEMANTIC_ATTR,
    CheckpointMismatchError,
    SemanticExtractor,
    add_semantic_blocks,
    build_extractor,
    require_same_tensors,
    semantic_modules,
    shapes,
)
from srlab.models.tiny import (  # noqa: F401  (re-exported: the tiny parts of the model)
    PRIOR_DIR,
    TINY_SCHEDULER,
    prior_model_dir,
    tiny_unet_config,
    tiny_vae,
)

# A trained weights folder (the train stage's output): the tiny profile's SD2 stand-in and the SR weights.
FINAL_DIR = "final"  # unet/, controlnet/ in the authors' layout

# Where the paper-size weights come from (nothing can be downloaded at run time).
SOURCES = {
    "sd2": SD2_SOURCE
    + ", e.g. `huggingface-cli download stabilityai/stable-diffusion-2-base --local-dir DIR`",
    "checkpoint": "the authors' checkpoint-90000 (unet/ and controlnet/), linked from the README of "
    "github.com/Moonsofang/NTIRE-2025-SRlab",
    "seesr": "SeeSR's released weights (the folder with unet/ and controlnet/ that SeeSR's README links as "
    "preset/models/seesr, github.com/cswry/SeeSR)",
}
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")  # diffusers' names
SD2_FILES = {  # subfolder -> required files; a tuple lists alternatives
    "vae": ("config.json", WEIGHTS),
    "unet": ("config.json", WEIGHTS),
    "text_encoder": ("config.json", ("model.safetensors", "pytorch_model.bin")),
    "tokenizer": ("vocab.json", "merges.txt"),
    "scheduler": ("scheduler_config.json",),
}
# Config keys that change the function of a UNet/ControlNet: a checkpoint must agree on those it has.
ARCH_KEYS = (
    *("in_channels", "out_channels", "conditioning_channels", "block_out_channels", "layers_per_block"),
    *("down_block_types", "up_block_types", "mid_block_type", "transformer_layers_per_block"),
    *("attention_head_dim", "num_attention_heads", "cross_attention_dim", "use_linear_projection"),
    *("only_cross_attention", "upcast_attention", "norm_num_groups", "norm_eps", "act_fn"),
    *("flip_sin_to_cos", "freq_shift", "resnet_time_scale_shift"),
    *("conditioning_embedding_out_channels", "controlnet_conditioning_channel_order"),
)


@dataclass
class SRModel:
    """Every part of the SR model, built by ``build_sr_model`` (all modules in eval mode: a trainer
    calls ``controlnet.train()`` and ``unet.train()`` itself).

    ``unet`` and ``controlnet`` are diffusers models with semantic blocks; call them (or ``predict``)
    with ``cross_attention_kwargs={"c_sem": c_sem}`` (see ``srlab.models.semantic``).
    """

    params: ModelParams
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    controlnet: ControlNetModel
    text_encoder: CLIPTextModel
    tokenizer: Tokenizer
    scheduler: DDPMScheduler  # training noise schedule; a sampler builds its own from ``scheduler.config``
    semantic: SemanticExtractor
    tags: TagSource

    @property
    def vae_scale_factor(self) -> int:
        """Image side / latent side (8 for SD2)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts -> text embeddings (N, 77, cross_attention_dim)."""
        return encode_prompts(self.tokenizer, self.text_encoder, prompts)

    def semantic_tokens(self, lr: torch.Tensor, antialias: bool = True) -> torch.Tensor | None:
        """LR image (B, 3, h, w) in [0, 1] -> c_sem (B, tokens, width), or None for the ``none`` extractor.

        Compute once per image; reuse it for every denoising step. ``antialias=False`` resizes to the
        extractor's input size as the released code did (torchvision 0.15 tensor ``Resize``)."""
        return self.semantic(lr, antialias=antialias)

    def predict(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        lr_image: torch.Tensor,
        c_sem: torch.Tensor | None,
        conditioning_scale: float = 1.0,
    ) -> torch.Tensor:
        """One evaluation of the denoiser; see the module-level ``predict``."""
        args = (noisy_latents, timesteps, prompt_embeds, lr_image, c_sem, conditioning_scale)
        return predict(self.unet, self.controlnet, *args)


def predict(
    unet: nn.Module,
    controlnet: nn.Module,
    noisy_latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    lr_image: torch.Tensor,
    c_sem: torch.Tensor | None,
    conditioning_scale: float = 1.0,
) -> torch.Tensor:
    """ControlNet on the LR image, then the UNet with its residuals: the model output of Eq. 4.

    A module-level function so a trainer can pass the (DDP/accelerate-wrapped) modules it trains.
    - noisy_latents (B, C, h, w); timesteps (B,) or scalar; prompt_embeds (B, 77, D);
    - lr_image (B, 3, h * f, w * f), RGB in [0, 1], the LR image upsampled to the output size
      (f = the VAE factor, 8 for SD2); c_sem (B or 1, T, width), or None to skip the semantic blocks.
    Returns (B, C, h, w): noise for ``scheduler.config.prediction_type == "epsilon"`` (SD2 base).
    """
    config = getattr(controlnet, "module", controlnet).config
    factor = 2 ** (len(config.conditioning_embedding_out_channels) - 1)
    expected = (noisy_latents.shape[-2] * factor, noisy_latents.shape[-1] * factor)
    if lr_image.ndim != 4 or lr_image.shape[1] != 3 or tuple(lr_image.shape[-2:]) != expected:
        raise ValueError(
            f"lr_image must be (B, 3, {expected[0]}, {expected[1]}) for latents {tuple(noisy_latents.shape)} "
            f"(the LR image upsampled to the output size), got {tuple(lr_image.shape)}"
        )
    extra = {C_SEM: c_sem}
    down, mid = controlnet(
        noisy_latents,
        timesteps,
        encoder_hidden_states=prompt_embeds,
        controlnet_cond=lr_image,
        conditioning_scale=conditioning_scale,
        cross_attention_kwargs=extra,
        return_dict=False,
    )
    return unet(
        noisy_latents,
        timesteps,
        encoder_hidden_states=prompt_embeds,
        cross_attention_kwargs=extra,
        down_block_additional_residuals=down,
        mid_block_additional_residual=mid,
        return_dict=False,
    )[0]


def trainable_parameters(model: SRModel) -> list[nn.Parameter]:
    """The parameters the paper trains: the whole ControlNet, then the UNet's semantic blocks.

    With the ``none`` extractor the semantic blocks never run, so they are frozen and left out (an
    optimizer or DDP would otherwise hold parameters that never get a gradient)."""
    unet_semantic = [p for m in semantic_modules(model.unet) for p in m.parameters()]
    return [p for p in (*model.controlnet.parameters(), *unet_semantic) if p.requires_grad]


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def build_sr_model(
    params: ModelParams, device: str | torch.device = "cpu", generator: torch.Generator | None = None
) -> SRModel:
    """Build the whole model from ``params`` (fp32, on ``device``; trainable parts set by the paper).

    Every file is checked (and a checkpoint's tensor names and shapes against a weightless skeleton)
    before anything heavy is loaded. Random initialisation (tiny parts, semantic blocks, the ControlNet's
    conditioning embedding) draws from ``generator`` (default: seeded with 0), never from the caller's
    global RNG state.
    """
    # 1. Check params and files
    check_model_params(params)
    check_model_files(params)
    # 2. Configs, and the checkpoint against a skeleton on the meta device (no allocation)
    unet_config = _unet_config(params)
    denoiser_args = (params.controlnet_cond_channels, params.semantic)
    if params.checkpoint is not None:
        with torch.device("meta"):
            skeleton = build_denoisers(UNet2DConditionModel.from_config(unet_config), *denoiser_args)
        check_checkpoint(params.checkpoint, *skeleton)
    # 3. Build (random parts drawn from the generator)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    with _seeded(generator):
        if params.sd2_path is not None:  # SD2 base, or the tiny profile's trained prior
            prior = Path(params.sd2_path)
            vae = AutoencoderKL.from_pretrained(str(prior / "vae"))
            tokenizer, text_encoder = load_sd2_text(prior)
            scheduler = DDPMScheduler.from_pretrained(str(prior / "scheduler"))
            unet = UNet2DConditionModel.from_pretrained(str(prior / "unet"))
        else:
            vae = tiny_vae(params.tiny)
            tokenizer, text_encoder = OpenClipTokenizer(), tiny_text_encoder(params.tiny)
            scheduler = DDPMScheduler(**TINY_SCHEDULER)
            unet = UNet2DConditionModel.from_config(unet_config)
        unet, controlnet = build_denoisers(unet, *denoiser_args)
        semantic = build_extractor(params.semantic, device, params)
    tags = build_tag_source(params.prompts, params, device)
    model = SRModel(params, vae, unet, controlnet, text_encoder, tokenizer, scheduler, semantic, tags)
    # 4. The authors' (or our) trained weights
    if params.checkpoint is not None:
        load_checkpoint(model, params.checkpoint)
    # 5. Freeze what the paper freezes, move to the device
    for module in (vae, text_encoder, unet):
        module.requires_grad_(False).eval().to(device)
    controlnet.requires_grad_(True).eval().to(device)
    uses_semantics = params.semantic.extractor != "none"
    for module in (*semantic_modules(unet), *semantic_modules(controlnet)):
        module.requires_grad_(uses_semantics)
    return model


def build_denoisers(
    unet: UNet2DConditionModel, cond_channels: Sequence[int], semantic: SemanticParams
) -> tuple[UNet2DConditionModel, ControlNetModel]:
    """A plain UNet -> (the UNet with semantic blocks, a ControlNet made from it with the same blocks).

    ``cond_channels``: the ControlNet's LR conditioning embedding (``model.controlnet_cond_channels``).
    Works under ``torch.device("meta")`` (paper-size shape and FLOP checks without memory)."""
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(cond_channels))
    add_semantic_blocks(unet, semantic.width, semantic.block, semantic.init)
    add_semantic_blocks(controlnet, semantic.width, semantic.block, semantic.init)
    for mine, source in zip(semantic_modules(controlnet), semantic_modules(unet), strict=False):  # down + mid
        mine.load_state_dict(source.state_dict())
    return unet, controlnet


def _unet_config(params: ModelParams) -> dict[str, Any]:
    if params.sd2_path is None:
        return tiny_unet_config(params.tiny)
    return plain_config(_read_json(Path(params.sd2_path) / "unet" / "config.json"))


def plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A UNet/ControlNet config without the semantic-block flags (``add_semantic_blocks`` sets them)."""
    return {k: v for k, v in config.items() if k not in ("use_image_cross_attention", "srlab_semantic_block")}


@contextmanager
def _seeded(generator: torch.Generator) -> Iterator[None]:
    """Module constructors draw from torch's global CPU generator: fork it, seed it from ``generator``,
    and restore the caller's state afterwards."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def check_model_params(params: ModelParams) -> None:
    """Cross-field checks that a dataclass field cannot express; errors name the key and the fix."""
    tiny, factor_channels = params.tiny, len(params.controlnet_cond_channels)
    if params.size == "paper" and params.sd2_path is None:
        raise ValueError(
            f"model.sd2_path is null but model.size is paper; give the local folder of {SD2_SOURCE}"
        )
    if params.sd2_path is None:  # random tiny parts
        if len(tiny.unet_heads) != len(tiny.unet_channels):
            raise ValueError(
                f"model.tiny.unet_heads {tiny.unet_heads} needs one entry per unet_channels level"
            )
        bad = [c for c in (*tiny.unet_channels, *tiny.vae_channels) if c % tiny.norm_groups]
        if bad:
            raise ValueError(
                f"model.tiny: channels {bad} are not divisible by norm_groups = {tiny.norm_groups}"
            )
        if factor_channels != len(tiny.vae_channels):
            raise ValueError(
                f"model.controlnet_cond_channels has {factor_channels} entries (downscale "
                f"{2 ** (factor_channels - 1)}) but the VAE downscales by "
                f"{2 ** (len(tiny.vae_channels) - 1)}; give {len(tiny.vae_channels)} entries"
            )
    vae_config = Path(str(params.sd2_path)) / "vae" / "config.json"
    if params.sd2_path is not None and vae_config.is_file():  # (check_model_files reports a missing one)
        levels = len(_read_json(vae_config)["block_out_channels"])
        if levels != factor_channels:
            raise ValueError(
                f"model.controlnet_cond_channels needs {levels} entries to match SD2's VAE factor"
            )


def check_model_files(params: ModelParams) -> None:
    """Every file the build reads exists, or one error lists each missing path and where to get it."""
    problems: list[str] = []

    def need(folder: Path, names: Sequence[str | tuple[str, ...]], source: str) -> None:
        for name in names:
            options = (name,) if isinstance(name, str) else name
            if not any((folder / o).is_file() for o in options):
                problems.append(f"{(folder / options[0]).resolve()} (from {source})")

    if params.sd2_path is not None:  # the tiny prior (written by the train stage) has no tokenizer/
        source = SOURCES["sd2"] if params.size == "paper" else "the train stage's tiny prior"
        for sub, names in SD2_FILES.items():
            if params.size == "paper" or sub != "tokenizer":
                need(Path(params.sd2_path) / sub, names, source)
    if params.checkpoint is not None:
        for sub in ("unet", "controlnet"):
            need(Path(params.checkpoint) / sub, ("config.json", WEIGHTS), SOURCES["checkpoint"])
    sam2 = params.semantic.sam2_checkpoint
    if params.semantic.extractor == "sam2" and sam2 is not None and not Path(sam2).is_file():
        problems.append(f"{Path(sam2).resolve()} (from Hugging Face facebook/sam2.1-hiera-tiny)")
    tags, uses_file = params.prompts.tags_file, "file" in (params.prompts.tags, params.prompts.train_tags)
    if uses_file and tags is not None and not Path(tags).exists():
        problems.append(f"{Path(tags).resolve()} (model.prompts.tags_file: tags exported with RAM)")
    if problems:
        raise FileNotFoundError("model files missing:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------
# Checkpoints in the authors' layout: <folder>/{unet,controlnet}/{config.json, weights}
# ---------------------------------------------------------------------------------------------


def save_checkpoint(
    model: SRModel, folder: str | os.PathLike[str], provenance: Mapping[str, Any] | None = None
) -> Path:
    """Write the UNet and ControlNet as diffusers ``save_pretrained`` does (config.json with
    ``use_image_cross_attention: true`` + safetensors), atomically; the authors' loader reads it as is.

    ``provenance`` (params, git commit, ...) goes to ``srlab_provenance.json`` beside them."""
    with atomic_dir(folder) as tmp:
        model.unet.save_pretrained(tmp / "unet", safe_serialization=True)
        model.controlnet.save_pretrained(tmp / "controlnet", safe_serialization=True)
        if provenance is not None:
            (tmp / "srlab_provenance.json").write_text(json.dumps(provenance, indent=2, default=str))
    return Path(folder)


def load_checkpoint(model: SRModel, folder: str | os.PathLike[str]) -> None:
    """Load ``folder``'s unet/ and controlnet/ strictly (names, shapes and architecture config checked for
    both before either is touched). Replaces the semantic blocks' initialisation."""
    files = check_checkpoint(folder, model.unet, model.controlnet)
    for net, path in zip((model.unet, model.controlnet), files, strict=True):
        net.load_state_dict(_read_state(path), strict=True)


def load_seesr_init(model: SRModel, folder: str | os.PathLike[str]) -> None:
    """Start the SR phase from SeeSR's released weights, as the authors' script did
    (train_seesr_sam.py:671-688): the whole ControlNet, and of the UNet only its semantic blocks
    (``*.image_attentions.*``); the UNet's other weights stay SD2's. Both files are checked name by name,
    shape by shape and on their architecture config first (``check_checkpoint``)."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{Path(folder).resolve()}: train.init_from not found ({SOURCES['seesr']})")
    unet_file, controlnet_file = check_checkpoint(folder, model.unet, model.controlnet)
    blocks = {k: v for k, v in _read_state(unet_file).items() if f".{SEMANTIC_ATTR}." in k}
    missing, unexpected = model.unet.load_state_dict(blocks, strict=False)
    wanted = {k for k in model.unet.state_dict() if f".{SEMANTIC_ATTR}." in k}
    if unexpected or wanted & set(missing):
        raise CheckpointMismatchError(f"{unet_file}: semantic blocks do not match the UNet's")
    model.controlnet.load_state_dict(_read_state(controlnet_file), strict=True)


def check_checkpoint(folder: str | os.PathLike[str], unet: nn.Module, controlnet: nn.Module) -> list[Path]:
    """Check ``folder`` against the models; return the two weight files. Raises FileNotFoundError or
    CheckpointMismatchError (listing missing, unexpected and misshapen tensors, or config differences)."""
    files = []
    for sub, net in (("unet", unet), ("controlnet", controlnet)):
        part = Path(folder) / sub
        config_path = part / "config.json"
        weights = next((part / w for w in WEIGHTS if (part / w).is_file()), None)
        if not config_path.is_file() or weights is None:
            raise FileNotFoundError(
                f"{part.resolve()}: expected config.json and one of {', '.join(WEIGHTS)} "
                f"({SOURCES['checkpoint']})"
            )
        _check_config(_read_json(config_path), dict(net.config), config_path)
        fix = "Is it a checkpoint of this model size and semantic block kind (model.semantic.block)?"
        require_same_tensors(shapes(net.state_dict()), _file_shapes(weights), str(weights), fix)
        files.append(weights)
    return files


def _check_config(saved: Mapping[str, Any], ours: Mapping[str, Any], path: Path) -> None:
    if not saved.get("use_image_cross_attention", False):
        raise CheckpointMismatchError(
            f"{path}: lacks `use_image_cross_attention: true`; "
            "not a SeeSR-layout checkpoint with semantic blocks"
        )
    kind = lambda c: c.get("srlab_semantic_block", "full")  # noqa: E731
    norm = lambda v: json.loads(json.dumps(v))  # noqa: E731  (tuples -> lists)
    diffs = [
        f"{k}: file {saved[k]!r} vs model {ours[k]!r}"
        for k in ARCH_KEYS
        if k in saved and k in ours and norm(saved[k]) != norm(ours[k])
    ]
    if kind(saved) != kind(ours):
        diffs.append(f"semantic block: file {kind(saved)!r} vs model {kind(ours)!r} (model.semantic.block)")
    if diffs:
        raise CheckpointMismatchError(f"{path}: architecture differs from the model: {'; '.join(diffs)}")


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    return shapes(_read_state(path))


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _read_json(path: Path) -> dict[str, Any]:
    with Path(path).open() as f:
        return json.load(f)
