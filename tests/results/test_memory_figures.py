"""Memory a user budgets by: the host peak holds every step of a run, INT8 weights at their stored size, the
parameters of classical-ML operators counted."""

import subprocess
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.format import model_rows
from workbench.model.node_cost import layer_weights
from workbench.model.onnx_model import load_model
from workbench.model.samples import sample_path

#: Run in a fresh interpreter, so the process's peak is this run's: a wide model evaluated on 96 MiB of data, its
#: accuracy step (reference and variant outputs, their comparison) the largest step of the run.
_PEAK_SCRIPT = """
import resource
import numpy as np
from onnx import TensorProto, helper
import workbench as wb

graph = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["h"], name="relu"), helper.make_node("Sigmoid", ["h"], ["y"], name="sig")],
    "wide",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4096])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4096])],
)
proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model = wb.load_model(proto.SerializeToString(), name="wide")
x = np.random.default_rng(0).standard_normal((6144, 4096)).astype(np.float32)
config = wb.BuildConfig(iterations=3, warmup_ms=0, duration_s=0, shapes=(("x", (1, 4096)),))
run = wb.profile(model, "fp16", backend="onnxruntime", eval_data={"x": x}, config=config)
print(run.memory.host_peak_bytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, run.accuracy.samples)
"""


def test_host_peak_memory_includes_the_accuracy_step():
    """DNSMOS reported 1.0 GiB while its process peaked at 4.3 GB: the figure was read before accuracy ran."""
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    reported, process_peak, samples = map(int, done.stdout.split()[-3:])
    assert samples == 6144
    assert 0.8 * process_peak <= reported <= process_peak * 1.01  # within 20% of the process's measured peak
    assert reported > 96 * 2**20 * 3  # the data, the reference's and the variant's outputs were all held


def _tree_ensemble() -> bytes:
    """Two regression trees (a split and two leaves each) as ``ai.onnx.ml`` TreeEnsembleRegressor stores them."""
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["x"],
        ["y"],
        domain="ai.onnx.ml",
        name="forest",
        n_targets=1,
        nodes_treeids=[0, 0, 0, 1, 1, 1],
        nodes_nodeids=[0, 1, 2, 0, 1, 2],
        nodes_featureids=[0, 0, 0, 1, 0, 0],
        nodes_values=[0.5, 0.0, 0.0, -1.0, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"] * 2,
        nodes_truenodeids=[1, 0, 0, 1, 0, 0],
        nodes_falsenodeids=[2, 0, 0, 2, 0, 0],
        target_treeids=[0, 0, 1, 1],
        target_nodeids=[1, 2, 1, 2],
        target_ids=[0, 0, 0, 0],
        target_weights=[1.0, 2.0, 3.0, 4.0],
    )
    graph = helper.make_graph(
        [node],
        "forest",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def test_tree_ensemble_parameters_are_counted():
    """A 50-tree forest reported "Parameters 0 (0 B)": its trees live in attributes, not initializers."""
    model = load_model(_tree_ensemble(), name="forest")
    # per node: tree id, node id, feature, threshold, true and false child (6 × 6); per leaf value: tree id,
    # node id, target id, weight (4 × 4); the node modes are strings, not counted
    assert model.parameters == 6 * 6 + 4 * 4
    assert model.parameter_bytes == model.stored_parameter_bytes == 6 * (5 * 8 + 4) + 4 * (3 * 8 + 4)
    assert dict(model_rows(model))["Parameters"] == "52 (376 B)"


def _quantized_matmul(first, weights):
    """x [4, 64] @ DequantizeLinear(QuantizeLinear(w)) with INT8 scale 0.1 and zero point 0; ``w`` from the nodes
    ``first`` or the initializers ``weights``."""
    graph = helper.make_graph(
        [
            *first,
            helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"], name="qw"),
            helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], name="dqw"),
            helper.make_node("MatMul", ["x", "wd"], ["y"], name="mm"),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])],
        [*weights, numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")],
    )
    return load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def test_fake_quantized_weights_count_at_one_byte_per_value():
    """A weight quantized by QuantizeLinear keeps float values in the file; a runtime holds it in INT8."""
    model = _quantized_matmul([], [numpy_helper.from_array(np.ones((64, 32), np.float32), "w")])
    assert model.parameter_bytes == 64 * 32 * 4 + 4 + 1  # the file's float weights
    assert model.stored_parameter_bytes == 64 * 32 * 1 + 4 + 1  # INT8 weights, their scale and zero point


def test_a_weight_held_in_a_constant_node_counts_at_its_quantized_size():
    """A weight an exporter writes as a Constant node (its tensor named otherwise, or not at all) and only
    QuantizeLinear reads is held in INT8 like an initializer: 1 byte per value, in the total and per name."""
    weight = numpy_helper.from_array(np.ones((64, 32), np.float32), "")
    model = _quantized_matmul([helper.make_node("Constant", [], ["w"], name="cw", value=weight)], [])
    assert model.parameter_bytes == 64 * 32 * 4 + 4 + 1
    assert model.stored_parameter_bytes == 64 * 32 * 1 + 4 + 1
    assert model.quantized_weight_bytes == {"w": 64 * 32}
    # the layer that reads it holds it at that size too, so the layers' weights sum to the run's total
    assert layer_weights(model.proto, [["qw", "dqw", "mm"]], model.quantized_weight_bytes) == ([64 * 32 + 4 + 1], {})


def test_an_int8_runs_weights_are_its_int8_size():
    """ModelOpt's INT8 graph of digits_cnn keeps FP16 weights behind QuantizeLinear (the file's size, 77 KB); the
    run's Weights are what ONNX Runtime holds: the quantized convolutions at 1 byte per value."""
    config = wb.BuildConfig(iterations=3, warmup_ms=0, duration_s=0)
    fp32 = load_model(sample_path("digits_cnn"))
    run = wb.profile(fp32, "int8", backend="onnxruntime", config=config, random_calibration=True)
    variant = load_model(run.artifact("onnx"))
    assert variant.parameter_bytes > 0.45 * fp32.parameter_bytes  # FP16 weights in the file
    conv_weights = sum(int(np.prod(t.dims)) for t in fp32.proto.graph.initializer if t.name.startswith("features"))
    other = fp32.parameters - conv_weights
    quantized = variant.stored_parameter_bytes
    assert run.memory.weights_bytes == quantized
    # the convolutions at 1 byte per value, the unquantized classifier at FP16's 2, plus scales and zero points
    assert conv_weights + 2 * other <= quantized <= (conv_weights + 2 * other) * 1.02
    assert variant.parameter_bytes - quantized >= 0.98 * conv_weights  # each quantized value: 2 bytes -> 1
