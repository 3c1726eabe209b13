"""Ablations: paper Tables 3, 4 and 5 and the start point, one DVC cell per grid value.

A cell changes one knob and keeps the rest of params.yaml (``ablations`` holds the grids):

- ``prompt`` (Table 3): ``added_prompt`` / ``negative_prompt`` of the kind's sampler settings;
- ``guidance_scale`` (Table 4): the kind's guidance scale (CFG runs only above 1, as released);
- ``start_point``: pure noise or the LR latent noised to t = 999;
- ``extractor`` (Table 5): ``model.semantic.extractor``. The SR phase is retrained with the ``train``
  section's settings on the train stage's prior; the extractor the train stage already used is not
  trained twice (same settings, same seeds: its weights are the train stage's). Both kinds of set.

dvc.yaml expands each grid with ``matrix`` and runs ``notebooks/06_ablation.ipynb`` per cell with
(axis, kind, value). A cell writes ``<ablations>/<cell name>/``: ``metrics.json`` (the evaluate
stage's schema: ``srlab`` and ``bicubic`` on the cell's sets), ``cell.json`` (what changed and the
exact sampler settings), the SR images ``<set>/<name>.png`` and the inputs they came from,
``inputs/<set>/{lr,hr}`` (the first ``ablations.max_images`` images, centre crops of
``ablations.crop``). The report reads the cells that params.yaml defines now, so the folder of a value
removed from a grid is ignored.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from srlab import io
from srlab.ablations.grid import INPUTS, Cell
from srlab.ablations.params import AblationParams
from srlab.config import Params, as_dict
from srlab.data.degrade_params import DegradeParams
from srlab.data.eval_sets import EvalSet, find_eval_sets
from srlab.data.params import DataParams
from srlab.evaluation import evaluate
from srlab.evaluation.params import EvaluateParams
from srlab.models.params import ModelParams
from srlab.sampling.params import InferParams, SamplerParams
from srlab.sampling.upscale import build_pipeline, upscale_files
from srlab.training import train
from srlab.training.params import TrainParams

# A cell reads the grids and everything the infer stage (and, for extractor cells, training) reads.
SECTIONS = {
    "data": DataParams, "degrade": DegradeParams, "model": ModelParams, "train": TrainParams,
    "infer": InferParams, "evaluate": EvaluateParams, "ablations": AblationParams,
}  # fmt: skip


def cell_params(params: Params, cell: Cell) -> Params:
    """``params`` with the cell's knob turned (every kind's sampler settings, or the extractor)."""
    if cell.axis == "extractor":
        semantic = dataclasses.replace(params.model.semantic, extractor=cell.value)
        return params.replace(model=dataclasses.replace(params.model, semantic=semantic))
    infer = params.infer
    (set_name,) = cell.sets(params)  # one kind per sampler cell: the set whose preset it turns
    turned = sampler_settings(infer.sampler(cell.kind, set_name), params, cell)
    return params.replace(infer=infer.with_sampler(cell.kind, turned, set_name))


def sampler_settings(base: SamplerParams, params: Params, cell: Cell) -> SamplerParams:
    """The sampler settings of one kind of set with the cell's knob turned."""
    if cell.axis == "prompt":
        variant = params.ablations.prompt[cell.value]
        return dataclasses.replace(
            base, added_prompt=variant.added_prompt, negative_prompt=variant.negative_prompt
        )
    if cell.axis == "guidance_scale":
        return dataclasses.replace(base, guidance_scale=float(cell.value))
    if cell.axis == "start_point":
        return dataclasses.replace(base, start_point=cell.value)
    return base


def cell_weights(params: Params, cell: Cell, degrade_dir: Path, train_dir: Path, work_dir: Path) -> Params:
    """Params whose model loads the weights the cell runs: the train stage's, or (extractor cells whose
    extractor differs) the SR phase retrained into ``work_dir/train`` on the train stage's prior."""
    turned = train.sr_model_params(cell_params(params, cell), train_dir)
    weights = train_dir / train.FINAL_DIR
    if cell.axis == "extractor" and cell.value != params.model.semantic.extractor:
        weights = train.train_sr(turned, degrade_dir, work_dir / "train", train.accelerator_for(turned))
    return turned.replace(model=dataclasses.replace(turned.model, checkpoint=str(weights)))


def cell_inputs(eval_set: EvalSet, n: int, crop: int, root: Path) -> EvalSet:
    """The set as a cell sees it: its first ``n`` images by name (0: all), each cut to the centre
    ``crop`` px of the output size (LR: ``crop / scale``; 0: whole), written to ``root/<set>/{lr,hr}``
    (kept in the cell's folder: the figures show exactly what the cell saw)."""
    s = eval_set.scale
    hr_paths = evaluate.metrics.images_by_name(eval_set.hr_dir) if eval_set.hr_dir else {}
    out = dataclasses.replace(eval_set, lr_dir=root / eval_set.name / "lr")
    out = dataclasses.replace(out, hr_dir=root / eval_set.name / "hr" if hr_paths else None)
    for name, lr_path in list(evaluate.metrics.images_by_name(eval_set.lr_dir).items())[: n or None]:
        lr = io.read_image(lr_path)
        hr = io.read_image(hr_paths[name]) if hr_paths else None
        if crop:
            side = min(crop, lr.shape[1] * s, lr.shape[2] * s) // s * s
            full = hr if hr is not None else lr.repeat_interleave(s, 1).repeat_interleave(s, 2)
            full, lr = train.centre_crop_pair(full, lr, side, s)
            hr = full if hr is not None else None
        io.write_image(lr, out.lr_dir / f"{name}.png")
        if hr is not None:
            io.write_image(hr, out.hr_dir / f"{name}.png")
    return out


def run_cell(params: Params, cell: Cell, degrade_dir: Path, train_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Run one cell into ``out_dir/<cell name>`` (atomically); returns its metrics.json document."""
    degrade_dir, train_dir = Path(degrade_dir), Path(train_dir)
    available = {s.name: s for s in find_eval_sets(degrade_dir)}
    missing = [s for s in cell.sets(params) if s not in available]
    if missing:
        raise FileNotFoundError(
            f"ablations.eval_set {params.ablations.eval_set!r}: no eval set(s) {missing} in "
            f"{degrade_dir}/eval (have {sorted(available)}); it must name one of data.eval_sets"
        )
    with io.atomic_dir(Path(out_dir) / cell.name) as tmp:
        run = cell_weights(params, cell, degrade_dir, train_dir, tmp)
        pipe = build_pipeline(run)
        sets, used, ab = [], {}, params.ablations
        for name in cell.sets(params):
            eval_set = cell_inputs(available[name], ab.max_images, ab.crop, tmp / INPUTS)
            settings = run.infer.sampler(available[name].kind, name)
            upscale_files(pipe, io.list_images(eval_set.lr_dir), tmp / name, settings, params.base.seed)
            sets.append(eval_set)
            used[name] = as_dict(settings)
        measured = evaluate.evaluate_sets(sets, tmp, dataclasses.replace(params.evaluate, other_methods={}))
        document = evaluate.metrics_json(measured)
        (tmp / "metrics.json").write_text(json.dumps(document, indent=1))
        weights = Path(run.model.checkpoint)  # where they are once the cell folder is in place
        if weights.is_relative_to(tmp):
            weights = Path(out_dir) / cell.name / weights.relative_to(tmp)
        info = {"axis": cell.axis, "kind": cell.kind, "value": cell.value, "settings": used,
                "extractor": run.model.semantic.extractor, "weights": weights.as_posix()}  # fmt: skip
        (tmp / "cell.json").write_text(json.dumps(info, indent=1))
    return document
