from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from srlab import config
from srlab.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_load_in_both_profiles(raw: dict, tmp_path: Path) -> None:
    tiny = config.load_params(ROOT / "params.yaml")
    assert tiny.base.profile == "tiny"
    assert tiny.data.hr_train_dir == raw["data"]["hr_train_dir"]
    raw["base"]["profile"] = "paper"
    paper = config.load_params(write(tmp_path, raw))
    assert paper.base.profile == "paper"
    assert paper.data.hr_train_dir == raw["paper"]["data"]["hr_train_dir"]
    assert paper.data.eval_sets == tiny.data.eval_sets  # not overridden -> kept


def test_unknown_key_names_key_and_file(raw: dict, tmp_path: Path) -> None:
    raw["degrade"]["scael"] = 4
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"params\.yaml: unknown key\(s\) degrade\.scael"):
        config.load_params(path)


def test_wrong_type_names_key(raw: dict, tmp_path: Path) -> None:
    raw["degrade"]["scale"] = "four"
    with pytest.raises(ConfigError, match=r"degrade\.scale: expected int, got str 'four'"):
        config.load_params(write(tmp_path, raw))


def test_bool_is_not_an_int(raw: dict, tmp_path: Path) -> None:
    raw["base"]["seed"] = True
    with pytest.raises(ConfigError, match=r"base\.seed"):
        config.load_params(write(tmp_path, raw))


def test_out_of_range(raw: dict, tmp_path: Path) -> None:
    raw["data"]["val_fraction"] = 0.9
    with pytest.raises(ConfigError, match=r"data\.val_fraction = 0\.9 is out of range \[0\.0, 0\.5\]"):
        config.load_params(write(tmp_path, raw))


def test_missing_key(raw: dict, tmp_path: Path) -> None:
    del raw["data"]["hr_train_dir"]
    with pytest.raises(ConfigError, match=r"missing key data\.hr_train_dir"):
        config.load_params(write(tmp_path, raw))


def test_bad_profile_and_bad_overlay(raw: dict, tmp_path: Path) -> None:
    raw["base"]["profile"] = "huge"
    with pytest.raises(ConfigError, match=r"base\.profile: expected one of"):
        config.load_params(write(tmp_path, raw))
    raw["base"]["profile"] = "paper"
    raw["paper"]["nosuchstage"] = {"x": 1}
    with pytest.raises(ConfigError, match=r"paper\.nosuchstage: overrides a section that does not exist"):
        config.load_params(write(tmp_path, raw))


def test_overlay_typos_are_caught_in_paper_profile(raw: dict, tmp_path: Path) -> None:
    raw["base"]["profile"] = "paper"
    raw["paper"]["degrade"] = {"scael": 2}
    with pytest.raises(ConfigError, match=r"degrade\.scael"):
        config.load_params(write(tmp_path, raw))


def test_int_widens_to_float(raw: dict, tmp_path: Path) -> None:
    raw["data"]["val_fraction"] = 0
    assert config.load_params(write(tmp_path, raw)).data.val_fraction == 0.0


def test_missing_file_and_project_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="params file not found"):
        config.load_params(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match=r"no params\.yaml found"):
        config.project_root(tmp_path)
    assert config.project_root(ROOT / "notebooks") == ROOT


def test_profile_argument_overrides_the_file(raw: dict, tmp_path: Path) -> None:
    path = write(tmp_path, raw)
    smoke = config.load_params(path, profile="smoke")
    assert smoke.base.profile == "smoke"
    assert smoke.train.steps == raw["smoke"]["train"]["steps"] < config.load_params(path).train.steps
    assert smoke.model == config.load_params(path).model  # untouched sections stay tiny
    with pytest.raises(ConfigError, match=r"base\.profile: expected one of"):
        config.load_params(path, profile="huge")


def test_params_survive_dvc_exp_run_set_param(tmp_path: Path) -> None:
    """`dvc exp run -S key=value` rewrites params.yaml with ruamel (YAML 1.2) and drops quotes: the
    rewritten file must load to the same params (YAML 1.1 would read an unquoted `no` as False)."""
    from dvc.utils.serialize import modify_yaml

    copy = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", copy)
    with modify_yaml(copy) as raw:  # what `dvc exp run -S base.seed=0` does to the file
        raw["base"]["seed"] = 0
    assert "mixed_precision: no " in copy.read_text()  # the quotes are gone
    for profile in config.PROFILES:
        assert config.load_params(copy, profile) == config.load_params(ROOT / "params.yaml", profile)
    loaded = config.read_yaml(copy)
    assert loaded["train"]["mixed_precision"] == "no" and loaded["data"]["paired_dir"] is None
