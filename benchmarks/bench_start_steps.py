"""What the LR start's noise level does: the built tiny model on the held-out eval sets per
`start_steps` (and per scheduler): on clean x4 (`*_bicubic`) its RGB PSNR beside bicubic's, on wild x1
(`*_wild`) its NIQE (BasicSR's parameters; lower is better) beside the input's. `start_steps` 0 runs no
denoising step: the VAE round trip of the LR start alone, the cap of a low start.

Prints figures, asserts nothing. Needs a built `build/` (`make repro`). Scored as the evaluate stage
scores: the 8-bit output, bicubic as metrics.bicubic_upsample, seeds as the infer stage's.

    python benchmarks/bench_start_steps.py [--values 0,51,101,201] [--schedulers ddpm,ddim]

With the tiny profile's 20 DDPM steps the timesteps are 951, 901, ..., 51, 1 (leading spacing): a
`start_steps` between two of them noises the latent above the first step that runs (e.g. 100 runs from
51), which the sampler then under-denoises.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab import io  # noqa: E402
from srlab.config import load_params  # noqa: E402
from srlab.evaluation.fullref import psnr  # noqa: E402
from srlab.evaluation.metrics import MetricSuite, bicubic_upsample  # noqa: E402
from srlab.evaluation.params import EvaluateParams  # noqa: E402
from srlab.sampling import infer  # noqa: E402
from srlab.sampling.params import SamplerParams  # noqa: E402
from srlab.sampling.pipeline import SRPipeline  # noqa: E402
from srlab.sampling.upscale import RandomStreams, build_pipeline  # noqa: E402

KINDS = {"bicubic": ("synthetic", "PSNR", "bicubic"), "wild": ("wild", "NIQE", "input")}


def mean_score(images: dict[str, torch.Tensor], hrs: dict[str, torch.Tensor], niqe: MetricSuite) -> float:
    """Mean RGB PSNR against ``hrs`` (clean x4), or mean NIQE without them (wild)."""
    if hrs:
        values = [psnr(image, hrs[n], y_channel=False) for n, image in images.items()]
    else:
        values = [niqe.score(image)["niqe"] for image in images.values()]
    return sum(values) / len(values)


def sample(pipe: SRPipeline, lrs: dict[str, torch.Tensor], settings: SamplerParams, seed: int) -> dict:
    """Each LR image super-resolved as the infer stage does it (its seeds, its 8-bit file's levels)."""
    streams = RandomStreams(seed, pipe.device, pipe.fidelity)
    outputs = {}
    for name, lr in lrs.items():
        generator, posterior = streams.for_image(name)
        sr = pipe(lr, settings, generator, name=name, posterior_generator=posterior)
        outputs[name] = io.to_levels(sr) / 255
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default="0,1,51,100,101,151,201,401")
    parser.add_argument("--schedulers", default="ddpm,ddim")
    parser.add_argument("--build", default=str(ROOT / "build"))
    args = parser.parse_args()
    build = Path(args.build)
    params = load_params(None, None, {**infer.SECTIONS, "evaluate": EvaluateParams})
    pipe = build_pipeline(params, build / "train")
    niqe = MetricSuite(("niqe",), params.evaluate)
    grid = [(s, int(v)) for s in args.schedulers.split(",") for v in args.values.split(",")]
    print(f"{'set':14} {'scheduler':9} {'start_steps':>11} {'ours':>7} {'baseline':>18}")
    for suffix, (kind, metric, baseline) in KINDS.items():
        for folder in sorted((build / "degrade" / "eval").glob(f"*_{suffix}")):
            base = params.infer.sampler(kind, folder.name)
            lrs = {p.stem: io.read_image(p) for p in io.list_images(folder / "lr")}
            hrs = {n: io.read_image(folder / "hr" / f"{n}.png") for n in lrs} if kind == "synthetic" else {}
            ref = mean_score({n: bicubic_upsample(lr, base.upscale) for n, lr in lrs.items()}, hrs, niqe)
            for scheduler, value in grid:
                settings = dataclasses.replace(base, start_steps=value, scheduler=scheduler)
                ours = mean_score(sample(pipe, lrs, settings, params.base.seed), hrs, niqe)
                mark = "  (params.yaml)" if (value, scheduler) == (base.start_steps, base.scheduler) else ""
                row = f"{folder.name:14} {scheduler:9} {value:11d} {ours:7.2f} {metric} {baseline} {ref:6.2f}"
                print(row + mark)


if __name__ == "__main__":
    main()
