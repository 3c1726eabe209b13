"""The infer stage: every evaluation set of the degrade stage super-resolved with the trained weights.

Each set is sampled with ``infer.presets.<its preset>.<its kind>`` (``InferParams.sampler``), its kind as
the degrade manifest records it (paper Table 1: synthetic = LR start, guidance 0.9, x4; wild = noise
start, guidance 8.5, positive prompt, x1).
Everything is written into one atomic folder: the images, ``settings.json`` (what each set ran with) and
``report.json`` (written and skipped files), so the stage's outputs are the same from the notebook and
from ``python -m srlab.sampling.infer``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from srlab import io
from srlab.config import ConfigError, Params, as_dict, load_params
from srlab.data.eval_sets import find_eval_sets
from srlab.models.params import ModelParams
from srlab.sampling.params import InferParams
from srlab.sampling.upscale import UpscaleReport, build_pipeline, upscale_files

SECTIONS = {"model": ModelParams, "infer": InferParams}


def run(
    params: Params, degrade_dir: str | Path, train_dir: str | Path, out_dir: str | Path
) -> dict[str, UpscaleReport]:
    """Upscale every ``<degrade_dir>/eval/<set>/lr`` into ``<out_dir>/<set>`` (atomically, all or nothing)."""
    sets = find_eval_sets(degrade_dir)
    infer = params.infer
    missing = sorted({f"{infer.preset_for(s.name)}.{s.kind}" for s in sets
                      if s.kind not in infer.presets.get(infer.preset_for(s.name), {})})  # fmt: skip
    if missing:
        raise ConfigError(f"eval sets need infer.presets entries {missing}; add them to params.yaml")
    pipe = build_pipeline(params, train_dir)
    print("device", pipe.device, "dtype", pipe.dtype)
    reports: dict[str, UpscaleReport] = {}
    with io.atomic_dir(out_dir) as staging:
        for s in sets:
            settings = infer.sampler(s.kind, s.name)
            reports[s.name] = upscale_files(
                pipe, io.list_images(s.lr_dir), staging / s.name, settings, params.base.seed
            )
        used = {
            s.name: {"kind": s.kind, "preset": infer.preset_for(s.name), "fidelity": infer.fidelity,
                     **as_dict(infer.sampler(s.kind, s.name))}
            for s in sets
        }  # fmt: skip
        (staging / "settings.json").write_text(json.dumps(used, indent=1) + "\n")
        done = {
            name: {"written": [p.name for p in r.written], "skipped": r.skipped}
            for name, r in reports.items()
        }
        (staging / "report.json").write_text(json.dumps(done, indent=1) + "\n")
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    parser.add_argument("--profile", default=None, help="tiny | paper | smoke (default: base.profile)")
    parser.add_argument(
        "--build", default="build", help="build folder: reads degrade/, train/; writes infer/"
    )
    args = parser.parse_args()
    build = Path(args.build)
    params = load_params(args.params, args.profile, SECTIONS)
    for name, report in run(params, build / "degrade", build / "train", build / "infer").items():
        print(name, report)


if __name__ == "__main__":
    main()
