"""srlab.models.sr_model (+ prompts): the authors' layout at paper size (meta device), the tiny model's
build, trainable set, semantic-block initialisation and checkpoint round trips, and clear errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import open_clip
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from helpers import load_all, seeded
from safetensors.torch import load_file, save_file

from srlab import config
from srlab.models import prompts, semantic
from srlab.models.params import ModelParams, PromptParams
from srlab.models.semantic import CheckpointMismatchError
from srlab.models.sr_model import (
    TINY_SCHEDULER,
    SRModel,
    build_denoisers,
    build_sr_model,
    load_checkpoint,
    plain_config,
    save_checkpoint,
    tiny_unet_config,
    tiny_vae,
    trainable_parameters,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "seesr_layout_checkpoint.json").read_text())
LATENT = load_all(ROOT / "params.yaml").model.tiny.latent_channels  # the tiny latents' width


@pytest.fixture(scope="module")
def params() -> ModelParams:
    return load_all(ROOT / "params.yaml").model  # the tiny profile as shipped


@pytest.fixture(scope="module")
def model(params: ModelParams) -> SRModel:
    return build_sr_model(params, generator=torch.Generator().manual_seed(0))


def inputs(model: SRModel, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, LATENT, 8, 8, generator=g)
    lr = torch.rand(batch, 3, 8 * model.vae_scale_factor, 8 * model.vae_scale_factor, generator=g)
    timesteps = torch.randint(0, 1000, (batch,), generator=g)
    with torch.no_grad():
        text = model.encode_prompt(["a photo of a house"] * batch)
        c_sem = model.semantic_tokens(lr)
    return latents, timesteps, text, lr, c_sem


@pytest.fixture(scope="module")
def fixed(model: SRModel) -> tuple[torch.Tensor, ...]:
    return inputs(model)


def output(model: SRModel, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        return model.predict(*args)


def denoisers_copy(model: SRModel) -> SRModel:
    """The model with its own copies of the UNet and ControlNet (the frozen rest is shared)."""
    return dataclasses.replace(
        model, unet=copy.deepcopy(model.unet), controlnet=copy.deepcopy(model.controlnet)
    )


def perturbed(model: SRModel) -> SRModel:
    """A copy whose UNet and ControlNet weights all differ from ``model``'s."""
    other = denoisers_copy(model)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in [*other.unet.parameters(), *other.controlnet.parameters()]:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return other


# ---------------------------------------------------------------------------------------------
# Paper size: the authors' layout, on the meta device
# ---------------------------------------------------------------------------------------------


def test_paper_size_matches_the_authors_checkpoint_layout(params: ModelParams) -> None:
    paper_semantic = dataclasses.replace(params.semantic, tokens=4096)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(plain_config(FIXTURE["unet_config"]))
        unet, controlnet = build_denoisers(unet, (16, 32, 96, 256), paper_semantic)
    counts = {"unet": 1126.8, "controlnet": 489.0}
    for name, net in (("unet", unet), ("controlnet", controlnet)):
        state = net.state_dict()  # what save_pretrained writes
        assert {k: list(v.shape) for k, v in state.items()} == FIXTURE[name]
        assert round(sum(v.numel() for v in state.values()) / 1e6, 1) == counts[name]
        ours = json.loads(json.dumps(dict(net.config)))  # config.json as save_pretrained writes it
        assert {k: ours.get(k) for k in FIXTURE[f"{name}_config"]} == FIXTURE[f"{name}_config"]
    assert len(FIXTURE["unet"]) == 1102 and len(FIXTURE["controlnet"]) == 522


# ---------------------------------------------------------------------------------------------
# Tiny size: build, trainable set, initialisation
# ---------------------------------------------------------------------------------------------


def test_build_is_deterministic_and_leaves_the_global_rng_alone(params: ModelParams, model: SRModel) -> None:
    rng = torch.get_rng_state()
    again = build_sr_model(params, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), rng)
    for part in ("vae", "unet", "controlnet", "text_encoder", "semantic"):
        ours, theirs = getattr(model, part).state_dict(), getattr(again, part).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), part
    args = inputs(model)
    assert torch.equal(output(model, args), output(again, inputs(again)))
    assert model.scheduler.config.prediction_type == "epsilon" and model.vae_scale_factor == 4


def test_gradients_reach_exactly_the_trainable_parameters(model: SRModel, fixed: tuple) -> None:
    net = denoisers_copy(model)
    latents, timesteps, text, lr, c_sem = fixed
    net.predict(latents, timesteps, text, lr, c_sem).square().mean().backward()
    trainable = {id(p) for p in trainable_parameters(net)}
    everything = [
        p
        for part in (net.vae, net.text_encoder, net.unet, net.controlnet, net.semantic)
        for p in part.parameters()
    ]
    assert {id(p) for p in everything if p.grad is not None} == trainable
    assert {id(p) for p in everything if p.requires_grad} == trainable
    assert len(trainable) == len(list(net.controlnet.parameters())) + sum(
        len(list(m.parameters())) for m in semantic.semantic_modules(net.unet)
    )
    proj_out = [m.proj_out.weight.grad.abs().sum() for m in semantic.semantic_modules(net.unet)]
    assert min(proj_out) > 0 and net.controlnet.controlnet_mid_block.weight.grad.abs().sum() > 0


def test_zero_init_leaves_the_unet_output_unchanged_and_none_skips_the_blocks(
    params: ModelParams,
) -> None:
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, LATENT, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    c_sem = torch.randn(1, 256, 512, generator=g)
    with seeded(0):
        plain = UNet2DConditionModel.from_config(tiny_unet_config(params.tiny))

    def run(net: UNet2DConditionModel, c: torch.Tensor | str | None = "absent") -> torch.Tensor:
        extra = {} if isinstance(c, str) else {"cross_attention_kwargs": {"c_sem": c}}
        with torch.no_grad():
            return net(x, 500, encoder_hidden_states=text, **extra).sample

    reference = run(plain)
    for kind in ("full", "cross_only"):
        for init in ("zero", "random"):
            net = copy.deepcopy(plain)
            with seeded(1):
                semantic.add_semantic_blocks(net, 512, kind, init)  # type: ignore[arg-type]
            if init == "zero":
                assert torch.equal(run(net, c_sem), reference), kind
            else:
                assert not torch.allclose(run(net, c_sem), reference), kind
                assert torch.equal(run(net, None), reference), kind  # `none` extractor: blocks skipped


def test_none_extractor_freezes_the_semantic_blocks(params: ModelParams) -> None:
    none = dataclasses.replace(params, semantic=dataclasses.replace(params.semantic, extractor="none"))
    net = build_sr_model(none)
    assert net.semantic_tokens(torch.rand(1, 3, 8, 8)) is None
    assert {id(p) for p in trainable_parameters(net)} == {
        id(p) for name, p in net.controlnet.named_parameters() if f".{semantic.SEMANTIC_ATTR}." not in name
    }


def test_none_c_sem_skips_the_semantic_blocks_of_the_whole_model(model: SRModel, fixed: tuple) -> None:
    latents, timesteps, text, lr, _ = fixed
    net = denoisers_copy(model)
    with torch.no_grad():
        skipped = net.predict(latents, timesteps, text, lr, None)
        for part in (net.unet, net.controlnet):
            for block in semantic.semantic_modules(part):
                torch.nn.init.normal_(block.proj_out.weight)
        assert torch.equal(net.predict(latents, timesteps, text, lr, None), skipped)


def test_predict_checks_the_lr_image_size(model: SRModel, fixed: tuple) -> None:
    latents, timesteps, text, lr, c_sem = fixed
    expected = rf"lr_image must be \(B, 3, 32, 32\) for latents \(1, {LATENT}, 8, 8\)"
    with pytest.raises(ValueError, match=expected):
        model.predict(latents, timesteps, text, lr[..., :16, :16], c_sem)


# ---------------------------------------------------------------------------------------------
# Checkpoints in the authors' layout
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(model: SRModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "checkpoint-1", provenance={"step": 1})


def test_checkpoint_round_trip(params: ModelParams, model: SRModel, saved: Path, fixed: tuple) -> None:
    for sub in ("unet", "controlnet"):
        cfg = json.loads((saved / sub / "config.json").read_text())
        assert cfg["use_image_cross_attention"] is True
        names = load_file(saved / sub / "diffusion_pytorch_model.safetensors").keys()
        assert names == model.__dict__[sub].state_dict().keys()
        assert any(".image_attentions.0." in n for n in names)
    assert json.loads((saved / "srlab_provenance.json").read_text()) == {"step": 1}
    other = perturbed(model)
    assert not torch.allclose(output(other, fixed), output(model, fixed))
    load_checkpoint(other, saved)
    assert torch.equal(output(other, fixed), output(model, fixed))
    from_params = build_sr_model(
        dataclasses.replace(params, checkpoint=str(saved)), generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(output(from_params, fixed), output(model, fixed))


def test_bin_weights_load_too(model: SRModel, saved: Path, fixed: tuple, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    for sub in ("unet", "controlnet"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "config.json").write_text((saved / sub / "config.json").read_text())
        state = load_file(saved / sub / "diffusion_pytorch_model.safetensors")
        torch.save(state, folder / sub / "diffusion_pytorch_model.bin")
    other = perturbed(model)
    load_checkpoint(other, folder)
    assert torch.equal(output(other, fixed), output(model, fixed))


def corrupt(saved: Path, tmp_path: Path, sub: str, edit) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "corrupt"
    for part in ("unet", "controlnet"):
        (folder / part).mkdir(parents=True)
        cfg = json.loads((saved / part / "config.json").read_text())
        state = load_file(saved / part / "diffusion_pytorch_model.safetensors")
        if part == sub:
            edit(cfg, state)
        (folder / part / "config.json").write_text(json.dumps(cfg))
        save_file(state, folder / part / "diffusion_pytorch_model.safetensors")
    return folder


def test_a_missing_or_misshapen_tensor_fails_before_anything_loads(
    model: SRModel, saved: Path, tmp_path: Path
) -> None:
    def edit(cfg: dict, state: dict) -> None:
        del state["down_blocks.0.image_attentions.0.proj_out.bias"]
        state["mid_block.image_attentions.0.transformer_blocks.0.attn2.to_k.weight"] = torch.zeros(64, 256)

    folder = corrupt(saved, tmp_path, "controlnet", edit)
    other = perturbed(model)
    before = {k: v.clone() for k, v in other.unet.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(other, folder)
    message = str(err.value)
    assert "controlnet/diffusion_pytorch_model.safetensors: does not match the model" in message
    assert "1 missing (down_blocks.0.image_attentions.0.proj_out.bias)" in message
    assert (
        "1 misshapen (mid_block.image_attentions.0.transformer_blocks.0.attn2.to_k.weight: "
        "file (64, 256) vs model (64, 512))" in message
    )
    after = other.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the valid unet/ was not loaded either


def test_checkpoint_config_must_match(model: SRModel, saved: Path, tmp_path: Path) -> None:
    folder = corrupt(saved, tmp_path, "unet", lambda cfg, state: cfg.update(attention_head_dim=[4, 8]))
    with pytest.raises(
        CheckpointMismatchError, match=r"architecture differs.*attention_head_dim: file \[4, 8\]"
    ):
        load_checkpoint(model, folder)
    flagless = corrupt(saved, tmp_path / "b", "unet", lambda cfg, state: cfg.pop("use_image_cross_attention"))
    with pytest.raises(CheckpointMismatchError, match="lacks `use_image_cross_attention: true`"):
        load_checkpoint(model, flagless)
    with pytest.raises(
        FileNotFoundError, match=r"absent/unet: expected config\.json .*Moonsofang/NTIRE-2025-SRlab"
    ):
        load_checkpoint(model, tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# Paper size through a fake local SD2 folder (same loading code, tiny weights)
# ---------------------------------------------------------------------------------------------


def fake_sd2(folder: Path, sizes: config.TinySizes) -> Path:
    """SD2-base's diffusers layout with tiny random parts, written by the parts' own save methods."""
    with seeded(7):
        tiny_vae(sizes).save_pretrained(folder / "vae")
        UNet2DConditionModel.from_config(tiny_unet_config(sizes)).save_pretrained(folder / "unet")
        prompts.tiny_text_encoder(sizes).save_pretrained(folder / "text_encoder")
    DDPMScheduler(**TINY_SCHEDULER).save_pretrained(folder / "scheduler")
    bpe = open_clip.get_tokenizer("ViT-H-14")  # SD2's tokenizer files, rebuilt from open_clip's vocabulary
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    (folder / "tokenizer").mkdir()
    vocab = {names.get(k, k): v for k, v in bpe.encoder.items()}
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    (folder / "tokenizer" / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges)
    )
    (folder / "tokenizer" / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 77, "pad_token": "!"})
    )
    return folder


def test_paper_size_loads_a_local_sd2_folder(params: ModelParams, tmp_path: Path) -> None:
    sd2 = fake_sd2(tmp_path / "sd2", params.tiny)
    paper = dataclasses.replace(params, size="paper", sd2_path=str(sd2))
    net = build_sr_model(paper)
    saved_unet = load_file(sd2 / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(net.unet.state_dict()[k], v) for k, v in saved_unet.items())
    ids = net.tokenizer(["a red car, street"])
    assert torch.equal(ids, prompts.OpenClipTokenizer()(["a red car, street"]))  # same BPE, same padding
    assert net.encode_prompt(["a red car"]).shape == (1, 77, params.tiny.text_width)
    assert output(net, inputs(net)).shape == (1, LATENT, 8, 8)
    shutil.rmtree(sd2 / "tokenizer")  # the tiny prior the train stage writes: SD2's layout, no tokenizer/
    prior = build_sr_model(dataclasses.replace(params, sd2_path=str(sd2)))
    assert isinstance(prior.tokenizer, prompts.OpenClipTokenizer)
    assert all(torch.equal(prior.unet.state_dict()[k], v) for k, v in saved_unet.items())


def test_missing_files_are_named_with_their_source(params: ModelParams, tmp_path: Path) -> None:
    paper = dataclasses.replace(
        params,
        size="paper",
        sd2_path=str(tmp_path / "sd2"),
        checkpoint=str(tmp_path / "ckpt"),
        semantic=dataclasses.replace(params.semantic, sam2_checkpoint=str(tmp_path / "sam2.1_hiera_tiny.pt")),
    )
    with pytest.raises(FileNotFoundError) as err:
        build_sr_model(paper)
    message = str(err.value)
    for expected in (
        "sd2/unet/config.json (from Hugging Face stabilityai/stable-diffusion-2-base",
        "sd2/tokenizer/vocab.json",
        "ckpt/controlnet/config.json (from the authors' checkpoint-90000",
        "sam2.1_hiera_tiny.pt (from Hugging Face facebook/sam2.1-hiera-tiny)",
    ):
        assert expected in message
    with pytest.raises(ValueError, match=r"model\.sd2_path is null but model\.size is paper"):
        build_sr_model(dataclasses.replace(params, size="paper"))
    with pytest.raises(
        ValueError, match=r"controlnet_cond_channels has 4 entries \(downscale 8\) but the VAE"
    ):
        build_sr_model(dataclasses.replace(params, controlnet_cond_channels=(16, 32, 96, 256)))


# ---------------------------------------------------------------------------------------------
# Prompts: tag sources and tokenizers
# ---------------------------------------------------------------------------------------------


def test_tag_sources(tmp_path: Path, params: ModelParams) -> None:
    def prompt_params(tags: str, tags_file: str | None) -> PromptParams:
        return dataclasses.replace(params.prompts, tags=tags, train_tags=tags, tags_file=tags_file)

    csv_file = tmp_path / "tags.csv"
    csv_file.write_text('image,tags\n0001.png,"sky, tree"\n0002.jpg,\n')
    tags = prompts.build_tag_source(prompt_params("file", str(csv_file)))
    assert tags("0001.png") == "sky, tree" and tags("0001") == "sky, tree" and tags("x/0002.png") == ""
    with pytest.raises(KeyError, match=r"tags\.csv: no tags for image '0003\.png' \(2 images listed\)"):
        tags("0003.png")
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "0001.txt").write_text("house, car, \n")
    assert prompts.FileTags(folder)("0001.png") == "house, car,"
    (tmp_path / "bad.csv").write_text("name,caption\na,b\n")
    with pytest.raises(ValueError, match=r"bad\.csv: expected a CSV header with columns image,tags"):
        prompts.FileTags(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=r"tags_file is null"):
        prompts.build_tag_source(prompt_params("file", None))
    assert prompts.build_tag_source(prompt_params("none", None))("0001.png") == ""


def test_open_clip_tokenizer_gives_77_clip_ids() -> None:
    ids = prompts.OpenClipTokenizer()(["a cat", ""])
    assert ids.shape == (2, 77) and ids.dtype == torch.int64
    assert ids[0, :4].tolist() == [49406, 320, 2368, 49407] and ids[1, :2].tolist() == [49406, 49407]
    assert int(ids[0, 4:].abs().sum()) == 0  # padded with 0 as SD2's tokenizer
