"""Load + summarise + profile the ResNet-style sample; prints the time of each step and the profile's figures.

.venv/bin/python benchmarks/bench_profile.py [--backend auto] [--batch 1] [--iterations 100]
"""

from __future__ import annotations

import argparse
import time

import workbench as wb
from workbench.backends import choose_backend
from workbench.precision.variant import make_variant
from workbench.model.samples import sample_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()

    steps = {}
    t = time.perf_counter()
    model = wb.load_model(sample_path("resnet_mini"))
    steps["load + validate"] = time.perf_counter() - t
    t = time.perf_counter()
    model.summary()
    steps["summarise"] = time.perf_counter() - t

    config = wb.BuildConfig(shapes=(("input", (args.batch, 3, 128, 128)),), iterations=args.iterations)
    backend, why = choose_backend(args.backend)
    t = time.perf_counter()
    engine = backend.build(make_variant(model), config)
    steps["build"] = time.perf_counter() - t
    t = time.perf_counter()
    run = backend.profile(engine, wb.make_inputs(model, config.shape_map), config)
    steps["profile (timed + per-layer)"] = time.perf_counter() - t

    print(f"backend: {why}")
    print(f"device:  {run.environment.get('gpu') or run.environment.get('cpu')}")
    for name, seconds in steps.items():
        print(f"{name:<30} {seconds * 1000:10.1f} ms")
    lat = run.latency
    print(
        f"{'latency mean / p50 / p99':<30} {lat.mean_ms:.3f} / {lat.p50_ms:.3f} / {lat.p99_ms:.3f} ms "
        f"({lat.samples} inferences, batch {lat.batch})"
    )
    print(f"{'throughput':<30} {lat.throughput_qps * lat.batch:.1f} samples/s")
    print(f"{'layers':<30} {len(run.layers)} (per-layer sum {run.layers['time_ms'].sum():.3f} ms)")


if __name__ == "__main__":
    main()
