"""The ``evaluate`` stage: every evaluation set, every method, one table (srlab.evaluation.metrics measures).

Inputs (the stage contract)::

    <degrade>/eval/<set>/lr/<name>.png   every set
    <degrade>/eval/<set>/hr/<name>.png   paired sets only (e.g. set5_synthetic; wild sets have no HR)
    <degrade>/manifest.json              each eval sample's ``scale`` = SR side / LR side (wild: 1)
    <infer>/<set>/<name>.png             our SR outputs (method ``srlab``), named like the LR
    evaluate.other_methods               {method: root}; root/<set>/<name>.* (e.g. Real-ESRGAN outputs)

Methods, in table order: ``srlab``, ``bicubic`` (the LR upsampled by the set's scale with
metrics.bicubic_upsample, so on scale-1 wild sets the LR itself), then ``other_methods``. Paired
sets get ``evaluate.paired_metrics``, LR-only sets ``evaluate.wild_metrics``. A missing optional input
(no infer outputs yet; a method without outputs for one set) is skipped and the reason kept; a missing
degrade folder, or an other_methods root that does not exist at all (a typo), is an error.

Outputs (``write_outputs``)::

    metrics.json   DVC metrics, numbers only except the reasons:
                   {"sets": {set: {method: {"n_images": n, <metric or score>: value | null}}},
                    "challenge": {group: {method: {"score_fr", "score_nr", "challenge",
                                                   "score_fr_pyiqa", "challenge_pyiqa"}}},
                    "unavailable": {metric or score: reason}}
                   null = unavailable (DVC leaves it out of `dvc metrics show`). Ablation cells write
                   the same schema (``metrics_json``).
    summary.json   the sets (folders, scale), every full summary with its protocol, skipped inputs and
                   the challenge details with reasons
    per_image.csv  one row per set, method and image
    plots/<name>.csv  set, method, label, value: one DVC bar plot per metric or score

The challenge score (paper Fig. 1) adds the FR part of a paired set to the NR part of a wild set; sets
are grouped by the name before their last ``_`` (set5_synthetic + set5_wild -> group set5).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srlab.data.eval_sets import EvalSet
from srlab.evaluation import metrics
from srlab.evaluation.metrics import MetricSuite, SetResult
from srlab.evaluation.params import EvaluateParams

SECTIONS = {"evaluate": EvaluateParams}  # what the evaluate stage reads
OURS, BICUBIC = "srlab", "bicubic"  # the method names of our outputs and of the bicubic baseline


def method_folders(
    eval_set: EvalSet, infer_dir: str | Path, params: EvaluateParams
) -> tuple[dict[str, Path], dict[str, str]]:
    """({method: folder of its outputs for the set}, {method: why it is skipped}); bicubic needs none."""
    infer_dir = Path(infer_dir)
    found: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    ours = infer_dir / eval_set.name
    if ours.is_dir():
        found[OURS] = ours
    elif not infer_dir.is_dir():
        skipped[OURS] = f"{infer_dir} does not exist: the infer stage has not run (`dvc repro infer`)"
    else:
        skipped[OURS] = f"{ours} does not exist: the infer stage wrote no outputs for this set"
    for name, root in params.other_methods.items():
        if name in (OURS, BICUBIC):
            raise ValueError(f"evaluate.other_methods.{name}: {name!r} is reserved; rename the method")
        if not Path(root).is_dir():
            raise FileNotFoundError(
                f"evaluate.other_methods.{name} = {root!r}: folder not found; point it at a folder "
                f"holding one subfolder of outputs per evaluation set"
            )
        try:
            one = dataclasses.replace(params, other_methods={name: root})
            found.update(metrics.method_dirs(one, eval_set.name))
        except FileNotFoundError as err:
            skipped[name] = str(err)
    return found, skipped


@dataclass
class Evaluation:
    """All results of one evaluation run: a SetResult per (set, method), and what was skipped."""

    sets: list[EvalSet]
    results: list[SetResult]
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # set -> method -> reason


def evaluate_sets(
    sets: Sequence[EvalSet],
    infer_dir: str | Path,
    params: EvaluateParams,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Score ``srlab``, ``bicubic`` and every other method on every set (see module docstring)."""
    suites: dict[bool, MetricSuite] = {}  # one per kind of set: learned networks load once
    evaluation = Evaluation(list(sets), [])
    for s in sets:
        if s.paired not in suites:
            suites[s.paired] = MetricSuite(params.paired_metrics if s.paired else params.wild_metrics, params)
        suite = suites[s.paired]
        folders, skipped = method_folders(s, infer_dir, params)
        for method, why in skipped.items():
            log(f"{s.name}: {method} skipped: {why}")
        if skipped:
            evaluation.skipped[s.name] = skipped
        if OURS in folders:
            evaluation.results.append(
                suite.evaluate_folder(folders.pop(OURS), s.hr_dir, set_name=s.name, method=OURS)
            )
        bicubic = metrics.bicubic_images(s.lr_dir, s.scale)
        evaluation.results.append(suite.evaluate_images(bicubic, s.hr_dir, set_name=s.name, method=BICUBIC))
        for method, folder in folders.items():
            evaluation.results.append(suite.evaluate_folder(folder, s.hr_dir, set_name=s.name, method=method))
        log(f"{s.name}: scored {', '.join(r.method for r in evaluation.results if r.set_name == s.name)}")
    return evaluation


# ---------------------------------------------------------------------------------------------
# The challenge score across a paired and a wild set
# ---------------------------------------------------------------------------------------------


def challenge_groups(sets: Sequence[EvalSet]) -> dict[str, tuple[str, str]]:
    """{group: (paired set, LR-only set)} for the sets made from one source set (the manifest's record)."""
    groups: dict[str, dict[bool, list[str]]] = {}
    for s in sets:
        groups.setdefault(s.source, {}).setdefault(s.paired, []).append(s.name)
    return {
        g: (kinds[True][0], kinds[False][0])
        for g, kinds in groups.items()
        if len(kinds.get(True, [])) == 1 and len(kinds.get(False, [])) == 1
    }


def challenge_table(evaluation: Evaluation) -> dict[str, dict[str, dict[str, Any]]]:
    """{group: {method: metrics.challenge_score(...)}} for methods scored on both sets of a group."""
    by_key = {(r.set_name, r.method): r.summary for r in evaluation.results}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for group, (fr_set, nr_set) in challenge_groups(evaluation.sets).items():
        for method in dict.fromkeys(r.method for r in evaluation.results):
            if (fr_set, method) in by_key and (nr_set, method) in by_key:
                score = metrics.challenge_score(by_key[fr_set, method], by_key[nr_set, method])
                table.setdefault(group, {})[method] = score
    return table


# ---------------------------------------------------------------------------------------------
# Writing the stage outputs
# ---------------------------------------------------------------------------------------------


def _merge_reason(into: dict[str, str], name: str, reason: str) -> None:
    """Keep every distinct reason for one name (e.g. the challenge of two set groups), joined by |."""
    known = into.get(name)
    if known is None:
        into[name] = reason
    elif reason not in known.split(" | "):
        into[name] = f"{known} | {reason}"


def metrics_json(evaluation: Evaluation) -> dict[str, Any]:
    """The DVC metrics document (schema in the module docstring)."""
    sets: dict[str, dict[str, dict[str, Any]]] = {}
    unavailable: dict[str, str] = {}
    for r in evaluation.results:
        s = r.summary
        values = {k: v for k, v in s.items() if k not in ("set", "method", "unavailable", "protocol")}
        values.update({name: None for name in s["unavailable"]})
        sets.setdefault(r.set_name, {})[r.method] = values
        for name, reason in s["unavailable"].items():
            _merge_reason(unavailable, name, reason)
    challenge: dict[str, dict[str, dict[str, Any]]] = {}
    for group, methods in challenge_table(evaluation).items():
        for method, score in methods.items():
            challenge.setdefault(group, {})[method] = {
                k: score.get(k)
                for k in ("score_fr", "score_nr", "challenge", "score_fr_pyiqa", "challenge_pyiqa")
            }
            for name, reason in score.get("unavailable", {}).items():
                _merge_reason(unavailable, name, reason)
    return {"sets": sets, "challenge": challenge, "unavailable": unavailable}


def plot_rows(document: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """{metric or score: rows (set, method, label, value)} of a metrics.json document, numbers only."""
    plots: dict[str, list[dict[str, Any]]] = {}
    for set_name, methods in document["sets"].items():
        for method, values in methods.items():
            for name, value in values.items():
                if name != "n_images" and isinstance(value, int | float) and math.isfinite(value):
                    row = {"set": set_name, "method": method, "label": f"{set_name} / {method}"}
                    plots.setdefault(name, []).append({**row, "value": value})
    return plots


def write_outputs(evaluation: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, summary.json, per_image.csv and plots/ (module docstring) into ``out_dir``."""
    out_dir = Path(out_dir)
    if not evaluation.results:
        raise ValueError("nothing was evaluated; check the evaluation sets and the methods' folders")
    document = metrics_json(evaluation)
    summary = {
        "sets": {s.name: s.describe() for s in evaluation.sets},
        "results": metrics.metrics_tree(evaluation.results),
        "skipped": evaluation.skipped,
        "challenge": challenge_table(evaluation),
    }
    written = {
        "metrics": metrics.write_json(document, out_dir / "metrics.json"),
        "summary": metrics.write_json(summary, out_dir / "summary.json"),
        "per_image": metrics.write_rows_csv(
            [row for r in evaluation.results for row in r.rows], out_dir / "per_image.csv"
        ),
    }
    for name, rows in plot_rows(document).items():
        written[f"plot {name}"] = metrics.write_rows_csv(rows, out_dir / "plots" / f"{name}.csv")
    return written
