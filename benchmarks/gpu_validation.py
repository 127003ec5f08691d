"""Real GPU runs with ONNX Runtime's CUDA provider, checked against independent timers (docs/gpu-validation.md).

For every bundled sample in FP32, FP16 and INT8 (Q/DQ), and any ``--model FILE:SHAPES`` given: the workbench's own
profile (trials, per-layer profile with CUPTI's kernel records, conditions) on the CUDA provider, then the same
work timed independently on a fresh session whose kernels run on a torch stream (``user_compute_stream``), inputs
and outputs resident on the GPU (I/O binding):

- **events**: a pair of CUDA events around each synchronous inference (the GPU's span of one inference, idle gaps
  between launches included, like trtexec's "GPU Compute Time");
- **graph**: the session captured as a CUDA graph (``enable_cuda_graph``) and a pair of events around each replay:
  the GPU time of the inference's kernels without the host's launch gaps. The per-layer GPU times CUPTI recorded
  must sum to 0.9–1.1× of it (``layers/graph``); where the graph cannot be captured (a node on the CPU) the row
  says so and the check falls back to ``events``.

``--repeat 2 --pause 120`` profiles every case again minutes later and reports how often each rerun's median falls
inside the first run's 95% interval (and the first's inside the rerun's). Prints Markdown tables; with ``--out DIR``
writes the run directories (named after the card; without raw profiler JSON) and ``summary.json``.

Needs onnxruntime-gpu, torch with CUDA and (for GPU layer times) cupti-python::

    python benchmarks/gpu_validation.py --trials 5 --iterations 200 --out /tmp/h100
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
import traceback
from pathlib import Path

import numpy as np

#: (sample, profiled shapes, precisions): every sample at a small batch in all three precisions, then the two
#: larger models at a batch big enough that the GPU, not the host's kernel launches, sets the pace.
CASES = (
    ("digits_cnn", "input:64x1x8x8", ("fp32", "fp16", "int8")),
    ("resnet_mini", "input:8x3x128x128", ("fp32", "fp16", "int8")),
    ("transformer_encoder", "input_ids:8x128", ("fp32", "fp16", "int8")),
    ("resnet_mini", "input:256x3x128x128", ("fp32", "fp16")),
    ("transformer_encoder", "input_ids:128x128", ("fp32", "fp16")),
)
#: Per-layer GPU time over the independent GPU time must lie in this range.
LAYER_SUM_RANGE = (0.9, 1.1)


def variant_options(sample: str, precision: str) -> dict:
    if precision != "int8":
        return {}
    if sample == "digits_cnn":
        from workbench.model.samples import sample_path

        return {"calibration": str(sample_path("digits_calib"))}
    return {"random_calibration": True}


def _bound_session(path: str, feed: dict, stream, options: dict | None = None):
    """A CUDA-provider session on ``stream`` with ``feed`` bound as device tensors (kept alive on the binding)."""
    import onnxruntime as ort
    import torch

    provider = {"device_id": 0, "user_compute_stream": str(stream.cuda_stream), **(options or {})}
    session = ort.InferenceSession(path, providers=[("CUDAExecutionProvider", provider)])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"the session runs on {session.get_providers()[0]}")
    binding = session.io_binding()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).cuda() for k, v in feed.items()}
    for name, t in tensors.items():
        binding.bind_input(name, "cuda", 0, feed[name].dtype, list(t.shape), t.data_ptr())
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", 0)
    binding.tensors = tensors
    return session, binding


def _event_times(stream, run, iterations: int, warmup: int) -> list[float]:
    import torch

    with torch.cuda.stream(stream):
        for _ in range(warmup):
            run()
        torch.cuda.synchronize()
        pairs = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iterations)
        ]
        for start, end in pairs:
            start.record(stream)
            run()
            end.record(stream)
        torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in pairs]


def cuda_events_ms(path: str, feed: dict, iterations: int, warmup: int = 50) -> list[float]:
    """Per-inference milliseconds between CUDA events recorded before and after each synchronous inference, on the
    stream the session's kernels run on: the GPU's span of one inference, launch gaps included."""
    import torch

    stream = torch.cuda.Stream()
    session, binding = _bound_session(path, feed, stream)
    return _event_times(stream, lambda: session.run_with_iobinding(binding), iterations, warmup)


def cuda_graph_ms(path: str, feed: dict, iterations: int, warmup: int = 20) -> tuple[list[float], str]:
    """Per-inference milliseconds of CUDA-graph replays of the session (``enable_cuda_graph``), between CUDA events
    on its stream: the GPU time of the kernels without the host's launch gaps. ``([], why)`` where ONNX Runtime
    cannot capture the graph."""
    import torch

    stream = torch.cuda.Stream()
    try:
        session, binding = _bound_session(path, feed, stream, {"enable_cuda_graph": "1"})
        with torch.cuda.stream(stream):
            session.run_with_iobinding(binding)  # the first run captures the graph
    except Exception as e:  # ORT refuses graphs with nodes on the CPU or dynamic shapes
        return [], " ".join(str(e).split())[:200]
    return _event_times(stream, lambda: session.run_with_iobinding(binding), iterations, warmup), ""


def card_slug(run) -> str:
    """``h100`` / ``h200`` from the GPU's name, for run folder names."""
    name = str(run.environment.get("gpu") or "gpu").lower()
    for card in ("h200", "h100", "a100", "l40s", "l4"):
        if card in name:
            return card
    return "".join(c for c in name if c.isalnum())[:12] or "gpu"


def profile_case(model, shapes: str, precision: str, args, options: dict):
    """One case: the workbench's profile, then the independent timers on the same variant. Returns (row, run)."""
    import workbench as wb
    from workbench.model.inputs import make_inputs
    from workbench.precision.variant import make_variant

    config = wb.BuildConfig(
        shapes=wb.parse_shapes(shapes), iterations=args.iterations, warmup_ms=args.warmup, trials=args.trials
    )
    feed = make_inputs(model, config.shape_map, config.seed)
    run = wb.profile(model, precision, backend="onnxruntime", config=config, **options)
    variant = make_variant(model, precision, **options)
    path = str(variant.path or model.path)
    on_gpu = run.environment.get("provider") == "CUDAExecutionProvider"
    events = cuda_events_ms(path, feed, iterations=args.iterations) if on_gpu else []
    graph, no_graph = cuda_graph_ms(path, feed, iterations=args.iterations) if on_gpu else ([], "not on a GPU")
    t, g = run.timing, run.gpu_time
    layers_ms = float(run.layers["time_ms"].sum())
    events_ms = statistics.median(events) if events else float("nan")
    graph_ms = statistics.median(graph) if graph else float("nan")
    reference = graph_ms if graph else events_ms
    row = {
        "model": model.name,
        "shapes": shapes,
        "precision": precision,
        "provider": run.environment.get("provider"),
        "gpu": run.environment.get("gpu"),
        "time_source": run.time_source_label,
        "median_ms": t.median_ms,
        "ci_low_ms": t.ci_low_ms,
        "ci_high_ms": t.ci_high_ms,
        "cv": t.cv,
        "verdict": t.verdict,
        "causes": list(t.causes),
        "profiled_ms": t.profiled_ms,
        "layers_sum_ms": layers_ms,
        "host_layers_sum_ms": float(run.layers["host_ms"].sum()) if "host_ms" in run.layers else float("nan"),
        "gpu_busy_ms": g.busy_ms if g else float("nan"),
        "kernels": g.kernels if g else float("nan"),
        "unattributed_ms": g.unattributed_ms if g else float("nan"),
        "matched_share": g.matched_share if g else float("nan"),
        "idle_share": g.idle_share(t.median_ms) if g else float("nan"),
        "events_median_ms": events_ms,
        "graph_median_ms": graph_ms,
        "graph_not_captured": no_graph,
        "layers_over_reference": layers_ms / reference if reference == reference else float("nan"),
        "reference": "graph" if graph else "events",
        "findings": [f.text() for f in run.findings],
        "notes": [n for n in run.notes if "CUPTI" in n or "GPU kernel" in n],
    }
    low, high = LAYER_SUM_RANGE
    row["layer_sum_ok"] = bool(low <= row["layers_over_reference"] <= high)
    return row, run


def coverage(first: dict, second: dict) -> dict:
    """Whether each run's median lies inside the other's 95% interval."""
    return {
        "second_in_first": bool(first["ci_low_ms"] <= second["median_ms"] <= first["ci_high_ms"]),
        "first_in_second": bool(second["ci_low_ms"] <= first["median_ms"] <= second["ci_high_ms"]),
        "unstable": first["verdict"] != "stable" or second["verdict"] != "stable",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=300.0)
    parser.add_argument("--out", help="folder for the run directories and summary.json")
    parser.add_argument("--samples", help="comma-separated sample names to run (default: every case)")
    parser.add_argument("--small-only", action="store_true", help="only the first precision of each case (fp32)")
    parser.add_argument(
        "--model", action="append", default=[], help="FILE:SHAPES of another model to run in fp32 (repeatable)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="profile every case this many times (reruns)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between repeats")
    args = parser.parse_args(argv)

    import onnxruntime

    import workbench as wb
    from workbench.model.onnx_model import load_model
    from workbench.model.samples import sample_path
    from workbench.results.metrics import summary_rows
    from workbench.results.stats import difference

    onnxruntime.set_default_logger_severity(3)  # ONNX Runtime's own warnings (node placement) are not findings
    out = Path(args.out) if args.out else None
    wanted = set(args.samples.split(",")) if args.samples else None
    cases = [
        (sample_path(s), shapes, precisions[:1] if args.small_only else precisions)
        for s, shapes, precisions in CASES
        if wanted is None or s in wanted
    ]
    for spec in args.model:
        path, _, shapes = spec.partition(".onnx:")  # shapes hold ':' themselves (input:1x3x224x224)
        path += ".onnx"
        cases.append((Path(path), shapes, ("fp32",)))
    rows, runs = [], {}
    for repeat in range(args.repeat):
        if repeat:
            time.sleep(args.pause)
        for path, shapes, precisions in cases:
            model = load_model(path)
            for precision in precisions:
                key = (model.name, shapes, precision, repeat)
                try:
                    row, run = profile_case(model, shapes, precision, args, variant_options(model.name, precision))
                except Exception as e:  # one case failing (a WorkbenchError, a provider's crash) ends no other
                    if not isinstance(e, wb.WorkbenchError):
                        traceback.print_exc()
                    rows.append({"model": model.name, "shapes": shapes, "precision": precision, "error": str(e)})
                    print(f"{model.name} {precision}: {e}", flush=True)
                    continue
                row["repeat"] = repeat
                rows.append(row)
                runs[key] = run
                print(json.dumps(row, default=str), flush=True)
                if out:
                    batch = shapes.split(":")[1].split("x")[0]
                    name = f"{card_slug(run)}-{model.name}-b{batch}-{precision}" + (f"-rerun{repeat}" if repeat else "")
                    runs[key] = run.replace(artifacts={}).save(out / "runs" / name)
    shown = next((r for r in runs.values() if r.gpu_time is not None), None)
    if shown is not None:  # what `workbench profile` prints for a run
        print(f"\n{shown.name}\n" + "\n".join(f"{k:<36}{v}" for k, v in summary_rows(shown)))
    ratios = []
    for path, shapes, precisions in cases:
        name = load_model(path).name
        base = runs.get((name, shapes, "fp32", 0))
        for precision in precisions[1:]:
            other = runs.get((name, shapes, precision, 0))
            if base and other:
                d = difference(base.trial_samples, other.trial_samples)
                ratios.append(
                    {"model": name, "shapes": shapes, "precision": precision, "ratio": d.ratio, "low": d.low,
                     "high": d.high, "significant": d.significant, "text": d.text()}
                )  # fmt: skip
    reruns = []
    done = [r for r in rows if "error" not in r]
    for r in done:
        if r["repeat"]:
            first = next(
                (f for f in done if f["repeat"] == 0 and (f["model"], f["shapes"], f["precision"]) ==
                 (r["model"], r["shapes"], r["precision"])),
                None,
            )  # fmt: skip
            if first:
                reruns.append({"model": r["model"], "shapes": r["shapes"], "precision": r["precision"],
                               **coverage(first, r)})  # fmt: skip
    print(
        "\n| model | shapes | precision | median (95% CI) ms | verdict | layers (GPU) ms | GPU busy ms | kernels |"
        " idle | events ms | graph ms | layers/reference | host layers ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['shapes']} | {r['precision']} | not run: {r['error']} |" + " |" * 9)
            continue
        print(
            f"| {r['model']} | {r['shapes']} | {r['precision']}{' (rerun)' if r['repeat'] else ''} | "
            f"{r['median_ms']:.4f} ({r['ci_low_ms']:.4f}–{r['ci_high_ms']:.4f}) | {r['verdict']} | "
            f"{r['layers_sum_ms']:.4f} | {r['gpu_busy_ms']:.4f} | {r['kernels']:.0f} | {100 * r['idle_share']:.0f}% | "
            f"{r['events_median_ms']:.4f} | {r['graph_median_ms']:.4f} | {r['layers_over_reference']:.3f} "
            f"({r['reference']}{'' if r['layer_sum_ok'] else ', OUTSIDE 0.9–1.1'}) | {r['host_layers_sum_ms']:.4f} |"
        )
    if ratios:
        print("\n| model | shapes | against FP32 | ratio (95% CI) | verdict |\n|---|---|---|---|---|")
        for r in ratios:
            print(
                f"| {r['model']} | {r['shapes']} | {r['precision']} | {r['ratio']:.3f} ({r['low']:.3f}–"
                f"{r['high']:.3f}) | {r['text']} |"
            )
    if reruns:
        held = sum(r["second_in_first"] for r in reruns)
        both = sum(r["second_in_first"] and r["first_in_second"] for r in reruns)
        print(
            f"\nreruns: {held}/{len(reruns)} rerun medians inside the first run's interval, {both}/{len(reruns)} "
            f"pairs inside each other's; {sum(r['unstable'] for r in reruns)} pairs with a run labelled unstable"
        )
    if out:
        for run_dir in (out / "runs").iterdir():
            for extra in run_dir.glob("*.json"):
                if extra.name != "run.json":
                    extra.unlink()
        summary = {"rows": rows, "ratios": ratios, "reruns": reruns}
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        shutil.make_archive(str(out / "runs"), "gztar", out / "runs")


if __name__ == "__main__":
    main()
