"""What a precision transform changed: the source and variant graphs compared node by node, plus ModelOpt's log.

``describe_changes`` returns the ``Variant.changes`` dict::

    {"tool": "ModelOpt AutoCast 0.47.0",
     "summary": "fp16 140, fp32 1, other 33; 2 Cast inserted",          # one line for tables
     "nodes": {"source": 145, "variant": 147},
     "nodes_by_precision": {"fp16": 140, "fp32": 1, "other": 4},       # source nodes by the precision they compute in
     "inserted": {"Cast": 2, "QuantizeLinear": 7, "DequantizeLinear": 7},
     "removed": [...],                                                  # source nodes the tool dropped (Identity...)
     "qdq_pairs": 7, "quantized_weights": 3, "quantized_activations": 4,    # int8/fp8 only
     "quantized_nodes": [...], "not_quantized": [{"node", "op_type", "reason"}],   # int8/fp8 only
     "kept_fp32": [{"node", "op_type", "reason"}],
     "opset": {"source": 17, "variant": 19}, "warnings": [...]}

A node's precision: ``int8``/``fp8`` when it reads a DequantizeLinear output (TensorRT runs it quantized), otherwise
the float type of its outputs (``fp32``, ``fp16``, ``bf16``; of its inputs when no output is a float), ``other``
for integer and shape computations.
"""

from __future__ import annotations

import ast
import collections
import re

from ..config import Precision
from ..model.node_cost import precision_label
from ..model.onnx_model import graph_weights

#: Op types ModelOpt PTQ quantizes for compute (the ones whose being left out is worth a reason).
COMPUTE_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_WIDEST_FIRST = ("fp64", "fp32", "bf16", "fp16")  # the float precisions a node computes in
_SKIP = re.compile(r"Skipping node (\S+): (.*)$")
_UNSUPPORTED = re.compile(r"ops are not supported in '(\w+)' in opset (\d+).*?(\{.*\})")
_LISTS = {
    r"Matmul nodes to exclude: (\[.*\])": "GEMV (M or N is 1 at the calibration shapes): ModelOpt leaves it "
    "unquantized because TensorRT runs it faster in high precision",
    r"Matmul nodes From MHA to exclude: (\[.*\])": "attention MatMul left out by ModelOpt's MHA rule",
}
_SINGLES = {  # "{0}" is the detail ModelOpt logged in parentheses, when it logs one
    r"Skipped quantizing conv: (\S+) due to non-constant weight()": "Conv with a non-constant weight",
    r"Found Conv with I/O channel size less than 16: (\S+)()": "Conv with fewer than 16 input or output channels",
    r"Found large filter conv for FP8: (\S+)()": "Conv filter larger than 32 taps (FP8 rule)",
    r"Excluding small-channel Conv from FP8 quantization: (\S+) \((.*)\)": "small-channel Conv (FP8 rule)",
    r"Excluding small-dim MatMul from quantization: (\S+) \((.*)\)": "small MatMul/Gemm ({0}): ModelOpt leaves "
    "it unquantized",
}


def describe_changes(source, variant, precision: str, options: dict, log: str, tool: str) -> dict:
    """Compare ``source`` and ``variant`` (onnx.ModelProto) and explain the differences using ModelOpt's ``log``."""
    types = _tensor_types(variant)
    producers = {o: n for n in variant.graph.node for o in n.output}
    variant_nodes = {n.name: n for n in variant.graph.node}
    source_names = {n.name for n in source.graph.node}
    quantized = Precision(precision).quantized

    precision_of = {}
    for node in source.graph.node:
        vnode = variant_nodes.get(node.name)
        if vnode is not None:
            precision_of[node.name] = _node_precision(vnode, types, producers, precision if quantized else None)
    by_precision = collections.Counter(precision_of.values())
    inserted = collections.Counter(n.op_type for n in variant.graph.node if n.name not in source_names)
    # unnamed source nodes cannot be matched by name (the variant names them): not listed as removed
    removed = [n.name for n in source.graph.node if n.name and n.name not in variant_nodes]
    fp32_reasons = _fp32_reasons(log, source, options, quantized)
    kept_fp32 = [
        {"node": n.name, "op_type": n.op_type, "reason": fp32_reasons(n)}
        for n in source.graph.node
        if precision_of.get(n.name) == "fp32"
    ]

    changes: dict = {
        "tool": tool,
        "nodes": {"source": len(source.graph.node), "variant": len(variant.graph.node)},
        "nodes_by_precision": dict(by_precision.most_common()),
        "inserted": dict(inserted.most_common()),
        "removed": removed,
        "kept_fp32": kept_fp32,
        "opset": {"source": _opset(source), "variant": _opset(variant)},
        "warnings": _warnings(log),
    }
    if quantized:
        changes.update(_quantization(source, variant, precision_of, precision, options, log))
        if not changes["quantized_nodes"]:
            changes["warnings"].insert(
                0,
                f"no node was quantized to {precision}: the variant computes in "
                f"{options.get('high_precision_dtype')} (see not_quantized for why)",
            )
    changes["summary"] = _summary(changes)
    return changes


# ---- node precisions ----------------------------------------------------------------------------------------


def _tensor_types(model) -> dict[str, int]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - partial types are still useful; shape inference is best effort here
        inferred = model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    types.update({name: t.data_type for name, t in graph_weights(g)})
    return types


def _node_precision(node, types, producers, quantized_precision) -> str:
    if quantized_precision and any(
        producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in node.input
    ):
        return quantized_precision
    for tensors in (node.output, node.input if node.op_type not in ("Shape", "Size") else ()):
        floats = [p for t in tensors if (p := precision_label(types.get(t, 0))) in _WIDEST_FIRST]
        if floats:
            return min(floats, key=_WIDEST_FIRST.index)  # the widest float it touches
    return "other"


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# ---- reasons ------------------------------------------------------------------------------------------------


def _fp32_reasons(log: str, source, options: dict, quantized: bool):
    """A function node -> why it stayed in FP32, from AutoCast's "Skipping node" lines and the options."""
    skipped: dict[str, str] = {}
    for line in log.splitlines():
        m = _SKIP.search(line)
        if m:
            skipped.setdefault(m.group(1), _autocast_reason(m.group(2)))
    unsupported: dict[str, str] = {}
    for m in _UNSUPPORTED.finditer(log):
        for op in _literal(m.group(3), {}):
            unsupported[op] = f"ONNX opset {m.group(2)} has no {m.group(1)} version of {op}"
    keep_types = set(options.get("keep_fp32_op_types") or ())

    def reason(node) -> str:
        if node.name in skipped:
            return skipped[node.name]
        if node.op_type in keep_types:
            return "its op type is in keep_fp32_op_types"
        if node.op_type in unsupported:
            return unsupported[node.op_type]
        if quantized and options.get("high_precision_dtype") == "fp32":
            return "not quantized, and high_precision_dtype is fp32"
        return "kept in FP32 by ModelOpt (no rule named it; see modelopt.log)"

    return reason


def _autocast_reason(text: str) -> str:
    text = text.strip()
    if text == "DisabledNodeNameRegexRule":
        return "its name matches keep_fp32_nodes"
    if text == "DisabledOpTypes":
        return "its op type is in keep_fp32_op_types"
    if text.startswith("initializer"):
        return f"init_max: {text}"
    if text.startswith("reference IO out of range"):
        return f"data_max: {text}"
    if text.startswith("DepthOfReductionRule"):
        return "depth of reduction above max_depth_of_reduction"
    return text


def _quantization(source, variant, precision_of, precision, options, log) -> dict:
    inits = {t.name for t in variant.graph.initializer}
    constants = inits | {o for n in variant.graph.node if n.op_type == "Constant" for o in n.output}
    consumers = collections.defaultdict(list)
    for n in variant.graph.node:
        for i in n.input:
            consumers[i].append(n)
    quantizers = [n for n in variant.graph.node if n.op_type == "QuantizeLinear"]
    pairs = [q for q in quantizers if any(c.op_type == "DequantizeLinear" for c in consumers[q.output[0]])]
    weights = sum(1 for q in pairs if q.input[0] in constants)
    dq_only = sum(1 for n in variant.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits)
    quantized_nodes = [name for name, p in precision_of.items() if p == precision]
    reasons = _not_quantized_reasons(log, options)
    not_quantized = [
        {"node": n.name, "op_type": n.op_type, "reason": reasons.get(n.name, _default_reason(n, options))}
        for n in source.graph.node
        if n.op_type in COMPUTE_OP_TYPES and n.name in precision_of and precision_of[n.name] != precision
    ]
    return {
        "qdq_pairs": len(pairs),
        "quantized_weights": weights + dq_only,
        "quantized_activations": len(pairs) - weights,
        "quantized_nodes": quantized_nodes,
        "not_quantized": not_quantized,
    }


def _not_quantized_reasons(log: str, options: dict) -> dict:
    reasons: dict[str, str] = {}
    for line in log.splitlines():
        for pattern, why in _LISTS.items():
            m = re.search(pattern, line)
            if m:
                for name in _literal(m.group(1), []):
                    reasons.setdefault(name, why)
        for pattern, why in _SINGLES.items():
            m = re.search(pattern, line)
            if m:
                reasons.setdefault(m.group(1), why.format(m.group(2)))
    return reasons


def _default_reason(node, options) -> str:
    for pattern in options.get("exclude_nodes") or ():
        if re.match(pattern, node.name):
            return "its name matches exclude_nodes"
    if node.op_type in (options.get("exclude_op_types") or ()):
        return "its op type is in exclude_op_types"
    return "ModelOpt's Q/DQ placement left it unquantized (see modelopt.log)"


def _literal(text: str, default):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return default


def _warnings(log: str) -> list[str]:
    """ModelOpt's warnings, each kind once with its count (70 "Expected bias ... to be an initializer" are one)."""
    from ..format import fold_messages

    lines = [
        ln.split(" - WARNING - ", 1)[-1].strip()
        for ln in log.splitlines()
        if " - WARNING - " in ln or ln.startswith("WARNING:root:")
    ]
    return fold_messages(ln.removeprefix("WARNING:root:") for ln in lines)


def _summary(changes: dict) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in changes["nodes_by_precision"].items())
    parts = [counts]
    if changes.get("qdq_pairs") is not None:
        parts.append(f"{changes['qdq_pairs']} Q/DQ pairs")
    if changes["inserted"].get("Cast"):
        parts.append(f"{changes['inserted']['Cast']} Cast inserted")
    if changes["kept_fp32"]:
        parts.append(f"{len(changes['kept_fp32'])} kept in FP32")
    return "; ".join(parts)


# ---- quantization scales (what calibration decided) ----------------------------------------------------------

#: Largest magnitude of each quantized ONNX element type (INT8, UINT8, FLOAT8E4M3FN): with zero point 0, a scale
#: ``s`` covers values in ``[-s * QMAX, s * QMAX]``; anything beyond is clipped.
_QMAX = {3: 127, 2: 255, 17: 448}


def quantization_scales(model) -> list[dict]:
    """One row per QuantizeLinear node of ``model`` (a :class:`~workbench.model.onnx_model.Model` or an ``onnx.ModelProto``).

    Row keys: ``node``; ``tensor`` (what is quantized); ``kind`` (``weight`` for an initializer or Constant,
    else ``activation``); ``channels`` (number of scales: 1 = per tensor, more = per output channel); ``scale`` (the
    largest scale); ``amax`` (``scale`` x the type's largest value: the range calibration chose for the tensor, for
    a zero point of 0). A scale computed at run time (not a constant) gives ``scale`` and ``amax`` of None.
    """
    import numpy as np
    from onnx import numpy_helper

    proto = getattr(model, "proto", model)
    constants = {t.name: t for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            for attribute in n.attribute:
                if attribute.name == "value":
                    constants[n.output[0]] = attribute.t
    rows = []
    for n in proto.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        scale = constants.get(n.input[1])
        zero_point = constants.get(n.input[2]) if len(n.input) > 2 else None
        scales = numpy_helper.to_array(scale).astype(np.float64).ravel() if scale is not None else None
        qmax = _QMAX.get(zero_point.data_type if zero_point is not None else 2)  # ONNX default zero point: uint8
        largest = float(scales.max()) if scales is not None and scales.size else None
        rows.append(
            {
                "node": n.name,
                "tensor": n.input[0],
                "kind": "weight" if n.input[0] in constants else "activation",
                "channels": int(scales.size) if scales is not None else None,
                "scale": largest,
                "amax": largest * qmax if largest is not None and qmax else None,
            }
        )
    return rows
