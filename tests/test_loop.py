from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import load_all, toy_phase
from safetensors.torch import load_file

from srlab import io
from srlab.config import load_params
from srlab.data import build as data
from srlab.models.sr_model import build_sr_model
from srlab.sampling import upscale
from srlab.training import loop, prior, train, validate

ROOT = Path(__file__).resolve().parents[1]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "toy.pt", weights_only=True)


def test_step_generator_depends_only_on_keys() -> None:
    a = torch.rand(3, generator=loop.step_generator(0, 5, 1))
    b = torch.rand(3, generator=loop.step_generator(0, 5, 1))
    c = torch.rand(3, generator=loop.step_generator(0, 5, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def live_rows(out: Path, metric: str, phase: str = "toy") -> list[list[str]]:
    """(step, value) rows of DVCLive's ``<out>/dvclive/plots/metrics/<phase>/<metric>.tsv``, header off."""
    lines = (out / "dvclive" / "plots" / "metrics" / phase / f"{metric}.tsv").read_text().splitlines()
    assert lines[0] == f"step\t{metric}"
    return [line.split("\t") for line in lines[1:]]


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    phase, acc = toy_phase(6)
    straight = loop.run_phase(phase, acc, tmp_path / "straight", seed=3)

    phase, acc = toy_phase(3, checkpoint_every=3)
    loop.run_phase(phase, acc, tmp_path / "resumed", seed=3)  # "interrupted" after step 3
    phase, acc = toy_phase(6, checkpoint_every=3)  # a new process picks up the checkpoint
    resumed = loop.run_phase(phase, acc, tmp_path / "resumed", seed=3)

    assert resumed.name == straight.name == "checkpoint-6"
    for key, value in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[key], value, rtol=0, atol=0)
    rows = live_rows(tmp_path / "resumed", "loss")
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "6"]  # no duplicate rows
    assert live_rows(tmp_path / "straight", "loss") == rows  # same losses (DVCLive's TSV, as written)
    assert [r[0] for r in live_rows(tmp_path / "resumed", "samples_per_s")] == [r[0] for r in rows]


def test_loss_goes_down(tmp_path: Path) -> None:
    phase, acc = toy_phase(60)
    loop.run_phase(phase, acc, tmp_path, seed=0)
    losses = [float(r[1]) for r in live_rows(tmp_path, "loss")]
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_crash_while_saving_leaves_no_loadable_checkpoint(tmp_path: Path) -> None:
    phase, acc = toy_phase(2)

    def broken_save(folder: Path, models: dict[str, torch.nn.Module]) -> None:
        (folder / "toy.pt").write_bytes(b"half")
        raise OSError("disk full")

    phase.save = broken_save
    with pytest.raises(OSError, match="disk full"):
        loop.run_phase(phase, acc, tmp_path, seed=0)
    assert loop.checkpoints(tmp_path) == []


def test_keeps_only_the_newest_checkpoints(tmp_path: Path) -> None:
    phase, acc = toy_phase(4, checkpoint_every=1)
    phase.keep_checkpoints = 2
    loop.run_phase(phase, acc, tmp_path, seed=0)
    assert [s for s, _ in loop.checkpoints(tmp_path)] == [3, 4]


@pytest.mark.slow
def test_two_processes_with_gloo_stay_in_sync(tmp_path: Path) -> None:
    """torchrun --nproc_per_node 2 on the CPU (gloo): gradients are averaged, weights stay equal."""
    script = ROOT / "tests" / "multiprocess_toy.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["world_size"] == 2
    for key in rank0["weights"]:
        torch.testing.assert_close(rank0["weights"][key], rank1["weights"][key], rtol=0, atol=0)
    assert (tmp_path / "run" / "checkpoint-3" / "toy.pt").is_file()


@pytest.mark.slow
def test_srlab_train_on_two_gloo_processes(tmp_path: Path) -> None:
    """The train stage itself (SR phase, smoke profile, on the prior stage's prior) under torchrun with 2
    CPU processes: it finishes, both ranks agree, and the final weights load in the authors' layout."""
    params = load_all(ROOT / "params.yaml", "smoke")
    one = dataclasses.replace(params.data, eval_sets={})  # the val split is enough here
    data.build_stage(params.replace(data=one), tmp_path / "degrade")
    prior.run_stage(load_params(ROOT / "params.yaml", "smoke", prior.SECTIONS), tmp_path / "prior")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "-m", "srlab.training.train", "--params", str(ROOT / "params.yaml"), "--profile", "smoke",
           "--data", str(tmp_path / "degrade"), "--out", str(tmp_path / "train")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    final = tmp_path / "train" / train.FINAL_DIR
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"final": str(final)}
    assert result.stdout.count('{"final"') == 1  # printed by the main process only
    assert sorted(p.name for p in final.iterdir()) == ["controlnet", "srlab_provenance.json", "unet"]
    curves = tmp_path / "train" / train.LIVE_DIR / "plots" / "metrics"
    assert {p.name for p in curves.iterdir()} == {"sr"}
    steps = params.train.steps
    assert [s for s, _ in loop.checkpoints(tmp_path / "train" / "sr")][-1] == steps
    p = upscale.model_params_for_inference(params, tmp_path / "train")
    model = build_sr_model(p.model, "cpu", torch.Generator().manual_seed(0))
    saved = load_file(final / "controlnet" / "diffusion_pytorch_model.safetensors")
    for name, tensor in model.controlnet.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    # the train notebook's checkpoint hook: one strip (LR, SR, HR per held-out pair) per checkpoint
    hook = validate.checkpoint_sampler(
        params, tmp_path / "train", tmp_path / "degrade" / "eval" / "val_synthetic"
    )
    hook(steps, loop.checkpoints(tmp_path / "train" / "sr")[-1][1])
    strip = tmp_path / "train" / "samples" / "checkpoints" / f"step_{steps:06d}.png"
    assert io.read_image(strip).shape[0] == 3
