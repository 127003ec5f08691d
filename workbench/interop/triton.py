"""Export a run as a Triton Inference Server model repository entry.

Layout written (Triton's model repository convention)::

    <out_dir>/<name>/config.pbtxt
    <out_dir>/<name>/1/model.plan        TensorRT runs   (platform "tensorrt_plan")
    <out_dir>/<name>/1/model.onnx        ONNX Runtime runs (platform "onnxruntime_onnx")

Python flavour (``flavour="python"``, ONNX Runtime runs): Triton's Python backend runs the run's own engine —
ONNX Runtime with the run's execution providers and graph optimization level — from ``1/model.py``
(:mod:`workbench.interop.triton_python_model`), ``1/model.onnx`` and ``1/engine.json``; any ``tritonserver`` with
the Python backend serves it (the ``nvidia-pytriton`` wheel's, see :mod:`workbench.serving`). Instances are
``KIND_CPU`` for Triton: the session itself picks the device its providers name.

Batching: when the first dimension of every input and output is dynamic, the model batches: ``max_batch_size``
is the largest batch the run's optimization profile allows (or the one asked for, which may not exceed it) and
``dims`` leave the batch dimension out. An ONNX Runtime model has no profile: its dynamic batch dimension takes any
batch, so ``max_batch_size`` is :data:`ONNX_MAX_BATCH` (or the largest batch the run measured, if larger), not the
batch it happened to be profiled at. Otherwise ``max_batch_size`` is 0 and ``dims`` are the full shapes; dynamic
batching is only written for a model that batches.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from ..config import format_shape
from ..errors import WorkbenchError
from ..paths import atomic_directory
from ..results.run import Run, TensorInfo

log = logging.getLogger(__name__)

#: numpy dtype name → Triton ``DataType`` (model_config.proto).
TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
    "object": "TYPE_STRING",
    "str": "TYPE_STRING",
}
KINDS = ("KIND_GPU", "KIND_CPU")
FLAVOURS = ("platform", "python")
#: max_batch_size written for an ONNX model with a dynamic batch dimension (Triton needs a bound; pass another).
ONNX_MAX_BATCH = 8


def export_triton(
    run: Run,
    out_dir,
    *,
    name: str | None = None,
    max_batch_size: int | None = None,
    dynamic_batching: bool = True,
    instances: int = 1,
    kind: str = "KIND_GPU",
    plan=None,
    flavour: str = "platform",
    preferred_batch_sizes: tuple[int, ...] = (),
    max_queue_delay_us: int = 0,
) -> Path:
    """Write ``run`` into the Triton model repository ``out_dir``; returns the model folder.

    ``flavour``: "platform" serves the file with Triton's own backend (``onnxruntime_onnx``, ``tensorrt_plan``);
    "python" serves an ONNX Runtime run through the Python backend (see the module docstring).
    ``preferred_batch_sizes`` and ``max_queue_delay_us`` tune dynamic batching (Triton's defaults when empty / 0).

    ``plan`` is the serialized engine for TensorRT runs that do not carry one (imports made without ``--plan``).
    An existing model folder of the same name is replaced as a whole (written aside, then swapped in). A run whose
    accuracy verdict is BROKEN is still exported (the user decides), with a warning (logged; the CLI
    prints it as one ``warning:`` line): its outputs are wrong.
    """
    if kind not in KINDS:
        raise WorkbenchError(f"Unknown instance kind '{kind}': choose KIND_GPU or KIND_CPU.")
    if instances < 1:
        raise WorkbenchError(f"Instance count {instances} is out of range: use 1 or more.")
    if flavour not in FLAVOURS:
        raise WorkbenchError(f"Unknown Triton repository flavour '{flavour}': choose platform or python.")
    platform, model_file, filename = _model_source(run, plan)
    if flavour == "python" and platform != "onnxruntime_onnx":
        raise WorkbenchError(
            f"The Python-backend flavour serves ONNX Runtime runs; '{run.name}' is a {run.backend} run: export it "
            "with flavour 'platform' (a tritonserver with the TensorRT backend, as in NGC's Triton container)."
        )
    if flavour == "python":
        kind = "KIND_CPU"  # for Triton; the ONNX Runtime session places itself by its providers
    if platform == "tensorrt_plan" and kind != "KIND_GPU":
        raise WorkbenchError("A TensorRT plan runs only on a GPU: use kind KIND_GPU for TensorRT runs.")
    if not run.inputs or not run.outputs:
        raise WorkbenchError(
            f"Run '{run.name}' does not record its inputs and outputs: import it with its layer "
            "information (--exportLayerInfo) or its trtexec log, or profile the model again."
        )
    name = _model_name(name or run.model.get("name") or "model")
    batch = _max_batch(run, max_batch_size)
    if run.accuracy is not None and run.accuracy.verdict == "broken":
        log.warning(
            f"run '{run.name or run.id}' is accuracy BROKEN ({run.accuracy.verdict_reason}): the exported model "
            "gives wrong outputs; fix the variant (see its advice) before serving it"
        )
    batching = dynamic_batching and batch > 0
    if batching and any(not 1 <= b <= batch for b in preferred_batch_sizes):
        raise WorkbenchError(
            f"Preferred batch sizes {list(preferred_batch_sizes)} must lie in 1..{batch} (the max batch size): "
            "pass smaller sizes or a larger max_batch_size."
        )
    if max_queue_delay_us < 0:
        raise WorkbenchError(f"Max queue delay {max_queue_delay_us} µs is out of range: use 0 or more.")
    text = config_pbtxt(
        name,
        "python" if flavour == "python" else platform,
        run.inputs,
        run.outputs,
        batch,
        dynamic_batching=batching,
        instances=instances,
        kind=kind,
        preferred_batch_sizes=tuple(preferred_batch_sizes) if batching else (),
        max_queue_delay_us=max_queue_delay_us if batching else 0,
    )
    engine = _python_engine(run, batched=batch > 0) if flavour == "python" else None
    return _write_repository(Path(out_dir), name, text, model_file, filename, engine)


def config_pbtxt(
    name: str,
    platform: str,
    inputs,
    outputs,
    max_batch_size: int,
    *,
    dynamic_batching: bool,
    instances: int,
    kind: str,
    preferred_batch_sizes: tuple[int, ...] = (),
    max_queue_delay_us: int = 0,
) -> str:
    """The ``config.pbtxt`` text (protobuf text format of Triton's ``ModelConfig``); ``platform`` "python" names
    the Python backend (``backend: "python"``) instead of a platform."""
    head = f"backend: {_quote(platform)}" if platform == "python" else f"platform: {_quote(platform)}"
    lines = [f"name: {_quote(name)}", head, f"max_batch_size: {max_batch_size}"]
    for section, tensors in (("input", inputs), ("output", outputs)):
        entries = ",\n".join(_tensor_entry(t, batched=max_batch_size > 0) for t in tensors)
        lines.append(f"{section} [\n{entries}\n]")
    if dynamic_batching:
        body = []
        if preferred_batch_sizes:
            body.append(f"  preferred_batch_size: [ {', '.join(str(int(b)) for b in preferred_batch_sizes)} ]")
        if max_queue_delay_us:
            body.append(f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}")
        lines.append("dynamic_batching {\n" + "\n".join(body) + "\n}" if body else "dynamic_batching { }")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]")
    return "\n".join(lines) + "\n"


def _tensor_entry(t: TensorInfo, *, batched: bool) -> str:
    dtype = TRITON_TYPES.get(str(t.dtype))
    if dtype is None:
        raise WorkbenchError(
            f"Tensor '{t.name}' has data type '{t.dtype or 'unknown'}', which Triton cannot "
            f"carry: give the model {', '.join(sorted(k for k in TRITON_TYPES if k != 'str'))} "
            "inputs and outputs."
        )
    dims = [_dim(d) for d in (t.shape[1:] if batched else t.shape)]
    body = [f"    name: {_quote(t.name)}", f"    data_type: {dtype}"]
    if dims:
        body.append(f"    dims: [ {', '.join(map(str, dims))} ]")
    else:  # Triton needs at least one dim: a scalar (per batch item) travels as [1] and is reshaped back
        body += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "  {\n" + "\n".join(body) + "\n  }"


def _dim(d) -> int:
    return d if isinstance(d, int) and d >= 0 else -1


def _quote(text: str) -> str:
    return json.dumps(str(text))  # JSON escapes are valid protobuf text-format string escapes


def _model_name(text: str) -> str:
    # a model name is a folder name in the repository: keep it to safe characters
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "model"


def _model_source(run: Run, plan) -> tuple[str, Path, str]:
    """(platform, file to copy, its file name in the repository) for a run."""
    if run.backend == "tensorrt":
        path = Path(plan) if plan is not None else run.artifact("engine")
        if path is None:
            raise WorkbenchError(
                f"Run '{run.name}' has no engine plan: pass one (export_triton(..., plan=PATH); "
                "CLI: workbench export triton RUN --plan FILE), or import with "
                "'workbench import ... --plan FILE'."
            )
        if not path.is_file():
            raise WorkbenchError(f"Engine plan '{path}' does not exist: pass the file trtexec --saveEngine wrote.")
        return "tensorrt_plan", path, "model.plan"
    if run.backend == "onnxruntime":
        path = run.artifact("onnx") or (Path(run.model["path"]) if run.model.get("path") else None)
        if path is None or not path.is_file():
            raise WorkbenchError(
                f"Run '{run.name}' has no ONNX file to export (looked for '{path}'): profile the "
                "model again from its .onnx file, or copy it back to that path."
            )
        return "onnxruntime_onnx", path, "model.onnx"
    raise WorkbenchError(f"Cannot export a '{run.backend}' run to Triton: only tensorrt and onnxruntime runs.")


def _batch_dynamic(run: Run) -> bool:
    tensors = run.inputs + run.outputs
    return all(t.shape and _dim(t.shape[0]) == -1 for t in tensors)


def _profile_max_batch(run: Run) -> int | None:
    """The largest batch the optimization profile allows (the smallest max over inputs that have a range)."""
    names = {t.name for t in run.inputs}
    maxima = [r.max[0] for r in run.config.profiles if r.name in names and r.max]
    return min(maxima) if maxima else None


def _measured_batch(run: Run) -> int | None:
    shapes = [s for n, s in run.config.shapes if s] + [s for s in run.shapes.values() if s]
    return max((int(s[0]) for s in shapes), default=None)


def _max_batch(run: Run, requested: int | None) -> int:
    if requested is not None and requested < 0:
        raise WorkbenchError(f"max_batch_size {requested} is out of range: use 0 (no batching) or more.")
    if not _batch_dynamic(run):
        if requested:
            first = run.inputs[0]
            raise WorkbenchError(
                f"The model's batch dimension is fixed ('{first.name}' is "
                f"{format_shape(first.shape)}): Triton cannot batch it. Leave max_batch_size "
                "out (0), or rebuild with a dynamic batch dimension."
            )
        return 0
    if requested == 0:
        return 0
    limit = _profile_max_batch(run)
    if requested is not None:
        if run.backend == "tensorrt" and limit is not None and requested > limit:
            raise WorkbenchError(
                f"max_batch_size {requested} exceeds the engine's optimization profile (max batch "
                f"{limit}): use at most {limit}, or rebuild with a larger --maxShapes batch."
            )
        return requested
    if limit is not None:
        return limit
    if run.backend == "tensorrt":
        raise WorkbenchError(
            "The engine has a dynamic batch but the run records no optimization profile: pass "
            "max_batch_size (the batch of --maxShapes)."
        )
    # ONNX Runtime has no profile: the dynamic batch dimension takes any batch
    return max(ONNX_MAX_BATCH, _measured_batch(run) or 1)


#: ONNX Runtime's GraphOptimizationLevel member for each level name of BuildConfig.ort_graph_optimization.
_ORT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _python_engine(run: Run, *, batched: bool) -> dict:
    """What ``model.py`` needs to run the engine the run timed: its providers and graph optimization level (the
    level it fell back to, when the run says so)."""
    level = run.config.ort_graph_optimization
    if any("ran at level 'basic'" in n for n in run.notes):
        level = "basic"
    providers = list(run.environment.get("providers") or ["CPUExecutionProvider"])
    return {
        "engine": "onnxruntime",
        "providers": providers,
        "graph_optimization": _ORT_LEVELS.get(level, "ORT_ENABLE_ALL"),
        "batched": batched,
        "run": run.id,
    }


def _write_repository(
    out_dir: Path, name: str, text: str, model_file: Path, filename: str, engine: dict | None = None
) -> Path:
    final = Path(out_dir) / name
    with atomic_directory(final) as tmp:
        (tmp / "1").mkdir()
        shutil.copyfile(model_file, tmp / "1" / filename)
        if filename == "model.onnx":
            _copy_external_data(model_file, tmp / "1")
        if engine is not None:
            shutil.copyfile(Path(__file__).with_name("triton_python_model.py"), tmp / "1" / "model.py")
            (tmp / "1" / "engine.json").write_text(json.dumps(engine, indent=1))
        (tmp / "config.pbtxt").write_text(text)
    return final


def _copy_external_data(model_file: Path, dest: Path) -> None:
    """ONNX weights kept in side files travel with the model (same relative paths).

    Every location is checked before anything is copied: one that would leave the model's folder (absolute,
    ``..``, a symbolic or hard link) refuses the export, so a run received from elsewhere writes only inside ``dest``.
    """
    import onnx
    from onnx import external_data_helper

    from ..errors import first_line
    from ..paths import inside

    try:
        proto = onnx.load(str(model_file), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf and onnx raise several types for a damaged file
        raise WorkbenchError(
            f"The run's ONNX file '{model_file.name}' cannot be read ({first_line(e)}): profile the model again."
        ) from None
    fix = "re-save the model with its external data beside it (onnx.save_model(..., location='NAME.data'))"
    copies = {}
    # every tensor, subgraphs' and functions' included: the walk onnx's own external-data saving makes
    for tensor in external_data_helper._get_all_tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            source = inside(model_file.parent, location, f"external-data location of tensor '{tensor.name}'", fix=fix)
            target = inside(dest, location, "external-data location", fix=fix)
            if not source.is_file():
                raise WorkbenchError(f"External data file {location!r} of '{model_file.name}' is missing: {fix}.")
            copies[target] = source
    for target, source in copies.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)  # contents only: no file mode travels with a received file
