"""Resume (issue 20): a real prior + train-stage run (smoke profile) killed mid-way resumes to the weights
of an uninterrupted run, data feed and DataLoader workers included; the checkpoint loader is strict; a
run whose training params changed refuses to resume unless told to.

Run as a script (``python tests/test_resume.py <phase> <step> <hr> <data> <out>``) it is the prior and
train stages (``<out>/prior``, ``<out>/train``) that SIGKILL themselves in step ``<step>`` (0-based) of
``<phase>``, i.e. after checkpoint-<step> exists.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import helpers
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from PIL import Image
from safetensors.torch import load_file

from srlab.config import Params, load_params
from srlab.data import build as data
from srlab.training import loop, prior, train

ROOT = Path(__file__).resolve().parents[1]
KILL_AT = ("unet", 2)  # SIGKILL in the prior UNet's third step (checkpoint-2 written)
STOP_AT = ("sr", 2)  # then, resumed, a hook raises once the SR phase's checkpoint-2 is written


def make_photos(folder: Path, count: int = 4, size: int = 160) -> None:
    """Smooth random RGB photos, just over degrade.train.crop_size (128): a few crops each."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        low = torch.from_numpy(np.random.default_rng(i).random((1, 3, size // 16, size // 16)))
        image = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
        array = (image[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"p{i}.png")


def _small_data(params: Params, hr_dir: Path) -> Params:
    small = dataclasses.replace(
        params.data, hr_train_dir=str(hr_dir), eval_sets={}, paired_holdout=1, val_fraction=0.0
    )
    return params.replace(data=small)


def stage_params(hr_dir: Path, workers: int, **train_changes: Any) -> Params:
    """The train stage's params: the smoke profile on ``hr_dir``'s photos, ``workers`` DataLoader workers."""
    params = _small_data(load_params(ROOT / "params.yaml", "smoke", train.SECTIONS), hr_dir)
    tp = dataclasses.replace(params.train, num_workers=workers, **train_changes)
    return params.replace(train=tp)


def prior_params(hr_dir: Path) -> Params:
    """The prior stage's params on ``hr_dir``'s photos (smoke profile)."""
    params = load_params(ROOT / "params.yaml", "smoke", prior.SECTIONS)
    split = dataclasses.replace(params.data, hr_train_dir=str(hr_dir), paired_holdout=1, val_fraction=0.0)
    return params.replace(data=split)


def run_stages(hr_dir: Path, degrade: Path, out: Path, workers: int, **kwargs: Any) -> None:
    """The prior stage into ``out/prior``, then the train stage into ``out/train`` (which loads it)."""
    prior.train_prior(prior_params(hr_dir), out / "prior")
    train.run(stage_params(hr_dir, workers=workers), degrade, out / "train", **kwargs)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    """Every tensor the stages wrote: the prior (VAE, UNet) and the final unet/ + controlnet/."""
    found = {}
    folders = [out / "prior" / "model" / "vae", out / "prior" / "model" / "unet"]
    folders += [out / "train" / train.FINAL_DIR / "unet", out / "train" / train.FINAL_DIR / "controlnet"]
    for folder in folders:
        for file in sorted(folder.glob("*.safetensors")):
            found.update({f"{file.relative_to(out)}:{k}": v for k, v in load_file(file).items()})
    return found


def losses(out: Path) -> list[list[str]]:
    """(stage, phase, step, loss) rows of the DVCLive loss curves (samples/s is wall-clock)."""
    tsvs = sorted(out.glob("*/dvclive/plots/metrics/*/loss.tsv"))
    return [[tsv.parents[4].name, tsv.parent.name, *row.split("\t")] for tsv in tsvs
            for row in tsv.read_text().splitlines()[1:]]  # fmt: skip


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run (no workers), and one run SIGKILLed in the prior, resumed with one worker,
    stopped by a raising hook in the SR phase, resumed to the end (no workers)."""
    root = tmp_path_factory.mktemp("resume")
    hr, degrade = root / "photos", root / "degrade"
    make_photos(hr)
    from helpers import load_all

    data.build_stage(_small_data(load_all(ROOT / "params.yaml", "smoke"), hr), degrade)
    facts: dict[str, Any] = {"root": root, "hr": hr, "degrade": degrade}
    straight, resumed = root / "straight", root / "resumed"
    run_stages(hr, degrade, straight, workers=0)

    phase, step = KILL_AT
    cmd = [sys.executable, __file__, phase, str(step), str(hr), str(degrade), str(resumed)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    facts["killed"] = (killed.returncode, killed.stderr[-3000:])
    folders = {"vae": "prior/checkpoints/vae", "unet": "prior/checkpoints/unet", "sr": "train/sr"}
    facts["after_kill"] = {p: [s for s, _ in loop.checkpoints(resumed / f)] for p, f in folders.items()}

    def stop(step: int, folder: Path) -> None:
        if ("sr", step) == STOP_AT:
            raise Stop(folder)

    try:
        run_stages(hr, degrade, resumed, workers=1, on_checkpoint=stop)
        facts["stopped"] = False
    except Stop:
        facts["stopped"] = True
    facts["after_stop"] = [s for s, _ in loop.checkpoints(resumed / "train" / "sr")]
    run_stages(hr, degrade, resumed, workers=0)  # workers change nothing a step sees
    facts.update(straight=straight, resumed=resumed)
    return facts


@pytest.mark.slow  # the shared runs: ~55 s on 2 CPU cores
def test_killed_run_resumes_to_the_uninterrupted_weights(runs: dict[str, Any]) -> None:
    rc, stderr = runs["killed"]
    assert rc == -signal.SIGKILL, stderr
    assert runs["after_kill"] == {"vae": [3], "unet": [2], "sr": []}  # the prior keeps its newest
    assert runs["stopped"] and runs["after_stop"] == [2]
    straight, resumed = final_weights(runs["straight"]), final_weights(runs["resumed"])
    assert straight and sorted(straight) == sorted(resumed)
    differ = [k for k, v in straight.items() if not torch.equal(v, resumed[k])]
    assert not differ, f"{len(differ)} of {len(straight)} tensors differ, e.g. {differ[:3]}"
    assert losses(runs["straight"]) == losses(runs["resumed"])  # the same batches, step by step


def _copy_run(runs: dict[str, Any], name: str) -> Path:
    out = runs["root"] / name
    shutil.copytree(runs["resumed"], out)
    return out


def _resume_sr(runs: dict[str, Any], out: Path, params: Params | None = None, **kwargs: Any) -> Path:
    """The SR phase of the stage, resuming from ``out/train/sr`` (the prior is already in ``out/prior``)."""
    params = params or stage_params(runs["hr"], workers=0)
    p = train.sr_model_params(params, out / "train")
    return train.train_sr(p, runs["degrade"], out / "train", train.accelerator_for(p), **kwargs)


def _edit_state(out: Path, edit: Any) -> Path:
    path = loop.checkpoints(out / "train" / "sr")[-1][1] / loop.STATE_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, path)
    return path


@pytest.mark.slow  # the shared runs: ~55 s on 2 CPU cores
def test_resume_refuses_a_checkpoint_without_a_trainable_tensor(runs: dict[str, Any]) -> None:
    out = _copy_run(runs, "removed")
    state = torch.load(loop.checkpoints(out / "train" / "sr")[-1][1] / loop.STATE_FILE, weights_only=True)
    name = sorted(state["trainable"]["controlnet"])[0]
    path = _edit_state(out, lambda s: s["trainable"]["controlnet"].pop(name))
    with pytest.raises(loop.ResumeError, match="missing") as error:
        _resume_sr(runs, out)
    assert f"controlnet.{name}" in str(error.value) and str(path) in str(error.value)


@pytest.mark.slow  # the shared runs: ~55 s on 2 CPU cores
def test_resume_refuses_a_misshapen_trainable_tensor(runs: dict[str, Any]) -> None:
    out = _copy_run(runs, "misshapen")
    state = torch.load(loop.checkpoints(out / "train" / "sr")[-1][1] / loop.STATE_FILE, weights_only=True)
    name = next(k for k, v in sorted(state["trainable"]["unet"].items()) if v.dim() >= 1)  # a semantic block

    def widen(s: dict[str, Any]) -> None:
        t = s["trainable"]["unet"][name]
        s["trainable"]["unet"][name] = torch.cat([t, t[:1]])

    path = _edit_state(out, widen)
    with pytest.raises(loop.ResumeError, match="misshapen") as error:
        _resume_sr(runs, out)
    assert f"unet.{name}" in str(error.value) and str(path) in str(error.value)


@pytest.mark.slow  # the shared runs: ~55 s on 2 CPU cores
def test_resume_refuses_changed_training_params(runs: dict[str, Any]) -> None:
    out = _copy_run(runs, "changed")
    params = stage_params(runs["hr"], workers=0)
    lr = params.train.lr
    changed = stage_params(runs["hr"], workers=0, lr=lr * 2, steps=params.train.steps + 1, log_every=5)
    with pytest.raises(loop.ResumeError, match=r"train\.lr") as error:
        _resume_sr(runs, out, changed)
    message = str(error.value)
    assert f"train.lr: {lr!r} (checkpoint) -> {lr * 2!r} (now)" in message
    assert "train.steps" not in message and "log_every" not in message  # no effect on the weights
    assert "sr/checkpoint-3" in message and "allow_params_change" in message
    assert [s for s, _ in loop.checkpoints(out / "train" / "sr")] == [2, 3]  # refused before training on


# ---------------------------------------------------------------------------------------------
# The loop on a toy phase: optimizer state, params check and override, the fp16 GradScaler
# ---------------------------------------------------------------------------------------------


def toy_phase(steps: int, checkpoint_every: int = 0, **kwargs: Any) -> tuple[loop.Phase, Accelerator]:
    """The shared toy (tests/helpers.py), recording its training params so a resume compares them."""
    return helpers.toy_phase(steps, checkpoint_every, record_params=True, **kwargs)


def _toy_state(folder: Path) -> dict[str, Any]:
    return torch.load(loop.checkpoints(folder)[-1][1] / loop.STATE_FILE, weights_only=True)


def test_params_diff_names_dotted_keys() -> None:
    old = {"train": {"lr": 1e-3, "betas": (0.9, 0.99), "prior": {"steps": 3}}, "infer": {"x": 1}}
    new = {"train": {"lr": 2e-3, "betas": [0.9, 0.99], "prior": None}, "infer": {"x": 2}}
    assert loop.params_diff(old, new, ("infer",)) == [
        ("train.lr", 1e-3, 2e-3),
        ("train.prior", "<absent>", None),
        ("train.prior.steps", 3, "<absent>"),
    ]


def test_toy_resume_checks_optimizer_state_and_extra_models(tmp_path: Path) -> None:
    phase, acc = toy_phase(2)
    loop.run_phase(phase, acc, tmp_path, seed=0)
    path = loop.checkpoints(tmp_path)[-1][1] / loop.STATE_FILE
    good = torch.load(path, weights_only=True)

    def refused(edit: Any, *expected: str) -> None:
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)
        phase, acc = toy_phase(3)
        with pytest.raises(loop.ResumeError) as error:
            loop.run_phase(phase, acc, tmp_path, seed=0)
        for text in (str(path), *expected):
            assert text in str(error.value)
        torch.save(good, path)

    refused(lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(3, 4)), "toy.0.weight exp_avg")
    refused(lambda s: s["optimizer"]["param_groups"][0]["params"].pop(), "group 0 holds 3 parameters")
    refused(lambda s: s["optimizer"]["param_groups"].append({"params": []}), "2 param groups")
    refused(lambda s: s["trainable"]["toy"].update(extra=torch.zeros(1)), "unexpected", "toy.extra")
    refused(lambda s: s["trainable"].update(other={}), "other (a whole model)")
    phase, acc = toy_phase(3)
    loop.run_phase(phase, acc, tmp_path, seed=0)  # the untouched checkpoint resumes


def test_toy_params_check_and_override(tmp_path: Path) -> None:
    phase, acc = toy_phase(2)
    loop.run_phase(phase, acc, tmp_path, seed=0)
    phase, acc = toy_phase(3, log_every=2)  # an ignored key: resumes
    loop.run_phase(phase, acc, tmp_path, seed=0)
    phase, acc = toy_phase(4, lr=5e-3)
    with pytest.raises(loop.ResumeError, match=r"train\.lr: 0\.01 \(checkpoint\) -> 0\.005 \(now\)"):
        loop.run_phase(phase, acc, tmp_path, seed=0)
    phase, acc = toy_phase(4, lr=5e-3)
    loop.run_phase(phase, acc, tmp_path, seed=0, allow_params_change=True)
    assert phase.optimizer.param_groups[0]["lr"] == 5e-3  # the new params rule, not the checkpoint's
    assert _toy_state(tmp_path)["params"]["train"]["lr"] == 5e-3


def test_toy_grad_scaler_state_is_saved_and_restored(tmp_path: Path) -> None:
    def scaled(steps: int, every: int = 0) -> tuple[loop.Phase, Accelerator]:
        return toy_phase(steps, every, scaler=True, max_grad_norm=0.0)  # clipping: the scaled grads

    phase, acc = scaled(6)
    loop.run_phase(phase, acc, tmp_path / "straight", seed=1)
    straight_scale = acc.scaler.get_scale()
    phase, acc = scaled(2, every=2)
    loop.run_phase(phase, acc, tmp_path / "resumed", seed=1)
    assert "scaler" in _toy_state(tmp_path / "resumed")
    phase, acc = scaled(6, every=2)
    loop.run_phase(phase, acc, tmp_path / "resumed", seed=1)
    assert acc.scaler.get_scale() == straight_scale < 2.0**127  # an overflowing step was skipped
    a = torch.load(loop.checkpoints(tmp_path / "straight")[-1][1] / "toy.pt", weights_only=True)
    b = torch.load(loop.checkpoints(tmp_path / "resumed")[-1][1] / "toy.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _killed_run(phase_name: str, step: int, hr: Path, degrade: Path, out: Path) -> None:
    """The train stage, SIGKILLed (no cleanup, no atexit) as ``phase_name``'s step ``step`` begins."""
    run_phase = loop.run_phase

    def killing_run_phase(phase: loop.Phase, *args: Any, **kwargs: Any) -> Path | None:
        if phase.name == phase_name:
            loss = phase.loss

            def loss_or_die(s: int, micro: int, gen: torch.Generator) -> torch.Tensor:
                if s == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                return loss(s, micro, gen)

            phase.loss = loss_or_die
        return run_phase(phase, *args, **kwargs)

    loop.run_phase = killing_run_phase  # prior.py and train.py call loop.run_phase
    run_stages(hr, degrade, out, workers=1)


if __name__ == "__main__":
    _killed_run(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
