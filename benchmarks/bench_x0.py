"""Is the denoiser a better estimate of the HR latent than the LR latent it starts from?

On the clean x4 eval sets (`*_bicubic`) of a built tiny model, at each timestep t: the denoiser's
one-step estimate x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), from x_t the LR latent noised to t (what
the LR start denoises) and from x_t the HR latent noised to t (the oracle: what Eq. 4 trains on), with
the ControlNet on and off. Printed per set, averaged over its images: the latent MSE to the HR latent
and the RGB PSNR of the decode (wavelet colour fix against the LR condition, as the synthetic sampler
applies), beside bicubic, the LR latent's decode and the HR latent's decode (the VAE's cap).

A sampler that starts from the LR latent can only gain PSNR where the estimate from the LR start is
nearer the HR latent than the LR latent itself. Prints figures, asserts nothing; needs a built
`build/` (`make repro`). Latents are posterior means; each image's noise is one seeded draw, used at every t.

    python benchmarks/bench_x0.py [--build build] [--timesteps 1,51,101,201,401,601,801,999]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab import io  # noqa: E402
from srlab.config import load_params  # noqa: E402
from srlab.evaluation.fullref import psnr  # noqa: E402
from srlab.evaluation.metrics import bicubic_upsample  # noqa: E402
from srlab.io import from_vae_range, to_vae_range  # noqa: E402
from srlab.models.sr_model import SRModel, predict  # noqa: E402
from srlab.sampling import colorfix, infer, sampler  # noqa: E402
from srlab.sampling.params import SamplerParams  # noqa: E402
from srlab.sampling.upscale import build_pipeline  # noqa: E402


def encode(model: SRModel, image: torch.Tensor) -> torch.Tensor:
    """[0, 1] image -> the scaled posterior mean."""
    return model.vae.encode(to_vae_range(image)).latent_dist.mean * model.vae.config.scaling_factor


def decode(model: SRModel, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Scaled latent -> [0, 1] image after the wavelet fix towards ``cond``."""
    image = model.vae.decode(latent / model.vae.config.scaling_factor).sample
    return colorfix.color_fix(from_vae_range(image).clamp(0, 1), cond, "wavelet")


def record(
    rows: dict,
    hr: torch.Tensor,
    z_hr: torch.Tensor,
    name: str,
    image: torch.Tensor,
    latent: torch.Tensor | None,
) -> None:
    """Append (PSNR of ``image`` against ``hr``, latent MSE of ``latent`` to ``z_hr``) to ``rows[name]``."""
    mse = 0.0 if latent is None else ((latent - z_hr) ** 2).mean().item()
    rows[name].append((psnr(image[0], hr[0], y_channel=False), mse))


@torch.no_grad()
def score_set(model: SRModel, folder: Path, settings: SamplerParams, timesteps: list[int], seed: int) -> dict:
    """{row name: [(PSNR, latent MSE to the HR latent) per image]} for one clean x4 set."""
    scheduler = sampler.make_scheduler("ddpm", model.scheduler.config)
    alphas = scheduler.alphas_cumprod
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for index, path in enumerate(io.list_images(folder / "lr")):
        lr = io.read_image(path)[None]
        cond = sampler.prepare_condition(lr, settings.upscale, settings.process_size)
        hr = io.read_image(folder / "hr" / f"{path.stem}.png")[None, :, : cond.shape[-2], : cond.shape[-1]]
        c_sem = model.semantic_tokens(lr)
        prompt = sampler.build_prompt(
            model.tags(path.stem, lr[0]), settings.user_prompt, settings.added_prompt
        )
        embeds = model.encode_prompt([prompt])
        z_lr, z_hr = encode(model, cond), encode(model, hr)
        add = partial(record, rows, hr, z_hr)
        add("bicubic", bicubic_upsample(lr[0], settings.upscale)[None], None)
        add("LR latent, decoded", decode(model, z_lr, cond), z_lr)
        add("HR latent, decoded (cap)", decode(model, z_hr, cond), z_hr)
        gen = torch.Generator().manual_seed(seed + index)
        cases = (
            ("LR", "on", settings.conditioning_scale),
            ("LR", "off", 0.0),
            ("HR", "on", settings.conditioning_scale),
        )
        # one draw per image, used at every t: a row does not depend on which other t's are asked for
        noise = torch.randn(z_lr.shape, generator=gen)
        for t in timesteps:
            tt = torch.tensor([t])
            a = alphas[t]
            noised = {"LR": scheduler.add_noise(z_lr, noise, tt), "HR": scheduler.add_noise(z_hr, noise, tt)}
            for start, label, scale in cases:
                x_t = noised[start]
                eps = predict(model.unet, model.controlnet, x_t, tt, embeds, cond, c_sem, scale)
                x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
                add(f"t={t:3d} from {start}, ControlNet {label}", decode(model, x0, cond), x0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--timesteps", default="1,51,101,201,401,601,801,999")
    args = parser.parse_args()
    build = Path(args.build)
    params = load_params(None, None, infer.SECTIONS)
    model = build_pipeline(params, build / "train").model
    timesteps = [int(t) for t in args.timesteps.split(",")]
    for folder in sorted((build / "degrade" / "eval").glob("*_bicubic")):
        settings = params.infer.sampler("synthetic", folder.name)
        rows = score_set(model, folder, settings, timesteps, params.base.seed)
        print(f"\n{folder.name} ({len(rows['bicubic'])} images)    PSNR RGB dB   latent MSE to the HR latent")
        for name, values in rows.items():
            n = len(values)
            print(f"  {name:34} {sum(p for p, _ in values) / n:8.2f}   {sum(m for _, m in values) / n:10.4f}")


if __name__ == "__main__":
    main()
