"""Figures that notebooks and the report show: comparison grids with zoomed crops, image rows, loss curves.

Images follow srlab.io: float RGB (3, H, W) in [0, 1]. A crop box is (top, left, height, width) in the
pixels of the SR output (the HR size); an image at 1/scale of that size (the LR) is cut at box / scale,
so boxes are chosen on a grid of ``scale`` pixels. Figures are matplotlib; the report document that
collects them lives in srlab.reporting.document.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

Box = tuple[int, int, int, int]  # (top, left, height, width), as srlab.data.build
_LUMA = (0.299, 0.587, 0.114)

# ---------------------------------------------------------------------------------------------
# Crops and comparison grids
# ---------------------------------------------------------------------------------------------


def detail_box(image: torch.Tensor, size: int, stride: int = 1) -> Box:
    """The ``size`` x ``size`` window of (3, H, W) with the most detail (mean |∂x| + |∂y| of luma).

    Deterministic (the first maximum in row-major order); top/left are multiples of ``stride`` and the
    side is rounded down to a multiple of it, so the same box / stride cuts the LR exactly. ``size``
    shrinks to fit the image.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image (3, H, W), got {tuple(image.shape)}")
    _, h, w = image.shape
    side = min(size, h, w) // stride * stride
    if side < 1:
        raise ValueError(f"a {h}x{w} image has no crop of {size} px on a {stride} px grid")
    luma = torch.tensordot(torch.tensor(_LUMA, dtype=image.dtype), image.float(), dims=1)[None, None]
    grad = torch.zeros_like(luma)  # (1, 1, H, W)
    grad[..., :, 1:] += (luma[..., :, 1:] - luma[..., :, :-1]).abs()
    grad[..., 1:, :] += (luma[..., 1:, :] - luma[..., :-1, :]).abs()
    energy = F.avg_pool2d(grad, side, stride=stride)[0, 0]  # (nh, nw): window at (i*stride, j*stride)
    index = int(torch.argmax(energy))  # first maximum, row-major
    top, left = divmod(index, energy.shape[1])
    return top * stride, left * stride, side, side


def crop(image: torch.Tensor, box: Box, scale: int = 1) -> torch.Tensor:
    """Cut ``box`` (in output pixels) from an image at 1/``scale`` of the output size: (3, h/s, w/s)."""
    if any(v % scale for v in box):
        raise ValueError(f"box {box} is not on the {scale} px grid of an image at 1/{scale} size")
    t, l, ch, cw = (v // scale for v in box)  # noqa: E741
    if t + ch > image.shape[-2] or l + cw > image.shape[-1]:
        raise ValueError(f"box {box} / {scale} lies outside an image of {tuple(image.shape[-2:])}")
    return image[..., t : t + ch, l : l + cw]


def comparison_figure(
    panels: Mapping[str, torch.Tensor],
    box: Box,
    scales: Mapping[str, int] | None = None,
    panel_inches: float = 2.4,
    title: str = "",
) -> plt.Figure:
    """One column per panel (title -> image at 1/scale of the output size): the whole image with the
    crop box outlined above, the crop zoomed (nearest, no smoothing) below. Every panel is drawn at the
    output size, so the LR appears nearest-upsampled and all boxes line up."""
    scales = dict(scales or {})
    name0, first = next(iter(panels.items()))
    out_h, out_w = first.shape[-2] * scales.get(name0, 1), first.shape[-1] * scales.get(name0, 1)
    for name, image in panels.items():
        scale = scales.get(name, 1)
        if (image.shape[-2] * scale, image.shape[-1] * scale) != (out_h, out_w):
            raise ValueError(
                f"panel {name!r} is {tuple(image.shape[-2:])} x{scale}, not the output size "
                f"{(out_h, out_w)} of {name0!r}; give its scale in `scales`"
            )
    n = len(panels)
    fig, axes = plt.subplots(
        2, n, figsize=(panel_inches * n, panel_inches * (out_h / out_w + 1) + 0.4), squeeze=False
    )
    top, left, h, w = box
    for col, (name, image) in enumerate(panels.items()):
        scale = scales.get(name, 1)
        whole, zoomed = axes[0, col], axes[1, col]
        whole.imshow(_hwc(image), extent=(0, out_w, out_h, 0), interpolation="nearest")
        whole.add_patch(Rectangle((left, top), w, h, fill=False, edgecolor="#ff3030", linewidth=1.2))
        whole.set_title(f"{name}\n{image.shape[-1]}x{image.shape[-2]}", fontsize=9)
        zoomed.imshow(_hwc(crop(image, box, scale)), extent=(0, w, h, 0), interpolation="nearest")
        for ax in (whole, zoomed):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel(f"crop {w}x{h} at ({top}, {left})", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def comparison_grid(
    panels: Mapping[str, torch.Tensor],
    crop_size: int | None = None,
    panel_inches: float = 2.4,
    title: str = "",
) -> plt.Figure:
    """The one LR / SR / HR comparison every notebook and the report draws: ``comparison_figure`` with
    each panel's scale read off its size (the largest panel is the output size) and the ``crop_size``
    crop where the reference (``HR`` if present, else the first panel at the output size) has the most
    detail, on the grid of the largest scale so every panel's crop is whole pixels. ``crop_size`` None
    (the notebooks' quick looks; the report passes report.crop_size): 3/8 of the output's short side."""
    out_w = max(image.shape[-1] for image in panels.values())
    scales = {}
    for name, image in panels.items():
        if out_w % image.shape[-1]:
            raise ValueError(
                f"panel {name!r} width {image.shape[-1]} does not divide the output width {out_w}"
            )
        scales[name] = out_w // image.shape[-1]
    at_size = [name for name in panels if scales[name] == 1]
    reference = panels["HR" if "HR" in at_size else at_size[0]]
    short = min(reference.shape[-2:])
    side = min(short * 3 // 8 if crop_size is None else crop_size, short)
    box = detail_box(
        reference, side // max(scales.values()) * max(scales.values()), stride=max(scales.values())
    )
    return comparison_figure(panels, box, scales, panel_inches, title=title)


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()  # (3, H, W) -> (H, W, 3)


def show_images(images: Sequence[torch.Tensor], titles: Sequence[str], height: float = 3.0) -> plt.Figure:
    """Images (3, H, W) in [0, 1] side by side at their relative sizes (nearest, no smoothing)."""
    fig, axes = plt.subplots(1, len(images), figsize=(height * len(images), height), squeeze=False)
    for ax, image, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(_hwc(image), interpolation="nearest")
        ax.set_title(f"{title}\n{image.shape[2]}x{image.shape[1]}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Training loss
# ---------------------------------------------------------------------------------------------


PHASE_ORDER = ("prior_vae", "prior_unet", "sr")  # the train stage's phases, in training order


def read_live_losses(folder: str | os.PathLike[str]) -> dict[str, tuple[list[int], list[float]]]:
    """The train stage's DVCLive folder -> {phase: (steps, losses)} from ``plots/metrics/<phase>/loss.tsv``,
    phases in training order (unknown ones after, by name)."""
    folder = Path(folder)
    files = sorted((folder / "plots" / "metrics").glob("*/loss.tsv"))
    if not files:
        raise ValueError(
            f"{folder}: no plots/metrics/<phase>/loss.tsv; the train stage writes them (DVCLive)"
        )
    rank = {name: i for i, name in enumerate(PHASE_ORDER)}
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for path in sorted(files, key=lambda p: (rank.get(p.parent.name, len(rank)), p.parent.name)):
        steps, losses = curves.setdefault(path.parent.name, ([], []))
        for line, row in enumerate(path.read_text().splitlines()[1:], start=2):
            try:
                step, loss = row.split("\t")[:2]
                steps.append(int(step))
                losses.append(float(loss))
            except ValueError as err:
                raise ValueError(f"{path}, line {line}: step/loss not numbers ({err})") from err
    return curves


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Centered mean over ``window`` values (i - window//2 to i + (window-1)//2, cut at both ends).

    Centered rather than trailing, so the smoothed curve does not lag a falling loss; window 1 = values.
    """
    if window < 1:
        raise ValueError(f"moving-average window must be >= 1, got {window}")
    x = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(x)])  # sums[k] = x[:k].sum()
    i = np.arange(len(x))
    lo, hi = np.maximum(i - window // 2, 0), np.minimum(i + (window - 1) // 2 + 1, len(x))
    return [float(v) for v in (sums[hi] - sums[lo]) / (hi - lo)]


def loss_figure(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    window: int | None = None,
    panel_inches: float = 3.2,
) -> plt.Figure:
    """One panel per training phase: the raw loss (faint) and its centered ``window``-point mean (None:
    1/40 of the phase's logged points, the notebooks' quick look; the report passes report.loss_window)."""
    fig, axes = plt.subplots(
        1, len(curves), figsize=(panel_inches * 1.4 * len(curves), panel_inches), squeeze=False
    )
    for ax, (phase, (steps, losses)) in zip(axes[0], curves.items(), strict=True):
        ax.plot(steps, losses, color="#1f77b4", alpha=0.3, linewidth=0.8, label="loss")
        w = max(1, len(losses) // 40) if window is None else window
        ax.plot(steps, moving_average(losses, w), color="#1f77b4", label=f"mean of {w}")
        if losses and min(losses) > 0 and max(losses) / min(losses) > 10:
            ax.set_yscale("log")
        ax.set_title(phase, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("loss")
    fig.tight_layout()
    return fig


def loss_plot_rows(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], window: int
) -> dict[str, list[dict[str, float]]]:
    """{phase: rows (step, loss, loss_smoothed)}: one DVC plot file per phase (steps restart per phase)."""
    return {
        phase: [
            {"step": s, "loss": v, "loss_smoothed": m}
            for s, v, m in zip(steps, losses, moving_average(losses, window), strict=True)
        ]
        for phase, (steps, losses) in curves.items()
    }
