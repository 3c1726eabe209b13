"""Is the trained model a model? Held-out checks the train notebook shows and records.

Compares, on the held-out synthetic pairs (``eval/val_synthetic``): the Eq. 4 validation loss of the
trained SR weights vs the same model before SR training (same prior, ControlNet fresh from the UNet,
semantic blocks at their initialisation), and the PSNR/SSIM of their SR outputs beside bicubic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from srlab import io
from srlab.config import Params
from srlab.evaluation import fullref
from srlab.models.sr_model import build_sr_model
from srlab.sampling.pipeline import SRPipeline
from srlab.sampling.upscale import build_pipeline, image_seed, model_params_for_inference
from srlab.training import loop
from srlab.training.train import (
    LIVE_DIR,
    centre_crop_pair,
    sr_model_params,
    validation_batches,
    validation_loss,
)


def trained_and_untrained(params: Params, train_dir: Path) -> dict[str, SRPipeline]:
    """{"untrained": prior only, "trained": prior + final weights}, both on the CPU in fp32."""
    seed = torch.Generator().manual_seed(params.base.seed)
    untrained = build_sr_model(sr_model_params(params, train_dir).model, "cpu", seed)
    trained = build_sr_model(model_params_for_inference(params, train_dir).model, "cpu", seed)
    fidelity = params.infer.fidelity
    return {
        name: SRPipeline(m, fidelity=fidelity) for name, m in (("untrained", untrained), ("trained", trained))
    }


def held_out_pairs(params: Params, val_dir: Path, n: int = 0) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, HR, LR) of the first ``n`` held-out pairs (0: all), cut to their centre ``train.val_crop``
    (0: whole images); the images that validation scores and samples."""
    crop, scale = params.train.val_crop, params.infer.sampler("synthetic", val_dir.name).upscale
    pairs = []
    for path in io.list_images(val_dir / "hr")[: n or None]:
        hr, lr = io.read_image(path), io.read_image(val_dir / "lr" / path.name)
        pairs.append((path.stem, *(centre_crop_pair(hr, lr, crop, scale) if crop else (hr, lr))))
    return pairs


def compare(
    params: Params, train_dir: Path, val_dir: Path, max_images: int = 0, keep: int = 0
) -> tuple[list[dict[str, Any]], dict[str, dict[str, torch.Tensor]]]:
    """One row per method (bicubic / untrained / trained): validation loss, PSNR and SSIM (RGB), and
    the images of the first ``keep`` pairs ({name: {"LR", "bicubic", "untrained", "trained", "HR"}})."""
    pipes = trained_and_untrained(params, train_dir)
    settings = params.infer.sampler("synthetic", val_dir.name)
    scale = settings.upscale
    crop = params.data.loader.crop_size
    batches = validation_batches(val_dir, crop, params.train.batch_size, scale)
    pairs = held_out_pairs(params, val_dir, max_images)
    rows, kept = [], {name: {} for name, _, _ in pairs[:keep]}
    for method in ("bicubic", "untrained", "trained"):
        scores: dict[str, list[float]] = {"psnr": [], "ssim": []}
        for name, hr, lr in pairs:
            if method == "bicubic":
                sr = F.interpolate(lr[None], size=hr.shape[1:], mode="bicubic", align_corners=False)[0].clamp(
                    0, 1
                )
            else:
                gen = torch.Generator().manual_seed(image_seed(params.base.seed, name))
                sr = pipes[method](lr, settings, gen, name=name)
            if name in kept:
                kept[name].update({"LR": lr, method: sr, "HR": hr})
            scores["psnr"].append(fullref.psnr(sr, hr, y_channel=False))
            scores["ssim"].append(fullref.ssim(sr, hr, y_channel=False))
        row: dict[str, Any] = {"method": method, "images": len(pairs)}
        row.update({k: sum(v) / len(v) for k, v in scores.items()})
        if method != "bicubic":
            row["val_loss"] = validation_loss(pipes[method].model, batches, params.base.seed)
        rows.append(row)
    return rows, {
        name: {k: p[k] for k in ("LR", "bicubic", "untrained", "trained", "HR")} for name, p in kept.items()
    }


def strip(images: list[torch.Tensor], columns: int) -> torch.Tensor:
    """Images in rows of ``columns``, each enlarged by pixel repetition to the largest height (one PNG)."""
    height = max(im.shape[1] for im in images)
    tiles = [
        im.repeat_interleave(height // im.shape[1], 1).repeat_interleave(height // im.shape[1], 2)
        for im in images
    ]
    rows = [torch.cat(tiles[i : i + columns], dim=2) for i in range(0, len(tiles), columns)]
    return torch.cat(rows, dim=1)


def checkpoint_sampler(params: Params, train_dir: Path, val_dir: Path) -> Callable[[int, Path], None]:
    """A ``train_sr`` ``on_checkpoint`` hook: the centre crops of the first ``train.sample_images``
    held-out pairs super-resolved with that checkpoint's weights, saved as one strip (LR, SR, HR per
    pair, LR enlarged by pixel repetition) in ``train_dir/samples/checkpoints/step_NNNNNN.png``: how the
    output evolves during training."""
    settings = params.infer.sampler("synthetic", val_dir.name)
    pairs = held_out_pairs(params, val_dir, params.train.sample_images)
    out = train_dir / "samples" / "checkpoints"

    def sample(step: int, folder: Path) -> None:
        pipe = build_pipeline(sr_model_params(params, train_dir), folder / "weights")
        images: list[torch.Tensor] = []
        for name, hr, lr in pairs:
            gen = torch.Generator(device=pipe.device).manual_seed(image_seed(params.base.seed, name))
            images += [lr, pipe(lr, settings, gen, name=name), hr]
        out.mkdir(parents=True, exist_ok=True)
        path = io.write_image(strip(images, columns=3), out / f"step_{step:06d}.png")
        loop.open_live(train_dir / LIVE_DIR).log_image(f"sr/{path.name}", path)  # DVCLive's image plots

    return sample
