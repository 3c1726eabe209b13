"""Degradation throughput: srlab's Real-ESRGAN second-order pipeline beside BasicSR's own implementation.

Both sides degrade the same batches (16 RGB float32 images of 512 x 512, made from the bundled BSD68
photos) with the ``realesrgan`` pipeline of params.yaml, whose values are BasicSR's
options/train/RealESRGAN/train_realesrgan_x4plus.yml. A batch's time includes drawing its
per-sample kernels (BasicSR draws them in RealESRGANDataset with numpy; srlab inside the pipeline),
USM of the HR, both degradation orders and the final [resize back + sinc] / JPEG, i.e. BasicSR's
RealESRGANModel.feed_data without the random crop and the training-pair queue. Same torch, same thread
count, one process per side, run one after the other by one invocation. Each side reports images/s
over ``--batches`` timed batches after ``--warmup`` batches; the script prints both and the ratio.

Setup, once (BasicSR 1.4.2 in its own venv; srlab's venv does not get it):

    python3.11 -m venv /tmp/basicsr-venv
    /tmp/basicsr-venv/bin/pip install setuptools wheel torch==2.14.1 torchvision==0.29.1
    /tmp/basicsr-venv/bin/pip install --no-build-isolation basicsr==1.4.2

Run from the repository root:

    .venv/bin/python benchmarks/bench_degrade.py --basicsr-python /tmp/basicsr-venv/bin/python

Without ``--basicsr-python`` only srlab's side runs (e.g. ``--device cuda`` on a GPU machine).
BasicSR 1.4.2 imports ``torchvision.transforms.functional_tensor``, which torchvision removed; its
side aliases that name to ``torchvision.transforms.functional`` (it has the same rgb_to_grayscale).
Both processes run with OMP_WAIT_POLICY=PASSIVE (set here unless already set): on a shared machine
spinning OpenMP threads otherwise stall each other and the figures measure the neighbours.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import torch

ROOT = Path(__file__).resolve().parents[1]


def make_batch(batch: int, size: int) -> torch.Tensor:
    """``batch`` BSD68 photos, center-cropped square and resized to ``size`` (antialiased bicubic)."""
    from srlab import io

    photos = io.list_images(ROOT / "data/bsd68")[:batch]
    images = []
    for path in photos:
        image = io.read_image(path)
        side = min(image.shape[1:])
        top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
        square = image[None, :, top : top + side, left : left + side]
        images.append(
            torch.nn.functional.interpolate(square, size=size, mode="bicubic", antialias=True).clamp(0, 1)
        )
    return torch.cat(images)


def basicsr_options(degrade_params) -> dict:  # degrade_params: srlab.config.DegradeParams
    """params.yaml's realesrgan ops -> the option names of BasicSR's train_realesrgan_x4plus.yml."""
    ops = degrade_params.ops
    out = {
        "scale": degrade_params.scale,
        "usm_weight": ops["usm_gt"].weight[0],
        "usm_threshold": ops["usm_gt"].threshold,
    }
    out["usm_radius"] = ops["usm_gt"].kernel_size
    for suffix, blur, resize, noise, jpeg in (
        ("", "blur1", "resize1", "noise1", "jpeg1"),
        ("2", "blur2", "resize2", "noise2", "jpeg2"),
    ):
        b, r, n, j = ops[blur], ops[resize], ops[noise], ops[jpeg]
        out |= {
            f"kernel_list{suffix}": list(b.types), f"kernel_prob{suffix}": list(b.types.values()),
            f"blur_sigma{suffix}": list(b.sigma), f"betag_range{suffix}": list(b.betag),
            f"betap_range{suffix}": list(b.betap), f"sinc_prob{suffix}": b.sinc_prob,
            f"resize_prob{suffix}": list(r.updown), f"resize_range{suffix}": list(r.scale),
            f"gaussian_noise_prob{suffix}": n.gaussian_prob, f"noise_range{suffix}": list(n.sigma),
            f"poisson_scale_range{suffix}": list(n.poisson_scale), f"gray_noise_prob{suffix}": n.gray_prob,
            f"jpeg_range{suffix}": list(j.quality),
        }  # fmt: skip
    out["second_blur_prob"] = ops["blur2"].prob
    out["final_sinc_prob"] = ops["sinc_final"].prob
    out["kernel_sizes"] = [ops["blur1"].kernel_size[0], ops["blur1"].kernel_size[1]]
    return out


def time_batches(run, images: torch.Tensor, batches: int, warmup: int, device: str) -> float:
    """images/s of ``run(images)`` over ``batches`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        run(images)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        run(images)
    if device == "cuda":
        torch.cuda.synchronize()
    return images.shape[0] * batches / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------
# srlab
# ------------------------------------------------------------------------------------------------


def srlab_throughput(images: torch.Tensor, params, batches: int, warmup: int, device: str) -> float:
    from srlab.data import degrade

    generator = torch.Generator(device=device).manual_seed(0)
    images = images.to(device)
    return time_batches(
        lambda x: degrade.degrade(x, params, "realesrgan", generator), images, batches, warmup, device
    )


# ------------------------------------------------------------------------------------------------
# BasicSR 1.4.2 (run in its own venv; imports no srlab)
# ------------------------------------------------------------------------------------------------


def basicsr_throughput(images: torch.Tensor, opt: dict, batches: int, warmup: int, device: str) -> float:
    import random

    import numpy as np
    import torchvision.transforms.functional as tf

    sys.modules["torchvision.transforms.functional_tensor"] = tf  # removed from torchvision; same function
    from basicsr.data.degradations import (
        circular_lowpass_kernel,
        random_add_gaussian_noise_pt,
        random_add_poisson_noise_pt,
        random_mixed_kernels,
    )
    from basicsr.utils import DiffJPEG, USMSharp
    from basicsr.utils.img_process_util import filter2D
    from torch.nn import functional as F

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    jpeger = DiffJPEG(differentiable=False).to(device)
    usm = USMSharp(radius=opt["usm_radius"]).to(device)
    sizes = list(range(opt["kernel_sizes"][0], opt["kernel_sizes"][1] + 1, 2))
    kmax = opt["kernel_sizes"][1]

    def kernel(suffix: str) -> np.ndarray:  # as RealESRGANDataset.__getitem__
        size = random.choice(sizes)
        if np.random.uniform() < opt[f"sinc_prob{suffix}"]:
            omega = np.random.uniform(np.pi / 3, np.pi) if size < 13 else np.random.uniform(np.pi / 5, np.pi)
            k = circular_lowpass_kernel(omega, size, pad_to=False)
        else:
            sigma = opt[f"blur_sigma{suffix}"]
            rotation, betas = [-math.pi, math.pi], (opt[f"betag_range{suffix}"], opt[f"betap_range{suffix}"])
            kinds = (opt[f"kernel_list{suffix}"], opt[f"kernel_prob{suffix}"])
            k = random_mixed_kernels(*kinds, size, sigma, sigma, rotation, *betas, noise_range=None)
        pad = (kmax - size) // 2
        return np.pad(k, ((pad, pad), (pad, pad)))

    def final_sinc() -> torch.Tensor:
        if np.random.uniform() < opt["final_sinc_prob"]:
            omega = np.random.uniform(np.pi / 3, np.pi)
            return torch.FloatTensor(circular_lowpass_kernel(omega, random.choice(sizes), pad_to=kmax))
        pulse = torch.zeros(kmax, kmax)
        pulse[kmax // 2, kmax // 2] = 1
        return pulse

    def resize(out: torch.Tensor, suffix: str, size_of=None) -> torch.Tensor:
        kind = random.choices(["up", "down", "keep"], opt[f"resize_prob{suffix}"])[0]
        lo, hi = opt[f"resize_range{suffix}"]
        scale = (
            np.random.uniform(1, hi) if kind == "up" else np.random.uniform(lo, 1) if kind == "down" else 1
        )
        mode = random.choice(["area", "bilinear", "bicubic"])
        if size_of is None:
            return F.interpolate(out, scale_factor=scale, mode=mode)
        return F.interpolate(out, size=(int(size_of[0] * scale), int(size_of[1] * scale)), mode=mode)

    def noise(out: torch.Tensor, suffix: str) -> torch.Tensor:
        gray = opt[f"gray_noise_prob{suffix}"]
        if np.random.uniform() < opt[f"gaussian_noise_prob{suffix}"]:
            return random_add_gaussian_noise_pt(
                out, sigma_range=opt[f"noise_range{suffix}"], clip=True, rounds=False, gray_prob=gray
            )
        return random_add_poisson_noise_pt(
            out, scale_range=opt[f"poisson_scale_range{suffix}"], gray_prob=gray, clip=True, rounds=False
        )

    def jpeg(out: torch.Tensor, suffix: str) -> torch.Tensor:
        quality = out.new_zeros(out.size(0)).uniform_(*opt[f"jpeg_range{suffix}"])
        # DiffJPEG returns a permuted (channels-last) tensor; torch >= 2.x keeps that layout through
        # F.pad, and filter2D's .view then fails: one copy back to contiguous.
        return jpeger(torch.clamp(out, 0, 1), quality=quality).contiguous()

    def feed_data(gt: torch.Tensor) -> torch.Tensor:  # RealESRGANModel.feed_data, degradation part
        b = gt.shape[0]
        kernel1 = torch.FloatTensor(np.stack([kernel("") for _ in range(b)])).to(device)
        kernel2 = torch.FloatTensor(np.stack([kernel("2") for _ in range(b)])).to(device)
        sinc = torch.stack([final_sinc() for _ in range(b)]).to(device)
        h, w = gt.shape[2:]
        target = (h // opt["scale"], w // opt["scale"])
        out = filter2D(usm(gt, weight=opt["usm_weight"], threshold=opt["usm_threshold"]), kernel1)
        out = jpeg(noise(resize(out, ""), ""), "")
        if np.random.uniform() < opt["second_blur_prob"]:
            out = filter2D(out, kernel2)
        out = noise(resize(out, "2", size_of=target), "2")
        mode = random.choice(["area", "bilinear", "bicubic"])
        if np.random.uniform() < 0.5:
            out = jpeg(filter2D(F.interpolate(out, size=target, mode=mode), sinc), "2")
        else:
            out = filter2D(F.interpolate(jpeg(out, "2"), size=target, mode=mode), sinc)
        return torch.clamp((out * 255.0).round(), 0, 255) / 255.0

    return time_batches(feed_data, images.to(device), batches, warmup, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--basicsr-python", help="python of BasicSR's venv; omit to time srlab only")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", type=int, default=3, help="timed batches per side")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--impl", choices=["both", "basicsr"], default="both", help=argparse.SUPPRESS)
    parser.add_argument(
        "--io", help=argparse.SUPPRESS
    )  # internal: the batch + options file of the BasicSR side
    args = parser.parse_args()

    if args.impl == "basicsr":
        payload = torch.load(args.io, weights_only=False)
        rate = basicsr_throughput(payload["images"], payload["opt"], args.batches, args.warmup, args.device)
        print(
            json.dumps({"images_per_s": rate, "threads": torch.get_num_threads(), "torch": torch.__version__})
        )
        return

    sys.path.insert(0, str(ROOT))  # srlab from this checkout, installed or not
    from srlab import config
    from srlab.data import build

    params = config.load_params(ROOT / "params.yaml", None, build.SECTIONS).degrade
    images = make_batch(args.batch, args.size)
    shape = f"batch {args.batch} x 3 x {args.size} x {args.size}"
    where = f"{args.device}, {shape}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    print(f"Real-ESRGAN second-order degradation ({where})")
    ours = srlab_throughput(images, params, args.batches, args.warmup, args.device)
    print(f"  srlab    {ours:8.2f} images/s")
    if args.basicsr_python:
        opt = basicsr_options(params)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"images": images, "opt": opt}, Path(tmp) / "batch.pt")
            command = [
                args.basicsr_python,
                __file__,
                "--impl",
                "basicsr",
                "--io",
                str(Path(tmp) / "batch.pt"),
            ]
            command += ["--batches", str(args.batches), "--warmup", str(args.warmup), "--device", args.device]
            result = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
        if result.returncode:
            sys.exit(f"BasicSR side failed ({' '.join(command)}):\n{result.stderr}")
        theirs = json.loads(result.stdout.strip().splitlines()[-1])
        setup = f"basicsr 1.4.2, torch {theirs['torch']}, {theirs['threads']} threads"
        print(f"  BasicSR  {theirs['images_per_s']:8.2f} images/s  ({setup})")
        print(f"  ratio    {ours / theirs['images_per_s']:8.2f} x")


if __name__ == "__main__":
    main()
