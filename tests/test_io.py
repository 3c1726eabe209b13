from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlab import io


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    image = io.read_image(tmp_path / "a.png")
    assert image.shape == (3, 7, 11) and image.dtype == torch.float32
    io.write_image(image, tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), array)


def test_grayscale_alpha_and_16bit_conversions(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 5), 51, np.uint8), "L").save(tmp_path / "gray.png")
    gray = io.read_image(tmp_path / "gray.png")
    assert gray.shape == (3, 4, 5) and torch.allclose(gray, torch.full_like(gray, 0.2))

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255  # red, half transparent -> blended over white
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    alpha = io.read_image(tmp_path / "alpha.png")
    a = 128 / 255
    assert torch.allclose(alpha[:, 0, 0], torch.tensor([1.0, 1 - a, 1 - a]), atol=1e-6)

    sixteen = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    deep = io.read_image(tmp_path / "deep.png")
    assert torch.allclose(deep[0], torch.from_numpy(sixteen / 65535.0).float(), atol=1e-6)


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(io.ImageReadError, match=r"broken\.png: cannot read image"):
        io.read_image(bad)
    with pytest.raises(FileNotFoundError):
        io.read_image(tmp_path / "missing.png")


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(ValueError), io.atomic_path(tmp_path / "x.png"):
        raise ValueError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        io.write_image(torch.zeros(4, 2, 2), tmp_path / "y.png")  # not RGB: refused before writing
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "stage"
    with pytest.raises(RuntimeError), io.atomic_dir(target) as staging:
        (staging / "half.txt").write_text("partial")
        raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with io.atomic_dir(target) as staging:
        (staging / "done.txt").write_text("ok")
    assert (target / "done.txt").read_text() == "ok"


def test_list_images_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in io.list_images(tmp_path)] == ["a.JPG", "b.png"]
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        io.list_images(tmp_path / "nope")


def test_vae_range_round_trip() -> None:
    x = torch.rand(1, 3, 4, 4)
    assert torch.allclose(io.from_vae_range(io.to_vae_range(x)), x, atol=1e-6)
