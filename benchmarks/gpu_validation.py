"""Real GPU runs with ONNX Runtime's CUDA provider, checked against an independent timer (docs/gpu-validation.md).

For every bundled sample in FP32, FP16 and INT8 (Q/DQ): the workbench's own profile (trials, per-layer profile,
conditions) on the CUDA provider, then the same work timed independently — a fresh session whose kernels run on
a torch stream (``user_compute_stream``), inputs and outputs resident on the GPU (I/O binding), the provider's
end-of-run synchronisation off, and a pair of CUDA events around each inference on that stream (GPU time, like
trtexec's "GPU Compute Time"). Prints a Markdown table and the FP16/FP32 and INT8/FP32 ratios with their 95%
intervals; with ``--out DIR`` writes the run directories (without the raw profiler JSON) and ``summary.json``.

Needs onnxruntime-gpu and torch with CUDA::

    python benchmarks/gpu_validation.py --trials 5 --iterations 200 --out /tmp/h200
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import numpy as np

import workbench as wb
from workbench.model.inputs import make_inputs
from workbench.model.onnx_model import load_model
from workbench.model.samples import sample_path
from workbench.precision.variant import make_variant
from workbench.results.stats import difference

#: (sample, profiled shapes, precisions): every sample at a small batch in all three precisions, then the two
#: larger models at a batch big enough that the GPU, not the host's kernel launches, sets the pace.
CASES = (
    ("digits_cnn", "input:64x1x8x8", ("fp32", "fp16", "int8")),
    ("resnet_mini", "input:8x3x128x128", ("fp32", "fp16", "int8")),
    ("transformer_encoder", "input_ids:8x128", ("fp32", "fp16", "int8")),
    ("resnet_mini", "input:256x3x128x128", ("fp32", "fp16")),
    ("transformer_encoder", "input_ids:128x128", ("fp32", "fp16")),
)


def variant_options(sample: str, precision: str) -> dict:
    if precision != "int8":
        return {}
    if sample == "digits_cnn":
        return {"calibration": str(sample_path("digits_calib"))}
    return {"random_calibration": True}


def cuda_events_ms(variant_path: str, feed: dict, iterations: int, warmup: int = 50) -> tuple[list[float], float]:
    """The same work timed by CUDA events on the stream the session's kernels run on (device-resident I/O).

    Returns per-inference milliseconds between an event recorded before each (synchronous) run and one recorded
    after it, and the pipelined time per inference: one event before and one after ``iterations`` runs issued
    back to back without waiting for the GPU between them."""
    import onnxruntime as ort
    import torch

    stream = torch.cuda.Stream()
    session = ort.InferenceSession(
        variant_path,
        providers=[("CUDAExecutionProvider", {"device_id": 0, "user_compute_stream": str(stream.cuda_stream)})],
    )
    assert session.get_providers()[0] == "CUDAExecutionProvider", session.get_providers()
    binding = session.io_binding()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).cuda() for k, v in feed.items()}
    for name, t in tensors.items():
        binding.bind_input(name, "cuda", 0, feed[name].dtype, list(t.shape), t.data_ptr())
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", 0)
    pipelined = ort.RunOptions()
    pipelined.add_run_config_entry("disable_synchronize_execution_providers", "1")

    def event():
        return torch.cuda.Event(enable_timing=True)

    with torch.cuda.stream(stream):
        for _ in range(warmup):
            session.run_with_iobinding(binding)
        torch.cuda.synchronize()
        pairs = [(event(), event()) for _ in range(iterations)]
        for start, end in pairs:
            start.record(stream)
            session.run_with_iobinding(binding)  # returns once the GPU has finished
            end.record(stream)
        first, last = event(), event()
        first.record(stream)
        for _ in range(iterations):
            session.run_with_iobinding(binding, pipelined)
        last.record(stream)
        torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in pairs], first.elapsed_time(last) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=300.0)
    parser.add_argument("--out", help="folder for the run directories and summary.json")
    args = parser.parse_args()
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # ONNX Runtime's own warnings (node placement) are not findings
    out = Path(args.out) if args.out else None
    rows, runs = [], {}
    for sample, shapes, precisions in CASES:
        model = load_model(sample_path(sample))
        config = wb.BuildConfig(
            shapes=wb.parse_shapes(shapes), iterations=args.iterations, warmup_ms=args.warmup, trials=args.trials
        )
        feed = make_inputs(model, config.shape_map, config.seed)
        for precision in precisions:
            key = (sample, shapes, precision)
            options = variant_options(sample, precision)
            try:
                run = wb.profile(model, precision, backend="onnxruntime", config=config, **options)
            except wb.WorkbenchError as e:
                rows.append({"sample": sample, "shapes": shapes, "precision": precision, "error": str(e)})
                print(f"{sample} {precision}: {e}", flush=True)
                continue
            variant = make_variant(model, precision, **options)
            events, pipelined = (
                cuda_events_ms(str(variant.path or model.path), feed, iterations=args.iterations)
                if run.environment.get("provider") == "CUDAExecutionProvider"
                else ([float("nan")], float("nan"))
            )
            t = run.timing
            layers_ms = float(run.layers["time_ms"].sum())
            row = {
                "sample": sample,
                "shapes": shapes,
                "precision": precision,
                "provider": run.environment["provider"],
                "gpu": run.environment.get("gpu"),
                "median_ms": t.median_ms,
                "ci_low_ms": t.ci_low_ms,
                "ci_high_ms": t.ci_high_ms,
                "cv": t.cv,
                "verdict": t.verdict,
                "causes": list(t.causes),
                "trials": t.trials,
                "samples": run.latency.samples,
                "profiled_ms": t.profiled_ms,
                "layers_sum_ms": layers_ms,
                "events_median_ms": statistics.median(events),
                "events_min_ms": min(events),
                "pipelined_ms": pipelined,
                "warnings": list(run.conditions.warnings),
                "conditions": {"before": run.conditions.before.__dict__, "after": run.conditions.after.__dict__},
                "gpu_used_bytes": run.memory.gpu_used_bytes,
                "label_accuracy": run.accuracy and run.accuracy.label_accuracy,
            }
            row["host_over_events"] = t.median_ms / row["events_median_ms"]
            rows.append(row)
            runs[key] = run
            print(json.dumps(row, default=str), flush=True)
            if out:
                batch = shapes.split(":")[1].split("x")[0]
                runs[key] = run.replace(artifacts={}).save(out / "runs" / f"{sample}-b{batch}-{precision}")
    shown = runs.get(("resnet_mini", "input:256x3x128x128", "fp16"))
    if shown is not None:  # what `workbench profile` prints for a run
        from workbench.views.report import metrics_rows

        print("\n" + "\n".join(f"{k:<36}{v}" for k, v in metrics_rows(shown)))
    ratios = []
    for sample, shapes, precisions in CASES:
        base = runs.get((sample, shapes, "fp32"))
        for precision in precisions[1:]:
            other = runs.get((sample, shapes, precision))
            if base and other:
                d = difference(base.trial_samples, other.trial_samples)
                ratios.append(
                    {
                        "sample": sample,
                        "shapes": shapes,
                        "precision": precision,
                        "ratio": d.ratio,
                        "low": d.low,
                        "high": d.high,
                        "significant": d.significant,
                        "text": d.text(),
                    }
                )
    print(
        "\n| sample | shapes | precision | workbench median (95% CI) ms | CV | verdict | CUDA events median ms |"
        " workbench/events | pipelined ms | profiled inference ms | layers sum ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['sample']} | {r['shapes']} | {r['precision']} | not run: {r['error']} | | | | | | | |")
            continue
        print(
            f"| {r['sample']} | {r['shapes']} | {r['precision']} | {r['median_ms']:.4f} ({r['ci_low_ms']:.4f}–"
            f"{r['ci_high_ms']:.4f}) | {100 * r['cv']:.1f}% | {r['verdict']} | {r['events_median_ms']:.4f} | "
            f"{r['host_over_events']:.3f} | {r['pipelined_ms']:.4f} | {r['profiled_ms']:.4f} | "
            f"{r['layers_sum_ms']:.4f} |"
        )
    print("\n| sample | shapes | against FP32 | ratio (95% CI) | verdict |\n|---|---|---|---|---|")
    for r in ratios:
        print(
            f"| {r['sample']} | {r['shapes']} | {r['precision']} | {r['ratio']:.3f} ({r['low']:.3f}–{r['high']:.3f})"
            f" | {r['text']} |"
        )
    if out:
        for run_dir in (out / "runs").iterdir():
            for extra in run_dir.glob("*.json"):
                if extra.name != "run.json":
                    extra.unlink()
        (out / "summary.json").write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=1, default=str))
        shutil.make_archive(str(out / "runs"), "gztar", out / "runs")


if __name__ == "__main__":
    main()
