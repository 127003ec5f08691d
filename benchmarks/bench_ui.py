"""How fast the panel answers: a cached Build to updated charts, and the charts of a 10,000-layer run.

    .venv/bin/python benchmarks/bench_ui.py [--repeats 5] [--layers 10000]

1. Cached build: the panel on the digits sample builds once (imports, the INT8 variant and the session are then
   warm), then Build & profile is timed ``--repeats`` times, split into the pipeline (build + timed run + per-layer
   run + accuracy), saving to the store, and updating the tabs (charts, tables, history). With TensorRT the build
   is an engine-cache hit; on ONNX Runtime it is a new session.
2. A synthetic run with ``--layers`` layers: the per-layer chart (figure + the JSON the browser receives), the
   whole result view (every tab), the layer table re-sorted, saving it to the store, and comparing two such runs.
Everything runs in a temporary workspace and cache; the device is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, repeats: int = 1):
    """(result of the last call, median seconds)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def big_run(layers: int, seed: int):
    """A Run with ``layers`` layers shaped like a large transformer engine (types, shapes, ONNX nodes, fusions)."""
    from workbench.results.run import LatencyStats, Memory, Run

    rng = np.random.default_rng(seed)
    types = ["Convolution", "MatMul", "Softmax", "LayerNorm", "Reformat", "ElementWise", "Myelin"]
    rows = []
    for i in range(layers):
        block, op = divmod(i, 10)
        nodes = [f"/encoder/layer.{block}/op_{op}/node_{k}" for k in range(1 + i % 3)]
        rows.append(
            {
                "name": " + ".join(nodes) if len(nodes) > 1 else nodes[0],
                "type": types[i % len(types)],
                "precision": "fp16" if i % 5 else "int8",
                "time_ms": float(rng.gamma(2.0, 0.01)),
                "input_shapes": "8x128x768",
                "output_shapes": "8x128x768",
                "activation_bytes": int(rng.integers(1 << 10, 1 << 22)),
                "weight_bytes": int(rng.integers(0, 1 << 21)),
                "tactic": f"sm90_xmma_kernel_{i % 97}",
                "onnx_nodes": nodes,
            }
        )
    times = list(rng.normal(12.0, 0.3, 500))
    return Run(
        backend="tensorrt",
        layers=rows,
        model={"name": "big_encoder"},
        name=f"big_encoder run {seed}",
        latency=LatencyStats.from_times(times),
        latency_ms=times,
        memory=Memory(weights_bytes=200 << 20, activations_bytes=1 << 30),
    )


def bench_cached_build(repeats: int, workspace: Path) -> dict:
    from workbench.pipeline import profile
    from workbench.results.store import Store
    from workbench.ui import Workbench

    panel = Workbench("digits_cnn", store=Store(workspace))
    panel.precision.value = "int8"
    first, first_s = timed(panel.build)
    _, end_to_end = timed(panel.build, repeats)

    request = {
        "backend": panel.backend.value,
        "config": panel.config(),
        "eval_data": panel.eval_path.value,
        "calibration": str(Path(panel.eval_path.value).with_name("digits_calib.npz")),
    }
    run, pipeline_s = timed(lambda: profile(panel.model, **request), repeats)
    saved, store_s = timed(lambda: panel.store.add(run), repeats)

    def update():
        panel.show(saved)
        panel.history.refresh()
        panel.comparison.refresh()

    _, update_s = timed(update, repeats)
    return {
        "backend": first.backend,
        "device": first.environment.get("gpu") or first.environment.get("cpu"),
        "inferences timed per build": first.latency.samples,
        "first build (cold: imports, INT8 calibration)": first_s,
        "cached build -> charts updated (end to end)": end_to_end,
        "  pipeline (build + timed + per-layer + accuracy)": pipeline_s,
        "  save to store": store_s,
        "  update tabs (charts, tables, history)": update_s,
    }


def bench_big_run(layers: int, repeats: int, workspace: Path) -> dict:
    from workbench import charts
    from workbench.analysis.compare import compare
    from workbench.results.store import Store
    from workbench.ui import Workbench
    from workbench.ui.parts import figure_bundle

    (run, other), make_s = timed(lambda: (big_run(layers, 0), big_run(layers, 1)))
    _, figure_s = timed(lambda: charts.layer_timing(run), repeats)
    fig = charts.layer_timing(run)
    bundle, json_s = timed(lambda: figure_bundle(fig), repeats)
    _, memory_s = timed(lambda: figure_bundle(charts.layer_memory(run)), repeats)
    panel = Workbench("digits_cnn", store=Store(workspace))
    _, show_s = timed(lambda: panel.show(run), repeats)

    def resort():
        panel.layer_table.sort_by.value = "name" if panel.layer_table.sort_by.value != "name" else "time_ms"

    _, sort_s = timed(resort, repeats)
    saved, store_s = timed(lambda: panel.store.add(run), 1)
    _, load_s = timed(lambda: panel.store.get(saved.id), repeats)
    _, compare_s = timed(lambda: compare([run, other]), 1)
    _, compare_chart_s = timed(lambda: charts.compare_layers([run, other]), 1)
    import json

    return {
        "layers": layers,
        "make two synthetic runs": make_s,
        "per-layer time chart: figure": figure_s,
        "per-layer time chart: JSON for the browser": json_s,
        "per-layer time chart: bytes sent": len(json.dumps(bundle)),
        "per-layer memory chart: figure + JSON": memory_s,
        "show the run (every tab)": show_s,
        "layer table: re-sort": sort_s,
        "save to store": store_s,
        "load from store": load_s,
        "compare two runs (metrics + layer diff + Pareto)": compare_s,
        "compare chart (aligned per-layer)": compare_chart_s,
    }


def report(title: str, figures: dict) -> None:
    print(f"\n{title}")
    for name, value in figures.items():
        shown = f"{value * 1000:10.1f} ms" if isinstance(value, float) else f"{value:>10}"
        print(f"  {name:<52} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (the median is printed)")
    parser.add_argument("--layers", type=int, default=10_000, help="layers of the synthetic run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        os.environ["WORKBENCH_CACHE"] = str(Path(tmp) / "cache")  # the first build really is cold
        report(
            "Cached build to updated charts (digits sample, INT8, the panel's defaults)",
            bench_cached_build(args.repeats, Path(tmp) / "a"),
        )
        report(f"A {args.layers:,}-layer run", bench_big_run(args.layers, args.repeats, Path(tmp) / "b"))


if __name__ == "__main__":
    main()
