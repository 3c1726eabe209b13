"""Image quality metrics (pyiqa 0.1.16), the NTIRE 2025 challenge score, per-image rows and per-set summaries.

Protocol (every summary repeats it under ``protocol``, so a number never travels without it):
- inputs are srlab.io images: float RGB in [0, 1] as read from 8-bit files; SR and HR pair by file
  name without suffix and must have the same size;
- ``psnr_rgb`` / ``psnr_y``: 10·log10(1 / MSE) in float64 over R, G, B jointly or over Y. This is pyiqa's
  ``psnr`` / ``psnry`` without the 1e-8 that pyiqa adds to the MSE (which caps identical images at 80 dB;
  here they give inf, as scikit-image and BasicSR);
- ``ssim_rgb`` / ``ssim_y``: pyiqa's ``ssimc`` / ``ssim``: 11x11 Gaussian window (σ 1.5), 'valid' borders,
  values rounded to 8 bits first (as MATLAB), float64, channel mean for RGB;
- Y is ``y_color_space``: ``yiq`` (pyiqa's default: Y = 0.299 R + 0.587 G + 0.114 B, in [0, 1]) or
  ``ycbcr`` (ITU-R BT.601 studio range, 16-235, as MATLAB rgb2ycbcr and BasicSR; ~1.3 dB higher PSNR);
- ``crop_border`` pixels are cut from every edge before PSNR and SSIM only; LPIPS and the no-reference
  metrics see the whole image;
- learned metrics are pyiqa's default configuration of the same name (``lpips``: AlexNet v0.1; ``musiq``,
  ``maniqa``, ``hyperiqa``: KonIQ-10k checkpoints; ``clipiqa``: CLIP RN50 with antonym prompts; ``nrqm``).
  A metric is never replaced by another one under its name.

- ``psnr_ntire`` / ``ssim_ntire``: the NTIRE 2025 organisers' PSNR and SSIM (srlab.evaluation.challenge:
  BT.601 Y unrounded, 4 px cut from every edge, MATLAB-form SSIM), whatever ``crop_border`` says.

Scores: the challenge's objective score (paper Fig. 1) is ``PSNR + 10 SSIM - 10 LPIPS + 0.1 MUSIQ +
10 MANIQA + 10 CLIPIQA``, its full-reference terms measured on the synthetic (paired) set and its
no-reference terms on the wild set; the two parts are ``score_fr`` and ``score_nr`` (the partial scores
of Table 3), ``challenge`` their sum (``challenge_score`` combines two sets). ``score_fr`` and
``challenge`` take the organisers' PSNR and SSIM (``srlab score`` gives the same numbers); the labelled
variants ``score_fr_pyiqa`` / ``challenge_pyiqa`` take ``score_psnr`` / ``score_ssim`` instead (default:
pyiqa's ``psnr`` = RGB and ``ssim`` = Y, as many papers compute them).

Weights of the learned metrics are looked up, never downloaded, in a local torch hub folder; which files,
where, and how to fill it: srlab.evaluation.weights. A metric whose files are missing is reported unavailable
with the reason, and so is every score that needs it.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from srlab import io
from srlab.evaluation.fullref import Y_DEFS as _Y_DEFS
from srlab.evaluation.fullref import psnr, ssim
from srlab.evaluation.params import EvaluateParams
from srlab.evaluation.weights import ASSETS, METRICS, hub_dir, missing_weights, pyiqa_offline

PYIQA_VERSION = "0.1.16"
ScoreFn = Callable[[torch.Tensor, torch.Tensor | None], float]


# Score name -> {metric or role: weight}; roles "psnr"/"ssim" resolve to evaluate.score_psnr/score_ssim.
_FR_PART = {"psnr_ntire": 1.0, "ssim_ntire": 10.0, "lpips": -10.0}  # the organisers' score_release.py
_FR_PYIQA = {"psnr": 1.0, "ssim": 10.0, "lpips": -10.0}
_NR_PART = {"musiq": 0.1, "maniqa": 10.0, "clipiqa": 10.0}
SCORES: dict[str, dict[str, float]] = {
    "score_fr": _FR_PART,
    "score_nr": _NR_PART,
    "challenge": {**_FR_PART, **_NR_PART},
    "score_fr_pyiqa": _FR_PYIQA,
    "challenge_pyiqa": {**_FR_PYIQA, **_NR_PART},
}
_OWN = ("psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y")  # measured here (protocol above); the rest by pyiqa
_NTIRE = ("psnr_ntire", "ssim_ntire")  # srlab.evaluation.challenge's, on the 8-bit images


def _device(choice: str) -> str:
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("evaluate.device is cuda but no CUDA device is visible; use auto or cpu")
    return choice


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def score_terms(score: str, params: EvaluateParams) -> dict[str, float]:
    """{metric: weight} of ``score`` with the PSNR/SSIM roles resolved from params."""
    roles = {"psnr": params.score_psnr, "ssim": params.score_ssim}
    return {roles.get(term, term): weight for term, weight in SCORES[score].items()}


def compute_scores(
    means: Mapping[str, float],
    requested: Sequence[str],
    unavailable: Mapping[str, str],
    params: EvaluateParams,
) -> tuple[dict[str, float], dict[str, str]]:
    """Scores whose metrics were all requested: their values, or why not (a needed metric is unavailable)."""
    values, reasons = {}, {}
    for score in SCORES:
        terms = score_terms(score, params)
        if not set(terms) <= set(requested):
            continue  # not measured on this set (e.g. the NR part on a paired set): not applicable
        lacking = [t for t in terms if t in unavailable]
        if lacking:
            reasons[score] = f"needs {', '.join(lacking)}, unavailable (see there)"
        else:
            values[score] = math.fsum(w * means[t] for t, w in terms.items())
    return values, reasons


def challenge_score(fr_summary: Mapping[str, Any], nr_summary: Mapping[str, Any]) -> dict[str, Any]:
    """The challenge score over two sets: score_fr of the paired set + score_nr of the wild set (and the
    ``challenge_pyiqa`` variant from ``score_fr_pyiqa``)."""
    out: dict[str, Any] = {"fr_set": fr_summary.get("set"), "nr_set": nr_summary.get("set")}
    unavailable: dict[str, str] = {}
    for total, fr in (("challenge", "score_fr"), ("challenge_pyiqa", "score_fr_pyiqa")):
        reasons = []
        for part, summary in ((fr, fr_summary), ("score_nr", nr_summary)):
            if part in summary:
                out[part] = summary[part]
            else:
                why = summary.get("unavailable", {}).get(part, "its metrics were not requested")
                reasons.append(f"{part} of {summary.get('set')}: {why}")
        if reasons:
            unavailable[total] = "; ".join(reasons)
        else:
            out[total] = out[fr] + out["score_nr"]
    if unavailable:
        out["unavailable"] = unavailable
    return out


def protocol(params: EvaluateParams, names: Sequence[str]) -> dict[str, Any]:
    """How each number was computed, in words (stored beside the numbers)."""
    y = _Y_DEFS[params.y_color_space]
    out: dict[str, Any] = {
        "inputs": "RGB float in [0, 1] from 8-bit files; SR and HR same size, paired by file name",
        "crop_border": params.crop_border,
        "crop_applies_to": "psnr, ssim",
        "y_channel": y,
        "pyiqa": PYIQA_VERSION,
    }
    out.update({n: METRICS[n].about.format(y=params.y_color_space + " Y") for n in names})
    for score in SCORES:
        terms = score_terms(score, params)
        if set(terms) <= set(names):
            out[score] = " + ".join(f"{w:g}*{t}" for t, w in terms.items()).replace("+ -", "- ")
    return out


# ---------------------------------------------------------------------------------------------
# Evaluating folders
# ---------------------------------------------------------------------------------------------


@dataclass
class SetResult:
    """One method on one set: a row per image and the set's summary (see MetricSuite.summarize)."""

    set_name: str
    method: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def images_by_name(folder: str | Path) -> dict[str, Path]:
    """{file stem: path} of the images in ``folder``; two files with one stem are an error."""
    found: dict[str, Path] = {}
    for path in io.list_images(folder):
        if path.stem in found:
            raise ValueError(
                f"{folder}: {found[path.stem].name} and {path.name} share the name {path.stem!r}"
            )
        found[path.stem] = path
    if not found:
        raise ValueError(f"{folder}: no images ({', '.join(io.IMAGE_SUFFIXES)})")
    return found


def _check_names(names: Iterable[str], hr: Mapping[str, Path], sr_where: str, hr_where: str) -> None:
    names = set(names)
    missing, extra = sorted(set(hr) - names), sorted(names - set(hr))
    if missing or extra:
        raise ValueError(
            f"{sr_where} vs {hr_where}: images pair by file name without suffix; no SR output for "
            f"{missing[:5] or 'none'}, no HR for {extra[:5] or 'none'}; rename the outputs to the HR names"
        )


def _check_sizes(sr: torch.Tensor, hr: torch.Tensor, sr_where: str, hr_where: str) -> None:
    (h, w), (hh, hw) = sr.shape[-2:], hr.shape[-2:]
    if (h, w) != (hh, hw):
        hint = f" (SR is 1/{hh // h} of HR: the LR folder, or outputs at the wrong scale?)" if hh > h else ""
        raise ValueError(f"{sr_where} is {w}x{h} but HR {hr_where} is {hw}x{hh}; sizes must match{hint}")


class MetricSuite:
    """A list of metrics built once (learned networks load once) and applied to many folders.

    ``MetricSuite(params.evaluate.paired_metrics, params.evaluate)`` for sets with HR,
    ``MetricSuite(params.evaluate.wild_metrics, params.evaluate)`` for sets without. Metrics whose weights
    are missing land in ``unavailable`` ({name: reason}); the rest in ``metrics``.
    """

    def __init__(self, names: Sequence[str], params: EvaluateParams) -> None:
        unknown = [n for n in names if n not in METRICS]
        if unknown or len(set(names)) != len(names):
            raise ValueError(
                f"metrics {list(names)}: unknown or repeated {unknown}; known: {', '.join(METRICS)}"
            )
        self.names, self.params = tuple(names), params
        self.device, self.hub = _device(params.device), hub_dir(params)
        self.metrics: dict[str, ScoreFn] = {}
        self.pyiqa_models: dict[str, torch.nn.Module] = {}
        self.unavailable: dict[str, str] = {}
        for name in self.names:
            reason = missing_weights(name, self.hub)
            if reason is None:
                try:
                    self.metrics[name] = self._build(name)
                except Exception as err:  # a corrupt or mismatched file: report, never substitute
                    if not METRICS[name].files:
                        raise
                    reason = f"pyiqa could not build it from {self.hub}: {type(err).__name__}: {err}"
            if reason is not None:
                self.unavailable[name] = reason

    def _build(self, name: str) -> ScoreFn:
        spec, p = METRICS[name], self.params
        if name in _NTIRE:
            from srlab.evaluation import challenge

            own = challenge.psnr_y if name == "psnr_ntire" else challenge.ssim_y
            return lambda sr, hr: own(io.to_uint8(sr), io.to_uint8(hr))
        if name in _OWN:
            fn = psnr if name.startswith("psnr") else ssim
            y = name.endswith("_y")
            return lambda sr, hr: fn(
                sr, hr, y_channel=y, color_space=p.y_color_space, crop_border=p.crop_border
            )
        import pyiqa

        with pyiqa_offline(self.hub, spec.full_checkpoint):
            bundled = {"pretrained_model_path": str(ASSETS / spec.bundled)} if spec.bundled else {}
            model = pyiqa.create_metric(name, device=self.device, **bundled)
        self.pyiqa_models[name] = model
        if spec.mode == "FR":
            return lambda sr, hr: float(model(sr[None], hr[None]))
        return lambda sr, hr: float(model(sr[None]))

    def score(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> dict[str, float]:
        """Every available metric on one image (3, H, W) in [0, 1]; ``hr`` needed for full-reference ones."""
        for what, image in (("SR", sr), ("HR", hr)):
            if image is None:
                continue
            if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
                raise ValueError(
                    f"{what}: expected float RGB (3, H, W), got {image.dtype} {tuple(image.shape)}"
                )
            if image.min() < 0 or image.max() > 1:
                raise ValueError(
                    f"{what}: values must lie in [0, 1], got [{image.min():.4g}, {image.max():.4g}]"
                )
        small = [n for n in self.metrics if min(sr.shape[1:]) < METRICS[n].min_side]
        if small:
            raise ValueError(
                f"{small} need images of at least {[METRICS[n].min_side for n in small]} px a side, got "
                f"{tuple(sr.shape[1:])}; take them out of evaluate.wild_metrics / paired_metrics for "
                "such sets"
            )
        needs_hr = [n for n in self.names if METRICS[n].mode == "FR"]
        if hr is None and needs_hr:
            raise ValueError(f"{needs_hr} need an HR reference; wild sets take evaluate.wild_metrics")
        with torch.no_grad():
            return {name: fn(sr, hr) for name, fn in self.metrics.items()}

    def evaluate_folder(
        self, sr_dir: str | Path, hr_dir: str | Path | None = None, *, set_name: str, method: str
    ) -> SetResult:
        """Score every image of ``sr_dir`` (against the same-named HR image of ``hr_dir`` if given)."""
        sr = images_by_name(sr_dir)
        if hr_dir is not None:
            _check_names(sr, images_by_name(hr_dir), str(sr_dir), str(hr_dir))
        images = ((name, io.read_image(path), str(path)) for name, path in sr.items())
        return self._evaluate(images, hr_dir, set_name, method)

    def evaluate_images(
        self,
        images: Iterable[tuple[str, torch.Tensor]],
        hr_dir: str | Path | None = None,
        *,
        set_name: str,
        method: str,
    ) -> SetResult:
        """Score (name, image) pairs, e.g. ``bicubic_images(...)``, against HR files of the same names."""
        labelled = ((name, image, f"{method} output {name!r}") for name, image in images)
        return self._evaluate(labelled, hr_dir, set_name, method)

    def _evaluate(
        self,
        images: Iterable[tuple[str, torch.Tensor, str]],
        hr_dir: str | Path | None,
        set_name: str,
        method: str,
    ) -> SetResult:
        hr = images_by_name(hr_dir) if hr_dir is not None else None
        rows, seen = [], []
        for name, sr, where in images:
            ref = None
            if hr is not None:
                if name not in hr:
                    raise ValueError(f"{where}: no HR image named {name!r} in {hr_dir}")
                ref = io.read_image(hr[name])
                _check_sizes(sr, ref, where, str(hr[name]))
            rows.append({"set": set_name, "method": method, "image": name, **self.score(sr, ref)})
            seen.append(name)
        if hr is not None:
            _check_names(seen, hr, f"{method} on {set_name}", str(hr_dir))
        if not rows:
            raise ValueError(f"{method} on {set_name}: no images to evaluate")
        return SetResult(set_name, method, rows, self.summarize(rows, set_name, method))

    def summarize(self, rows: Sequence[Mapping[str, Any]], set_name: str, method: str) -> dict[str, Any]:
        """Per-set summary: mean of each metric, the applicable scores, ``unavailable``, ``protocol``."""
        means = {n: math.fsum(r[n] for r in rows) / len(rows) for n in self.metrics}
        scores, reasons = compute_scores(means, self.names, self.unavailable, self.params)
        return {
            "set": set_name,
            "method": method,
            "n_images": len(rows),
            **means,
            **scores,
            "unavailable": {**self.unavailable, **reasons},
            "protocol": protocol(self.params, self.names),
        }


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


def bicubic_upsample(lr: torch.Tensor, scale: int, quantize: bool = True) -> torch.Tensor:
    """(3, h, w) or (B, 3, h, w) in [0, 1] -> scale× larger, bicubic as PIL (Keys a = -0.5, antialias path).

    ``quantize`` rounds to 8 bits, so the baseline is scored like every method whose outputs are files.
    Computed in float64 and rounded by srlab.io.to_levels, so its 8-bit levels do not depend
    on the thread count or CPU (srlab.data.degrade).
    """
    x = lr[None] if lr.ndim == 3 else lr
    h, w = x.shape[-2:]
    up = F.interpolate(x.double(), size=(h * scale, w * scale), mode="bicubic", antialias=True).clamp(0, 1)
    if quantize:
        up = io.to_levels(up) / 255
    up = up.to(lr.dtype)
    return up[0] if lr.ndim == 3 else up


def bicubic_images(lr_dir: str | Path, scale: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, bicubic ×scale of the LR image) for every image of ``lr_dir``, lazily (one in memory)."""
    for name, path in images_by_name(lr_dir).items():
        yield name, bicubic_upsample(io.read_image(path), scale)


def method_dirs(params: EvaluateParams, set_name: str) -> dict[str, Path]:
    """{method: folder of its outputs for ``set_name``} for ``evaluate.other_methods`` (root/<set>/)."""
    dirs = {name: Path(root) / set_name for name, root in params.other_methods.items()}
    for name, folder in dirs.items():
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: no outputs of {name} for set {set_name}; evaluate.other_methods.{name} must "
                f"hold one subfolder per evaluation set, named like the set, with images named like HR"
            )
    return dirs


# ---------------------------------------------------------------------------------------------
# Writing tables
# ---------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-safe copy: inf/nan become the strings 'inf', '-inf', 'nan' (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def metrics_tree(results: Iterable[SetResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """{set: {method: summary}} (set/method keys dropped): `dvc metrics show` lists set.method.metric."""
    tree: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        tree.setdefault(r.set_name, {})[r.method] = {
            k: v for k, v in r.summary.items() if k not in ("set", "method")
        }
    return tree


def write_json(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``data`` (e.g. ``metrics_tree(...)``) as strict JSON, atomically; non-finite -> strings."""
    path = Path(path)
    with io.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_plain(data), indent=1, allow_nan=False) + "\n")
    return path


def write_rows_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Per-image rows as CSV (columns in first-seen order, full float precision, inf as 'inf')."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    path = Path(path)
    with io.atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: repr(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    return path
