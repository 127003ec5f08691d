"""The workbench's timing loop against a bare loop of inferences on the same session: the ratio of wall time per
inference (1.00 = no overhead; the goal is at most 1.02). Rounds alternate bare and workbench loops; medians of
the rounds are compared. First, the loop's own cost: the timing loop around a call that does nothing.

    .venv/bin/python benchmarks/bench_timing_overhead.py [--iterations 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import workbench as wb
from workbench.backends import get_backend
from workbench.backends.onnxruntime import session_runner
from workbench.backends.timing import timed_loop, warm_up
from workbench.model.samples import sample_path
from workbench.precision.variant import make_variant
from workbench.progress import Progress

SAMPLES = {"digits_cnn": "input:1x1x8x8", "resnet_mini": "input:1x3x128x128"}


def bare_loop(run, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    empty = wb.BuildConfig(iterations=100_000, warmup_ms=0)
    ours = statistics.median(timed_loop(lambda: None, empty, Progress())[1] for _ in range(5))
    bare = statistics.median(bare_loop(lambda: None, empty.iterations) for _ in range(5))
    print(
        f"around a call that does nothing: bare loop {bare / empty.iterations * 1e6:.2f} µs, workbench loop "
        f"{ours / empty.iterations * 1e6:.2f} µs per iteration"
    )
    backend = get_backend("onnxruntime")
    for name, shapes in SAMPLES.items():
        model = wb.load_model(sample_path(name))
        config = wb.BuildConfig(shapes=wb.parse_shapes(shapes), iterations=args.iterations, warmup_ms=0)
        engine = backend.build(make_variant(model), config)
        run, gpu = session_runner(engine.handle, wb.make_inputs(model, config.shape_map))
        warm_up(run, 300)
        bare, ours = [], []
        for _ in range(args.rounds):
            bare.append(bare_loop(run, args.iterations) / args.iterations * 1000)
            ours.append(timed_loop(run, config, Progress())[1] / args.iterations * 1000)
        b, w = statistics.median(bare), statistics.median(ours)
        where = f"GPU {gpu}" if gpu is not None else "CPU"
        print(
            f"{name} ({where}, {shapes}): bare loop {b:.4f} ms/inference, workbench loop {w:.4f} ms/inference, "
            f"ratio {w / b:.3f} (median of {args.rounds} alternating rounds of {args.iterations})"
        )


if __name__ == "__main__":
    main()
