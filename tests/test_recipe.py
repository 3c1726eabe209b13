"""Training recipes (``base.recipe``): the release overlay's values and the pieces it switches on.

The expected values are the authors' script's (docs/research/release_training.md, cited per line), written
out here by hand, not read from params.yaml's overlay.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import all_sections, load_all, toy_phase
from ruamel.yaml import YAML

from srlab import config
from srlab.models.semantic import SEMANTIC_ATTR, CheckpointMismatchError
from srlab.models.sr_model import build_sr_model, load_seesr_init, save_checkpoint
from srlab.training import loop, train

ROOT = Path(__file__).resolve().parents[1]


def with_recipe(tmp_path: Path, recipe: str) -> Path:
    raw = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    raw["base"]["recipe"] = recipe
    path = tmp_path / "params.yaml"
    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump(raw, f)
    return path


@pytest.mark.parametrize("profile", ["tiny", "paper", "smoke"])
def test_the_release_recipe_sets_the_scripts_optimiser_and_batch_over_any_profile(
    tmp_path: Path, profile: str
) -> None:
    paper = config.load_params(with_recipe(tmp_path, "paper"), profile, all_sections())
    release = config.load_params(with_recipe(tmp_path, "release"), profile, all_sections())
    t = release.train
    assert (t.lr, t.weight_decay, t.optimizer) == (5e-5, 0.01, "adamw8bit")  # run.sh:58-59, script:392
    assert (t.batch_size, t.grad_accum) == (1, 2)  # run.sh:60-61
    assert (t.checkpoint_every, t.keep_checkpoints) == (10000, 0)  # run.sh:64; no total limit
    assert t.adam_betas == (0.9, 0.999) and t.max_grad_norm == 1.0 and t.null_prompt_prob == 0.5
    assert t.steps == paper.train.steps  # the profile's budget stays
    d = release.degrade.train
    assert (d.sharpen_target, d.bicubic_prob) == ("usm_target", 0.5)  # make_paired_data.py:141-146, 156
    assert (d.bicubic_antialias, d.bicubic_group) == (False, 10)  # make_paired_data.py:24, 156-162
    assert (d.hr_pipeline, d.wild_pipeline, d.mix) == ("release_mild", "release_mild", "proportional")
    assert (
        release.degrade.ops["usm_target"].kernel_size == 51
    )  # USMSharp radius 50 -> 51 (img_process_util:67)
    assert release.data.loader.order == "sorted"  # shuffle=False over sorted paths
    assert release.model == paper.model and release.infer == paper.infer  # a training recipe only


def test_an_unknown_recipe_is_refused(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"base\.recipe: expected one of \('paper', 'release'\)"):
        config.resolve_profile(config.read_yaml(with_recipe(tmp_path, "sideways")))


def test_adamw8bit_falls_back_to_adamw_with_the_same_hyperparameters_off_cuda(capsys) -> None:
    tp = load_all(ROOT / "params.yaml").train
    weights = [torch.nn.Parameter(torch.zeros(3))]
    opt = train._optimizer(weights, 5e-5, tp, "adamw8bit", torch.device("cpu"))
    assert type(opt) is torch.optim.AdamW
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (
        5e-5,
        tuple(tp.adam_betas),
        tp.weight_decay,
    )
    assert "needs bitsandbytes on CUDA" in capsys.readouterr().out


def test_keep_checkpoints_zero_keeps_every_checkpoint(tmp_path: Path) -> None:
    phase, accelerator = toy_phase(6, checkpoint_every=2, keep_checkpoints=0)
    loop.run_phase(phase, accelerator, tmp_path / "run", seed=0)
    assert [step for step, _ in loop.checkpoints(tmp_path / "run")] == [2, 4, 6]


@pytest.fixture(scope="module")
def tiny():
    params = load_all(ROOT / "params.yaml").model
    return params, build_sr_model(params, generator=torch.Generator().manual_seed(0))


def test_seesr_init_takes_the_whole_controlnet_and_only_the_unets_semantic_blocks(
    tiny, tmp_path: Path
) -> None:
    params, model = tiny
    seesr = build_sr_model(params, generator=torch.Generator().manual_seed(1))  # "SeeSR's" weights
    with torch.no_grad():
        for p in seesr.unet.parameters():
            p.add_(1.0)  # so every UNet tensor differs from the model's
    save_checkpoint(seesr, tmp_path / "seesr")  # SeeSR's layout: unet/ + controlnet/, save_pretrained
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    load_seesr_init(model, tmp_path / "seesr")
    after, theirs = model.unet.state_dict(), seesr.unet.state_dict()
    blocks = [k for k in after if f".{SEMANTIC_ATTR}." in k]
    assert blocks and all(torch.equal(after[k], theirs[k]) for k in blocks)
    assert all(torch.equal(after[k], before[k]) for k in after if k not in blocks)  # SD2's, unchanged
    for k, v in seesr.controlnet.state_dict().items():
        assert torch.equal(model.controlnet.state_dict()[k], v)


def test_seesr_init_rejects_a_misnamed_tensor_and_a_missing_folder(tiny, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    _, model = tiny
    save_checkpoint(model, tmp_path / "seesr")
    path = tmp_path / "seesr" / "controlnet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    name = next(k for k in state if "controlnet_down_blocks" in k)
    state[name.replace("controlnet_down_blocks", "controlnet_downblocks")] = state.pop(name)
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError, match="controlnet_down"):
        load_seesr_init(model, tmp_path / "seesr")
    with pytest.raises(FileNotFoundError, match=r"train\.init_from .*SeeSR"):
        load_seesr_init(model, tmp_path / "nowhere")
