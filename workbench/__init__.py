"""TensorRT optimization workbench: ONNX file → Model → precision Variant → Engine → Run → figures / store.

The public API: notebooks and scripts import ``workbench`` (and ``workbench.ui`` for the widgets) and nothing
deeper. Light names are imported here; the rest load on first use, so ``import workbench`` loads no tensorrt,
torch, modelopt, onnxruntime, ray or tritonclient::

    import workbench as wb
    model = wb.load_model(wb.sample_path("resnet_mini"))
    run = wb.profile(model, "fp16", backend="auto")      # build + profile + accuracy → Run
    engine = wb.compile(model, "fp16", arch="sm89")      # TensorRT-RTX engine built on any machine, not run
    wb.charts.layer_timing(run).show()
    plan = wb.sensitivity(model, "int8", calibration=..., eval_data=...)  # which nodes to keep out of INT8
    wb.report.write_report(run, "report.html")
    wb.Store().add(run)                                   # the history of runs; wb.compare([...]) side by side
    wb.sweep("model.onnx", precisions="fp32,fp16", batches="1,8", executor="ray")  # many runs, one Pareto report
    with wb.serve(run) as served: served.load((1, 4, 16))   # a real Triton on 127.0.0.1, load-tested
    wb.search_serving(run, p99_ms=10, repository="repo")    # the best serving configuration under a p99 budget

Namespaces (lazy): ``charts``, ``report`` (views), ``trtexec``, ``triton`` (interop), ``metrics`` (how a Run's
metrics are named, united and formatted), ``backends``.
"""

from __future__ import annotations

import importlib

from .config import PRECISIONS, BackendName, BuildConfig, Precision, ShapeRange, parse_shapes, parse_size
from .errors import Cancelled, WorkbenchError
from .model.onnx_model import Model, TensorSpec, load_model
from . import messages as _messages  # noqa: F401  (the workbench's loggers say notes at INFO)
from .progress import Progress
from .results.run import Accuracy, LatencyStats, Memory, Run, load_run
from .views import formatting_html as _formatting_html  # noqa: F401  (registers how notebooks show Model and Run)

__version__ = "0.1.0"

#: Public name -> (module under workbench, attribute or None for the module itself), imported on first use.
_LAZY = {
    # the flow
    "profile": ("pipeline", "profile"),
    "compile": ("pipeline", "compile"),
    "save_with_report": ("pipeline", "save_with_report"),
    "sensitivity": ("pipeline", "sensitivity"),
    "interleave": ("pipeline", "interleave"),
    "layer_error": ("analysis.layer_error", "layer_error"),
    "Sensitivity": ("analysis.sensitivity", "Sensitivity"),
    "load_recipe": ("precision.recipe", "load_recipe"),
    "make_variant": ("precision.variant", "make_variant"),
    "Variant": ("precision.variant", "Variant"),
    "quantization_scales": ("precision.changes", "quantization_scales"),
    "measure_accuracy": ("precision.accuracy", "measure_accuracy"),
    "get_backend": ("backends", "get_backend"),
    "choose_backend": ("backends", "choose_backend"),
    "backend_status": ("backends", "backend_status"),
    "make_inputs": ("model.inputs", "make_inputs"),
    "load_inputs": ("model.inputs", "load_inputs"),
    "input_value_ranges": ("model.inputs", "input_value_ranges"),
    "parse_value_ranges": ("model.inputs", "parse_value_ranges"),
    # samples shipped with the workbench
    "sample_path": ("model.samples", "sample_path"),
    "digits_calibration": ("model.samples", "digits_calibration"),
    "digits_test_set": ("model.samples", "digits_test_set"),
    "recorded_path": ("model.samples", "recorded_path"),
    "measured_run_path": ("model.samples", "measured_run_path"),
    # results and their history
    "Store": ("results.store", "Store"),
    "fusion_view": ("results.layers", "fusion_view"),
    # analysis
    "compare": ("analysis.compare", "compare"),
    "compare_metrics": ("analysis.compare", "compare_metrics"),
    "format_metrics": ("analysis.compare", "format_metrics"),
    "latency_differences": ("analysis.compare", "latency_differences"),
    "advise": ("analysis.advice", "advise"),
    "roofline": ("analysis.roofline", "roofline"),
    "gpu_table": ("analysis.devices", "gpu_table"),
    "model_work": ("model.node_cost", "model_work"),
    # interop
    "import_trtexec": ("interop.trtexec", "import_trtexec"),
    "trtexec_command": ("interop.trtexec", "trtexec_command"),
    "export_triton": ("interop.triton", "export_triton"),
    # serving through Triton (workbench.serving): a server, load tests, the configuration search
    "serve": ("serving", "serve"),
    "search_serving": ("serving.search", "search_serving"),
    "serving_configs": ("serving.search", "candidate_configs"),
    "serving_points": ("analysis.serving", "serving_points"),
    # the environment
    "doctor": ("doctor", "doctor"),
    "environment": ("env", "environment"),
    # namespaces
    "charts": ("views.charts", None),
    "report": ("views.report", None),
    "trtexec": ("interop.trtexec", None),
    "triton": ("interop.triton", None),
    "metrics": ("results.metrics", None),
    "backends": ("backends", None),
    "sweep": ("sweeps", "sweep"),
    "load_sweep": ("sweeps", "load_sweep"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "PRECISIONS",
    "Accuracy",
    "BackendName",
    "BuildConfig",
    "Cancelled",
    "LatencyStats",
    "Memory",
    "Model",
    "Precision",
    "Progress",
    "Run",
    "ShapeRange",
    "TensorSpec",
    "WorkbenchError",
    "load_model",
    "load_run",
    "parse_shapes",
    "parse_size",
    *_LAZY,
]
