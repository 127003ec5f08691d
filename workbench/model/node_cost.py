"""The work of each ONNX node: floating-point operations and the fewest DRAM bytes it must move.

:func:`model_work` takes every tensor's shape from what ran (the shapes the backend executed each node at, ONNX
Runtime's profile records them), else from ONNX Runtime's symbolic shape inference with the model's inputs fixed at
the profiled shapes (it evaluates shape arithmetic — a Reshape target computed through Shape, Cast, Slice and
Concat, as Paddle exports it — and knows ONNX Runtime's contrib operators; shapes a tool stored at other input sizes
are set aside), and counts, per node:

``flops``
    arithmetic operations; a multiply-add is 2. Conv / ConvTranspose / Gemm (transposed or not) / MatMul (batched,
    broadcast, 1-D operands; ``MatMulInteger``, ``QLinearMatMul`` and ONNX Runtime's ``FusedMatMul`` with its
    transposes and scale, ``MatMulIntegerToFloat``, ``DynamicQuantizeMatMul``, ``MatMulNBits``) / ``Einsum`` (any
    equation, ``...`` included: 2 per multiply-add over every index when operands contract, 1 per product
    otherwise) / attention spelled as MatMuls and Softmax (counted node by node) / the ``Attention`` operator
    (opset 23) and ONNX Runtime's ``Attention`` / ``MultiHeadAttention`` count their multiply-adds plus bias
    additions. Normalizations count per element: BatchNormalization 2 (a folded scale and shift),
    LayerNormalization / InstanceNormalization / GroupNormalization 7 (mean, subtract, square-accumulate, normalize,
    scale, shift), RMSNormalization 4, ONNX Runtime's EmbedLayerNormalization 9 (two additions, then 7).
    Softmax / LogSoftmax 5 per element (max, subtract, exp, sum, divide). Elementwise operators 1 per output
    element (a transcendental counts as one: the special-function unit issues it as one instruction).
    Pooling: output elements × window; global pooling and reductions: input elements. Resize: 0 (nearest),
    3 per output element per resized axis (linear), 8 (cubic). QuantizeLinear / DequantizeLinear: 2 per element.
    Data movement (Cast, Concat, Transpose, Slice, Gather, Split, Pad, Expand, Tile...): 0.
``input_bytes``, ``weight_bytes``, ``output_bytes``, ``bytes``
    the node's inputs, weights (constant inputs) and outputs, each element it touches read or written once (a
    strided reader touches only part of its input: a 1×1 convolution or a pool of stride 2 reads a quarter of it,
    a Slice or Gather only the elements it returns), at the precision the node really uses: an input made by a
    ``DequantizeLinear`` is read at the quantized type (int8 / fp8: every engine fuses the DQ into its reader), an
    output read only by ``QuantizeLinear`` is written at the quantized type, weights folded through Q/DQ are stored
    quantized, fp16 graphs (casts inserted by AutoCast) count 2 bytes. Views (Reshape, Flatten, Squeeze, Unsqueeze,
    Identity, Dropout) move nothing: 0 bytes; Shape and Size read a tensor's dimensions, not its data; a fused layer
    of views and shape arithmetic (folded nodes whose outputs are short integer vectors: a Gather or Concat of
    dimensions) moves nothing either.
``folded``
    True for nodes computed from constants and shapes alone (Constant, Shape and what follows from them, a weight's
    DequantizeLinear). Their row still holds the work they do when they run: TensorRT computes them at build time
    and ONNX Runtime at load (:meth:`ModelWork.group` leaves them out of a layer that also holds live nodes); ONNX
    Runtime runs one it lists as a layer of its own (a weight's DequantizeLinear, each inference). :attr:`ModelWork.total_flops` / ``total_bytes`` leave folded nodes out.
``note``
    why a figure is missing (NaN): an operator these counts do not know, or a shape inference could not give.

A group of nodes fused into one engine layer moves only what crosses its boundary: :meth:`ModelWork.group` sums the
FLOPs of its nodes and counts the bytes of the tensors that enter it from outside (the part its readers touch),
its weights, and the tensors it writes for readers outside it (or as graph outputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .onnx_model import element_bytes, graph_weights, subgraphs, tensor_bytes
from .symbolic import symbolic_shapes

#: Operators that read a tensor's dimensions, never its data.
SHAPE_OPS = {"Shape", "Size"}
#: Operators that only relabel a tensor's shape: no data moves.
VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
#: Operators that move data without arithmetic.
MOVE_OPS = {
    "Cast",
    "CastLike",
    "Concat",
    "Transpose",
    "Slice",
    "Split",
    "Pad",
    "Expand",
    "Tile",
    "Gather",
    "GatherElements",
    "GatherND",
    "ScatterND",
    "ScatterElements",
    "DepthToSpace",
    "SpaceToDepth",
}
ELEMENTWISE_OPS = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Mean",
    "Sum",
    "Mod",
    "Neg",
    "Abs",
    "Reciprocal",
    "Sqrt",
    "Exp",
    "Log",
    "Erf",
    "Tanh",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Softplus",
    "Softsign",
    "Mish",
    "Clip",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Tan",
    "Where",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "IsNaN",
    "IsInf",
    "BitShift",
    "ThresholdedRelu",
    "Shrink",
    "Swish",
    "QuickGelu",
    "BiasAdd",
}
REDUCE_OPS = {
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "CumSum",
}
#: Matrix operators: these run on Tensor Cores (GPU) and pick the precision's matrix peak.
MATRIX_OPS = {
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
    "Attention",
    "MultiHeadAttention",
    "Einsum",
    "FusedMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "MatMulNBits",
}
_PER_ELEMENT = {
    "BatchNormalization": 2,
    "LayerNormalization": 7,
    "InstanceNormalization": 7,
    "GroupNormalization": 7,
    "RMSNormalization": 4,
    "SimplifiedLayerNormalization": 4,
    "SkipLayerNormalization": 8,
    "SkipSimplifiedLayerNormalization": 5,
    "BiasGelu": 2,
    "FastGelu": 2,
    "Softmax": 5,
    "LogSoftmax": 5,
    "QuantizeLinear": 2,
    "DequantizeLinear": 2,
    "LpNormalization": 3,
}

#: ONNX element types (TensorProto names in lower case, as ONNX Runtime's profiler writes them) that the workbench
#: labels otherwise; every other type keeps its own name ("int8", "uint8", "int32", "bool").
PRECISION_LABELS = {
    "float": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "double": "fp64",
    "float8e4m3fn": "fp8",
    "float8e5m2": "fp8",
    "float8e4m3fnuz": "fp8",
    "float8e5m2fnuz": "fp8",
    "float4e2m1": "fp4",
}

NODE_COLUMNS = (
    "node",
    "op_type",
    "flops",
    "input_bytes",
    "weight_bytes",
    "output_bytes",
    "bytes",
    "precision",
    "matrix",
    "folded",
    "note",
)


@dataclass
class _Tensor:
    shape: tuple | None  # ints; None when unknown
    elem: int  # onnx TensorProto type
    constant: bool = False
    stored_elem: int | None = None  # the type it is stored at when folded through Q/DQ

    @property
    def numel(self) -> float:
        if self.shape is None or any(not isinstance(d, int) or d < 0 for d in self.shape):
            return float("nan")
        return float(math.prod(self.shape))


@dataclass
class ModelWork:
    """Per-node work of a model at fixed input shapes (see the module docstring for the columns)."""

    nodes: pd.DataFrame
    shapes: dict
    tensors: dict = field(repr=False, default_factory=dict)
    _graph: list = field(repr=False, default_factory=list)  # (name, op_type, inputs, outputs)
    _outputs: frozenset = field(repr=False, default=frozenset())
    _read_fractions: dict = field(repr=False, default_factory=dict)  # (node, tensor) -> share of it the node reads

    def __post_init__(self):
        self._producer = {t: g for g in self._graph for t in g[3] if t}
        self._by_name = {g[0]: g for g in self._graph}
        self._readers: dict[str, list[str]] = {}
        for name, _, ins, _ in self._graph:
            for t in ins:
                if t:
                    self._readers.setdefault(t, []).append(name)

    @property
    def node_names(self) -> set:
        return set(self._by_name)

    @property
    def total_flops(self) -> float:
        """FLOPs of the nodes that are not folded (what an engine that folds constants runs)."""
        return float(self.nodes.loc[~self.nodes["folded"].astype(bool), "flops"].sum(min_count=1))

    @property
    def total_bytes(self) -> float:
        return float(self.nodes.loc[~self.nodes["folded"].astype(bool), "bytes"].sum(min_count=1))

    def read_fraction(self, node: str, tensor: str) -> float:
        """The share of ``tensor``'s elements that ``node`` reads (1 unless it reads with a stride or a slice)."""
        return self._read_fractions.get((node, tensor), 1.0)

    @property
    def _records(self) -> dict[str, dict]:
        """Node name -> its row (plain dicts: a fused layer's lookups stay fast on graphs of thousands of nodes)."""
        if getattr(self, "_records_cache", None) is None or self._records_cache[0] is not self.nodes:
            self._records_cache = (self.nodes, {r["node"]: r for r in self.nodes.to_dict("records")})
        return self._records_cache[1]

    def group(self, names, engine_folds: bool = True) -> dict:
        """The work of ONNX nodes fused into one layer that ran: ``flops`` (sum), ``bytes`` (what crosses the
        group's boundary, weights included), ``weight_bytes``, ``precision``, ``matrix``, ``missing`` (names not in
        the model), ``note``.

        A layer's folded nodes cost nothing beside its live ones (TensorRT computes them at build time; ONNX
        Runtime folds them at load and lists them in the live node that reads the result); a layer made only of
        folded nodes still ran, so its work counts. ``engine_folds``: the constants such nodes make are weights
        stored in the engine (TensorRT); False for engines that run the folded nodes they list as layers of their
        own (ONNX Runtime: a weight's DequantizeLinear runs each inference), whose readers read what they wrote."""
        by_name, records = self._by_name, self._records
        found = [n for n in dict.fromkeys(names) if n in by_name]
        missing = [n for n in dict.fromkeys(names) if n not in by_name]
        rows = [records[n] for n in found]
        if not rows:
            return {
                "flops": float("nan"),
                "bytes": float("nan"),
                "weight_bytes": 0.0,
                "precision": "",
                "matrix": False,
                "missing": missing,
                "note": "",
            }
        # ONNX Runtime lists the constant subgraph it folded at load inside the live node that reads the result
        # (Swin's shifted-window mask inside a Pad): those nodes ran once, at load, not per inference
        live_rows = [r for r in rows if not r["folded"]] or rows
        notes = [str(r["note"]) for r in live_rows if r["note"]]
        live = [r["node"] for r in live_rows]
        live_set = set(live)
        inside_out = {t for n in live for t in by_name[n][3] if t}
        inside_in = {t for n in live for t in by_name[n][2] if t}
        readers = self._readers
        total = weights = 0.0
        for t in inside_in - inside_out:
            info = self.tensors.get(t)
            inner_readers = [r for r in readers.get(t, []) if r in live_set]
            if info is not None and info.constant and (engine_folds or t not in self._producer):
                weights += self._weight_read(t, live)
            elif info is not None and info.constant:  # made by a node that ran: read as it was written
                total += info.numel * element_bytes(info.elem)
            else:
                # readers of parts of one tensor (a Split's Gathers) read their parts' sum, the whole at most
                share = min(1.0, sum(self.read_fraction(r, t) for r in inner_readers)) if inner_readers else 1.0
                total += share * self._bytes(t, reader_ops=[by_name[r][1] for r in inner_readers])
        for t in inside_out:
            outside = [r for r in readers.get(t, []) if r not in live_set]
            if outside or t in self._outputs:
                total += self._bytes(t, writer_op=self._producer_op(t), outside_readers=outside)
        unfolded = [r for r in live_rows if not r["folded"]] or live_rows
        if all(r["op_type"] in VIEW_OPS | SHAPE_OPS or self._shape_math(r) for r in unfolded):
            total, weights = 0.0, 0.0  # a view, and the shape arithmetic it reads: no data moves
        flops = [r["flops"] for r in live_rows]
        precision = next((r["precision"] for r in live_rows if r["matrix"] and r["precision"]), "")
        precision = precision or next((r["precision"] for r in live_rows if r["precision"]), "")
        return {
            "flops": float("nan") if any(math.isnan(f) for f in flops) else float(sum(flops)),
            "bytes": total + weights,
            "weight_bytes": weights,
            "precision": precision,
            "matrix": any(r["matrix"] for r in live_rows),
            "missing": missing,
            "note": "; ".join(notes),
        }

    def _shape_math(self, row) -> bool:
        """A folded node that computes a shape: its outputs are short integer vectors (a Gather or Concat of dims)."""
        outs = [self.tensors.get(t) for t in self._by_name[row["node"]][3] if t]
        return bool(row["folded"]) and all(
            t is not None and t.elem in _INTEGER_ELEMS and t.numel <= _SHAPE_MATH_ELEMS for t in outs
        )

    # ---- bytes of one tensor as a given reader / writer sees it ------------------------------------------------

    def _producer_op(self, tensor: str) -> str:
        node = self._producer.get(tensor)
        return node[1] if node else ""

    def _bytes(self, tensor: str, reader_ops=(), writer_op: str = "", outside_readers=()) -> float:
        info = self.tensors.get(tensor)
        if info is None:
            return float("nan")
        elem = info.elem if writer_op else (info.stored_elem or info.elem)  # written by a node that ran: its type
        producer = self._producer_op(tensor)
        if (
            reader_ops
            and producer == "DequantizeLinear"
            and not any(op in ("QuantizeLinear", "DequantizeLinear") for op in reader_ops)
        ):
            elem = self._dq_input_elem(tensor) or elem  # the reader fuses the DQ: it reads the quantized tensor
        if writer_op and writer_op != "QuantizeLinear" and outside_readers:
            ops = {self._op_of(r) for r in outside_readers}
            if ops == {"QuantizeLinear"}:
                elem = self._q_output_elem(outside_readers[0]) or elem
        return info.numel * element_bytes(elem)

    def _op_of(self, node: str) -> str:
        return self._by_name[node][1] if node in self._by_name else ""

    def _dq_input_elem(self, tensor: str) -> int | None:
        node = self._producer.get(tensor)
        src = self.tensors.get(node[2][0]) if node else None
        return (src.stored_elem or src.elem) if src else None

    def _q_output_elem(self, node_name: str) -> int | None:
        node = self._by_name.get(node_name)
        out = self.tensors.get(node[3][0]) if node else None
        return out.elem if out else None

    def _weight_read(self, tensor: str, live, by_name=None) -> float:
        """Bytes of a constant input as stored; a Gather reads only the rows it gathers."""
        info = self.tensors[tensor]
        for n in live:
            _, op, ins, outs = (by_name or self._by_name)[n]
            if op == "Gather" and ins and ins[0] == tensor:
                out = self.tensors.get(outs[0])
                return out.numel * element_bytes(info.stored_elem or info.elem) if out else float("nan")
        return info.numel * element_bytes(info.stored_elem or info.elem)


def precision_label(elem: int | str) -> str:
    """The precision label of an ONNX element type: its TensorProto enum, or its name as ONNX Runtime's profiler
    writes it (``"float"`` → ``"fp32"``); "" for an unknown enum."""
    if isinstance(elem, int):
        from onnx import helper

        try:
            elem = helper.tensor_dtype_to_string(elem).removeprefix("TensorProto.").lower()
        except KeyError:
            return ""
    return PRECISION_LABELS.get(elem, elem)


def _fixed_proto(model, shapes: dict, weights: bool = False):
    """A copy of the model with its inputs fixed at ``shapes`` and no stored shapes but the outputs'; the data of
    large initializers dropped unless ``weights`` (shape inference needs their dims, not their data)."""
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    initializers = {i.name for i in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name in initializers or value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        wanted = tuple(int(d) for d in shapes[value.name])
        if len(dims) != len(wanted):
            from ..config import format_shape
            from ..errors import WorkbenchError

            raise WorkbenchError(
                f"Input '{value.name}' has {len(dims)} dimensions but the shape given is "
                f"{format_shape(wanted)}: pass the shapes the model was profiled at."
            )
        for dim, size in zip(dims, wanted):
            dim.Clear()
            dim.dim_value = size
    for init in proto.graph.initializer if not weights else ():
        if math.prod(init.dims) > _SMALL:
            for data in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                init.ClearField(data)
    # shapes a tool stored (ModelOpt's value_info at its calibration size, Paddle's -1) are inferred afresh
    del proto.graph.value_info[:]
    for value in proto.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value < 0:  # Paddle writes -1 for a dynamic size: unknown
                dim.Clear()
    return proto


def _inferred_tensors(model, shapes: dict, executed: dict) -> dict:
    """Every tensor of ``model`` with its shape at the fixed input ``shapes``, from the libraries made for it, each
    filling what the one before left open: ONNX's shape inference with data propagation (fast, every standard
    operator); ONNX Runtime's symbolic shape inference (it evaluates shape arithmetic — a Reshape target computed
    through Shape, Cast, Slice and Concat — and knows ONNX Runtime's contrib operators) on the graph after ONNX
    Runtime's constant folding (which evaluates what symbolic inference cannot: a Pad whose pads torch traced as
    Mod, Slice and Transpose of constants); last, symbolic inference on the graph as it is (where ONNX Runtime
    refuses to load it). The ``executed`` shapes (tensor name -> shape) overrule
    all of them, and inference goes only as far as the tensors they leave open."""
    from onnx import shape_inference

    proto = _fixed_proto(model, shapes)
    try:
        tensors = _collect_tensors(shape_inference.infer_shapes(proto, data_prop=True))
    except Exception:  # noqa: BLE001 - an operator ONNX's inference rejects: the next library goes on
        tensors = _collect_tensors(proto)
    for name, shape in executed.items():
        info = tensors.get(name)
        if info is not None and not info.constant:
            info.shape = tuple(int(d) for d in shape)
    # what the count needs: the tensors live nodes read, constants included (a node computed from constants and
    # shapes alone is folded: ONNX Runtime and TensorRT compute it at load, its row holds no work that counts)
    constant = {i.name for i in proto.graph.initializer}
    needed = {v.name for v in proto.graph.output}
    for node in proto.graph.node:
        inputs = [t for t in node.input if t]
        if node.op_type in ("Constant", "Shape", "Size") or all(t in constant for t in inputs):
            constant.update(node.output)
        else:
            needed.update(inputs)
    for infer in (lambda: _symbolic(_folded_by_onnx_runtime(model, shapes)), lambda: _symbolic(proto)):
        unknown = {t for t in needed if t not in tensors or tensors[t].shape is None}
        if not unknown:
            break
        inferred = infer()
        if inferred is None:
            continue
        for name, info in _collect_tensors(inferred).items():
            known = tensors.get(name)
            if known is None:
                tensors[name] = info
            elif known.shape is None and info.shape is not None:
                known.shape = info.shape
    return tensors


def _symbolic(proto):
    """``proto`` after ONNX Runtime's symbolic shape inference, or None where it fails."""
    if proto is None:
        return None
    from onnx import shape_inference

    try:
        return symbolic_shapes(proto)
    except Exception:  # noqa: BLE001 - an operator it rejects: again with Paddle's Concat axes made positive
        pass
    try:
        return symbolic_shapes(_positive_concat_axes(proto, shape_inference.infer_shapes(proto)))
    except Exception:  # noqa: BLE001 - rejected again (or by ONNX's inference): None, and the next library goes on
        return None


#: ONNX Runtime's basic-level rewrites other than constant folding: they fuse or remove nodes, so the tensors between
#: them would have no name left to carry a shape.
_FUSIONS = [
    "MatMulAddFusion",
    "ConvAddFusion",
    "ConvMulFusion",
    "ConvBNFusion",
    "CommonSubexpressionElimination",
    "ConstantSharing",
    "EliminateIdentity",
    "EliminateSlice",
    "EliminateDropout",
    "UnsqueezeElimination",
    "NoopElimination",
    "FuseReluClip",
    "GemmTransposeFusion",
    "ReshapeFusion",
    "CastElimination",
    "DivMulFusion",
    "ExpandElimination",
    "NotWhereFusion",
    "GemmSumFusion",
    "GemmActivationFusion",
    "MatMulScaleFusion",
    "PadFusion",
    "MatmulTransposeFusion",
    "ShapeInputMerge",
    "PreShapeNodeElimination",
    "ConvActivationFusion",
    "BiasSoftmaxDropoutFusion",
    "DoubleQDQPairsRemover",
    "QDQPropagationTransformer",
    "EnsureUniqueDQForNodeUnit",
]


def _folded_by_onnx_runtime(model, shapes: dict):
    """The graph at the fixed input ``shapes`` after ONNX Runtime's constant folding (which evaluates any operator it
    runs; the tensors it leaves keep their names), or None where it cannot be made (a model over 2 GB, a refusal)."""
    import os
    import tempfile

    import onnx

    from .session_probe import ort_session

    fixed = _fixed_proto(model, shapes, weights=True)
    if fixed.ByteSize() >= 2**31 - 1:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folded = os.path.join(tmp, "folded.onnx")
        try:  # a refusal is the answer (None), not a message
            ort_session(
                fixed.SerializeToString(), "basic", optimized_model_filepath=folded, disabled_optimizers=_FUSIONS
            )
            return onnx.load(folded)
        except Exception:  # noqa: BLE001 - ONNX Runtime refuses the model: its shapes stay unknown
            return None


def _positive_concat_axes(proto, inferred):
    """``proto`` with each Concat's negative axis written as the positive one (Paddle joins shape vectors on axis
    -1, which symbolic inference evaluates only as axis 0), the ranks taken from ONNX's inference."""
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in (*inferred.graph.value_info, *inferred.graph.input)}
    ranks.update({i.name: len(i.dims) for i in proto.graph.initializer})
    fixed = type(proto)()
    fixed.CopyFrom(proto)
    for node in fixed.graph.node:
        if node.op_type != "Concat" or not node.input or node.input[0] not in ranks:
            continue
        for attr in node.attribute:
            if attr.name == "axis" and attr.i < 0:
                attr.i += ranks[node.input[0]]
    return fixed


def _collect_tensors(proto) -> dict[str, _Tensor]:
    def shape_of(value):
        tt = value.type.tensor_type
        if not tt.HasField("shape"):
            return None
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        return None if any(d is None for d in dims) else dims

    tensors: dict[str, _Tensor] = {}
    for value in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        if value.type.HasField("tensor_type"):
            tensors[value.name] = _Tensor(shape_of(value), value.type.tensor_type.elem_type)
    for init in proto.graph.initializer:
        tensors[init.name] = _Tensor(tuple(init.dims), init.data_type, constant=True)
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    tensors[node.output[0]] = _Tensor(tuple(attr.t.dims), attr.t.data_type, constant=True)
                elif attr.name in ("value_float", "value_int"):
                    tensors[node.output[0]] = _Tensor((), 1 if attr.name == "value_float" else 7, constant=True)
                elif attr.name in ("value_floats", "value_ints"):
                    n = len(attr.floats) or len(attr.ints)
                    tensors[node.output[0]] = _Tensor((n,), 1 if attr.name == "value_floats" else 7, constant=True)
    return tensors


def model_work(model, shapes: dict | None = None, executed: dict | None = None) -> ModelWork:
    """Work per node of ``model`` (a :class:`~workbench.model.onnx_model.Model`) at input ``shapes``
    (name -> shape; inputs not named keep their static shape).

    ``executed`` (tensor name -> shape) holds the shapes the backend ran (ONNX Runtime's profiler records every
    node's inputs and outputs): they come first; ONNX Runtime's symbolic shape inference at ``shapes`` gives the
    rest (tensors no executed node wrote or read: inside a fusion, or nothing ran)."""
    shapes = {k: tuple(int(d) for d in v) for k, v in (shapes or {}).items()}
    tensors = _inferred_tensors(model, shapes, executed or {})
    stored = _collect_tensors(model.proto)
    for value in model.proto.graph.output:  # an output the model fixes, inference left open (an op it does not know)
        info, fixed = tensors.get(value.name), stored.get(value.name)
        if info is not None and info.shape is None and fixed is not None:
            info.shape = fixed.shape
    graph = [
        (n.name or f"{n.op_type}_{i}", n.op_type, list(n.input), list(n.output), n)
        for i, n in enumerate(model.proto.graph.node)
    ]
    # constants: initializers, Constant nodes, shapes of tensors, and everything computed only from those
    folded_nodes = set()  # their indices (names may repeat)
    for i, (_, op, ins, outs, _) in enumerate(graph):
        live = [t for t in ins if t]
        if op in ("Constant", "Shape", "Size") or (
            live and all(tensors.get(t, _Tensor(None, 0)).constant for t in live)
        ):
            folded_nodes.add(i)
            for t in outs:
                info = tensors.setdefault(t, _Tensor(None, 0))
                info.constant = True
            if op == "DequantizeLinear" and ins and outs and ins[0] in tensors:
                src = tensors[ins[0]]
                tensors[outs[0]].stored_elem = src.stored_elem or src.elem
            elif op in ("QuantizeLinear",) and outs:
                tensors[outs[0]].stored_elem = tensors[outs[0]].elem
            elif op in ("Transpose", "Reshape", "Identity", "Cast") and ins and outs and ins[0] in tensors:
                src = tensors[ins[0]]
                if src.stored_elem:
                    tensors[outs[0]].stored_elem = src.stored_elem
    work = ModelWork(
        nodes=pd.DataFrame(columns=NODE_COLUMNS),
        shapes=shapes,
        tensors=tensors,
        _graph=[(g[0], g[1], g[2], g[3]) for g in graph],
        _outputs=frozenset(v.name for v in model.proto.graph.output),
        _read_fractions=_read_fractions(graph, tensors),
    )
    rows = []
    for i, (name, op, ins, outs, node) in enumerate(graph):
        folded = i in folded_nodes
        try:
            flops, note = _flops(op, node, ins, outs, tensors)
        except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError) as e:  # an odd node: say so
            flops, note = float("nan"), f"{op} not counted ({type(e).__name__}: {e})"
        ins_live = [t for t in ins if t]
        input_bytes = weight_bytes = 0.0
        for t in ins_live:
            info = tensors.get(t)
            if info is not None and info.constant:
                weight_bytes += work._weight_read(t, [name])
            else:
                input_bytes += work.read_fraction(name, t) * work._bytes(t, reader_ops=[op])
        output_bytes = 0.0
        for t in outs:
            if t:
                output_bytes += work._bytes(t, writer_op=op, outside_readers=work._readers.get(t, []))
        if op in VIEW_OPS:
            input_bytes = weight_bytes = output_bytes = 0.0
        elif op in SHAPE_OPS:
            input_bytes = 0.0
        missing = [
            t for t in ins_live + [t for t in outs if t] if tensors.get(t) is None or math.isnan(tensors[t].numel)
        ]
        if missing and op not in VIEW_OPS:
            note = "; ".join(filter(None, [note, f"shape of '{missing[0]}' not inferred"]))
        out_elem = tensors[outs[0]].elem if outs and outs[0] in tensors else 0
        precision = _node_precision(op, ins_live, tensors, work._producer, out_elem)
        rows.append(
            {
                "node": name,
                "op_type": op,
                "flops": flops,
                "input_bytes": input_bytes,
                "weight_bytes": weight_bytes,
                "output_bytes": output_bytes,
                "bytes": input_bytes + weight_bytes + output_bytes,
                "precision": precision,
                "matrix": op in MATRIX_OPS,
                "folded": folded,
                "note": note,
            }
        )
    work.nodes = pd.DataFrame(rows, columns=NODE_COLUMNS)
    return work


def strided_read_fraction(in_sizes, out_sizes, kernel, strides, dilations=None) -> float:
    """The share of a strided window reader's input it touches, from the spatial sizes of its input and output, its
    kernel, strides and dilations: per axis, each output reads ``min(stride, kernel)`` new positions (``kernel``
    when dilated), at most the whole axis. A 1×1 kernel of stride 2 reads a quarter of a 2-D input."""
    share = 1.0
    dilations = list(dilations or []) or [1] * len(kernel)
    for size, out, k, s, d in zip(in_sizes, out_sizes, kernel, strides, dilations):
        if size <= 0 or out <= 0:
            continue
        touched = out * (k if d > 1 else min(s, k)) + (max(0, k - s) if d == 1 else 0)
        share *= min(size, touched) / size
    return share


_WINDOW_READERS = {"Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool"}
_ELEMENT_READERS = {"Slice", "Gather", "GatherElements", "GatherND"}


def _read_fractions(graph, tensors) -> dict:
    """(node, tensor) -> the share of the tensor the node reads, for strided convolutions and pools (their data
    input) and for Slice / Gather (the elements they return), where it is below 1."""
    fractions = {}
    for name, op, ins, outs, node in graph:
        if not ins or not outs or op not in _WINDOW_READERS | _ELEMENT_READERS:
            continue
        x, y = tensors.get(ins[0]), tensors.get(outs[0])
        if x is None or y is None or x.constant or x.shape is None or y.shape is None:
            continue
        if op in _ELEMENT_READERS:
            share = min(1.0, y.numel / x.numel) if x.numel else 1.0
        else:
            if op in ("Conv", "ConvInteger", "QLinearConv"):
                w = tensors.get(ins[3] if op == "QLinearConv" else ins[1])
                kernel = list(w.shape[2:]) if w is not None and w.shape is not None else []
            else:
                kernel = list(_attr(node, "kernel_shape", []))
            rank = len(kernel)
            if not rank or len(x.shape) < rank or len(y.shape) < rank:
                continue
            strides = list(_attr(node, "strides", [])) or [1] * rank
            share = strided_read_fraction(
                x.shape[-rank:], y.shape[-rank:], kernel, strides, _attr(node, "dilations", None)
            )
        if share < 1.0:
            fractions[(name, ins[0])] = share
    return fractions


_INTEGER_ELEMS = {6, 7}  # onnx TensorProto INT32, INT64: the types shapes are computed in
_SHAPE_MATH_ELEMS = 64  # a shape vector, never a tensor of data
_SMALL = 1 << 16  # elements: shape arithmetic and position tables, never the big weights


def _node_precision(op, ins, tensors, producers, out_elem) -> str:
    """The precision a node computes in: the quantized type behind a DQ input, else its first float input's."""
    if op in MATRIX_OPS:
        for t in ins:
            g = producers.get(t)
            if g is not None and g[1] == "DequantizeLinear" and g[2] and g[2][0] in tensors:
                return precision_label(tensors[g[2][0]].stored_elem or tensors[g[2][0]].elem)
    for t in ins:
        info = tensors.get(t)
        if info is not None and precision_label(info.elem) in ("fp32", "fp16", "bf16", "fp8", "int8", "uint8"):
            return precision_label(info.stored_elem or info.elem)
    return precision_label(out_elem) if out_elem else ""


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _matmul_flops(a, b, trans_a=0, trans_b=0) -> tuple[float, float]:
    """(2·M·N·K times the broadcast batch, output elements) of ``a`` @ ``b`` (numpy's matmul rules: a 1-D operand is
    a row or a column)."""
    if a is None or b is None or a.shape is None or b.shape is None or not a.shape or not b.shape:
        return float("nan"), float("nan")
    sa, sb = list(a.shape), list(b.shape)
    sa = [1, *sa] if len(sa) == 1 else sa
    sb = [*sb, 1] if len(sb) == 1 else sb
    if trans_a:
        sa[-2], sa[-1] = sa[-1], sa[-2]
    if trans_b:
        sb[-2], sb[-1] = sb[-1], sb[-2]
    try:
        batch = np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))
    except ValueError:
        return float("nan"), float("nan")
    outputs = float(math.prod(batch) * sa[-2] * sb[-1])
    return 2.0 * outputs * sa[-1], outputs


def _einsum_flops(node, operands) -> tuple[float, str]:
    """Einsum: the product of every index's size P; (operands − 1) multiplies per point, plus one addition per
    point when an index is summed over (2·P for a two-operand contraction: a multiply-add counts 2, as MatMul)."""
    equation = _attr(node, "equation", b"")
    equation = (equation.decode() if isinstance(equation, bytes) else str(equation)).replace(" ", "")
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands) or any(o is None or o.shape is None for o in operands):
        return float("nan"), f"Einsum '{equation}' not counted: its operand shapes are not known"
    sizes: dict[str, int] = {}
    for term, operand in zip(terms, operands):
        labels = list(term.replace("...", ""))
        extra = len(operand.shape) - len(labels)  # dims the ellipsis stands for, named from the right
        named = [f"...{extra - i}" for i in range(extra)] if "..." in term else []
        before = term.split("...")[0] if "..." in term else term
        order = list(before) + named + list(term.split("...")[1] if "..." in term else "")
        if len(order) != len(operand.shape):
            return float("nan"), f"Einsum '{equation}' not counted: operand rank differs from its subscripts"
        for label, size in zip(order, operand.shape):
            sizes[label] = max(sizes.get(label, 1), int(size))
    if not _:  # implicit output: the labels that appear once, in alphabetical order, after the ellipsis dims
        counts = {c: inputs.count(c) for c in set(inputs) if c.isalpha()}
        output = "..." + "".join(sorted(c for c, n in counts.items() if n == 1))
    kept = set(output.replace("...", "")) | ({k for k in sizes if k.startswith("...")} if "..." in output else set())
    points = float(math.prod(sizes.values()))
    summed = any(label not in kept for label in sizes)
    return (len(operands) - 1) * points + (points if summed else 0.0), ""


def _flops(op, node, ins, outs, tensors) -> tuple[float, str]:
    """FLOPs of one node and, when they cannot be counted, why."""

    def t(name):
        return tensors.get(name) if name else None

    out = t(outs[0]) if outs else None
    out_n = out.numel if out else float("nan")
    x = t(ins[0]) if ins else None
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = t(ins[3] if op == "QLinearConv" else ins[1])
        if w is None or w.shape is None or out is None or out.shape is None:
            return float("nan"), "Conv weight or output shape unknown"
        per_output = math.prod(w.shape[1:])  # C/group * kernel
        flops = 2.0 * out_n * per_output
        bias = ins[8] if op == "QLinearConv" and len(ins) > 8 else (ins[2] if op == "Conv" and len(ins) > 2 else "")
        return flops + (out_n if bias else 0.0), ""
    if op == "ConvTranspose":
        w = t(ins[1])
        if w is None or w.shape is None or x is None or x.shape is None:
            return float("nan"), "ConvTranspose weight or input shape unknown"
        # every input element scatters into (K/group) * kernel outputs: in_elems * w.shape[1] * prod(kernel)
        flops = 2.0 * x.numel * math.prod(w.shape[1:])
        return flops + (out_n if len(ins) > 2 and ins[2] else 0.0), ""
    if op == "Gemm":
        a, b = t(ins[0]), t(ins[1])
        if a is None or b is None or a.shape is None or b.shape is None:
            return float("nan"), "Gemm input shapes unknown"
        m, k = (a.shape[1], a.shape[0]) if _attr(node, "transA", 0) else a.shape
        n = b.shape[0] if _attr(node, "transB", 0) else b.shape[1]
        return 2.0 * m * n * k + (m * n if len(ins) > 2 and ins[2] else 0.0), ""
    if op in (
        "MatMul",
        "MatMulInteger",
        "QLinearMatMul",
        "FusedMatMul",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
    ):
        a, b = t(ins[0]), t(ins[3] if op == "QLinearMatMul" else ins[1])
        trans_a, trans_b = (_attr(node, "transA", 0), _attr(node, "transB", 0)) if op == "FusedMatMul" else (0, 0)
        flops, outputs = _matmul_flops(a, b, trans_a, trans_b)
        if math.isnan(flops):
            unknown = [n for n, v in ((ins[0], a), (ins[1], b)) if v is None or v.shape is None]
            return (
                flops,
                f"{op} not counted: the shape of {', '.join(repr(n) for n in unknown) or 'its inputs'} is not known at the profiled input shapes",
            )
        scaled = op == "FusedMatMul" and float(_attr(node, "alpha", 1.0)) != 1.0
        return flops + (outputs if scaled else 0.0), ""
    if op == "MatMulNBits":  # ONNX Runtime's block-quantized weights: A (..., K) × packed B, N and K as attributes
        n, k = _attr(node, "N", 0), _attr(node, "K", 0)
        if x is None or x.shape is None or not n or not k:
            return float("nan"), "MatMulNBits not counted: its input shape or N/K attributes are not known"
        return 2.0 * math.prod(x.shape[:-1]) * n * k, ""
    if op == "Einsum":
        return _einsum_flops(node, [t(i) for i in ins])
    if op == "Attention" and not node.domain:  # ONNX opset 23: Q (B,H,S,D) or (B,S,H*D)
        q, k = t(ins[0]), t(ins[1])
        if q is None or k is None or q.shape is None or k.shape is None or out is None:
            return float("nan"), "Attention shapes unknown"
        if len(q.shape) == 4:
            b, h, s, d = q.shape
            s_kv = k.shape[2]
        else:
            heads = int(_attr(node, "q_num_heads", 1))
            b, s, hd = q.shape
            h, d, s_kv = heads, hd // heads, k.shape[1]
        return 4.0 * b * h * s * s_kv * d + 5.0 * b * h * s * s_kv, ""
    if op in ("MultiHeadAttention", "Attention") and node.domain == "com.microsoft":  # ONNX Runtime contrib ops
        q = t(ins[0])
        heads = int(_attr(node, "num_heads", 1))
        if q is None or q.shape is None or out is None or out.shape is None:
            return float("nan"), f"{op} shapes unknown"
        b, s, width = q.shape[0], q.shape[1], out.shape[-1]
        flops = 0.0
        if op == "Attention":  # input (B, S, in) × packed QKV weights (in, 3·hidden) first
            w = t(ins[1])
            if w is None or w.shape is None:
                return float("nan"), "Attention weight shape unknown"
            flops += 2.0 * b * s * w.shape[0] * w.shape[1] + b * s * w.shape[1]
            s_kv = s
        else:
            k = t(ins[1]) if len(ins) > 1 and ins[1] else None
            s_kv = k.shape[1] if k is not None and k.shape is not None and len(k.shape) == 3 else s
        return flops + 4.0 * b * s * s_kv * width + 5.0 * b * heads * s * s_kv, ""
    if op == "EmbedLayerNormalization":  # three table rows summed (2 adds), then a layer normalization (7)
        return 9.0 * out_n, ("" if not math.isnan(out_n) else "EmbedLayerNormalization output shape unknown")
    if op in _PER_ELEMENT:
        n = x.numel if x else float("nan")
        return _PER_ELEMENT[op] * n, ("" if not math.isnan(n) else f"{op} input shape unknown")
    if op in ("MaxPool", "AveragePool", "LpPool"):
        kernel = _attr(node, "kernel_shape", [])
        return out_n * math.prod(kernel), ""
    if op in REDUCE_OPS:
        return (x.numel if x else float("nan")), ""
    if op == "Resize":
        mode = _attr(node, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode == "nearest":
            return 0.0, ""
        resized = sum(1 for a, b in zip(x.shape or (), out.shape or ()) if a != b) if x and out else 0
        return out_n * resized * (3 if mode == "linear" else 8), ""
    if op in ELEMENTWISE_OPS:
        return out_n, ""
    if (
        op in VIEW_OPS
        or op in MOVE_OPS
        or op in ("Shape", "Size", "Constant", "ConstantOfShape", "Range", "NonZero", "TopK", "Trilu", "OneHot")
    ):
        return 0.0, ""
    return float("nan"), f"operator {op} is not counted"


def layer_weights(proto, layers, stored: dict[str, int] | None = None) -> tuple[list[int], dict[str, int]]:
    """The bytes of the model's weights each layer reads, and the weights no layer reads.

    ``layers``: for each layer, in the order it ran, the ONNX nodes it computes (its ``onnx_nodes``). A node reads
    an initializer or a Constant directly, or through nodes computed from constants alone (a Transpose, Cast,
    Reshape or DequantizeLinear of a weight, which ONNX Runtime folds, pre-packs or renames): each is traced back to
    the weights it was made from, as stored. A control-flow node reads its bodies' weights. A weight several layers
    read is counted once, in the first. Returns (bytes per layer, name -> bytes of each weight no layer reads);
    the two together hold every byte of the model's weights (:attr:`Model.parameter_bytes`). ``stored``: name ->
    bytes of the initializers a runtime holds at another size than the file's (a Q/DQ graph's weights only
    ``QuantizeLinear`` reads: :attr:`Model.quantized_weight_bytes`); with it the two hold
    :attr:`Model.stored_parameter_bytes`, what the run's memory totals."""

    def body_weights(graph) -> dict[str, int]:
        found = {f"{graph.name}/{name}": tensor_bytes(t) for name, t in graph_weights(graph) if name}
        for node in graph.node:
            found.update(node_bodies(node))
        return found

    def node_bodies(node) -> dict[str, int]:
        """The weights of a control-flow node's bodies, and the outer graph's weights they read."""
        found: dict[str, int] = {}
        for g in subgraphs(node):
            found.update(body_weights(g))
            for inner in g.node:  # a name the body does not define is the outer graph's
                for t in inner.input:
                    for w in made_from.get(t, [t] if t in weights else []):
                        found[w] = weights[w]
        return found

    stored = stored or {}
    weights = {name: stored.get(name, tensor_bytes(t)) for name, t in graph_weights(proto.graph) if name}
    made_from: dict[str, frozenset] = {}  # tensor computed from constants alone -> the weights behind it
    reads: dict[str, set] = {}  # node -> the weights it reads
    bodies: dict[str, dict[str, int]] = {}
    for node in proto.graph.node:
        if node.op_type == "Constant":  # its tensor is a weight of its own
            continue
        behind: set = set()
        constant = bool([t for t in node.input if t])
        for t in node.input:
            if not t:
                continue
            if t in weights and t not in made_from:
                behind.add(t)
            elif t in made_from:
                behind |= made_from[t]
            else:
                constant = False
        bodies[node.name] = node_bodies(node)
        reads[node.name] = behind
        if constant and not bodies[node.name]:
            for t in node.output:
                if t:
                    made_from[t] = frozenset(behind)
    weights.update({name: b for found in bodies.values() for name, b in found.items()})
    claimed: set = set()
    per_layer = []
    for nodes in layers:
        own = set().union(*(reads.get(n, set()) | set(bodies.get(n, {})) for n in nodes)) - claimed
        claimed |= own
        per_layer.append(sum(weights[w] for w in own))
    return per_layer, {w: b for w, b in weights.items() if w not in claimed}


def unread_weights_summary(unread: dict[str, int]) -> dict:
    """What a run records of the weights no layer reads (``Run.extra["weights_in_no_layer"]``): ``bytes``,
    ``tensors`` and the ``largest`` names (five at most, the largest first)."""
    largest = sorted(unread, key=lambda name: (-unread[name], name))[:5]
    return {"bytes": int(sum(unread.values())), "tensors": len(unread), "largest": largest}


def unread_weights_note(unread: dict[str, int]) -> str:
    """The run's note naming the weights no layer reads ("" when every weight is in a layer)."""
    if not unread:
        return ""
    summary = unread_weights_summary(unread)
    names = ", ".join(f"'{n}'" for n in summary["largest"]) + (" …" if summary["tensors"] > 5 else "")
    return (
        f"Weights per layer: {summary['tensors']} of the model's weight tensors ({summary['bytes']:,} bytes: "
        f"{names}) are read by no layer that ran (the backend folded what reads them into constants, or nothing "
        "reads them); the layers' weights sum to the model's weights less these."
    )
