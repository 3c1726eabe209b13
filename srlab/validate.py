"""Is the trained model a model? Held-out checks the train notebook shows and records.

Compares, on the held-out synthetic pairs (``eval/val_synthetic``): the Eq. 4 validation loss of the
trained SR weights vs the same model before SR training (same prior, ControlNet fresh from the UNet,
semantic blocks at their initialisation), and the PSNR/SSIM of their SR outputs beside bicubic.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from srlab import io, metrics
from srlab.config import Params
from srlab.model import build_sr_model
from srlab.pipeline import SRPipeline
from srlab.train import sr_model_params, validation_batches, validation_loss
from srlab.upscale import image_seed, model_params_for_inference


def trained_and_untrained(params: Params, train_dir: Path) -> dict[str, SRPipeline]:
    """{"untrained": prior only, "trained": prior + final weights}, both on the CPU in fp32."""
    seed = torch.Generator().manual_seed(params.base.seed)
    untrained = build_sr_model(sr_model_params(params, train_dir).model, "cpu", seed)
    trained = build_sr_model(model_params_for_inference(params, train_dir).model, "cpu", seed)
    return {"untrained": SRPipeline(untrained), "trained": SRPipeline(trained)}


def compare(
    params: Params, train_dir: Path, val_dir: Path, max_images: int = 0, keep: int = 0
) -> tuple[list[dict[str, Any]], dict[str, dict[str, torch.Tensor]]]:
    """One row per method (bicubic / untrained / trained): validation loss, PSNR and SSIM (RGB), and
    the images of the first ``keep`` pairs ({name: {"LR", "bicubic", "untrained", "trained", "HR"}})."""
    pipes = trained_and_untrained(params, train_dir)
    settings = params.infer.settings["synthetic"]
    scale = settings.upscale
    crop = params.data.loader.crop_size
    batches = validation_batches(val_dir, crop, params.train.batch_size, scale)
    hr_paths = io.list_images(val_dir / "hr")[: max_images or None]
    rows, kept = [], {p.stem: {} for p in hr_paths[:keep]}
    for method in ("bicubic", "untrained", "trained"):
        scores: dict[str, list[float]] = {"psnr": [], "ssim": []}
        for path in hr_paths:
            hr, lr = io.read_image(path), io.read_image(val_dir / "lr" / path.name)
            if method == "bicubic":
                sr = F.interpolate(lr[None], size=hr.shape[1:], mode="bicubic", align_corners=False)[0].clamp(
                    0, 1
                )
            else:
                gen = torch.Generator().manual_seed(image_seed(params.base.seed, path.stem))
                sr = pipes[method](lr, settings, gen, name=path.stem)
            if path.stem in kept:
                kept[path.stem].update({"LR": lr, method: sr, "HR": hr})
            scores["psnr"].append(metrics.psnr(sr, hr, y_channel=False))
            scores["ssim"].append(metrics.ssim(sr, hr, y_channel=False))
        row: dict[str, Any] = {"method": method, "images": len(hr_paths)}
        row.update({k: sum(v) / len(v) for k, v in scores.items()})
        if method != "bicubic":
            row["val_loss"] = validation_loss(pipes[method].model, batches, params.base.seed)
        rows.append(row)
    return rows, {
        name: {k: p[k] for k in ("LR", "bicubic", "untrained", "trained", "HR")} for name, p in kept.items()
    }


def with_steps(params: Params, steps: int) -> Params:
    """``params`` with the synthetic sampler at ``steps`` steps (cheaper checks on the CPU)."""
    settings = dict(params.infer.settings)
    settings["synthetic"] = dataclasses.replace(settings["synthetic"], steps=steps)
    return dataclasses.replace(params, infer=dataclasses.replace(params.infer, settings=settings))
