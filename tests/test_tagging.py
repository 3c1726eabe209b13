"""RAM / DAPE wired into the model (srlab.models.tagging, srlab.sampling.tag_stage): the tag stage's cache,
training and inference with ``tags: ram | dape`` from fake official-format files at tiny size, the strict
loader through params, missing files, the ``dape`` extractor, and the Table 5 grid.

References are independent of the code under test: tags come from ``load_ram`` / ``load_dape`` (checked
against the released classes in test_ram.py) run by hand on the same pixels, and the extractor's
preprocessing from torchvision's transforms (SeeSR's ``ram_transforms``)."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import load_all
from torchvision import transforms

from srlab import io
from srlab.ablations import cells as ablation_cells
from srlab.ablations.grid import Cell, cells
from srlab.config import Params, load_params
from srlab.models import tagging
from srlab.models.params import ModelParams
from srlab.models.prompts import PromptTags
from srlab.models.ram import LoraConfig, Ram, RamConfig
from srlab.models.ram_checkpoint import (
    RamCheckpointError,
    RamFileMissingError,
    build_skeleton,
    load_dape,
    load_ram,
    official_state_dicts,
)
from srlab.models.sr_model import build_sr_model
from srlab.reporting.paper import ABLATION_SCORES
from srlab.sampling import tag_stage
from srlab.sampling.pipeline import SRPipeline
from srlab.sampling.upscale import model_params_for_inference, upscale_files
from srlab.training import train
from srlab.training.train import sr_loss

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_all(ROOT / "params.yaml")
WORDS = ["sky", "tree", "house", "car", "dog", "cat", "road", "water", "person", "flower", "grass", "cloud"]
FAST = dataclasses.replace(
    PARAMS.infer.sampler("wild"),
    start_point="lr",
    start_steps=999,
    steps=2,
    process_size=32,
    color_fix="none",
)


def with_model(params: Params, **prompts: object) -> Params:
    extractor = prompts.pop("extractor", params.model.semantic.extractor)
    model = dataclasses.replace(
        params.model,
        prompts=dataclasses.replace(params.model.prompts, **prompts),
        semantic=dataclasses.replace(params.model.semantic, extractor=extractor),
    )
    return params.replace(model=model)


def write_official_files(folder: Path, model: ModelParams) -> dict[str, str]:
    """Fake official files (ram_swin_large_14m.pth, DAPE.pth, tag list, thresholds) at the tiny tagger's
    size, from a seed of their own (not the random tagger's), thresholds spread so tags vary."""
    cfg = tagging.tagger_config(model, len(WORDS))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        src = Ram(cfg, LoraConfig())
        torch.nn.init.normal_(src.label_embed)
        for name, p in src.named_parameters():
            if "lora_" in name:
                torch.nn.init.normal_(p, std=0.2)
    ram_sd, dape_sd = official_state_dicts(src)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": ram_sd}, folder / "ram_swin_large_14m.pth")
    torch.save(dape_sd, folder / "DAPE.pth")
    (folder / "ram_tag_list.txt").write_text("\n".join(WORDS))
    (folder / "ram_tag_list_threshold.txt").write_text(
        "\n".join(str(0.3 + 0.04 * i) for i in range(len(WORDS)))
    )
    return {
        "ram_checkpoint": str(folder / "ram_swin_large_14m.pth"),
        "dape_checkpoint": str(folder / "DAPE.pth"),
        "tag_list": str(folder / "ram_tag_list.txt"),
        "tag_thresholds": str(folder / "ram_tag_list_threshold.txt"),
    }


def reference(files: dict[str, str], model: ModelParams, kind: str) -> Ram:
    cfg = tagging.tagger_config(model, len(WORDS))
    vocab = {"tag_list": files["tag_list"], "thresholds": files["tag_thresholds"]}
    if kind == "dape":
        return load_dape(files["ram_checkpoint"], files["dape_checkpoint"], cfg, **vocab)
    return load_ram(files["ram_checkpoint"], cfg, **vocab)


def ref_tags(ram: Ram, path: Path) -> str:
    return ram.generate_tags(io.read_image(path)[None])[0]


def fake_degrade(root: Path) -> Path:
    """A degrade folder with 3 training samples (HR crops) and two LR-only eval sets sharing image names."""
    g = torch.Generator().manual_seed(7)
    degrade = root / "degrade"
    samples = []
    for i in range(3):
        sid = f"hr_photo{i}_000"
        io.write_image(torch.rand(3, 32, 32, generator=g), degrade / "train" / "hr" / f"{sid}.png")
        samples.append({"id": sid, "split": "train", "part": "hr", "hr": f"train/hr/{sid}.png"})
    sets = {}
    for name, kind in (("s_synthetic", "synthetic"), ("s_wild", "wild")):
        for stem in ("baby", "bird"):
            io.write_image(torch.rand(3, 24, 20, generator=g), degrade / "eval" / name / "lr" / f"{stem}.png")
        sets[name] = {"source": "s", "kind": kind, "scale": 1, "paired": False}
    (degrade / "manifest.json").write_text(json.dumps({"samples": samples, "eval_sets": sets}))
    return degrade


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tag stage run on a fake degrade folder with train_tags ram, tags dape, extractor dape."""
    root = tmp_path_factory.mktemp("build")
    degrade = fake_degrade(root)
    files = write_official_files(root / "weights", PARAMS.model)
    params = with_model(PARAMS, tags="dape", train_tags="ram", extractor="dape", **files)
    info = tag_stage.run(params, degrade, tagging.tag_cache_dir(root))
    return {"root": root, "degrade": degrade, "files": files, "params": params, "info": info}


def read_csv(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        return {row["image"]: row["tags"] for row in csv.DictReader(f)}


# ---- the tag stage -------------------------------------------------------------------------------------
def test_tag_stage_tags_hr_crops_with_ram_and_lr_with_dape(built: dict) -> None:
    tags_dir, degrade, model = tagging.tag_cache_dir(built["root"]), built["degrade"], built["params"].model
    ram, dape = reference(built["files"], model, "ram"), reference(built["files"], model, "dape")
    train = read_csv(tags_dir / "train.csv")
    assert train == {
        f"hr_photo{i}_000": ref_tags(ram, degrade / f"train/hr/hr_photo{i}_000.png") for i in range(3)
    }
    for name in ("s_synthetic", "s_wild"):
        assert read_csv(tags_dir / f"{name}.csv") == {
            f"{stem}.png": ref_tags(dape, degrade / "eval" / name / "lr" / f"{stem}.png")
            for stem in ("baby", "bird")
        }
    all_tags = [*train.values(), *read_csv(tags_dir / "s_wild.csv").values()]
    assert any(all_tags) and len(set(all_tags)) > 1  # real tags that differ between images
    assert set(", ".join(all_tags).split(", ")) - {""} <= set(WORDS)
    info = json.loads((tags_dir / "tags.json").read_text())
    assert info["sets"] == ["s_synthetic", "s_wild"]
    assert info["counts"] == {"train": 3, "s_synthetic": 2, "s_wild": 2}
    assert info["train"]["kind"] == "ram" and info["images"]["kind"] == "dape" and not info["random_tagger"]


def test_no_tagger_writes_only_the_info_file(tmp_path: Path) -> None:
    degrade = fake_degrade(tmp_path)
    stage_params = load_params(ROOT / "params.yaml", None, tag_stage.SECTIONS)  # what the stage loads
    info = tag_stage.run(stage_params, degrade, tmp_path / "tags")  # the tiny profile: tags none
    assert sorted(p.name for p in (tmp_path / "tags").iterdir()) == ["tags.json"]
    assert info["train"] is None and info["images"] is None and not info["random_tagger"]


# ---- training and inference with the cached tags --------------------------------------------------------
@pytest.fixture(scope="module")
def tagged_model(built: dict):
    params = tagging.with_tag_cache(built["params"], built["root"])
    assert params.model.prompts.tags_dir == str(built["root"] / "tags")
    return build_sr_model(params.model, generator=torch.Generator().manual_seed(0))


def test_training_step_prompts_are_the_ram_tags_of_the_hr_crops(
    built: dict, tagged_model, monkeypatch
) -> None:
    model, degrade = tagged_model, built["degrade"]
    assert isinstance(model.tags, PromptTags)
    seen: list[list[str]] = []
    encode = model.encode_prompt
    monkeypatch.setattr(model, "encode_prompt", lambda prompts: seen.append(list(prompts)) or encode(prompts))
    ids = ["hr_photo2_000", "hr_photo0_000"]
    hr = torch.stack([io.read_image(degrade / f"train/hr/{i}.png") for i in ids])
    batch = {"hr": hr, "lr": hr.flip(-1), "id": ids}
    loss = sr_loss(model, model.unet, model.controlnet, batch, torch.Generator().manual_seed(0), 0.0)
    loss.backward()
    ram = reference(built["files"], built["params"].model, "ram")
    assert seen == [
        [ref_tags(ram, degrade / f"train/hr/{i}.png") + "," for i in ids]
    ]  # the authors' "{tags},"
    assert torch.isfinite(loss)
    sr_loss(model, model.unet, model.controlnet, batch, torch.Generator().manual_seed(0), 1.0)
    assert seen[-1] == ["", ""]  # train.null_prompt_prob drops the tags too
    grads = [p.grad for m in model.unet.modules() if hasattr(m, "image_attentions") for p in m.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # the DAPE c_sem reaches the loss


def test_inference_takes_cached_dape_tags_and_tags_other_images_on_the_fly(
    built: dict, tagged_model, tmp_path: Path, monkeypatch
) -> None:
    model, degrade = tagged_model, built["degrade"]
    dape = reference(built["files"], built["params"].model, "dape")
    seen: list[list[str]] = []
    encode = model.encode_prompt
    monkeypatch.setattr(model, "encode_prompt", lambda prompts: seen.append(list(prompts)) or encode(prompts))
    pipe = SRPipeline(model)
    # 1. Cached: both sets have a "baby.png" with other pixels; the tagger must not even be loaded.
    images = model.tags.images
    monkeypatch.setattr(
        tagging, "build_tagger", lambda *a, **k: pytest.fail("tagger loaded for a cached image")
    )
    for name in ("s_synthetic", "s_wild"):
        path = degrade / "eval" / name / "lr" / "baby.png"
        upscale_files(pipe, [path], tmp_path / name, FAST, 0, progress=False)
        assert seen[-1][-1].startswith(ref_tags(dape, path) + ", ")  # "{tags}, {user}," + added
    assert images._tagger is None
    assert seen[-2][-1] != seen[-1][-1]  # same name, other pixels, other tags: keyed by the image
    monkeypatch.undo()
    monkeypatch.setattr(model, "encode_prompt", lambda prompts: seen.append(list(prompts)) or encode(prompts))
    # 2. Not in the cache (a new photo, as `srlab upscale` gets): DAPE on the fly, then remembered.
    photo = tmp_path / "photo.png"
    io.write_image(torch.rand(3, 28, 36, generator=torch.Generator().manual_seed(11)), photo)
    upscale_files(pipe, [photo], tmp_path / "out", FAST, 0, progress=False)
    assert seen[-1][-1].startswith(ref_tags(dape, photo) + ", ")
    assert images._tagger is not None and tagging.image_key(io.read_image(photo)) in images.cache


def test_train_and_infer_point_the_model_at_the_tag_stage_beside_them(built: dict) -> None:
    root = built["root"]
    (root / "train" / "final").mkdir(parents=True, exist_ok=True)  # a train stage folder
    no_prior = built["params"].replace(train=dataclasses.replace(PARAMS.train, prior=None))
    trained = train.sr_model_params(no_prior, root / "train").model.prompts
    inferred = model_params_for_inference(built["params"], root / "train").model.prompts
    assert trained.tags_dir == inferred.tags_dir == str(root / "tags")
    untagged = train.sr_model_params(PARAMS.replace(train=no_prior.train), root / "train")
    assert untagged.model.prompts.tags_dir is None  # tags none: no cache to read


def test_cache_key_survives_the_pipelines_bf16(built: dict) -> None:
    path = built["degrade"] / "eval" / "s_wild" / "lr" / "bird.png"
    lr = io.read_image(path)
    assert tagging.image_key(lr.to(torch.bfloat16)) == tagging.image_key(lr)
    assert tagging.image_key(lr.flip(-1)) != tagging.image_key(lr)


def test_training_refuses_a_missing_or_foreign_cache(built: dict, tmp_path: Path) -> None:
    none = with_model(built["params"], tags_dir=None).model
    with pytest.raises(FileNotFoundError, match=r"no tag cache is set: run the tag stage"):
        tagging.TrainTags(none, "ram")("hr_photo0_000")
    foreign = with_model(built["params"], tags_dir=str(built["root"] / "tags")).model
    with pytest.raises(ValueError, match=r"made by .*'kind': 'ram'.* ask for .*'kind': 'dape'"):
        tagging.TrainTags(foreign, "dape")("hr_photo0_000")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "train.csv"))):
        tagging.TrainTags(with_model(built["params"], tags_dir=str(tmp_path)).model, "ram")("x")


# ---- strict loading and missing files through params --------------------------------------------------
def test_renamed_or_misshapen_tensor_is_rejected_by_name(built: dict, tmp_path: Path) -> None:
    files = built["files"]
    sd = torch.load(files["ram_checkpoint"])["model"]
    renamed = dict(sd)
    renamed["fc.weights"] = renamed.pop("fc.weight")
    torch.save({"model": renamed}, tmp_path / "renamed.pth")
    params = with_model(built["params"], ram_checkpoint=str(tmp_path / "renamed.pth"))
    with pytest.raises(
        RamCheckpointError, match=r"missing \(1\): fc\.weight\b[\s\S]*unexpected \(1\): fc\.weights"
    ):
        tagging.build_tagger(params.model, "ram")
    dape = torch.load(files["dape_checkpoint"])
    key = "visual_encoder.layers.0.blocks.0.attn.qkv.lora_A"
    dape[key] = dape[key][:, :-1]
    torch.save(dape, tmp_path / "DAPE.pth")
    params = with_model(built["params"], dape_checkpoint=str(tmp_path / "DAPE.pth"))
    with pytest.raises(
        RamCheckpointError, match=rf"dape file .*DAPE\.pth[\s\S]*misshapen \(1\): {re.escape(key)}"
    ):
        build_sr_model(params.model)  # the dape extractor loads it at build


def test_missing_weight_files_name_path_and_source(built: dict, tmp_path: Path) -> None:
    gone = tmp_path / "nowhere" / "DAPE.pth"
    params = with_model(built["params"], dape_checkpoint=str(gone), extractor="none")
    with pytest.raises(RamFileMissingError, match=rf"{re.escape(str(gone))}\. Get it: .*cswry/SeeSR"):
        build_sr_model(params.model)  # tags: dape checks its files before any work
    paper = dataclasses.replace(PARAMS.model, size="paper")
    with pytest.raises(
        RamFileMissingError, match=r"model\.prompts\.ram_checkpoint is null.*xinyu1205/recognize-anything"
    ):
        tagging.tagger_files(paper, "ram")
    listed = load_all(ROOT / "params.yaml", "paper").model.prompts
    assert (listed.tags, listed.train_tags) == ("dape", "ram")
    assert (
        Path(listed.ram_checkpoint).name == "ram_swin_large_14m.pth"
        and Path(listed.dape_checkpoint).name == "DAPE.pth"
    )


# ---- the tiny random tagger ----------------------------------------------------------------------------
def test_random_tiny_tagger_is_seeded_and_says_its_tags_are_meaningless(
    capsys: pytest.CaptureFixture,
) -> None:
    model = with_model(PARAMS, tags="dape", train_tags="ram").model
    a, b = tagging.build_tagger(model, "ram"), tagging.build_tagger(model, "ram")
    assert "meaningless" in capsys.readouterr().out
    image = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(2))
    assert tagging.tag_image(a, image) == tagging.tag_image(b, image)
    dape = tagging.build_tagger(model, "dape")
    base = {k: v for k, v in dape.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in base.items())  # DAPE = the same RAM + LoRA
    assert not torch.equal(
        dape.image_embeds(dape.preprocess(image[None])), a.image_embeds(a.preprocess(image[None]))
    )


# ---- the dape extractor ---------------------------------------------------------------------------------
def test_dape_extractor_gives_ram_image_embeddings_in_seesr_layout(built: dict) -> None:
    model = built["params"].model
    extractor = tagging.build_dape_extractor(model)
    dape = reference(built["files"], model, "dape")
    lr = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(3))
    size = tagging.TINY_IMAGE_SIZE
    seesr = transforms.Compose([transforms.Resize((size, size), antialias=False), transforms.Normalize(
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])  # fmt: skip
    out = extractor(lr, antialias=False)
    assert out.shape == (2, 1 + (size // 32) ** 2, model.semantic.width) == (2, 5, 512)
    with torch.no_grad():
        torch.testing.assert_close(out, dape.image_embeds(seesr(lr)), rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError, match=r"model\.semantic\.width = 256, but the dape extractor gives RAM's 512"
    ):
        tagging.DapeExtractor(dape, 256)


def test_dape_extractor_at_paper_size_is_145_by_512() -> None:
    with torch.device("meta"):
        extractor = tagging.DapeExtractor(build_skeleton(RamConfig.paper(), LoraConfig()), 512)
        out = extractor.ram.image_embeds(extractor.ram.preprocess(torch.empty(1, 3, 96, 80)))
    assert (extractor.tokens, extractor.width) == (1 + (384 // 32) ** 2, 512) == (145, 512)
    assert tuple(out.shape) == (1, 145, 512)


# ---- Table 5 ----------------------------------------------------------------------------------------------
def test_ablation_grid_runs_dape_beside_sam2_with_the_papers_numbers() -> None:
    grid = [c for c in cells(PARAMS) if c.axis == "extractor"]
    assert [c.value for c in grid] == ["sam2", "none", "dape"]
    turned = ablation_cells.cell_params(PARAMS, Cell("extractor", "both", "dape"))
    assert turned.model.semantic.extractor == "dape"
    assert dataclasses.replace(turned.model.semantic, extractor="sam2") == PARAMS.model.semantic
    model = build_sr_model(turned.model)  # the tiny profile as shipped: the random tiny DAPE, offline
    c_sem = model.semantic_tokens(torch.rand(1, 3, 16, 16))
    assert c_sem.shape == (1, 5, PARAMS.model.semantic.width)
    assert ABLATION_SCORES[("extractor", "wild", "dape")] == 19.7119  # paper Table 5
    assert ABLATION_SCORES[("extractor", "wild", "sam2")] == 20.2305
