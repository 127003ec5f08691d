"""Precision variants: a Model with the precision applied to its graph (ModelOpt), cached on disk.

fp32 and tf32 leave the graph as it is (tf32 is a build setting). fp16/bf16 go through ModelOpt AutoCast,
int8/fp8 through ModelOpt ONNX post-training quantization (explicit Q/DQ); TensorRT 10.x and 11.x both build
such graphs as strongly typed networks, and ONNX Runtime runs them on a CPU (except bf16 and fp8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import PRECISIONS
from .errors import WorkbenchError
from .model import Model, load_model


@dataclass(frozen=True, eq=False)
class Variant:
    """A Model with a precision applied.

    ``model`` is what backends build (equal to ``source`` for fp32/tf32); ``changes`` says what the transform did
    (nodes per precision, Q/DQ pairs, nodes kept in FP32 and why); ``calibration`` describes the data used
    (``source``, ``samples``, ``sha256``, ``random``: True when the user asked for random calibration data).
    """

    model: Model
    source: Model
    precision: str = "fp32"
    options: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def random_calibration(self) -> bool:
        return bool(self.calibration.get("random"))

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "options": self.options,
            "changes": self.changes,
            "calibration": self.calibration,
            "path": str(self.path) if self.path else None,
            "sha256": self.model.sha256,
            "source_sha256": self.source.sha256,
        }


def make_variant(model, precision: str = "fp32", **options) -> Variant:
    """Apply ``precision`` to ``model`` (a Model, a path or bytes) and return the Variant."""
    model = load_model(model)
    if precision not in PRECISIONS:
        raise WorkbenchError(f"Unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}.")
    if precision in ("fp32", "tf32"):
        if options:
            raise WorkbenchError(f"Precision {precision} takes no graph options (got {', '.join(options)}).")
        return Variant(model=model, source=model, precision=precision, path=model.path)
    raise WorkbenchError(f"Precision {precision} is not available yet in this build of the workbench.")
