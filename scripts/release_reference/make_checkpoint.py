"""Build a random, seeded TINY SR model with srlab's own code and save it in the authors' formats.

Run with srlab's interpreter:  /work/main/.venv/bin/python /tmp/release_ref/make_checkpoint.py [--out DIR]

Writes (default DIR = /tmp/release_ref/models):
  DIR/sd2/          SD2-like diffusers folder: vae/ unet/ (the prior UNet, no semantic blocks) text_encoder/
                    tokenizer/ (HF CLIPTokenizer files built from open_clip's BPE, pad "!" as SD2) scheduler/
                    (SD2-base's PNDM-style scheduler_config.json, read as DDPM) feature_extractor/
  DIR/ckpt/         unet/ controlnet/ via srlab.models.sr_model.save_checkpoint (authors' layout)
  DIR/sam2_tiny.pt  the tiny random SAM2 in the official format {"model": state_dict}
  DIR/model_params.yaml  the params.yaml `model` section that srlab should use to load all of the above
                    (sd2_path, checkpoint, sam2_checkpoint set); srlab's release mode should be run with it.

Sizes: params.yaml tiny profile `model`, overridden to a VAE factor of 8 (4 VAE levels, 4 ControlNet
conditioning channels), norm_groups 32 and layers_per_block 2 (the released utils/vaehook.py hard-codes 32
GroupNorm groups and 2 encoder / 3 decoder resnets per level), semantic.init random (non-zero blocks).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

import torch
from ruamel.yaml import YAML

ROOT = Path("/work/main")

OVERRIDES = {
    "size": "tiny",
    "sd2_path": None,
    "checkpoint": None,
    "controlnet_cond_channels": [16, 32, 32, 64],  # 4 entries: downscale 8
    "semantic": {"init": "random", "sam2_checkpoint": None},
    "prompts": {"tags": "none", "tags_file": None},
    "tiny": {
        "unet_channels": [32, 64],
        "unet_heads": [2, 4],
        "layers_per_block": 2,
        "norm_groups": 32,
        "vae_channels": [32, 32, 32, 32],  # factor 8
        "vae_scaling_factor": 0.5,  # != 1 so the scaling is exercised
    },
}

# stabilityai/stable-diffusion-2-base scheduler/scheduler_config.json (a PNDM config; the release reads it
# with DDPMScheduler.from_pretrained, as srlab does)
SD2_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.10.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

# CLIPImageProcessor defaults as in SD2-base's feature_extractor/preprocessor_config.json
FEATURE_EXTRACTOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}


def bytes_to_unicode() -> dict[int, str]:
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tokenizer(folder: Path) -> None:
    """HF CLIPTokenizer files from open_clip's bpe_simple_vocab_16e6 (the vocabulary open_clip's
    SimpleTokenizer builds: 49408 tokens, 48894 merges), with SD2's special tokens (pad "!")."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe) as f:
        merges = f.read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(p) for p in pairs)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    assert len(vocab) == 49408, len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "!",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {
        **special,
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def legacy_text_encoder_keys(path: Path) -> None:
    """transformers 5 writes CLIPTextModel tensors without the ``text_model.`` prefix; transformers 4.37
    (the release's pin) then finds no weights and silently initialises randomly. Rewrite with the prefix
    (the layout of SD2-base's own text_encoder/model.safetensors; transformers 5 loads it too)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    fixed = {
        (k if k.startswith("text_model.") else "text_model." + k): v.contiguous() for k, v in state.items()
    }
    save_file(fixed, str(path), metadata={"format": "pt"})


def model_raw() -> dict:
    from srlab.config import overlay, read_yaml, resolve_profile

    raw = resolve_profile(read_yaml(ROOT / "params.yaml"))
    return overlay(raw["model"], OVERRIDES)


def to_params(raw: dict):
    from srlab.config import validate
    from srlab.models.params import ModelParams

    return validate(ModelParams, raw, "make_checkpoint", "model")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/release_ref/models")
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args()
    from diffusers import UNet2DConditionModel

    from srlab.models.semantic import load_sam2
    from srlab.models.sr_model import build_sr_model, plain_config, save_checkpoint

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    raw = model_raw()

    # 1. the tiny SAM2 (random, seeded), saved in the official format so both sides load the same weights
    torch.manual_seed(args.seed + 1)
    sam = load_sam2(raw["semantic"]["sam2_config"], None, raw["semantic"]["sam2_overrides"])
    sam2_file = out / "sam2_tiny.pt"
    torch.save({"model": sam.state_dict()}, sam2_file)
    raw = {**raw, "semantic": {**raw["semantic"], "sam2_checkpoint": str(sam2_file)}}

    # 2. the whole random tiny model
    model = build_sr_model(to_params(raw), "cpu", generator=torch.Generator().manual_seed(args.seed))

    # 2b. ControlNet.from_unet zero-initialises the LR conditioning embedding's conv_out and every
    # zero-conv (controlnet_down_blocks, controlnet_mid_block): with them at zero the ControlNet (its LR
    # image, its tiles' image crops, its semantic blocks) would not touch the output. Re-initialise them
    # with torch's default init (seeded), so the reference exercises the ControlNet path.
    cn = model.controlnet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed + 2)
        for m in (cn.controlnet_cond_embedding.conv_out, *cn.controlnet_down_blocks, cn.controlnet_mid_block):
            m.reset_parameters()
        # torch's default conv init shrinks activations ~x0.5 per layer: through the embedding's 8 convs the
        # LR image's contribution would be ~1e-3 of the latent's. Kaiming-normal (relu gain) keeps it O(1).
        emb = cn.controlnet_cond_embedding
        for conv in (emb.conv_in, *emb.blocks, emb.conv_out):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        emb.conv_out.weight.data.mul_(4.0)  # the embedding then is ~1/2 of conv_in(latent) in norm

    # 3. SD2-like folder
    sd2 = out / "sd2"
    model.vae.save_pretrained(sd2 / "vae", safe_serialization=True)
    model.text_encoder.save_pretrained(sd2 / "text_encoder", safe_serialization=True)
    legacy_text_encoder_keys(sd2 / "text_encoder" / "model.safetensors")
    prior = UNet2DConditionModel.from_config(plain_config(model.unet.config))
    state = {k: v for k, v in model.unet.state_dict().items() if ".image_attentions." not in k}
    prior.load_state_dict(state, strict=True)
    prior.save_pretrained(sd2 / "unet", safe_serialization=True)
    (sd2 / "scheduler").mkdir()
    (sd2 / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD2_SCHEDULER, indent=2))
    (sd2 / "feature_extractor").mkdir()
    (sd2 / "feature_extractor" / "preprocessor_config.json").write_text(
        json.dumps(FEATURE_EXTRACTOR, indent=2)
    )
    write_tokenizer(sd2 / "tokenizer")

    # 4. checkpoint in the authors' layout
    ckpt = save_checkpoint(
        model,
        out / "ckpt",
        provenance={"made_by": "/tmp/release_ref/make_checkpoint.py", "seed": args.seed, "model_params": raw},
    )

    # 5. params for srlab to load it back
    final = {**raw, "sd2_path": str(sd2), "checkpoint": str(ckpt)}
    with (out / "model_params.yaml").open("w") as f:
        YAML().dump({"model": final}, f)

    # 6. check: srlab loads both folders back, with identical tensors
    back = build_sr_model(to_params(final), "cpu", generator=torch.Generator().manual_seed(12345))
    for name in ("vae", "unet", "controlnet", "text_encoder"):
        a, b = getattr(model, name).state_dict(), getattr(back, name).state_dict()
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[k], b[k]) for k in a), name
    a, b = model.semantic.state_dict(), back.semantic.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "semantic"
    print("tokenizer class srlab loads:", type(back.tokenizer).__name__)
    n_sem = sum(p.numel() for n, p in model.unet.named_parameters() if "image_attentions" in n)
    sem_abs = max(
        p.abs().max().item()
        for n, p in model.unet.named_parameters()
        if "image_attentions" in n and "proj_out" in n
    )
    print(f"srlab reload OK; unet semantic params {n_sem}, max |proj_out| {sem_abs:.4f}")
    zero = [n for n, p in model.controlnet.named_parameters() if p.abs().max() == 0]
    print("controlnet all-zero tensors:", zero)
    print("vae factor", model.vae_scale_factor, "scaling", model.vae.config.scaling_factor)
    print("wrote", out)


if __name__ == "__main__":
    main()
