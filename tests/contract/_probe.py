"""Run under one version of the real TensorRT bindings (with stub libraries), or under the real TensorRT-RTX library
(``PROBE_MODULE=tensorrt_rtx``); prints one JSON report.

Started by the contract tests in a subprocess whose LD_LIBRARY_PATH and PYTHONPATH select the version. It calls the
backend's TensorRT subclasses through the bindings' own base-class methods, which dispatch through C++ virtual calls
to the Python overrides, exactly as TensorRT calls them during a build or a profiled run.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time

from workbench.backends import choose_backend, get_backend
from workbench.backends import tensorrt as backend
from workbench.errors import WorkbenchError
from workbench.progress import Progress

MODULE = os.environ.get("PROBE_MODULE", "tensorrt")
trt = importlib.import_module(MODULE)


def api_surface() -> dict[str, list[str]]:
    """Module-level names, each with its members when it is a class (the enums' members included)."""
    return {name: sorted(dir(getattr(trt, name))) if isinstance(getattr(trt, name), type) else [] for name in dir(trt)}


def profiler_report() -> dict:
    profiler = backend.make_profiler(trt)
    for inference in range(3):
        profiler.next_inference()
        trt.IProfiler.report_layer_time(profiler, "conv1 + relu1", 1.0 + inference)
        trt.IProfiler.report_layer_time(profiler, "fc", 0.5)
        trt.IProfiler.report_layer_time(profiler, "fc", 0.25)  # a name repeated within one inference
    return {"is_iprofiler": isinstance(profiler, trt.IProfiler), "stats": profiler.stats()}


def monitor_report() -> dict:
    events: list[list] = []
    progress = Progress(lambda phase, step, total: events.append([phase, step, total]))
    monitor = backend.make_progress_monitor(progress, trt)
    trt.IProgressMonitor.phase_start(monitor, "Building engine", None, 3)
    trt.IProgressMonitor.phase_start(monitor, "Tactic search", "Building engine", 2)
    first = trt.IProgressMonitor.step_complete(monitor, "Tactic search", 0)
    progress.cancel()
    after_cancel = trt.IProgressMonitor.step_complete(monitor, "Tactic search", 1)
    trt.IProgressMonitor.phase_finish(monitor, "Tactic search")
    trt.IProgressMonitor.phase_finish(monitor, "Building engine")

    def broken_callback(phase, step, total):
        raise RuntimeError("the progress widget was closed")

    broken = backend.make_progress_monitor(Progress(broken_callback), trt)
    trt.IProgressMonitor.phase_start(broken, "Building engine", None, 1)
    broken_step = trt.IProgressMonitor.step_complete(broken, "Building engine", 0)
    return {
        "is_monitor": isinstance(monitor, trt.IProgressMonitor),
        "events": events,
        "first_step": first,
        "step_after_cancel": after_cancel,
        "cancelled": monitor.cancelled,
        "phases": monitor.phases,
        "broken_step": broken_step,
        "broken_failure": broken.failure,
    }


def monitor_threads_report() -> dict:
    """TensorRT calls the monitor from several internal threads at once; the Progress callback sees one at a time."""
    inside, overlaps, calls = [0], [0], [0]

    def callback(phase, step, total):
        inside[0] += 1
        overlaps[0] += inside[0] > 1
        time.sleep(0.0005)  # gives up the GIL: another thread gets in here unless the monitor serializes calls
        calls[0] += 1
        inside[0] -= 1

    monitor = backend.make_progress_monitor(Progress(callback), trt)
    trt.IProgressMonitor.phase_start(monitor, "Tactic search", None, 160)

    def worker(first: int) -> None:
        for step in range(first, 160, 8):
            trt.IProgressMonitor.step_complete(monitor, "Tactic search", step)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"calls": calls[0], "overlaps": overlaps[0]}


def logger_report() -> dict:
    logger = backend.make_logger(trt=trt)
    for severity, message in (
        (trt.ILogger.Severity.VERBOSE, "tactic chatter"),
        (trt.ILogger.Severity.INFO, "some info"),
        (trt.ILogger.Severity.WARNING, "a warning"),
        (trt.ILogger.Severity.ERROR, "Network has dynamic inputs but no profile"),
    ):
        trt.ILogger.log(logger, severity, message)
    return {"is_ilogger": isinstance(logger, trt.ILogger), "lines": logger.lines, "errors": logger.errors()}


def availability_report() -> dict:
    if MODULE == "tensorrt_rtx":
        rtx = get_backend("tensorrt-rtx")
        ok, reason = rtx.available()
        try:
            choose_backend("tensorrt-rtx")
            named_error = None
        except WorkbenchError as e:
            named_error = str(e)
        return {
            "can_compile": rtx.can_compile(),
            "available": ok,
            "reason": reason,
            "named_error": named_error,
            "auto_backend": choose_backend("auto")[0].name,
        }
    try:
        trt.Builder(trt.Logger())
        builder_error = None
    except Exception as e:
        builder_error = f"{type(e).__name__}: {e}"
    ok, reason = get_backend("tensorrt").available()
    chosen, why = choose_backend("auto")
    try:
        choose_backend("tensorrt")
        named_error = None
    except WorkbenchError as e:
        named_error = str(e)
    return {
        "builder_error": builder_error,
        "available": ok,
        "reason": reason,
        "auto_backend": chosen.name,
        "auto_why": why,
        "named_error": named_error,
    }


def enum_members() -> dict[str, list[str]]:
    return {enum: sorted(getattr(trt, enum).__members__) for enum in ("DataType", "TensorFormat", "LayerType")}


if __name__ == "__main__":
    json.dump(
        {
            "version": trt.__version__,
            "module": trt.__file__,
            "api": api_surface(),
            "profiler": profiler_report(),
            "monitor": monitor_report(),
            "monitor_threads": monitor_threads_report(),
            "logger": logger_report(),
            "availability": availability_report(),
            "enums": enum_members(),
        },
        sys.stdout,
    )
