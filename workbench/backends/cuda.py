"""The CUDA layer: device facts, device buffers, streams, events and graphs through cuda-python, and NVML readings.

Everything goes through ``cuda.bindings.runtime`` (the ``cuda-bindings`` package; no pycuda) and ``pynvml``
(``nvidia-ml-py``), both imported on first use, so importing :mod:`workbench` never touches CUDA.
Every CUDA call's status is checked: a failure raises :class:`CudaError` naming the call and CUDA's own words.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import WorkbenchError


class CudaError(WorkbenchError):
    """A CUDA runtime call failed; ``code`` is CUDA's error name (``cudaErrorMemoryAllocation``...)."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


def _runtime():
    try:
        from cuda.bindings import runtime
    except ImportError as e:
        raise WorkbenchError(f"cuda-python is not installed ({e}): pip install cuda-bindings.") from None
    return runtime


def check(result, what: str):
    """Unpack a cuda-python result ``(status, *values)``: the value(s), or :class:`CudaError` when status fails."""
    rt = _runtime()
    status, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if status != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(status)[1].decode(errors="replace")
        text = rt.cudaGetErrorString(status)[1].decode(errors="replace")
        raise CudaError(f"CUDA call {what} failed: {name} ({text}){_hint(name)}", code=name)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _hint(name: str) -> str:
    hints = {
        "cudaErrorInsufficientDriver": ": no NVIDIA driver was found, or it is older than this CUDA runtime; "
        "run on a GPU machine with a current driver",
        "cudaErrorNoDevice": ": run on a machine with an NVIDIA GPU (check CUDA_VISIBLE_DEVICES)",
        "cudaErrorMemoryAllocation": ": free GPU memory (other processes, smaller shapes) and retry",
        "cudaErrorInvalidDevice": ": pick a device index that exists (see nvidia-smi)",
    }
    return hints.get(name, "")


def cuda_status() -> tuple[bool, str]:
    """(True, "") when cuda-python can use at least one GPU here, else (False, the reason in one line)."""
    try:
        count = check(_runtime().cudaGetDeviceCount(), "cudaGetDeviceCount")
    except WorkbenchError as e:
        return False, str(e)
    if not count:
        return False, "no CUDA GPU is visible (cudaGetDeviceCount returned 0): check CUDA_VISIBLE_DEVICES"
    return True, ""


# ---- device facts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """One GPU as CUDA and NVML describe it."""

    index: int
    name: str
    compute_capability: str  # "9.0"
    multiprocessors: int
    total_memory_bytes: int
    pci_bus_id: str
    driver_version: str  # NVIDIA driver, "580.159.04" (NVML); "" when NVML cannot tell
    cuda_driver_version: str  # highest CUDA version the driver supports, "13.0"
    cuda_runtime_version: str  # the CUDA runtime cuda-python was built against, "13.0"

    @property
    def sm(self) -> str:
        """``sm90`` for compute capability 9.0 (used in cache keys and file names)."""
        return "sm" + self.compute_capability.replace(".", "")

    def to_dict(self) -> dict:
        return asdict(self)


def _version_text(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


@functools.cache
def device_info(index: int = 0) -> DeviceInfo:
    """Facts about GPU ``index`` (CUDA numbering); cached, since they do not change while the process runs."""
    rt = _runtime()
    prop = check(rt.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    bus_id = check(rt.cudaDeviceGetPCIBusId(64, index), "cudaDeviceGetPCIBusId")
    bus_id = bus_id.split(b"\0")[0].decode() if isinstance(bus_id, bytes) else str(bus_id)
    name = prop.name.split(b"\0")[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
    return DeviceInfo(
        index=index,
        name=name,
        compute_capability=f"{prop.major}.{prop.minor}",
        multiprocessors=int(prop.multiProcessorCount),
        total_memory_bytes=int(prop.totalGlobalMem),
        pci_bus_id=bus_id,
        driver_version=_nvml_driver_version(),
        cuda_driver_version=_version_text(check(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")),
        cuda_runtime_version=_version_text(check(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")),
    )


def memory_info() -> tuple[int, int]:
    """(free, total) bytes of the current GPU, as CUDA sees them."""
    return check(_runtime().cudaMemGetInfo(), "cudaMemGetInfo")


def synchronize() -> None:
    """Wait until the current GPU has finished all work (every stream)."""
    check(_runtime().cudaDeviceSynchronize(), "cudaDeviceSynchronize")


# ---- NVML -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuMemoryReading:
    """NVML's view of one GPU's memory. ``process_bytes`` is this process's share (None where NVML cannot tell,
    as in containers whose process ids differ from the host's)."""

    used_bytes: int
    total_bytes: int
    process_bytes: int | None


@functools.cache
def _nvml():
    try:
        import pynvml
    except ImportError as e:
        raise WorkbenchError(f"NVML bindings are not installed ({e}): pip install nvidia-ml-py.") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise WorkbenchError(f"NVML could not start ({e}): is the NVIDIA driver installed and loaded?") from None
    return pynvml


def _nvml_driver_version() -> str:
    try:
        version = _nvml().nvmlSystemGetDriverVersion()
    except Exception:  # NVML is optional for device facts: the CUDA numbers still stand
        return ""
    return version.decode() if isinstance(version, bytes) else str(version)


def _nvml_handle(index: int):
    """NVML's handle for CUDA device ``index``, matched by PCI bus id (CUDA and NVML may number GPUs differently)."""
    nvml = _nvml()
    bus_id = device_info(index).pci_bus_id
    try:
        return nvml.nvmlDeviceGetHandleByPciBusId(bus_id.encode())
    except nvml.NVMLError:
        return nvml.nvmlDeviceGetHandleByIndex(index)


def gpu_memory(index: int = 0) -> GpuMemoryReading:
    """Memory in use on GPU ``index`` now (NVML), and this process's share where NVML reports it."""
    nvml = _nvml()
    handle = _nvml_handle(index)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    process_bytes = None
    try:
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                process_bytes = int(proc.usedGpuMemory)
    except nvml.NVMLError:
        pass
    return GpuMemoryReading(int(mem.used), int(mem.total), process_bytes)


# ---- streams, events, buffers, graphs ------------------------------------------------------------------------


class _Released:
    """A CUDA object :meth:`close` releases; also at the end of a ``with`` block and when it is collected."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit the runtime may already be gone
            pass


class Stream(_Released):
    """A non-blocking CUDA stream. ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self):
        rt = _runtime()
        self._stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")

    @property
    def handle(self) -> int:
        return int(self._stream)

    @property
    def raw(self):
        return self._stream

    def synchronize(self) -> None:
        check(_runtime().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            check(_runtime().cudaStreamDestroy(stream), "cudaStreamDestroy")


def _stream_of(stream: Stream | None):
    return stream.raw if stream is not None else 0


def _finish_default_stream(rt) -> None:
    """Wait for work issued without a stream. The streams of this module are non-blocking, so they are not ordered
    after the default stream, and a stream-less copy or memset may still be running when its call returns (CUDA's
    "API synchronization behavior": from pageable memory cudaMemcpy returns before its DMA lands)."""
    check(rt.cudaStreamSynchronize(0), "cudaStreamSynchronize(default stream)")


class Event(_Released):
    """A CUDA event with timing enabled: record it on a stream, then read the time between two events."""

    def __init__(self):
        self._event = check(_runtime().cudaEventCreate(), "cudaEventCreate")

    def record(self, stream: Stream | None = None) -> Event:
        check(_runtime().cudaEventRecord(self._event, _stream_of(stream)), "cudaEventRecord")
        return self

    def synchronize(self) -> None:
        check(_runtime().cudaEventSynchronize(self._event), "cudaEventSynchronize")

    def elapsed_ms(self, later: Event) -> float:
        """Milliseconds from this event to ``later`` (both recorded; waits for ``later`` to complete)."""
        later.synchronize()
        return float(check(_runtime().cudaEventElapsedTime(self._event, later._event), "cudaEventElapsedTime"))

    def close(self) -> None:
        if self._event is not None:
            event, self._event = self._event, None
            check(_runtime().cudaEventDestroy(event), "cudaEventDestroy")


class DeviceBuffer(_Released):
    """``nbytes`` of GPU memory (cudaMalloc). ``ptr`` is the device address TensorRT's ``set_tensor_address`` takes.

    Copies with a ``stream`` are stream-ordered; without one, a call has finished on the GPU when it returns (so any
    stream sees its result). :meth:`download` always waits for its data before returning.
    """

    def __init__(self, nbytes: int):
        if nbytes < 0:
            raise WorkbenchError(f"Cannot allocate {nbytes} bytes on the GPU: the size must be >= 0.")
        self.nbytes = int(nbytes)
        # cudaMalloc(0) gives a null pointer; one byte keeps every buffer a valid, distinct address.
        self.ptr = int(check(_runtime().cudaMalloc(max(self.nbytes, 1)), f"cudaMalloc({self.nbytes} bytes)"))

    @classmethod
    def from_array(cls, array: np.ndarray, stream: Stream | None = None) -> DeviceBuffer:
        buf = cls(np.asarray(array).nbytes)
        buf.upload(array, stream)
        return buf

    def upload(self, array: np.ndarray, stream: Stream | None = None) -> None:
        """Copy a host array into the start of this buffer."""
        host = np.require(array, requirements="C")
        self._check_fits(host.nbytes, "upload")
        rt = _runtime()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        if stream is None:
            check(rt.cudaMemcpy(self.ptr, host.ctypes.data, host.nbytes, kind), "cudaMemcpy(host to device)")
            _finish_default_stream(rt)
        else:
            check(
                rt.cudaMemcpyAsync(self.ptr, host.ctypes.data, host.nbytes, kind, stream.raw),
                "cudaMemcpyAsync(host to device)",
            )
            # the pageable source may be freed by the caller: wait until CUDA has taken it
            stream.synchronize()

    def download(self, shape, dtype, stream: Stream | None = None) -> np.ndarray:
        """A new host array of ``shape`` and ``dtype`` filled from the start of this buffer."""
        out = np.empty(shape, dtype=dtype)
        self._check_fits(out.nbytes, "download")
        rt = _runtime()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if stream is None:
            check(rt.cudaMemcpy(out.ctypes.data, self.ptr, out.nbytes, kind), "cudaMemcpy(device to host)")
        else:
            check(
                rt.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes, kind, stream.raw),
                "cudaMemcpyAsync(device to host)",
            )
            stream.synchronize()
        return out

    def copy_from(self, other: DeviceBuffer, nbytes: int | None = None, stream: Stream | None = None) -> None:
        """Device-to-device copy of ``nbytes`` (default: all of ``other``) into this buffer."""
        n = other.nbytes if nbytes is None else int(nbytes)
        self._check_fits(n, "copy")
        other._check_fits(n, "copy")
        rt = _runtime()
        check(
            rt.cudaMemcpyAsync(self.ptr, other.ptr, n, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, _stream_of(stream)),
            "cudaMemcpyAsync(device to device)",
        )
        if stream is None:
            _finish_default_stream(rt)

    def fill(self, byte: int, stream: Stream | None = None) -> None:
        rt = _runtime()
        check(rt.cudaMemsetAsync(self.ptr, int(byte), self.nbytes, _stream_of(stream)), "cudaMemsetAsync")
        if stream is None:
            _finish_default_stream(rt)

    def _check_fits(self, n: int, what: str) -> None:
        if n > self.nbytes:
            raise WorkbenchError(
                f"Cannot {what} {n} bytes with a {self.nbytes}-byte GPU buffer: allocate a larger one."
            )

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(_runtime().cudaFree(ptr), "cudaFree")

    close = free


class CudaGraph(_Released):
    """Work captured once from a stream, replayed with one launch (fewer launch gaps, like trtexec --useCudaGraph)."""

    def __init__(self, stream: Stream, enqueue: Callable[[], object]):
        rt = _runtime()
        self._graph = self._exec = None
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(rt.cudaStreamBeginCapture(stream.raw, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            self._abandon_capture(rt, stream)
            raise
        try:
            self._graph = check(rt.cudaStreamEndCapture(stream.raw), "cudaStreamEndCapture")
        except CudaError:  # the capture was invalidated (work not allowed while capturing): no graph
            rt.cudaGetLastError()
            raise
        self._exec = check(rt.cudaGraphInstantiate(self._graph, 0), "cudaGraphInstantiate")

    @staticmethod
    def _abandon_capture(rt, stream: Stream) -> None:
        """End a capture whose enqueue failed, as trtexec does: the stream leaves capture mode (or stays unusable),
        the partial graph is dropped and the capture's error is cleared so that later calls do not report it."""
        status, graph = rt.cudaStreamEndCapture(stream.raw)
        if status == rt.cudaError_t.cudaSuccess and graph is not None and int(graph):
            rt.cudaGraphDestroy(graph)
        rt.cudaGetLastError()

    def launch(self, stream: Stream) -> None:
        check(_runtime().cudaGraphLaunch(self._exec, stream.raw), "cudaGraphLaunch")

    def close(self) -> None:
        rt = _runtime()
        if self._exec is not None:
            check(rt.cudaGraphExecDestroy(self._exec), "cudaGraphExecDestroy")
            self._exec = None
        if self._graph is not None:
            check(rt.cudaGraphDestroy(self._graph), "cudaGraphDestroy")
            self._graph = None
