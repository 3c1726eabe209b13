"""The train stage as one call: train (srlab.training.train), then check the result on held-out pairs.

Writes, beside the weights in ``out_dir``: ``samples/checkpoints/step_N.png`` (at every checkpoint),
``samples/<image>/<method>.png`` (LR, bicubic, before SR training, trained, HR of the first
``train.sample_images`` held-out pairs) and, last, the validation table (DVC metrics), each file
atomically. The notebook and ``python -m srlab.training.stage`` write the same files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from srlab import io
from srlab.config import Params, load_params
from srlab.data.eval_sets import find_eval_sets
from srlab.training import loop, train, validate

SECTIONS = train.SECTIONS


def validation_set(data_dir: Path) -> Path:
    """The held-out pairs: the paired eval set the degrade stage made from the validation photos (the
    synthetic pipeline's, which training's data resembles, when there are several)."""
    found = [s for s in find_eval_sets(data_dir) if s.source == "val" and s.paired]
    for s in sorted(found, key=lambda s: (s.pipeline or s.kind) != "synthetic"):
        return s.lr_dir.parent
    raise FileNotFoundError(
        f"{data_dir}: no paired validation set; set data.val_fraction > 0 and rerun degrade"
    )


def run_stage(
    params: Params, data_dir: str | Path, out_dir: str | Path, validation_json: str | Path
) -> list[dict[str, Any]]:
    """Train, then write the held-out comparison (rows: bicubic / untrained / trained) and its samples."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    val_dir = validation_set(data_dir)
    final = train.run(
        params, data_dir, out_dir, on_checkpoint=validate.checkpoint_sampler(params, out_dir, val_dir)
    )
    print("trained weights (authors' layout):", final, sorted(p.name for p in final.iterdir()))
    rows, samples = validate.compare(params, out_dir, val_dir, keep=params.train.sample_images)
    for name, panels in samples.items():
        for method, image in panels.items():
            io.write_image(image, out_dir / "samples" / name / f"{method}.png")
    with io.atomic_path(validation_json) as tmp:
        tmp.write_text(json.dumps({r["method"]: r for r in rows}, indent=1) + "\n")
    live = loop.open_live(out_dir / train.LIVE_DIR)  # the held-out scores beside the curves (dvc exp show)
    for row in rows:
        for key in ("psnr", "ssim", "val_loss"):
            if key in row:
                live.log_metric(f"val/{row['method']}/{key}", row[key], plot=False)
    live.make_summary()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    parser.add_argument("--profile", default=None, help="tiny | paper | smoke (default: base.profile)")
    parser.add_argument("--build", default="build", help="build folder: reads degrade/, writes train/")
    args = parser.parse_args()
    build = Path(args.build)
    params = load_params(args.params, args.profile, SECTIONS)
    run_stage(params, build / "degrade", build / "train", build / "train_validation.json")


if __name__ == "__main__":
    main()
