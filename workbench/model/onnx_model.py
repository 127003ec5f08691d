"""Model: a loaded, validated ONNX model and its summary. Loading never executes anything.

Validation follows what ONNX Runtime and TensorRT accept, not the strictest checker verdict: a complaint of the ONNX
checker or of strict shape inference about a graph those runtimes load (graph outputs without a type or shape, a
declared output shape that inference disagrees with) is kept as a warning (:attr:`Model.warnings`, shown in the
summary, the repr and a run's report); only a model neither could run is refused. So are an operator domain declared
in ``opset_import`` that no node uses (Paddle2ONNX's ``Paddle``: a note) and duplicate or empty node names (renamed
in memory, ``conv#2`` / ``Relu#7``, so per-layer results have one name per node: :attr:`Model.renamed_nodes`;
runtimes then load :attr:`Model.runtime_source`, the renamed graph). Only a node in an unknown domain is refused,
naming the node.

External data: every location is checked to stay inside the model's folder (no absolute path, ``..``, symbolic or
hard link) before a file is opened, and errors name only the location written in the model. Loading from a path
does not read external weights into memory: they are hashed by streaming and read only when :attr:`Model.proto` is
used (building a variant, saving).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import io
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..display import repr_html
from ..errors import WorkbenchError, excerpt, first_line
from ..paths import atomic_write

#: Operator domains a model may use besides the default one (TensorRT plugins, ONNX Runtime contrib ops).
KNOWN_DOMAINS = {
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.preview.training",
    "com.microsoft",
    "com.microsoft.nchwc",
    "com.ms.internal.nhwc",
    "trt",
    "trt.plugins",
    "com.nvidia",
}


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

    def __init__(
        self,
        proto,
        *,
        path: Path | None = None,
        name: str | None = None,
        sha256: str | None = None,
        files: dict[Path, tuple] | None = None,
    ):
        import onnx

        self._proto: onnx.ModelProto = proto
        self.path = Path(path) if path else None
        #: The files read at load (the model, its external data) -> their identity then (:func:`_identity`).
        self._files = dict(files or {})
        self.name = name or (self.path.stem if self.path else (proto.graph.name or "model"))
        self._external = self.path is not None and any(True for _ in _external_tensors(proto))
        self.sha256 = sha256 or hashlib.sha256(proto.SerializeToString()).hexdigest()
        #: What the ONNX checker or strict shape inference said about a model the runtimes accept, and what loading
        #: let pass that a user should know (an unused operator domain, renamed nodes): one line each.
        self.warnings: tuple[str, ...]
        #: Node names given to unnamed or duplicate nodes (new name -> original name, "" when it had none).
        self.renamed_nodes: dict[str, str]
        self.warnings, self.renamed_nodes = _validate(proto, self.path)
        #: Input dimensions named ``?`` (an exporter's "unknown") given a name of their own: "input.axis" names.
        self.renamed_dims: tuple[str, ...] = _name_unknown_dims(proto.graph)
        if self.renamed_dims:
            self.warnings += (
                f"input dimension(s) named '?' or unnamed renamed {', '.join(self.renamed_dims[:4])}"
                f"{'...' if len(self.renamed_dims) > 4 else ''}: TensorRT holds dimensions of one name equal, and "
                "'?' means unknown, not 'the same size'",
            )

    @property
    def runtime_source(self) -> str | bytes:
        """What a runtime loads: the model's file, or the serialized graph when loading renamed nodes or dims in it."""
        if self.path is not None and self.path.is_file() and not self.renamed_nodes and not self.renamed_dims:
            self.check_unchanged()  # a runtime reads the files again: they must still be those loaded
            return str(self.path)
        return self.to_bytes()

    @property
    def proto(self):
        """The whole ``onnx.ModelProto``, external weights included (read on first use, not by loading)."""
        if self._external:
            self.check_unchanged()
            _check_external_data(self._proto, self.path)  # a data file swapped for a link since loading
            _read_external_data(self._proto, self.path)
            self.check_unchanged()
            self._external = False
        return self._proto

    def moved_to(self, path) -> Model:
        """This model at ``path``, after its folder was renamed whole (a cache entry put in place): the same files
        under their new names."""
        moved = copy.copy(self)
        moved.path = Path(path)
        if self.path is not None:
            moved._files = {moved.path.parent / f.relative_to(self.path.parent): i for f, i in self._files.items()}
        return moved

    def check_unchanged(self) -> None:
        """Raise a one-line :class:`WorkbenchError` ("changed while reading") when the model's file or one of its
        external-data files was replaced or rewritten since :func:`load_model` read it: what runs must be what
        was loaded, hashed and checked. A file replaced by the same bytes (another process writing the same cache
        entry) is still the model: its content hash decides."""
        try:
            _check_identities(self._files)
        except WorkbenchError:
            if self.path is None or _rehash(self.path, self._files) != self.sha256:
                raise
            self._files = {file: _identity(file) for file in self._files}

    # ---- summary -------------------------------------------------------------------------------------------

    @cached_property
    def inputs(self) -> tuple[TensorSpec, ...]:
        initializers = {i.name for i in self._proto.graph.initializer}
        return tuple(_spec(v) for v in self._proto.graph.input if v.name not in initializers)

    @cached_property
    def outputs(self) -> tuple[TensorSpec, ...]:
        outputs = self._proto.graph.output
        if any(not o.type.tensor_type.HasField("shape") or not o.type.tensor_type.elem_type for o in outputs):
            # declared without a type or shape (a checker warning): the runtimes take them from inference
            import onnx

            try:
                outputs = onnx.shape_inference.infer_shapes(self._proto, strict_mode=False).graph.output
            except Exception:  # noqa: BLE001 - inference that fails leaves the declared outputs
                pass
        return tuple(_spec(v) for v in outputs)

    @cached_property
    def op_histogram(self) -> dict[str, int]:
        """Operator type -> count, most frequent first (custom domains prefixed, ``com.microsoft.Gelu``)."""
        counts = collections.Counter(
            f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type for n in _all_nodes(self._proto)
        )
        return dict(counts.most_common())

    @cached_property
    def parameters(self) -> int:
        """Number of weight values: initializers, tensors of Constant nodes, and the numbers classical-ML operators
        (``ai.onnx.ml``: tree ensembles, linear models, SVMs) hold in their attributes (:func:`_ml_parameters`)."""
        return sum(int(np.prod(t.dims)) for _, t in _weight_tensors(self._proto)) + _ml_parameters(self._proto)[0]

    @cached_property
    def parameter_bytes(self) -> int:
        """The weights' bytes as the file stores them (a fake-quantized weight at its float size)."""
        return sum(tensor_bytes(t) for _, t in _weight_tensors(self._proto)) + _ml_parameters(self._proto)[1]

    @cached_property
    def stored_parameter_bytes(self) -> int:
        """The weights' bytes as a runtime holds them: a weight that only ``QuantizeLinear`` reads (a Q/DQ graph's
        fake quantization keeps FP32/FP16 values in the file) at its quantized type, 1 byte per value for INT8/FP8
        (ONNX Runtime folds that Q into an INT8 constant; TensorRT stores INT8 weights); every other weight as
        :attr:`parameter_bytes` counts it."""
        return _ml_parameters(self._proto)[1] + sum(size for *_, size in self._stored_weight_sizes())

    @property
    def quantized_weight_bytes(self) -> dict[str, int]:
        """Name -> bytes as a runtime holds it, of each weight that only ``QuantizeLinear`` reads (see
        :attr:`stored_parameter_bytes`): what a per-layer weight count puts in place of the file's FP32/FP16 bytes."""
        return {name: size for name, t, size in self._stored_weight_sizes() if size != tensor_bytes(t)}

    def _stored_weight_sizes(self):
        """(name, tensor, bytes as a runtime holds it) of every weight tensor (:attr:`stored_parameter_bytes`)."""
        readers: dict[str, list] = {}
        for node in _all_nodes(self._proto):
            for name in node.input:
                readers.setdefault(name, []).append(node)
        weights = list(_weight_tensors(self._proto))
        elem_type = {name: t.data_type for name, t in weights}
        for name, t in weights:
            nodes = readers.get(name, ())
            quantized = {
                _quantized_itemsize(n, elem_type) for n in nodes if n.op_type == "QuantizeLinear" and n.input[0] == name
            }
            if nodes and len(quantized) == 1 and len(nodes) == sum(n.op_type == "QuantizeLinear" for n in nodes):
                yield name, t, int(np.ceil(int(np.prod(t.dims)) * quantized.pop()))
            else:
                yield name, t, tensor_bytes(t)

    @property
    def opsets(self) -> dict[str, int]:
        return {(o.domain or "ai.onnx"): o.version for o in self._proto.opset_import}

    @property
    def opset(self) -> int:
        return self.opsets.get("ai.onnx", 0)

    @property
    def producer(self) -> str:
        return " ".join(filter(None, (self._proto.producer_name, self._proto.producer_version))) or "unknown"

    @property
    def dynamic(self) -> bool:
        return any(t.dynamic for t in self.inputs)

    @property
    def node_count(self) -> int:
        return len(self._proto.graph.node)

    def summary(self) -> dict:
        """The model summary as plain data (what ``workbench info --json`` prints)."""
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "producer": self.producer,
            "ir_version": self._proto.ir_version,
            "opset": self.opset,
            "opsets": self.opsets,
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in self.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in self.outputs],
            "nodes": self.node_count,
            "op_histogram": self.op_histogram,
            "parameters": self.parameters,
            "parameter_bytes": self.parameter_bytes,
            "warnings": list(self.warnings),
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
        warned = f", {len(self.warnings)} checker warning(s)" if self.warnings else ""
        return (
            f"Model({self.name!r}, opset {self.opset}, {self.node_count} nodes, {self.parameters:,} params, "
            f"inputs: {ins}{warned})"
        )

    def _repr_html_(self) -> str | None:
        return repr_html(self)  # registered by workbench.views.formatting_html


def load_model(source, *, name: str | None = None) -> Model:
    """Load and validate an ONNX model from a path (external-data files beside it included) or from bytes.

    Raises :class:`WorkbenchError` with a one-line cause and fix for anything that is not a valid model.
    External weights are checked (inside the model's folder, long enough) and hashed, not read into memory.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        proto = _parse(data, "the given bytes")
        if any(True for _ in _external_tensors(proto)):
            raise WorkbenchError(
                "The given bytes refer to external-data files, which bytes cannot carry: load the "
                "model from its .onnx path, with its data files beside it."
            )
        return Model(proto, name=name, sha256=hashlib.sha256(data).hexdigest())
    path = Path(source)
    if path.is_dir():
        onnx_files = sorted(path.glob("*.onnx"))
        if len(onnx_files) != 1:
            raise WorkbenchError(f"'{path}' is a folder: pass the .onnx file itself.")
        path = onnx_files[0]
    if not path.is_file():
        if path.exists():
            raise WorkbenchError(
                f"Model '{path}' is not a regular file (a pipe, device or socket): pass the .onnx file itself."
            )
        raise WorkbenchError(f"Model file '{path}' does not exist: check the path.")
    try:
        files = {path: _identity(path)}
        data = path.read_bytes()
    except OSError as e:
        raise WorkbenchError(f"Model file '{path}' cannot be read ({e.strerror}): check its permissions.") from None
    if len(data) != files[path][2]:
        raise _changed(path)
    proto = _parse(data, f"'{path}'")
    sizes = _check_external_data(proto, path)
    for location in sizes:
        files[path.parent / location] = _identity(path.parent / location)
    sha256 = _hash(data, path.parent, sizes)
    _check_identities(files)  # nothing was rewritten while it was read and hashed
    return Model(proto, path=path, name=name, sha256=sha256, files=files)


def _identity(path: Path) -> tuple:
    """What tells a file from its replacement or a rewrite: device, inode, size, modification time."""
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _changed(path: Path) -> WorkbenchError:
    return WorkbenchError(
        f"changed while reading: '{path}' was replaced or rewritten after it was loaded; load the model again "
        "once nothing writes it."
    )


def _rehash(path: Path, files: dict[Path, tuple]) -> str | None:
    """The content hash of the model's files now (as :func:`load_model` computes it), None when unreadable."""
    try:
        if any(file.is_symlink() or (file != path and os.lstat(file).st_nlink > 1) for file in files):
            return None  # a link is another file under this name, whatever it holds
        sizes = {str(file.relative_to(path.parent)): 0 for file in files if file != path}
        return _hash(path.read_bytes(), path.parent, sizes)
    except (OSError, ValueError):
        return None


def _check_identities(files: dict[Path, tuple]) -> None:
    for file, identity in files.items():
        try:
            now = _identity(file) if not file.is_symlink() else None
        except OSError:
            now = None
        if now != identity:
            raise _changed(file)


# ---- loading and validation ----------------------------------------------------------------------------------


def _parse(data: bytes, what: str):
    import onnx

    if not data:
        raise WorkbenchError(f"{what} is empty (0 bytes): export the model again.")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, UnicodeDecodeError, RuntimeError... on bad bytes
        hint = "it looks truncated or corrupted" if data[:1] == b"\x08" else "it is not an ONNX model"
        raise WorkbenchError(
            f"{what} could not be read as ONNX ({hint}: {type(e).__name__}: {first_line(e, 150)}); "
            "re-export or re-download it."
        ) from None
    if not proto.HasField("graph"):
        hint = "truncated or corrupted" if data[:1] == b"\x08" else "not an ONNX model"
        raise WorkbenchError(f"{what} has no graph: the file is {hint}; re-export or re-download it.")
    return proto


def _external_tensors(proto):
    from onnx import TensorProto

    for t in _stored_tensors(proto):
        if t.data_location == TensorProto.EXTERNAL:
            yield t, {e.key: e.value for e in t.external_data}


_EXTERNAL_FIX = "keep external-data files beside the model and re-save it (onnx.save_model(..., location='NAME.data'))"


def _external_field(tensor, info: dict, key: str) -> int | None:
    text = info.get(key)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise WorkbenchError(
            f"Tensor '{tensor.name[:100]}' has an invalid external-data {key} {text[:40]!r} (not a "
            f"whole number >= 0): the model file is damaged; {_EXTERNAL_FIX}."
        )
    return value


def _check_external_data(proto, path: Path) -> dict[str, int]:
    """Check every external-data reference (inside the folder, present, long enough); returns location -> size.

    Nothing is opened before its location is known to stay inside the model's folder, and a message about a file
    names only its location as written in the model.
    """
    from onnx import helper

    from ..paths import inside

    sizes: dict[str, int] = {}
    missing = set()
    for tensor, info in _external_tensors(proto):
        location = info.get("location", "")
        file = inside(
            path.parent, location, f"external-data location of tensor '{tensor.name[:100]}'", fix=_EXTERNAL_FIX
        )
        offset = _external_field(tensor, info, "offset") or 0
        length = _external_field(tensor, info, "length")
        if length is None:
            try:
                itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
            except (KeyError, TypeError, ValueError):
                itemsize = 1
            length = int(np.prod([max(int(d), 0) for d in tensor.dims], dtype=object) or 0) * itemsize
        if location not in sizes:
            if not file.is_file():
                missing.add(location)
                continue
            sizes[location] = file.stat().st_size
        if sizes[location] < offset + length:
            raise WorkbenchError(
                f"External data file {location!r} is shorter than tensor '{tensor.name[:100]}' needs "
                f"({sizes[location]} < {offset + length} bytes): copy the complete file beside the model."
            )
    if missing:
        raise WorkbenchError(
            f"Missing external data file(s) {', '.join(repr(m) for m in sorted(missing))} for '{path.name}': "
            f"copy them into '{path.parent}' beside the model."
        )
    return sizes


def _read_external_data(proto, path: Path) -> None:
    """Read the (already checked) external weights into ``proto``."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(proto, str(path.parent))
    except MemoryError:
        raise WorkbenchError(
            f"The weights of '{path.name}' do not fit in memory: use a machine with more RAM."
        ) from None
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        raise WorkbenchError(
            f"The external data of '{path.name}' cannot be read ({first_line(e, 200)}): {_EXTERNAL_FIX}."
        ) from None


def _hash(data: bytes, base: Path, sizes: dict[str, int]) -> str:
    """Content hash over the model file and every external-data file it uses (streamed, 1 MiB at a time)."""
    h = hashlib.sha256(data)
    for loc in sorted(sizes):
        h.update(loc.encode())
        with open(base / loc, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _validate(proto, path: Path | None) -> tuple[tuple[str, ...], dict[str, str]]:
    import onnx

    graph = proto.graph
    what = f"'{path.name}'" if path else "The model"
    _check_bounds(proto, what)
    if len(graph.node) == 0:
        raise WorkbenchError(f"{what} has an empty graph (no nodes): export the model again with its layers.")
    if not graph.output:
        raise WorkbenchError(f"{what} declares no graph outputs: export it again with its outputs named.")
    newest = onnx.defs.onnx_opset_version()
    notes = []
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > newest:
            raise WorkbenchError(
                f"{what} uses opset {o.version}, newer than this onnx package knows ({newest}): "
                f"upgrade onnx or re-export with opset <= {newest}."
            )
    declared = {o.domain for o in proto.opset_import} | {"ai.onnx"}
    used = set()
    for node in _all_nodes(proto):
        used.add(node.domain or "")
        if node.domain not in KNOWN_DOMAINS:
            raise WorkbenchError(
                f"{what}: node '{node.name or node.op_type}' ({node.op_type}) is in unknown operator domain "
                f"'{node.domain}': neither ONNX Runtime nor TensorRT can run it without a custom-op library; "
                "export that operator as standard ONNX operators."
            )
        if node.domain not in declared and not (node.domain == "" and "" in declared):
            raise WorkbenchError(
                f"{what}: node '{node.name or node.op_type}' uses domain '{node.domain}' that the model does not "
                "import (opset_import): export the model again."
            )
    unused = sorted(o.domain for o in proto.opset_import if o.domain not in KNOWN_DOMAINS and o.domain not in used)
    if unused:
        notes.append(
            f"opset_import declares operator domain{'s' if len(unused) > 1 else ''} "
            f"{', '.join(repr(d) for d in unused)} that no node uses: ignored, as ONNX Runtime and TensorRT do"
        )
    renamed = _unique_names(graph)
    duplicates = [new for new, old in renamed.items() if old]
    if duplicates:
        shown = ", ".join(repr(n) for n in duplicates[:3]) + ("..." if len(duplicates) > 3 else "")
        notes.append(
            f"{len(duplicates)} duplicate node name(s) renamed NAME#k for the per-layer results (the original "
            f"name before the #): {shown}"
        )
    if len(renamed) > len(duplicates):
        notes.append(f"{len(renamed) - len(duplicates)} unnamed node(s) named OpType#index for the per-layer results")
    complaints = _checker_complaints(proto, path)
    if not complaints:
        return tuple(notes), renamed
    accepted, why = _runtimes_accept(proto, path, complaints)
    if not accepted:
        raise WorkbenchError(f"{what} is not a valid ONNX graph: {complaints[0]}{why}; fix the exporter or the graph.")
    return tuple(f"ONNX checker: {c} ({why})" for c in complaints) + tuple(notes), renamed


def _name_unknown_dims(graph) -> tuple[str, ...]:
    """Name each graph-input dimension called ``?``, or with neither a size nor a name, after its input and axis
    (``x.2``), in place; returns those names.

    Paddle2ONNX writes ``?`` for every unknown dimension, so an image input reads ``[-1, 3, ?, ?]``. ONNX Runtime
    reads ``?`` as unknown, but TensorRT takes dimensions that share a name to be one size and refuses an
    optimization profile whose height and width differ ("Input dimensions with this name have different constant
    values"). TorchScript exports leave some dimensions with neither (silero VAD), which ModelOpt cannot read."""
    named = []
    for value in graph.input:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param.strip() == "?" or not (dim.HasField("dim_value") or dim.dim_param.strip()):
                dim.dim_param = f"{value.name}.{axis}"
                named.append(dim.dim_param)
    return tuple(named)


def _unique_names(graph) -> dict[str, str]:
    """Give every node of ``graph`` a unique, non-empty name in place; returns new name -> original name.

    ONNX Runtime and TensorRT run graphs with duplicate or empty node names (OpenVINO and TF converters make
    them), but per-layer results need one name per node: the second ``conv`` becomes ``conv#2``, an unnamed
    ``Relu`` at position 7 ``Relu#7``, so the original name stays readable in every table.
    """
    taken = {n.name for n in graph.node if n.name}
    seen: set[str] = set()
    renamed = {}
    for i, node in enumerate(graph.node):
        if node.name and node.name not in seen:
            seen.add(node.name)
            continue
        base, k = (f"{node.name}#", 2) if node.name else (f"{node.op_type}#", i)
        while f"{base}{k}" in taken or f"{base}{k}" in seen:
            k += 1
        renamed[f"{base}{k}"] = node.name
        node.name = f"{base}{k}"
        seen.add(node.name)
    return renamed


def _checker_complaints(proto, path: Path | None) -> list[str]:
    """What the ONNX checker and strict shape inference say (one line each); empty when both pass."""
    import onnx

    complaints = []
    try:
        if path is not None:
            # from the file: the checker finds external data itself, and reads the weights once in C++ (from the
            # proto it is handed a serialized copy it parses again: +1 GB on a 350 MB ViT-B/16)
            onnx.checker.check_model(str(path))
        else:
            onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001 - the checker raises ValidationError, RuntimeError, ValueError...
        complaints.append(first_line(e, 240))
    try:
        onnx.shape_inference.infer_shapes(_without_weights(proto), strict_mode=True, data_prop=False)
    except Exception as e:  # noqa: BLE001 - InferenceError, RuntimeError
        complaints.append(first_line(e, 240))
    return complaints


#: Initializers larger than this go to shape inference as typed inputs: their shape is what it reads.
_SHAPE_ONLY_BYTES = 1024


def _without_weights(proto):
    """``proto`` with its large initializers given as typed inputs of their shape: what shape inference needs (the
    small ones, shapes and axes, keep their values), without the serialized copies of the weights it would make
    in and out (+1 GB on a 350 MB model)."""
    import onnx

    light = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(light, field, getattr(proto, field))
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    graph, source = light.graph, proto.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    graph.sparse_initializer.extend(source.sparse_initializer)
    listed = {i.name for i in source.input}
    for tensor in source.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL and tensor.ByteSize() <= _SHAPE_ONLY_BYTES:
            graph.initializer.append(tensor)
        elif tensor.name not in listed:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return light


#: Checker complaints about a graph ONNX Runtime and TensorRT load: outputs declared without a type or shape (they
#: take them from inference), a declared shape inference disagrees with (they keep the inferred one).
_LENIENT = (
    "Field 'type' of 'value_info' is required but missing",
    "Field 'shape' of 'type' is required but missing",
    "Inferred shape and existing shape differ",
)


def _runtimes_accept(proto, path: Path | None, complaints: list[str]) -> tuple[bool, str]:
    """Whether the runtimes load a graph the checker complained about, and why we think so.

    Known-harmless complaints (:data:`_LENIENT`, with lenient shape inference passing) need no runtime; anything
    else is decided by ONNX Runtime itself (CPU, no optimizations) when it is installed.
    """
    import onnx

    try:
        onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=False)
        lenient_ok = True
    except Exception:  # noqa: BLE001
        lenient_ok = False
    if (
        lenient_ok
        and all(any(k in c for k in _LENIENT) for c in complaints)
        and not any("TypeInferenceError" in c for c in complaints)
    ):
        return True, "ONNX Runtime and TensorRT take shapes from inference"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False, " (and ONNX Runtime is not installed to try it)"
    from .session_probe import ort_session

    try:
        source = str(path) if path is not None else proto.SerializeToString()
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints "EP Error ... retrying" for some refusals
            ort_session(source, "disable")
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's refusal is the verdict
        return False, f" (ONNX Runtime refuses it too: {first_line(e, 160)})"
    return True, "ONNX Runtime loads it"


#: How deep subgraphs (If/Loop/Scan bodies) may nest: ONNX Runtime's session build grows about 1.7x per level (a
#: 16-deep If nest takes 11 s, a 30-deep one would take hours); real models nest 1 to 3 deep.
MAX_SUBGRAPH_DEPTH = 10
#: The most nodes (subgraphs included) a model may have: the largest real graphs have tens of thousands; each node is
#: a layer of the per-layer tables, charts and reports.
MAX_NODES = 100_000
#: The most graph outputs, and the most inputs of one node (every one is a tensor compared, stored and shown).
MAX_GRAPH_OUTPUTS = 4096
MAX_NODE_INPUTS = 4096


def _check_bounds(proto, what: str) -> None:
    """Refuse, before any other work, a graph whose size would make every later step (checker, session build,
    profile, report) run for hours: subgraphs nested deeper than :data:`MAX_SUBGRAPH_DEPTH`, more than
    :data:`MAX_NODES` nodes, more than :data:`MAX_GRAPH_OUTPUTS` outputs or a node with more than
    :data:`MAX_NODE_INPUTS` inputs. Walked with a stack, never recursion."""

    fix = "split the model, or export it with loops and subgraphs unrolled less deeply"
    if len(proto.graph.output) > MAX_GRAPH_OUTPUTS:
        raise WorkbenchError(
            f"{what} has {len(proto.graph.output):,} graph outputs, more than the {MAX_GRAPH_OUTPUTS:,} the "
            "workbench compares and shows: export it with fewer outputs (concatenate them, or keep those you need)."
        )
    nodes = 0
    stack = [(proto.graph, 0)]
    while stack:
        graph, depth = stack.pop()
        if depth > MAX_SUBGRAPH_DEPTH:
            raise WorkbenchError(
                f"{what} nests subgraphs (If/Loop/Scan bodies) more than {MAX_SUBGRAPH_DEPTH} deep, the most the "
                f"workbench runs (ONNX Runtime's session build grows about 1.7x per level): {fix}."
            )
        nodes += len(graph.node)
        if nodes > MAX_NODES:
            raise WorkbenchError(
                f"{what} has more than {MAX_NODES:,} nodes, the most the workbench profiles and shows: {fix}."
            )
        for node in graph.node:
            if len(node.input) > MAX_NODE_INPUTS:
                raise WorkbenchError(
                    f"{what}: node {excerpt(node.name or node.op_type)} has {len(node.input):,} inputs, more than "
                    f"the {MAX_NODE_INPUTS:,} the workbench takes: {fix}."
                )
            stack.extend((g, depth + 1) for g in subgraphs(node))


#: ``onnx.AttributeProto.GRAPH`` and ``GRAPHS`` (numbers fixed by the ONNX spec): compared per node of every walk,
#: without importing onnx per call (1.7 million imports were 4 of the 20 s of ``info`` on a 99,000-node chain).
_GRAPH, _GRAPHS = 5, 10


def subgraphs(node) -> list:
    """The bodies of a control-flow node (If's branches, Loop's and Scan's body), its own only (not nested ones)."""
    return [g for a in node.attribute if a.type in (_GRAPH, _GRAPHS) for g in ([a.g] if a.type == _GRAPH else a.graphs)]


def _all_graphs(proto):
    """The main graph and every subgraph (If/Loop/Scan bodies, nested)."""
    stack = [proto.graph]
    while stack:
        g = stack.pop()
        yield g
        for n in g.node:
            if n.attribute:  # most nodes have none: no list made for them
                stack.extend(subgraphs(n))


def _all_nodes(proto):
    """Every node, including those in subgraphs (If/Loop/Scan bodies)."""
    for g in _all_graphs(proto):
        yield from g.node


def _weight_tensors(proto):
    """(name, tensor) of the weights of every graph (:func:`graph_weights`): a body's weights are the model's too
    (silero VAD keeps all of them inside its If)."""
    for g in _all_graphs(proto):
        yield from graph_weights(g)


def graph_weights(graph):
    """(name, tensor) of one graph's initializers and Constant tensors (not its bodies'), a Constant's by the name
    of its output (its tensor's own name is often empty)."""
    from onnx import AttributeProto

    yield from ((t.name, t) for t in graph.initializer)
    for n in graph.node:
        if n.op_type == "Constant":
            yield from (((n.output or [""])[0], a.t) for a in n.attribute if a.type == AttributeProto.TENSOR)


def _stored_tensors(proto):
    """Every tensor whose data the model file holds or points to: :func:`_weight_tensors` plus the values and
    indices of sparse initializers and sparse Constants (external data of either must stay inside the folder too)."""
    from onnx import AttributeProto

    yield from (t for _, t in _weight_tensors(proto))
    sparse = [s for g in _all_graphs(proto) for s in g.sparse_initializer]
    sparse += [
        a.sparse_tensor for n in _all_nodes(proto) for a in n.attribute if a.type == AttributeProto.SPARSE_TENSOR
    ]
    for s in sparse:
        yield s.values
        yield s.indices


def tensor_bytes(tensor) -> int:
    """Bytes of an ONNX TensorProto's values (its dims × its element size)."""
    from onnx import helper

    return int(np.prod(tensor.dims)) * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize


def element_bytes(elem: int) -> float:
    """Bytes per value of an ONNX element type (TensorProto enum): 0.5 for the 4-bit types (two packed in a byte),
    NaN for a type without a size."""
    from onnx import TensorProto, helper

    if elem in (TensorProto.INT4, TensorProto.UINT4) or elem == getattr(TensorProto, "FLOAT4E2M1", -1):
        return 0.5
    try:
        return float(np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize)
    except (KeyError, TypeError, ValueError):
        return float("nan")


def _quantized_itemsize(node, elem_type: dict[str, int]) -> float:
    """Bytes per value a QuantizeLinear ``node`` writes: its zero point's type, else its ``output_dtype``
    attribute (opset 21), else uint8 (the operator's default)."""
    elem = elem_type.get(node.input[2]) if len(node.input) > 2 else None
    elem = elem or next((a.i for a in node.attribute if a.name == "output_dtype" and a.i), None)
    size = element_bytes(elem) if elem else 1.0
    return size if size == size else 1.0


def _ml_parameters(proto) -> tuple[int, int]:
    """(values, bytes) that classical-ML operators (domain ``ai.onnx.ml``) hold in numeric attributes: a tree
    ensemble's per-node features, thresholds and children and per-leaf classes and weights, a linear model's
    coefficients and intercepts, an SVM's support vectors; floats 4 bytes, integers 8, tensors at their type.
    Strings (class labels, node modes) are not counted."""
    from onnx import AttributeProto

    values = size = 0
    for node in _all_nodes(proto):
        if node.domain != "ai.onnx.ml":
            continue
        for a in node.attribute:
            if a.type == AttributeProto.FLOATS:
                values, size = values + len(a.floats), size + 4 * len(a.floats)
            elif a.type == AttributeProto.INTS:
                values, size = values + len(a.ints), size + 8 * len(a.ints)
            elif a.type in (AttributeProto.TENSOR, AttributeProto.TENSORS):
                for t in [a.t] if a.type == AttributeProto.TENSOR else list(a.tensors):
                    values, size = values + int(np.prod(t.dims)), size + tensor_bytes(t)
    return values, size


def _spec(value_info) -> TensorSpec:
    from onnx import helper

    tt = value_info.type.tensor_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
    except (KeyError, TypeError):
        try:
            dtype = helper.tensor_dtype_to_string(tt.elem_type).removeprefix("TensorProto.").lower()
        except (KeyError, TypeError):  # an output declared without a type: the runtimes infer it
            dtype = "unknown"
    # ml_dtypes names (bfloat16, float8_e4m3fn) come through np.dtype too; "?" marks an unknown dim
    shape = (
        tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)
        if tt.HasField("shape")
        else ()
    )
    return TensorSpec(value_info.name, dtype, shape)
