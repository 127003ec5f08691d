"""What the GPU itself recorded: CUPTI activity records of every kernel, memcpy and memset, attributed to the node
that launched each one.

CUPTI (NVIDIA's profiling interface, Python bindings ``cupti-python``) writes one activity record per kernel,
memcpy and memset with its start and end on the GPU, and one per CUDA runtime or driver API call with the host
thread and times of the call. Both carry a *correlation id*: an activity's id is that of the API call that launched
it. :class:`Recorder` collects those records (:class:`Trace`); :func:`attribute` gives each GPU activity to the host
time window (:class:`Window`) — an ONNX Runtime node's profiled execution on its thread — that holds its launch.

CUPTI and ONNX Runtime read different clocks (ONNX Runtime's profiler: the host's system clock; CUPTI: its own
timestamp). The recorder reads both side by side before and after recording (``clock_pairs``); :func:`attribute`
starts from that offset and then fits the shift that puts the most launches inside node windows (the middle of
the best plateau, within :data:`MAX_SHIFT_NS`), so an offset read a few microseconds off does not move launches
into the neighbouring node. The share of GPU time it could give to a node is returned with the result, and the
caller states it: nothing is attributed silently.

Only :class:`Recorder` needs CUPTI; the records and the attribution are plain Python, tested on the CPU with records
shaped as CUPTI writes them (``tests/data/cupti/``: a real trace recorded on an H100).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import WorkbenchError

#: The fitted clock shift is searched within this distance of the offset the clock pairs give.
MAX_SHIFT_NS = 1_000_000
#: Step of that search: finer than any launch a node makes (a few microseconds each).
SHIFT_STEP_NS = 1_000
#: At most this many launches are used to fit the shift.
FIT_LAUNCHES = 4000


@dataclass(frozen=True)
class GpuActivity:
    """One piece of GPU work as CUPTI recorded it: ``kind`` (``kernel``/``memcpy``/``memset``), the kernel's name
    (``memcpy HtoD``, ``memset`` for the others), start and end on CUPTI's clock (ns), the correlation id of the API
    call that launched it, its stream and device."""

    kind: str
    name: str
    start_ns: int
    end_ns: int
    correlation_id: int
    stream_id: int = 0
    device_id: int = 0

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@dataclass(frozen=True)
class ApiCall:
    """One CUDA runtime or driver API call: the host thread that made it, its start and end on CUPTI's clock (ns)
    and its correlation id (the GPU work it launched carries the same id)."""

    correlation_id: int
    thread_id: int
    start_ns: int
    end_ns: int
    name: str = ""


@dataclass(frozen=True)
class Trace:
    """The records of one recording. ``clock_pairs``: ``(cupti_ns, host_ns)`` read side by side (host = the
    system clock, ``time.time_ns``)."""

    activities: tuple[GpuActivity, ...] = ()
    api_calls: tuple[ApiCall, ...] = ()
    clock_pairs: tuple[tuple[int, int], ...] = ()

    @property
    def clock_offset_ns(self) -> int:
        """CUPTI time minus host time, from the clock pairs (their median); 0 without pairs."""
        if not self.clock_pairs:
            return 0
        return int(np.median([c - h for c, h in self.clock_pairs]))

    def steadied(self, cupti_ns: np.ndarray) -> np.ndarray:
        """CUPTI times with the clocks' drift against each other taken out (the offset interpolated between the
        pairs read before and after the recording, less its median): only a constant offset remains."""
        if len(self.clock_pairs) < 2:
            return cupti_ns
        pairs = sorted(self.clock_pairs)
        cupti = np.array([c for c, _ in pairs], dtype=np.float64)
        offsets = np.array([c - h for c, h in pairs], dtype=np.float64)
        drift = np.interp(cupti_ns.astype(np.float64), cupti, offsets) - self.clock_offset_ns
        return cupti_ns - drift.astype(np.int64)

    def to_dict(self) -> dict:
        return {
            "activities": [dataclasses.astuple(a) for a in self.activities],
            "api_calls": [dataclasses.astuple(a) for a in self.api_calls],
            "clock_pairs": [list(p) for p in self.clock_pairs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Trace:
        try:
            return cls(
                tuple(GpuActivity(*a) for a in d.get("activities", ())),
                tuple(ApiCall(*a) for a in d.get("api_calls", ())),
                tuple((int(c), int(h)) for c, h in d.get("clock_pairs", ())),
            )
        except (TypeError, ValueError) as e:
            raise WorkbenchError(f"A CUPTI trace file is damaged ({e}): record it again.") from None

    def save(self, path) -> None:
        from ..paths import atomic_write

        atomic_write(path, json.dumps(self.to_dict()))


@dataclass(frozen=True)
class Window:
    """A host time window a launch can belong to (an ONNX Runtime node's execution): its index in the caller's
    list, host thread and host start and end (system clock, ns)."""

    index: int
    thread_id: int
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class NodeGpu:
    """GPU work launched inside one window: summed duration (ns), how many activities, and ns per name."""

    ns: int = 0
    count: int = 0
    kernels: int = 0
    names: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Attribution:
    """Where the recorded GPU work went: per window index (:class:`NodeGpu`), the activities launched inside the
    runs (host windows of whole inferences) but in no node window, and how the clocks were aligned."""

    nodes: dict
    unattributed: tuple[GpuActivity, ...]
    in_runs: tuple[GpuActivity, ...]  # every activity launched inside one of the runs
    shift_ns: int  # host time = CUPTI time - shift
    matched_share: float  # share of the GPU time inside the runs that went to a node window
    span_ns: int = 0  # per run, first GPU start to last GPU end of the work it launched, summed over runs
    window_of: dict = field(default_factory=dict)  # correlation id -> index of the window it was given to
    busy_per_run_ns: tuple[int, ...] = ()  # each run's GPU busy time (union of its activities), in run order


def union_ns(activities) -> int:
    """Total time covered by the activities' intervals, overlaps counted once (concurrent kernels)."""
    spans = sorted((a.start_ns, a.end_ns) for a in activities)
    total, cur_start, cur_end = 0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def _fit_shift(launches: np.ndarray, starts: np.ndarray, ends: np.ndarray, guess: int) -> int:
    """The shift (CUPTI - host, ns) near ``guess`` that puts the most launch times inside windows: the middle of
    the widest best plateau (a launch sits anywhere inside its node's window, so a range of shifts fits equally)."""
    if not launches.size or not starts.size:
        return guess
    if launches.size > FIT_LAUNCHES:  # evenly spread: enough to place the plateau, bounded cost
        launches = launches[np.linspace(0, launches.size - 1, FIT_LAUNCHES).astype(np.int64)]
    order = np.argsort(starts)
    # inside some window <=> before the latest end among the windows started by then (nested windows included)
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    shifts = guess + np.arange(-MAX_SHIFT_NS, MAX_SHIFT_NS + 1, SHIFT_STEP_NS, dtype=np.int64)
    counts = np.empty(shifts.size, dtype=np.int64)
    for i, shift in enumerate(shifts):
        host = launches - shift
        idx = np.searchsorted(starts, host, side="right") - 1
        ok = idx >= 0
        counts[i] = int(np.count_nonzero(ok & (host < ends[np.clip(idx, 0, None)])))
    best = counts.max()
    at_best = np.flatnonzero(counts == best)
    # the plateau (consecutive best shifts) nearest the guess, then its middle
    runs = np.split(at_best, np.flatnonzero(np.diff(at_best) > 1) + 1)
    plateau = min(runs, key=lambda r: (-len(r), abs(int(shifts[r[len(r) // 2]]) - guess)))
    return int(shifts[plateau[len(plateau) // 2]])


def attribute(trace: Trace, windows: list[Window], runs: list[tuple[int, int]] | None = None) -> Attribution:
    """Give each GPU activity of ``trace`` to the window that holds its launch.

    An activity's launch is the API call with its correlation id (its start, on the launching thread). The launch
    is put on the host clock with the fitted shift (see the module's docstring) and given to the innermost window
    of the launching thread's node windows that holds it (a control-flow node's window holds its body's windows;
    the body's node launched it). When no window's thread is the launching thread (thread ids that do not
    match across the two recorders), windows of every thread are used. ``runs``: host windows of whole inferences;
    activities launched outside them are not counted (warm-up, input uploads); without ``runs`` all are.
    """
    calls = {}
    for call in trace.api_calls:
        if call.correlation_id not in calls or call.start_ns < calls[call.correlation_id].start_ns:
            calls[call.correlation_id] = call
    launched = [(a, calls[a.correlation_id]) for a in trace.activities if a.correlation_id in calls]
    starts = np.array([w.start_ns for w in windows], dtype=np.int64)
    ends = np.array([w.end_ns for w in windows], dtype=np.int64)
    launch_times = trace.steadied(np.array([c.start_ns for _, c in launched], dtype=np.int64))
    shift = _fit_shift(launch_times, starts, ends, trace.clock_offset_ns)

    by_thread = collections.defaultdict(list)
    for w in sorted(windows, key=lambda w: (w.start_ns, -w.end_ns)):
        by_thread[w.thread_id].append(w)
    everyone = sorted(windows, key=lambda w: (w.start_ns, -w.end_ns))
    index = {t: (ws, np.array([w.start_ns for w in ws], dtype=np.int64)) for t, ws in by_thread.items()}
    index[None] = (everyone, np.array([w.start_ns for w in everyone], dtype=np.int64))
    run_bounds = sorted(runs or [])
    run_starts = np.array([r[0] for r in run_bounds], dtype=np.int64)

    sums: dict[int, list] = {}
    window_of: dict[int, int] = {}
    unattributed, in_runs = [], []
    per_run = collections.defaultdict(list)
    for (activity, call), launch in zip(launched, launch_times.tolist()):
        host = launch - shift
        if run_bounds:
            r = int(np.searchsorted(run_starts, host, side="right")) - 1
            if r < 0 or host >= run_bounds[r][1]:
                continue
            per_run[r].append(activity)
        in_runs.append(activity)
        ws, ws_starts = index.get(call.thread_id) or index[None]
        window = _innermost(ws, ws_starts, host)
        if window is None:
            unattributed.append(activity)
            continue
        window_of[activity.correlation_id] = window.index
        entry = sums.setdefault(window.index, [0, 0, 0, collections.Counter()])
        entry[0] += activity.duration_ns
        entry[1] += 1
        entry[2] += activity.kind == "kernel"
        entry[3][activity.name] += activity.duration_ns
    nodes = {i: NodeGpu(ns, count, kernels, dict(names)) for i, (ns, count, kernels, names) in sums.items()}
    total = sum(a.duration_ns for a in in_runs)
    matched = 1.0 - sum(a.duration_ns for a in unattributed) / total if total else 0.0
    span = sum(max(a.end_ns for a in acts) - min(a.start_ns for a in acts) for acts in per_run.values())
    busy_per_run = tuple(union_ns(per_run[r]) for r in sorted(per_run))
    return Attribution(nodes, tuple(unattributed), tuple(in_runs), shift, matched, span, window_of, busy_per_run)


def gpu_time(activities, inferences: int, found: Attribution | None = None, clock_offset_ns: int = 0, span_ns: int = 0):
    """The run's :class:`~workbench.results.run.GpuTime` (per inference) from the activities of ``inferences``
    profiled inferences; with ``found`` (an :func:`attribute` result) also what went to layers, and the interval of
    the busy time from each inference's own (its relative width around the mean busy time)."""
    from ..results.run import GpuTime
    from ..results.stats import rerun_interval

    n = max(1, inferences)
    ms = 1e-6 / n
    activities = tuple(activities)
    busy = union_ns(activities) * ms
    low = high = None
    per_run = [ns * 1e-6 for ns in (found.busy_per_run_ns if found is not None else ())]
    if len(per_run) > 1 and min(per_run) > 0:
        spread = rerun_interval(per_run)
        low, high = busy * spread.low / spread.value, busy * spread.high / spread.value
    return GpuTime(
        busy_ms=busy,
        kernel_ms=sum(a.duration_ns for a in activities if a.kind == "kernel") * ms,
        copy_ms=sum(a.duration_ns for a in activities if a.kind != "kernel") * ms,
        kernels=sum(a.kind == "kernel" for a in activities) / n,
        span_ms=span_ns * ms,
        inferences=n,
        layers_ms=None if found is None else sum(g.ns for g in found.nodes.values()) * ms,
        unattributed_ms=None if found is None else union_ns(found.unattributed) * ms,
        matched_share=None if found is None else found.matched_share,
        clock_shift_us=None if found is None else (found.shift_ns - clock_offset_ns) / 1000,
        busy_low_ms=low,
        busy_high_ms=high,
    )


def cross_check_note(gpu, layers_ms: float) -> str:
    """One line setting CUPTI's record of the profiled inferences beside the layer times TensorRT's IProfiler
    reported for them (IProfiler times each layer between events, so its sum also holds the gaps inside a layer)."""
    ratio = f" ({layers_ms / gpu.busy_ms:.2f}× the GPU busy time)" if gpu.busy_ms > 0 else ""
    return (
        f"CUPTI cross-check: over the {gpu.inferences} profiled inferences the GPU was busy {gpu.busy_ms:.4g} ms per "
        f"inference ({gpu.kernels:.0f} kernels, {gpu.kernel_ms:.4g} ms of kernels); IProfiler's layers sum to "
        f"{layers_ms:.4g} ms{ratio}"
    )


def _innermost(windows: list[Window], starts: np.ndarray, t: int) -> Window | None:
    """The latest-starting window holding ``t`` (windows sorted by start; nested ones start later)."""
    i = int(np.searchsorted(starts, t, side="right")) - 1
    while i >= 0:
        w = windows[i]
        if w.start_ns <= t < w.end_ns:
            return w
        if t - w.start_ns > MAX_SHIFT_NS * 100:  # no enclosing window this far back
            return None
        i -= 1
    return None


# ---- recording (needs cupti-python and a GPU) --------------------------------------------------------------------


def unavailable() -> str:
    """Why CUPTI cannot record here ("" when it can be tried): the package is missing or does not load."""
    try:
        from cupti import cupti  # noqa: F401
    except ImportError as e:
        return f"cupti-python is not installed ({e}): pip install cupti-python (the gpu extra)"
    except OSError as e:  # libcupti missing or not loadable
        return f"CUPTI's library does not load ({e})"
    return ""


class Recorder:
    """Records GPU activity while inside ``with``: ``trace`` holds the records afterwards.

    Entering raises :class:`CuptiUnavailable` (one line: the cause) when CUPTI is not installed, the driver
    refuses (no permission to profile, another profiler attached) or an activity kind cannot be enabled; the
    caller says so in the run and keeps host times. One recording at a time per process.
    """

    _lock = threading.Lock()
    _registered = False
    _sink: list | None = None

    _KINDS = ("CONCURRENT_KERNEL", "MEMCPY", "MEMSET", "RUNTIME", "DRIVER")

    def __init__(self):
        self.trace = Trace()
        self.failed = ""  # why the records are incomplete ("" when they are not)
        self._records: list = []
        self._pairs: list = []

    def __enter__(self) -> Recorder:
        reason = unavailable()
        if reason:
            raise CuptiUnavailable(reason)
        from cupti import cupti

        if not Recorder._lock.acquire(blocking=False):
            raise CuptiUnavailable("another CUPTI recording is running in this process")
        enabled = []
        try:
            if not Recorder._registered:
                cupti.activity_register_callbacks(_buffer_requested, _buffer_completed)
                Recorder._registered = True
            Recorder._sink = self._records
            for name in self._KINDS:
                cupti.activity_enable(getattr(cupti.ActivityKind, name))
                enabled.append(name)
        except Exception as e:  # cupti.cuptiError: insufficient privileges, not compatible, ...
            self._disable(enabled)
            Recorder._sink = None
            Recorder._lock.release()
            raise CuptiUnavailable(f"CUPTI refused to record: {' '.join(str(e).split())}") from None
        self._enabled = enabled
        self._pair()
        return self

    def __exit__(self, *exc) -> None:
        """Flush and stop; never raises (what went wrong is in ``failed``, and the caller keeps host times)."""
        from cupti import cupti

        try:
            self._pair()
            cupti.activity_flush_all(1)  # forced: every buffer, also those of work still pending
        except Exception as e:  # cupti.cuptiError from a driver that stopped cooperating
            self.failed = f"CUPTI could not deliver its records: {' '.join(str(e).split())}"
        finally:
            self._disable(self._enabled)
            Recorder._sink = None
            Recorder._lock.release()
        self.failed = self.failed or next((r for r in self._records if isinstance(r, str)), "")
        activities = tuple(r for r in self._records if isinstance(r, GpuActivity))
        calls = tuple(r for r in self._records if isinstance(r, ApiCall))
        self.trace = Trace(activities, calls, tuple(self._pairs))

    def _pair(self) -> None:
        from cupti import cupti

        for _ in range(5):
            host0 = time.time_ns()
            gpu = int(cupti.get_timestamp())
            host1 = time.time_ns()
            self._pairs.append((gpu, (host0 + host1) // 2))

    @staticmethod
    def _disable(names) -> None:
        from cupti import cupti

        for name in names:
            try:
                cupti.activity_disable(getattr(cupti.ActivityKind, name))
            except Exception:  # disabling what failed to enable: nothing to undo
                pass


class CuptiUnavailable(WorkbenchError):
    """CUPTI cannot record here (the message is the cause, one line)."""


def _buffer_requested():
    return 8 * 1024 * 1024, 0


def _buffer_completed(activities) -> None:
    """CUPTI's callback (its own thread): copy each record into plain values while the buffer is valid."""
    from cupti import cupti

    sink = Recorder._sink
    if sink is None:
        return
    try:
        _copy_records(cupti, activities, sink)
    except Exception as e:  # an exception must not reach CUPTI's thread: the recording says it is incomplete
        sink.append(f"CUPTI's records could not be read: {type(e).__name__}: {e}")


def _copy_records(cupti, activities, sink: list) -> None:
    kinds = cupti.ActivityKind
    for a in activities:
        kind = a.kind
        if kind in (kinds.CONCURRENT_KERNEL, kinds.KERNEL):
            sink.append(GpuActivity("kernel", str(a.name), a.start, a.end, a.correlation_id, a.stream_id, a.device_id))
        elif kind == kinds.MEMCPY:
            direction = cupti.ActivityMemcpyKind(a.copy_kind).name
            sink.append(
                GpuActivity("memcpy", f"memcpy {direction}", a.start, a.end, a.correlation_id, a.stream_id, a.device_id)
            )
        elif kind == kinds.MEMSET:
            sink.append(GpuActivity("memset", "memset", a.start, a.end, a.correlation_id, a.stream_id, a.device_id))
        elif kind in (kinds.RUNTIME, kinds.DRIVER):
            sink.append(ApiCall(a.correlation_id, a.thread_id, a.start, a.end, str(a.cbid)))
