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
  says so and the check falls back to ``events``;
- **replay (CUPTI)**: the same graph replays recorded by CUPTI: per replay the GPU busy time (union of its
  kernels), its span (first kernel start to last kernel end) and the idle time between its kernels (span − busy).
  Where the GPU is launch-bound even a replayed graph idles between tiny kernels, so the layer sum is compared with
  the replay's busy time (``layers/busy``) and the graph's event time with the replay's span (``graph/span``): the
  gap between layers and events is then the GPU's own record of idle time, not an estimate.

``--repeat 4 --pause 30`` profiles every case again (the independent timers only in the first round) and writes
``coverage.json`` for ``benchmarks/interval_coverage.py --evaluate``: how often a rerun's median falls inside another
run's 95% interval, and which runs said why it might not (unstable, with the cause). ``--trial-gap S`` spreads each
profile's trials S seconds apart (``BuildConfig.trial_gap_s``). Prints Markdown tables; with ``--out DIR`` writes the
run directories of the first round (named after the card; without raw profiler JSON), ``summary.json`` and
``coverage.json``.

Needs onnxruntime-gpu, torch with CUDA and (for GPU layer times) cupti-python::

    python benchmarks/gpu_validation.py --trials 5 --iterations 200 --trial-gap 2 --repeat 2 --out /tmp/h100
"""

from __future__ import annotations

import argparse
import dataclasses
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
    ("digits_cnn", "input:8192x1x8x8", ("fp32",)),
    ("resnet_mini", "input:256x3x128x128", ("fp32", "fp16")),
    ("transformer_encoder", "input_ids:128x128", ("fp32", "fp16")),
)
#: CUDA-graph replays recorded by CUPTI per case.
REPLAYS = 50
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


def cuda_graph_ms(path: str, feed: dict, iterations: int, warmup: int = 20) -> tuple[list[float], dict, str]:
    """Per-inference milliseconds of CUDA-graph replays of the session (``enable_cuda_graph``), between CUDA events
    on its stream: the GPU time of the kernels without the host's launch gaps; then :func:`replay_record` of the
    same replays. ``([], {}, why)`` where ONNX Runtime cannot capture the graph."""
    import torch

    stream = torch.cuda.Stream()
    try:
        session, binding = _bound_session(path, feed, stream, {"enable_cuda_graph": "1"})
        with torch.cuda.stream(stream):
            session.run_with_iobinding(binding)  # the first run captures the graph
    except Exception as e:  # ORT refuses graphs with nodes on the CPU or dynamic shapes
        return [], {}, " ".join(str(e).split())[:200]
    replay = lambda: session.run_with_iobinding(binding)  # noqa: E731
    times = _event_times(stream, replay, iterations, warmup)
    return times, replay_record(stream, replay, REPLAYS), ""


def replay_record(stream, replay, replays: int) -> dict:
    """CUPTI's record of ``replays`` CUDA-graph replays (after the timed ones: warm): per replay (its kernels are
    consecutive on the one stream, the same count in every replay) the median GPU busy time, span and idle time
    between kernels, in ms, and kernels per replay; ``{"failed": why}`` where CUPTI did not record."""
    import torch

    from workbench.backends import cupti

    try:
        with torch.cuda.stream(stream), cupti.Recorder() as recorder:
            for _ in range(replays):
                replay()
            torch.cuda.synchronize()
    except cupti.CuptiUnavailable as e:
        return {"failed": str(e)}
    if recorder.failed:
        return {"failed": recorder.failed}
    work = sorted(recorder.trace.activities, key=lambda a: a.start_ns)
    if not work or len(work) % replays:
        return {"failed": f"{len(work)} GPU activities recorded for {replays} replays"}
    per = len(work) // replays
    groups = [work[i : i + per] for i in range(0, len(work), per)]
    busy = [cupti.union_ns(g) / 1e6 for g in groups]
    span = [(max(a.end_ns for a in g) - g[0].start_ns) / 1e6 for g in groups]
    return {
        "busy_ms": statistics.median(busy),
        "span_ms": statistics.median(span),
        "idle_ms": statistics.median(s - b for s, b in zip(span, busy)),
        "kernels": per,
        "replays": replays,
    }


def card_slug(run) -> str:
    """``h100`` / ``h200`` from the GPU's name, for run folder names."""
    name = str(run.environment.get("gpu") or "gpu").lower()
    for card in ("h200", "h100", "a100", "l40s", "l4"):
        if card in name:
            return card
    return "".join(c for c in name if c.isalnum())[:12] or "gpu"


def profile_case(model, shapes: str, precision: str, args, options: dict, check: bool = True):
    """One case: the workbench's profile, then (``check``) the independent timers on the same variant. Returns
    (row, run)."""
    import workbench as wb
    from workbench.model.inputs import make_inputs

    config = wb.BuildConfig(
        shapes=wb.parse_shapes(shapes),
        iterations=args.iterations,
        warmup_ms=args.warmup,
        trials=args.trials,
        trial_gap_s=args.trial_gap,
    )
    feed = make_inputs(model, config.shape_map, config.seed)
    run = wb.profile(model, precision, backend="onnxruntime", config=config, **options)
    path = str(run.variant.get("path") or model.path)  # the very file the profile ran
    on_gpu = run.environment.get("provider") == "CUDAExecutionProvider" and check
    events = cuda_events_ms(path, feed, iterations=args.iterations) if on_gpu else []
    graph, replay, no_graph = cuda_graph_ms(path, feed, args.iterations) if on_gpu else ([], {}, "not checked")
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
        "replay": replay,
        "layers_over_replay_busy": layers_ms / replay["busy_ms"] if replay.get("busy_ms") else float("nan"),
        "graph_over_replay_span": graph_ms / replay["span_ms"] if replay.get("span_ms") else float("nan"),
        "gpu_busy_low_ms": g.busy_low_ms if g else None,
        "gpu_busy_high_ms": g.busy_high_ms if g else None,
        "trial_sm_mhz": [t.gpu_sm_mhz for t in run.trials],
        "findings": [f.text() for f in run.findings],
        "notes": [n for n in run.notes if "CUPTI" in n or "GPU kernel" in n],
    }
    low, high = LAYER_SUM_RANGE
    row["layer_sum_ok"] = bool(low <= row["layers_over_reference"] <= high)
    row["max_roof"] = max_roof(run)
    return row, run


def max_roof(run) -> dict:
    """The layer highest above its roof in the workbench's roofline (``pct_of_roof``), with the columns that say
    which roof held it, and the roofline's notes about layers above a roof; ``{"error": why}`` where no roofline
    can be drawn."""
    from workbench.analysis.roofline import roofline

    try:
        held = roofline(run)
    except Exception as e:  # no per-layer times, an unknown device: the row says why
        return {"error": " ".join(str(e).split())[:200]}
    table = held.layers.dropna(subset=["pct_of_roof"])
    if not len(table):
        return {"notes": list(held.notes)}
    top = table.sort_values("pct_of_roof").iloc[-1]
    kept = [c for c in table.columns if c in ROOF_COLUMNS or "roof" in c or "cache" in c]
    return {
        **{c: (top[c].item() if hasattr(top[c], "item") else top[c]) for c in kept},
        "above_100": int((table["pct_of_roof"] > 100).sum()),
        "notes": [n for n in held.notes if "roof" in n.lower() or "cache" in n.lower()],
    }


#: What the row keeps of the layer highest above its roof.
ROOF_COLUMNS = ("name", "type", "time_ms", "pct_of_roof", "bound", "peak_from", "intensity")


def coverage_row(run, label: str, repeat: int) -> dict:
    """What ``benchmarks/interval_coverage.py --evaluate`` reads of one run: its trials' samples and what the
    verdict was made from (CPU waits, each trial's SM clock, CUPTI's busy time), and the timing it reported."""
    return {
        "model": label,
        "replicate": repeat,
        "created": run.created,
        "trials": [[round(x, 6) for x in t] for t in run.trial_samples],
        "cpu_wait": [t.cpu_wait for t in run.trials],
        "gpu_sm_mhz": [t.gpu_sm_mhz for t in run.trials],
        "gpu_time": dataclasses.asdict(run.gpu_time) if run.gpu_time else None,
        "timing": dataclasses.asdict(run.timing) if run.timing else None,
    }


def print_tables(rows: list[dict], ratios: list[dict]) -> None:
    """The Markdown tables of the rows (``summary.json``'s) and the FP16-vs-FP32 ratios."""
    print(
        "\n| model | shapes | precision | round | median (95% rerun interval) ms | verdict | layers (GPU) ms | GPU busy ms"
        " | kernels | idle | events ms | graph ms | replay busy / span / idle ms (CUPTI) | layers/busy | graph/span |"
        " layers/graph | highest % of roof |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['shapes']} | {r['precision']} | not run: {r['error']} |" + " |" * 13)
            continue
        rp, roof = r["replay"], r.get("max_roof") or {}
        verdict = r["verdict"] + (f" ({', '.join(c.split(' (')[0] for c in r['causes'])})" if r["causes"] else "")
        top = f"{roof['pct_of_roof']:.0f}% ({roof['type']})" if "pct_of_roof" in roof else roof.get("error", "–")
        replay = f"{rp['busy_ms']:.4f} / {rp['span_ms']:.4f} / {rp['idle_ms']:.4f}" if "busy_ms" in rp else "–"
        print(
            f"| {r['model']} | {r['shapes']} | {r['precision']} | {r['repeat']} | "
            f"{r['median_ms']:.4f} ({r['ci_low_ms']:.4f}–{r['ci_high_ms']:.4f}) | {verdict} | "
            f"{r['layers_sum_ms']:.4f} | {r['gpu_busy_ms']:.4f} | {r['kernels']:.0f} | {100 * r['idle_share']:.0f}% | "
            f"{r['events_median_ms']:.4f} | {r['graph_median_ms']:.4f} | {replay} | {r['layers_over_replay_busy']:.3f} |"
            f" {r['graph_over_replay_span']:.3f} | {r['layers_over_reference']:.3f} ({r['reference']}"
            f"{'' if r['layer_sum_ok'] else ', OUTSIDE 0.9–1.1'}) | {top} |"
        )
    if ratios:
        print("\n| model | shapes | against FP32 | ratio (95% CI) | verdict |\n|---|---|---|---|---|")
        for r in ratios:
            print(
                f"| {r['model']} | {r['shapes']} | {r['precision']} | {r['ratio']:.3f} ({r['low']:.3f}–"
                f"{r['high']:.3f}) | {r['text']} |"
            )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=300.0)
    parser.add_argument("--trial-gap", type=float, default=0.0, help="seconds between a profile's trials")
    parser.add_argument("--out", help="folder for the run directories, summary.json and coverage.json")
    parser.add_argument("--samples", help="comma-separated sample names to run (default: every case)")
    parser.add_argument("--precisions", help="comma-separated precisions to run (default: each case's)")
    parser.add_argument("--small-only", action="store_true", help="only the first precision of each case (fp32)")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="FILE:SHAPES of another model to run in fp32 and fp16 (as --precisions allows; repeatable)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="profile every case this many times (reruns)")
    parser.add_argument("--first-round", type=int, default=0, help="number of the first round (a later call's)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between repeats")
    parser.add_argument("--rerun-precisions", help="comma-separated precisions profiled again after the first round")
    parser.add_argument("--tables", help="only print the tables of a summary.json written earlier")
    args = parser.parse_args(argv)
    if args.tables:
        summary = json.loads(Path(args.tables).read_text())
        print_tables(summary["rows"], summary.get("ratios", []))
        return

    import onnxruntime

    import workbench as wb
    from workbench.model.onnx_model import load_model
    from workbench.model.samples import sample_path
    from workbench.results.metrics import summary_rows
    from workbench.results.stats import difference

    onnxruntime.set_default_logger_severity(3)  # ONNX Runtime's own warnings (node placement) are not findings
    out = Path(args.out) if args.out else None
    wanted = set(args.samples.split(",")) if args.samples else None
    allowed = set(args.precisions.split(",")) if args.precisions else None
    cases = [
        (sample_path(s), shapes, precisions[:1] if args.small_only else precisions)
        for s, shapes, precisions in CASES
        if wanted is None or s in wanted
    ]
    for spec in args.model:
        path, _, shapes = spec.partition(".onnx:")  # shapes hold ':' themselves (input:1x3x224x224)
        path += ".onnx"
        cases.append((Path(path), shapes, ("fp32",) if args.small_only else ("fp32", "fp16")))
    cases = [(p, sh, tuple(x for x in precs if allowed is None or x in allowed)) for p, sh, precs in cases]
    rows, runs, replicates = [], {}, []
    for repeat in range(args.first_round, args.first_round + args.repeat):
        if repeat > args.first_round:
            time.sleep(args.pause)
        for path, shapes, precisions in cases:
            model = load_model(path)
            for precision in precisions:
                if repeat > args.first_round and args.rerun_precisions and precision not in args.rerun_precisions:
                    continue
                key = (model.name, shapes, precision, repeat)
                check = repeat == args.first_round
                try:
                    options = variant_options(model.name, precision)
                    row, run = profile_case(model, shapes, precision, args, options, check)
                except Exception as e:  # one case failing (a WorkbenchError, a provider's crash) ends no other
                    if not isinstance(e, wb.WorkbenchError):
                        traceback.print_exc()
                    rows.append({"model": model.name, "shapes": shapes, "precision": precision, "error": str(e)})
                    print(f"{model.name} {precision}: {e}", flush=True)
                    continue
                row["repeat"] = repeat
                rows.append(row)
                runs[key] = run
                replicates.append(coverage_row(run, f"{model.name} {shapes} {precision}", repeat))
                print(json.dumps(row, default=str), flush=True)
                if out:
                    batch = shapes.split(":")[1].split("x")[0]
                    name = f"{card_slug(run)}-{model.name}-b{batch}-{precision}" + (f"-rerun{repeat}" if repeat else "")
                    runs[key] = run.replace(artifacts={}).save(out / "runs" / name)
                    _write(out, {"rows": rows}, replicates)  # so far: a run cut short keeps what it measured
    shown = next((r for r in runs.values() if r.gpu_time is not None), None)
    if shown is not None:  # what `workbench profile` prints for a run
        print(f"\n{shown.name}\n" + "\n".join(f"{k:<36}{v}" for k, v in summary_rows(shown)))
    ratios = []
    for path, shapes, precisions in cases:
        name = load_model(path).name
        base = runs.get((name, shapes, "fp32", args.first_round))
        for precision in precisions[1:]:
            other = runs.get((name, shapes, precision, args.first_round))
            if base and other:
                d = difference(base.trial_samples, other.trial_samples)
                ratios.append(
                    {"model": name, "shapes": shapes, "precision": precision, "ratio": d.ratio, "low": d.low,
                     "high": d.high, "significant": d.significant, "text": d.text()}
                )  # fmt: skip
    print_tables(rows, ratios)
    if len({r["replicate"] for r in replicates}) > 1:
        from interval_coverage import coverage, report

        report(coverage(replicates))
    if out:
        for run_dir in (out / "runs").iterdir():
            for extra in run_dir.glob("*.json"):
                if extra.name != "run.json":
                    extra.unlink()
        _write(out, {"rows": rows, "ratios": ratios}, replicates)
        shutil.make_archive(str(out / "runs"), "gztar", out / "runs")


def _write(out: Path, summary: dict, replicates: list) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "coverage.json").write_text(json.dumps({"rows": replicates}, default=str))


if __name__ == "__main__":
    main()
