"""Schema of params.yaml `ablations`: the grids of paper Tables 3-5 and the start point."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema


@schema
class PromptVariant:
    """One row of the prompt ablation (Table 3): what the sampler adds to the prompts."""

    added_prompt: str  # appended to the tag prompt (the positive prompt)
    negative_prompt: str  # the unconditional branch of CFG


@schema
class AblationParams:
    """The ablations stage (srlab.ablations.cells): the grids of paper Tables 3-5 and the start point.

    Every value is one DVC cell (dvc.yaml ``matrix``); a cell changes one knob of ``infer.settings``
    (or, for the extractor, of ``model.semantic``) and keeps everything else."""

    eval_set: str  # a data.eval_sets name: cells run on <eval_set>_synthetic and <eval_set>_wild
    max_images: Annotated[int, Field(ge=0)]  # images per set and cell, first by name; 0 = all
    crop: Annotated[
        int, Field(ge=0)
    ]  # side of the HR-size centre crop of each image the cells run on; 0 = whole
    prompt: dict[str, PromptVariant]  # Table 3: name -> prompts
    guidance_scale: dict[str, list[float]]  # Table 4: kind (synthetic / wild) -> scales
    start_point: list[Literal["noise", "lr"]]  # start point, both kinds
    extractor: list[Literal["sam2", "none", "dape"]]  # Table 5: each trained with the train settings
