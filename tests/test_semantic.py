"""srlab.models.semantic: c_sem extractors (SAM2 official-format loading, the released preprocessing) and the
semantic blocks hooked into diffusers' text attentions."""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from helpers import load_all, seeded
from torchvision import transforms

from srlab.models import prompts, semantic
from srlab.models.params import PromptParams, SemanticParams
from srlab.models.semantic import CheckpointMismatchError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_semantic() -> SemanticParams:
    return load_all(ROOT / "params.yaml").model.semantic


@pytest.fixture(scope="module")
def tiny_sam(tiny_semantic: SemanticParams) -> torch.nn.Module:
    with seeded(0):
        sam = semantic.load_sam2(tiny_semantic.sam2_config, None, tiny_semantic.sam2_overrides)
    with torch.no_grad():  # random weights leave no_mem_embed at 0; make it count in the comparisons
        sam.no_mem_embed.normal_(generator=torch.Generator().manual_seed(1))
    return sam


def lr_batch(batch: int = 2, size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Extractors
# ---------------------------------------------------------------------------------------------


def released_c_sem(sam: torch.nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """The released code's steps (test_seesr_sam.py + SAM2ImagePredictor.generate_image_embedding)."""
    size = sam.image_size
    sam_transforms = transforms.Compose(
        [transforms.Resize((size, size)), transforms.Normalize(semantic.IMAGENET_MEAN, semantic.IMAGENET_STD)]
    )
    with torch.no_grad():
        backbone_out = sam.forward_image(sam_transforms(lr))
        _, vision_feats, _, _ = sam._prepare_backbone_features(backbone_out)
        if sam.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + sam.no_mem_embed
        return torch.cat((vision_feats[-1].permute(1, 0, 2), vision_feats[-1].permute(1, 0, 2)), dim=2)


def test_sam2_c_sem_equals_the_released_computation(tiny_sam: torch.nn.Module) -> None:
    extractor = semantic.Sam2Extractor(tiny_sam, tokens=256, width=512)
    lr = lr_batch()
    ours = extractor(lr)
    assert ours.shape == (2, 256, 512)  # tiny: 256 px -> 16x16 map
    torch.testing.assert_close(ours, released_c_sem(tiny_sam, lr), rtol=1e-5, atol=1e-5)
    assert torch.equal(ours[..., :256], ours[..., 256:])  # 256 channels duplicated to 512


def test_sam2_official_checkpoint_round_trip(
    tiny_sam: torch.nn.Module, tiny_semantic: SemanticParams, tmp_path: Path
) -> None:
    ckpt = tmp_path / "sam2_tiny.pt"
    torch.save({"model": tiny_sam.state_dict()}, ckpt)  # the official format
    params = dataclasses.replace(tiny_semantic, sam2_checkpoint=str(ckpt))
    with seeded(123):  # a different random init, replaced by the checkpoint
        loaded = semantic.build_extractor(params)
    lr = lr_batch()
    torch.testing.assert_close(loaded(lr), semantic.Sam2Extractor(tiny_sam, 256, 512)(lr), rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_sam2_bad_checkpoints_name_the_problem(
    tiny_sam: torch.nn.Module, tiny_semantic: SemanticParams, tmp_path: Path
) -> None:
    missing = tmp_path / "absent.pt"
    with pytest.raises(
        FileNotFoundError, match=r"absent\.pt: SAM2 checkpoint not found.*facebook/sam2\.1-hiera-tiny"
    ):
        semantic.load_sam2(tiny_semantic.sam2_config, str(missing), tiny_semantic.sam2_overrides)
    state = tiny_sam.state_dict()
    raw = tmp_path / "raw.pt"
    torch.save(state, raw)  # a bare state dict is not the official format
    with pytest.raises(CheckpointMismatchError, match=r"expected the official format"):
        semantic.load_sam2(tiny_semantic.sam2_config, str(raw), tiny_semantic.sam2_overrides)
    broken = dict(state)
    del broken["no_mem_embed"]
    broken["image_encoder.neck.convs.0.conv.bias"] = torch.zeros(7)
    bad = tmp_path / "bad.pt"
    torch.save({"model": broken}, bad)
    with pytest.raises(CheckpointMismatchError) as err:
        semantic.load_sam2(tiny_semantic.sam2_config, str(bad), tiny_semantic.sam2_overrides)
    message = str(err.value)
    assert "1 missing (no_mem_embed)" in message
    assert "1 misshapen (image_encoder.neck.convs.0.conv.bias: file (7,) vs model (256,))" in message


def test_hiera_t_at_1024_gives_4096_tokens_of_512() -> None:
    with seeded(0):
        sam = semantic.load_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None)
    assert sum(p.numel() for p in sam.image_encoder.parameters()) == pytest.approx(27.2e6, rel=2e-3)
    extractor = semantic.Sam2Extractor(sam, tokens=4096, width=512)
    c_sem = extractor(lr_batch(batch=1, size=128))  # LR of any size is resized to 1024
    assert c_sem.shape == (1, 4096, 512)
    assert torch.equal(c_sem[..., :256], c_sem[..., 256:])


def test_token_pooling_and_its_checks(tiny_sam: torch.nn.Module) -> None:
    lr = lr_batch()
    full = semantic.Sam2Extractor(tiny_sam, tokens=256, width=256)(lr)  # (B, 16*16, 256)
    pooled = semantic.Sam2Extractor(tiny_sam, tokens=16, width=256)(lr)  # (B, 4*4, 256)
    grid = full.transpose(1, 2).reshape(2, 256, 16, 16)  # (B, C, 16, 16)
    expected = F.avg_pool2d(grid, 4).flatten(2).transpose(1, 2)
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"model\.semantic\.tokens = 200: .* 16x16 map"):
        semantic.Sam2Extractor(tiny_sam, tokens=200, width=512)
    with pytest.raises(ValueError, match=r"model\.semantic\.tokens = 36"):
        semantic.Sam2Extractor(tiny_sam, tokens=36, width=512)  # 6 does not divide 16
    with pytest.raises(ValueError, match=r"model\.semantic\.width = 300 must be a multiple of SAM2's 256"):
        semantic.Sam2Extractor(tiny_sam, tokens=256, width=300)


def test_extractor_input_checks(tiny_sam: torch.nn.Module) -> None:
    extractor = semantic.Sam2Extractor(tiny_sam, tokens=256, width=512)
    with pytest.raises(ValueError, match=r"\(B, 3, h, w\), got \(3, 8, 8\)"):
        extractor(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got \[-1\.000"):
        extractor(torch.full((1, 3, 8, 8), -1.0))


def test_none_extractor_and_registries_match_the_config(tiny_semantic: SemanticParams) -> None:
    none = semantic.build_extractor(dataclasses.replace(tiny_semantic, extractor="none"))
    assert none(lr_batch()) is None
    hints = typing.get_type_hints(SemanticParams)
    assert set(semantic.EXTRACTORS) == set(typing.get_args(hints["extractor"]))
    assert set(prompts.TAG_SOURCES) == set(typing.get_args(typing.get_type_hints(PromptParams)["tags"]))


# ---------------------------------------------------------------------------------------------
# Semantic blocks
# ---------------------------------------------------------------------------------------------


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    sizes = load_all(ROOT / "params.yaml").model.tiny
    from srlab.models.sr_model import tiny_unet_config

    with seeded(seed):
        return UNet2DConditionModel.from_config(tiny_unet_config(sizes))


def text_attention(seed: int = 0) -> Transformer2DModel:
    with seeded(seed):
        return Transformer2DModel(
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=32,
            norm_num_groups=8,
            cross_attention_dim=24,
            use_linear_projection=True,
        )


def test_semantic_block_runs_after_the_text_attention_with_c_sem() -> None:
    unet = tiny_unet()
    with seeded(1):
        semantic.add_semantic_blocks(unet, width=12, kind="full", init="random")
    attention, twin = unet.down_blocks[0].attentions[0], unet.down_blocks[0].image_attentions[0]
    g = torch.Generator().manual_seed(0)
    hidden, text = torch.randn(2, 32, 4, 4, generator=g), torch.randn(2, 5, 32, generator=g)
    c_sem = torch.randn(2, 7, 12, generator=g)

    def call(c: torch.Tensor | None) -> torch.Tensor:
        kwargs = {"c_sem": c}
        return attention(
            hidden, encoder_hidden_states=text, cross_attention_kwargs=kwargs, return_dict=False
        )[0]

    text_only = call(None)
    torch.testing.assert_close(
        call(c_sem), twin(text_only, encoder_hidden_states=c_sem, return_dict=False)[0]
    )
    shared = call(c_sem[:1])  # batch 1 is shared by the whole batch
    torch.testing.assert_close(shared, call(c_sem[:1].expand(2, -1, -1)))
    with pytest.raises(
        ValueError, match=r"needs c_sem: call it with cross_attention_kwargs=\{'c_sem': tokens\}"
    ):
        attention(hidden, encoder_hidden_states=text)
    with pytest.raises(ValueError, match=r"c_sem batch 3 does not match the model batch 2"):
        call(torch.randn(3, 7, 12))


def test_cross_only_block_is_the_full_block_without_self_attention_and_feed_forward() -> None:
    attention = text_attention()
    with seeded(2):
        full = semantic.semantic_block_like(attention, 12, "full")
        light = semantic.semantic_block_like(attention, 12, "cross_only")
    assert set(light.state_dict()) < set(full.state_dict())  # a subset of the authors' layout
    light.load_state_dict({k: v for k, v in full.state_dict().items() if k in light.state_dict()})
    block = full.transformer_blocks[0]
    for layer in (block.attn1.to_out[0], block.ff.net[2]):  # self-attention and feed-forward add nothing
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    g = torch.Generator().manual_seed(3)
    hidden, c_sem = torch.randn(2, 32, 4, 4, generator=g), torch.randn(2, 7, 12, generator=g)
    expected = full(hidden, encoder_hidden_states=c_sem, return_dict=False)[0]
    torch.testing.assert_close(light(hidden, encoder_hidden_states=c_sem)[0], expected, rtol=1e-5, atol=1e-5)


class RecordingProcessor(AttnProcessor2_0):
    """Records whether c_sem ever reaches an attention processor."""

    seen: list[str] = []  # noqa: RUF012

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,  # type: ignore[no-untyped-def]
        c_sem=None,
        *args,
        **kwargs,
    ):
        if c_sem is not None:
            RecordingProcessor.seen.append("c_sem")
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def test_c_sem_never_reaches_diffusers_attention_processors_and_deepcopy_keeps_blocks_apart() -> None:
    unet = tiny_unet()
    with seeded(4):
        semantic.add_semantic_blocks(unet, 512, "full", "random")
    unet.set_attn_processor(RecordingProcessor())
    g = torch.Generator().manual_seed(5)
    x, text = torch.randn(1, unet.config.in_channels, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    c_sem = torch.randn(1, 16, 512, generator=g)
    run = lambda net: net(x, 10, encoder_hidden_states=text, cross_attention_kwargs={"c_sem": c_sem}).sample  # noqa: E731
    with torch.no_grad():
        before = run(unet)
        twin = copy.deepcopy(unet)
        for block in semantic.semantic_modules(twin):
            torch.nn.init.zeros_(block.proj_out.weight)
        assert torch.equal(run(unet), before)  # the copy's hooks use the copy's blocks
        assert not torch.allclose(run(twin), before)
    assert RecordingProcessor.seen == []
    with pytest.raises(ValueError, match="already has semantic blocks"):
        semantic.add_semantic_blocks(unet, 512, "full", "random")
