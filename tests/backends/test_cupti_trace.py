"""Attribution on real records: CUPTI traces and ONNX Runtime profiles recorded together on an H100 (2026-12-07,
NVIDIA H100 80GB HBM3, driver 580.159.04, onnxruntime-gpu 1.31.1 CUDA provider, cupti-python 13.0.1) by
``workbench.backends.cupti.Recorder`` around profiled inferences after 5 warm-ups (``tests/data/cupti/``: the node
and session events of the profile, and the trace with its clock pairs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from workbench.backends.cupti import Trace, Window, attribute
from workbench.backends.onnxruntime_profile import gpu_attribution, node_events, profile_layers

DATA = Path(__file__).resolve().parents[1] / "data" / "cupti"


def _load(name):
    d = json.loads((DATA / f"{name}.json").read_text())
    return d, Trace.from_dict(d["trace"])


@pytest.mark.parametrize(
    ("name", "kernels", "host_only"),
    [("trace_digits_cnn_b64", 13, {"Flatten"}), ("trace_transformer_encoder_b8", 47, {"Shape", "Reshape", "Concat"})],
)
def test_every_kernel_of_a_real_trace_goes_to_a_node(name, kernels, host_only):
    d, trace = _load(name)
    nodes, gpu = gpu_attribution(d["events"], d["profiling_start_ns"], trace, d["runs"])
    table = profile_layers(d["events"], d["runs"], warmup_runs=d["warmup_runs"], gpu=nodes)
    assert gpu.inferences == d["runs"] and gpu.kernels == kernels
    assert gpu.matched_share == 1.0 and gpu.unattributed_ms == 0.0
    # the clocks read side by side were within microseconds of the fitted alignment
    assert abs(gpu.clock_shift_us) < 50
    assert table["time_ms"].sum() == pytest.approx(gpu.layers_ms) == pytest.approx(gpu.busy_ms)
    # each inference's own busy time gives the busy figure an interval: the GPU repeats itself within 3%
    assert gpu.busy_low_ms < gpu.busy_ms < gpu.busy_high_ms and gpu.busy_high_ms - gpu.busy_low_ms < 0.03 * gpu.busy_ms
    # shape arithmetic ONNX Runtime keeps on the host launches nothing; every convolution, GEMM, MatMul launches
    idle = table[table["kernels"] == 0]
    assert host_only <= set(idle["type"]) and not {"Conv", "Gemm", "MatMul"} & set(idle["type"])
    assert (table.loc[table["type"].isin(["Conv", "Gemm", "MatMul"]), "time_ms"] > 0).all()


@pytest.mark.parametrize("name", ["trace_digits_cnn_b64", "trace_transformer_encoder_b8"])
def test_the_gpu_runs_the_kernels_in_the_order_the_nodes_launched_them(name):
    # one stream: the GPU executes work in launch order, so the node each kernel was given to never goes back in
    # the model's execution order within an inference — an independent check of the attribution
    d, trace = _load(name)
    events = node_events(d["events"])
    start = d["profiling_start_ns"]
    windows = [
        Window(i, ev["tid"], start + ev["ts"] * 1000, start + (ev["ts"] + ev["dur"]) * 1000)
        for i, ev in enumerate(events)
    ]
    runs = [
        (start + ev["ts"] * 1000, start + (ev["ts"] + ev["dur"]) * 1000)
        for ev in d["events"]
        if ev["cat"] == "Session" and ev["name"] == "model_run"
    ][-d["runs"] :]
    found = attribute(trace, windows, runs)
    assert len(found.window_of) == len(found.in_runs) == len(trace.activities)
    for lo, hi in runs:
        launched = [a for a in found.in_runs if lo <= windows[found.window_of[a.correlation_id]].start_ns < hi]
        starts = [
            windows[found.window_of[a.correlation_id]].start_ns for a in sorted(launched, key=lambda a: a.start_ns)
        ]
        assert starts == sorted(starts) and len(starts) == len(found.in_runs) // d["runs"]


def test_a_clock_pair_read_hundreds_of_microseconds_off_gives_the_same_attribution():
    d, trace = _load("trace_transformer_encoder_b8")
    off = dataclasses.replace(trace, clock_pairs=tuple((c + 300_000, h) for c, h in trace.clock_pairs))
    nodes, gpu = gpu_attribution(d["events"], d["profiling_start_ns"], trace, d["runs"])
    nodes_off, gpu_off = gpu_attribution(d["events"], d["profiling_start_ns"], off, d["runs"])
    assert nodes_off == nodes and gpu_off.busy_ms == gpu.busy_ms
