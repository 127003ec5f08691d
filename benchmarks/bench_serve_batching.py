"""What Triton's dynamic batching buys a served model: the same run served with dynamic batching off and on
(alternating, ``--repeats`` times each), load-tested at each concurrency; per level the median throughput of each,
their ratio, and the achieved batch (samples per execution). Client and server share this machine's CPU.

    .venv/bin/python benchmarks/bench_serve_batching.py [--model digits_cnn] [--concurrency 1,4,8,16]
        [--duration 3] [--repeats 2] [--delay-us 1000]
"""

from __future__ import annotations

import argparse
import statistics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_cnn", help="a sample name or an .onnx file")
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per level at most")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--delay-us", type=int, default=1000, help="dynamic batching's max queue delay")
    args = parser.parse_args(argv)

    import workbench as wb

    levels = tuple(int(c) for c in args.concurrency.split(","))
    source = args.model if args.model.endswith(".onnx") else wb.sample_path(args.model)
    run = wb.profile(wb.load_model(source), "fp32", backend="onnxruntime", config=wb.BuildConfig(iterations=50))
    rates: dict[tuple[bool, int], list[float]] = {}
    batches: dict[tuple[bool, int], list[float]] = {}
    for _ in range(args.repeats):
        for dynamic in (False, True):
            with wb.serve(run, dynamic_batching=dynamic, max_queue_delay_us=args.delay_us if dynamic else 0) as served:
                load = served.load(levels, duration_s=args.duration)
            assert load.serving.counts_agree, "the client's request count differs from Triton's"
            for level in load.serving.levels:
                rates.setdefault((dynamic, level.concurrency), []).append(level.throughput_rps)
                batches.setdefault((dynamic, level.concurrency), []).append(level.batch)
    print(f"{run.name}: requests/s, median of {args.repeats} (off and on alternating; client and server share the CPU)")
    print(f"{'concurrency':>11}  {'no batching':>11}  {'dynamic':>9}  {'ratio':>6}  {'batch (dyn)':>11}")
    for c in levels:
        off, on = statistics.median(rates[(False, c)]), statistics.median(rates[(True, c)])
        print(f"{c:>11}  {off:>11.1f}  {on:>9.1f}  {on / off:>5.2f}×  {statistics.median(batches[(True, c)]):>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
