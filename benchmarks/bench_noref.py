"""Which no-reference metric can judge the wild sets: PIQE and NIQE of the clean HR, the wild input and
our output, per held-out image (the `*_wild` eval sets are x1: the wild pipeline applied to the same HR as
the `*_synthetic` sets).

Prints figures, asserts nothing. Needs a built `build/` (`make repro`).

    python benchmarks/bench_noref.py

A metric fit for the headline must rate the clean HR better than the degraded input; PIQE, which takes the
wild pipeline's noise for detail, does not (README "Measured"), NIQE with BasicSR's parameters does.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab import io  # noqa: E402
from srlab.config import load_params  # noqa: E402
from srlab.evaluation.metrics import MetricSuite  # noqa: E402
from srlab.evaluation.params import EvaluateParams  # noqa: E402

NAMES = ("piqe", "niqe")


def main() -> None:
    suite = MetricSuite(NAMES, load_params(None, None, {"evaluate": EvaluateParams}).evaluate)
    build = ROOT / "build"
    rows: dict[str, dict[str, list[float]]] = {n: {"hr": [], "input": [], "ours": []} for n in NAMES}
    print(f"{'set / image':28} " + "  ".join(f"{n} hr / input / ours" for n in NAMES))
    for wild in sorted((build / "degrade" / "eval").glob("*_wild")):
        hr_dir = wild.parent / wild.name.replace("_wild", "_synthetic") / "hr"
        for lr_path in sorted((wild / "lr").glob("*.png")):
            ours = build / "infer" / wild.name / lr_path.name
            images = {"hr": hr_dir / lr_path.name, "input": lr_path, "ours": ours}
            if not all(p.is_file() for p in images.values()):
                continue
            scores = {k: suite.score(io.read_image(p)) for k, p in images.items()}
            for n in NAMES:
                for k in images:
                    rows[n][k].append(scores[k][n])
            cells = "  ".join(" / ".join(f"{scores[k][n]:6.2f}" for k in images) for n in NAMES)
            print(f"{wild.name + ' / ' + lr_path.stem:28} {cells}")
    for n in NAMES:
        means = {k: sum(v) / max(len(v), 1) for k, v in rows[n].items()}
        hr_beats_input = sum(h < i for h, i in zip(rows[n]["hr"], rows[n]["input"], strict=True))
        print(f"{n}: mean hr {means['hr']:.2f}, input {means['input']:.2f}, ours {means['ours']:.2f} "
              f"(lower is better); the clean HR scores better than its wild input on {hr_beats_input} of "
              f"{len(rows[n]['hr'])} images")  # fmt: skip


if __name__ == "__main__":
    main()
