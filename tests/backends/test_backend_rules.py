"""What a backend owns: which precisions it can build where (and why not), and an Engine that releases its session
or device memory when closed."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.backends import get_backend
from workbench.config import BuildConfig


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
