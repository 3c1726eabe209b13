"""How much of the tiny VAE's latent is signal: per latent channel, the spread of the posterior mean over
the held-out photos' centre crops beside the posterior's own std (the noise every training step decodes,
and the SR phase's targets carry, as `encode_latents` samples the posterior). A channel whose std is near
its mean's spread carries little but noise.

Prints figures, asserts nothing. Needs a built prior (`make repro`, or `dvc repro prior`).

    python benchmarks/bench_vae_posterior.py [--vae build/prior/model/vae]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab import io  # noqa: E402
from srlab.config import load_params  # noqa: E402
from srlab.io import to_vae_range  # noqa: E402
from srlab.training import prior  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", default=str(ROOT / "build" / "prior" / "model" / "vae"))
    args = parser.parse_args()
    params = load_params(None, None, prior.SECTIONS)
    _, val_paths = prior.training_photos(params)
    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    means, stds = [], []
    with torch.no_grad():
        for path in val_paths:
            hr = prior.centre(io.read_image(path), params.train.prior.val_crop)
            dist = vae.encode(to_vae_range(hr[None])).latent_dist
            means.append(dist.mean.flatten(2))  # (1, C, h*w)
            stds.append(dist.std.flatten(2))
    mean, std = torch.cat(means, 2)[0], torch.cat(stds, 2)[0]
    print(f"{len(val_paths)} held-out photos, centre {params.train.prior.val_crop} px, {args.vae}")
    print(f"{'channel':>7} {'mean spread':>12} {'posterior std':>14} {'SNR dB':>7}")
    for c in range(mean.shape[0]):
        spread, noise = mean[c].std().item(), std[c].mean().item()
        print(f"{c:>7} {spread:>12.3f} {noise:>14.3f} {20 * math.log10(spread / noise):>7.1f}")


if __name__ == "__main__":
    main()
