"""Release fidelity (srlab.sampling.release): the released code's rules, checked on worked cases.

Expected values are written out by hand from the facts in docs/research/release_inference.md (which
cites the authors' test_seesr_sam.py / pipeline_seesr.py lines), or computed with PIL / torchvision
themselves, never with the functions under test.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import load_all
from PIL import Image

from srlab.models import sr_model
from srlab.models.prompts import FileTags, released_tags
from srlab.sampling import release
from srlab.sampling.pipeline import SRPipeline
from srlab.sampling.upscale import RandomStreams

PARAMS = load_all(Path(__file__).resolve().parents[1] / "params.yaml")


# ---------------------------------------------------------------------------------------------
# Latent tiles: the worked cases at the wild track (x1, process size 512, tile 96 / 32)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(540, 960), (360, 640), (600, 800)])
def test_wild_inputs_below_the_pixel_count_are_not_tiled(height: int, width: int) -> None:
    # latents 67x120 (8040 px), 45x80 (3600), 75x100 (7500): all <= 96**2 = 9216
    assert release.tile_boxes(height // 8, width // 8, 96, 32) == [(0, 0, height // 8, width // 8)]


def test_a_720p_wild_input_gets_three_square_tiles_at_the_released_offsets() -> None:
    # latent 90x160: tile side min(96, 90) = 90; x starts 0, 58 (= 90 - 32), then flush: 160 - 90 = 70
    assert release.tile_boxes(90, 160, 96, 32) == [(0, 0, 90, 90), (0, 58, 90, 90), (0, 70, 90, 90)]


def test_larger_latents_tile_on_both_axes() -> None:
    # 135x240 (docs/research/release_inference.md 4): x 0, 64, 128, 144; y 0, 39
    boxes = release.tile_boxes(135, 240, 96, 32)
    assert sorted({b[1] for b in boxes}) == [0, 64, 128, 144]
    assert sorted({b[0] for b in boxes}) == [0, 39]
    assert {b[2:] for b in boxes} == {(96, 96)}


def test_window_is_a_narrow_gaussian_centred_asymmetrically() -> None:
    side = 90
    w = release.window(side)
    assert w.dtype == torch.float64 and w.shape == (side, side)
    # across: centre (side - 1) / 2 = 44.5, so columns 44 and 45 are equal maxima
    row = w[45]
    assert row[44] == row[45] == row.max()
    # the edge weight over the maximum (0.5 px from the centre):
    # exp(-(44.5**2 - 0.5**2) / 90**2 / 0.02), ~5e-6
    edge = math.exp(-(44.5**2 - 0.5**2) / 90**2 / 0.02)
    assert (row[0] / row[44]).item() == pytest.approx(edge, rel=1e-9)
    assert 4e-6 < edge < 6e-6
    # down: centre side / 2 = 45, so rows 44 and 46 are equal, row 45 the maximum
    col = w[:, 0]
    assert col[45] == col.max() and col[44].item() == pytest.approx(col[46].item(), rel=1e-12)
    # peak value: (1 / sqrt(2 pi 0.01)) * exp(-0.5**2 / 90**2 / 0.02) (across) * 1 / sqrt(2 pi 0.01)
    peak = 1 / (2 * math.pi * 0.01) * math.exp(-(0.5**2) / 90**2 / 0.02)
    assert w.max().item() == pytest.approx(peak, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Resizing: sizes from the script's int() arithmetic, pixels from PIL itself
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "upscale", "expected"),
    [
        ((1280, 720), 1, (1280, 720)),  # no resize at all
        ((640, 480), 1, (680, 512)),  # 682x512, then to multiples of 8
        ((128, 128), 4, (512, 512)),
        ((120, 90), 4, (680, 512)),  # 170x128 -> 680x512
        ((256, 256), 4, (1024, 1024)),
        ((249, 300), 1, (504, 616)),  # int(512/249*249) = 511: the short side ends one pixel short, then 504
    ],
)
def test_working_sizes_follow_the_scripts_arithmetic(
    size: tuple[int, int], upscale: int, expected: tuple[int, int]
) -> None:
    lr = Image.new("RGB", size, (10, 20, 30))
    assert release.condition_image(lr, upscale, 512).size == expected


def test_condition_pixels_are_three_chained_8_bit_pil_bicubic_resizes() -> None:
    rng = np.random.default_rng(0)
    lr = Image.fromarray(rng.integers(0, 256, (60, 49, 3), dtype=np.uint8), "RGB")  # W 49, H 60
    # x4, process 512: short side 49 < 128 -> scale 128/49: (int(127.999..), int(156.73)) = (127, 156)
    step1 = lr.resize((127, 156), Image.BICUBIC)
    step2 = step1.resize((508, 624), Image.BICUBIC)
    step3 = step2.resize((504, 624), Image.BICUBIC)
    assert np.array_equal(np.asarray(release.condition_image(lr, 4, 512)), np.asarray(step3))


def test_8_bit_rounding_points() -> None:
    # the decoded image is rounded (diffusers postprocess); the colour-fixed one truncated (ToPILImage)
    decoded = torch.full((1, 3, 1, 2), 0.0)
    decoded[..., 1] = 2 * (254.6 / 255) - 1  # -> 254.6 levels
    assert np.asarray(release.postprocess(decoded))[0, :, 0].tolist() == [128, 255]  # 127.5 -> 128 (round)
    fixed = torch.tensor([254.99 / 255, 0.5, 1.0]).view(3, 1, 1)
    assert np.asarray(release.truncate_to_pil(fixed))[0, 0].tolist() == [254, 127, 255]


def test_adain_puts_eps_inside_the_square_root_and_uses_unbiased_variance() -> None:
    content = torch.tensor([0.1, 0.3, 0.2, 0.6]).view(1, 1, 2, 2).expand(1, 3, 2, 2).contiguous()
    reference = torch.tensor([0.5, 0.5, 0.7, 0.9]).view(1, 1, 2, 2).expand(1, 3, 2, 2).contiguous()
    c, r = content[0, 0].flatten().double().numpy(), reference[0, 0].flatten().double().numpy()
    std_c, std_r = np.sqrt(np.var(c, ddof=1) + 1e-5), np.sqrt(np.var(r, ddof=1) + 1e-5)
    expected = np.clip((c - c.mean()) / std_c * std_r + r.mean(), 0, 1)
    got = release.adain(content, reference)[0, 0].flatten().double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # srlab's own AdaIN (eps outside the root) differs measurably on a flat-ish content
    flat = torch.full((1, 3, 4, 4), 0.5)
    flat[..., 0, 0] = 0.501
    from srlab.sampling import colorfix

    assert not torch.allclose(release.adain(flat, reference.repeat(1, 1, 2, 2)),
                              colorfix.adain(flat, reference.repeat(1, 1, 2, 2)), atol=1e-3)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# SAM2 input: torchvision 0.15's tensor Resize, which did not antialias
# ---------------------------------------------------------------------------------------------


def test_release_sam2_input_is_resized_without_antialiasing() -> None:
    extractor = sr_model.build_sr_model(PARAMS.model, generator=torch.Generator().manual_seed(0)).semantic
    lr = torch.rand(1, 3, 300, 420, generator=torch.Generator().manual_seed(3))  # larger than 256 px
    size = extractor.image_size
    seen: list[torch.Tensor] = []
    handle = extractor.image_encoder.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    try:
        extractor(lr, antialias=False)
        extractor(lr, antialias=True)
    finally:
        handle.remove()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    plain = (F.interpolate(lr, size=(size, size), mode="bilinear", align_corners=False) - mean) / std
    torch.testing.assert_close(seen[0], plain, atol=1e-6, rtol=0)
    assert (seen[1] - plain).abs().max() > 0.01  # the antialiased resize is another image


# ---------------------------------------------------------------------------------------------
# Seeds: one stream over the images, drawn in the released order
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe() -> SRPipeline:
    model = sr_model.build_sr_model(PARAMS.model, generator=torch.Generator().manual_seed(0))
    return SRPipeline(model, fidelity="release")


RELEASE_WILD = dataclasses.replace(PARAMS.infer, kind_overrides={}).sampler("wild", preset="release")
FAST = dataclasses.replace(RELEASE_WILD, steps=2, process_size=32, guidance_scale=0.9)  # not the tiny knobs


def test_release_seed_stream_runs_across_images_in_the_released_draw_order(pipe: SRPipeline) -> None:
    """Image 2 of a release batch sees the generator after image 1's draws: the start latent, then one
    draw per DDPM step (t > 0 includes the last step), each of the latent's shape."""
    a = torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(1))
    b = torch.rand(3, 16, 12, generator=torch.Generator().manual_seed(2))
    streams = RandomStreams(5, torch.device("cpu"), "release")
    gen, posterior = streams.for_image("a")
    pipe(a, FAST, gen, posterior_generator=posterior)
    gen, posterior = streams.for_image("b")
    second = pipe(b, FAST, gen, posterior_generator=posterior)
    advanced = torch.Generator().manual_seed(5)
    # image a's working size: scale 32/12; int(32/12*12) = 32, int(32/12*16) = int(42.67) = 42 -> 40;
    # latent (tiny VAE factor 4) 8x10
    latent_a = (1, pipe.model.vae.config.latent_channels, 8, 10)
    for _ in range(1 + FAST.steps):
        torch.randn(latent_a, generator=advanced)
    again = pipe(b, FAST, advanced, posterior_generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, second)
    fresh = pipe(b, FAST, torch.Generator().manual_seed(5))
    assert not torch.equal(fresh, second)  # a fresh seed is not the released script's second image


def test_release_output_is_8_bit_and_exactly_upscale_times_the_input(pipe: SRPipeline) -> None:
    lr = torch.rand(3, 13, 11, generator=torch.Generator().manual_seed(4))
    out = pipe(lr, dataclasses.replace(FAST, upscale=4), torch.Generator().manual_seed(0))
    assert out.shape == (3, 52, 44)
    assert torch.equal(out * 255, (out * 255).round())  # levels k / 255 exactly


# ---------------------------------------------------------------------------------------------
# Prompt files of the released script's --save_prompts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("cat, dog, ,clean, high-resolution, 8k", "cat, dog"),  # --prompt '' and the default added prompt
        (", ,clean, high-resolution, 8k", ""),  # no tags above threshold
        ("cat, None,clean, high-resolution, 8k", "cat"),  # SeeSR's run script passes --prompt None
        ("cat, dog, ,", "cat, dog"),  # empty added prompt
        ("cat, dog", "cat, dog"),  # a plain tag file
        ("cat, dog,", "cat, dog,"),  # the training tag files' format (make_tags.py), kept as is
    ],
)
def test_released_prompt_files_give_their_tags_alone(text: str, tags: str) -> None:
    assert released_tags(text) == tags


def test_a_folder_of_released_prompt_files_does_not_double_the_added_prompt(tmp_path) -> None:
    (tmp_path / "0001.txt").write_text("tree, sky, ,clean, high-resolution, 8k")  # no trailing newline
    from srlab.sampling import sampler

    tags = FileTags(tmp_path)("0001.png")
    assert (
        sampler.build_prompt(tags, "", "clean, high-resolution, 8k")
        == "tree, sky, ,clean, high-resolution, 8k"
    )
