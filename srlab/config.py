"""Loading ``params.yaml``: YAML 1.2, the profile overlay, and one validated dataclass per section.

``params.yaml`` holds every value, once; the schemas hold none. Each section's schema lives beside the
code that reads it (``srlab/<package>/params.py``), and a stage loads only the sections it reads (its
``SECTIONS``): a stage's import closure then holds its own schemas and no other stage's, so DVC re-runs
it when, and only when, a schema it reads changes. Unknown keys, wrong types and out-of-range values
fail at load time (pydantic, strict, ``extra="forbid"``) with the file and the dotted key in the message.

Profiles: the sections hold the embedded ``tiny`` profile. The top-level ``paper`` section holds only
the values that differ in the paper's configuration, with the same nesting; ``base.profile: paper``
overlays it (``dvc exp run -S base.profile=paper``). ``smoke`` does the same for the test suite: the
tiny profile cut to a few steps and images (notebooks take a ``profile`` parameter; tests pass ``smoke``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

if TYPE_CHECKING:  # the section types, for type checkers only: importing them would tie every stage to all
    from srlab.ablations.params import AblationParams
    from srlab.data.degrade_params import DegradeParams
    from srlab.data.params import DataParams
    from srlab.evaluation.params import EvaluateParams
    from srlab.models.params import ModelParams
    from srlab.reporting.params import ReportParams
    from srlab.sampling.params import InferParams
    from srlab.training.params import TrainParams

PARAMS_FILE = "params.yaml"
PROFILES = ("tiny", "paper", "smoke")
RECIPES = ("paper", "release")  # training recipes: the paper's text, or the authors' deleted script
RECIPE_OVERLAY = "release_recipe"  # applied after the profile's overlay when base.recipe is release
OVERLAYS = ("paper", "smoke", RECIPE_OVERLAY)  # sections of params.yaml that override the others
SECTION_NAMES = ("base", "data", "degrade", "evaluate", "report", "model", "train", "infer", "ablations")

T = TypeVar("T")


class ConfigError(ValueError):
    """A value in params.yaml is missing, unknown, mistyped or out of range."""


# ---------------------------------------------------------------------------------------------
# Schema building blocks (used by the srlab/*/params.py modules)
# ---------------------------------------------------------------------------------------------

# Frozen, no unknown keys, no silent coercion ("1" is not 1; an int is a valid float).
schema = partial(dataclass, frozen=True, config=ConfigDict(extra="forbid", strict=True))


def span(lo: float | None = None, hi: float | None = None, *, of: type = float, odd: bool = False,
         one: bool = False) -> Any:  # fmt: skip
    """A [lo, hi] range drawn uniformly: lo <= hi, both ends within the bounds; ``odd``: odd ints;
    ``one``: the range contains 1 (half the draws lie below 1, half above)."""

    def check(value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError("a range [lo, hi] needs lo <= hi")
        if (lo is not None and value[0] < lo) or (hi is not None and value[1] > hi):
            raise ValueError(f"both ends must lie in [{lo}, {hi}]")
        if one and not value[0] <= 1 <= value[1]:
            raise ValueError("the range must contain 1 (half the draws lie below 1, half above)")
        if odd and any(v % 2 == 0 for v in value):
            raise ValueError("kernel sizes must be odd")
        return value

    return Annotated[tuple[of, of], AfterValidator(check)]


def odd_int(lo: int, hi: int) -> Any:
    """An odd integer in [lo, hi] (kernel sizes)."""

    def check(value: int) -> int:
        if value % 2 == 0:
            raise ValueError("kernel sizes must be odd")
        return value

    return Annotated[int, Field(ge=lo, le=hi), AfterValidator(check)]


def probs(tp: Any) -> Any:
    """Probabilities (a tuple, or a mapping to them) that are >= 0 and sum to 1."""

    def check(value: Any) -> Any:
        values = list(value.values()) if isinstance(value, Mapping) else list(value)
        if not values or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
            raise ValueError("probabilities must be >= 0 and sum to 1")
        return value

    return Annotated[tp, AfterValidator(check)]


@schema
class BaseParams:
    """Settings shared by every stage."""

    seed: Annotated[int, Field(ge=0)]
    profile: Literal["tiny", "paper", "smoke"]
    recipe: Literal["paper", "release"]  # training recipe: README "Training recipes"


# ---------------------------------------------------------------------------------------------
# The loaded sections
# ---------------------------------------------------------------------------------------------


class Params:
    """The params.yaml sections one stage loaded (after the profile overlay), as attributes.

    Reading a section the stage did not load raises: a stage's reads are its ``SECTIONS``, which is what
    its ``params`` in dvc.yaml lists (tests/test_dvc_deps.py)."""

    if TYPE_CHECKING:
        base: BaseParams
        data: DataParams
        degrade: DegradeParams
        evaluate: EvaluateParams
        report: ReportParams
        model: ModelParams
        train: TrainParams
        infer: InferParams
        ablations: AblationParams

    def __init__(self, **sections: Any) -> None:
        self.__dict__["_sections"] = dict(sections)

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__["_sections"]
        if name in sections:
            return sections[name]
        if name in SECTION_NAMES:
            raise ConfigError(
                f"params section {name!r} was not loaded (loaded: {', '.join(sections)}); add its schema to "
                f"the stage's SECTIONS and `{name}` to the stage's params in dvc.yaml"
            )
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"Params is frozen; use .replace({name}=...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self.sections == other.sections

    def __repr__(self) -> str:
        return f"Params({', '.join(self.sections)})"

    @property
    def sections(self) -> dict[str, Any]:
        return dict(self.__dict__["_sections"])

    def replace(self, **changes: Any) -> Params:
        """A copy with some sections replaced (``params.replace(model=...)``)."""
        return Params(**{**self.sections, **changes})

    def as_dict(self) -> dict[str, Any]:
        return {name: as_dict(section) for name, section in self.sections.items()}


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds params.yaml.

    Notebooks run from ``notebooks/`` under Jupyter and from the root under papermill; both call
    this to find the project.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"no {PARAMS_FILE} found in {here} or any parent folder; run from inside the srlab checkout"
    )


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file as plain data, read as YAML 1.2 (ruamel, as ``dvc exp run -S`` writes it back: ``no`` is
    a string, only true/false are booleans)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found")
    try:
        raw = YAML(typ="safe", pure=True).load(path.read_text()) or {}
    except YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def overlay(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, anything else in ``update`` replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_profile(raw: Mapping[str, Any], source: str = PARAMS_FILE) -> dict[str, Any]:
    """Apply the overlay section named by ``base.profile`` (``paper`` or ``smoke``), then ``release_recipe``
    when ``base.recipe`` is ``release``; drop all overlays."""
    raw = dict(raw)
    overlays = {name: raw.pop(name, {}) or {} for name in OVERLAYS}
    unknown = sorted(set(raw) - set(SECTION_NAMES))
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTION_NAMES)}"
        )
    profile = (raw.get("base") or {}).get("profile", "tiny")
    if profile not in PROFILES:
        raise ConfigError(f"{source}: base.profile: expected one of {PROFILES}, got {profile!r}")
    for name, overrides in overlays.items():
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{source}: {name}: expected a mapping of overrides")
        for section in overrides:
            if section not in raw:
                raise ConfigError(f"{source}: {name}.{section}: overrides a section that does not exist")
    resolved = overlay(raw, overlays[profile]) if profile in overlays else raw
    recipe = (resolved.get("base") or {}).get("recipe", "paper")
    if recipe not in RECIPES:
        raise ConfigError(f"{source}: base.recipe: expected one of {RECIPES}, got {recipe!r}")
    return overlay(resolved, overlays[RECIPE_OVERLAY]) if recipe == "release" else resolved


def validate(cls: type[T], raw: Any, source: str, key: str) -> T:
    """``raw`` (plain YAML data) as the schema dataclass ``cls``; every error names ``key.field``."""
    try:
        # JSON mode: YAML's lists are tuples where the schema says so; strict: no "1" -> 1 coercion.
        return TypeAdapter(cls).validate_json(json.dumps(raw), strict=True)
    except ValidationError as err:
        raise ConfigError("\n".join(_message(e, raw, source, key) for e in err.errors())) from None


_MESSAGES = {"missing": "missing key", "unexpected_keyword_argument": "unknown key"}


def _message(error: Any, raw: Any, source: str, key: str) -> str:
    """One pydantic error as ``file: dotted.key: what is wrong, got value``, in params.yaml's terms."""
    path, here = [key], raw
    for part in error["loc"]:  # drop the union tags pydantic adds (ops.blur1.blur.sigma -> ops.blur1.sigma)
        if isinstance(here, Mapping) and part not in here and here.get("op") == part:
            continue
        path.append(str(part))
        here = here.get(part) if isinstance(here, Mapping) else None
    kind, got = error["type"], error.get("input")
    if kind == "union_tag_invalid":
        tags = error["ctx"]["expected_tags"]
        return f"{source}: {'.'.join(path)}.op: expected one of {tags}, got {got.get('op')!r}"
    what = _MESSAGES.get(kind, error["msg"].removeprefix("Value error, "))
    shown = "" if kind == "missing" or isinstance(got, Mapping) else f", got {got!r}"
    return f"{source}: {'.'.join(path)}: {what}{shown}"


# Rules between sections, checked whenever a load holds all the sections a rule names.
def _eval_kinds_have_settings(p: Params) -> None:
    infer = p.infer
    used = {infer.preset, *infer.set_presets.values()}
    kinds = [
        p.degrade.pipelines[e].sampled_as or e for e in p.degrade.eval_pipelines if e in p.degrade.pipelines
    ]
    missing = [f"{name}.{kind}" for name in sorted(used) for kind in kinds
               if kind not in infer.presets.get(name, {})]  # fmt: skip
    if missing:
        raise ConfigError(
            f"{PARAMS_FILE}: degrade.eval_pipelines need infer.presets entries {missing}; each eval set is "
            "sampled with infer.presets.<its preset>.<its pipeline>"
        )


def _ablation_set_exists(p: Params) -> None:
    if p.ablations.eval_set not in (*p.data.eval_sets, "val"):
        raise ConfigError(
            f"{PARAMS_FILE}: ablations.eval_set {p.ablations.eval_set!r} is not a data.eval_sets name "
            f"({', '.join(p.data.eval_sets)}) or val"
        )


def _ablation_kinds_have_settings(p: Params) -> None:
    name = p.infer.preset
    missing = [kind for kind in p.ablations.guidance_scale if kind not in p.infer.presets.get(name, {})]
    if missing:
        raise ConfigError(
            f"{PARAMS_FILE}: ablations.guidance_scale kinds {missing} have no infer.presets.{name} entry"
        )


CROSS_RULES: tuple[tuple[tuple[str, ...], Callable[[Params], None]], ...] = (
    (("degrade", "infer"), _eval_kinds_have_settings),
    (("ablations", "data"), _ablation_set_exists),
    (("ablations", "infer"), _ablation_kinds_have_settings),
)


@dataclasses.dataclass(frozen=True)
class Subset:
    """Part of a section: only ``keys`` (dotted, e.g. ``presets.paper.synthetic``) are loaded and depended on.

    For a stage that reads a few entries of another stage's section: the train stage samples its
    validation images with the synthetic entries of ``infer.presets``, so a change to the wild track's
    settings must not re-run training (dvc.yaml lists ``infer.presets.paper.synthetic``, not ``infer``)."""

    schema: type
    keys: tuple[str, ...]

    def cut(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """``raw`` (the section) with only ``keys`` kept; a missing key is left out (validation names it)."""
        kept: dict[str, Any] = {}
        for key in self.keys:
            *parents, leaf = key.split(".")
            src, dst = raw, kept
            for part in parents:
                src = src.get(part, {}) if isinstance(src, Mapping) else {}
                dst = dst.setdefault(part, {})
            if isinstance(src, Mapping) and leaf in src:
                dst[leaf] = src[leaf]
        return kept


def load_params(
    path: str | os.PathLike[str] | None,
    profile: str | None,
    sections: Mapping[str, type | Subset],
) -> Params:
    """The named sections of a params file (default: the project's params.yaml), validated.

    ``sections`` maps section names to their schemas, or to a ``Subset`` of one (a stage passes its
    ``SECTIONS``); ``base`` is always loaded. ``profile`` (tiny | paper | smoke), when given, replaces
    the file's ``base.profile``. Rules between sections run when each section they name is loaded whole."""
    path = Path(path) if path is not None else project_root() / PARAMS_FILE
    raw = read_yaml(path)
    if profile is not None:
        raw["base"] = {**(raw.get("base") or {}), "profile": profile}
    raw = resolve_profile(raw, str(path))
    loaded: dict[str, Any] = {}
    whole = {"base"}
    for name, spec in {"base": BaseParams, **sections}.items():
        if name not in SECTION_NAMES:
            raise ConfigError(f"unknown params section {name!r}; known: {', '.join(SECTION_NAMES)}")
        if name not in raw:
            raise ConfigError(f"{path}: missing section {name}")
        if isinstance(spec, Subset):
            loaded[name] = validate(spec.schema, spec.cut(raw[name]), str(path), name)
        else:
            loaded[name] = validate(spec, raw[name], str(path), name)
            whole.add(name)
    params = Params(**loaded)
    for needs, rule in CROSS_RULES:
        if all(n in whole for n in needs):
            rule(params)
    return params


def as_dict(obj: Any) -> Any:
    """Plain-data view of a params dataclass (for provenance records and JSON)."""
    if isinstance(obj, Params):
        return obj.as_dict()
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
