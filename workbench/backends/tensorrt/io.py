"""I/O bindings and execution for TensorRT-family engines: device buffers per inference, one inference on a stream,
the numpy types of engine tensors. Nothing here imports an edition's module: enum values are compared by name, so
the same code drives ``tensorrt`` and ``tensorrt_rtx`` engines.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import cuda
from ...config import format_shape
from ...errors import WorkbenchError
from ...results.layerinfo import TRT_DTYPES
from ...results.run import TensorInfo

if TYPE_CHECKING:
    import tensorrt as trt

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


@dataclass
class TrtHandle:
    """A deserialized engine with the runtime and logger it depends on; ``infer`` runs one inference."""

    runtime: trt.Runtime
    engine: trt.ICudaEngine
    logger: trt.ILogger
    plan_bytes: int
    #: the TensorRT-RTX runtime configuration contexts are made with (JIT cache, CUDA graphs, kernel
    #: specialization); None where the edition has none
    runtime_config: Any = None
    _context: trt.IExecutionContext | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for ``inputs``. A batch outside the engine's profile range runs in chunks the profile allows
        (the last one padded), so accuracy checks can pass a whole evaluation set; outputs are batch-major."""
        with self._lock:
            if self._context is None:
                self._context = new_context(self.engine, self.runtime_config)
            limits = _batch_limits(self.engine, inputs)
            batch = len(next(iter(inputs.values()))) if inputs else 0
            if limits is None or limits[0] <= batch <= limits[1]:
                return self._infer_once(self._context, inputs)
            lo, hi = limits
            pieces = []
            for start in range(0, batch, hi):
                chunk = {k: np.asarray(v)[start : start + hi] for k, v in inputs.items()}
                n = len(next(iter(chunk.values())))
                if n < lo:  # pad with copies of the last sample, dropped from the outputs below
                    chunk = {k: np.concatenate([v, np.repeat(v[-1:], lo - n, axis=0)]) for k, v in chunk.items()}
                pieces.append({k: v[:n] for k, v in self._infer_once(self._context, chunk).items()})
            return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

    def close(self) -> None:
        """Destroy the context, engine and runtime now: TensorRT frees their device memory as they go."""
        with self._lock:
            # a closed handle is never used again (Engine.close drops it): the typed fields may hold None
            self._context = self.engine = self.runtime = self.runtime_config = None  # type: ignore[assignment]

    def _infer_once(self, context: trt.IExecutionContext, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with Bindings(self.engine, context, inputs) as io, cuda.Stream() as stream:
            # copies on the inference's own stream: it is non-blocking, so it is not ordered after the default one
            io.upload(stream)
            execute(context, stream)
            return io.download(stream)


def _batch_limits(engine: trt.ICudaEngine, inputs: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """The (min, max) first dimension the engine's profile allows for inputs whose first dimension is dynamic."""
    lo, hi, dynamic = 1, 1 << 31, False
    for name in _io_names(engine):
        if (
            name in inputs
            and _is_input(engine, name)
            and len(engine.get_tensor_shape(name))
            and engine.get_tensor_shape(name)[0] == -1
        ):
            low, _, high = engine.get_tensor_profile_shape(name, 0)
            lo, hi, dynamic = max(lo, low[0]), min(hi, high[0]), True
    return (lo, hi) if dynamic and lo <= hi else None


def new_context(engine: trt.ICudaEngine, runtime_config=None) -> trt.IExecutionContext:
    """An execution context, made under ``runtime_config`` where one is given (TensorRT-RTX)."""
    context = (
        engine.create_execution_context() if runtime_config is None else engine.create_execution_context(runtime_config)
    )
    if context is None:
        raise WorkbenchError(
            "TensorRT could not create an execution context (out of GPU memory?): "
            "free GPU memory or use smaller shapes."
        )
    return context


def execute(context: trt.IExecutionContext, stream: cuda.Stream) -> None:
    if not context.execute_async_v3(stream.handle):
        raise WorkbenchError(
            "TensorRT failed to enqueue an inference (execute_async_v3 returned False): "
            "see the TensorRT log; check input shapes against the engine's profile."
        )


def numpy_dtype(data_type: trt.DataType) -> np.dtype:
    """The numpy dtype for a ``trt.DataType`` (bf16 and fp8 through ml_dtypes)."""
    name = data_type.name
    if name in ML_DTYPES:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, ML_DTYPES[name]))
    known = TRT_DTYPES.get(name)
    if known is None or known.numpy is None:
        raise WorkbenchError(
            f"Engine I/O of TensorRT type {name} has no numpy equivalent: keep I/O in fp32/fp16 "
            "(ModelOpt keep_io_types) and rebuild."
        )
    return np.dtype(known.numpy)


def _io_names(engine: trt.ICudaEngine) -> list[str]:
    return [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]


def _is_input(engine: trt.ICudaEngine, name: str) -> bool:
    return engine.get_tensor_mode(name).name == "INPUT"


class Bindings:
    """Device buffers for one inference: input shapes set, every tensor address given to the context."""

    def __init__(self, engine: trt.ICudaEngine, context: trt.IExecutionContext, inputs: dict[str, np.ndarray]):
        self.context = context
        self.host: dict[str, np.ndarray] = {}
        self.outputs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.buffers: dict[str, cuda.DeviceBuffer] = {}
        names = _io_names(engine)
        input_names = [n for n in names if _is_input(engine, n)]
        missing = [n for n in input_names if n not in inputs]
        if missing:
            raise WorkbenchError(
                f"Input '{missing[0]}' is missing: the engine takes {', '.join(input_names)}; "
                f"given: {', '.join(inputs) or 'nothing'}."
            )
        try:
            for name in names:
                _check_linear(engine, name)
                if engine.get_tensor_location(name).name != "DEVICE":
                    raise WorkbenchError(
                        f"Engine tensor '{name}' lives in host memory (a shape tensor): the workbench "
                        "profiles only engines whose I/O is on the GPU; make it an initializer."
                    )
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
                raise WorkbenchError(
                    f"Input '{name}' has dtype {array.dtype}, the engine takes {want.name}: convert it with .astype."
                )
            array = array.astype(want)
        if not self.context.set_input_shape(name, tuple(array.shape)):
            declared = tuple(engine.get_tensor_shape(name))
            if all(d >= 0 for d in declared):  # a static input has no profile range to quote: name its shape
                raise WorkbenchError(
                    f"Input '{name}' has shape {format_shape(array.shape)}, the engine takes "
                    f"{format_shape(declared)}: pass that shape or rebuild for the one you need."
                )
            lo, _, hi = (format_shape(tuple(d)) for d in engine.get_tensor_profile_shape(name, 0))
            raise WorkbenchError(
                f"Input '{name}' of shape {format_shape(array.shape)} is outside the engine's "
                f"optimization profile ({lo} to {hi}): pass a shape in that range or rebuild with "
                "a profile that covers it."
            )
        self.host[name] = np.require(array, requirements="C")
        self._attach(name, self.host[name].nbytes)

    def _bind_output(self, engine: trt.ICudaEngine, name: str) -> None:
        shape = tuple(self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise WorkbenchError(
                f"Output '{name}' has a data-dependent shape ({format_shape(shape)}): the workbench "
                "cannot size its buffer ahead; make the output shape depend on input shapes only."
            )
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
        return {
            name: self.buffers[name].download(shape, dtype, stream) for name, (shape, dtype) in self.outputs.items()
        }

    def free(self) -> None:
        for buf in self.buffers.values():
            buf.free()
        self.buffers = {}

    def __enter__(self) -> Bindings:
        return self

    def __exit__(self, *exc) -> None:
        self.free()


def _check_linear(engine: trt.ICudaEngine, name: str) -> None:
    fmt = engine.get_tensor_format(name)
    if fmt.name != "LINEAR":
        what = TENSOR_FORMATS.get(fmt.name, fmt.name)
        raise WorkbenchError(
            f"Engine tensor '{name}' uses the {what} layout: the workbench copies only row-major "
            "linear I/O; rebuild without custom I/O formats."
        )


def tensor_infos(engine: trt.ICudaEngine, inputs: bool) -> tuple[TensorInfo, ...]:
    infos = []
    for name in _io_names(engine):
        if _is_input(engine, name) != inputs:
            continue
        dt = engine.get_tensor_dtype(name)
        known = TRT_DTYPES.get(dt.name)
        dtype = ML_DTYPES.get(dt.name) or (known.numpy or known.precision if known else dt.name.lower())
        infos.append(TensorInfo(name, dtype, tuple(int(d) for d in engine.get_tensor_shape(name))))
    return tuple(infos)
