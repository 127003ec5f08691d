"""The classes TensorRT calls back into: a logger, a per-layer profiler and a build progress monitor.

They subclass the edition's own base classes (``trt.ILogger``, ``trt.IProfiler``, ``trt.IProgressMonitor``), so
they are made on first use for the module given (importing workbench never imports tensorrt); without a module,
``tensorrt``. The logger can also keep the build report a DETAILED, VERBOSE build writes (the engine's ``Layers:``
block and the memory totals; see :mod:`workbench.results.buildlog`) whatever its severity.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from ...progress import Progress
from ...results.buildlog import is_report_message
from .library import load

if TYPE_CHECKING:
    import tensorrt as trt  # noqa: F401  (the contract tests scan modules that import tensorrt)


@functools.cache
def _callback_classes(trt):
    class Logger(trt.ILogger):  # type: ignore[name-defined]  # the edition's own base class
        """Keeps TensorRT's messages at ``min_severity`` or worse: the build log and the reasons for failures;
        with ``report=True`` also the build report's messages (``.report``) at any severity."""

        def __init__(self, min_severity=trt.ILogger.Severity.WARNING, report: bool = False):
            trt.ILogger.__init__(self)
            self.min_severity = int(min_severity)
            self.keep_report = report
            self.lines: list[tuple[str, str]] = []
            self.report: list[str] = []
            self._lock = threading.Lock()

        def log(self, severity, msg):
            # Called from TensorRT's threads; an exception escaping here would abort the process.
            try:
                if int(severity) <= self.min_severity:
                    with self._lock:
                        self.lines.append((severity.name, str(msg)))
                if self.keep_report and is_report_message(str(msg)):
                    with self._lock:
                        self.report.append(str(msg))
            except Exception:
                pass

        def errors(self) -> list[str]:
            return [m for s, m in self.lines if s in ("INTERNAL_ERROR", "ERROR")]

        def text(self) -> str:
            return "\n".join(f"[{s}] {m}" for s, m in self.lines)

    class LayerProfiler(trt.IProfiler):  # type: ignore[name-defined]  # the edition's own base class
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
            """Layer name -> mean, median and 90th-percentile milliseconds and the number of inferences they
            cover."""
            return {
                name: {
                    "time_ms": float(np.mean(t)),
                    "median_ms": float(np.median(t)),
                    "p90_ms": float(np.percentile(t, 90)),
                    "calls": len(t),
                }
                for name, t in self.times.items()
            }

    class BuildMonitor(trt.IProgressMonitor):  # type: ignore[name-defined]  # the edition's own base class
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


def make_logger(min_severity=None, trt=None, report: bool = False):
    """A ``trt.ILogger`` that keeps TensorRT's warnings and errors (``.lines``, ``.errors()``, ``.text()``);
    ``report=True`` also keeps the build report (``.report``)."""
    logger_class = _callback_classes(trt or load())[0]
    return logger_class(report=report) if min_severity is None else logger_class(min_severity, report=report)


def make_profiler(trt=None):
    """A ``trt.IProfiler`` collecting per-layer times (``.times``, ``.stats()``)."""
    return _callback_classes(trt or load())[1]()


def make_progress_monitor(progress: Progress, trt=None):
    """A ``trt.IProgressMonitor`` feeding ``progress`` (``.cancelled`` once the user cancelled)."""
    return _callback_classes(trt or load())[2](progress)
