"""The backend interface: ``available()``, ``precision_support(device)``, ``build(variant, config, progress)`` →
:class:`Engine` (a context manager: ``close()`` frees its session / device memory), ``profile(engine, inputs, config)``
→ :class:`~workbench.results.run.Run`. Each backend owns its rules (what it can run where, and why not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import BuildConfig, Precision
from ..env import package_version
from ..errors import WorkbenchError
from ..model.inputs import batch_inputs, profiled_batch
from ..progress import Progress
from ..results.run import Run


@dataclass
class Engine:
    """A built engine: an ONNX Runtime session or a TensorRT ICudaEngine, with what it was built from."""

    backend: str
    variant: Any  # workbench.precision.variant.Variant
    config: BuildConfig
    handle: Any
    build_seconds: float = 0.0
    cache_hit: bool = False
    plan_path: Path | None = None
    log: str = ""
    info: dict = field(default_factory=dict)  # backend facts for the Run (versions, device, memory)
    #: one inference: inputs by name -> outputs by name (accuracy checks, the gpu suite)
    infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    closed: bool = False

    def close(self) -> None:
        """Release the session / engine now (device memory included), not whenever the garbage collector runs.

        Idempotent. A handle with a ``close()`` of its own (TensorRT) frees its device objects there; otherwise the
        last reference goes (an ONNX Runtime session is freed when nothing refers to it)."""
        if self.closed:
            return
        handle, self.handle, self.infer, self.closed = self.handle, None, None, True
        release = getattr(handle, "close", None)
        if callable(release):
            release()

    def check_open(self) -> None:
        if self.closed:
            raise WorkbenchError(
                f"The {self.backend} engine of {self.variant.model.name} ({self.config.precision}) "
                "is closed: build it again to run it."
            )

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def graph_precision_reason() -> str:
    """Empty when ModelOpt (and the torch it imports) is installed, else why graph precisions cannot be made."""
    if package_version("modelopt") and package_version("torch"):
        return ""
    return "needs nvidia-modelopt and torch: pip install 'trt-workbench[precision]'"


class Backend:
    """What every backend provides. Subclasses set ``name`` and implement the methods; ``precision_support``
    here holds the rule common to all (graph precisions are made by ModelOpt), a backend adds its own."""

    name: str

    def available(self) -> tuple[bool, str]:
        """(True, "") when this backend can build here, else (False, the reason in one line)."""
        raise NotImplementedError

    def precision_support(self, device: dict | None = None) -> dict[str, tuple[bool, str]]:
        """Every precision -> (can build here, reason when not). ``device`` is one entry of
        :func:`workbench.env.gpus` (default: this machine's first GPU, where the backend cares)."""
        reason = graph_precision_reason()
        return {p.value: (not (p.in_graph and reason), reason if p.in_graph else "") for p in Precision}

    def build(self, variant, config: BuildConfig, progress: Progress | None = None) -> Engine:
        """Build an engine from a precision variant."""
        raise NotImplementedError

    def profile(
        self, engine: Engine, inputs: dict[str, np.ndarray], config: BuildConfig, progress: Progress | None = None
    ) -> Run:
        """Timed run, then a separate per-layer profiled run; returns the Run (no accuracy yet)."""
        raise NotImplementedError

    #: How to compile with this backend (``workbench doctor``); empty where it cannot compile without running.
    compile_usage = ""

    def can_compile(self) -> tuple[bool, str]:
        """(True, "") when this backend can build here without running what it built (``workbench compile``), else
        (False, the reason in one line). A backend that compiles overrides this and :meth:`compile`."""
        return False, (
            "it builds only to run; use --backend tensorrt-rtx (builds for a named GPU architecture on any "
            "machine) or onnxruntime"
        )

    def compile(self, variant, config: BuildConfig, progress: Progress | None = None, arch: str | None = None) -> Run:
        """Build ``variant`` for ``arch`` (where the backend has targets) without running it: a Run with
        ``timed=False``, its layers and memory plan as the builder reported them. Only where :meth:`can_compile`."""
        raise WorkbenchError(self.can_compile()[1])


def batch_size(inputs: dict, model) -> tuple[int, str]:
    """Samples per inference of ``inputs`` fed to ``model`` (throughput counts samples), and a note when it cannot
    be known: see :func:`workbench.model.inputs.profiled_batch`."""
    return profiled_batch(model.inputs, {name: array.shape for name, array in inputs.items()}, batch_inputs(model))


def model_info(model) -> dict:
    s = model.summary()
    info = {
        k: s[k]
        for k in (
            "name",
            "path",
            "sha256",
            "opset",
            "producer",
            "inputs",
            "outputs",
            "nodes",
            "parameters",
            "parameter_bytes",
        )
    }
    if s.get("warnings"):  # checker complaints about a graph the runtimes accept, shown in the report
        info["warnings"] = s["warnings"]
    if info["path"]:  # absolute: exports and reports read the run later, from another working directory
        info["path"] = str(Path(info["path"]).resolve())
    return info
