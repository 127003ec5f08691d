"""Charts are pure functions of a Run; reports are self-contained HTML."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from workbench import charts
from workbench.views.report import report_html
from workbench.results.run import LatencyStats, Memory, Run


def synthetic_run(n_layers=60, seed=0):
    rng = np.random.default_rng(seed)
    types = ["Conv", "Relu", "MatMul", "Add"]
    rows = [
        {
            "name": f"layer_{i}",
            "type": types[i % 4],
            "precision": "fp32",
            "time_ms": float(t),
            "median_ms": float(t),
            "activation_bytes": int(a),
            "weight_bytes": int(w),
            "onnx_nodes": [f"n{i}"],
        }
        for i, (t, a, w) in enumerate(
            zip(rng.uniform(0.01, 1, n_layers), rng.integers(1, 1 << 20, n_layers), rng.integers(0, 1 << 16, n_layers))
        )
    ]
    times = rng.uniform(5, 6, 200)
    return Run(
        backend="onnxruntime",
        layers=pd.DataFrame(rows),
        latency=LatencyStats.from_times(times),
        latency_ms=tuple(times),
        memory=Memory(weights_bytes=123),
        model={"name": "synthetic"},
    )


def test_layer_timing_top_n_plus_other_keeps_total():
    run = synthetic_run()
    fig = charts.layer_timing(run, top=10)
    names = [y for trace in fig.data for y in trace.y]
    xs = [x for trace in fig.data for x in trace.x]
    assert len(names) == 10  # "other" is not a bar: it would set the scale
    slowest = run.layers.sort_values("time_ms", ascending=False)
    assert list(fig.layout.yaxis.categoryarray)[::-1] == charts.layer_labels(slowest["name"].head(10))
    rest = float(slowest["time_ms"].iloc[10:].sum())
    assert sum(xs) == pytest.approx(float(slowest["time_ms"].head(10).sum()))
    assert f"the other 50 layers, {rest:.4f} ms" in fig.layout.title.text
    assert "ms" in fig.layout.xaxis.title.text


def test_time_by_type_sums_per_type():
    run = synthetic_run()
    fig = charts.time_by_type(run)
    got = dict(zip(fig.data[0].y, fig.data[0].x))
    expected = run.layers.groupby("type")["time_ms"].sum()
    for t, v in expected.items():
        assert got[t] == pytest.approx(v)


def test_layer_memory_units_and_split():
    run = synthetic_run()
    fig = charts.layer_memory(run, top=5)
    assert {t.name for t in fig.data} == {"activations (outputs)", "weights"}
    assert "MiB" in fig.layout.xaxis.title.text or "KiB" in fig.layout.xaxis.title.text


def test_latency_histogram_marks_percentiles():
    run = synthetic_run()
    fig = charts.latency_histogram(run)
    assert len(fig.data[0].x) == 200
    texts = [a.text for a in fig.layout.annotations]
    assert any(t.startswith("p99") for t in texts)


def test_charts_of_a_run_without_timing_say_so():
    run = Run(backend="tensorrt", layers=pd.DataFrame([{"name": "a", "type": "Conv"}]))
    fig = charts.layer_timing(run)
    assert "no per-layer timing" in fig.layout.annotations[0].text


def test_report_is_self_contained():
    html = report_html(synthetic_run())
    assert html.count("<script") >= 4 and not re.search(r"<script[^>]+src=", html)
    assert "Key metrics" in html and "layer_0" in html


def test_latency_histogram_leaves_far_outliers_out_and_says_so():
    run = synthetic_run()
    times = list(run.latency_ms) + [500.0]  # one stalled inference among ~5 ms ones
    stalled = run.replace(latency_ms=tuple(times), latency=LatencyStats.from_times(times))
    fig = charts.latency_histogram(stalled)
    assert len(fig.data[0].x) == 200 and max(fig.data[0].x) < 10
    assert "1 outlier up to 500.000 ms not shown" in fig.layout.title.text


def test_layer_ranking_by_median_puts_an_outlier_layer_where_its_median_says():
    """One slow call made a Flatten 94% of digits_cnn's time by its mean (median 0.002 ms). Ranked by the median,
    it sits where its median puts it, with its p90 as the whisker and its mean labelled as an outlier; asked for
    the mean, the chart still draws the mean."""
    from workbench.backends.onnxruntime_profile import profile_layers

    def events(node, op, durations_us):
        return [
            {"cat": "Node", "name": f"{node}_kernel_time", "dur": d, "ts": 1000 * i, "args": {"op_name": op}}
            for i, d in enumerate(durations_us)
        ]

    calls = 10
    flatten = [2] * (calls - 1) + [5000]  # µs: 0.002 ms typically, one 5 ms stall
    conv = [400 + 10 * i for i in range(calls)]  # 0.40..0.49 ms
    gemm = [100] * calls
    layers = profile_layers(
        events("conv", "Conv", conv) + events("flat", "Flatten", flatten) + events("fc", "Gemm", gemm), calls
    )
    run = Run(backend="onnxruntime", layers=layers, model={"name": "outlier"})
    by_name = run.layers.set_index("name")
    assert by_name.loc["flat", "median_ms"] == pytest.approx(0.002)
    assert by_name.loc["flat", "time_ms"] == pytest.approx((9 * 0.002 + 5) / 10)
    assert list(run.layers["outlier"]) == [False, True, False]  # conv, flat, fc: only the stalled layer

    fig = charts.layer_timing(run)
    order = list(fig.layout.yaxis.categoryarray)[::-1]
    assert order == ["conv", "fc", "flat"]
    drawn = {y: (x, t) for trace in fig.data for y, x, t in zip(trace.y, trace.x, trace.text)}
    assert drawn["flat"][0] == pytest.approx(0.002) and drawn["flat"][1] == "outlier: mean 0.5018 ms"
    conv_share = next(t for t in fig.data if "conv" in t.y).customdata[0][0]
    assert conv_share == pytest.approx(100 * 0.445 / (0.445 + 0.002 + 0.1))  # shares of the summed medians
    conv_bar = next(t for t in fig.data if "conv" in t.y)
    assert conv_bar.error_x.array[0] == pytest.approx(np.percentile(conv, 90) / 1000 - 0.445)
    by_mean = charts.layer_timing(run, stat="mean")
    assert list(by_mean.layout.yaxis.categoryarray)[::-1] == ["flat", "conv", "fc"]
