"""How far each layer is from the hardware limit: work per layer, the roofline, the model's lower bound.

:func:`roofline` puts a Run's layers against a :class:`~workbench.analysis.devices.Device`. Each layer's work
(FLOPs, fewest DRAM bytes) comes, in this order, from:

``onnx``
    the ONNX model (the run's precision variant, else its source model), each tensor at the shape the backend ran
    it at (ONNX Runtime's profile: ``run.extra["tensor_shapes"]``), else inferred at the profiled input shapes: a
    fused layer's work is that of its ``onnx_nodes`` (:meth:`~workbench.model.node_cost.ModelWork.group`: FLOPs summed, bytes
    crossing the fusion's boundary; scaled to the narrower float type an engine ran a layer in, such as a weakly
    typed ``--fp16`` build of an FP32 graph);
``layer info``
    TensorRT's layer information (imported trtexec runs, whose ONNX file is elsewhere): kernel, output maps,
    groups, weight counts and the tensors' dimensions and types of each engine layer;
``layer table``
    for layers that only move data (reformats, reorders, copies): the bytes the layer table records; a view ONNX
    Runtime inserted (a Reshape around a Gemm, a Squeeze after a Split): no work; an elementwise layer in no ONNX
    node (a function ONNX Runtime expanded): one FLOP per output element, its shapes' bytes;
``unknown``
    anything else: NaN, and ``note`` says why. Never a guess.

Columns of :attr:`Roofline.layers` (one row per layer of the run, in its order):

=====================  ==========================================================================================
``name``, ``type``     the layer
``precision``          the precision the layer computes in (int8 / fp8 when its inputs are quantized)
``peak_from``          which peak is its roof: ``fp16 tensor cores`` (matrix layers: Conv, Gemm, MatMul; FP32
                       ones on ``tf32 tensor cores`` only where the run allowed TF32, :func:`tf32_allowed`: the
                       workbench's FP32 builds use ``--noTF32``), ``fp32 cuda cores`` (the others), ``fp32
                       measured`` (CPU)
``time_ms``            measured time per inference
``flops``, ``bytes``   the work; ``intensity`` = flops / bytes (FLOP per byte)
``attained_flops``     flops / time (FLOP/s); ``attained_bandwidth`` bytes / time (B/s)
``peak_flops``         the device's peak for the layer (Tensor Core peak for matrix layers, FP32 otherwise)
``roof_bandwidth``     the bandwidth of the memory roof that applies (B/s): the cache's when the layer's bytes fit
                       in the device's last-level cache and its bandwidth is known, else DRAM's
                       (:meth:`~workbench.analysis.devices.Device.memory_roof`)
``roof_flops``         min(peak, intensity × roof_bandwidth): the most this layer's intensity allows
``limit_ms``           max(flops / peak, bytes / roof_bandwidth): the least time the hardware allows
``pct_of_roof``        100 × limit_ms / time_ms (= attained / roof) against the roof that applies; NaN for a layer
                       with no work on data
``bound``              ``compute`` or ``memory`` (which term of ``limit_ms`` is larger)
``memory_roof``        which memory roof applies: ``DRAM`` or the cache's name (``L3 cache``, ``L2 cache``)
``above_limit_ms``     time_ms − limit_ms: what a perfect kernel could save; NaN for a layer with no work on data
                       (shape arithmetic, views: 0 FLOPs, 0 bytes), which never shows as time above the limit
``work_from``          ``onnx``, ``layer info``, ``layer table``, ``unknown``, or ``fused on target``: an ONNX
                       Runtime CPU run held against a GPU counts what TensorRT would run there, so its Q/DQ nodes,
                       the Casts next to them and the layers ONNX Runtime inserted itself (layout reorders, casts
                       around FP16 ops, quantized-bias arithmetic) are no work (a note says how many)
``note``               why a figure is missing (never "not counted" without a reason)
=====================  ==========================================================================================

:attr:`Roofline.notes` name the cause of every figure that breaks the physics: a layer above the roof
(compute-bound: the peak; memory-bound within the device's cache: DRAM is not its roof; beyond the cache: no proven
cause, the work or the roof), a lower bound above the measured latency (which of the two is wrong), layer times
summing above the timed latency (the profiler's per-layer synchronisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import format_shape
from ..errors import WorkbenchError
from ..model.node_cost import ELEMENTWISE_OPS, MATRIX_OPS, VIEW_OPS
from .devices import Device, cpu_device, device_for

ROOFLINE_COLUMNS = (
    "name",
    "type",
    "precision",
    "peak_from",
    "time_ms",
    "flops",
    "bytes",
    "intensity",
    "attained_flops",
    "attained_bandwidth",
    "peak_flops",
    "roof_bandwidth",
    "roof_flops",
    "limit_ms",
    "pct_of_roof",
    "bound",
    "memory_roof",
    "above_limit_ms",
    "work_from",
    "note",
)
#: The columns of a layer's row in the report's table: the rates and peaks are on the roofline chart beside it.
TABLE_COLUMNS = tuple(
    c
    for c in ROOFLINE_COLUMNS
    if c not in ("attained_flops", "attained_bandwidth", "peak_flops", "roof_bandwidth", "roof_flops")
)

#: Layer types that only move data (their work is the bytes they read and write).
MOVE_TYPES = {
    "Reformat",
    "ReorderInput",
    "ReorderOutput",
    "Shuffle",
    "Copy",
    "Cast",
    "Transpose",
    "Concat",
    "Concatenation",
    "Slice",
    "Reshape",
    "Identity",
    "MemcpyToHost",
    "MemcpyFromHost",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
}
_FLOATS_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
_FLOATS = set(_FLOATS_BYTES)
#: Layer types that run on Tensor Cores: the ONNX matrix operators, TensorRT's layer and kernel names for them and
#: ONNX Runtime's fused kernels.
_MATRIX_TYPES = MATRIX_OPS | {
    "Convolution",
    "Deconvolution",
    "FullyConnected",
    "MatrixMultiply",
    "CaskConvolution",
    "CaskDeconvolution",
    "CaskGemmConvolution",
    "CaskFullyConnected",
    "FusedConv",
    "FusedGemm",
}


@dataclass
class Roofline:
    """A run's layers against a device's roof (see the module docstring) and the model's lower bound."""

    run_name: str
    device: Device
    layers: pd.DataFrame
    measured_ms: float | None  # mean latency of whole inferences
    layer_time_ms: float  # summed layer times
    lower_bound_ms: float  # summed per-layer limits of the layers whose work is known; NaN when no layer's is
    notes: tuple = field(default_factory=tuple)
    time_source: str = ""  # where the layer times come from (Run.time_source_label)

    @property
    def unknown(self) -> pd.DataFrame:
        return self.layers[self.layers["limit_ms"].isna()]

    @property
    def known_time_ms(self) -> float:
        return float(self.layers.loc[self.layers["limit_ms"].notna(), "time_ms"].sum())

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = [("Device", self.device.name), ("Roof from", self.device.source)]
        rows += [(label, value) for label, value in self.device.table() if label != "Source"]
        known = self.layers[self.layers["limit_ms"].notna()]
        if len(known):
            flops, size = float(known["flops"].sum()), float(known["bytes"].sum())
            rows.append(("Work (layers with known work)", f"{flops / 1e9:.4g} GFLOP, {size / 1e6:.4g} MB"))
        else:
            rows.append(("Work (layers with known work)", "unknown: no layer's work is known (see the notes)"))
        if self.measured_ms:
            rows.append(("Measured latency (mean)", f"{self.measured_ms:.4f} ms"))
        source = f" ({self.time_source})" if self.time_source else ""
        rows.append(("Summed layer times", f"{self.layer_time_ms:.4f} ms{source}"))
        rows.append(
            (
                "Lower bound (sum of per-layer limits)",
                f"{self.lower_bound_ms:.4f} ms" if len(known) else "unknown: no layer's work is known",
            )
        )
        if self.layer_time_ms:
            known_ms = self.known_time_ms if len(known) else 0.0
            rows.append(
                (
                    "Layer time at the limit",
                    f"{100 * self.lower_bound_ms / known_ms:.1f}% (of the {known_ms:.4f} ms of layers with known work)"
                    if known_ms
                    else "n/a",
                )
            )
        unknown = self.unknown
        if len(unknown):
            share = 100 * float(unknown["time_ms"].sum()) / self.layer_time_ms if self.layer_time_ms else float("nan")
            rows.append(
                ("Layers with unknown work", f"{len(unknown)} ({share:.1f}% of the layer time): not in the lower bound")
            )
        sources = self.layers["work_from"].value_counts()
        rows.append(("Work counted from", ", ".join(f"{k} ({v} layers)" for k, v in sources.items())))
        return rows

    def above_limit(self, top: int = 15) -> pd.DataFrame:
        """The layers with the most time above their limit: where the possible savings are."""
        cols = [
            "name",
            "type",
            "precision",
            "peak_from",
            "time_ms",
            "limit_ms",
            "above_limit_ms",
            "pct_of_roof",
            "bound",
            "intensity",
            "work_from",
        ]
        df = self.layers[self.layers["time_ms"] > 0].dropna(subset=["above_limit_ms"])
        df = df.sort_values("above_limit_ms", ascending=False)
        return df[cols].head(top).reset_index(drop=True)

    def to_text(self, top: int = 15) -> str:
        width = max(len(k) for k, _ in self.summary_rows())
        lines = [f"Roofline of {self.run_name}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.summary_rows()]
        lines += [f"  note: {n}" for n in self.notes]
        table = self.above_limit(top).copy()
        if len(table):
            table["name"] = table["name"].map(lambda s: s if len(s) <= 48 else s[:45] + "...")
            lines += [
                "",
                f"Time above the limit (top {len(table)}):",
                table.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
            ]
        return "\n".join(lines)

    def _repr_html_(self) -> str | None:
        from ..display import repr_html

        return repr_html(self)  # registered in workbench.views.formatting_html (a type never imports its renderer)


# ---- device of a run -----------------------------------------------------------------------------------------


def run_device(run, device: str | Device | None = None) -> Device:
    """The device to hold ``run`` against: ``device`` (a Device, a GPU name, or ``"cpu"``), else the run's GPU by
    name, else the measured CPU for CPU runs."""
    if isinstance(device, Device):
        return device
    if device:
        return cpu_device() if str(device).lower() == "cpu" else device_for(str(device))
    gpu = run.environment.get("gpu") or next((g.get("name") for g in run.environment.get("gpus") or ()), None)
    providers = [str(p) for p in run.environment.get("providers") or ()]
    on_gpu = run.backend != "onnxruntime" or any("CUDA" in p or "Tensorrt" in p for p in providers)
    if on_gpu:
        if not gpu:
            raise WorkbenchError(
                f"Run '{run.name}' does not say which GPU it ran on: pass --device NAME "
                "(device=...), e.g. 'A100 SXM 40GB'."
            )
        return device_for(gpu, typed=False)
    return cpu_device()


def tf32_allowed(run) -> tuple[bool, str]:
    """(whether the run's FP32 matrix layers may run as TF32, why): an imported trtexec run unless its command
    has ``--noTF32`` (trtexec's default is TF32 on); a run on ONNX Runtime's CUDA provider (its default); else the
    run's build config (:attr:`workbench.config.BuildConfig.tf32`: the workbench's FP32 engine is built with TF32
    off, ``--noTF32``, its TF32 precision with it on)."""
    command = str(run.extra.get("trtexec_command") or "")
    if command:
        off = "--noTF32" in command.split()
        return not off, (
            "its trtexec command has --noTF32" if off else "its trtexec command leaves TF32 on (the default)"
        )
    providers = [str(p) for p in run.environment.get("providers") or ()]
    if run.backend == "onnxruntime" and any("CUDA" in p for p in providers):
        return True, "ONNX Runtime's CUDA provider allows TF32 by default"
    on = bool(run.config.tf32)
    return on, (
        f"the run's {run.config.precision} build allows TF32"
        if on
        else f"the run's {run.config.precision} build has TF32 off (--noTF32)"
    )


# ---- work per layer ------------------------------------------------------------------------------------------


def _profiled_shapes(run) -> dict:
    shapes = dict(run.extra.get("shapes") or {})
    if not shapes:
        shapes = {k: tuple(v) for k, v in run.config.shape_map.items()}
    for t in run.inputs:
        if t.name not in shapes and t.shape and all(isinstance(d, int) and d > 0 for d in t.shape):
            shapes[t.name] = tuple(t.shape)
    return shapes


def _shapes_in_layers(run, model) -> dict:
    """Input name -> the shape recorded by a profiled layer whose first node reads it (its ``input_shapes`` list
    that node's inputs in order), where that shape fits the model's declared dimensions."""
    if "input_shapes" not in run.layers.columns:
        return {}
    declared = {t.name: tuple(t.shape) for t in model.inputs}
    readers = {
        node.name: [(i, name) for i, name in enumerate(node.input) if name in declared]
        for node in model.proto.graph.node
        if node.name and any(name in declared for name in node.input)
    }
    found = {}
    for row in run.layers[["onnx_nodes", "input_shapes"]].itertuples(index=False):
        nodes = list(row.onnx_nodes or ())
        if not nodes or nodes[0] not in readers:  # a fused layer lists its first node's inputs first
            continue
        texts = [t.strip() for t in str(row.input_shapes or "").split(";")]
        for position, name in readers[nodes[0]]:
            dims = texts[position].split("x") if position < len(texts) else []
            if name in found or not dims or not all(d.isdigit() for d in dims) or len(dims) != len(declared[name]):
                continue
            shape = tuple(int(d) for d in dims)
            if all(not isinstance(d, int) or d == s for d, s in zip(declared[name], shape)):
                found[name] = shape
    return found


def _model_shapes(run, model, notes: list) -> dict:
    """The profiled shape of each model input; inputs the run does not record get the workbench's defaults (what
    ``profile`` feeds when given no shapes), and a note says so."""
    from ..model.inputs import resolve_shapes

    names = {t.name for t in model.inputs}
    shapes = {k: v for k, v in _profiled_shapes(run).items() if k in names}
    seen = {k: v for k, v in _shapes_in_layers(run, model).items() if k not in shapes}
    if seen:
        notes.append(
            "The run does not record the shape of "
            + ", ".join(f"'{k}' ({format_shape(v)})" for k, v in seen.items())
            + ": read from the profiled layers that take it."
        )
        shapes.update(seen)
    assumed = resolve_shapes(model, shapes)
    guessed = {
        k: v
        for k, v in assumed.items()
        if k not in shapes and v != tuple(d for d in next(t.shape for t in model.inputs if t.name == k))
    }
    if guessed:
        notes.append(
            "The run does not record the shape of "
            + ", ".join(f"'{k}'" for k in guessed)
            + ": counted at "
            + ", ".join(format_shape(v) for v in guessed.values())
            + " (the workbench's default)."
        )
    return assumed


def _run_model(run, model):
    """The ONNX model behind ``run`` (the precision variant first), or (None, why not)."""
    from ..model.onnx_model import Model, load_model

    if model is not None:
        return (model if isinstance(model, Model) else load_model(model)), ""
    variant = run.artifact("onnx")
    for candidate in (variant, run.model.get("path")):
        if candidate and Path(candidate).is_file():
            try:
                loaded = load_model(candidate)
            except WorkbenchError as e:
                return None, f"its ONNX model '{candidate}' could not be read ({e})"
            if variant and candidate != variant:
                return loaded, (
                    f"its {run.precision} variant ('{variant}') is not here: bytes are counted at the "
                    "source model's precision"
                )
            return loaded, ""
    where = run.model.get("path") or "unknown"
    return None, f"its ONNX model is not here ({where})"


def _layer_info_layers(run) -> dict[str, dict]:
    path = run.artifact("layer_info")
    if path is None or not Path(path).is_file():
        return {}
    from ..results.layerinfo import load_json, strip_profile_suffix

    try:
        doc = load_json(path)
    except WorkbenchError:
        return {}
    layers = doc if isinstance(doc, list) else doc.get("Layers", []) if isinstance(doc, dict) else []
    return {strip_profile_suffix(str(layer.get("Name", ""))): layer for layer in layers if isinstance(layer, dict)}


def _work(flops: float, nbytes: float, matrix: bool, precision: str, note: str = "", **more) -> dict:
    """A layer's work: ``flops``, ``bytes``, ``matrix`` (runs on the matrix units), ``precision``, ``note`` (why a
    figure is missing, or how it was counted) and, where given, ``work_from``."""
    return {"flops": flops, "bytes": nbytes, "matrix": matrix, "precision": precision, "note": note, **more}


def layer_info_work(layer: dict) -> dict:
    """FLOPs and bytes of one engine layer from TensorRT's layer information (``--exportLayerInfo`` detailed).

    Convolutions: 2 × output elements × (weights / output maps) plus bias, fused residual inputs and activation,
    one operation per output element each (as the ONNX counts do); a strided convolution or pool reads only the
    part of its input its windows touch (:func:`~workbench.model.node_cost.strided_read_fraction`), a Slice only
    the elements it returns.
    Myelin ``gemm`` layers (TensorRT 10+): 2 × output elements × K plus a bias. Pooling: output elements × window.
    Reformats and shuffles: bytes only; ``NoOp`` layers move nothing. Other types (Myelin regions, kgen kernels)
    carry no dimensions to count from: NaN with a note.
    """
    from ..model.node_cost import strided_read_fraction
    from ..results.layerinfo import dtype_of, layer_weights, tensor_dims, tensor_size

    kind = str(layer.get("LayerType") or "")
    ptype = str(layer.get("ParameterType") or kind)
    inputs = [t for t in layer.get("Inputs") or () if isinstance(t, dict)]
    outputs = [t for t in layer.get("Outputs") or () if isinstance(t, dict)]
    in_bytes = sum(tensor_size(t)[1] for t in inputs)
    out_bytes = sum(tensor_size(t)[1] for t in outputs)
    _, weight_bytes = layer_weights(layer)
    out_elems = tensor_size(outputs[0])[0] if outputs else 0
    in_elems = tensor_size(inputs[0])[0] if inputs else 0
    window, stride = layer.get("Kernel") or layer.get("WindowSize"), layer.get("Stride")
    if ptype in ("Convolution", "Pooling") and window and stride and inputs and outputs:
        rank = len(window)  # a strided window reads only part of its input (a 1×1 of stride 2: a quarter)
        share = strided_read_fraction(
            tensor_dims(inputs[0])[-rank:], tensor_dims(outputs[0])[-rank:], window, stride, layer.get("Dilation")
        )
        in_bytes -= (1.0 - share) * tensor_size(inputs[0])[1]
    elif ptype == "Slice" and inputs and outputs:  # reads only the elements it returns
        in_bytes -= max(0, tensor_size(inputs[0])[1] - tensor_size(outputs[0])[1])
    total = float(in_bytes + out_bytes + weight_bytes)
    weights = layer.get("Weights") if isinstance(layer.get("Weights"), dict) else {}
    precision = dtype_of(str(weights.get("Type", "")))[0] if weights else ""
    if kind == "NoOp":
        return _work(0.0, 0.0, False, precision, "no data moved")
    if ptype == "Convolution" and weights and outputs:
        out_maps = int(layer.get("OutMaps") or (tensor_dims(outputs[0])[1] if len(tensor_dims(outputs[0])) > 1 else 0))
        if not out_maps:
            return _work(math.nan, total, True, precision, "convolution without output maps")
        flops = 2.0 * out_elems * int(weights.get("Count", 0)) / out_maps
        flops += out_elems * (
            bool(layer.get("HasBias"))
            + (len(inputs) - 1)
            + (str(layer.get("Activation", "NONE")).upper() not in ("", "NONE"))
        )
        return _work(flops, total, True, precision)
    if ptype == "Deconvolution" and weights and inputs:
        channels = tensor_dims(inputs[0])[1] if len(tensor_dims(inputs[0])) > 1 else 0
        flops = 2.0 * in_elems * int(weights.get("Count", 0)) / channels if channels else math.nan
        return _work(flops, total, True, precision)
    if ptype == "MatrixMultiply" and len(inputs) >= 2:
        a = tensor_dims(inputs[0])
        transposed = "TRANSPOSE" in str(layer.get("MatrixOpA", "")).upper()
        k = a[-2] if transposed and len(a) > 1 else (a[-1] if a else 0)
        return _work(2.0 * out_elems * k, total, True, precision)
    if kind == "gemm" and inputs and outputs:  # a Myelin GEMM (TensorRT 10+): activation [.., M, K] × constant
        k = tensor_dims(inputs[0])[-1] if tensor_dims(inputs[0]) else 0
        out_dims = tensor_dims(outputs[0])
        biases = sum(1 for c in layer.get("Constants") or () if isinstance(c, dict) and tensor_dims(c) == out_dims)
        precision = dtype_of(str(inputs[0].get("Datatype", "")))[0]
        return _work(
            2.0 * out_elems * k + biases * out_elems, total, True, precision, "fused epilogue activations not counted"
        )
    if ptype == "Pooling":
        window = layer.get("WindowSize") or []
        return _work(float(out_elems * math.prod(int(w) for w in window)), total, False, precision)
    if ptype in ("Reformat", "Shuffle", "Slice", "Concatenation", "Gather", "Identity", "Cast", "Padding"):
        return _work(0.0, total, False, precision)
    per_element = {
        "ElementWise": 1,
        "Activation": 1,
        "Unary": 1,
        "Scale": 2,
        "SoftMax": 5,
        "Normalization": 7,
        "Reduce": None,
        "Quantize": 2,
        "Dequantize": 2,
    }
    if ptype in per_element:
        flops = float(in_elems) if per_element[ptype] is None else float(per_element[ptype] * max(out_elems, in_elems))
        return _work(flops, total, False, precision)
    return _work(
        math.nan,
        math.nan,
        False,
        precision,
        f"TensorRT layer type {kind or '?'} ({ptype}): its work is not in the layer information; import the run "
        "with its ONNX model to count it",
    )


def _matrix_precision(row, work_precision: str) -> str:
    """The precision of a matrix layer's math: int8 / fp8 inputs win, else the layer table's, else the work's."""
    formats = str(row.get("input_formats", "")).lower() if isinstance(row, dict) else ""
    if "int8" in formats or work_precision == "int8":
        return "int8"
    if "fp8" in formats or work_precision == "fp8":
        return "fp8"
    return row.get("precision") or work_precision or "fp32"


#: The suffix ONNX Runtime's QDQ transformer gives the copy of a DequantizeLinear it makes for each extra reader.
_ORT_DUPLICATE = "/duplicated"


#: Layer types of ONNX Runtime's CPU emulation of a quantized or reduced-precision graph that TensorRT fuses into
#: its kernels (Q/DQ pairs into the quantized layer around them, a weight's DQ into the stored weights).
_QDQ_TYPES = {"QuantizeLinear", "DequantizeLinear"}
#: Types of the layers ONNX Runtime's CPU provider inserts itself, in no node of the graph: layout reorders, casts
#: around FP16 ops it has no CPU kernel for, the arithmetic that quantizes a quantized convolution's bias.
_INSERTED_TYPES = MOVE_TYPES | {"ReorderInput", "ReorderOutput", "Mul", "Div", "Round"}
#: ``work_from`` of a layer that the target engine fuses away (see :func:`_fused_on_target`).
FUSED_ON_TARGET = "fused on target"


def _emulated_on_cpu(run, dev: Device) -> bool:
    """An ONNX Runtime run on the CPU held against a GPU: TensorRT, not ONNX Runtime, is the target's engine."""
    providers = [str(p) for p in run.environment.get("providers") or ()]
    on_gpu = any("CUDA" in p or "Tensorrt" in p for p in providers)
    return dev.kind == "gpu" and run.backend == "onnxruntime" and not on_gpu


def _qdq_casts(proto) -> set[str]:
    """Cast nodes next to a Q/DQ pair (reading a DequantizeLinear's output, or read only by QuantizeLinear):
    TensorRT fuses them with the pair."""
    graph = proto.graph
    producer = {out: n.op_type for n in graph.node for out in n.output}
    readers: dict[str, list[str]] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n.op_type)
    return {
        n.name
        for n in graph.node
        if n.op_type == "Cast"
        and (
            producer.get(n.input[0]) == "DequantizeLinear"
            or (readers.get(n.output[0]) and set(readers[n.output[0]]) == {"QuantizeLinear"})
        )
    }


def _fused_on_target(row: dict, nodes: list, model_work, casts: set[str]) -> str:
    """Why an ONNX Runtime CPU layer is no traffic on a GPU's TensorRT engine ("" when it is): a Q/DQ node, a
    Cast next to one, or a layer ONNX Runtime inserted itself (no node of the graph: its layout reorders, the casts
    around FP16 ops it has no CPU kernel for, its quantized-bias arithmetic)."""
    kind = str(row.get("type", ""))
    if kind in _QDQ_TYPES:
        return f"{kind}: TensorRT fuses it into the quantized layers around it"
    if nodes and set(nodes) <= casts:
        return "a Cast next to a Q/DQ pair: TensorRT fuses it with the pair"
    if not nodes and model_work is not None and kind in _INSERTED_TYPES:
        return f"inserted by ONNX Runtime on the CPU ({kind}; no node of the graph): not in TensorRT's engine"
    return ""


def _elementwise_from_table(row: dict) -> dict | None:
    """An elementwise layer no ONNX node names (ONNX Runtime expands a function such as HardSwish into unnamed
    HardSigmoid and Mul nodes): its work from the shapes it ran at, one FLOP per output element, each input and
    output read or written once at the layer's float precision. None where the shapes or precision are not known."""
    size = _FLOATS_BYTES.get(str(row.get("precision", "")))

    def elements(text) -> list[int] | None:
        parts = [p.strip() for p in str(text or "").split(";") if p.strip()]
        dims = [p.split("x") if p != "scalar" else [] for p in parts]
        if not parts or not all(d.isdigit() for shape in dims for d in shape):
            return None
        return [math.prod(int(d) for d in shape) for shape in dims]

    ins, outs = elements(row.get("input_shapes")), elements(row.get("output_shapes"))
    if size is None or ins is None or outs is None:
        return None
    note = "an elementwise layer in no ONNX node (ONNX Runtime expanded a function): counted from its shapes"
    return _work(
        float(sum(outs)),
        float(size * (sum(ins) + sum(outs))),
        False,
        row.get("precision", ""),
        note,
        work_from="layer table",
    )


def _layer_work(run, model_work, info_layers, why_no_model, fused_casts: set[str] | None = None) -> list[dict]:
    """The work of each layer; ``fused_casts`` (an ONNX Runtime CPU run held against a GPU: the Casts TensorRT
    fuses with Q/DQ pairs) puts the device's real path first: constants folded, the emulation layers TensorRT
    fuses away at no work (``work_from`` :data:`FUSED_ON_TARGET`)."""
    from ..results.layerinfo import strip_profile_suffix

    target = fused_casts is not None
    # ONNX Runtime runs every node its profile lists, constants or not; a GPU's TensorRT engine folds them
    engine_folds = target or run.backend != "onnxruntime"
    rows = []
    for row in run.layers.to_dict("records"):
        nodes = list(row.get("onnx_nodes") or [])
        kind = row.get("type", "")
        named = str(row["name"]).removesuffix(_ORT_DUPLICATE)  # ONNX Runtime's copy of a DQ per reader is that DQ
        if not nodes and model_work is not None and named in model_work.node_names:
            nodes = [named]  # a layer named after a model node (ONNX Runtime keeps node names) is that node
        fused = _fused_on_target(row, nodes, model_work, fused_casts) if target else ""
        if fused:
            work = _work(
                0.0,
                0.0,
                False,
                row.get("precision") or "",
                f"not on the GPU's path: {fused}",
                work_from=FUSED_ON_TARGET,
            )
            rows.append({"name": row["name"], "type": kind, "time_ms": row["time_ms"], **work})
            continue
        result = None
        if model_work is not None and nodes:
            g = model_work.group(nodes, engine_folds=engine_folds)
            if not g["missing"] and not math.isnan(g["flops"]):
                result = _work(g["flops"], g["bytes"], g["matrix"], g["precision"], g["note"], work_from="onnx")
            elif g["missing"]:
                result = {
                    "note": f"{len(g['missing'])} of its ONNX nodes are not in the model "
                    f"({', '.join(g['missing'][:2])})"
                }
            else:
                result = {"note": g["note"] or "the work of its ONNX nodes is not known at the profiled shapes"}
        if (result is None or "work_from" not in result) and info_layers:
            layer = info_layers.get(strip_profile_suffix(str(row.get("name", ""))))
            if layer is not None:
                w = layer_info_work(layer)
                result = {**w, "work_from": "layer info" if not math.isnan(w["flops"]) else "unknown"}
        if (result is None or "work_from" not in result) and (
            not nodes and run.backend == "onnxruntime" and kind in VIEW_OPS
        ):  # a view ONNX Runtime inserted around a fusion (Reshape → Gemm → Reshape): its output aliases its input
            note = f"a {kind} ONNX Runtime inserted: its output aliases its input, no data moves"
            result = _work(0.0, 0.0, False, row.get("precision", ""), note, work_from="layer table")
        if (result is None or "work_from" not in result) and not nodes and kind in ELEMENTWISE_OPS:
            result = _elementwise_from_table(row) or result
        if (result is None or "work_from" not in result) and (
            kind in MOVE_TYPES or not nodes and kind in ("Reformat", "NoOp")
        ):
            moved = float(row.get("input_bytes", 0) or 0) + float(row.get("activation_bytes", 0) or 0)
            if moved:
                result = _work(0.0, moved, False, row.get("precision", ""), work_from="layer table")
        if result is None or "work_from" not in result:
            why = (result or {}).get("note") or (
                "no ONNX nodes are known for this layer"
                if not nodes
                else f"not counted: {why_no_model}"
                if why_no_model
                else "not counted: no ONNX model or layer information gives its work"
            )
            result = _work(math.nan, math.nan, kind in _MATRIX_TYPES, "", why, work_from="unknown")
        ran, graph = row.get("precision", ""), result.get("precision", "")
        if result.get("work_from") == "onnx" and {ran, graph} <= _FLOATS and ran != graph:
            if _FLOATS_BYTES[ran] < _FLOATS_BYTES[graph]:  # a weakly typed build: the engine moves the narrower type
                result["bytes"] *= _FLOATS_BYTES[ran] / _FLOATS_BYTES[graph]
                ran_note = f"bytes scaled from the graph's {graph} to the {ran} the engine ran"
            else:  # the backend widened it (ONNX Runtime's CPU kernels): the graph's precision is the minimum
                ran_note = f"bytes at the graph's {graph}; the backend ran it in {ran}"
            result["note"] = "; ".join(filter(None, [result.get("note"), ran_note]))
        result["matrix"] = bool(result.get("matrix")) or kind in _MATRIX_TYPES
        if target and result.get("work_from") == "onnx" and graph:
            row = {**row, "precision": graph}  # TensorRT runs the graph's types, not the CPU kernels' widening
        result["precision"] = (
            _matrix_precision(row, result.get("precision", ""))
            if result["matrix"]
            else row.get("precision") or result.get("precision") or "fp32"
        )
        rows.append({"name": row["name"], "type": kind, "time_ms": row["time_ms"], **result})
    return rows


def above_roof(df: pd.DataFrame, dev: Device) -> pd.DataFrame:
    """The layers above the roof that applies to them by more than the roof's tolerance (``dev.tolerance_pct``:
    timer noise, a measured roof's spread): each is a real inconsistency between its time, its counted work and
    the roof. A memory-bound layer whose bytes fit in a cache of unknown bandwidth (a GPU without an L2 figure)
    has no known roof: it is held against DRAM's for its limit, but never among these."""
    return df[(df["pct_of_roof"] > 100.0 + dev.tolerance_pct) & ~_unjudged(df, dev) & ~_partly_cached(df, dev)]


def _unjudged(df: pd.DataFrame, dev: Device) -> pd.Series:
    """Memory-bound layers whose bytes fit in a cache of unknown bandwidth."""
    return (df["bound"] == "memory") & df["bytes"].map(dev.in_unknown_cache)


def _partly_cached(df: pd.DataFrame, dev: Device) -> pd.Series:
    """Memory-bound layers held against DRAM (their bytes exceed the cache) whose time still allows DRAM for the
    bytes the cache cannot hold: up to a cache-full of a layer's bytes (the input the previous layer just wrote)
    can come from the cache, so the least time the hardware allows is ``(bytes − cache) / DRAM + cache / cache
    bandwidth`` (the cache part free where its bandwidth is not known), and a layer above DRAM's roof but within
    that bound proves nothing."""
    if not dev.cache_bytes:
        return pd.Series(False, index=df.index)
    cached = df["bytes"].clip(upper=dev.cache_bytes)
    least_ms = 1000.0 * ((df["bytes"] - cached) / dev.bandwidth + cached / (dev.cache_bandwidth or np.inf))
    within = df["time_ms"] * (1.0 + dev.tolerance_pct / 100.0) >= least_ms
    beyond = df["bytes"] > dev.cache_bytes
    return (df["bound"] == "memory") & (df["memory_roof"] == "DRAM") & beyond & (df["pct_of_roof"] > 100.0) & within


def _above_roof_notes(df: pd.DataFrame, dev: Device) -> list[str]:
    """Where layers stand against the roofs: memory-bound layers above DRAM's bandwidth within the cache roof (their
    data stays in the cache: no inconsistency), layers whose data fits a cache of unknown bandwidth (not judged),
    and the layers above the roof that applies to them, by kind: a compute-bound one beats the peak, a memory-bound
    one the cache's or DRAM's bandwidth; said in the notes and in each such layer's ``note``."""
    figures = "measured" if dev.kind == "cpu" else "published"
    tolerance = 100.0 + dev.tolerance_pct

    def names(rows):
        return ", ".join(rows["name"][:3]) + ("…" if len(rows) > 3 else "")

    def mark(rows, cause):
        df.loc[rows.index, "note"] = [f"{n}; {cause}" if n else cause for n in df.loc[rows.index, "note"].fillna("")]

    notes = []
    memory = df[df["bound"] == "memory"]
    with np.errstate(divide="ignore", invalid="ignore"):
        dram_pct = 100.0 * df["bytes"] / dev.bandwidth / (df["time_ms"] / 1000.0)
    in_cache = memory[(memory["memory_roof"] == dev.cache_name) & (dram_pct[memory.index] > tolerance)]
    in_cache = in_cache[in_cache["pct_of_roof"] <= tolerance]
    mark(in_cache, f"above DRAM's bandwidth, within the {dev.cache_name} roof: its data stays in the cache")
    if len(in_cache):
        notes.append(
            f"Within the {dev.cache_name} roof: {len(in_cache)} memory-bound layers ({names(in_cache)}) move data "
            f"faster than DRAM allows; their bytes fit in the {dev.cache_bytes / 2**20:g} MiB {dev.cache_name}, so "
            f"they are held against its {dev.cache_bandwidth / 1e9:.4g} GB/s ({dev.cache_source})."
        )
    unjudged = df[_unjudged(df, dev) & (df["pct_of_roof"] > tolerance)]
    mark(unjudged, "above DRAM's bandwidth; its bytes fit in the cache, whose bandwidth is not known: not judged")
    if len(unjudged):
        notes.append(
            f"Not judged: {len(unjudged)} memory-bound layers ({names(unjudged)}) run above DRAM's bandwidth and move "
            f"no more than the {dev.cache_bytes / 2**20:g} MiB {dev.cache_name} holds, whose bandwidth is not known "
            f"for {dev.name}: DRAM is not their roof and no cache roof is known."
        )
    partly = df[_partly_cached(df, dev) & (df["pct_of_roof"] > tolerance)]
    mark(partly, f"above DRAM's bandwidth, within it for the bytes beyond the {dev.cache_name}: the rest can be in it")
    if len(partly):
        notes.append(
            f"Partly in the {dev.cache_name}: {len(partly)} memory-bound layers ({names(partly)}) move more than the "
            f"{dev.cache_bytes / 2**20:g} MiB {dev.cache_name} holds and beat DRAM's bandwidth for all their bytes, "
            f"but not for the bytes beyond a cache-full: their input, just written by the layer before, can be read "
            f"from the {dev.cache_name}. No inconsistency is proven."
        )
    above = above_roof(df, dev)
    compute = above[above["bound"] == "compute"]
    mark(compute, f"above the roof: its FLOP/s beat the {figures} peak")
    if len(compute):
        notes.append(
            f"Above the roof, compute-bound: {len(compute)} layers ({names(compute)}) do their FLOPs faster than the "
            f"{figures} peak allows: their time is too short, their FLOPs over-counted, or the peak is low."
        )
    cached = above[(above["bound"] == "memory") & (above["memory_roof"] == dev.cache_name)]
    mark(cached, f"above the {dev.cache_name} roof: it moves its bytes faster than the cache's bandwidth")
    if len(cached):
        notes.append(
            f"Above the {dev.cache_name} roof: {len(cached)} memory-bound layers ({names(cached)}) fit in the "
            f"{dev.cache_bytes / 2**20:g} MiB {dev.cache_name} yet beat its {dev.cache_bandwidth / 1e9:.4g} GB/s: their "
            "counted bytes are more than they move, their time is too short, or the cache roof is low."
        )
    beyond = above[(above["bound"] == "memory") & (above["memory_roof"] == "DRAM")]
    mark(beyond, "above the roof without a proven cause: its bytes do not fit in the cache")
    if len(beyond):
        where = (
            f"each moves more than the {dev.cache_bytes / 2**20:g} MiB {dev.cache_name} holds, so the cache does not "
            "explain it"
            if dev.cache_bytes
            else "the cache size of this device is not known"
        )
        notes.append(
            f"Above the roof without a proven cause: {len(beyond)} memory-bound layers ({names(beyond)}); {where}: "
            f"their counted bytes are more than they move (the work), their time is too short, or the {figures} "
            "DRAM bandwidth is low (the roof)."
        )
    return notes


def _lower_bound_note(df: pd.DataFrame, dev: Device, lower_bound: float, measured: float) -> str:
    """Which is wrong when the lower bound exceeds the measured latency: the roof or the work, from where the layers
    above the roof that applies to them are."""
    above = df[df["pct_of_roof"] > 100]
    excess = (above["limit_ms"] - above["time_ms"]).groupby(above["bound"]).sum()
    compute, memory = float(excess.get("compute", 0.0)), float(excess.get("memory", 0.0))
    figures = "measured" if dev.kind == "cpu" else "published"
    if compute >= memory:
        which = (
            f"the roof: compute-bound layers run faster than the {figures} peak allows "
            f"({compute:.4g} ms of the excess)"
            + ("; measure the CPU again with --remeasure when it is idle" if dev.kind == "cpu" else "")
        )
    elif not dev.cache_bytes:
        which = (
            f"the roof or the work: memory-bound layers beat the {figures} DRAM bandwidth ({memory:.4g} ms of the "
            "excess) and the cache size of this device is not known, so the cache cannot be ruled in or out"
        )
    elif float((above["limit_ms"] - above["time_ms"])[_unjudged(above, dev)].sum()) >= memory / 2:
        which = (
            f"the roof: memory-bound layers whose data fits in the {dev.cache_bytes / 2**20:g} MiB {dev.cache_name}, "
            f"whose bandwidth is not known, run faster than DRAM bandwidth allows ({memory:.4g} ms of the excess)"
        )
    else:
        which = (
            f"the work: memory-bound layers beat the bandwidth of the memory roof that applies to them (the "
            f"{dev.cache_name}'s where their bytes fit in it, else DRAM's; {memory:.4g} ms of the excess): their "
            "bytes are over-counted"
        )
    return (
        f"The lower bound ({lower_bound:.4g} ms) exceeds the measured latency ({measured:.4g} ms), so the roof or "
        f"the work is wrong here; it is {which}."
    )


def _hold(rows: list[dict], dev: Device, tf32: bool = False) -> pd.DataFrame:
    """The layers' work against ``dev`` (FP32 matrix layers at the TF32 peak when ``tf32``): every column of
    :data:`ROOFLINE_COLUMNS`."""
    df = pd.DataFrame(rows)
    peaks = [dev.peak(p, m, tf32=tf32) for p, m in zip(df["precision"], df["matrix"])]
    df["peak_flops"] = [p for p, _ in peaks]
    df["peak_from"] = [label for _, label in peaks]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_s = df["time_ms"].astype(float) / 1000.0
        df["intensity"] = np.where(df["bytes"] > 0, df["flops"] / df["bytes"], np.nan)
        df["attained_flops"] = np.where(t_s > 0, df["flops"] / t_s, np.nan)
        df["attained_bandwidth"] = np.where(t_s > 0, df["bytes"] / t_s, np.nan)
        roofs = [dev.memory_roof(b) if b == b else (dev.bandwidth, "DRAM") for b in df["bytes"]]
        df["roof_bandwidth"] = [bandwidth for bandwidth, _ in roofs]
        df["memory_roof"] = [name for _, name in roofs]
        compute_s = df["flops"] / df["peak_flops"]
        memory_s = df["bytes"] / df["roof_bandwidth"]
        df["roof_flops"] = np.minimum(df["peak_flops"], df["intensity"] * df["roof_bandwidth"])
        df["limit_ms"] = np.fmax(compute_s, memory_s).where(compute_s.notna() & memory_s.notna()) * 1000.0
        df["pct_of_roof"] = np.where(df["time_ms"] > 0, 100.0 * df["limit_ms"] / df["time_ms"], np.nan)
        idle = df["limit_ms"].isna() | ((df["flops"] == 0) & (df["bytes"] == 0))
        df["bound"] = np.where(idle, "", np.where(compute_s > memory_s, "compute", "memory"))
        df["above_limit_ms"] = df["time_ms"] - df["limit_ms"]
    no_work = (df["flops"] == 0) & (df["bytes"] == 0)  # shape arithmetic, views: no kernel could do it faster
    df.loc[no_work, ["pct_of_roof", "above_limit_ms"]] = np.nan
    df.loc[no_work & (df["note"].fillna("") == ""), "note"] = "no work on data (shape arithmetic or a view)"
    df = df[list(ROOFLINE_COLUMNS)]
    return df


def roofline(run, device: str | Device | None = None, model=None) -> Roofline:
    """Hold ``run``'s layers against ``device`` (default: the run's GPU by name, or this CPU measured).

    ``model`` (a Model or an ONNX path) gives the nodes' work when the run's own model file is elsewhere.
    """
    if run.layers is None or not len(run.layers):
        raise WorkbenchError(
            f"Run '{run.name}' has no per-layer times: import its layer profile (trtexec --exportProfile or "
            "--dumpProfile output) or profile it again to see its roofline."
        )
    dev = run_device(run, device)
    notes = list(dev.notes)
    model_obj, why = _run_model(run, model)
    work = None
    if model_obj is not None:
        from ..model.node_cost import model_work

        # the shapes ONNX Runtime ran each tensor at come first; inference at the profiled inputs fills the rest
        work = model_work(model_obj, _model_shapes(run, model_obj, notes), executed=run.extra.get("tensor_shapes"))
    info_layers = _layer_info_layers(run)
    if work is not None and why:
        notes.append(f"Work per layer from the ONNX model, but {why}.")
    if work is None:
        notes.append(
            f"Work per layer from {'TensorRT layer information' if info_layers else 'the layer table'}: {why}."
        )
    emulated = _emulated_on_cpu(run, dev)
    fused_casts = (_qdq_casts(model_obj.proto) if model_obj is not None else set()) if emulated else None
    rows = _layer_work(run, work, info_layers, why, fused_casts)
    tf32, tf32_why = tf32_allowed(run)
    df = _hold(rows, dev, tf32)
    lat = run.latency
    lower_bound = float(df["limit_ms"].sum(min_count=1))
    fused = df[df["work_from"] == FUSED_ON_TARGET]
    if len(fused):
        counts = fused["type"].astype(str).value_counts()
        notes.append(
            f"Not on {dev.name}'s path: {len(fused)} layers of this ONNX Runtime CPU run ("
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"; {float(fused['time_ms'].sum()):.4g} ms of its layer time) are Q/DQ nodes and the Casts next to "
            "them, which TensorRT fuses into the quantized layers, or layers ONNX Runtime inserted itself (layout "
            "reorders, casts around FP16 ops, quantized-bias arithmetic): they count no traffic in the lower bound."
        )
    notes += _above_roof_notes(df, dev)
    if lat and lat.mean_ms and lower_bound > lat.mean_ms:
        notes.append(_lower_bound_note(df, dev, lower_bound, lat.mean_ms))
    layer_time = float(df["time_ms"].sum())
    if lat and lat.mean_ms and layer_time > 1.1 * lat.mean_ms:
        notes.append(
            f"The profiled layer times sum to {100 * layer_time / lat.mean_ms:.0f}% of the timed mean latency "
            f"({layer_time:.4g} ms against {lat.mean_ms:.4g} ms): the profiler times each layer on its own "
            "(a synchronisation per layer, no overlap), so every layer's % of the roof is measured against its "
            "profiled time, and the lower bound against the timed latency."
        )
    if dev.kind == "gpu" and any(r["matrix"] and r["precision"] == "fp32" for r in rows):
        notes.append(
            f"FP32 matrix layers are held against the TF32 Tensor Core peak: {tf32_why}."
            if tf32
            else f"FP32 matrix layers are held against the FP32 peak, not TF32's: {tf32_why}."
        )
    return Roofline(
        run_name=run.name,
        device=dev,
        layers=df,
        measured_ms=lat.mean_ms if lat else None,
        layer_time_ms=layer_time,
        lower_bound_ms=lower_bound,
        notes=tuple(notes),
        time_source=run.time_source_label,
    )


__all__ = ["ROOFLINE_COLUMNS", "Roofline", "above_roof", "layer_info_work", "roofline", "run_device"]
