"""Comparing runs: metrics side by side, layers aligned by name and ONNX nodes, the Pareto front, the charts."""

from __future__ import annotations

import numpy as np
import pytest
from support import DATA

import workbench as wb
from workbench import charts
from workbench.analysis.compare import (
    align_layers,
    compare,
    compare_metrics,
    error_metric,
    format_metrics,
    layer_diff,
    pareto_points,
    run_labels,
    run_tags,
)
from workbench.errors import WorkbenchError
from workbench.views.report import write_comparison
from workbench.results.run import Accuracy, LatencyStats, Memory, OutputAgreement, Run


def layer(name, nodes, time_ms, **extra):
    return {
        "name": name,
        "type": extra.pop("type", "Op"),
        "time_ms": time_ms,
        "onnx_nodes": nodes,
        "activation_bytes": extra.pop("activation_bytes", 100),
        **extra,
    }


def make_run(precision, layers, mean_ms, *, label_accuracy=None, top1=None, max_abs=None, name=None):
    outputs = (
        () if top1 is None and max_abs is None else (OutputAgreement("logits", max_abs or 0.0, 0.0, 0.0, 1.0, top1),)
    )
    accuracy = (
        None
        if not outputs and label_accuracy is None
        else Accuracy(samples=100, outputs=outputs, label_accuracy=label_accuracy)
    )
    times = list(np.random.default_rng(0).normal(mean_ms, mean_ms / 50, 200))
    return Run(
        backend="onnxruntime",
        layers=layers,
        config=wb.BuildConfig(precision=precision),
        variant={"precision": precision},
        model={"name": "m"},
        latency=LatencyStats.from_times(times),
        latency_ms=times,
        accuracy=accuracy,
        memory=Memory(weights_bytes=1000, plan_bytes=2000),
        name=name or f"m {precision}",
    )


# A fused FP32 engine and an INT8 one with other fusion boundaries, Q/DQ nodes and a layer of its own.
FP32_LAYERS = [
    layer("Conv_0 + Relu_1", ["Conv_0", "Relu_1"], 0.50, precision="fp32"),
    layer("Gemm_2", ["Gemm_2"], 0.20, precision="fp32"),
    layer("Softmax_3", ["Softmax_3"], 0.05, precision="fp32"),
]
INT8_LAYERS = [
    layer("Conv_0", ["DQ_w0", "Conv_0"], 0.15, precision="int8"),
    layer("Relu_1", ["Relu_1", "Q_1"], 0.05, precision="int8"),
    layer("Reformat", [], 0.02, precision="fp32"),
    layer("Gemm_2 quantized", ["DQ_1", "Gemm_2"], 0.08, precision="int8"),
    layer("Softmax_3", ["Softmax_3"], 0.05, precision="fp32"),
]


@pytest.fixture
def pair():
    return [make_run("fp32", FP32_LAYERS, 1.0, top1=None), make_run("int8", INT8_LAYERS, 0.4, top1=0.98, max_abs=0.3)]


def test_layers_align_by_onnx_nodes_and_name(pair):
    aligned = align_layers(pair)
    groups = {
        g: {t: list(rows["layers"].iloc[0]) for t, rows in grp.groupby("tag")} for g, grp in aligned.groupby("group")
    }
    assert groups == {
        0: {"A": ["Conv_0 + Relu_1"], "B": ["Conv_0", "Relu_1"]},  # one fused layer = two INT8 layers
        1: {"A": ["Gemm_2"], "B": ["Gemm_2 quantized"]},  # renamed, same ONNX node
        2: {"A": ["Softmax_3"], "B": ["Softmax_3"]},
        3: {"B": ["Reformat"]},  # only in the INT8 engine
    }
    conv = aligned[(aligned["group"] == 0) & (aligned["tag"] == "B")].iloc[0]
    assert conv["time_ms"] == pytest.approx(0.20) and conv["precision"] == "int8"
    assert conv["onnx_nodes"] == ["Conv_0", "Relu_1", "DQ_w0", "Q_1"]


def test_layer_diff_has_times_deltas_and_ratios(pair):
    diff = layer_diff(pair)
    # a name all runs share, else the ONNX nodes as the baseline lists them, and how many the group covers
    assert list(diff["layer"]) == ["Conv_0 … Relu_1 (4 ONNX nodes)", "Gemm_2 (2 ONNX nodes)", "Softmax_3", "Reformat"]
    row = diff.iloc[0]
    assert row["ms A"] == pytest.approx(0.5) and row["ms B"] == pytest.approx(0.2)
    assert row["Δ ms B−A"] == pytest.approx(-0.3) and row["ratio B/A"] == pytest.approx(0.4)
    assert row["layers B"] == "Conv_0, Relu_1" and row["precision A"] == "fp32"
    reformat = diff.iloc[3]
    assert np.isnan(reformat["ms A"]) and reformat["ms B"] == pytest.approx(0.02) and np.isnan(reformat["Δ ms B−A"])


def test_alignment_of_real_runs_keeps_every_layer_and_node_once():
    """ONNX Runtime with graph optimizations (fused) against without (one layer per node), on the ResNet sample."""
    model = DATA / "resnet_mini.onnx"
    fast = wb.BuildConfig(iterations=3, warmup_ms=0)
    fused = wb.profile(model, backend="onnxruntime", config=fast)
    plain = wb.profile(model, backend="onnxruntime", config=fast.replace(ort_graph_optimization="disable"))
    aligned = align_layers([fused, plain])
    for tag, run in (("A", fused), ("B", plain)):
        mine = aligned[aligned["tag"] == tag]
        assert sorted(n for names in mine["layers"] for n in names) == sorted(run.layers["name"])
        assert mine["time_ms"].sum() == pytest.approx(run.layers["time_ms"].sum())
    per_group = aligned.drop_duplicates("group")["onnx_nodes"]
    nodes = [n for group in per_group for n in group]
    assert len(nodes) == len(set(nodes)), "an ONNX node is in one group only"
    assert len(plain.layers) == 49 and aligned["group"].nunique() < len(plain.layers)  # fusions became groups
    both = aligned.groupby("group")["tag"].nunique()
    assert (both == 2).sum() >= 20, "the convolutions of both runs line up"


def test_metrics_side_by_side(pair):
    metrics = compare_metrics(pair)
    assert list(metrics.columns) == ["A", "B"]
    assert metrics.loc["Precision"].tolist() == ["fp32", "int8"]
    speedup = np.median(pair[0].latency_ms) / np.median(pair[1].latency_ms)  # 2.5×, far beyond the noise
    baseline, text = metrics.loc["Speed-up vs A (median, 95% CI)"].tolist()
    assert baseline == "baseline" and text.startswith(f"{speedup:.2f}× faster (")
    assert metrics.loc["Top-1 agreement with FP32 (%)", "B"] == pytest.approx(98.0)
    assert metrics.loc["Top-1 agreement with FP32 (%)", "A"] is None
    assert "Engine device memory" not in metrics.index  # no run has it
    shown = format_metrics(metrics)
    assert shown.loc["Weights", "A"] == "1000 B" and shown.loc["Top-1 agreement with FP32 (%)", "A"] == "–"


def test_pareto_front_keeps_runs_nothing_beats():
    runs = [
        make_run("fp32", FP32_LAYERS, 1.0, label_accuracy=0.98),
        make_run("int8", INT8_LAYERS, 0.4, label_accuracy=0.97),
        make_run("fp16", FP32_LAYERS, 0.7, label_accuracy=0.90),  # slower AND worse than int8
        make_run("tf32", FP32_LAYERS, 0.3, label_accuracy=0.80),
    ]
    points = pareto_points(runs)
    assert points.attrs["metric"] == "label_error"
    assert points["error"].tolist() == pytest.approx([2.0, 3.0, 10.0, 20.0])
    assert points["front"].tolist() == [True, True, False, True]


def test_error_measure_falls_back_and_fp32_without_a_check_is_the_reference(pair):
    assert error_metric(pair) == "top1_disagreement"
    points = pareto_points(pair)
    assert points["error"].tolist() == pytest.approx([0.0, 2.0])
    unchecked = make_run("int8", INT8_LAYERS, 0.5)
    points = pareto_points([*pair, unchecked])
    assert np.isnan(points["error"].iloc[2]) and not points["front"].iloc[2]
    with pytest.raises(WorkbenchError, match="Unknown error measure"):
        pareto_points(pair, metric="rmse")


def test_tags_and_labels_stay_unique():
    runs = [make_run("fp32", FP32_LAYERS, 1.0, name="same"), make_run("fp32", FP32_LAYERS, 1.1, name="same")]
    assert run_tags(range(28))[-3:] == ["Z", "AA", "AB"]
    labels = run_labels(runs)
    assert len(set(labels)) == 2 and all(r.id in label for r, label in zip(runs, labels))


def test_comparing_needs_two_runs(pair):
    with pytest.raises(WorkbenchError, match="at least 2 runs"):
        compare(pair[:1])


def test_comparison_text_and_html(pair, tmp_path):
    result = compare(pair)
    text = result.to_text()
    assert "A = m fp32" in text and "B = m int8" in text and "Speed-up vs A" in text
    assert "Conv_0 … Relu_1 (4 ONNX nodes)" in text and "Pareto front" in text
    assert result.changed_layers(1)["layer"].tolist() == ["Conv_0 … Relu_1 (4 ONNX nodes)"]  # the largest |Δ|
    page = write_comparison(result, tmp_path / "compare.html").read_text()
    assert page.count("Plotly.newPlot") == 5 and "Per-layer diff" in page


def test_comparison_charts(pair):
    lat = charts.compare_latency(pair)
    assert [t.name for t in lat.data] == ["p50", "mean", "p99"]
    assert list(lat.data[1].y) == pytest.approx([r.latency.mean_ms for r in pair])
    layers = charts.compare_layers(pair)
    assert [t.name for t in layers.data] == run_labels(pair)
    a = layers.data[0]
    assert dict(zip(a.y, a.x))["Conv_0 … Relu_1 (4 ONNX nodes) #0"] == pytest.approx(0.5)
    pareto = charts.pareto(pair)
    assert pareto.data[0].name == "Pareto front" and list(pareto.data[0].x) == pytest.approx(
        sorted(r.latency.mean_ms for r in pair)
    )
    memory = charts.compare_memory(pair)
    assert {t.name for t in memory.data} == {"weights", "plan / model size"}


def test_charts_say_when_there_is_nothing_to_plot():
    bare = [Run(backend="onnxruntime", layers=[]), Run(backend="onnxruntime", layers=[])]
    for fig in (charts.compare_latency(bare), charts.compare_layers(bare), charts.compare_memory(bare)):
        assert not fig.data and fig.layout.annotations
