"""Command line, for use outside DVC.

- ``srlab upscale INPUT... --out DIR``: super-resolve image files or folders;
- ``srlab score SUBMISSION --truth TRUTH``: the NTIRE 2025 organisers' score of a submission folder
  (srlab.evaluation.challenge).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from srlab.config import ConfigError, load_params


def upscale(args: argparse.Namespace) -> int:
    from srlab.models.params import ModelParams  # heavy imports only when the command runs
    from srlab.sampling import upscale as up
    from srlab.sampling.params import InferParams

    params = load_params(args.params, None, {"model": ModelParams, "infer": InferParams})
    if args.kind not in params.infer.settings:
        raise SystemExit(
            f"--kind {args.kind!r}: params.yaml infer.settings has {sorted(params.infer.settings)}"
        )
    settings = params.infer.settings[args.kind]
    overrides = {
        k: getattr(args, k) for k in ("steps", "guidance_scale", "upscale", "start_point") if getattr(args, k)
    }
    settings = dataclasses.replace(settings, **overrides)
    inputs = up.expand_inputs(args.inputs)
    if not inputs:
        raise SystemExit("no input images found")
    pipe = up.build_pipeline(params, args.weights)
    report = up.upscale_files(pipe, inputs, Path(args.out), settings, params.base.seed)
    print(report)
    return 0 if report.written or not report.skipped else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["score"]:  # its own parser (srlab.evaluation.challenge.main); light imports
        from srlab.evaluation import challenge

        return challenge.main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="srlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("score", help="the challenge score of a submission folder (srlab score -h)")
    p = commands.add_parser("upscale", help="super-resolve image files or folders")
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    p.add_argument("--out", required=True, help="output folder (PNG, same stem as the input)")
    p.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    p.add_argument(
        "--weights", default="build/train", help="train stage folder or an authors'-layout checkpoint"
    )
    p.add_argument("--kind", default="wild", help="infer.settings entry: wild (x1) or synthetic (x4)")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance-scale", dest="guidance_scale", type=float)
    p.add_argument("--upscale", type=int)
    p.add_argument("--start-point", dest="start_point", choices=["noise", "lr"])
    args = parser.parse_args(argv)
    try:
        return upscale(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"srlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
