"""TensorRT backend: build a strongly typed engine from the precision variant, then profile it like trtexec.

Build: the ONNX parser fills a strongly typed network (precision comes from the graph, as TensorRT 11 requires);
the builder config sets the workspace pool, the builder optimization level, TF32, sparsity, DETAILED profiling
verbosity, one optimization profile for dynamic inputs and a per-GPU timing cache; an ``IProgressMonitor`` feeds
:class:`~workbench.progress.Progress` and cancels the build when asked. Plans are cached by
:mod:`workbench.backends.engine_cache`.

Profile: a timed run with CUDA events and no profiler attached (warm-up, then iterations / duration, optionally as a
CUDA graph); then a separate per-layer run with an ``IProfiler`` (``enqueue_emits_profile = False`` and
``report_to_profiler()`` after each inference); layer facts from the engine inspector (JSON, DETAILED).

Works unchanged on TensorRT 10.x and 11.x: nothing TensorRT 11 removed is used, and where the versions differ the
code asks with ``hasattr`` (never by comparing version strings). The contract tests check this against the real
Python bindings of 10.2, 10.16 and 11.4.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import cuda
from ..config import BuildConfig, format_shape
from .engine_cache import META_FILE, EngineCache, PlanKey, check_plan_matches
from ..errors import Cancelled, WorkbenchError
from ..results.layerinfo import TRT_DTYPES, parse_layer_info
from ..progress import Progress, ensure
from ..results.run import LatencyStats, Memory, Run, TensorInfo
from .base import Backend, Engine, batch_size, model_info

if TYPE_CHECKING:
    import tensorrt as trt

#: Most inferences the per-layer run profiles (each one is reported layer by layer through Python).
PROFILE_RUNS = 100
#: Inferences enqueued between two waits in the timed run (events are read back per batch).
TIMING_BATCH = 50

#: ``trt.DataType`` members numpy lacks, stored through ml_dtypes (the rest map via layerinfo.TRT_DTYPES).
ML_DTYPES = {"BF16": "bfloat16", "FP8": "float8_e4m3fn"}

#: ``trt.TensorFormat`` member -> description. Only LINEAR (row-major) I/O can be copied from and to numpy.
TENSOR_FORMATS = {
    "LINEAR": "row-major linear",
    "CHW2": "two-wide channel vectors (CHW2)",
    "HWC8": "channels-last, padded to 8 (HWC8)",
    "CHW4": "four-wide channel vectors (CHW4)",
    "CHW16": "16-wide channel vectors (CHW16)",
    "CHW32": "32-wide channel vectors (CHW32)",
    "DHWC8": "channels-last 3-D, padded to 8 (DHWC8)",
    "CDHW32": "32-wide channel vectors, 3-D (CDHW32)",
    "HWC": "channels-last (HWC)",
    "DLA_LINEAR": "DLA linear",
    "DLA_HWC4": "DLA channels-last, padded to 4",
    "HWC16": "channels-last, padded to 16 (HWC16)",
    "DHWC": "channels-last 3-D (DHWC)",
}

#: ``trt.LayerType`` member -> the name shown in the network summary (layers before TensorRT fuses them).
LAYER_TYPES = {
    "CONVOLUTION": "Convolution", "GRID_SAMPLE": "GridSample", "NMS": "NMS", "ACTIVATION": "Activation",
    "POOLING": "Pooling", "LRN": "LRN", "SCALE": "Scale", "SOFTMAX": "Softmax", "DECONVOLUTION": "Deconvolution",
    "CONCATENATION": "Concatenation", "ELEMENTWISE": "ElementWise", "PLUGIN": "Plugin", "UNARY": "Unary",
    "PADDING": "Padding", "SHUFFLE": "Shuffle", "REDUCE": "Reduce", "TOPK": "TopK", "GATHER": "Gather",
    "MATRIX_MULTIPLY": "MatrixMultiply", "RAGGED_SOFTMAX": "RaggedSoftmax", "CONSTANT": "Constant",
    "IDENTITY": "Identity", "CAST": "Cast", "PLUGIN_V2": "PluginV2", "SLICE": "Slice", "SHAPE": "Shape",
    "PARAMETRIC_RELU": "ParametricReLU", "RESIZE": "Resize", "TRIP_LIMIT": "TripLimit", "RECURRENCE": "Recurrence",
    "ITERATOR": "Iterator", "LOOP_OUTPUT": "LoopOutput", "SELECT": "Select", "ASSERTION": "Assertion",
    "FILL": "Fill", "QUANTIZE": "Quantize", "DEQUANTIZE": "Dequantize", "CONDITION": "Condition",
    "CONDITIONAL_INPUT": "ConditionalInput", "CONDITIONAL_OUTPUT": "ConditionalOutput", "SCATTER": "Scatter",
    "EINSUM": "Einsum", "ONE_HOT": "OneHot", "NON_ZERO": "NonZero", "REVERSE_SEQUENCE": "ReverseSequence",
    "NORMALIZATION": "Normalization", "PLUGIN_V3": "PluginV3", "SQUEEZE": "Squeeze", "UNSQUEEZE": "Unsqueeze",
    "CUMULATIVE": "Cumulative", "DYNAMIC_QUANTIZE": "DynamicQuantize", "ATTENTION_INPUT": "AttentionInput",
    "ATTENTION_OUTPUT": "AttentionOutput", "ROTARY_EMBEDDING": "RotaryEmbedding", "KV_CACHE_UPDATE": "KVCacheUpdate",
    "MOE": "MoE", "DIST_COLLECTIVE": "DistCollective",
}

_INSTALL_HINT = "use an NGC TensorRT container (nvcr.io/nvidia/tensorrt) or pip install tensorrt-cu13 on a GPU machine"


# ---- the classes TensorRT calls back into (made on first use: importing workbench never imports tensorrt) ------


@functools.cache
def _callback_classes():
    import tensorrt as trt

    class Logger(trt.ILogger):
        """Keeps TensorRT's messages at ``min_severity`` or worse: the build log and the reasons for failures."""

        def __init__(self, min_severity=trt.ILogger.Severity.WARNING):
            trt.ILogger.__init__(self)
            self.min_severity = int(min_severity)
            self.lines: list[tuple[str, str]] = []
            self._lock = threading.Lock()

        def log(self, severity, msg):
            # Called from TensorRT's threads; an exception escaping here would abort the process.
            try:
                if int(severity) <= self.min_severity:
                    with self._lock:
                        self.lines.append((severity.name, str(msg)))
            except Exception:
                pass

        def errors(self) -> list[str]:
            return [m for s, m in self.lines if s in ("INTERNAL_ERROR", "ERROR")]

        def text(self) -> str:
            return "\n".join(f"[{s}] {m}" for s, m in self.lines)

    class LayerProfiler(trt.IProfiler):
        """Collects each layer's time per profiled inference (``report_layer_time`` is called once per layer)."""

        def __init__(self):
            trt.IProfiler.__init__(self)
            self.times: dict[str, list[float]] = {}
            self._seen: Counter = Counter()

        def next_inference(self) -> None:
            """Call before each ``report_to_profiler``: a name repeated within one inference becomes ``name #2``
            (as :func:`workbench.results.layerinfo.parse_layer_info` numbers repeated layer names)."""
            self._seen.clear()

        def report_layer_time(self, layer_name, ms):
            try:
                name = str(layer_name)
                self._seen[name] += 1
                if self._seen[name] > 1:
                    name = f"{name} #{self._seen[name]}"
                self.times.setdefault(name, []).append(float(ms))
            except Exception:
                pass

        def stats(self) -> dict[str, dict]:
            """Layer name -> mean and median milliseconds and the number of inferences they cover."""
            return {name: {"time_ms": float(np.mean(t)), "median_ms": float(np.median(t)), "calls": len(t)}
                    for name, t in self.times.items()}

    class BuildMonitor(trt.IProgressMonitor):
        """Forwards the builder's phases and steps to a Progress; a False from Progress.step cancels the build."""

        def __init__(self, progress: Progress):
            trt.IProgressMonitor.__init__(self)
            self.progress = progress
            self.cancelled = False
            self.failure: str | None = None
            self.phases: list[str] = []
            self._totals: dict[str, int] = {}
            # TensorRT calls the monitor from several internal threads (IProgressMonitor's documentation asks for
            # a thread-safe implementation); Progress callbacks (tqdm bars, widgets) are not, so one call at a time.
            self._lock = threading.RLock()

        def _report(self, phase: str, step: int) -> bool:
            with self._lock:
                total = self._totals.get(phase, 0)
                try:
                    go_on = self.progress.step(f"TensorRT: {phase}", step, total)
                except Exception as e:  # a failing callback must not cross into TensorRT: stop the build instead
                    self.failure = f"{type(e).__name__}: {e}"
                    go_on = False
                if not go_on:
                    self.cancelled = True
                return go_on and not self.cancelled

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                self._totals[str(phase_name)] = int(num_steps)
                self.phases.append(str(phase_name))
            self._report(str(phase_name), 0)

        def step_complete(self, phase_name, step):
            return self._report(str(phase_name), int(step) + 1)

        def phase_finish(self, phase_name):
            with self._lock:
                total = self._totals.get(str(phase_name), 0)
            self._report(str(phase_name), total)

    return Logger, LayerProfiler, BuildMonitor


def make_logger(min_severity=None):
    """A ``trt.ILogger`` that keeps TensorRT's warnings and errors (``.lines``, ``.errors()``, ``.text()``)."""
    logger_class = _callback_classes()[0]
    return logger_class() if min_severity is None else logger_class(min_severity)


def make_profiler():
    """A ``trt.IProfiler`` collecting per-layer times (``.times``, ``.stats()``)."""
    return _callback_classes()[1]()


def make_progress_monitor(progress: Progress):
    """A ``trt.IProgressMonitor`` feeding ``progress`` (``.cancelled`` once the user cancelled)."""
    return _callback_classes()[2](progress)


# ---- availability ---------------------------------------------------------------------------------------------


@functools.cache
def _availability() -> tuple[bool, str]:
    try:
        import tensorrt as trt
    except ImportError as e:
        return False, f"TensorRT's Python package is not installed ({e}); {_INSTALL_HINT}"
    logger = make_logger()
    try:
        builder = trt.Builder(logger)
    except Exception as e:  # no GPU or driver: TensorRT logs why and the factory returns null
        detail = "; ".join(logger.errors()[-2:]) or f"{type(e).__name__}: {e}"
        return False, (f"TensorRT {trt.__version__} could not create a builder ({detail}): "
                       "it needs an NVIDIA GPU and driver")
    del builder
    try:
        from cuda.bindings import runtime  # noqa: F401
    except ImportError as e:
        return False, f"cuda-python is not installed ({e}): pip install cuda-bindings"
    ok, reason = cuda.cuda_status()
    if not ok:
        return False, reason
    return True, ""


# ---- engines ----------------------------------------------------------------------------------------------------


@dataclass
class TrtHandle:
    """A deserialized engine with the runtime and logger it depends on; ``infer`` runs one inference."""

    runtime: trt.Runtime
    engine: trt.ICudaEngine
    logger: trt.ILogger
    plan_bytes: int
    _context: trt.IExecutionContext | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for ``inputs``. A batch outside the engine's profile range runs in chunks the profile allows
        (the last one padded), so accuracy checks can pass a whole evaluation set; outputs are batch-major."""
        with self._lock:
            if self._context is None:
                self._context = _new_context(self.engine)
            limits = _batch_limits(self.engine, inputs)
            batch = len(next(iter(inputs.values()))) if inputs else 0
            if limits is None or limits[0] <= batch <= limits[1]:
                return self._infer_once(self._context, inputs)
            lo, hi = limits
            pieces = []
            for start in range(0, batch, hi):
                chunk = {k: np.asarray(v)[start:start + hi] for k, v in inputs.items()}
                n = len(next(iter(chunk.values())))
                if n < lo:  # pad with copies of the last sample, dropped from the outputs below
                    chunk = {k: np.concatenate([v, np.repeat(v[-1:], lo - n, axis=0)]) for k, v in chunk.items()}
                pieces.append({k: v[:n] for k, v in self._infer_once(self._context, chunk).items()})
            return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

    def close(self) -> None:
        """Destroy the context, engine and runtime now: TensorRT frees their device memory as they go."""
        with self._lock:
            self._context = self.engine = self.runtime = None

    def _infer_once(self, context: trt.IExecutionContext, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with _Bindings(self.engine, context, inputs) as io, cuda.Stream() as stream:
            # copies on the inference's own stream: it is non-blocking, so it is not ordered after the default one
            io.upload(stream)
            _execute(context, stream)
            return io.download(stream)


def _batch_limits(engine: trt.ICudaEngine, inputs: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """The (min, max) first dimension the engine's profile allows for inputs whose first dimension is dynamic."""
    lo, hi, dynamic = 1, 1 << 31, False
    for name in _io_names(engine):
        if name in inputs and _is_input(engine, name) and len(engine.get_tensor_shape(name)) \
                and engine.get_tensor_shape(name)[0] == -1:
            low, _, high = engine.get_tensor_profile_shape(name, 0)
            lo, hi, dynamic = max(lo, low[0]), min(hi, high[0]), True
    return (lo, hi) if dynamic and lo <= hi else None


def _new_context(engine: trt.ICudaEngine) -> trt.IExecutionContext:
    context = engine.create_execution_context()
    if context is None:
        raise WorkbenchError("TensorRT could not create an execution context (out of GPU memory?): "
                             "free GPU memory or use smaller shapes.")
    return context


def _execute(context: trt.IExecutionContext, stream: cuda.Stream) -> None:
    if not context.execute_async_v3(stream.handle):
        raise WorkbenchError("TensorRT failed to enqueue an inference (execute_async_v3 returned False): "
                             "see the TensorRT log; check input shapes against the engine's profile.")


def numpy_dtype(data_type: trt.DataType) -> np.dtype:
    """The numpy dtype for a ``trt.DataType`` (bf16 and fp8 through ml_dtypes)."""
    name = data_type.name
    if name in ML_DTYPES:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, ML_DTYPES[name]))
    known = TRT_DTYPES.get(name)
    if known is None or known.numpy is None:
        raise WorkbenchError(f"Engine I/O of TensorRT type {name} has no numpy equivalent: keep I/O in fp32/fp16 "
                             "(ModelOpt keep_io_types) and rebuild.")
    return np.dtype(known.numpy)


def _io_names(engine: trt.ICudaEngine) -> list[str]:
    return [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]


def _is_input(engine: trt.ICudaEngine, name: str) -> bool:
    import tensorrt as trt

    return engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT


class _Bindings:
    """Device buffers for one inference: input shapes set, every tensor address given to the context."""

    def __init__(self, engine: trt.ICudaEngine, context: trt.IExecutionContext, inputs: dict[str, np.ndarray]):
        import tensorrt as trt

        self.context = context
        self.host: dict[str, np.ndarray] = {}
        self.outputs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.buffers: dict[str, cuda.DeviceBuffer] = {}
        names = _io_names(engine)
        input_names = [n for n in names if _is_input(engine, n)]
        missing = [n for n in input_names if n not in inputs]
        if missing:
            raise WorkbenchError(f"Input '{missing[0]}' is missing: the engine takes {', '.join(input_names)}; "
                                 f"given: {', '.join(inputs) or 'nothing'}.")
        try:
            for name in names:
                _check_linear(engine, name)
                if engine.get_tensor_location(name) != trt.TensorLocation.DEVICE:
                    raise WorkbenchError(f"Engine tensor '{name}' lives in host memory (a shape tensor): the workbench "
                                         "profiles only engines whose I/O is on the GPU; make it an initializer.")
            for name in input_names:
                self._bind_input(engine, name, inputs[name])
            for name in names:
                if name not in self.host:
                    self._bind_output(engine, name)
        except BaseException:
            self.free()
            raise

    def _bind_input(self, engine: trt.ICudaEngine, name: str, array) -> None:
        want = numpy_dtype(engine.get_tensor_dtype(name))
        array = np.asarray(array)
        if array.dtype != want:
            if not np.can_cast(array.dtype, want, casting="same_kind"):
                raise WorkbenchError(f"Input '{name}' has dtype {array.dtype}, the engine takes {want.name}: "
                                     "convert it with .astype.")
            array = array.astype(want)
        if not self.context.set_input_shape(name, tuple(array.shape)):
            declared = tuple(engine.get_tensor_shape(name))
            if all(d >= 0 for d in declared):  # a static input has no profile range to quote: name its shape
                raise WorkbenchError(f"Input '{name}' has shape {format_shape(array.shape)}, the engine takes "
                                     f"{format_shape(declared)}: pass that shape or rebuild for the one you need.")
            lo, _, hi = (format_shape(tuple(d)) for d in engine.get_tensor_profile_shape(name, 0))
            raise WorkbenchError(f"Input '{name}' of shape {format_shape(array.shape)} is outside the engine's "
                                 f"optimization profile ({lo} to {hi}): pass a shape in that range or rebuild with "
                                 "a profile that covers it.")
        self.host[name] = np.ascontiguousarray(array)
        self._attach(name, self.host[name].nbytes)

    def _bind_output(self, engine: trt.ICudaEngine, name: str) -> None:
        shape = tuple(self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise WorkbenchError(f"Output '{name}' has a data-dependent shape ({format_shape(shape)}): the workbench "
                                 "cannot size its buffer ahead; make the output shape depend on input shapes only.")
        dtype = numpy_dtype(engine.get_tensor_dtype(name))
        self.outputs[name] = (shape, dtype)
        self._attach(name, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)

    def _attach(self, name: str, nbytes: int) -> None:
        self.buffers[name] = buf = cuda.DeviceBuffer(nbytes)
        if not self.context.set_tensor_address(name, buf.ptr):
            raise WorkbenchError(f"TensorRT refused the GPU address for tensor '{name}': see the TensorRT log.")

    def upload(self, stream: cuda.Stream | None = None) -> None:
        for name, array in self.host.items():
            self.buffers[name].upload(array, stream)

    def download(self, stream: cuda.Stream | None = None) -> dict[str, np.ndarray]:
        return {name: self.buffers[name].download(shape, dtype, stream)
                for name, (shape, dtype) in self.outputs.items()}

    def free(self) -> None:
        for buf in self.buffers.values():
            buf.free()
        self.buffers = {}

    def __enter__(self) -> _Bindings:
        return self

    def __exit__(self, *exc) -> None:
        self.free()


def _check_linear(engine: trt.ICudaEngine, name: str) -> None:
    import tensorrt as trt

    fmt = engine.get_tensor_format(name)
    if fmt != trt.TensorFormat.LINEAR:
        what = TENSOR_FORMATS.get(fmt.name, fmt.name)
        raise WorkbenchError(f"Engine tensor '{name}' uses the {what} layout: the workbench copies only row-major "
                             "linear I/O; rebuild without custom I/O formats.")


# ---- building ---------------------------------------------------------------------------------------------------


def shape_ranges(model, config: BuildConfig) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max of every dynamic model input: ``config.profiles`` where given, else min = opt = max = the shape
    profiled (``config.shapes`` or the workbench's default for that input)."""
    from ..model.inputs import resolve_shapes

    dynamic = {t.name: t for t in model.inputs if t.dynamic}
    names = {t.name for t in model.inputs}
    given = {r.name: r for r in config.profiles}
    for name in given:
        if name not in names:
            raise WorkbenchError(f"Shape range given for unknown input '{name}': the model's inputs are "
                                 f"{', '.join(sorted(names))}.")
        if name not in dynamic:
            raise WorkbenchError(f"Shape range given for input '{name}', whose shape is fixed: drop the range.")
    profiled = resolve_shapes(model, config.shape_map)
    ranges = {}
    for name, spec in dynamic.items():
        r = given.get(name)
        lo, opt, hi = (r.min, r.opt, r.max) if r else (profiled[name],) * 3
        for shape in (lo, opt, hi):
            if len(shape) != len(spec.shape) or any(
                isinstance(d, int) and d >= 0 and d != s for d, s in zip(spec.shape, shape, strict=False)
            ):
                raise WorkbenchError(f"Shape range {format_shape(shape)} for input '{name}' does not fit its declared "
                                     f"shape [{format_shape(spec.shape)}]: only the named dims may vary.")
        ranges[name] = (tuple(lo), tuple(opt), tuple(hi))
    return ranges


def _parse_error_text(parser: trt.OnnxParser, model_name: str) -> str:
    problems = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node, op = err.node_name(), err.node_operator()
        where = f"node '{node}' ({op})" if node or op else (f"node #{err.node()}" if err.node() >= 0 else "the model")
        problems.append(f"{where}: {err.desc()}")
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return (f"TensorRT cannot parse {model_name}: {'; '.join(problems[:3]) or 'no reason given'}{more}. "
            "Replace that operator or re-export the model (see TensorRT's ONNX operator support list).")


def _network_summary(network: trt.INetworkDefinition) -> dict[str, int]:
    counts = Counter(LAYER_TYPES.get(network.get_layer(i).type.name, network.get_layer(i).type.name)
                     for i in range(network.num_layers))
    return dict(counts.most_common())


#: Minimum CUDA compute capability TensorRT needs for a precision (others run on every GPU TensorRT 10+ supports).
_MIN_COMPUTE = {"tf32": (8, 0), "bf16": (8, 0), "fp8": (8, 9)}


class TensorRTBackend(Backend):
    """The TensorRT backend (:class:`workbench.backends.base.Backend`). ``cache_dir``: where plans are kept."""

    name = "tensorrt"

    def __init__(self, cache_dir=None):
        self.cache = EngineCache(cache_dir)

    def available(self) -> tuple[bool, str]:
        return _availability()

    def precision_support(self, device: dict | None = None) -> dict[str, tuple[bool, str]]:
        """The common rule, plus the compute capability a precision needs (``device``: default the first GPU)."""
        if device is None:
            from ..env import gpus

            found = gpus()
            device = found[0] if found else None
        support = super().precision_support(device)
        for precision, need in _MIN_COMPUTE.items():
            if not support[precision][0]:
                continue
            major, _, minor = str((device or {}).get("compute_capability") or "0.0").partition(".")
            if device is None:
                support[precision] = (False, "no GPU found")
            elif (int(major or 0), int(minor or 0)) < need:
                support[precision] = (False, f"{device.get('name', 'this GPU')} (compute "
                                             f"{device.get('compute_capability')}) lacks {precision.upper()}: it "
                                             f"needs compute {need[0]}.{need[1]} or newer")
        return support

    def _require(self) -> None:
        ok, reason = self.available()
        if not ok:
            raise WorkbenchError(f"TensorRT unavailable: {reason}")

    def plan_key(self, variant, config: BuildConfig) -> PlanKey:
        self._require()
        import tensorrt as trt

        device = cuda.device_info(0)
        return PlanKey(variant.model.sha256, config.key(), trt.__version__, device.name, device.compute_capability)

    def build(self, variant, config: BuildConfig, progress: Progress | None = None) -> Engine:
        progress = ensure(progress)
        key = self.plan_key(variant, config)
        cached = self.cache.get(key)
        if cached is not None:
            progress.step("Engine cache hit", 1, 1)
            return self._engine(cached.read(), variant, config, cached.path, cached.meta, cache_hit=True)
        plan, facts = self._build_plan(variant, config, progress)
        stored = self.cache.put(key, plan, facts)
        return self._engine(plan, variant, config, stored.path, stored.meta, cache_hit=False)

    def load(self, plan_path, variant, config: BuildConfig) -> Engine:
        """An Engine from a plan file written by this backend (its ``plan.json`` beside it says where it was built);
        a plan from another TensorRT version or GPU is refused with the reason."""
        plan_path = Path(plan_path)
        if not plan_path.is_file():
            raise WorkbenchError(f"Engine plan '{plan_path}' does not exist: check the path or build the engine.")
        meta_path = plan_path.with_name(META_FILE)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta:
            key = self.plan_key(variant, config)
            check_plan_matches(meta, key, plan_path)
        else:
            self._require()
        return self._engine(plan_path.read_bytes(), variant, config, plan_path, meta, cache_hit=True)

    def _build_plan(self, variant, config: BuildConfig, progress: Progress) -> tuple[bytes, dict]:
        self._require()
        import tensorrt as trt

        model = variant.model
        logger = make_logger()
        builder = trt.Builder(logger)
        flags = 0
        # TensorRT 10 needs the flag for strong typing; 11 is always strongly typed and keeps the flag deprecated.
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        progress.step("Parse ONNX", 0, 1)
        path = model.path if model.path and Path(model.path).is_file() else None
        parsed = parser.parse_from_file(str(path)) if path else parser.parse(model.to_bytes())
        if not parsed:
            raise WorkbenchError(_parse_error_text(parser, f"{model.name} ({variant.precision})"))
        progress.step("Parse ONNX", 1, 1)
        progress.check()

        builder_config = builder.create_builder_config()
        monitor = make_progress_monitor(progress)
        self._configure(builder, network, builder_config, model, config, monitor)
        timing_path, timing = self._attach_timing_cache(builder_config, config, trt.__version__)

        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, builder_config)
        seconds = time.perf_counter() - start
        if monitor.failure:
            raise WorkbenchError(f"The build stopped because the progress callback failed ({monitor.failure}): "
                                 "fix the callback; no engine was cached.")
        if monitor.cancelled or progress.cancelled:
            raise Cancelled("Build cancelled by the user: no engine was cached.")
        if serialized is None:
            reasons = "; ".join(logger.errors()[-3:]) or "no error logged"
            raise WorkbenchError(f"TensorRT could not build {model.name} ({variant.precision}): {reasons}. "
                                 "Try a larger workspace, another optimization level or check the model.")
        if timing is not None:
            self.cache.write_timing_cache(timing_path, bytes(timing.serialize()))
        facts = {"build_seconds": seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "network_layers": _network_summary(network), "build_phases": monitor.phases, "log": logger.text()}
        return bytes(serialized), facts

    def _configure(self, builder: trt.Builder, network: trt.INetworkDefinition, builder_config: trt.IBuilderConfig,
                   model, config: BuildConfig, monitor: trt.IProgressMonitor) -> None:
        import tensorrt as trt

        if config.workspace_bytes:
            builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
        builder_config.builder_optimization_level = config.optimization_level
        if config.tf32:
            builder_config.set_flag(trt.BuilderFlag.TF32)
        else:
            builder_config.clear_flag(trt.BuilderFlag.TF32)
        if config.sparsity:
            builder_config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
        builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        builder_config.progress_monitor = monitor
        dynamic = [network.get_input(i) for i in range(network.num_inputs)
                   if any(d < 0 for d in network.get_input(i).shape)]
        if dynamic:
            ranges = shape_ranges(model, config)
            profile = builder.create_optimization_profile()
            for tensor in dynamic:
                if tensor.name not in ranges:
                    raise WorkbenchError(f"TensorRT sees input '{tensor.name}' as dynamic but the model declares it "
                                         "fixed: re-export the model with consistent input shapes.")
                profile.set_shape(tensor.name, *ranges[tensor.name])
            builder_config.add_optimization_profile(profile)

    def _attach_timing_cache(self, builder_config: trt.IBuilderConfig, config: BuildConfig, version: str):
        if not config.timing_cache:
            return None, None
        device = cuda.device_info(0)
        path = self.cache.timing_cache_path(device.name, device.compute_capability, version)
        timing = builder_config.create_timing_cache(self.cache.read_timing_cache(path))
        if timing is None or not builder_config.set_timing_cache(timing, False):
            # an unreadable or mismatched cache file: start from an empty one, overwritten after the build
            timing = builder_config.create_timing_cache(b"")
            builder_config.set_timing_cache(timing, False)
        return path, builder_config.get_timing_cache()

    def _engine(self, plan: bytes, variant, config: BuildConfig, plan_path: Path, meta: dict,
                cache_hit: bool) -> Engine:
        self._require()
        import tensorrt as trt

        logger = make_logger()
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            reasons = "; ".join(logger.errors()[-2:]) or "no error logged"
            raise WorkbenchError(f"TensorRT {trt.__version__} cannot load engine plan '{plan_path}' ({reasons}): "
                                 "plans only load on the TensorRT version and GPU that built them; rebuild it here.")
        handle = TrtHandle(runtime=runtime, engine=engine, logger=logger, plan_bytes=len(plan))
        device = cuda.device_info(0)
        return Engine(
            backend=self.name,
            variant=variant,
            config=config,
            handle=handle,
            build_seconds=float(meta.get("build_seconds", 0.0)),
            cache_hit=cache_hit,
            plan_path=Path(plan_path),
            log=meta.get("log", ""),
            info={"tensorrt": trt.__version__, "device": device.to_dict(), "plan_bytes": len(plan),
                  "network_layers": meta.get("network_layers", {}), "build_phases": meta.get("build_phases", []),
                  "engine_layers": engine.num_layers},
            infer=handle.infer,
        )

    # ---- profiling --------------------------------------------------------------------------------------------

    def profile(self, engine: Engine, inputs: dict[str, np.ndarray], config: BuildConfig,
                progress: Progress | None = None) -> Run:
        progress = ensure(progress)
        self._require()
        engine.check_open()
        handle: TrtHandle = engine.handle
        notes: list[str] = []
        context = _new_context(handle.engine)
        with _Bindings(handle.engine, context, inputs) as io, cuda.Stream() as stream:
            io.upload(stream)
            times_ms, wall_s, used_graph = _timed_run(context, stream, config, progress, notes)
            gpu_memory = _gpu_memory_now(notes)
            layer_stats, runs = _per_layer_run(context, stream, config, progress)
            info_json = _inspect(handle.engine, context)
        info = parse_layer_info(info_json)
        notes += info.notes
        layers, join_notes = _join_layer_times(info.layers, layer_stats, runs)
        notes += join_notes
        layer_info_path = Path(tempfile.mkdtemp(prefix="trt-layer-info-")) / "layer_info.json"
        layer_info_path.write_text(info_json)
        run = self._run(engine, inputs, config, layers, times_ms, wall_s, gpu_memory, notes,
                        extra={"profile_runs": runs, "cuda_graph": used_graph, "layer_info_schema": info.schema})
        return run.replace(artifacts={**run.artifacts, "layer_info": str(layer_info_path)})

    def _run(self, engine: Engine, inputs, config, layers, times_ms, wall_s, gpu_memory, notes, extra) -> Run:
        import tensorrt as trt

        from ..env import environment

        handle: TrtHandle = engine.handle
        device = cuda.device_info(0)
        variant = engine.variant
        env = environment()
        env.update({"gpu": device.name, "compute_capability": device.compute_capability,
                    "driver": device.driver_version or env.get("driver"), "cuda_driver": device.cuda_driver_version,
                    "cuda_runtime": device.cuda_runtime_version, "tensorrt": trt.__version__})
        weights = int(layers["weight_bytes"].sum()) if len(layers) else None
        return Run(
            backend=self.name,
            config=config,
            layers=layers,
            latency=LatencyStats.from_times(times_ms, batch=batch_size(inputs, variant.source), wall_s=wall_s),
            latency_ms=times_ms,
            memory=Memory(
                weights_bytes=weights,
                activations_bytes=int(layers["activation_bytes"].sum()) if len(layers) else None,
                engine_device_bytes=int(handle.engine.device_memory_size_v2),
                plan_bytes=handle.plan_bytes,
                gpu_used_bytes=gpu_memory,
            ),
            model=model_info(variant.source),
            variant=variant.to_dict(),
            environment=env,
            inputs=_tensor_infos(handle.engine, inputs=True),
            outputs=_tensor_infos(handle.engine, inputs=False),
            artifacts={"engine": str(engine.plan_path)} if engine.plan_path else {},
            notes=tuple(notes),
            extra={**extra, "build_seconds": engine.build_seconds, "cache_hit": engine.cache_hit,
                   "shapes": {k: list(np.shape(v)) for k, v in inputs.items()},
                   "engine_layers": engine.info.get("engine_layers"),
                   "network_layers": engine.info.get("network_layers", {})},
        )


def _timed_run(context: trt.IExecutionContext, stream: cuda.Stream, config: BuildConfig, progress: Progress,
               notes: list[str]) -> tuple[list[float], float, bool]:
    """Warm-up, then per-inference GPU times from CUDA events (no profiler attached), like trtexec's GPU compute
    time; the wall time of the timed loop gives the throughput, launch gaps included."""
    _execute(context, stream)  # the first enqueue sets TensorRT up; it must precede a graph capture
    stream.synchronize()
    launch = functools.partial(_execute, context, stream)
    graph = None
    if config.cuda_graph:
        try:
            graph = cuda.CudaGraph(stream, launch)
            launch = functools.partial(graph.launch, stream)
        except WorkbenchError as e:
            notes.append(f"CUDA graph capture failed ({e}); timed without a graph")
    try:
        deadline = time.perf_counter() + config.warmup_ms / 1000
        while True:
            launch()
            stream.synchronize()
            if time.perf_counter() >= deadline:
                break
        starts = [cuda.Event() for _ in range(TIMING_BATCH)]
        ends = [cuda.Event() for _ in range(TIMING_BATCH)]
        times: list[float] = []
        start = time.perf_counter()
        until = start + config.duration_s
        total = config.iterations if not config.duration_s else 0
        while len(times) < config.iterations or time.perf_counter() < until:
            n = TIMING_BATCH if config.duration_s else min(TIMING_BATCH, config.iterations - len(times))
            for i in range(n):
                starts[i].record(stream)
                launch()
                ends[i].record(stream)
            times += [starts[i].elapsed_ms(ends[i]) for i in range(n)]
            if not progress.step("Timed run", len(times), total):
                progress.check()
        wall_s = time.perf_counter() - start
    finally:
        if graph is not None:
            graph.close()
    return times, wall_s, graph is not None


def _per_layer_run(context: trt.IExecutionContext, stream: cuda.Stream, config: BuildConfig,
                   progress: Progress) -> tuple[dict, int]:
    """Per-layer times from an IProfiler over separate inferences (after the timed run: the profiler slows them)."""
    profiler = make_profiler()
    context.enqueue_emits_profile = False  # report after each synchronized inference, not inside enqueue
    context.profiler = profiler
    runs = min(PROFILE_RUNS, max(config.iterations, 1))
    for i in range(runs):
        _execute(context, stream)
        stream.synchronize()
        profiler.next_inference()
        if not context.report_to_profiler():
            raise WorkbenchError("TensorRT could not report per-layer times (report_to_profiler returned False): "
                                 "see the TensorRT log for the reason (a missing profiler or a stream capture "
                                 "in progress are the documented ones).")
        if not progress.step("Per-layer profile", i + 1, runs):
            progress.check()
    return profiler.stats(), runs


def _inspect(engine: trt.ICudaEngine, context: trt.IExecutionContext) -> str:
    import tensorrt as trt

    inspector = engine.create_engine_inspector()
    inspector.execution_context = context  # resolves dynamic shapes to the ones profiled
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


def _join_layer_times(info_layers, stats: dict[str, dict], runs: int):
    """Inspector rows (in execution order) with the profiler's times, joined exactly as a trtexec import joins
    ``--exportLayerInfo`` with ``--exportProfile``; returns (layer table, notes on layers only one side has)."""
    import pandas as pd

    from ..interop.trtexec import LayerProfile, join_profile

    table = pd.DataFrame([{"name": name, "time_ms": t["time_ms"], "median_ms": t["median_ms"],
                           "total_ms": t["time_ms"] * runs, "file_pct": np.nan} for name, t in stats.items()],
                         columns=["name", "time_ms", "median_ms", "total_ms", "file_pct"])
    profile = LayerProfile(table, runs, float(table["total_ms"].sum()), "per-layer profile (IProfiler)")
    return join_profile(info_layers, profile)


def _gpu_memory_now(notes: list[str]) -> int | None:
    try:
        reading = cuda.gpu_memory(0)
    except WorkbenchError as e:
        notes.append(f"GPU memory not measured: {e}")
        return None
    if reading.process_bytes is None:
        notes.append("GPU memory used is the whole device's (NVML could not attribute memory to this process)")
        return reading.used_bytes
    return reading.process_bytes


def _tensor_infos(engine: trt.ICudaEngine, inputs: bool) -> tuple[TensorInfo, ...]:
    infos = []
    for name in _io_names(engine):
        if _is_input(engine, name) != inputs:
            continue
        dt = engine.get_tensor_dtype(name)
        known = TRT_DTYPES.get(dt.name)
        dtype = ML_DTYPES.get(dt.name) or (known.numpy or known.precision if known else dt.name.lower())
        infos.append(TensorInfo(name, dtype, tuple(int(d) for d in engine.get_tensor_shape(name))))
    return tuple(infos)
