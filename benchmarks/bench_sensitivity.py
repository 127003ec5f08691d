"""What the sensitivity search costs on the bundled models: variants built, seconds, and the re-run from the cache.

    .venv/bin/python benchmarks/bench_sensitivity.py [--samples 128] [--max-minutes 10]

For each case the search runs twice with the same empty variant cache: the first run builds every variant
(ModelOpt), the second finds them all cached — the ratio is what caching saves. It prints the groups ranked, the
plans measured, the variants built, the seconds spent, and the plan found. Cases: outlier_digits INT8 on its
labelled test set (top-1 budget), digits_cnn INT8 (nothing to recover: the plan is empty) and transformer_encoder
FP16 on seeded random token ids (cosine budget; random weights, so the figures are about cost, not accuracy).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.analysis.sensitivity import search_plan
from workbench.model.onnx_model import load_model
from workbench.model.samples import sample_path


def cases(samples: int) -> list[tuple[str, str, dict, dict]]:
    """(sample, precision, eval data, variant options)."""
    transformer = load_model(sample_path("transformer_encoder"))
    vocab = next(int(t.dims[0]) for t in transformer.proto.graph.initializer if len(t.dims) == 2)
    ids = np.random.default_rng(0).integers(0, vocab, (min(samples, 32), 16), dtype=np.int64)
    with np.load(sample_path("outlier_digits_test")) as d:
        outlier = {"input": d["input"][:samples], "labels": d["labels"][:samples]}
    with np.load(sample_path("digits_test")) as d:
        digits = {"input": d["input"][:samples], "labels": d["labels"][:samples]}
    return [
        ("outlier_digits", "int8", outlier, {"calibration": sample_path("outlier_digits_calib")}),
        ("digits_cnn", "int8", digits, {"calibration": sample_path("digits_calib")}),
        ("transformer_encoder", "fp16", {"input_ids": ids}, {}),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128, help="evaluation samples per case")
    parser.add_argument("--max-minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    for sample, precision, data, options in cases(args.samples):
        with tempfile.TemporaryDirectory() as cache:
            seconds = []
            for _ in range(2):
                start = time.perf_counter()
                with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                    found = search_plan(
                        sample_path(sample),
                        precision,
                        eval_data=data,
                        cache_dir=cache,
                        max_minutes=args.max_minutes,
                        **options,
                    )
                seconds.append(time.perf_counter() - start)
        plan = found.plan
        print(
            f"{sample:20s} {precision:5s} groups {len(found.scores):3d}  plans {len(found.candidates):2d}  "
            f"variants {found.variants_built:3d}  first {seconds[0]:6.1f} s  cached {seconds[1]:6.1f} s  "
            f"ratio {seconds[0] / seconds[1]:5.1f}  plan keeps {len(plan['kept_nodes'])} nodes "
            f"(metric {plan['metric']:.4g}, budget {found.budget['kind']}:{found.budget['value']:g})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
