"""Profiling a TensorRT-family engine like trtexec: a timed run with CUDA events and no profiler attached (warm-up,
then iterations / duration, optionally as a CUDA graph); a separate per-layer run with an ``IProfiler``
(``enqueue_emits_profile = False`` and ``report_to_profiler()`` after each inference); layer facts from the engine
inspector (JSON, DETAILED), joined with the times as a trtexec import joins its files.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

import numpy as np

from .. import cuda
from ...config import BuildConfig
from ...errors import WorkbenchError
from ...progress import Progress
from .callbacks import make_profiler
from .io import execute

if TYPE_CHECKING:
    import tensorrt as trt

#: Most inferences the per-layer run profiles (each one is reported layer by layer through Python).
PROFILE_RUNS = 100
#: Inferences enqueued between two waits in the timed run (events are read back per batch).
TIMING_BATCH = 50


def _timed_run(
    context: trt.IExecutionContext, stream: cuda.Stream, config: BuildConfig, progress: Progress, notes: list[str]
) -> tuple[list[float], float, bool]:
    """Warm-up, then per-inference GPU times from CUDA events (no profiler attached), like trtexec's GPU compute
    time; the wall time of the timed loop gives the throughput, launch gaps included."""
    execute(context, stream)  # the first enqueue sets TensorRT up; it must precede a graph capture
    stream.synchronize()
    launch = functools.partial(execute, context, stream)
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
        least, most, seconds = config.timed_runs()
        until = start + seconds
        total = most if most == least else 0
        while len(times) < least or (time.perf_counter() < until and (most is None or len(times) < most)):
            n = TIMING_BATCH if most is None else min(TIMING_BATCH, most - len(times))
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


def _warm_up(context: trt.IExecutionContext, stream: cuda.Stream, warmup_ms: float) -> None:
    """Synchronized inferences for ``warmup_ms`` (at least one): the warm-up before each trial."""
    deadline = time.perf_counter() + warmup_ms / 1000
    while True:
        execute(context, stream)
        stream.synchronize()
        if time.perf_counter() >= deadline:
            break


def _per_layer_run(
    context: trt.IExecutionContext, stream: cuda.Stream, config: BuildConfig, progress: Progress, module=None
) -> tuple[dict, int]:
    """Per-layer times from an IProfiler over separate inferences (after the timed run: the profiler slows them)."""
    profiler = make_profiler(module)
    context.enqueue_emits_profile = False  # report after each synchronized inference, not inside enqueue
    context.profiler = profiler
    runs = min(PROFILE_RUNS, max(config.most_iterations, 1))
    for i in range(runs):
        execute(context, stream)
        stream.synchronize()
        profiler.next_inference()
        if not context.report_to_profiler():
            raise WorkbenchError(
                "TensorRT could not report per-layer times (report_to_profiler returned False): "
                "see the TensorRT log for the reason (a missing profiler or a stream capture "
                "in progress are the documented ones)."
            )
        if not progress.step("Per-layer profile", i + 1, runs):
            progress.check()
    return profiler.stats(), runs


def _inspect(engine: trt.ICudaEngine, context: trt.IExecutionContext, module) -> str:
    trt = module
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context  # resolves dynamic shapes to the ones profiled
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


def _join_layer_times(info_layers, stats: dict[str, dict], runs: int):
    """Inspector rows (in execution order) with the profiler's times, joined exactly as a trtexec import joins
    ``--exportLayerInfo`` with ``--exportProfile``; returns (layer table, notes on layers only one side has)."""
    import pandas as pd

    from ...results.profile import LayerProfile, join_profile

    table = pd.DataFrame(
        [
            {
                "name": name,
                "time_ms": t["time_ms"],
                "median_ms": t["median_ms"],
                "p90_ms": t["p90_ms"],
                "total_ms": t["time_ms"] * runs,
                "file_pct": np.nan,
            }
            for name, t in stats.items()
        ],
        columns=["name", "time_ms", "median_ms", "p90_ms", "total_ms", "file_pct"],
    )
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
