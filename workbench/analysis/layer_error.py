"""Layer-wise error of a precision Variant against its FP32 source: where along the graph the error comes from.

Both models run on ONNX Runtime (CPU) on the same inputs with every intermediate float tensor of the FP32 graph
exposed as an output. Tensors are matched by ONNX tensor name: ModelOpt's Q/DQ pairs and AutoCast's casts are
inserted *after* a producer, so the producer's output keeps its name in the variant (a tensor the transform renamed
or removed is listed with ``compared`` False). Sums are accumulated chunk by chunk, so memory stays bounded.

:func:`layer_error` returns a DataFrame, one row per tensor in topological order (``graph.node`` order):

==============  =====================================================================================
column          meaning
==============  =====================================================================================
order           position of the producing node in the FP32 graph (topological)
tensor          ONNX tensor name
node, op_type   its producer in the FP32 graph
compared        True when the variant has a float tensor of that name and the same shape, and FP32's values are
                finite (tensors where FP32 itself gives inf/NaN are in ``table.attrs["not_finite"]``); where the
                variant alone overflows, ``snr_db`` is ``-EXACT_DB`` (the worst), ``cosine`` NaN
cosine          cosine similarity of the flattened tensors (1.0 when both are all zero)
max_abs         max |v - r|
rel_l2          ||v - r|| / ||r||
snr_db          10 log10(||r||^2 / ||v - r||^2), capped at +-``EXACT_DB`` (+: identical)
added_db        how much SNR this node lost: the lowest SNR among its compared inputs (graph inputs are exact)
                minus its own SNR — the error this node itself added (empty for ``Constant`` nodes)
jump            True on the first tensor (topological order) whose node added >= ``JUMP_DB`` and whose SNR is
                below ``JUMP_BELOW_DB``: where the error first jumps
==============  =====================================================================================

``table.attrs["first_jump"]`` is that row's node name (None when the error never jumps).

``table.attrs["quantizer_snr_db"]`` (INT8 Q/DQ variants): for every tensor the variant quantizes — graph inputs,
activations and weights, by their FP32 name — the SNR (dB) of its own QuantizeLinear -> DequantizeLinear pair applied
to its FP32 values (the same samples; weights as stored): the error that quantizer alone adds, upstream errors
excluded. Deep in an all-INT8 graph the compounded error saturates and ``added_db`` goes to zero everywhere; this
figure still tells one quantizer from another (:mod:`workbench.analysis.sensitivity` ranks groups by it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import WorkbenchError, first_line
from ..model.inputs import batch_inputs, chunk_size, load_inputs, sample_count
from ..progress import Progress, ensure

EXACT_DB = 150.0
JUMP_DB = 10.0
JUMP_BELOW_DB = 40.0
#: Bytes of exposed tensors (FP32's and the variant's together) one run may return: samples per run are cut to it.
LAYER_MEMORY_BYTES = 512 << 20
COLUMNS = [
    "order",
    "tensor",
    "node",
    "op_type",
    "compared",
    "cosine",
    "max_abs",
    "rel_l2",
    "snr_db",
    "added_db",
    "jump",
]
_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto)


def layer_error(
    variant, inputs, *, max_samples: int = 16, chunk: int = 4, progress: Progress | None = None
) -> pd.DataFrame:
    """Per-tensor error of ``variant`` against its FP32 source on ``inputs`` (dict / .npz / .npy; first axis =
    samples; at most ``max_samples`` are used), in topological order. Columns: see the module docstring."""
    progress = ensure(progress)
    source = variant.source
    inputs = load_inputs(inputs, source, what="Layer-error input", batch_free=True)
    inputs.pop("labels", None)
    carried = batch_inputs(source)
    samples = min(sample_count(source, inputs, "Layer-error input"), max_samples)
    tensors = _float_tensors(source.proto)  # name -> (order, node, op_type, input names)
    variant_tensors = _float_tensor_names(variant.model.proto)
    names = [n for n in tensors if n in variant_tensors]
    reference = _session(source.proto, names, "FP32 model")
    low = _session(variant.model.proto, names, f"{variant.precision} variant")
    sums = {n: np.zeros(5) for n in names}  # v.r, v.v, r.r, (v-r)^2, max|v-r|
    quantizers = _quantizers(variant.model.proto)  # FP32 tensor name -> (scale, zero point, axis)
    quantized = {n: np.zeros(2) for n in quantizers if n in names or n in inputs}  # r.r, (qdq(r) - r)^2
    mismatched: set[str] = set()
    # the first run takes the fewest samples the model allows; later ones as many as keep every exposed tensor of
    # both graphs within LAYER_MEMORY_BYTES (a long audio clip's activations can take GBs per sample)
    step = chunk_size(source, inputs, 1)  # a fixed batch, or held state, decides
    start = 0
    while start < samples:
        feeds = {k: v[start : start + step] if k in carried else v for k, v in inputs.items()}
        ref = _run(reference, feeds, names)
        out = _run(low, feeds, names)
        done = min(step, samples - start)
        per_sample = (sum(a.nbytes for a in ref.values()) + sum(a.nbytes for a in out.values())) / max(1, done)
        start += step
        fits = int(max(1, min(chunk, samples - start, LAYER_MEMORY_BYTES // max(1.0, per_sample))))
        step = chunk_size(source, inputs, fits)
        for n, s in quantized.items():
            r = (ref[n] if n in ref else feeds[n]).astype(np.float64)
            s += [float((r * r).sum()), float(((_fake_quant(r, *quantizers[n]) - r) ** 2).sum())]
        for n in names:
            r, v = ref[n], out[n]
            if r.shape != v.shape:
                mismatched.add(n)
                continue
            r64, v64 = r.astype(np.float64).ravel(), v.astype(np.float64).ravel()
            with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN sums are read as such below
                d = v64 - r64
                s = sums[n]
                s[0] += v64 @ r64
                s[1] += v64 @ v64
                s[2] += r64 @ r64
                s[3] += d @ d
                s[4] = max(s[4], float(np.abs(d).max()) if d.size else 0.0)
        del ref, out
        if not progress.step("layer error", min(start, samples), samples):
            progress.check()
    rows = []
    not_finite: list[str] = []
    snr: dict[str, float] = {i.name: EXACT_DB for i in source.proto.graph.input}
    for name, (order, node, op_type, node_inputs) in tensors.items():
        row = {
            "order": order,
            "tensor": name,
            "node": node,
            "op_type": op_type,
            "compared": False,
            "cosine": np.nan,
            "max_abs": np.nan,
            "rel_l2": np.nan,
            "snr_db": np.nan,
            "added_db": np.nan,
            "jump": False,
        }
        if name in sums and not np.isfinite(sums[name][2]):
            not_finite.append(name)  # FP32's own values are inf/NaN: nothing to hold the variant against
        elif name in sums and name not in mismatched:
            vr, vv, rr, dd, mx = sums[name]
            norms = np.sqrt(vv * rr)
            if not np.isfinite(vv):  # the variant overflowed (inf/NaN) where FP32 did not: the worst error there is
                row.update(compared=True, max_abs=np.inf, cosine=np.nan, rel_l2=np.inf, snr_db=-EXACT_DB)
            else:
                row.update(
                    compared=True,
                    max_abs=mx,
                    cosine=float(vr / norms) if norms > 0 else float(dd == 0),
                    rel_l2=float(np.sqrt(dd / rr)) if rr > 0 else (0.0 if dd == 0 else np.inf),
                    snr_db=_snr(rr, dd),
                )
            upstream = [snr[i] for i in node_inputs if i in snr]
            if op_type != "Constant":  # a constant computes nothing: its figures show, no error is "added" there
                row["added_db"] = (min(upstream) if upstream else EXACT_DB) - row["snr_db"]
            snr[name] = row["snr_db"]
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    jumps = table.index[(table["added_db"] >= JUMP_DB) & (table["snr_db"] < JUMP_BELOW_DB)]
    table.attrs["first_jump"] = None
    if len(jumps):
        table.loc[jumps[0], "jump"] = True
        table.attrs["first_jump"] = str(table.loc[jumps[0], "node"])
    table.attrs["samples"] = samples
    table.attrs["not_finite"] = not_finite
    weights = {n: (_weight(variant.model.proto, n), q) for n, q in quantizers.items() if n not in quantized}
    table.attrs["quantizer_snr_db"] = {
        **{n: _snr(*s) for n, s in quantized.items()},
        **{
            n: _snr(float((w * w).sum()), float(((_fake_quant(w, *q) - w) ** 2).sum()))
            for n, (w, q) in weights.items()
            if w is not None
        },
    }
    table.attrs["precision"] = variant.precision
    return table


def _snr(signal: float, noise: float) -> float:
    """SNR in dB, capped at +-``EXACT_DB``; NaN when the signal is not finite (FP32 itself overflowed)."""
    if not np.isfinite(signal):
        return np.nan
    if noise <= 0:
        return EXACT_DB
    if signal <= 0 or not np.isfinite(noise):
        return -EXACT_DB
    return float(np.clip(10 * (np.log10(signal) - np.log10(noise)), -EXACT_DB, EXACT_DB))  # no ratio to underflow


# ---- what each quantizer alone does ----------------------------------------------------------------------------


def _quantizers(proto) -> dict[str, tuple]:
    """FP32 tensor name -> (scale, zero point, axis) of every integer QuantizeLinear whose DequantizeLinear follows
    (a Cast the variant put before it is looked through: the quantizer reads the FP32 tensor)."""
    from onnx import numpy_helper

    graph = proto.graph
    constants = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers = {i for n in graph.node if n.op_type == "DequantizeLinear" for i in n.input[:1]}
    found = {}
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or q.output[0] not in readers or len(q.input) < 3:
            continue
        if q.input[1] not in constants or q.input[2] not in constants:
            continue
        scale = numpy_helper.to_array(constants[q.input[1]]).astype(np.float64)
        zero = numpy_helper.to_array(constants[q.input[2]])
        if zero.dtype.kind not in "iu" or scale.ndim > 1:  # FP8 or block quantization: not simulated here
            continue
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        tensor = q.input[0]
        cast = producer.get(tensor)
        if cast is not None and cast.op_type == "Cast":
            tensor = cast.input[0]
        found[tensor] = (scale, zero, axis)
    return found


def _weight(proto, name: str):
    from onnx import numpy_helper

    tensor = next((t for t in proto.graph.initializer if t.name == name), None)
    return None if tensor is None else numpy_helper.to_array(tensor).astype(np.float64)


def _fake_quant(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """DequantizeLinear(QuantizeLinear(x)) in float64 (round half to even, saturating, per tensor or per axis)."""
    if scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    info = np.iinfo(zero.dtype)
    offset = zero.astype(np.float64)
    return (np.clip(np.rint(x / scale) + offset, info.min, info.max) - offset) * scale


# ---- exposing intermediate tensors ----------------------------------------------------------------------------


def _typed(proto) -> dict[str, object]:
    """Every tensor's value info (shape inference fills in what the file does not say)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is best effort; unknown tensors are just not compared
        inferred = proto
    graph = inferred.graph
    return {v.name: v for v in [*graph.value_info, *graph.output, *graph.input]}


def _float_tensors(proto) -> dict[str, tuple[int, str, str, list[str]]]:
    typed = _typed(proto)
    result = {}
    for order, node in enumerate(proto.graph.node):
        for out in node.output:
            info = typed.get(out)
            if out and info is not None and info.type.tensor_type.elem_type in _FLOAT_TYPES:
                result[out] = (order, node.name, node.op_type, list(node.input))
    return result


def _float_tensor_names(proto) -> set[str]:
    typed = _typed(proto)
    produced = {o for node in proto.graph.node for o in node.output}
    return {n for n in produced if n in typed and typed[n].type.tensor_type.elem_type in _FLOAT_TYPES}


def _session(proto, names: list[str], what: str):
    """An ONNX Runtime (CPU) session of ``proto`` with ``names`` added to its outputs."""
    import onnx

    from ..model.session_probe import ort_session

    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    typed = _typed(proto)
    present = {o.name for o in exposed.graph.output}
    for n in names:
        if n not in present:
            exposed.graph.output.append(typed[n])
    try:
        return ort_session(exposed.SerializeToString(), "basic", log=3)  # "basic" keeps the tensors as named
    except Exception as e:  # noqa: BLE001 - ORT raises its own types
        raise WorkbenchError(
            f"ONNX Runtime (CPU) cannot run the {what} with its intermediate tensors exposed "
            f"({first_line(e)}): layer-wise error needs a graph ONNX Runtime runs (not bf16)."
        ) from None


def _run(session, feeds: dict, names: list[str]) -> dict:
    from ..precision.accuracy import ort_input_dtype

    typed = {i.name: i.type for i in session.get_inputs()}
    feeds = {k: v.astype(ort_input_dtype(typed[k]), copy=False) for k, v in feeds.items() if k in typed}
    return dict(zip(names, session.run(names, feeds)))
