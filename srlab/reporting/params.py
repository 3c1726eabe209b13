"""Schema of params.yaml `report`: comparison grids, curves, the HTML file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema


@schema
class ReportParams:
    """The report stage (srlab.reporting): comparison grids, curves, the HTML file."""

    grid_images: Annotated[
        int, Field(ge=0, le=1000)
    ]  # images per eval set in the comparison grids (first by name)
    crop_size: Annotated[
        int, Field(ge=4, le=4096)
    ]  # zoomed crop side, output px, where the reference has most detail
    panel_inches: Annotated[float, Field(ge=0.5, le=20.0)]  # width of one grid panel in the figure, inches
    dpi: Annotated[int, Field(ge=30, le=600)]  # figure resolution
    loss_window: Annotated[int, Field(ge=1)]  # training steps in the moving average drawn over the raw loss
    max_samples: Annotated[
        int, Field(ge=0, le=1000)
    ]  # training / inference sample images shown (last by name)
    html_images: Literal["embed", "link"]  # embed: report.html is one self-contained file; link: figures/
