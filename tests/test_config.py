from __future__ import annotations

import dataclasses
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from helpers import all_sections, load_all

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
    tiny = load_all(ROOT / "params.yaml")
    assert tiny.base.profile == "tiny"
    assert tiny.data.hr_train_dir == raw["data"]["hr_train_dir"]
    raw["base"]["profile"] = "paper"
    paper = load_all(write(tmp_path, raw))
    assert paper.base.profile == "paper"
    assert paper.data.hr_train_dir == raw["paper"]["data"]["hr_train_dir"]
    assert paper.data.eval_sets == tiny.data.eval_sets  # not overridden -> kept


def test_unknown_key_names_key_and_file(raw: dict, tmp_path: Path) -> None:
    raw["degrade"]["scael"] = 4
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"params\.yaml: degrade\.scael: unknown key, got 4"):
        load_all(path)


def test_wrong_type_names_key(raw: dict, tmp_path: Path) -> None:
    raw["degrade"]["scale"] = "four"
    with pytest.raises(ConfigError, match=r"degrade\.scale: Input should be a valid integer, got 'four'"):
        load_all(write(tmp_path, raw))


def test_bool_is_not_an_int(raw: dict, tmp_path: Path) -> None:
    raw["base"]["seed"] = True
    with pytest.raises(ConfigError, match=r"base\.seed"):
        load_all(write(tmp_path, raw))


def test_out_of_range(raw: dict, tmp_path: Path) -> None:
    raw["data"]["val_fraction"] = 0.9
    with pytest.raises(ConfigError, match=r"data\.val_fraction: Input should be less than or equal to 0\.5"):
        load_all(write(tmp_path, raw))


def test_missing_key(raw: dict, tmp_path: Path) -> None:
    del raw["data"]["hr_train_dir"]
    with pytest.raises(ConfigError, match=r"data\.hr_train_dir: missing key$"):
        load_all(write(tmp_path, raw))


def test_bad_profile_and_bad_overlay(raw: dict, tmp_path: Path) -> None:
    raw["base"]["profile"] = "huge"
    with pytest.raises(ConfigError, match=r"base\.profile: expected one of"):
        load_all(write(tmp_path, raw))
    raw["base"]["profile"] = "paper"
    raw["paper"]["nosuchstage"] = {"x": 1}
    with pytest.raises(ConfigError, match=r"paper\.nosuchstage: overrides a section that does not exist"):
        load_all(write(tmp_path, raw))


def test_overlay_typos_are_caught_in_paper_profile(raw: dict, tmp_path: Path) -> None:
    raw["base"]["profile"] = "paper"
    raw["paper"]["degrade"] = {"scael": 2}
    with pytest.raises(ConfigError, match=r"degrade\.scael"):
        load_all(write(tmp_path, raw))


def test_int_widens_to_float(raw: dict, tmp_path: Path) -> None:
    raw["data"]["val_fraction"] = 0
    assert load_all(write(tmp_path, raw)).data.val_fraction == 0.0


def test_missing_file_and_project_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_all(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match=r"no params\.yaml found"):
        config.project_root(tmp_path)
    assert config.project_root(ROOT / "notebooks") == ROOT


def test_profile_argument_overrides_the_file(raw: dict, tmp_path: Path) -> None:
    path = write(tmp_path, raw)
    smoke = load_all(path, profile="smoke")
    assert smoke.base.profile == "smoke"
    assert smoke.train.steps == raw["smoke"]["train"]["steps"] < load_all(path).train.steps
    assert smoke.model == load_all(path).model  # untouched sections stay tiny
    with pytest.raises(ConfigError, match=r"base\.profile: expected one of"):
        load_all(path, profile="huge")


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
        assert load_all(copy, profile) == load_all(ROOT / "params.yaml", profile)
    loaded = config.read_yaml(copy)
    assert loaded["train"]["mixed_precision"] == "no" and loaded["data"]["paired_dir"] is None


def test_strings_are_not_numbers(raw: dict, tmp_path: Path) -> None:
    raw["train"]["steps"] = "100"  # strict: no "100" -> 100
    with pytest.raises(ConfigError, match=r"train\.steps: Input should be a valid integer, got '100'"):
        load_all(write(tmp_path, raw))


def test_a_stage_reads_only_the_sections_it_loaded() -> None:
    from srlab.evaluation.params import EvaluateParams

    params = config.load_params(ROOT / "params.yaml", None, {"evaluate": EvaluateParams})
    stated = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]["crop_border"]
    assert params.evaluate.crop_border == stated
    with pytest.raises(ConfigError, match=r"section 'train' was not loaded .* SECTIONS .* dvc\.yaml"):
        params.train  # noqa: B018


def test_cross_section_rules_run_at_load(raw: dict, tmp_path: Path) -> None:
    del raw["infer"]["presets"]["paper"]["wild"]
    with pytest.raises(ConfigError, match=r"eval_pipelines need infer\.presets entries \['paper\.wild'\]"):
        load_all(write(tmp_path, raw))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["ablations"]["eval_set"] = "nosuchset"
    with pytest.raises(ConfigError, match=r"ablations\.eval_set 'nosuchset' is not a data\.eval_sets name"):
        load_all(write(tmp_path, raw))


def test_no_value_has_two_defaults() -> None:
    """params.yaml holds every value; the schemas hold none (one default per value)."""
    todo = [config.BaseParams, *all_sections().values()]  # nested schemas (ops, ...) found via annotations
    seen = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for name, info in cls.__pydantic_fields__.items():
            assert info.is_required(), f"{cls.__name__}.{name} has a default in code; put it in params.yaml"
            todo += [a for a in _args(info.annotation) if dataclasses.is_dataclass(a)]
    assert len(seen) > 20  # every op and nested section was walked


def _args(tp: object) -> list:
    out, stack = [], [tp]
    while stack:
        t = stack.pop()
        out.append(t)
        stack += list(typing.get_args(t))
    return out


def test_a_subset_loads_only_its_keys_and_skips_rules_it_cannot_check() -> None:
    from srlab.training.train import SECTIONS

    params = config.load_params(ROOT / "params.yaml", None, SECTIONS)
    # the wild track is not the train stage's
    assert {name: list(tracks) for name, tracks in params.infer.presets.items()} == {
        "paper": ["synthetic"],
        "release": ["synthetic"],
    }
    assert params.infer.device == yaml.safe_load((ROOT / "params.yaml").read_text())["infer"]["device"]
    smoke = config.load_params(ROOT / "params.yaml", "smoke", SECTIONS)  # overlays reach the kept keys
    assert smoke.infer.sampler("synthetic").steps == 2
    cut = config.Subset(dict, ("settings.synthetic", "device", "nope.x")).cut(
        {"settings": {"synthetic": 1, "wild": 2}, "device": "cpu", "dtype": "auto"}
    )
    assert cut == {"settings": {"synthetic": 1}, "device": "cpu", "nope": {}}


def test_kind_overrides_turn_one_kind_of_every_preset_and_the_paper_profile_has_none() -> None:
    from srlab.sampling.infer import SECTIONS

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    tiny = config.load_params(ROOT / "params.yaml", "tiny", SECTIONS).infer
    knobs = raw["infer"]["kind_overrides"]
    for preset in ("paper", "release"):
        for kind in ("synthetic", "wild"):
            got, stored = tiny.sampler(kind, preset=preset), raw["infer"]["presets"][preset][kind]
            for key, value in knobs[kind].items():
                assert getattr(got, key) == (stored[key] if value is None else value), (preset, kind, key)
            assert got.added_prompt == stored["added_prompt"]  # the rest of the preset is kept
    # an ablation cell's settings are exactly what it asks for: the knobs are baked in, then cleared
    turned = dataclasses.replace(tiny.sampler("wild"), start_steps=7)
    assert tiny.with_sampler("wild", turned).sampler("wild") == turned
    paper = config.load_params(ROOT / "params.yaml", "paper", SECTIONS).infer
    for kind in ("synthetic", "wild"):
        assert paper.sampler(kind) == paper.presets["paper"][kind]  # the paper's values, untouched
