"""The CUDA layer (workbench.backends.cuda) on a real GPU: allocation, copies both ways, streams, event timing checked
against work of known duration, CUDA graphs and NVML. Skipped, with the reason, where there is no usable GPU.

Figures are printed (run with ``-s`` to see them); docs/gpu-validation.md records a run on an H100.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from workbench.backends import cuda
from workbench.config import BuildConfig
from workbench.errors import WorkbenchError
from workbench.progress import Progress

pytestmark = pytest.mark.gpu  # selected by `pytest -m gpu` in an NGC container

GPU_OK, GPU_REASON = cuda.cuda_status()
needs_gpu = pytest.mark.skipif(not GPU_OK, reason=f"no usable CUDA GPU here: {GPU_REASON}")
MiB = 1 << 20
GiB = 1 << 30


def _torch_cuda():
    torch = pytest.importorskip("torch", reason="torch makes the known-duration kernel for this check")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    return torch


def _copy_ms(src: cuda.DeviceBuffer, dst: cuda.DeviceBuffer, stream: cuda.Stream, repeats: int) -> float:
    start, end = cuda.Event(), cuda.Event()
    start.record(stream)
    for _ in range(repeats):
        dst.copy_from(src, stream=stream)
    end.record(stream)
    return start.elapsed_ms(end)


def test_status_explains_a_missing_gpu():
    if GPU_OK:
        pytest.skip("a GPU is present: the no-GPU message cannot be seen here")
    assert GPU_REASON and "\n" not in GPU_REASON
    assert re.search(r"driver|GPU|cuda-python|CUDA_VISIBLE_DEVICES", GPU_REASON), GPU_REASON


@needs_gpu
def test_device_info_matches_the_driver():
    info = cuda.device_info(0)
    print(
        f"\nGPU {info.name}, compute {info.compute_capability}, {info.multiprocessors} SMs, "
        f"{info.total_memory_bytes / GiB:.1f} GiB, driver {info.driver_version}, CUDA driver "
        f"{info.cuda_driver_version}, runtime {info.cuda_runtime_version}, bus {info.pci_bus_id}"
    )
    assert info.name and re.fullmatch(r"\d+\.\d+", info.compute_capability)
    assert info.multiprocessors > 0 and info.total_memory_bytes > GiB
    assert info.sm == "sm" + info.compute_capability.replace(".", "")
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader,nounits",
                "-i",
                info.pci_bus_id,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        name, driver, total_mib = (s.strip() for s in smi.strip().splitlines()[0].split(","))
        assert name == info.name and driver == info.driver_version
        assert abs(int(total_mib) * MiB - info.total_memory_bytes) < 0.1 * info.total_memory_bytes


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "uint8", "bool"])
@pytest.mark.parametrize("use_stream", [False, True], ids=["sync", "stream"])
def test_copies_host_to_device_and_back(dtype, use_stream):
    rng = np.random.default_rng()
    host = (rng.standard_normal((3, 257, 33)) * 100).astype(dtype)
    with cuda.DeviceBuffer(host.nbytes) as buf, cuda.Stream() as stream:
        buf.fill(0xAB)  # poison: a copy that writes nothing cannot pass
        s = stream if use_stream else None
        buf.upload(host, s)
        back = buf.download(host.shape, host.dtype, s)
    assert back.dtype == host.dtype and np.array_equal(back, host)


@needs_gpu
def test_device_to_device_copy_writes_every_byte():
    rng = np.random.default_rng()
    data = rng.integers(0, 255, size=5 * MiB + 7, dtype=np.uint8)
    with cuda.DeviceBuffer.from_array(data) as a, cuda.DeviceBuffer(data.nbytes) as b:
        b.fill(0xFF)
        b.copy_from(a)
        assert np.array_equal(b.download(data.shape, data.dtype), data)
        b.fill(0)
        b.copy_from(a, nbytes=1000)
        head = b.download(data.shape, data.dtype)
        assert np.array_equal(head[:1000], data[:1000]) and not head[1000:].any()


@needs_gpu
def test_size_mistakes_are_clear_errors():
    with cuda.DeviceBuffer(16) as buf:
        with pytest.raises(WorkbenchError, match="16-byte GPU buffer"):
            buf.upload(np.zeros(5, np.float32))
        with pytest.raises(WorkbenchError, match="16-byte GPU buffer"):
            buf.download((8,), np.float32)
    with pytest.raises(cuda.CudaError) as e:
        cuda.DeviceBuffer(1 << 50)  # a petabyte
    assert e.value.code == "cudaErrorMemoryAllocation"
    assert "cudaMalloc" in str(e.value) and "\n" not in str(e.value)


@needs_gpu
def test_allocation_and_free_move_free_memory():
    free_before, total = cuda.memory_info()
    buf = cuda.DeviceBuffer(GiB)
    free_during, _ = cuda.memory_info()
    buf.free()
    buf.free()  # a second free is harmless
    free_after, _ = cuda.memory_info()
    print(
        f"\nfree {free_before / GiB:.2f} -> {free_during / GiB:.2f} -> {free_after / GiB:.2f} GiB of {total / GiB:.1f}"
    )
    assert free_before - free_during >= GiB
    assert free_after - free_during >= GiB


@needs_gpu
def test_streams_order_their_own_work():
    rng = np.random.default_rng()
    x, y = rng.standard_normal(4 * MiB).astype(np.float32), rng.standard_normal(4 * MiB).astype(np.float32)
    with cuda.Stream() as s1, cuda.Stream() as s2:
        bufs = [cuda.DeviceBuffer(x.nbytes) for _ in range(4)]
        bufs[0].upload(x, s1)
        bufs[2].upload(y, s2)
        bufs[1].copy_from(bufs[0], stream=s1)  # ordered after the upload on s1 with no wait in between
        bufs[3].copy_from(bufs[2], stream=s2)
        assert np.array_equal(bufs[1].download(x.shape, x.dtype, s1), x)
        assert np.array_equal(bufs[3].download(y.shape, y.dtype, s2), y)
        for b in bufs:
            b.free()
        assert s1.handle != s2.handle and s1.handle != 0


@needs_gpu
def test_event_time_agrees_with_the_host_clock():
    """Twenty back-to-back 1 GiB copies keep the GPU busy for tens of ms: events and the host clock must agree."""
    with cuda.Stream() as stream, cuda.DeviceBuffer(GiB) as a, cuda.DeviceBuffer(GiB) as b:
        a.fill(1, stream)
        _copy_ms(a, b, stream, 2)  # warm-up
        stream.synchronize()
        t0 = time.perf_counter()
        event_ms = _copy_ms(a, b, stream, 20)
        host_ms = (time.perf_counter() - t0) * 1000
    bandwidth = 20 * 2 * GiB / (event_ms / 1000) / 1e12
    print(
        f"\n20 x 1 GiB device copies: events {event_ms:.2f} ms, host clock {host_ms:.2f} ms, "
        f"{bandwidth:.2f} TB/s (read + write)"
    )
    assert event_ms <= host_ms
    assert event_ms >= 0.9 * host_ms
    assert 0.2 < bandwidth < 20  # a real GPU's memory, neither a no-op nor a host-side fake


@needs_gpu
def test_event_time_scales_with_bytes_copied():
    sizes = [32 * MiB, 64 * MiB, 128 * MiB, 256 * MiB, 512 * MiB]
    times = {}
    with cuda.Stream() as stream:
        for n in sizes:
            src, dst = cuda.DeviceBuffer(n), cuda.DeviceBuffer(n)
            dst.copy_from(src, stream=stream)
            _copy_ms(src, dst, stream, 3)
            times[n] = min(_copy_ms(src, dst, stream, 10) for _ in range(3)) / 10
            src.free()
            dst.free()
    print("\nper-copy ms by size: " + ", ".join(f"{n // MiB} MiB {t:.4f}" for n, t in times.items()))
    ratio = times[512 * MiB] / times[64 * MiB]
    assert 6.0 < ratio < 10.0, f"8x the bytes took {ratio:.2f}x the time"
    for small, large in zip(sizes, sizes[1:], strict=False):
        assert times[large] > times[small]


@needs_gpu
def test_event_time_matches_a_kernel_of_known_duration():
    """torch.cuda._sleep spins for a given number of GPU clock cycles: 4x the cycles must take 4x the time, and
    the implied clock must be a clock the GPU can run at (NVML's maximum SM clock bounds it)."""
    torch = _torch_cuda()
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByPciBusId(cuda.device_info(0).pci_bus_id.encode())
    max_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
    cycles = 20_000_000
    with cuda.Stream() as stream:
        with torch.cuda.stream(torch.cuda.ExternalStream(stream.handle)):

            def timed(n):
                start, end = cuda.Event(), cuda.Event()
                start.record(stream)
                torch.cuda._sleep(n)
                end.record(stream)
                return start.elapsed_ms(end)

            timed(cycles)  # warm-up (module load, clocks up)
            one = min(timed(cycles) for _ in range(3))
            four = min(timed(4 * cycles) for _ in range(3))
    implied_mhz = cycles / (one / 1000) / 1e6
    print(
        f"\n_sleep({cycles}) {one:.3f} ms, 4x {four:.3f} ms (ratio {four / one:.3f}); implied SM clock "
        f"{implied_mhz:.0f} MHz, NVML max {max_mhz} MHz"
    )
    assert 3.6 < four / one < 4.4
    assert 0.3 * max_mhz < implied_mhz < 1.05 * max_mhz


@needs_gpu
def test_events_agree_with_torch_events_on_the_same_stream():
    torch = _torch_cuda()
    with cuda.Stream() as stream, cuda.DeviceBuffer(256 * MiB) as a, cuda.DeviceBuffer(256 * MiB) as b:
        ours_start, ours_end = cuda.Event(), cuda.Event()
        theirs_start, theirs_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        ext = torch.cuda.ExternalStream(stream.handle)
        _copy_ms(a, b, stream, 2)
        ours_start.record(stream)
        theirs_start.record(ext)
        for _ in range(20):
            b.copy_from(a, stream=stream)
        theirs_end.record(ext)
        ours_end.record(stream)
        ours = ours_start.elapsed_ms(ours_end)
        theirs = theirs_start.elapsed_time(theirs_end)
    print(f"\nsame 20 copies: workbench events {ours:.4f} ms, torch events {theirs:.4f} ms")
    assert theirs <= ours + 0.01
    assert ours - theirs < 0.02 * ours + 0.05


@needs_gpu
def test_cuda_graph_replays_captured_work():
    rng = np.random.default_rng()
    data = rng.standard_normal(8 * MiB // 4).astype(np.float32)
    with cuda.Stream() as stream, cuda.DeviceBuffer.from_array(data) as a, cuda.DeviceBuffer(data.nbytes) as b:
        graph = cuda.CudaGraph(stream, lambda: b.copy_from(a, stream=stream))
        b.fill(0xFF, stream)
        stream.synchronize()
        assert not np.array_equal(b.download(data.shape, data.dtype), data)  # capture ran nothing
        graph.launch(stream)
        assert np.array_equal(b.download(data.shape, data.dtype, stream), data)
        graph.close()


@needs_gpu
def test_failed_capture_leaves_the_stream_usable():
    data = np.arange(1 << 20, dtype=np.float32)
    with cuda.Stream() as stream, cuda.DeviceBuffer.from_array(data) as a, cuda.DeviceBuffer(data.nbytes) as b:

        def refused():  # as TensorRT does when an engine holds work a capture cannot record
            b.copy_from(a, stream=stream)
            raise WorkbenchError("enqueue failed")

        with pytest.raises(WorkbenchError, match="enqueue failed"):
            cuda.CudaGraph(stream, refused)
        with pytest.raises(cuda.CudaError):  # a synchronize inside a capture invalidates it
            cuda.CudaGraph(stream, stream.synchronize)
        b.fill(0)
        b.copy_from(a, stream=stream)  # the stream left capture mode both times: plain work runs again
        assert np.array_equal(b.download(data.shape, data.dtype, stream), data)


@needs_gpu
def test_nvml_sees_memory_this_process_allocates():
    before = cuda.gpu_memory(0)
    buf = cuda.DeviceBuffer(2 * GiB)
    buf.fill(0)
    cuda.synchronize()
    during = cuda.gpu_memory(0)
    buf.free()
    cuda.synchronize()
    after = cuda.gpu_memory(0)
    print(
        f"\nNVML used {before.used_bytes / GiB:.2f} -> {during.used_bytes / GiB:.2f} -> {after.used_bytes / GiB:.2f}"
        f" GiB of {during.total_bytes / GiB:.1f}; this process: {during.process_bytes}"
    )
    assert during.used_bytes - before.used_bytes >= 2 * GiB * 0.99
    assert during.used_bytes - after.used_bytes >= 2 * GiB * 0.99
    assert abs(during.total_bytes - cuda.device_info(0).total_memory_bytes) < 0.1 * during.total_bytes
    if during.process_bytes is not None:
        assert during.process_bytes >= 2 * GiB


class _CopyContext:
    """Stands in for a TensorRT execution context in the timing loop: its "inference" is a device copy of known
    size, so the backend's warm-up, event batches and CUDA-graph path run on real GPU work."""

    def __init__(self, src: cuda.DeviceBuffer, dst: cuda.DeviceBuffer, stream: cuda.Stream):
        self.src, self.dst, self.stream, self.calls = src, dst, stream, 0

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert stream_handle == self.stream.handle
        self.dst.copy_from(self.src, stream=self.stream)
        self.calls += 1
        return True


@needs_gpu
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["plain", "graph"])
def test_backend_timing_loop_times_each_inference(cuda_graph):
    from workbench.backends.tensorrt import _timed_run

    steps = []
    config = BuildConfig(warmup_ms=20, iterations=120, cuda_graph=cuda_graph)
    with cuda.Stream() as stream, cuda.DeviceBuffer(256 * MiB) as a, cuda.DeviceBuffer(256 * MiB) as b:
        context = _CopyContext(a, b, stream)
        reference = min(_copy_ms(a, b, stream, 10) for _ in range(3)) / 10
        notes: list[str] = []
        times, wall_s, used_graph = _timed_run(context, stream, config, Progress(lambda *s: steps.append(s)), notes)
    median = float(np.median(times))
    print(
        f"\ntimed loop ({'graph' if used_graph else 'plain'}): {len(times)} inferences, median {median:.4f} ms, "
        f"reference copy {reference:.4f} ms, wall {wall_s * 1000:.1f} ms, notes {notes}"
    )
    assert used_graph == cuda_graph and not notes
    assert len(times) == 120
    assert abs(median - reference) < 0.1 * reference
    assert wall_s * 1000 >= sum(times) * 0.95
    assert steps[-1] == ("Timed run", 120, 120)
    # a graph is captured once and replayed: the context itself enqueues only the warm-up runs then
    if cuda_graph:
        assert context.calls < 120
