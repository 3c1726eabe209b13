"""Schema of params.yaml `evaluate`: which metrics on which kind of set, and their protocol."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema

NoRefMetric = Literal["musiq", "maniqa", "clipiqa", "nrqm", "hyperiqa", "piqe", "niqe"]


MetricName = Literal[
    "psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y", "psnr_ntire", "ssim_ntire", "lpips",
    "musiq", "maniqa", "clipiqa", "nrqm", "hyperiqa", "piqe", "niqe",
]  # fmt: skip


@schema
class EvaluateParams:
    """Measuring SR outputs (srlab.evaluation.metrics): which metrics on which kind of set, and how."""

    paired_metrics: list[MetricName]  # sets with HR (synthetic): full-reference, no-reference allowed too
    wild_metrics: list[NoRefMetric]  # sets without HR (wild): no-reference only
    crop_border: Annotated[
        int, Field(ge=0, le=64)
    ]  # pixels cut from every edge before PSNR/SSIM (not LPIPS, NR metrics)
    y_color_space: Literal["yiq", "ycbcr"]  # Y of psnr_y/ssim_y: yiq = pyiqa default, ycbcr = BT.601
    score_psnr: Literal["psnr_rgb", "psnr_y"]  # the PSNR of the *_pyiqa score variants
    score_ssim: Literal["ssim_y", "ssim_rgb"]  # the SSIM of the *_pyiqa score variants
    torch_hub_dir: str | None  # learned-metric weights: pyiqa/, checkpoints/, clip/ in it; None = torch's
    device: Literal["auto", "cpu", "cuda"]  # learned metrics; auto = cuda when available
    other_methods: dict[str, str]  # method name -> folder of its outputs, one subfolder per eval set
