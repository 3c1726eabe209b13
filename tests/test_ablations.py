"""The ablation grids: which cells exist, what each changes, and how results become tables."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import load_all

from srlab import io
from srlab.ablations import cells as ablations
from srlab.ablations import grid, tables
from srlab.ablations.grid import Cell
from srlab.config import ConfigError, Params, as_dict
from srlab.data.eval_sets import EvalSet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params() -> Params:
    return load_all(ROOT / "params.yaml", "tiny")


def test_cells_cover_every_grid_value_once(params: Params) -> None:
    ab = params.ablations
    found = grid.cells(params)
    expected = 2 * len(ab.prompt) + sum(map(len, ab.guidance_scale.values())) + 2 * len(ab.start_point)
    assert len(found) == expected + len(ab.extractor)
    assert len({c.name for c in found}) == len(found)
    assert Cell("guidance_scale", "wild", "14.0") in found
    assert Cell("extractor", "both", "none").sets(params) == ["set5_synthetic", "set5_wild"]
    assert Cell("prompt", "wild", "none").sets(params) == ["set5_wild"]


def test_cell_names_match_the_stages_dvc_expands(params: Params) -> None:
    """Every cell's output folder is an output of a dvc.yaml stage, as DVC renders the grid values."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs = [o for s in stages.values() if "matrix" in s for o in s["outs"]]
    templates = [o for o in outs if not o.startswith("build/notebooks/")]  # the cell folders
    assert len(templates) == 5
    assert {c.stage for c in grid.cells(params)} == {n for n, s in stages.items() if "matrix" in s}
    assert all(t.startswith("build/ablations/") for t in templates)
    # DVC renders floats with str(): 10.0 -> "10.0", the value Cell.name carries
    assert Cell("guidance_scale", "wild", str(10.0)).name == "guidance_scale-wild-10.0"


def test_find_cell_accepts_numbers_and_refuses_values_off_the_grid(params: Params) -> None:
    assert grid.find_cell(params, "guidance_scale", "wild", 10) == Cell("guidance_scale", "wild", "10.0")
    assert grid.find_cell(params, "prompt", "synthetic", "positive").value == "positive"
    with pytest.raises(ConfigError, match=r"guidance_scale-wild-9\.0.*not in params.yaml's ablations grids"):
        grid.find_cell(params, "guidance_scale", "wild", "9.0")


@pytest.mark.parametrize(
    ("cell", "changed"),
    [
        (Cell("guidance_scale", "wild", "12.0"), {"guidance_scale": 12.0}),
        (Cell("start_point", "synthetic", "noise"), {"start_point": "noise"}),
        (Cell("prompt", "wild", "none"), {"added_prompt": "", "negative_prompt": ""}),
    ],
)
def test_a_cell_turns_one_knob_of_one_kind(params: Params, cell: Cell, changed: dict) -> None:
    turned = ablations.cell_params(params, cell)
    other = "synthetic" if cell.kind == "wild" else "wild"
    (name,) = cell.sets(params)
    other_set = name.rsplit("_", 1)[0] + "_" + other
    assert turned.infer.sampler(other, other_set) == params.infer.sampler(other, other_set)
    assert turned.model == params.model
    before = as_dict(params.infer.sampler(cell.kind, name))
    after = as_dict(turned.infer.sampler(cell.kind, name))
    assert {k: v for k, v in after.items() if before[k] != v} == {
        k: v for k, v in changed.items() if before[k] != v
    }
    assert all(after[k] == v for k, v in changed.items())


def test_extractor_cell_changes_only_the_extractor(params: Params) -> None:
    turned = ablations.cell_params(params, Cell("extractor", "both", "none"))
    assert turned.model.semantic.extractor == "none"
    assert dataclasses.replace(turned.model, semantic=params.model.semantic) == params.model
    assert turned.infer == params.infer


def _document(psnr: float, piqe: float) -> dict:
    return {
        "sets": {
            "set5_synthetic": {"srlab": {"n_images": 5, "psnr_rgb": psnr, "lpips": None, "score_fr": None}},
            "set5_wild": {"srlab": {"n_images": 5, "piqe": piqe, "score_nr": None}},
        },
        "challenge": {"set5": {"srlab": {"score_fr": None, "score_nr": None, "challenge": None}}},
        "unavailable": {"lpips": "no weights"},
    }


def test_tables_and_summary_from_cell_documents(params: Params, tmp_path: Path) -> None:
    cell = Cell("extractor", "both", "none")
    (tmp_path / cell.name).mkdir()
    (tmp_path / cell.name / "metrics.json").write_text(json.dumps(_document(20.5, 33.0)))
    results = tables.read_cells(params, tmp_path)
    assert results[cell] is not None and results[Cell("extractor", "both", "sam2")] is None
    rows = tables.table_rows(params, results, "extractor")
    ran = [r for r in rows if r["extractor"] == "none"]
    assert ran[0] == {"extractor": "none", "set": "set5_synthetic", "images": "5", "psnr_rgb ↑": "20.5",
                      "lpips ↓": "n/a", "score_fr ↑": "n/a", "piqe ↓": "", "score_nr ↑": "",
                      "status": ""}  # fmt: skip
    assert ran[1]["piqe ↓"] == "33" and ran[1]["score_nr ↑"] == "n/a" and list(ran[1])[-1] == "status"
    not_run = [r["status"] for r in rows if r["extractor"] == "sam2"]
    assert not_run == ["not run (`dvc repro ablate_extractor`)"] * 2
    with_paper = tables.table_rows(params, results, "extractor", {("extractor", "wild", "sam2"): 20.2305})
    scored = {(r["extractor"], r["set"]): r["paper score"] for r in with_paper}
    assert scored == {("sam2", "set5_synthetic"): "", ("sam2", "set5_wild"): "20.2305",
                      ("none", "set5_synthetic"): "", ("none", "set5_wild"): "",
                      ("dape", "set5_synthetic"): "", ("dape", "set5_wild"): ""}  # fmt: skip
    assert list(with_paper[0])[-2:] == ["status", "paper score"]
    summary = tables.summary(params, results)
    assert summary == {"extractor": {"none": {
        "set5_synthetic": {"n_images": 5, "psnr_rgb": 20.5, "lpips": None, "score_fr": None},
        "set5_wild": {"n_images": 5, "piqe": 33.0, "score_nr": None}}}}  # fmt: skip


def test_cell_inputs_cut_aligned_centre_crops(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 40, 64, generator=gen)
    lr = F.avg_pool2d(hr[None], 4)[0]  # (3, 10, 16)
    for name in ("b", "a"):
        io.write_image(hr, tmp_path / "s_synthetic/hr" / f"{name}.png")
        io.write_image(lr, tmp_path / "s_synthetic/lr" / f"{name}.png")
        io.write_image(hr, tmp_path / "s_wild/lr" / f"{name}.png")
    root = tmp_path
    paired = EvalSet("s_synthetic", root / "s_synthetic/lr", root / "s_synthetic/hr", 4, "synthetic", "s")
    cut = ablations.cell_inputs(paired, 1, 16, tmp_path / "cells")
    assert [p.name for p in io.list_images(cut.lr_dir)] == ["a.png"] and cut.hr_dir is not None
    hr8, lr8 = io.read_image(cut.hr_dir / "a.png"), io.read_image(cut.lr_dir / "a.png")
    assert hr8.shape == (3, 16, 16) and lr8.shape == (3, 4, 4)
    q = io.read_image(tmp_path / "s_synthetic/hr/a.png")  # the 8-bit values written
    assert torch.equal(hr8, q[:, 12:28, 24:40])  # centre, on the x4 grid of the LR
    assert torch.equal(lr8, io.read_image(tmp_path / "s_synthetic/lr/a.png")[:, 3:7, 6:10])
    wild = EvalSet("s_wild", tmp_path / "s_wild/lr", None, 1, "wild", "s")
    cut = ablations.cell_inputs(wild, 0, 100, tmp_path / "cells")
    assert cut.hr_dir is None and len(io.list_images(cut.lr_dir)) == 2
    assert io.read_image(cut.lr_dir / "b.png").shape == (3, 40, 40)  # the crop shrinks to fit
    whole = ablations.cell_inputs(wild, 0, 0, tmp_path / "whole")  # copies, uncut
    assert torch.equal(io.read_image(whole.lr_dir / "a.png"), io.read_image(wild.lr_dir / "a.png"))
