"""The interfaces other modules build on: precision and backend names, a backend's precision rules, an Engine that
releases its session when closed, and the one description of a Run's metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

import workbench as wb
from workbench.analysis.compare import compare_metrics, format_metrics
from workbench.backends import get_backend
from workbench.config import BackendName, BuildConfig, Precision
from workbench.results import metrics as metrics_module
from workbench.results.metrics import METRICS, Metric, metric, register, summary_rows
from workbench.results.run import Accuracy, LatencyStats, Memory, OutputAgreement, Run


def test_names_are_strings_that_json_and_fstrings_write_plainly():
    config = BuildConfig(precision="FP16")
    assert config.precision is Precision.FP16 and config.precision == "fp16" and f"{config.precision}" == "fp16"
    assert json.loads(json.dumps(config.to_dict()))["precision"] == "fp16"
    assert BuildConfig.from_dict(json.loads(json.dumps(config.to_dict()))).key() == config.key()
    assert [p for p in Precision if p.quantized] == ["int8", "fp8"]
    assert [p for p in Precision if p.in_graph] == ["fp16", "bf16", "int8", "fp8"]
    assert BackendName.parse("TensorRT-RTX") is BackendName.TENSORRT_RTX
    with pytest.raises(wb.WorkbenchError, match="Unknown precision 'fp64': choose one of fp32, tf32"):
        BuildConfig(precision="fp64")


def test_tensorrt_precision_rules_follow_the_device_given():
    trt = get_backend("tensorrt")
    t4 = trt.precision_support({"name": "T4", "compute_capability": "7.5"})
    h100 = trt.precision_support({"name": "H100", "compute_capability": "9.0"})
    assert t4["fp32"] == (True, "")
    assert not t4["bf16"][0] and "T4 (compute 7.5) lacks BF16: it needs compute 8.0" in t4["bf16"][1]
    assert not t4["fp8"][0] and "8.9" in t4["fp8"][1]
    assert h100["tf32"] == (True, "")
    graph_ok = h100["int8"][0]
    assert graph_ok == h100["fp8"][0] == h100["bf16"][0]  # the common rule (ModelOpt) decides the graph precisions
    assert set(t4) == set(wb.PRECISIONS)


def test_onnxruntime_on_a_cpu_cannot_run_bf16_and_says_why():
    ort = get_backend("onnxruntime")
    if "CUDAExecutionProvider" in ort.providers():
        pytest.skip("this ONNX Runtime has a CUDA provider")
    support = ort.precision_support()
    assert support["fp32"] == (True, "") and support["tf32"] == (True, "")
    assert not support["bf16"][0] and support["bf16"][1]


def test_engine_close_releases_the_session(mlp_path):
    model = wb.load_model(mlp_path)
    backend = get_backend("onnxruntime")
    feed = {"x": np.ones((2, 4), np.float32)}
    with backend.build(wb.make_variant(model, "fp32"), BuildConfig()) as engine:
        assert set(engine.infer(feed)) == {o.name for o in model.outputs}
    assert engine.closed and engine.handle is None and engine.infer is None
    engine.close()  # idempotent
    with pytest.raises(wb.WorkbenchError, match="is closed: build it again"):
        backend.profile(engine, feed, BuildConfig())


def _run(**changes) -> Run:
    times = [1.0, 1.2, 1.1, 0.9]
    base = dict(backend="onnxruntime", layers=[], config=BuildConfig(precision="int8"), variant={"precision": "int8"},
                model={"name": "m"}, latency=LatencyStats.from_times(times, batch=4), latency_ms=times,
                memory=Memory(weights_bytes=2048), environment={"cpu": "Test CPU"},
                accuracy=Accuracy(samples=10, outputs=(OutputAgreement("y", 0.5, 0.1, 0.01, 0.99, 0.9),)))
    return Run(**{**base, **changes})


def test_one_description_drives_the_summary_and_the_comparison():
    run = _run()
    rows = dict(summary_rows(run))
    assert rows["Latency mean (ms)"] == f"{run.latency.mean_ms:.4f}"
    assert rows["Throughput (samples/s)"] == f"{run.latency.throughput_qps * 4:,.1f}"
    assert rows["Weights"] == "2.0 KiB" and rows["Top-1 agreement with FP32 (%)"] == "90.00"
    assert rows["Precision"] == "int8" and rows["Device"] == "Test CPU"
    assert "Engine device memory" not in rows and "Speed-up vs A (mean latency)" not in rows
    html = run._repr_html_()
    assert "Latency mean (ms)" in html and run.id in html
    shown = format_metrics(compare_metrics([run, _run()]))
    assert shown.loc["Latency mean (ms)", "A"] == rows["Latency mean (ms)"]
    assert shown.loc["Speed-up vs A (mean latency)", "B"].endswith("×")
    assert "Run" not in shown.index  # the legend names the runs
    assert {m.better for m in METRICS} == {None, "lower", "higher"}
    assert metric("mean_ms").better == "lower" and metric("throughput_qps").better == "higher"


def test_a_registered_metric_appears_everywhere(monkeypatch):
    monkeypatch.setattr("workbench.results.metrics.METRICS", list(METRICS))
    register(Metric("extra_ms", "Something new", "ms", lambda v: f"{v:.1f}", "lower", lambda r: 3.0),
             after="p99_ms")
    keys = [m.key for m in metrics_module.METRICS]
    assert keys[keys.index("p99_ms") + 1] == "extra_ms"
    assert ("Something new (ms)", "3.0") in summary_rows(_run())
    with pytest.raises(ValueError, match="already described"):
        register(Metric("extra_ms", "Again", "", str, None, lambda r: 1))
