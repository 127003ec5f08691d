"""Precision variants of models with decomposed LayerNorms load in ONNX Runtime (PP-OCRv4 rec's failure, small).

ONNX Runtime (CPU) merges equal FP16 constants of two LayerNorms, wraps FP16 nodes it has no kernel for in casts of
its own, and its SimplifiedLayerNormFusion then removes a cast the other LayerNorm still reads: "Attempting to get
index by a name which does not exist: InsertedPrecisionFreeCast_…". The variant keeps the pattern in FP32.
"""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.backends.onnxruntime import OnnxRuntimeBackend, load_hint
from workbench.cli import _config, build_parser
from workbench.config import BuildConfig
from workbench.model.onnx_model import load_model
from workbench.precision.variant import layernorm_nodes, make_variant


def _two_layernorms(hidden=16):
    """MatMul -> LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) twice, constants as
    Constant nodes of equal values, as PaddlePaddle exports them."""
    rng = np.random.default_rng(0)
    node = helper.make_node
    nodes, weights, x = [], [], "x"
    for i in range(2):
        p = f"ln{i}/"
        weights.append(
            numpy_helper.from_array((rng.standard_normal((hidden, hidden)) * 0.3).astype(np.float32), p + "w")
        )
        for name, value in (("two", 2.0), ("eps", 1e-5), ("gamma", np.ones(hidden)), ("beta", np.zeros(hidden))):
            nodes.append(
                node(
                    "Constant",
                    [],
                    [p + name],
                    name=p + name + "_c",
                    value=numpy_helper.from_array(np.asarray(value, np.float32), p + name),
                )
            )
        nodes += [
            node("MatMul", [x, p + "w"], [p + "h"], name=p + "proj"),
            node("ReduceMean", [p + "h"], [p + "mu"], name=p + "mean", axes=[-1]),
            node("Sub", [p + "h", p + "mu"], [p + "d"], name=p + "sub"),
            node("Pow", [p + "d", p + "two"], [p + "d2"], name=p + "pow"),
            node("ReduceMean", [p + "d2"], [p + "var"], name=p + "var", axes=[-1]),
            node("Add", [p + "var", p + "eps"], [p + "ve"], name=p + "add_eps"),
            node("Sqrt", [p + "ve"], [p + "sd"], name=p + "sqrt"),
            node("Div", [p + "d", p + "sd"], [p + "nrm"], name=p + "div"),
            node("Mul", [p + "nrm", p + "gamma"], [p + "sc"], name=p + "scale"),
            node("Add", [p + "sc", p + "beta"], [p + "y"], name=p + "shift"),
        ]
        x = p + "y"
    graph = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, hidden])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 8, hidden])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return load_model(model.SerializeToString(), name="two_layernorms")


@pytest.fixture(scope="module")
def model():
    return _two_layernorms()


def _loads(variant) -> bool:
    try:
        ort.InferenceSession(str(variant.path), providers=["CPUExecutionProvider"])
        return True
    except Exception:  # noqa: BLE001 - ORT's own exception types
        return False


def test_layernorm_patterns_are_found(model):
    names = layernorm_nodes(model.proto)
    assert sorted(names) == sorted(
        f"ln{i}/{n}" for i in range(2) for n in ("mean", "sub", "pow", "var", "add_eps", "sqrt", "div")
    )


def test_fp16_variant_keeps_layernorm_in_fp32_and_loads_at_full_optimization(model, tmp_path):
    variant = make_variant(model, "fp16", cache_dir=tmp_path)
    assert variant.options["layernorm_fp32"] is True
    assert "14 nodes of decomposed LayerNorms kept in FP32" in variant.changes["layernorm_fp32"]
    assert _loads(variant)  # ORT's default level, "all": fusions included
    engine = OnnxRuntimeBackend().build(variant, BuildConfig(precision="fp16"))
    assert engine.info["graph_optimization"] == "all" and engine.info["graph_optimization_fallback"] == ""


def test_a_split_layernorm_falls_back_to_basic_optimization_with_the_reason(model, tmp_path):
    variant = make_variant(model, "fp16", cache_dir=tmp_path, layernorm_fp32=False)
    upstream_bug = not _loads(variant)  # ONNX Runtime 1.24 fails here; the backend must cope either way
    engine = OnnxRuntimeBackend().build(variant, BuildConfig(precision="fp16", iterations=2, warmup_ms=0))
    assert engine.info["graph_optimization"] == ("basic" if upstream_bug else "all")
    if upstream_bug:
        reason = engine.info["graph_optimization_fallback"]
        assert "graph optimization 'all' failed" in reason and "ran at level 'basic'" in reason
        assert "InsertedPrecisionFreeCast" in reason
        run = OnnxRuntimeBackend().profile(
            engine, {"x": np.ones((1, 8, 16), np.float32)}, BuildConfig(precision="fp16", iterations=2, warmup_ms=0)
        )
        assert reason in run.notes


def test_load_hints_match_the_cause():
    assert "bf16, fp8" in load_hint("Could not find an implementation for Cast(19)", "bf16")
    fusion = load_hint("Attempting to get index by a name which does not exist:InsertedPrecisionFreeCast_x", "fp16")
    assert "--graph-optimization basic" in fusion and "bf16" not in fusion
    assert "bf16" not in load_hint("Protobuf parsing failed", "fp32")


def test_cli_graph_optimization_flag():
    args = build_parser().parse_args(["profile", "m.onnx", "--graph-optimization", "basic"])
    assert _config(args).ort_graph_optimization == "basic"
    assert _config(build_parser().parse_args(["profile", "m.onnx"])).ort_graph_optimization == "all"
