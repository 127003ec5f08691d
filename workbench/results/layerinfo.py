"""TensorRT layer information (``trtexec --exportLayerInfo`` / ``IEngineInspector`` JSON) → the shared layer table.

One parser for the live TensorRT backend (``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``)
and for imported trtexec files. Shapes it reads:

- **8.x**: ``Layers`` + ``Bindings`` (a list of names); per tensor one combined ``Format/Datatype`` string
  (``"Row major linear FP32"``, ``"Channel major FP16 format where channel % 8 == 0"``).
- **10.x**: the same keys; ``Format/Datatype`` may be a bare type (``"Float"``); per-layer ``Metadata``
  (``[ONNX Layer: a]\\u001e[ONNX Layer: b]``), ``TacticName``, ``StreamId``; Myelin layers (``gemm``, ``kgen``).
- **11.x**: ``I/O Tensors`` (objects with ``IOMode``, ``DataType``, ``Dimensions``, ``ProfileInfo``) instead of
  ``Bindings``; per tensor separate ``Datatype`` and ``Format`` keys; Myelin ``Constants`` (weights as tensors).
- **names only** (built without ``--profilingVerbosity=detailed``): ``Layers`` is a list of strings → an error
  that says how to rebuild.

Byte counts: ``activation_bytes`` is the size of a layer's outputs (product of the dimensions × element size,
4-bit types rounded up to whole bytes). A dynamic dimension (``-1``) cannot be sized from the JSON alone, so it
counts as 1: the figure is then a lower bound and the row's ``dynamic_shape`` column is True.
Engines with several optimization profiles list every profile's layers; names of profile *k* > 0 end in
`` [profile k]``. :func:`parse_layer_info` keeps one profile (``profile=0`` by default) and says so in ``notes``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import WorkbenchError
from .layers import layer_table, onnx_nodes_from, layer_shapes_text
from .run import TensorInfo


@dataclass(frozen=True)
class TrtDType:
    """One TensorRT ``DataType``: its Python enum name, its JSON spelling, our precision name, numpy storage."""

    enum: str  # tensorrt.DataType member name: "FLOAT"
    json: str  # how layer-information JSON spells it: "Float"
    precision: str  # workbench precision name: "fp32"
    bits: int  # bits per element (4 for the packed 4-bit types)
    numpy: str | None  # numpy dtype name for host buffers; None where numpy has no such type (fp8, bf16, fp4...)

    @property
    def itemsize(self) -> float:
        """Bytes per element (0.5 for 4-bit types)."""
        return self.bits / 8


_MEMBERS = (
    TrtDType("FLOAT", "Float", "fp32", 32, "float32"),
    TrtDType("HALF", "Half", "fp16", 16, "float16"),
    TrtDType("BF16", "BF16", "bf16", 16, None),
    TrtDType("INT8", "Int8", "int8", 8, "int8"),
    TrtDType("INT32", "Int32", "int32", 32, "int32"),
    TrtDType("INT64", "Int64", "int64", 64, "int64"),
    TrtDType("BOOL", "Bool", "bool", 8, "bool"),
    TrtDType("UINT8", "UInt8", "uint8", 8, "uint8"),
    TrtDType("FP8", "FP8", "fp8", 8, None),
    TrtDType("INT4", "Int4", "int4", 4, None),
    TrtDType("FP4", "FP4", "fp4", 4, None),
    TrtDType("E8M0", "E8M0", "e8m0", 8, None),
)

#: Every ``tensorrt.DataType`` member (TensorRT 10.2: FLOAT..INT4; 10.8+/11.x add FP4 and E8M0), keyed by the Python
#: enum name (``"FLOAT"``), the enum with its C++ prefix (``"kFLOAT"``) and the JSON spelling (``"Float"``).
TRT_DTYPES: dict[str, TrtDType] = {}
for _t in _MEMBERS:
    TRT_DTYPES[_t.enum] = _t
    TRT_DTYPES["k" + _t.enum] = _t
    TRT_DTYPES[_t.json] = _t
del _t

# Spellings found inside format strings and Myelin (kgen) tensors, lower-cased. Some are not TensorRT DataTypes
# (Myelin tensors may be Double or Int16); they still have a size.
_TYPE_TOKENS: dict[str, tuple[str, int]] = {
    **{t.enum.lower(): (t.precision, t.bits) for t in _MEMBERS},
    **{t.json.lower(): (t.precision, t.bits) for t in _MEMBERS},
    "fp32": ("fp32", 32),
    "float32": ("fp32", 32),
    "fp16": ("fp16", 16),
    "float16": ("fp16", 16),
    "bfloat16": ("bf16", 16),
    "fp4e2m1": ("fp4", 4),
    "fp8e4m3": ("fp8", 8),
    "double": ("fp64", 64),
    "int16": ("int16", 16),
    "uint16": ("uint16", 16),
    "uint32": ("uint32", 32),
    "uint64": ("uint64", 64),
}

#: Output precisions that say what an engine computes in (index types and booleans do not).
ACTIVATION_PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8", "fp4", "int4", "fp64")

#: How TensorRT names the reformat layers it inserts between layers (they come from no ONNX node).
REFORMAT_PREFIXES = ("Reformatting CopyNode", "Reformatted ")

_PROFILE_SUFFIX = re.compile(r"\s*\[profile (\d+)\]\s*$")


def dtype_of(text: str | None) -> tuple[str, int]:
    """(precision, bits) named by a JSON data type or format string; ``("", 0)`` when it names none.

    ``"Row major linear FP32"`` → fp32; ``"Four wide channel vectorized row major Int8 format"`` → int8;
    ``"Half"`` → fp16. The first word that names a type wins.
    """
    for word in re.split(r"[\s,()]+", text or ""):
        hit = _TYPE_TOKENS.get(word.lower())
        if hit:
            return hit
    return "", 0


@dataclass(frozen=True)
class IOTensor:
    """An engine input or output as the layer information describes it."""

    name: str
    mode: str  # "input" or "output"
    precision: str  # "fp32", "int64"... ("" unknown)
    dtype: str  # numpy dtype name ("" when numpy has none)
    shape: tuple[int, ...]  # -1 for dynamic dimensions
    min_shape: tuple[int, ...] | None = None  # optimization profile range (11.x I/O Tensors)
    opt_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None

    def tensor_info(self) -> TensorInfo:
        return TensorInfo(self.name, self.dtype, tuple(self.shape))


@dataclass(frozen=True, eq=False)
class LayerInfo:
    """Parsed layer information: the layer table (timing columns NaN) and the engine's I/O tensors.

    Extra columns beyond :data:`workbench.results.layers.LAYER_COLUMNS`: ``parameter_type`` (Convolution, Pooling...),
    ``input_bytes``, ``weight_count``, ``dynamic_shape``, ``input_formats``, ``output_formats``, ``stream_id``,
    ``origin`` (TensorRT's reason for a layer: ``REFORMAT``, ``QDQ``...), ``metadata`` (raw, control characters
    replaced by `` | ``).
    """

    layers: pd.DataFrame
    io_tensors: tuple[IOTensor, ...] = ()
    schema: str = ""  # "8.x", "10.x" or "11.x": which JSON shape was read
    profile: int = 0  # optimization profile whose layers were kept
    profiles: int = 1  # optimization profiles the JSON describes
    engine_metadata: dict | None = None  # 11.x "Engine Metadata"
    notes: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t.tensor_info() for t in self.io_tensors if t.mode == "input")

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t.tensor_info() for t in self.io_tensors if t.mode == "output")


def load_json(data: dict | list | str | Path):
    """The JSON value behind ``data``: a parsed value, JSON text, or a path to a JSON file."""
    if isinstance(data, (dict, list)):
        return data
    if isinstance(data, str) and data.lstrip()[:1] in ("{", "["):
        source, text = "layer information", data
    else:
        path = Path(data)
        if not path.is_file():
            raise WorkbenchError(
                f"Layer information file '{path}' does not exist: pass the file written by trtexec --exportLayerInfo."
            )
        source, text = f"'{path}'", path.read_text(errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkbenchError(
            f"{source} is not valid JSON ({e.msg} at line {e.lineno}): export it again with "
            "trtexec --exportLayerInfo=FILE --profilingVerbosity=detailed."
        ) from None


def is_layer_info(value) -> bool:
    """True for a JSON value shaped like layer information (detailed or names-only)."""
    return isinstance(value, dict) and isinstance(value.get("Layers"), list)


def parse_layer_info(data: dict | list | str | Path, *, profile: int = 0) -> LayerInfo:
    """Parse TensorRT layer information (8.x, 10.x or 11.x JSON; value, text or path) into a :class:`LayerInfo`.

    ``profile`` picks the optimization profile whose layers are kept when the engine has several.
    Raises :class:`WorkbenchError` for names-only information (built without detailed profiling verbosity).
    """
    value = load_json(data)
    raw_layers = value if isinstance(value, list) else value.get("Layers") if isinstance(value, dict) else None
    if not isinstance(raw_layers, list):
        raise WorkbenchError(
            "This JSON is not TensorRT layer information (no 'Layers' list): pass the file written "
            "by trtexec --exportLayerInfo=FILE --profilingVerbosity=detailed."
        )
    if raw_layers and all(isinstance(layer, str) for layer in raw_layers):
        raise WorkbenchError(
            f"The layer information names {len(raw_layers)} layers but not their tensors, types or tactics: the "
            "engine was built without detailed profiling verbosity. Rebuild it with trtexec "
            "--profilingVerbosity=detailed (or config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED)."
        )
    layers = [layer for layer in raw_layers if isinstance(layer, dict)]
    if len(layers) != len(raw_layers):
        raise WorkbenchError(
            "The layer information mixes layer objects and other values: export it again with "
            "trtexec --exportLayerInfo=FILE --profilingVerbosity=detailed."
        )
    doc = value if isinstance(value, dict) else {}
    notes: list[str] = []

    profiles = sorted({profile_of(str(layer.get("Name", ""))) for layer in layers}) or [0]
    if profile not in profiles:
        raise WorkbenchError(
            f"The layer information has no optimization profile {profile}: it describes profiles "
            f"{', '.join(map(str, profiles))}."
        )
    if len(profiles) > 1:
        kept = [layer for layer in layers if profile_of(str(layer.get("Name", ""))) == profile]
        notes.append(
            f"The engine has {len(profiles)} optimization profiles; kept the {len(kept)} layers of profile "
            f"{profile} and left out {len(layers) - len(kept)} layers of the others."
        )
        layers = kept

    rows = [_layer_row(layer) for layer in layers]
    _disambiguate(rows, notes)
    table = layer_table(rows) if rows else layer_table(pd.DataFrame(columns=list(_EXTRA_COLUMNS)))
    schema = (
        "11.x"
        if "I/O Tensors" in doc
        else "10.x"
        if any("Metadata" in layer or "StreamId" in layer for layer in layers)
        else "8.x"
    )
    dynamic = int(table["dynamic_shape"].sum()) if len(table) else 0
    if dynamic:
        notes.append(
            f"{dynamic} layers have dynamic dimensions (-1): their byte counts treat those as 1 and are lower bounds."
        )
    return LayerInfo(
        layers=table,
        io_tensors=_io_tensors(doc, layers, profile),
        schema=schema,
        profile=profile,
        profiles=len(profiles),
        engine_metadata=doc.get("Engine Metadata") if isinstance(doc.get("Engine Metadata"), dict) else None,
        notes=tuple(notes),
    )


def strip_profile_suffix(name: str) -> str:
    """``"conv1 [profile 1]"`` → ``"conv1"`` (how profile *k* > 0 layers and tensors are named)."""
    return _PROFILE_SUFFIX.sub("", name)


def guess_precision(layers: pd.DataFrame) -> str:
    """The build precision an engine's layer precisions suggest: the narrowest activation type present.

    int8/fp8 engines also keep fp16/fp32 layers, so the narrowest type is the one that was asked for;
    fp4/int4 (weight-only in practice) count as the 8-bit type they are usually built with.
    """
    present = set(layers["precision"]) if len(layers) else set()
    for precision, answer in (
        ("fp8", "fp8"),
        ("fp4", "fp8"),
        ("int8", "int8"),
        ("int4", "int8"),
        ("fp16", "fp16"),
        ("bf16", "bf16"),
    ):
        if precision in present:
            return answer
    return "fp32"


# ---- helpers ---------------------------------------------------------------------------------------------------

_EXTRA_COLUMNS = (
    "parameter_type",
    "input_bytes",
    "weight_count",
    "dynamic_shape",
    "input_formats",
    "output_formats",
    "stream_id",
    "origin",
    "metadata",
)


def profile_of(name: str) -> int:
    """The optimization profile a layer or tensor name belongs to (``"conv1 [profile 1]"`` → 1, else 0)."""
    m = _PROFILE_SUFFIX.search(name)
    return int(m.group(1)) if m else 0


def _tensor_type(tensor: dict) -> tuple[str, int]:
    """(precision, bits) of one tensor description, whichever keys this TensorRT version wrote."""
    for key in ("Datatype", "DataType", "Format/Datatype", "Format"):
        precision, bits = dtype_of(tensor.get(key))
        if precision:
            return precision, bits
    return "", 0


def _tensor_format(tensor: dict) -> str:
    return str(tensor.get("Format/Datatype") or tensor.get("Format") or "")


def tensor_dims(tensor: dict) -> list[int]:
    """The dimensions of one tensor description (empty when it has none)."""
    dims = tensor.get("Dimensions")
    return [int(d) for d in dims] if isinstance(dims, list) else []


def tensor_size(tensor: dict) -> tuple[int, int, bool]:
    """(elements, bytes, has dynamic dims); dynamic dims count as 1 (see the module docstring)."""
    dims = tensor_dims(tensor)
    elements = math.prod(d for d in dims if d >= 0)
    _, bits = _tensor_type(tensor)
    return elements, math.ceil(elements * bits / 8), any(d < 0 for d in dims)


def layer_weights(layer: dict) -> tuple[int, int]:
    """(element count, bytes) of a layer's weights: ``{"Type", "Count"}`` blocks (Weights, Bias, Scale, Shift,
    Power...) and 11.x Myelin ``Constants`` tensors."""
    count = size = 0
    for value in layer.values():
        if isinstance(value, dict) and "Count" in value and "Type" in value:
            n = int(value["Count"])
            _, bits = dtype_of(str(value["Type"]))
            count, size = count + n, size + math.ceil(n * bits / 8)
    for const in layer.get("Constants") or ():
        if isinstance(const, dict):
            n, b, _ = tensor_size(const)
            count, size = count + n, size + b
    return count, size


def _output_precision(outputs: list[dict]) -> str:
    """A layer's precision: the type of its first output that carries activations (fp32/fp16/int8/...),
    else of its first output (an int32 index, a bool mask)."""
    types = [_tensor_type(t)[0] for t in outputs]
    for precision in types:
        if precision in ACTIVATION_PRECISIONS:
            return precision
    return next((p for p in types if p), "")


def _layer_row(layer: dict) -> dict:
    inputs = [t for t in layer.get("Inputs") or () if isinstance(t, dict)]
    outputs = [t for t in layer.get("Outputs") or () if isinstance(t, dict)]
    out_sizes = [tensor_size(t) for t in outputs]
    in_sizes = [tensor_size(t) for t in inputs]
    weight_count, weight_bytes = layer_weights(layer)
    metadata = str(layer.get("Metadata") or "")
    name = str(layer.get("Name", ""))
    stream = layer.get("StreamId")
    return {
        "name": name,
        "type": str(layer.get("LayerType") or layer.get("ParameterType") or ""),
        "precision": _output_precision(outputs),
        "input_shapes": layer_shapes_text([tensor_dims(t) for t in inputs]),
        "output_shapes": layer_shapes_text([tensor_dims(t) for t in outputs]),
        "activation_bytes": sum(b for _, b, _ in out_sizes),
        "weight_bytes": weight_bytes,
        "tactic": str(layer.get("TacticName") or layer.get("TacticValue") or ""),
        "onnx_nodes": _onnx_nodes(layer, name, metadata),
        "parameter_type": str(layer.get("ParameterType") or ""),
        "input_bytes": sum(b for _, b, _ in in_sizes),
        "weight_count": weight_count,
        "dynamic_shape": any(d for _, _, d in out_sizes + in_sizes),
        "input_formats": "; ".join(_tensor_format(t) for t in inputs),
        "output_formats": "; ".join(_tensor_format(t) for t in outputs),
        "stream_id": int(stream) if isinstance(stream, (int, float)) else -1,
        "origin": str(layer.get("Origin") or ""),
        "metadata": re.sub(r"[\u001e\u001f]", " | ", metadata),
    }


def _onnx_nodes(layer: dict, name: str, metadata: str) -> list[str]:
    if _is_inserted_reformat(layer):
        return []
    if "Metadata" in layer and not metadata.strip():
        return []  # TensorRT 10+ records the origin of every layer; empty means no ONNX node (Myelin glue, casts)
    return onnx_nodes_from(strip_profile_suffix(name), metadata or None)


def _is_inserted_reformat(layer: dict) -> bool:
    """A reformat TensorRT inserted between layers: it comes from no ONNX node, although its name (``Reformatting
    CopyNode for Input Tensor 0 to Conv_5 + Add_6``) quotes the fused layer it feeds."""
    return str(layer.get("Origin", "")).upper() == "REFORMAT" or str(layer.get("Name", "")).startswith(
        REFORMAT_PREFIXES
    )


def number_repeats(names) -> tuple[list[str], int]:
    """Names with repeats numbered ``name #2``, ``name #3`` (so that joins by name stay one-to-one), and how many
    were renamed. Layer information and per-layer profiles number them alike, so their rows still match."""
    seen: dict[str, int] = {}
    numbered = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        numbered.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return numbered, sum(n - 1 for n in seen.values())


def _disambiguate(rows: list[dict], notes: list[str]) -> None:
    names, renamed = number_repeats(row["name"] for row in rows)
    for row, name in zip(rows, names, strict=True):
        row["name"] = name
    if renamed:
        notes.append(f"{renamed} layers repeat an earlier layer's name; they were numbered (name #2, ...).")


def numpy_name(precision: str) -> str:
    """The numpy dtype name of a precision (``fp16`` → ``float16``); ``""`` where numpy has none (fp8, bf16...)."""
    for t in _MEMBERS:
        if t.precision == precision:
            return t.numpy or ""
    return {"fp64": "float64", "int16": "int16", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64"}.get(
        precision, ""
    )


def _io_tensors(doc: dict, layers: list[dict], profile: int) -> tuple[IOTensor, ...]:
    if isinstance(doc.get("I/O Tensors"), list):
        return tuple(_io_from_11x(t, profile) for t in doc["I/O Tensors"] if isinstance(t, dict))
    bindings = doc.get("Bindings")
    if not isinstance(bindings, list):
        return ()
    produced = {str(t.get("Name")): t for layer in layers for t in layer.get("Outputs") or () if isinstance(t, dict)}
    consumed: dict[str, dict] = {}
    for layer in layers:
        for t in layer.get("Inputs") or ():
            if isinstance(t, dict):
                consumed.setdefault(str(t.get("Name")), t)
    result = []
    for binding in bindings:
        name = str(binding.get("Name") if isinstance(binding, dict) else binding)
        if profile_of(name) != profile:
            continue
        tensor, mode = (produced[name], "output") if name in produced else (consumed.get(name), "input")
        if tensor is None:
            continue  # a binding no layer touches (an unused input): nothing to describe it with
        precision, _ = _tensor_type(tensor)
        result.append(IOTensor(name, mode, precision, numpy_name(precision), tuple(tensor_dims(tensor))))
    return tuple(result)


def _io_from_11x(t: dict, profile: int) -> IOTensor:
    precision, _ = dtype_of(str(t.get("DataType") or t.get("Datatype") or ""))
    info = t.get("ProfileInfo")
    ranges: list = info if isinstance(info, list) else []
    chosen = ranges[profile] if profile < len(ranges) and isinstance(ranges[profile], dict) else {}

    def shape(key):
        return tuple(int(d) for d in chosen[key]) if isinstance(chosen.get(key), list) else None

    return IOTensor(
        name=str(t.get("Name", "")),
        mode="output" if str(t.get("IOMode", "")).lower() == "output" else "input",
        precision=precision,
        dtype=numpy_name(precision),
        shape=tuple(tensor_dims(t)),
        min_shape=shape("MinShape"),
        opt_shape=shape("OptShape"),
        max_shape=shape("MaxShape"),
    )
