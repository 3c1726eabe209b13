"""Upscaling a folder of user photos (``srlab upscale``): every readable file, whatever else is there.

One bad file never stops the batch: a file that cannot be decoded (empty, truncated, not an image,
over the pixel limit, a decompression bomb) is skipped with its reason and the next one runs. Phone
photos are read upright (EXIF orientation) and in sRGB (srlab.io). Each output is written atomically
with the user's umask; a finished output is kept on a rerun (``overwrite=False``), so an interrupted
batch resumes where it stopped (not in release fidelity, whose one random stream runs over all inputs:
there a rerun needs ``overwrite``). ``manifest.json`` beside the outputs records, per image, the input,
the seed, the sampler settings and the weights, rewritten atomically after every image.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from srlab import io
from srlab.config import as_dict
from srlab.sampling.params import SamplerParams
from srlab.sampling.pipeline import SRPipeline
from srlab.sampling.upscale import RandomStreams, output_path, upscale_file

MANIFEST = "manifest.json"


@dataclass
class BatchReport:
    """What a batch did, per input: written, kept (a finished output from an earlier run), skipped."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # output name -> sampling time
    first_image_s: float | None = None  # from ``start`` to the first written image

    def summary(self) -> str:
        return (
            f"upscaled {len(self.written)}, kept {len(self.kept)} finished from an earlier run, "
            f"skipped {len(self.skipped)} unreadable"
        )

    def __str__(self) -> str:
        return "\n".join(
            [*(f"  skipped {name}: {why}" for name, why in self.skipped.items()), self.summary()]
        )


def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their image files (sorted); a missing path is kept, to be reported."""
    paths: list[Path] = []
    for item in map(Path, items):
        paths.extend(io.list_images(item) if item.is_dir() else [item])
    return paths


def _read_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}  # a manifest from an interrupted older version: rebuilt as the batch goes


def upscale_batch(
    pipe: SRPipeline,
    inputs: Sequence[Path],
    out_dir: Path,
    settings: SamplerParams,
    seed: int,
    weights: str,
    overwrite: bool = False,
    max_pixels: int | None = None,
    start: float | None = None,
    log: Callable[[str], None] = print,
) -> BatchReport:
    """Upscale each input into ``out_dir/<stem>.png`` (module docstring); never writes over an input."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report, start = BatchReport(), time.perf_counter() if start is None else start
    manifest = _read_manifest(out_dir)
    images: dict[str, Any] = manifest.get("images", {})
    sources = {p.resolve() for p in inputs}
    claimed: dict[str, Path] = {}
    streams = RandomStreams(seed, pipe.device, pipe.fidelity)
    if streams.release:  # one random stream over the inputs in the released script's order
        inputs = sorted(inputs, key=str)
        done = [p for p in inputs if output_path(out_dir, p, sources).is_file()]
        if done and not overwrite:
            raise FileExistsError(
                f"{out_dir} holds {len(done)} output(s) of an earlier run; release fidelity draws one random "
                "stream over all inputs in order, so resuming would change every later image: pass "
                "--overwrite or choose a new --out"
            )

    def record(name: str, entry: dict[str, Any]) -> None:  # the manifest, rewritten after every entry
        images[name] = entry
        with io.atomic_path(out_dir / MANIFEST) as tmp:
            tmp.write_text(json.dumps({"images": images}, indent=1) + "\n")

    for path in tqdm(inputs, desc=f"upscale x{settings.upscale}", unit="image"):
        target = output_path(out_dir, path, sources)
        if target.name in claimed:
            report.skipped[str(path)] = f"same output name as {claimed[target.name]} ({target.name})"
            continue
        claimed[target.name] = path
        if target.is_file() and not overwrite:
            report.kept.append(target)
            continue
        began = time.perf_counter()
        try:
            lr, sr = upscale_file(pipe, path, target, settings, streams, max_pixels)
        except (io.ImageReadError, FileNotFoundError, IsADirectoryError) as err:
            report.skipped[str(path)] = str(err)
            record(target.name, {"input": str(path), "status": "skipped", "reason": str(err)})
            continue
        report.written.append(target)
        report.seconds[target.name] = time.perf_counter() - began
        if report.first_image_s is None:
            report.first_image_s = time.perf_counter() - start
            log(f"first image after {report.first_image_s:.1f} s (start-up, weights and sampling)")
        record(target.name, {
            "input": str(path), "status": "written", "seed": streams.describe(path.stem),
            "input_size": list(lr.shape[1:]), "output_size": list(sr.shape[1:]),
            "seconds": round(report.seconds[target.name], 3), "settings": as_dict(settings),
            "weights": weights,
        })  # fmt: skip
    return report
