"""Wall time of one sweep on every worker at once (one per GPU, or per 2 CPU cores) against the same points run
one after another on a single worker; checks that both give the same points.

    .venv/bin/python benchmarks/bench_sweep_parallel.py [--model data/resnet_mini.onnx] [--precision fp32,fp16]
        [--batch 1,8,32,64] [--iterations 200] [--trials 1] [--workers N] [--executor local|ray] [--json out.json]

Each side is a fresh sweep in its own workspace (the precision variants come from the shared cache, built before
the clock starts); the wall time covers the workers' start, every point's session build, timing and accuracy check,
and storing the runs. Prints both wall times, their ratio, and per point the mean latency on each side (parallel
points on separate GPUs should measure the same as one by one; on shared CPU cores they measure contention).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.config import BuildConfig  # noqa: E402
from workbench.results.store import Store  # noqa: E402
from workbench.sweeps import sweep  # noqa: E402
from workbench.sweeps.executors import LocalExecutor  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(__file__).resolve().parent.parent / "data" / "resnet_mini.onnx"))
    parser.add_argument("--precision", default="fp32,fp16")
    parser.add_argument("--batch", default="1,8,32,64")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--trials", type=int, default=1, help="trials per point (warm-up + timed loop each)")
    parser.add_argument("--workers", type=int, help="parallel side (default: one per GPU, or per 2 CPU cores)")
    parser.add_argument("--executor", default="local", choices=("local", "ray"))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    config = BuildConfig(iterations=args.iterations, warmup_ms=200, trials=args.trials)
    grid = {"precisions": args.precision, "batches": args.batch, "config": config, "backend": "onnxruntime"}
    parallel_workers = args.workers or LocalExecutor().workers
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        sweep(
            args.model,
            **{**grid, "precisions": args.precision, "batches": args.batch.split(",")[0]},
            workers=1,
            store=Store(Path(tmp) / "warm"),
            report=False,
        )  # builds the variants into the cache
        for side, workers, executor in (("parallel", parallel_workers, args.executor), ("one by one", 1, "local")):
            start = time.perf_counter()
            result = sweep(
                args.model, **grid, workers=workers, executor=executor, store=Store(Path(tmp) / side), report=False
            )
            wall = time.perf_counter() - start
            table = result.table().set_index("point")
            providers = {r.name: (r.environment.get("providers") or ["?"])[0] for r in result.runs()}
            results[side] = {
                "providers": sorted(set(providers.values())),
                "workers": workers,
                "executor": result.record.executor.get("why", ""),
                "wall_s": wall,
                "states": table["state"].to_dict(),
                "mean_ms": table["latency_ms"].to_dict(),
                "worker": table["worker"].to_dict(),
            }
            print(
                f"{side}: {workers} worker(s), {executor}: {wall:.1f} s wall "
                f"({result.record.summary()}; {result.record.executor.get('why', '')}; ONNX Runtime provider "
                f"{', '.join(results[side]['providers'])})",
                flush=True,
            )
    a, b = results["parallel"], results["one by one"]
    same = a["states"] == b["states"]
    print(f"\nratio one-by-one / parallel wall time: {b['wall_s'] / a['wall_s']:.2f}x; same points and states: {same}")
    print(f"{'point':<28}{'state':<8}{'parallel ms':>12}{'one-by-one ms':>15}  parallel worker")
    for point, state in a["states"].items():
        print(f"{point:<28}{state:<8}{a['mean_ms'][point]:>12.4f}{b['mean_ms'][point]:>15.4f}  {a['worker'][point]}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
