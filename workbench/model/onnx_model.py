"""Model: a loaded, validated ONNX model and its summary. Loading never executes anything."""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..display import repr_html
from ..errors import WorkbenchError, first_line
from ..paths import atomic_write

#: Operator domains a model may use besides the default one (TensorRT plugins, ONNX Runtime contrib ops).
KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft", "com.microsoft.nchwc",
                 "com.ms.internal.nhwc", "trt", "trt.plugins", "com.nvidia"}


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output. ``shape`` holds ints for fixed dims and names (or ``"?"``) for dynamic ones."""

    name: str
    dtype: str  # numpy dtype name: float32, float16, int64, bool...
    shape: tuple

    @property
    def dynamic(self) -> bool:
        return any(not isinstance(d, int) or d < 0 for d in self.shape)

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(str(d) for d in self.shape)}]"


class Model:
    """An ONNX model, validated (checker + strict shape inference) and summarised.

    Use :func:`load_model`; the constructor takes an already-loaded ``onnx.ModelProto``.
    """

    def __init__(self, proto, *, path: Path | None = None, name: str | None = None, sha256: str | None = None):
        import onnx

        self.proto: onnx.ModelProto = proto
        self.path = Path(path) if path else None
        self.name = name or (self.path.stem if self.path else (proto.graph.name or "model"))
        self.sha256 = sha256 or hashlib.sha256(proto.SerializeToString()).hexdigest()
        _validate(proto, self.path)

    # ---- summary -------------------------------------------------------------------------------------------

    @cached_property
    def inputs(self) -> tuple[TensorSpec, ...]:
        initializers = {i.name for i in self.proto.graph.initializer}
        return tuple(_spec(v) for v in self.proto.graph.input if v.name not in initializers)

    @cached_property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(_spec(v) for v in self.proto.graph.output)

    @cached_property
    def op_histogram(self) -> dict[str, int]:
        """Operator type -> count, most frequent first (custom domains prefixed, ``com.microsoft.Gelu``)."""
        counts = collections.Counter(
            f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type for n in _all_nodes(self.proto)
        )
        return dict(counts.most_common())

    @cached_property
    def parameters(self) -> int:
        """Number of weight values: initializers plus tensors of Constant nodes."""
        return sum(int(np.prod(t.dims)) for t in _weight_tensors(self.proto))

    @cached_property
    def parameter_bytes(self) -> int:
        from onnx import helper

        return sum(
            int(np.prod(t.dims)) * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
            for t in _weight_tensors(self.proto)
        )

    @property
    def opsets(self) -> dict[str, int]:
        return {(o.domain or "ai.onnx"): o.version for o in self.proto.opset_import}

    @property
    def opset(self) -> int:
        return self.opsets.get("ai.onnx", 0)

    @property
    def producer(self) -> str:
        return " ".join(filter(None, (self.proto.producer_name, self.proto.producer_version))) or "unknown"

    @property
    def dynamic(self) -> bool:
        return any(t.dynamic for t in self.inputs)

    @property
    def node_count(self) -> int:
        return len(self.proto.graph.node)

    def summary(self) -> dict:
        """The model summary as plain data (what ``workbench info --json`` prints)."""
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "producer": self.producer,
            "ir_version": self.proto.ir_version,
            "opset": self.opset,
            "opsets": self.opsets,
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in self.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in self.outputs],
            "nodes": self.node_count,
            "op_histogram": self.op_histogram,
            "parameters": self.parameters,
            "parameter_bytes": self.parameter_bytes,
        }

    def to_bytes(self) -> bytes:
        return self.proto.SerializeToString()

    def save(self, path) -> Path:
        """Write the model to ``path`` (weights over 1 GiB go to an external-data file beside it)."""
        import onnx

        path = Path(path)
        large = self.proto.ByteSize() > (1 << 30)
        if not large:
            return atomic_write(path, self.to_bytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(self.proto, str(path), save_as_external_data=True, location=f"{path.name}.data")
        return path

    def __repr__(self) -> str:
        ins = ", ".join(str(t) for t in self.inputs)
        return f"Model({self.name!r}, opset {self.opset}, {self.node_count} nodes, {self.parameters:,} params, inputs: {ins})"

    def _repr_html_(self) -> str | None:
        return repr_html(self)  # registered by workbench.views.formatting_html


def load_model(source, *, name: str | None = None) -> Model:
    """Load and validate an ONNX model from a path (external-data files beside it included) or from bytes.

    Raises :class:`WorkbenchError` with a one-line cause and fix for anything that is not a valid model.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        proto = _parse(data, "the given bytes")
        return Model(proto, name=name, sha256=_hash(data, proto, None))
    path = Path(source)
    if path.is_dir():
        onnx_files = sorted(path.glob("*.onnx"))
        if len(onnx_files) != 1:
            raise WorkbenchError(f"'{path}' is a folder: pass the .onnx file itself.")
        path = onnx_files[0]
    if not path.is_file():
        raise WorkbenchError(f"Model file '{path}' does not exist: check the path.")
    data = path.read_bytes()
    proto = _parse(data, f"'{path}'")
    _load_external_data(proto, path)
    return Model(proto, path=path, name=name, sha256=_hash(data, proto, path.parent))


# ---- loading and validation ----------------------------------------------------------------------------------


def _parse(data: bytes, what: str):
    import onnx
    from google.protobuf.message import DecodeError

    if not data:
        raise WorkbenchError(f"{what} is empty (0 bytes): export the model again.")
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        hint = "it looks truncated or corrupted" if data[:1] == b"\x08" else "it is not an ONNX model"
        raise WorkbenchError(f"{what} could not be read as ONNX ({hint}: {first_line(e)}); re-export or re-download it.") from None
    if not proto.HasField("graph"):
        hint = "truncated or corrupted" if data[:1] == b"\x08" else "not an ONNX model"
        raise WorkbenchError(f"{what} has no graph: the file is {hint}; re-export or re-download it.")
    return proto


def _external_tensors(proto):
    from onnx import TensorProto

    for t in _weight_tensors(proto):
        if t.data_location == TensorProto.EXTERNAL:
            yield t, {e.key: e.value for e in t.external_data}


def _load_external_data(proto, path: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_model

    missing = set()
    for tensor, info in _external_tensors(proto):
        location = path.parent / info.get("location", "")
        if not location.is_file():
            missing.add(info.get("location", "?"))
            continue
        need = int(info.get("offset", 0)) + int(info.get("length", 0))
        if location.stat().st_size < need:
            raise WorkbenchError(
                f"External data file '{location.name}' is shorter than tensor '{tensor.name}' needs "
                f"({location.stat().st_size} < {need} bytes): copy the complete file beside the model."
            )
    if missing:
        raise WorkbenchError(
            f"Missing external data file(s) {', '.join(sorted(missing))} for '{path.name}': "
            f"copy them into '{path.parent}' beside the model."
        )
    if any(True for _ in _external_tensors(proto)):
        load_external_data_for_model(proto, str(path.parent))


def _hash(data: bytes, proto, base: Path | None) -> str:
    """Content hash over the model file and every external-data file it uses."""
    h = hashlib.sha256(data)
    if base is not None:
        import onnx

        locations = sorted({e.value for t in _weight_tensors(onnx.load_model_from_string(data))
                            for e in t.external_data if e.key == "location"})
        for loc in locations:
            h.update(loc.encode())
            with open(base / loc, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _validate(proto, path: Path | None) -> None:
    import onnx

    graph = proto.graph
    what = f"'{path.name}'" if path else "The model"
    if len(graph.node) == 0:
        raise WorkbenchError(f"{what} has an empty graph (no nodes): export the model again with its layers.")
    if not graph.output:
        raise WorkbenchError(f"{what} declares no graph outputs: export it again with its outputs named.")
    newest = onnx.defs.onnx_opset_version()
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > newest:
            raise WorkbenchError(
                f"{what} uses opset {o.version}, newer than this onnx package knows ({newest}): "
                f"upgrade onnx or re-export with opset <= {newest}."
            )
        if o.domain not in KNOWN_DOMAINS:
            raise WorkbenchError(
                f"{what} imports unknown operator domain '{o.domain}': neither ONNX Runtime nor TensorRT can run it "
                "without a custom-op library; export with standard ONNX operators."
            )
    declared = {o.domain for o in proto.opset_import} | {"ai.onnx"}
    for node in _all_nodes(proto):
        if node.domain not in declared and not (node.domain == "" and "" in declared):
            raise WorkbenchError(
                f"{what}: node '{node.name or node.op_type}' uses domain '{node.domain}' that the model does not "
                "import (opset_import): export the model again."
            )
    seen: dict[str, int] = {}
    for node in graph.node:
        if node.name:
            seen[node.name] = seen.get(node.name, 0) + 1
    dups = sorted(n for n, c in seen.items() if c > 1)
    if dups:
        raise WorkbenchError(
            f"{what} has duplicate node names ({', '.join(dups[:3])}{'...' if len(dups) > 3 else ''}): "
            "per-layer results would be ambiguous; give nodes unique names (e.g. onnx-graphsurgeon's cleanup)."
        )
    try:
        if proto.ByteSize() < (2 << 30) - (1 << 20):
            onnx.checker.check_model(proto)
        elif path is not None:
            onnx.checker.check_model(str(path))
        onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=False)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, RuntimeError) as e:
        raise WorkbenchError(f"{what} is not a valid ONNX graph: {first_line(e)}; fix the exporter or the graph.") from None



def _all_nodes(proto):
    """Every node, including those in subgraphs (If/Loop/Scan bodies)."""
    from onnx import AttributeProto

    stack = [proto.graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            yield n
            for a in n.attribute:
                if a.type == AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == AttributeProto.GRAPHS:
                    stack.extend(a.graphs)


def _weight_tensors(proto):
    from onnx import AttributeProto

    yield from proto.graph.initializer
    for n in _all_nodes(proto):
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.type == AttributeProto.TENSOR:
                    yield a.t


def _spec(value_info) -> TensorSpec:
    from onnx import helper

    tt = value_info.type.tensor_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
    except (KeyError, TypeError):
        dtype = helper.tensor_dtype_to_string(tt.elem_type).removeprefix("TensorProto.").lower()
    # ml_dtypes names (bfloat16, float8_e4m3fn) come through np.dtype too; "?" marks an unknown dim
    shape = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim
    ) if tt.HasField("shape") else ()
    return TensorSpec(value_info.name, dtype, shape)
