"""Model-independent pieces of the SR sampler: sizes, prompts, schedulers, guidance.

Facts from the released inference (NTIRE-2025-SRlab ``test_seesr_sam.py`` / ``pipeline_seesr.py``):
- the LR image is enlarged so its short side is at least ``process_size / upscale``, upscaled by
  ``upscale`` (bicubic), and cut down to a multiple of 8; the result, in [0, 1], is the ControlNet
  condition; the output is resized back to exactly ``upscale`` x the input size at the end;
- the prompt is ``f"{tags}, {user_prompt}," + added_prompt``; classifier-free guidance runs only when
  ``guidance_scale > 1`` (so the synthetic setting 0.9 is the conditional branch alone), with the
  negative prompt as the unconditional branch;
- start point ``lr``: the VAE latent of the upscaled LR, noised to timestep ``start_steps`` (999).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

SCHEDULERS: dict[str, Any] = {
    "ddpm": DDPMScheduler,  # the released inference's sampler
    "ddim": DDIMScheduler,
    "dpmpp": DPMSolverMultistepScheduler,  # DPM-Solver++ (2M), good at 20-25 steps
}


def make_scheduler(name: str, config: dict[str, Any]) -> Any:
    """A fresh scheduler of kind ``name`` from a diffusers scheduler config (the SD2 folder's)."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    extra = {"algorithm_type": "dpmsolver++"} if name == "dpmpp" else {}
    return SCHEDULERS[name].from_config(config, **extra)


def build_prompt(tags: str, user_prompt: str, added_prompt: str) -> str:
    """The released code's prompt: ``"{tags}, {user_prompt}," + added_prompt``."""
    return f"{tags}, {user_prompt}," + added_prompt


def uses_guidance(guidance_scale: float) -> bool:
    """CFG runs only above 1, as in the released pipeline (``do_classifier_free_guidance``)."""
    return guidance_scale > 1.0


def combine_guidance(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """eps = eps_uncond + s * (eps_cond - eps_uncond); s = 1 gives the conditional branch exactly."""
    return uncond + guidance_scale * (cond - uncond)


def working_size(height: int, width: int, upscale: int, process_size: int) -> tuple[int, int, float]:
    """(H, W) the diffusion runs at, and the pre-enlargement factor applied to the LR first.

    The LR is enlarged (factor > 1) when its short side is below ``process_size / upscale``; then
    multiplied by ``upscale`` and rounded down to a multiple of 8 (the VAE factor).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    pre = 1.0
    target = process_size // upscale
    if width < target or height < target:
        pre = target / min(width, height)
    h, w = int(pre * height) * upscale, int(pre * width) * upscale
    h, w = h // 8 * 8, w // 8 * 8
    if h < 8 or w < 8:
        raise ValueError(f"image {height}x{width} is too small to process at upscale {upscale}")
    return h, w, pre


def prepare_condition(lr: torch.Tensor, upscale: int, process_size: int) -> torch.Tensor:
    """LR (B, 3, h, w) in [0, 1] -> the ControlNet condition (B, 3, H, W) in [0, 1] at working size."""
    _, _, h, w = lr.shape
    out_h, out_w, _ = working_size(h, w, upscale, process_size)
    cond = F.interpolate(lr, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=False)
    return cond.clamp(0, 1)


def restore_size(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize the SR result (B, 3, H', W') to exactly (height, width) (bicubic, antialiased if shrinking)."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    shrink = image.shape[-2] > height or image.shape[-1] > width
    return F.interpolate(image, size=(height, width), mode="bicubic", antialias=shrink).clamp(0, 1)
