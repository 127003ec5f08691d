"""ONNX Runtime sessions tried in a child process first: a crash inside ONNX Runtime fails with one line, never the
caller.

ONNX Runtime 1.24 segfaults creating a session at graph optimization ``all`` for ModelOpt AutoCast's FP16 variant of
torchvision's ViT-B/16 (``extended`` and ``basic`` load it); a crash inside a native library cannot be caught in the
process it happens in, so a notebook kernel, the panel's thread or the CLI would die with it. Before the workbench
creates a session in its own process on a graph it has not run with these settings, :func:`probe_session` creates
the same session in a fresh Python process (the same model file or bytes, graph optimization level and providers)
and runs it once on zeros at the shapes that will run. If the child dies by a signal, the caller gets a
:class:`~workbench.errors.WorkbenchError` naming ONNX Runtime and its version, the model, the signal and what to
try. A refusal that ONNX Runtime reports as an error is left to the caller, which gets the same error in its own
process and explains it.

Probes that passed are remembered (in this process, and as an empty file under ``<cache>/probes/`` named by the
hash of the model, the settings, the shapes and the ONNX Runtime version), so the child's cost (Python and ONNX
Runtime starting, the model read again: about 0.2 s on the bundled samples, the child importing this module and ONNX
Runtime, not the package's public API) is paid once per graph and setting.
The child (:func:`workbench.processes.run_python_child`) dies with its caller; Cancel (the progress) and Ctrl-C kill
it.
"""

from __future__ import annotations

import hashlib
import json

from ..errors import WorkbenchError, excerpt
from ..paths import atomic_write, cache_dir
from ..processes import run_python_child, signal_name
from ..progress import Progress, ensure

#: The graph optimization levels, as the CLI names them, to ONNX Runtime's names.
LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_PASSED: set[str] = set()


def ort_session(source, level: str = "all", *, log: int = 4, providers=("CPUExecutionProvider",), **settings):
    """An ONNX Runtime session of ``source`` (a model file's path or its bytes) at graph optimization ``level`` (a
    key of :data:`LEVELS`) on ``providers``, logging nothing below severity ``log`` (4: a failure reaches the caller
    as its exception, not as log lines); ``settings`` are ``SessionOptions`` attributes (``intra_op_num_threads``,
    ``optimized_model_filepath``...), except ``disabled_optimizers``, which goes to the session."""
    import onnxruntime as ort

    disabled = settings.pop("disabled_optimizers", None)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    options.log_severity_level = log
    for name, value in settings.items():
        setattr(options, name, value)
    extra = {"disabled_optimizers": disabled} if disabled else {}
    return ort.InferenceSession(source, options, providers=list(providers), **extra)


def probe_session(
    model,
    *,
    level: str,
    providers,
    shapes: dict | None = None,
    label: str = "",
    progress: Progress | None = None,
    source: str | bytes | None = None,
) -> None:
    """Create (and, with ``shapes``, run once on zeros) an ONNX Runtime session of ``model`` (a
    :class:`~workbench.model.onnx_model.Model`) at graph optimization ``level`` with ``providers`` in a child
    process, unless that passed before; raise a one-line :class:`WorkbenchError` when the child crashes.

    ``shapes``: input name -> shape (the shapes that will run); ``label`` names the model in the error
    (``"vit_b_16 (fp16)"``); ``source`` what the caller's session loads (default: ``model.runtime_source``).
    Nothing is raised for an error ONNX Runtime reports itself: the caller meets it.
    """
    import onnxruntime as ort

    shapes = {name: tuple(int(d) for d in shape) for name, shape in (shapes or {}).items()} or None
    key = _key(model.sha256, level, list(providers), shapes, ort.__version__)
    marker = cache_dir("probes") / key
    if key in _PASSED or marker.is_file():
        _PASSED.add(key)
        return
    source = model.runtime_source if source is None else source
    request = {
        "source": source,
        "level": LEVELS[level],
        "providers": list(providers),
        "inputs": {s.name: (shapes[s.name], s.dtype) for s in model.inputs if s.name in shapes} if shapes else None,
    }
    returncode, _ = run_python_child(
        f"{__name__}:_child",
        request,
        ensure(progress),
        cancelled="Cancelled by the user while ONNX Runtime was tried in a separate process.",
    )
    if returncode == 0:
        _PASSED.add(key)
        try:
            atomic_write(marker, b"")
        except (OSError, WorkbenchError):  # a read-only cache: remembered in this process only
            pass
        return
    signame = signal_name(returncode)
    if signame is None:
        return  # an error ONNX Runtime reported, or a child that could not start: the caller's own attempt says
    label = label or model.name
    doing = "creating and running a session" if shapes else "creating a session"
    raise WorkbenchError(
        f"ONNX Runtime {ort.__version__} crashed ({signame}) {doing} for {excerpt(label)} at graph optimization "
        f"'{level}' (tried in a separate process: this one is unharmed): {_advice(level, signame)}."
    )


def _advice(level: str, signame: str) -> str:
    if signame == "SIGKILL":
        return "it was killed, most often for lack of memory: give smaller shapes (--shapes) or free memory"
    lower = [name for name in ("extended", "basic", "disable") if list(LEVELS).index(name) < list(LEVELS).index(level)]
    if lower:
        also = f" or {lower[1]}" if len(lower) > 1 else ""
        return (
            f"try --graph-optimization {lower[0]}{also} (Python: BuildConfig(ort_graph_optimization='{lower[0]}')), "
            "or another precision, and report the crash to ONNX Runtime with the model"
        )
    return "try another precision or backend, and report the crash to ONNX Runtime with the model"


def _key(sha256: str, level: str, providers: list, shapes, version: str) -> str:
    identity = {"model": sha256, "level": level, "providers": providers, "shapes": shapes, "onnxruntime": version}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode()).hexdigest()


def _child(request: dict, send) -> int:
    """The probe, in the child: 0 when the session was made (and ran), 2 when ONNX Runtime refused it with an error."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, request["level"])
    try:
        session = ort.InferenceSession(request["source"], options, providers=request["providers"])
        if request["inputs"] is not None:
            feeds = {name: np.zeros(shape, dtype) for name, (shape, dtype) in request["inputs"].items()}
            session.run(None, feeds)
    except Exception:  # noqa: BLE001 - a refusal the caller meets and explains in its own process
        return 2
    return 0
