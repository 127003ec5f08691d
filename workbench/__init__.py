"""TensorRT optimization workbench: ONNX file → Model → precision Variant → Engine → Run → figures / store.

The public API (heavy modules — tensorrt, torch, modelopt, onnxruntime — load only when first needed)::

    import workbench as wb
    model = wb.load_model("data/resnet_mini.onnx")
    run = wb.profile(model, "fp16", backend="auto")      # build + profile + accuracy → Run
    wb.charts.layer_timing(run).show()
    plan = wb.sensitivity(model, "int8", calibration=..., eval_data=...)  # which nodes to keep out of INT8
"""

from __future__ import annotations

import importlib

from .config import PRECISIONS, BuildConfig, ShapeRange, parse_shapes, parse_size
from .errors import Cancelled, WorkbenchError
from .model.onnx_model import Model, TensorSpec, load_model
from .progress import Progress
from .results.run import Accuracy, LatencyStats, Memory, Run, load_run

__version__ = "0.1.0"

_LAZY = {
    "profile": ("pipeline", "profile"),
    "sensitivity": ("pipeline", "sensitivity"),
    "layer_error": ("analysis.layer_error", "layer_error"),
    "Sensitivity": ("analysis.sensitivity", "Sensitivity"),
    "load_recipe": ("precision.recipe", "load_recipe"),
    "make_variant": ("precision.variant", "make_variant"),
    "Variant": ("precision.variant", "Variant"),
    "get_backend": ("backends", "get_backend"),
    "choose_backend": ("backends", "choose_backend"),
    "make_inputs": ("model.inputs", "make_inputs"),
    "load_inputs": ("model.inputs", "load_inputs"),
    "sample_path": ("model.samples", "sample_path"),
    "charts": ("views.charts", None),
    "report": ("views.report", None),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(f".{module}", __name__)
    return mod if attr is None else getattr(mod, attr)


__all__ = ["PRECISIONS", "Accuracy", "BuildConfig", "Cancelled", "LatencyStats", "Memory", "Model", "Progress",
           "Run", "ShapeRange", "TensorSpec", "WorkbenchError", "load_model", "load_run", "parse_shapes",
           "parse_size", *_LAZY]
