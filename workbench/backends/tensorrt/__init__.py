"""The TensorRT family: one implementation for TensorRT (10.x, 11.x) and TensorRT for RTX.

- :mod:`.library` — which module a backend drives (``tensorrt`` or ``tensorrt_rtx``), chosen once per backend;
- :mod:`.callbacks` — the logger, per-layer profiler and build progress monitor TensorRT calls back into;
- :mod:`.io` — I/O bindings, one inference on a stream, numpy types of engine tensors;
- :mod:`.build` — the one build path (parse, strongly typed network, profile, targets, build report);
- :mod:`.isolated` — that build run in a child process, so a crash of the builder is one line, never the caller;
- :mod:`.profiling` — timed run, per-layer run, inspector JSON;
- :mod:`.backend` — :class:`TensorRTBackend`; :mod:`.rtx` — :class:`TensorRTRTXBackend` (profiles on RTX GPUs,
  compiles anywhere).

Where the editions differ the code asks with ``hasattr``, never by version strings.
"""

from __future__ import annotations

from .backend import MIN_COMPUTE, TensorRTBackend
from .build import LAYER_TYPES, build_plan, network_summary, parse_error_text, shape_ranges
from .callbacks import make_logger, make_profiler, make_progress_monitor
from .io import ML_DTYPES, TENSOR_FORMATS, Bindings, TrtHandle, numpy_dtype
from .profiling import PROFILE_RUNS, TIMING_BATCH, _join_layer_times, _timed_run
from .rtx import ARCHITECTURES, DEFAULT_ARCH, NOT_TIMED, TensorRTRTXBackend, normalize_arch

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_ARCH",
    "LAYER_TYPES",
    "MIN_COMPUTE",
    "ML_DTYPES",
    "NOT_TIMED",
    "PROFILE_RUNS",
    "TENSOR_FORMATS",
    "TIMING_BATCH",
    "Bindings",
    "TensorRTBackend",
    "TensorRTRTXBackend",
    "TrtHandle",
    "_join_layer_times",
    "_timed_run",
    "build_plan",
    "make_logger",
    "make_profiler",
    "make_progress_monitor",
    "network_summary",
    "normalize_arch",
    "numpy_dtype",
    "parse_error_text",
    "shape_ranges",
]
