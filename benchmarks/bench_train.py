"""Training throughput (samples/s) and peak memory of the SR phase (Eq. 4). Prints, asserts nothing.

    python benchmarks/bench_train.py --profile tiny                     # tiny on the CPU
    python benchmarks/bench_train.py --profile paper --device cuda      # paper size at 512, bf16 autocast

One step = VAE encode (frozen) + c_sem (frozen SAM2) + ControlNet + UNet forward, backward into the
ControlNet and the UNet's semantic blocks, AdamW update: ``srlab.training.train.sr_loss`` per step.
Paper weights are random (benchmarks/paper_model.py): cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab.config import load_params  # noqa: E402
from srlab.models.semantic import semantic_modules  # noqa: E402
from srlab.models.sr_model import build_sr_model, trainable_parameters  # noqa: E402
from srlab.training.train import SECTIONS, sr_loss  # noqa: E402


def _peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--size", type=int, default=0, help="crop side (default: data.loader.crop_size)")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml", args.profile, SECTIONS)
    size = args.size or params.data.loader.crop_size
    if args.profile == "paper":
        from paper_model import paper_model

        torch.backends.cuda.matmul.allow_tf32 = True
        model = paper_model(args.device)
        model.controlnet.requires_grad_(True)  # what build_sr_model sets: ControlNet + UNet semantic blocks
        for block in semantic_modules(model.unet):
            block.requires_grad_(True)
    else:
        model = build_sr_model(params.model, args.device)
    trainable = trainable_parameters(model)
    optimizer = torch.optim.AdamW(trainable, lr=params.train.lr, weight_decay=0.0)
    cuda = args.device.startswith("cuda")
    autocast = torch.autocast("cuda", torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    print(
        f"device {torch.cuda.get_device_name() if cuda else 'cpu'}, profile {args.profile}, crop {size}, "
        f"trainable {sum(p.numel() for p in trainable) / 1e6:.1f}M, {'bf16 autocast' if cuda else 'fp32'}"
    )
    for batch_size in map(int, args.batches.split(",")):
        gen = torch.Generator().manual_seed(0)
        batch = {
            "hr": torch.rand(batch_size, 3, size, size, generator=gen),
            "lr": torch.rand(batch_size, 3, size, size, generator=gen),
            "id": [""] * batch_size,
        }
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for step in range(args.steps + 1):
            if step == 1:  # first step is warm-up
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
            with autocast:
                loss = sr_loss(model, model.unet, model.controlnet, batch, gen, 0.5)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.steps
        # CUDA: peak tensor memory of this batch size; CPU: the process's peak resident set so far
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else _peak_rss_gib()
        print(
            f"batch {batch_size}: {seconds:6.3f} s/step, {batch_size / seconds:6.2f} samples/s, "
            f"peak {peak:6.2f} GiB{'' if cuda else ' (process RSS)'}"
        )


if __name__ == "__main__":
    main()
