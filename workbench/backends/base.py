"""The backend interface: ``available()``, ``build(variant, config, progress)``, ``profile(engine, inputs, config)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..config import BuildConfig
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


class Backend(Protocol):
    name: str

    def available(self) -> tuple[bool, str]:
        """(True, "") when this backend can build here, else (False, the reason in one line)."""

    def build(self, variant, config: BuildConfig, progress: Progress | None = None) -> Engine:
        """Build an engine from a precision variant."""

    def profile(self, engine: Engine, inputs: dict[str, np.ndarray], config: BuildConfig,
                progress: Progress | None = None) -> Run:
        """Timed run, then a separate per-layer profiled run; returns the Run (no accuracy yet)."""


def batch_size(inputs: dict, model) -> int:
    """The batch of a dynamic first dimension (throughput counts samples), else 1."""
    for spec in model.inputs:
        if spec.shape and not isinstance(spec.shape[0], int) and spec.name in inputs:
            return int(inputs[spec.name].shape[0]) or 1
    return 1


def model_info(model) -> dict:
    s = model.summary()
    info = {k: s[k] for k in ("name", "path", "sha256", "opset", "producer", "inputs", "outputs", "nodes",
                              "parameters", "parameter_bytes")}
    if s.get("warnings"):  # checker complaints about a graph the runtimes accept, shown in the report
        info["warnings"] = s["warnings"]
    if info["path"]:  # absolute: exports and reports read the run later, from another working directory
        info["path"] = str(Path(info["path"]).resolve())
    return info
