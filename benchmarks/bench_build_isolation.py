"""What running native builds in a child process costs: each bundled sample compiled with TensorRT-RTX (no GPU
needed) in the caller's process (``build_plan``) and in a child (``build_plan_isolated``, what the backends do),
alternating, fresh every time (no engine cache), median wall seconds of each.

    .venv/bin/python benchmarks/bench_build_isolation.py [--repeats 5] [--precision fp32] [--arch sm89]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--arch", default="sm89")
    args = parser.parse_args(argv)

    import workbench as wb
    from workbench.backends.tensorrt.build import build_plan
    from workbench.backends.tensorrt.isolated import build_plan_isolated
    from workbench.backends.tensorrt.library import TENSORRT_RTX, load
    from workbench.model.samples import sample_path
    from workbench.progress import Progress

    module = load(TENSORRT_RTX.module)
    targets = (args.arch.upper(),)
    print(f"TensorRT-RTX {module.__version__}, {args.precision}, {args.arch}, median of {args.repeats}")
    print("| sample | in process (s) | child process (s) | cost of the child (s) | plan bytes equal |")
    print("|---|---|---|---|---|")
    for sample in ("digits_cnn", "resnet_mini", "transformer_encoder"):
        variant = wb.make_variant(wb.load_model(sample_path(sample)), args.precision)
        config = wb.BuildConfig(precision=args.precision)
        inside, child, sizes = [], [], set()
        for _ in range(args.repeats):  # alternating, so a busy moment of the machine hits both
            start = time.perf_counter()
            plan, _ = build_plan(module, TENSORRT_RTX, variant, config, Progress(), targets=targets, report=True)
            inside.append(time.perf_counter() - start)
            sizes.add(len(plan))
            start = time.perf_counter()
            plan, _ = build_plan_isolated(TENSORRT_RTX, variant, config, Progress(), targets=targets, report=True)
            child.append(time.perf_counter() - start)
            sizes.add(len(plan))
        a, b = statistics.median(inside), statistics.median(child)
        print(
            f"| {sample} | {a:.2f} | {b:.2f} | {b - a:+.2f} | {'yes' if len(sizes) == 1 else 'sizes ' + str(sizes)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
