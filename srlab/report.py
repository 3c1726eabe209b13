"""Tables and figures that notebooks and the report show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch


def markdown_table(rows: Sequence[Mapping[str, Any]], floatfmt: str = ".4g") -> str:
    """Rows of dicts (same keys) -> a GitHub markdown table; floats formatted with ``floatfmt``."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])

    def cell(value: Any) -> str:
        return format(value, floatfmt) if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def show_images(images: Sequence[torch.Tensor], titles: Sequence[str], height: float = 3.0) -> plt.Figure:
    """Images (3, H, W) in [0, 1] side by side at their relative sizes (nearest, no smoothing)."""
    fig, axes = plt.subplots(1, len(images), figsize=(height * len(images), height), squeeze=False)
    for ax, image, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
        ax.set_title(f"{title}\n{image.shape[2]}x{image.shape[1]}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
