"""``srlab upscale`` on a folder of the files a phone or download folder holds (issue 17)."""

from __future__ import annotations

import ast
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_all
from PIL import Image

from srlab.models.sr_model import build_sr_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
READABLE = {  # name -> (displayed height, width)
    "rgb.png": (24, 20), "gray.png": (16, 16), "alpha.png": (20, 16), "palette.png": (16, 24),
    "deep16.png": (16, 16), "cmyk.jpg": (24, 16), "phone.jpg": (40, 32), "web.webp": (16, 20),
    "dot.png": (1, 1),
}  # fmt: skip
BAD = ("empty.png", "truncated.png", "notes.png", "bomb.png")


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` pixels (no image data): a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def photo_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def rgb(h: int, w: int) -> np.ndarray:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    Image.fromarray(rgb(24, 20)).save(folder / "rgb.png")
    Image.fromarray(rgb(16, 16)[..., 0]).save(folder / "gray.png")
    Image.fromarray(np.dstack([rgb(20, 16), rgb(20, 16)[..., :1]]), "RGBA").save(folder / "alpha.png")
    Image.fromarray(rgb(16, 24)).convert("P").save(folder / "palette.png")
    Image.fromarray(rng.integers(0, 65536, (16, 16), dtype=np.uint16)).save(folder / "deep16.png")
    Image.fromarray(rgb(24, 16)).convert("CMYK").save(folder / "cmyk.jpg")
    stored = Image.fromarray(rgb(32, 40))  # stored 40 wide, 32 high; orientation 6: displayed 32 x 40
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(folder / "phone.jpg", exif=exif)
    Image.fromarray(rgb(16, 20)).save(folder / "web.webp")
    Image.fromarray(rgb(1, 1)).save(folder / "dot.png")
    (folder / "empty.png").write_bytes(b"")
    Image.fromarray(rgb(16, 16)).save(folder / "whole.png")
    (folder / "truncated.png").write_bytes((folder / "whole.png").read_bytes()[:60])
    (folder / "whole.png").unlink()
    (folder / "notes.png").write_text("not an image\n")
    _png_header_only(folder / "bomb.png", 60000, 60000)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model's weights in the authors' layout (random: the test checks the batch, not the images)."""
    params = load_all(ROOT / "params.yaml")
    model = build_sr_model(params.model, "cpu", torch.Generator().manual_seed(0))
    return save_checkpoint(model, tmp_path_factory.mktemp("weights") / "checkpoint")


def upscale(inputs: Path, out: Path, weights: Path, *extra: str) -> subprocess.CompletedProcess:
    """The command as a user runs it, under umask 022; prints srlab's loaded modules last."""
    code = (
        "import os, sys; os.umask(0o022); from srlab import cli; rc = cli.main(sys.argv[1:]); "
        "print('MODULES', sorted(m for m in sys.modules if m.startswith('srlab'))); "
        "sys.exit(rc)"
    )
    args = [str(inputs), "--out", str(out), "--weights", str(weights), "--steps", "1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, "upscale", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )


def test_a_messy_folder_gives_4x_outputs_reasons_and_a_nonzero_exit(tmp_path: Path, weights: Path) -> None:
    photo_folder(tmp_path / "in")
    run = upscale(tmp_path / "in", tmp_path / "out", weights)
    assert run.returncode == 1, run.stderr  # some inputs were skipped
    for name, (h, w) in READABLE.items():
        with Image.open(tmp_path / "out" / f"{Path(name).stem}.png") as im:
            assert im.size == (4 * w, 4 * h), name  # phone.jpg: upright, 128 x 160
            assert im.mode == "RGB"
        assert (tmp_path / "out" / f"{Path(name).stem}.png").stat().st_mode & 0o777 == 0o644
    for name in BAD:
        assert f"skipped {tmp_path / 'in' / name}: " in run.stdout, name
        assert not (tmp_path / "out" / f"{Path(name).stem}.png").exists()
    assert "bomb.png: cannot read image (DecompressionBombError" in run.stdout  # PIL refuses it at open
    assert "upscaled 9, kept 0 finished from an earlier run, skipped 4 unreadable" in run.stdout
    assert "first image after " in run.stdout
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())["images"]
    assert manifest["phone.png"]["status"] == "written" and manifest["phone.png"]["output_size"] == [160, 128]
    assert manifest["phone.png"]["settings"]["upscale"] == 4 and manifest["phone.png"]["weights"] == str(
        weights
    )
    assert manifest["bomb.png"]["status"] == "skipped"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary files left
    modules = ast.literal_eval(run.stdout.rsplit("MODULES ", 1)[1].strip())
    assert not [m for m in modules if m.startswith(("srlab.training", "srlab.data.", "srlab.evaluation"))]
    assert not [m for m in modules if m.startswith(("srlab.reporting", "srlab.ablations"))]
    assert "srlab.sampling.pipeline" in modules  # the check sees srlab's modules at all


def test_a_rerun_makes_only_the_missing_outputs(tmp_path: Path, weights: Path) -> None:
    photo_folder(tmp_path / "in")
    for name in BAD:
        (tmp_path / "in" / name).unlink()
    first = upscale(tmp_path / "in", tmp_path / "out", weights)
    assert first.returncode == 0, first.stderr
    made = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")}
    gone = ["rgb.png", "web.png"]  # as an interruption would leave it: these never finished
    for name in gone:
        (tmp_path / "out" / name).unlink()
    again = upscale(tmp_path / "in", tmp_path / "out", weights)
    assert again.returncode == 0 and "upscaled 2, kept 7 finished from an earlier run" in again.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")}
    assert sorted(after) == sorted(made)
    assert all(after[n] == made[n] for n in made if n not in gone)  # finished outputs untouched
    forced = upscale(tmp_path / "in", tmp_path / "out", weights, "--overwrite", "--max-pixels", "1000")
    assert forced.returncode == 1 and "upscaled 8, kept 0" in forced.stdout  # phone.jpg: 1280 pixels
    assert (
        "phone.jpg: 40x32 = 1280 pixels is over the limit of 1000 (raise it with --max-pixels)"
        in forced.stdout
    )


def test_help_names_the_two_tracks_and_the_scale() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "srlab.cli", "upscale", "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    assert "--track synthetic" in out and "--track wild" in out and "--scale SCALE" in out
    assert "--max-pixels" in out and "--overwrite" in out
