"""Upscaling many files: the infer stage (srlab.sampling.infer) and ``srlab upscale`` share this.

Per image: read (srlab.io conversions), sample, write atomically. Unreadable files are skipped and
reported; the batch goes on. Inputs are never overwritten. Random numbers come from ``RandomStreams``:
srlab fidelity seeds each image by (seed, image name), so its result does not depend on which other
images run with it; release fidelity draws the released script's one stream over the inputs in order.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from srlab import io
from srlab.config import Params
from srlab.models.sr_model import FINAL_DIR, SRModel, build_sr_model, prior_model_dir
from srlab.models.tagging import with_tag_cache
from srlab.sampling.params import InferParams, SamplerParams
from srlab.sampling.pipeline import SRPipeline


@dataclass
class UpscaleReport:
    """What a batch did: written files, and skipped inputs with the reason."""

    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"wrote {len(self.written)} image(s), skipped {len(self.skipped)}"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def image_seed(seed: int, name: str) -> int:
    """A per-image seed from the run seed and the image's name (stable across runs and orders)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63


class RandomStreams:
    """The generators each image samples with: (start latent and step noise, lr start's VAE sample).

    srlab: one generator per image seeded by ``image_seed(seed, name)``, serving both. release: as the
    released script with ``--seed seed`` (script:208-227): one generator seeded once and shared by all
    images in the order they come, and the VAE sample from the global RNG that ``accelerate.set_seed``
    seeded, here a second generator of its own (nothing global is touched)."""

    def __init__(self, seed: int, device: torch.device, fidelity: str) -> None:
        self.seed, self.device, self.release = seed, device, fidelity == "release"
        if self.release:
            self.shared = torch.Generator(device=device).manual_seed(seed)
            self.posterior = torch.Generator(device=device).manual_seed(seed)

    def for_image(self, name: str) -> tuple[torch.Generator, torch.Generator]:
        if self.release:
            return self.shared, self.posterior
        generator = torch.Generator(device=self.device).manual_seed(image_seed(self.seed, name))
        return generator, generator

    def describe(self, name: str) -> int | str:
        """What a manifest records as the image's seed."""
        return f"stream of seed {self.seed} (release)" if self.release else image_seed(self.seed, name)


def model_params_for_inference(params: Params, weights: str | Path | None) -> Params:
    """Point the model at trained weights: ``weights`` is a train stage folder (``final/``, and the tiny
    prior in ``../prior/model``),
    or a checkpoint in the authors' layout (``unet/`` + ``controlnet/``), or None (params as they are).
    A train stage folder also brings the tag stage's cache beside it (``tags: ram | dape``; images not in
    it are tagged on the fly)."""
    if weights is None:
        return params
    weights = Path(weights)
    model = params.model
    if (weights / FINAL_DIR).is_dir():
        model = with_tag_cache(params, weights.parent).model  # the tag stage's, beside the train stage's
        prior = prior_model_dir(weights.parent)  # the prior stage's, beside the train stage's folder
        if (prior / "unet").is_dir():  # the tiny profile (paper: model.sd2_path, SD2 base)
            model = dataclasses.replace(model, sd2_path=str(prior))
        model = dataclasses.replace(model, checkpoint=str(weights / FINAL_DIR))
    elif (weights / "unet").is_dir() and (weights / "controlnet").is_dir():
        model = dataclasses.replace(model, checkpoint=str(weights))
    else:
        raise FileNotFoundError(
            f"{weights}: expected a train stage folder (final/, prior/) or a checkpoint folder with "
            "unet/ and controlnet/ (e.g. the authors' checkpoint-90000); run `dvc repro train` or pass "
            "--weights"
        )
    return params.replace(model=model)


def resolve_device(infer: InferParams) -> tuple[torch.device, torch.dtype]:
    """``auto``: CUDA when available, else the CPU in fp32; on CUDA bf16, or fp16 (under autocast) in
    release fidelity, as the released script (script:140-150, 273)."""
    cuda = torch.cuda.is_available()
    device = torch.device(
        "cuda" if (infer.device == "auto" and cuda) else infer.device.replace("auto", "cpu")
    )
    if infer.dtype != "auto":
        return device, getattr(torch, infer.dtype)
    if device.type != "cuda":
        return device, torch.float32
    return device, torch.float16 if infer.fidelity == "release" else torch.bfloat16


def build_pipeline(params: Params, weights: str | Path | None = None) -> SRPipeline:
    """The SR pipeline for ``params`` with trained ``weights`` (see ``model_params_for_inference``)."""
    params = model_params_for_inference(params, weights)
    device, dtype = resolve_device(params.infer)
    model: SRModel = build_sr_model(params.model, device, torch.Generator().manual_seed(params.base.seed))
    return SRPipeline(model, device, dtype, params.infer.fidelity)


LONG_IMAGE_PIXELS = 512 * 512  # outputs at least this large show a bar over their denoising steps


def output_path(out_dir: Path, path: Path, sources: set[Path]) -> Path:
    """``out_dir/<stem>.png`` for the input ``path``; refuses a target that is one of the ``sources``."""
    target = out_dir / f"{path.stem}.png"
    if target.resolve() in sources:
        raise ValueError(f"{target} would overwrite an input; choose another --out folder")
    return target


def upscale_file(
    pipe: SRPipeline,
    path: Path,
    target: Path,
    settings: SamplerParams,
    streams: RandomStreams,
    max_pixels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read ``path``, sample it with the generators ``streams`` gives it, write ``target`` atomically;
    (LR, SR). Raises ``io.ImageReadError`` / ``FileNotFoundError`` for an input that cannot be read."""
    lr = io.read_image(path, max_pixels=max_pixels)
    generator, posterior = streams.for_image(path.stem)
    long = lr.shape[1] * lr.shape[2] * settings.upscale**2 >= LONG_IMAGE_PIXELS
    sr = pipe(lr, settings, generator, name=path.stem, progress=long, posterior_generator=posterior)
    io.write_image(sr, target)
    return lr, sr


def upscale_files(
    pipe: SRPipeline,
    inputs: Sequence[Path],
    out_dir: Path,
    settings: SamplerParams,
    seed: int,
    progress: bool = True,
) -> UpscaleReport:
    """Upscale each input into ``out_dir/<stem>.png``; refuses to write over an input file. In release
    fidelity the inputs run in sorted path order, as the released script globs them (script:230)."""
    report = UpscaleReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = {p.resolve() for p in inputs}
    streams = RandomStreams(seed, pipe.device, pipe.fidelity)
    if streams.release:
        inputs = sorted(inputs, key=str)
    for path in tqdm(inputs, desc=f"upscale x{settings.upscale}", disable=not progress):
        target = output_path(out_dir, path, sources)
        try:
            upscale_file(pipe, path, target, settings, streams)
        except (io.ImageReadError, FileNotFoundError) as err:
            report.skipped[str(path)] = str(err)
            continue
        report.written.append(target)
    return report
