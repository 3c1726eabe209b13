"""RAM / DAPE tagger (srlab.models.ram, srlab.models.ram_checkpoint): layout, strict loading, tags, LoRA.

The paper-size layout fixture (tests/fixtures/ram_layout.json) was dumped from the released classes
themselves (see its ``how_derived`` field and docs/research/ram_dape.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from srlab.models.ram import LoraConfig, LoraLinear, Ram, RamConfig, parse_thresholds
from srlab.models.ram_checkpoint import (
    RamCheckpointError,
    RamFileMissingError,
    build_skeleton,
    dape_file_layout,
    load_dape,
    load_ram,
    official_state_dicts,
    official_to_srlab,
    ram_file_layout,
    srlab_to_official,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ram_layout.json"


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def paper_skeletons() -> tuple[Ram, Ram]:
    cfg = RamConfig.paper()
    return build_skeleton(cfg), build_skeleton(cfg, LoraConfig())


def _shapes(d: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in d.items()}


def _tiny_model(seed: int = 0, lora: LoraConfig | None = None, num_classes: int = 10) -> Ram:
    torch.manual_seed(seed)
    model = Ram(RamConfig.tiny(num_classes), lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" not in name:
                p.copy_(
                    torch.randn_like(p) * 0.2
                    + (1.0 if "norm" in name.lower() and name.endswith("weight") else 0.0)
                )
    return model.eval()


def _write_official(tmp_path: Path, model: Ram, with_dape: bool = False) -> tuple[Path, Path | None]:
    ram_sd, dape_sd = official_state_dicts(model)
    ram_path = tmp_path / "ram_swin_large_14m.pth"
    torch.save({"model": ram_sd}, ram_path)
    dape_path = None
    if with_dape:
        dape_path = tmp_path / "DAPE.pth"
        torch.save(dape_sd, dape_path)
    return ram_path, dape_path


def _write_vocab(tmp_path: Path, n: int, thresholds: list[float] | None = None) -> tuple[Path, Path | None]:
    tags = tmp_path / "ram_tag_list.txt"
    tags.write_text("\n".join(f"tag {i}" for i in range(n)), encoding="utf-8")  # official: no final newline
    thr = None
    if thresholds is not None:
        thr = tmp_path / "ram_tag_list_threshold.txt"
        thr.write_text("".join(f"{t}\n" for t in thresholds), encoding="utf-8")
    return tags, thr


# ---- (1) paper-size layout -----------------------------------------------------------------------------
def test_paper_ram_file_layout_matches_official_classes(fixture, paper_skeletons):
    expected = _shapes(fixture["ram_file"]["tensors"])
    got = ram_file_layout(RamConfig.paper())
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}
    assert len(got) == fixture["ram_file"]["n_tensors"] == 1042


def test_paper_dape_file_layout_matches_official_classes(fixture):
    expected = _shapes(fixture["dape_file"]["tensors"])
    got = dape_file_layout(RamConfig.paper(), LoraConfig())
    assert got == expected
    assert len(got) == 248 and all("lora_" in k for k in got)


def test_paper_parameter_counts(fixture, paper_skeletons):
    ram, dape = paper_skeletons
    counts = fixture["param_counts"]
    assert ram.num_parameters() == counts["tagger_parameters"] == 212_117_045
    lora_params = sum(p.numel() for n, p in dape.named_parameters() if "lora_" in n)
    assert lora_params == counts["dape_lora_parameters_used_for_tagging"] == 667_648
    swin = sum(p.numel() for p in ram.visual_encoder.parameters())
    assert swin == counts["ram_state_dict_parameters_by_module"]["visual_encoder"]
    # Published Swin-L 384: 197M including a 1000-class ImageNet head (1536 * 1000 + 1000).
    assert round((swin + 1536 * 1000 + 1000) / 1e6) == counts["published"]["swin_l_384_22k_params_M"]


def test_paper_image_embedding_layout(paper_skeletons):
    cfg = RamConfig.paper()
    assert (cfg.vision_width, cfg.embed_width, cfg.num_image_tokens) == (1536, 512, 145)
    ram, _ = paper_skeletons
    out = ram.image_embeds(torch.empty(1, 3, 384, 384, device="meta"))
    assert tuple(out.shape) == (1, 145, 512)


def test_renaming_table_is_a_bijection_on_used_tensors(fixture, paper_skeletons):
    cfg = RamConfig.paper()
    official = _shapes(fixture["ram_file"]["tensors"]) | _shapes(fixture["dape_file"]["tensors"])
    for skeleton, lora in ((paper_skeletons[0], False), (paper_skeletons[1], True)):
        for name, t in skeleton.state_dict().items():
            off = srlab_to_official(name)
            assert official[off] == tuple(t.shape), name
            assert official_to_srlab(off, cfg, lora=lora) == name
    # The documented renamings, spelled out.
    assert official_to_srlab("visual_encoder.layers.0.downsample.reduction.weight", cfg) == (
        "visual_encoder.layers.1.downsample.reduction.weight"
    )
    assert official_to_srlab("vision_multi.encoder.layer.1.output.dense.bias", cfg) == (
        "tagging_head.encoder.layer.1.output.dense.bias"
    )
    tied = "tag_encoder.encoder.layer.1.crossattention.self.key.lora_B"
    assert (
        official_to_srlab(tied, cfg, lora=True)
        == "tagging_head.encoder.layer.1.crossattention.self.key.tied_lora_B"
    )
    assert (
        official_to_srlab("tag_encoder.encoder.layer.2.crossattention.self.key.lora_B", cfg, lora=True)
        is None
    )
    assert official_to_srlab("visual_encoder.layers.0.blocks.1.attn_mask", cfg) is None
    assert official_to_srlab("text_decoder.cls.predictions.bias", cfg) is None


# ---- (2) strict loading of official-format files ---------------------------------------------------------
def test_tiny_official_files_load_strictly_and_tag_deterministically(tmp_path):
    src = _tiny_model()
    images = torch.rand(3, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores = torch.sigmoid(src.logits(src.preprocess(images)))  # (3 images, 10 classes)
    # Per-class threshold = the median score over the 3 images: each class is on for exactly one image.
    ram_path, _ = _write_official(tmp_path, src)
    tags, thr = _write_vocab(tmp_path, 10, [float(v) for v in scores.median(0).values])
    a = load_ram(ram_path, RamConfig.tiny(), tag_list=tags, thresholds=thr)
    b = load_ram(ram_path, RamConfig.tiny(), tag_list=tags, thresholds=thr)
    for k, v in src.state_dict().items():
        assert torch.equal(a.state_dict()[k], v), k
    ta, tb = a.generate_tags(images), b.generate_tags(images)
    assert ta == tb == a.generate_tags(images)
    winner = scores.argmax(0).tolist()
    expect = [", ".join(f"tag {c}" for c in range(10) if winner[c] == i) for i in range(3)]
    assert ta == expect
    assert sum(len(t.split(", ")) for t in ta if t) == 10
    assert tuple(a.image_embeds(a.preprocess(images)).shape) == (3, RamConfig.tiny().num_image_tokens, 24)


def test_vision_multi_alias_is_accepted(tmp_path):
    src = _tiny_model()
    ram_sd, _ = official_state_dicts(src)
    ram_sd = {
        ("vision_multi." + k[len("tagging_head.") :]) if k.startswith("tagging_head.") else k: v
        for k, v in ram_sd.items()
    }
    torch.save({"model": ram_sd}, tmp_path / "ram.pth")
    m = load_ram(tmp_path / "ram.pth", RamConfig.tiny())
    assert torch.equal(m.fc.weight, src.fc.weight)
    w = "tagging_head.encoder.layer.0.output.dense.weight"
    assert torch.equal(m.state_dict()[w], src.state_dict()[w])


def test_renamed_tensor_is_rejected_by_name(tmp_path):
    ram_sd, _ = official_state_dicts(_tiny_model())
    ram_sd["image_proj.weights"] = ram_sd.pop("image_proj.weight")
    path = tmp_path / "ram.pth"
    torch.save({"model": ram_sd}, path)
    with pytest.raises(RamCheckpointError) as err:
        load_ram(path, RamConfig.tiny())
    msg = str(err.value)
    assert str(path) in msg
    assert re.search(r"missing \(1\): image_proj\.weight\b", msg)
    assert re.search(r"unexpected \(1\): image_proj\.weights\b", msg)


def test_misshapen_tensor_is_rejected_by_name(tmp_path):
    ram_sd, _ = official_state_dicts(_tiny_model())
    ram_sd["label_embed"] = ram_sd["label_embed"][:-1]
    ram_sd["text_decoder.cls.predictions.bias"] = torch.zeros(3)  # unused parts are checked too
    torch.save({"model": ram_sd}, tmp_path / "ram.pth")
    with pytest.raises(
        RamCheckpointError, match=r"misshapen \(2\): label_embed: file \(9, 24\) vs expected \(10, 24\)"
    ):
        load_ram(tmp_path / "ram.pth", RamConfig.tiny())


def test_wrong_container_and_missing_files_are_reported(tmp_path):
    ram_sd, _ = official_state_dicts(_tiny_model())
    torch.save(ram_sd, tmp_path / "flat.pth")
    with pytest.raises(RamCheckpointError, match=r"expected a dict \{'model': state_dict\}"):
        load_ram(tmp_path / "flat.pth", RamConfig.tiny())
    missing = tmp_path / "nowhere" / "ram_swin_large_14m.pth"
    with pytest.raises(RamFileMissingError) as err:
        load_ram(missing, RamConfig.tiny())
    assert str(missing) in str(err.value) and "xinyu1205" in str(err.value)
    torch.save({"model": ram_sd}, tmp_path / "ram.pth")
    with pytest.raises(RamFileMissingError, match=r"dape file not found: .*DAPE\.pth\. Get it: .*SeeSR"):
        load_dape(tmp_path / "ram.pth", tmp_path / "DAPE.pth", RamConfig.tiny())
    with pytest.raises(RamFileMissingError, match="tag_list file not found"):
        load_ram(tmp_path / "ram.pth", RamConfig.tiny(), tag_list=tmp_path / "tags.txt")


def test_dape_file_with_non_lora_tensor_is_rejected(tmp_path):
    src = _tiny_model(lora=LoraConfig())
    ram_path, dape_path = _write_official(tmp_path, src, with_dape=True)
    dape_sd = torch.load(dape_path)
    dape_sd["fc.weight"] = torch.zeros(1, 32)
    del dape_sd["visual_encoder.layers.0.blocks.0.attn.qkv.lora_A"]
    torch.save(dape_sd, dape_path)
    with pytest.raises(RamCheckpointError) as err:
        load_dape(ram_path, dape_path, RamConfig.tiny())
    msg = str(err.value)
    assert "dape file" in msg and str(dape_path) in msg
    assert "missing (1): visual_encoder.layers.0.blocks.0.attn.qkv.lora_A" in msg
    assert "unexpected (1): fc.weight" in msg


# ---- (3) tags and thresholds -------------------------------------------------------------------------------
def _constant_logit_model(tmp_path: Path, thresholds: list[float], logit: float = 0.0) -> Ram:
    src = _tiny_model()
    with torch.no_grad():
        src.fc.weight.zero_()
        src.fc.bias.fill_(logit)  # every class scores sigmoid(logit)
    ram_path, _ = _write_official(tmp_path, src)
    tags, thr = _write_vocab(tmp_path, 10, thresholds)
    return load_ram(ram_path, RamConfig.tiny(), tag_list=tags, thresholds=thr)


def test_tags_above_threshold_joined_in_index_order(tmp_path):
    thr = [0.6] * 10
    for i in (7, 2, 5):
        thr[i] = 0.49
    thr[9] = 0.5  # sigmoid(0) = 0.5 is not > 0.5: strict comparison
    model = _constant_logit_model(tmp_path, thr)
    images = torch.rand(2, 3, 32, 32)
    assert model.generate_tags(images) == ["tag 2, tag 5, tag 7"] * 2
    assert model.generate_tags(images, separator=" | ") == ["tag 2 | tag 5 | tag 7"] * 2


def test_no_tag_gives_empty_string_and_default_threshold(tmp_path):
    src = _tiny_model()
    with torch.no_grad():
        src.fc.weight.zero_()
        src.fc.bias.fill_(0.7)  # sigmoid 0.668: below 0.68 (default), above 0.65
    ram_path, _ = _write_official(tmp_path, src)
    tags, _ = _write_vocab(tmp_path, 10)
    model = load_ram(ram_path, RamConfig.tiny(), tag_list=tags)
    assert model.class_threshold.tolist() == pytest.approx([0.68] * 10)
    assert model.generate_tags(torch.rand(1, 3, 32, 32)) == [""]


def test_threshold_file_parsing(tmp_path):
    p = tmp_path / "thr.txt"
    p.write_text(" 0.65\n0.8 \n0.9\n", encoding="utf-8")
    assert parse_thresholds(p, 5) == pytest.approx([0.65, 0.8, 0.9, 0.68, 0.68])
    assert parse_thresholds(p, 3, default=0.5) == pytest.approx([0.65, 0.8, 0.9])
    with pytest.raises(ValueError, match="3 thresholds for 2 classes"):
        parse_thresholds(p, 2)
    p.write_text("0.65\n\n0.9\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"thr\.txt:2: not a threshold"):
        parse_thresholds(p, 5)


def test_vocabulary_size_must_match_model(tmp_path):
    ram_path, _ = _write_official(tmp_path, _tiny_model())
    tags, _ = _write_vocab(tmp_path, 9)
    with pytest.raises(ValueError, match="9 tags"):
        load_ram(ram_path, RamConfig.tiny(), tag_list=tags)


# ---- (4) DAPE LoRA -----------------------------------------------------------------------------------------
def test_dape_lora_only_file_applies_w_plus_scale_b_a(tmp_path):
    lora = LoraConfig()
    src = _tiny_model(lora=lora)
    g = torch.Generator().manual_seed(3)
    qkv_name = "visual_encoder.layers.1.blocks.0.attn.qkv"
    q_name = "tagging_head.encoder.layer.0.crossattention.self.query"
    mods = dict(src.named_modules())
    with torch.no_grad():
        for name in (qkv_name, q_name):
            m = mods[name]
            m.lora_A.copy_(torch.randn(m.lora_A.shape, generator=g))
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g))
        mods[q_name].tied_lora_A.copy_(torch.randn(mods[q_name].tied_lora_A.shape, generator=g))
        mods[q_name].tied_lora_B.copy_(torch.randn(mods[q_name].tied_lora_B.shape, generator=g))
    ram_path, dape_path = _write_official(tmp_path, src, with_dape=True)
    dape_sd = torch.load(dape_path)
    assert all("lora_" in k for k in dape_sd)
    base = torch.load(ram_path)["model"]

    dape = load_dape(ram_path, dape_path, RamConfig.tiny())
    ram = load_ram(ram_path, RamConfig.tiny())
    s = 1.0 / 8.0  # loralib lora_alpha=1, r=8
    assert lora.scaling == s

    # Swin qkv: loralib MergedLinear, enable [q, k, v] = [True, False, True].
    off = qkv_name  # block names are the same in both layouts (only downsample moves)
    w, b = base[off + ".weight"], base[off + ".bias"]
    a_, b_ = dape_sd[off + ".lora_A"], dape_sd[off + ".lora_B"]
    dim, r = w.shape[1], 8
    delta = torch.cat([b_[:dim] @ a_[:r], torch.zeros(dim, dim), b_[dim:] @ a_[r:]])
    x = torch.randn(5, dim, generator=g)
    layer = dict(dape.named_modules())[qkv_name]
    assert isinstance(layer, LoraLinear)
    torch.testing.assert_close(layer(x), F.linear(x, w + s * delta, b), rtol=0, atol=1e-6)
    torch.testing.assert_close(layer.delta_weight()[dim : 2 * dim], torch.zeros(dim, dim), rtol=0, atol=0)

    # Head query: its own LoRA plus the tied tag_encoder layer-0 LoRA, both merged into the shared weight.
    wq, bq = base[q_name + ".weight"], base[q_name + ".bias"]
    own = dape_sd[q_name + ".lora_B"] @ dape_sd[q_name + ".lora_A"]
    t = "tag_encoder.encoder.layer.0.crossattention.self.query"
    tied = dape_sd[t + ".lora_B"] @ dape_sd[t + ".lora_A"]
    xq = torch.randn(4, wq.shape[1], generator=g)
    qlayer = dict(dape.named_modules())[q_name]
    torch.testing.assert_close(qlayer(xq), F.linear(xq, wq + s * (own + tied), bq), rtol=0, atol=1e-5)

    images = torch.rand(2, 3, 32, 32, generator=g)
    x = ram.preprocess(images)
    assert not torch.allclose(dape.image_embeds(x), ram.image_embeds(x))
    assert not torch.allclose(dape.logits(x), ram.logits(x))
    # With zero LoRA B (loralib's init) DAPE equals RAM.
    with torch.no_grad():
        for m in dape.modules():
            if isinstance(m, LoraLinear):
                m.lora_B.zero_()
                if hasattr(m, "tied_lora_B"):
                    m.tied_lora_B.zero_()
    torch.testing.assert_close(dape.logits(x), ram.logits(x), rtol=0, atol=1e-6)
