"""Layer information from real trtexec files (TensorRT 8.x, 10.16, 11.1) becomes the shared layer table."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.results.layerinfo import TRT_DTYPES, dtype_of, guess_precision, parse_layer_info
from workbench.results.layers import LAYER_COLUMNS

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "recorded"


def _layer_info_files() -> list:
    """Every fixture whose content is layer information, whatever its name."""
    if not FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"recorded TensorRT outputs not found at {FIXTURES}"))]
    found = []
    for path in sorted(FIXTURES.rglob("*.json")):
        value = json.loads(path.read_text())
        if isinstance(value, dict) and "Layers" in value:
            found.append(pytest.param(path, id=str(path.relative_to(FIXTURES))))
    return found


FILES = _layer_info_files()


def _raw(path) -> dict:
    return json.loads(Path(path).read_text())


# Element sizes spelled as trtexec spells types, for recomputing byte counts independently of the parser.
_SIZES = {"fp32": 4, "float": 4, "fp16": 2, "half": 2, "int8": 1, "int32": 4, "int64": 8, "bool": 1}


def _size(tensor: dict) -> int:
    text = " ".join(str(tensor.get(k, "")) for k in ("Datatype", "DataType", "Format/Datatype")).lower()
    words = re.split(r"[\s,()]+", text)
    return next(_SIZES[w] for w in words if w in _SIZES)


@pytest.mark.parametrize("path", FILES)
def test_every_layer_is_a_row_with_the_shared_columns(path):
    raw = _raw(path)
    info = parse_layer_info(path)
    assert list(info.layers.columns[: len(LAYER_COLUMNS)]) == list(LAYER_COLUMNS)
    assert list(info.layers["name"]) == [layer["Name"] for layer in raw["Layers"]]
    assert list(info.layers["type"]) == [layer["LayerType"] for layer in raw["Layers"]]
    assert info.layers["time_ms"].isna().all()  # layer information holds no timing


@pytest.mark.parametrize("path", FILES)
def test_bytes_are_output_sizes_and_weights_from_the_file(path):
    raw = _raw(path)
    info = parse_layer_info(path)
    for layer, row in zip(raw["Layers"], info.layers.itertuples()):
        outputs = sum(math.prod(t["Dimensions"]) * _size(t) for t in layer["Outputs"])
        inputs = sum(math.prod(t["Dimensions"]) * _size(t) for t in layer["Inputs"])
        assert row.activation_bytes == outputs, layer["Name"]
        assert row.input_bytes == inputs, layer["Name"]
        weights = sum(
            layer[k]["Count"] * {"Float": 4, "Half": 2, "Int8": 1}[layer[k]["Type"]]
            for k in ("Weights", "Bias")
            if k in layer
        )
        weights += sum(math.prod(c["Dimensions"]) * _size(c) for c in layer.get("Constants", []))
        assert row.weight_bytes == weights, layer["Name"]


@pytest.mark.parametrize("path", FILES)
def test_precision_is_the_output_type(path):
    raw = _raw(path)
    info = parse_layer_info(path)
    spelled = {
        "fp32": ("FP32", "Float"),
        "fp16": ("FP16", "Half"),
        "int8": ("Int8", "INT8"),
        "int32": ("Int32",),
        "int64": ("Int64", "INT64"),
    }
    for layer, precision in zip(raw["Layers"], info.layers["precision"]):
        first = layer["Outputs"][0]
        text = first.get("Datatype") or first["Format/Datatype"]
        assert any(word in text for word in spelled[precision]), (layer["Name"], text, precision)


@pytest.mark.parametrize("path", FILES)
def test_onnx_nodes_come_from_metadata_or_fused_names(path):
    raw = _raw(path)
    info = parse_layer_info(path)
    for layer, nodes in zip(raw["Layers"], info.layers["onnx_nodes"]):
        from_metadata = re.findall(r"\[ONNX Layer: ([^\]]+)\]", layer.get("Metadata", ""))
        if from_metadata:
            assert nodes == list(dict.fromkeys(from_metadata))
        elif layer.get("Origin") == "REFORMAT" or layer["Name"].startswith("Reformatting CopyNode"):
            assert nodes == []  # TensorRT inserted it; it comes from no ONNX node
        elif "Metadata" in layer:
            assert nodes == []  # 10.x+ names the ONNX origin of every layer; empty means none
        elif "(" not in layer["Name"]:  # plain fused names: "Conv_0 + Relu_1"
            assert nodes == list(dict.fromkeys(p.strip() for p in layer["Name"].split(" + ")))


@pytest.mark.parametrize("path", FILES)
def test_io_tensors_are_the_engine_bindings(path):
    raw = _raw(path)
    info = parse_layer_info(path)
    if "I/O Tensors" in raw:
        expected = [(t["Name"], t["IOMode"].lower(), tuple(t["Dimensions"])) for t in raw["I/O Tensors"]]
        for tensor, spec in zip(info.io_tensors, raw["I/O Tensors"]):
            ranges = spec["ProfileInfo"][0]
            assert tensor.min_shape == (tuple(ranges["MinShape"]) if "MinShape" in ranges else None)
            assert tensor.max_shape == (tuple(ranges["MaxShape"]) if "MaxShape" in ranges else None)
    else:
        produced = {t["Name"]: t for layer in raw["Layers"] for t in layer["Outputs"]}
        consumed = {t["Name"]: t for layer in raw["Layers"] for t in layer["Inputs"]}
        expected = [
            (b, "output" if b in produced else "input", tuple((produced.get(b) or consumed[b])["Dimensions"]))
            for b in raw["Bindings"]
        ]
    assert [(t.name, t.mode, t.shape) for t in info.io_tensors] == expected
    assert all(np.dtype(t.dtype) for t in info.io_tensors)  # numpy can make buffers for every I/O tensor
    assert [t.name for t in info.inputs] == [n for n, mode, _ in expected if mode == "input"]


def test_the_same_information_parses_from_a_path_text_or_value():
    path = next(p.values[0] for p in FILES if p.values[0] is not None and "11.1" in str(p.values[0]))
    by_path = parse_layer_info(path).layers
    by_text = parse_layer_info(Path(path).read_text()).layers
    by_value = parse_layer_info(_raw(path)).layers
    assert by_path.equals(by_text) and by_path.equals(by_value)


@pytest.mark.parametrize("path", FILES)
def test_names_only_information_says_how_to_rebuild(path):
    raw = _raw(path)
    names_only = {"Layers": [layer["Name"] for layer in raw["Layers"]], "Bindings": raw.get("Bindings", [])}
    with pytest.raises(WorkbenchError, match="--profilingVerbosity=detailed"):
        parse_layer_info(names_only)


def test_several_optimization_profiles_keep_one_and_say_so():
    path = next(p.values[0] for p in FILES if p.values[0] is not None and "10.16" in str(p.values[0]))
    raw = _raw(path)
    second = copy.deepcopy(raw["Layers"])
    for layer in second:
        layer["Name"] += " [profile 1]"
    both = {
        "Layers": raw["Layers"] + second,
        "Bindings": raw["Bindings"] + [b + " [profile 1]" for b in raw["Bindings"]],
    }
    first = parse_layer_info(both)
    assert len(first.layers) == len(raw["Layers"]) and first.profiles == 2
    assert any("2 optimization profiles" in note for note in first.notes)
    other = parse_layer_info(both, profile=1)
    assert all(name.endswith("[profile 1]") for name in other.layers["name"])
    with pytest.raises(WorkbenchError, match="no optimization profile 2"):
        parse_layer_info(both, profile=2)


def test_dynamic_dimensions_count_as_one_and_are_flagged():
    path = next(p.values[0] for p in FILES if p.values[0] is not None and "11.1" in str(p.values[0]))
    raw = _raw(path)
    layer = raw["Layers"][0]
    static = parse_layer_info(raw).layers.iloc[0]
    layer["Outputs"][0]["Dimensions"][0] = -1
    dynamic = parse_layer_info(raw)
    row = dynamic.layers.iloc[0]
    batch = _raw(path)["Layers"][0]["Outputs"][0]["Dimensions"][0]
    assert row.dynamic_shape and not static.dynamic_shape
    assert row.activation_bytes * batch == static.activation_bytes
    assert any("lower bounds" in note for note in dynamic.notes)


def test_repeated_layer_names_are_numbered_not_merged():
    path = next(p.values[0] for p in FILES if p.values[0] is not None and "10.16" in str(p.values[0]))
    raw = _raw(path)
    raw["Layers"].append(copy.deepcopy(raw["Layers"][0]))
    info = parse_layer_info(raw)
    assert info.layers["name"].iloc[-1] == raw["Layers"][0]["Name"] + " #2"
    assert info.layers["name"].is_unique


def test_onnx_node_names_with_brackets_stay_whole():
    path = next(p.values[0] for p in FILES if p.values[0] is not None and "10.16" in str(p.values[0]))
    raw = _raw(path)
    raw["Layers"][0]["Metadata"] = "[ONNX Layer: /blocks[0]/conv/Conv]\u001e[ONNX Layer: /blocks[0]/act/Relu]"
    layer = parse_layer_info(raw).layers.iloc[0]
    assert layer.onnx_nodes == ["/blocks[0]/conv/Conv", "/blocks[0]/act/Relu"]


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(WorkbenchError, match="does not exist"):
        parse_layer_info(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"Layers": [')
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        parse_layer_info(broken)
    with pytest.raises(WorkbenchError, match="not TensorRT layer information"):
        parse_layer_info({"something": 1})


# ---- data types ------------------------------------------------------------------------------------------------

TENSORRT_10_2 = ("FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64", "INT4")
TENSORRT_11 = TENSORRT_10_2 + ("FP4", "E8M0")  # include/NvInferRuntimeBase.h of TensorRT 11.1: kVALUE = 12


def test_trt_dtypes_cover_every_tensorrt_member_with_sizes():
    for name in TENSORRT_11:
        t = TRT_DTYPES[name]
        assert TRT_DTYPES["k" + name] is t and TRT_DTYPES[t.json] is t
        assert t.itemsize == t.bits / 8
        if t.numpy:
            assert np.dtype(t.numpy).itemsize == t.itemsize
    assert TRT_DTYPES["FLOAT"].precision == "fp32" and TRT_DTYPES["Half"].precision == "fp16"
    assert TRT_DTYPES["INT4"].itemsize == 0.5 and TRT_DTYPES["FP4"].itemsize == 0.5


def test_every_type_spelling_in_the_fixtures_is_known():
    spellings = set()
    for p in FILES:
        raw = _raw(p.values[0])
        for layer in raw["Layers"]:
            for key in ("Weights", "Bias"):
                if key in layer:
                    assert layer[key]["Type"] in TRT_DTYPES
            for t in layer["Inputs"] + layer["Outputs"] + layer.get("Constants", []):
                spellings.add(t.get("Datatype") or t["Format/Datatype"])
        for t in raw.get("I/O Tensors", []):
            assert t["DataType"] in TRT_DTYPES
    assert spellings and all(dtype_of(s)[0] for s in spellings), [s for s in spellings if not dtype_of(s)[0]]


def test_engine_precision_is_the_narrowest_activation_type():
    by_folder = {Path(p.values[0]).parent.name: parse_layer_info(p.values[0]).layers for p in FILES}
    assert guess_precision(by_folder["resnet18-a100-fp32"]) == "fp32"
    assert guess_precision(by_folder["resnet18-a100-fp16"]) == "fp16"
    assert guess_precision(by_folder["resnet18-a100-qat"]) == "int8"
