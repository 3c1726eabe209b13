"""Seconds per image and peak memory of the SR pipeline. Prints figures, asserts nothing.

    python benchmarks/bench_infer.py --profile tiny              # the tiny profile on the CPU
    python benchmarks/bench_infer.py --profile paper --device cuda   # paper size, bf16, SDPA, random weights

Paper runs (50 steps, CFG on: gs 8.5 noise start; and the synthetic setting gs 0.9, LR start, no CFG):
512x512 output, and 512 -> 2048 (x4, tiled latent 96/32, tiled VAE). Weights are random (timing does not
depend on their values; see benchmarks/paper_model.py). The tiny profile uses its params as they are.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab.config import load_params  # noqa: E402
from srlab.models.sr_model import build_sr_model  # noqa: E402
from srlab.sampling.infer import SECTIONS  # noqa: E402
from srlab.sampling.pipeline import SRPipeline  # noqa: E402


def run(pipe: SRPipeline, lr: torch.Tensor, settings, repeats: int) -> tuple[float, float]:
    """(seconds per image, peak GiB) over ``repeats`` runs after one warm-up."""
    cuda = pipe.device.type == "cuda"
    pipe(lr, settings, torch.Generator(pipe.device).manual_seed(0))  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(repeats):
        pipe(lr, settings, torch.Generator(pipe.device).manual_seed(i))
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--block", default="full")
    parser.add_argument("--skip-2048", action="store_true")
    parser.add_argument("--steps", type=int, default=0, help="override the settings' steps (0: keep)")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml", args.profile, SECTIONS)
    if args.profile == "paper":
        from paper_model import paper_model

        torch.backends.cuda.matmul.allow_tf32 = True
        pipe = SRPipeline(paper_model(args.device, args.tokens, args.block), args.device, torch.bfloat16)
    else:
        pipe = SRPipeline(build_sr_model(params.model, args.device), args.device, torch.float32)
    wild, synthetic = params.infer.settings["wild"], params.infer.settings["synthetic"]
    gen = torch.Generator().manual_seed(0)
    cases = [
        ("512 out, wild: noise start, CFG gs 8.5", wild, torch.rand(3, 512, 512, generator=gen)),
        ("512 out, synthetic: lr start, gs 0.9 (no CFG)", synthetic, torch.rand(3, 128, 128, generator=gen)),
    ]
    if not args.skip_2048:
        cases.append(
            ("512 -> 2048 (x4), synthetic, tiled", synthetic, torch.rand(3, 512, 512, generator=gen))
        )
    print(
        f"device {args.device} ({torch.cuda.get_device_name() if 'cuda' in args.device else 'cpu'}), "
        f"profile {args.profile}, dtype {pipe.dtype}, semantic {args.tokens} tokens {args.block}"
    )
    for name, settings, lr in cases:
        settings = dataclasses.replace(settings, steps=args.steps or settings.steps)
        seconds, peak = run(pipe, lr, settings, args.repeats)
        print(f"{name:48s} {settings.steps} steps: {seconds:7.2f} s/image, peak {peak:6.2f} GiB")


if __name__ == "__main__":
    main()
