"""Command line, for use outside DVC.

- ``srlab upscale INPUT... --out DIR``: super-resolve photos (files or folders), x4 by default;
- ``srlab score SUBMISSION --truth TRUTH``: the NTIRE 2025 organisers' score of a submission folder
  (srlab.evaluation.challenge).

Each command imports only what it runs: ``upscale`` loads the model and the sampler, never the
training, data-building or metric packages.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # time to first image counts from here (imports included)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from srlab.config import ConfigError, load_params  # noqa: E402

UPSCALE_HELP = """\
Super-resolve photos with the trained model: every image file given, or found in a folder given,
is written to DIR/<name>.png at --scale times its size (default 4).

Unreadable files (empty, truncated, not an image, more pixels than --max-pixels) are skipped with
the reason and the batch goes on; the exit status is 1 if any input was skipped. Phone photos are
read upright (EXIF) and in sRGB. A rerun keeps the outputs that are finished and makes the rest,
so an interrupted batch resumes (--overwrite makes them all again). DIR/manifest.json records each
image's input, seed, settings and weights.

Prompt tags: params.yaml model.prompts.tags (none | file | ram | dape); with ram or dape each input is
tagged on its own (the release: DAPE on the LR), using the tag stage's cache beside --weights if it has it.

The two tracks (params.yaml infer.presets.<preset>.<track>):
  --track synthetic   paper: start from the LR latent, guidance 0.9, no added prompt (clean or
                      mildly degraded photos; the default)
  --track wild        start from noise, guidance 8.5, a positive prompt (heavily degraded UGC)
--preset paper|release picks the paper's Table 1 settings or the authors' released run commands;
--fidelity release reproduces the released code's arithmetic and random stream (README, "Fidelity").
"""


def upscale(args: argparse.Namespace) -> int:
    from srlab.models.params import ModelParams  # heavy imports only when the command runs
    from srlab.sampling import upscale as up
    from srlab.sampling.batch import expand_inputs, upscale_batch
    from srlab.sampling.params import InferParams

    params = load_params(args.params, None, {"model": ModelParams, "infer": InferParams})
    infer = params.infer
    preset = args.preset or infer.preset
    if preset not in infer.presets:
        raise ConfigError(f"--preset {preset!r}: params.yaml infer.presets has {sorted(infer.presets)}")
    if args.track not in infer.presets[preset]:
        raise ConfigError(
            f"--track {args.track!r}: params.yaml infer.presets.{preset} has {sorted(infer.presets[preset])}"
        )
    names = ("steps", "guidance_scale", "start_point", "latent_tile", "latent_overlap", "vae_encoder_tile",
             "vae_decoder_tile")  # fmt: skip
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    settings = dataclasses.replace(infer.sampler(args.track, preset=preset), upscale=args.scale, **overrides)
    device = {k: getattr(args, k) for k in ("device", "dtype", "fidelity") if getattr(args, k) is not None}
    params = params.replace(infer=dataclasses.replace(params.infer, **device))
    inputs = expand_inputs(args.inputs)
    if not inputs:
        print("srlab upscale: no image files found in the inputs given", file=sys.stderr)
        return 1
    pipe = up.build_pipeline(params, args.weights)
    seed = params.base.seed if args.seed is None else args.seed
    print(
        f"{len(inputs)} input(s), x{settings.upscale}, track {args.track}, preset {preset}, "
        f"fidelity {pipe.fidelity}, device {pipe.device} {pipe.dtype}"
    )
    tags = pipe.model.params.prompts.tags
    if tags in ("ram", "dape"):  # srlab.models.tagging: the tag stage's cache, else the tagger per input
        print(f"prompt tags: {tags} on each input's LR (model.prompts.tags), tagged on the fly unless cached")
    report = upscale_batch(
        pipe,
        inputs,
        Path(args.out),
        settings,
        seed,
        str(args.weights),
        args.overwrite,
        args.max_pixels,
        START,
    )
    print(report)
    if report.seconds:
        times = sorted(report.seconds.values())
        print(f"per image: median {times[len(times) // 2]:.1f} s, max {times[-1]:.1f} s")
    return 1 if report.skipped else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("score", help="the challenge score of a submission folder (srlab score -h)")
    p = commands.add_parser(
        "upscale", help="super-resolve photos (x4)", description=UPSCALE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (PNG, the input's name)")
    p.add_argument("--scale", type=int, default=4, help="output size / input size (default: 4)")
    p.add_argument("--track", default="synthetic", help="synthetic (default) or wild: see above")
    p.add_argument(
        "--preset", choices=["paper", "release"], help="sampler settings (default: params.yaml infer.preset)"
    )
    p.add_argument(
        "--fidelity", choices=["srlab", "release"],
        help="release: the released code's arithmetic and seed stream (default: params.yaml infer.fidelity)",
    )  # fmt: skip
    p.add_argument(
        "--weights", default="build/train", help="train stage folder or an authors'-layout checkpoint"
    )
    p.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    p.add_argument(
        "--seed",
        type=int,
        help="default: params.yaml base.seed; srlab fidelity: each image's seed derives from it; release: "
        "one stream over the inputs in name order, as the released script's --seed",
    )
    p.add_argument("--steps", type=int, help="denoising steps (default: the track's)")
    p.add_argument(
        "--guidance-scale", dest="guidance_scale", type=float, help="CFG scale (default: the track's)"
    )
    p.add_argument("--start-point", dest="start_point", choices=["noise", "lr"])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: params.yaml infer.device")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    memory = p.add_argument_group("tiles and memory (smaller tiles: less memory, more time)")
    memory.add_argument("--latent-tile", dest="latent_tile", type=int, help="denoiser tile, latent px")
    memory.add_argument(
        "--latent-overlap", dest="latent_overlap", type=int, help="denoiser tile overlap, latent px"
    )
    memory.add_argument(
        "--vae-encoder-tile", dest="vae_encoder_tile", type=int, help="VAE encoder tile, image px"
    )
    memory.add_argument(
        "--vae-decoder-tile", dest="vae_decoder_tile", type=int, help="VAE decoder tile, latent px"
    )
    memory.add_argument(
        "--max-pixels", dest="max_pixels", type=int, default=50_000_000,
        help="skip inputs with more pixels than this (default: 50 million)",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true", help="make every output again (default: keep finished ones)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["score"]:  # its own parser (srlab.evaluation.challenge.main); light imports
        from srlab.evaluation import challenge

        return challenge.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return upscale(args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"srlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
