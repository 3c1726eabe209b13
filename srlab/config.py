"""Typed, validated view of ``params.yaml``.

``params.yaml`` is the single source of every number. Each top-level section (``base`` plus one per
DVC stage) loads into a frozen dataclass; unknown keys, wrong types and out-of-range values fail at
load time with the file and the dotted key in the message, so a typo never silently falls back to a
default.

Profiles: the sections hold the embedded ``tiny`` profile. The top-level ``paper`` section holds only
the values that differ in the paper's configuration, with the same nesting; ``base.profile: paper``
overlays it. Switch with ``dvc exp run -S base.profile=paper`` (or edit the file).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

PARAMS_FILE = "params.yaml"
PROFILES = ("tiny", "paper")

T = TypeVar("T")


class ConfigError(ValueError):
    """A value in params.yaml is missing, unknown, mistyped or out of range."""


def _range(lo: float | None = None, hi: float | None = None, **kw: Any) -> Any:
    """A dataclass field whose value must lie in the closed interval [lo, hi]."""
    return field(metadata={"range": (lo, hi)}, **kw)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseParams:
    """Settings shared by every stage."""

    seed: int = _range(0)
    profile: Literal["tiny", "paper"] = "tiny"


@dataclass(frozen=True)
class DataParams:
    """Where the raw images live (folders of PNG/JPEG, relative to the project root)."""

    hr_train_dir: str  # HR photos for training (paper: LSDIR)
    eval_sets: dict[str, str]  # name -> folder of HR images, degraded into paired evaluation sets
    val_fraction: float = _range(0.0, 0.5)  # share of hr_train_dir held out for validation


@dataclass(frozen=True)
class DegradeParams:
    """Building the paired evaluation sets (filled in by the degradation issue)."""

    scale: int = _range(1, 8)  # HR side / LR side of the synthetic set
    hr_multiple: int = _range(1, 512)  # HR eval images are center-cropped so both sides divide by this


@dataclass(frozen=True)
class Params:
    """All of params.yaml, after the profile overlay."""

    base: BaseParams
    data: DataParams
    degrade: DegradeParams


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found")
    with path.open() as f:
        raw = yaml.safe_load(f) or {}
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
    """Apply the ``paper`` overlay when ``base.profile`` asks for it; drop the overlay section."""
    raw = dict(raw)
    paper = raw.pop("paper", {}) or {}
    profile = (raw.get("base") or {}).get("profile", "tiny")
    if profile not in PROFILES:
        raise ConfigError(f"{source}: base.profile: expected one of {PROFILES}, got {profile!r}")
    if not isinstance(paper, Mapping):
        raise ConfigError(f"{source}: paper: expected a mapping of overrides")
    for section in paper:
        if section not in raw:
            raise ConfigError(f"{source}: paper.{section}: overrides a section that does not exist")
    return overlay(raw, paper) if profile == "paper" else raw


def load_params(path: str | os.PathLike[str] | None = None) -> Params:
    """Load and validate the whole params file (default: the project's params.yaml)."""
    path = Path(path) if path is not None else project_root() / PARAMS_FILE
    raw = resolve_profile(read_yaml(path), str(path))
    return build(Params, raw, str(path), "")


def load_section(name: str, path: str | os.PathLike[str] | None = None) -> Any:
    """One validated section, e.g. ``load_section("degrade")``."""
    params = load_params(path)
    if name not in {f.name for f in dataclasses.fields(Params)}:
        raise ConfigError(f"unknown params section {name!r}")
    return getattr(params, name)


def as_dict(obj: Any) -> Any:
    """Plain-data view of a params dataclass (for provenance records and JSON)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def build(cls: type[T], raw: Any, source: str, key: str) -> T:
    """Build dataclass ``cls`` from ``raw``, checking keys, types and ranges recursively."""
    where = f"{source}: {key or '<top level>'}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(f"{key}.{u}".lstrip(".") for u in unknown)
        raise ConfigError(f"{source}: unknown key(s) {names}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        dotted = f"{key}.{name}".lstrip(".")
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing key {dotted}")
            continue
        value = _coerce(hints[name], raw[name], source, dotted)
        lo, hi = f.metadata.get("range", (None, None))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise ConfigError(f"{source}: {dotted} = {value!r} is out of range {bounds}")
        values[name] = value
    return cls(**values)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, source, key)
            except ConfigError:
                pass
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise bad
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: {key}: expected {len(args)} values, got {len(value)}")
            return tuple(
                _coerce(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        items = [_coerce(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad
        kt, vt = args or (Any, Any)
        return {_coerce(kt, k, source, key): _coerce(vt, v, source, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp in (str, bool) and not isinstance(value, tp):
        raise bad
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
