"""CUPTI's GPU records given to the ONNX Runtime nodes that launched them (workbench.backends.cupti).

The records are built field by field as CUPTI's activity API writes them (``CUpti_ActivityKernel``: start, end,
correlationId, streamId, name; ``CUpti_ActivityAPI``: start, end, correlationId, threadId, cbid), on CUPTI's clock,
which is offset from the host clock ONNX Runtime's profiler reads. A real trace recorded on an H100 is checked in
``test_cupti_trace.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.cupti import ApiCall, GpuActivity, Trace, Window, attribute, union_ns
from workbench.backends.onnxruntime_profile import gpu_attribution, profile_layers

OFFSET = 1_700_000_000_000_000_000 - 5_000_000_000  # CUPTI's clock minus the host's: any constant
THREAD = 4242


def _trace(launches, pair_error_ns=0):
    """``launches``: (host launch time ns, GPU start ns after launch, duration ns, name, kind) -> a Trace."""
    acts, calls = [], []
    for corr, (host, delay, dur, name, kind) in enumerate(launches, start=100):
        calls.append(ApiCall(corr, THREAD, host + OFFSET, host + OFFSET + 3_000, "cudaLaunchKernel"))
        start = host + OFFSET + delay
        acts.append(GpuActivity(kind, name, start, start + dur, corr, 7, 0))
    # an API call that launched nothing (a synchronisation) has a correlation id no activity carries
    calls.append(ApiCall(999, THREAD, OFFSET, OFFSET + 10, "cudaStreamSynchronize"))
    return Trace(tuple(acts), tuple(calls), ((OFFSET + pair_error_ns + 1_000_000, 1_000_000),))


def test_kernels_go_to_the_node_that_launched_them_even_when_they_run_after_its_window():
    # two nodes; each launches kernels that execute on the GPU long after the node's host window has ended
    windows = [Window(0, THREAD, 10_000, 30_000), Window(1, THREAD, 30_000, 50_000)]
    trace = _trace(
        [
            (12_000, 200_000, 40_000, "conv_kernel", "kernel"),
            (20_000, 240_000, 10_000, "bias_kernel", "kernel"),
            (35_000, 250_000, 5_000, "relu_kernel", "kernel"),
        ]
    )
    found = attribute(trace, windows)
    assert found.nodes[0].ns == 50_000 and found.nodes[0].kernels == 2
    assert found.nodes[0].names == {"conv_kernel": 40_000, "bias_kernel": 10_000}
    assert found.nodes[1].ns == 5_000 and found.nodes[1].names == {"relu_kernel": 5_000}
    assert found.unattributed == () and found.matched_share == 1.0


def test_a_clock_pair_read_off_by_microseconds_is_corrected_by_the_fit():
    # the pairs say the clocks are 8 µs further apart than they are: launches near a node's edge would move to
    # the neighbouring node; the fitted shift puts every launch back inside its own node
    windows = [Window(i, THREAD, 10_000 + 20_000 * i, 30_000 + 20_000 * i) for i in range(6)]
    launches = [(11_000 + 20_000 * i, 50_000, 1_000 * (i + 1), f"k{i}", "kernel") for i in range(6)]
    launches += [(28_500 + 20_000 * i, 60_000, 500, f"late{i}", "kernel") for i in range(6)]
    found = attribute(_trace(launches, pair_error_ns=8_000), windows)
    for i in range(6):
        assert set(found.nodes[i].names) == {f"k{i}", f"late{i}"}, i
    assert abs(found.shift_ns - OFFSET) <= 2_000


def test_work_outside_every_node_is_reported_not_given_to_a_layer():
    windows = [Window(0, THREAD, 10_000, 20_000)]
    trace = _trace([(15_000, 1_000, 3_000, "k", "kernel"), (40_000, 1_000, 1_000, "memcpy HtoD", "memcpy")])
    found = attribute(trace, windows, runs=[(0, 100_000)])
    assert found.nodes[0].ns == 3_000
    assert [a.name for a in found.unattributed] == ["memcpy HtoD"]
    assert found.matched_share == pytest.approx(0.75)


def test_only_work_launched_inside_the_runs_counts():
    windows = [Window(0, THREAD, 10_000, 20_000), Window(1, THREAD, 110_000, 120_000)]
    trace = _trace([(15_000, 1_000, 3_000, "warm", "kernel"), (115_000, 1_000, 2_000, "timed", "kernel")])
    found = attribute(trace, windows, runs=[(100_000, 200_000)])
    assert list(found.nodes) == [1] and [a.name for a in found.in_runs] == ["timed"]


def test_a_body_node_inside_a_control_flow_window_gets_its_own_kernels():
    # an If node's window holds its body's node window; the kernel launched in the body belongs to the body node,
    # one launched by the If itself after its body ended belongs to the If
    windows = [Window(0, THREAD, 10_000, 60_000), Window(1, THREAD, 20_000, 30_000)]
    trace = _trace([(25_000, 1_000, 4_000, "body", "kernel"), (40_000, 1_000, 1_000, "if_copy", "memcpy")])
    found = attribute(trace, windows)
    assert found.nodes[1].names == {"body": 4_000}
    assert found.nodes[0].names == {"if_copy": 1_000} and found.nodes[0].kernels == 0


def test_busy_time_counts_overlapping_kernels_once():
    acts = [
        GpuActivity("kernel", "a", 0, 100, 1),
        GpuActivity("kernel", "b", 50, 150, 2),  # concurrent with a on another stream
        GpuActivity("memset", "memset", 300, 310, 3),
    ]
    assert union_ns(acts) == 160


def test_the_trace_round_trips_through_its_file_form(tmp_path):
    trace = _trace([(15_000, 1_000, 3_000, "k", "kernel")])
    trace.save(tmp_path / "t.json")
    import json

    assert Trace.from_dict(json.loads((tmp_path / "t.json").read_text())) == trace


def _ort_events(nodes_per_run, runs, dur_us=10):
    """ONNX Runtime profile events (µs from the profile's start) for ``runs`` inferences of the nodes."""
    events, ts = [], 100
    for _ in range(runs):
        start = ts
        for name, op in nodes_per_run:
            events.append(
                {"cat": "Node", "pid": 1, "tid": THREAD, "dur": dur_us, "ts": ts, "ph": "X",
                 "name": f"{name}_kernel_time", "args": {"op_name": op, "provider": "CUDAExecutionProvider"}}
            )  # fmt: skip
            ts += dur_us + 2
        events.append(
            {"cat": "Session", "pid": 1, "tid": THREAD, "dur": ts - start, "ts": start, "ph": "X",
             "name": "model_run", "args": {}}
        )  # fmt: skip
        ts += 50
    return events


def test_layer_table_times_are_gpu_times_with_host_times_and_kernels_beside_them():
    start_ns = 1_000_000_000
    nodes = [("conv", "Conv"), ("shape", "Shape"), ("relu", "Relu")]
    warmup, runs = 1, 3
    events = _ort_events(nodes, warmup + runs)
    launches = []
    for ev in events:
        if ev["cat"] != "Node" or ev["name"].startswith("shape"):
            continue  # Shape runs on the host: it launches nothing
        host = start_ns + ev["ts"] * 1000 + 2_000
        if ev["name"].startswith("conv"):
            launches += [(host, 5_000, 30_000, "sm90_gemm", "kernel"), (host + 500, 35_000, 6_000, "bias", "kernel")]
        else:
            launches.append((host, 50_000, 4_000, "relu_kernel", "kernel"))
    trace = _trace(launches)
    node_gpu, gpu = gpu_attribution(events, start_ns, trace, runs)
    table = profile_layers(events, runs, warmup_runs=warmup, gpu=node_gpu).set_index("ort_node")
    assert table.loc["conv", "time_ms"] == pytest.approx(0.036)
    assert table.loc["conv", "kernels"] == 2 and table.loc["conv", "kernel_names"] == ["sm90_gemm", "bias"]
    assert table.loc["conv", "host_ms"] == pytest.approx(0.010)
    assert table.loc["shape", "time_ms"] == 0 and table.loc["shape", "kernels"] == 0
    assert table.loc["relu", "time_ms"] == pytest.approx(0.004)
    # the warm-up inference's work is not in the per-inference figures
    assert gpu.inferences == runs and gpu.kernels == 3
    assert gpu.layers_ms == pytest.approx(0.040) and gpu.busy_ms == pytest.approx(0.040)
    assert gpu.unattributed_ms == 0 and gpu.matched_share == 1.0
    assert np.isclose(table["time_ms"].sum(), gpu.layers_ms)
