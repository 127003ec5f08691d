"""The timing loop every backend uses: ``trials`` × (warm-up, then a timed loop), with the machine's conditions read
before and after, summarised into the Run's ``latency``, ``trials``, ``timing`` and ``conditions``.

A backend passes one function that runs one trial's timed loop and returns its per-inference milliseconds (and the
loop's wall time); the warm-up and the repetition live here, so ONNX Runtime and TensorRT repeat the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import BuildConfig
from ..env import condition_warnings, conditions, cpu_time_waited, waited_share
from ..progress import Progress
from ..results.run import Conditions, ConditionsSnapshot, LatencyStats, Timing, TrialStats

#: Seconds between progress reports inside a timed loop.
REPORT_S = 0.1


@dataclass(frozen=True)
class TimedTrials:
    """What :func:`run_trials` measured: the samples of every trial, in order, and their summaries."""

    times_ms: tuple[float, ...]
    trials: tuple[TrialStats, ...]
    conditions: Conditions
    wall_s: float

    def latency(self, batch: int = 1) -> LatencyStats:
        return LatencyStats.from_times(self.times_ms, batch=batch, wall_s=self.wall_s)

    def timing(self, profiled_ms: float | None = None) -> Timing:
        per_trial, start = [], 0
        for t in self.trials:
            per_trial.append(self.times_ms[start : start + t.samples])
            start += t.samples
        waits = [t.cpu_wait for t in self.trials if t.cpu_wait is not None]
        return Timing.from_trials(
            per_trial,
            throttled=self.conditions.throttled,
            profiled_ms=profiled_ms,
            cpu_wait=max(waits) if waits else None,
        )


def warm_up(infer: Callable[[], object], warmup_ms: float, max_runs: int | None = None) -> int:
    """Run ``infer`` for ``warmup_ms`` (at least once, at most ``max_runs`` times); returns how many times it ran."""
    deadline = time.perf_counter() + warmup_ms / 1000
    infer()
    runs = 1
    while time.perf_counter() < deadline and (max_runs is None or runs < max_runs):
        infer()
        runs += 1
    return runs


def timed_loop(
    infer: Callable[[], object], config: BuildConfig, progress: Progress, label: str = "Timed run"
) -> tuple[list[float], float]:
    """Time at least ``iterations`` runs of ``infer`` for at least ``duration_s`` seconds (host clock around each
    call); returns per-run milliseconds and the loop's wall time.

    Two clock reads and an append per inference, nothing else: progress is reported (and a cancel noticed) every
    :data:`REPORT_S` seconds, not every inference, so the loop costs well under a microsecond per inference
    (``benchmarks/bench_timing_overhead.py``)."""
    times: list[float] = []
    append = times.append
    clock = time.perf_counter
    total = config.iterations if not config.duration_s else 0
    start = t1 = clock()
    end = start + config.duration_s
    report = start + REPORT_S
    iterations = config.iterations
    while len(times) < iterations or t1 < end:
        t0 = clock()
        infer()
        t1 = clock()
        append((t1 - t0) * 1000)
        if t1 >= report:
            report = t1 + REPORT_S
            if not progress.step(label, len(times), total):
                progress.check()
    wall = clock() - start
    if not progress.step(label, len(times), total):
        progress.check()
    return times, wall


def run_trials(
    warm: Callable[[], object],
    trial: Callable[[str], tuple[list[float], float]],
    config: BuildConfig,
    progress: Progress,
    gpu_index: int | None = None,
) -> TimedTrials:
    """``config.trials`` times: ``warm()`` (the warm-up), then ``trial(label)`` (one timed loop → per-inference ms
    and wall seconds). Conditions are read after the first warm-up (clocks have ramped up) and after the last
    trial; ``gpu_index`` adds NVML's readings of that GPU. Each trial records how much of its runnable time the
    process's threads waited for a CPU (the scheduler's accounting): a contended host, named by the verdict."""
    return alternate_trials([(warm, trial)], config, progress, gpu_index)[0]


def alternate_trials(
    timers: list[tuple[Callable[[], object], Callable[[str], tuple[list[float], float]]]],
    config: BuildConfig,
    progress: Progress,
    gpu_index: int | None = None,
) -> list[TimedTrials]:
    """:func:`run_trials` of several engines in rounds: round k times trial k of every ``(warm, trial)`` in turn,
    so that every engine sees the machine as it is at that moment (a fair A/B: drift and neighbours' load fall on
    all of them alike). One :class:`TimedTrials` per timer, with the conditions of the whole session."""
    times: list[list[float]] = [[] for _ in timers]
    trials: list[list[TrialStats]] = [[] for _ in timers]
    wall = [0.0 for _ in timers]
    before = None
    for k in range(config.trials):
        for i, (warm, trial) in enumerate(timers):
            warm()
            if before is None:
                before = ConditionsSnapshot(**conditions(gpu_index))
            label = "Timed run" if config.trials == 1 else f"Timed run, trial {k + 1}/{config.trials}"
            if len(timers) > 1:
                label += f", engine {i + 1}/{len(timers)}"
            scheduled = cpu_time_waited()
            samples, seconds = trial(label)
            times[i] += samples
            wall[i] += seconds
            trials[i].append(TrialStats.from_times(samples, seconds, waited_share(scheduled, cpu_time_waited())))
    after = ConditionsSnapshot(**conditions(gpu_index))
    measured = Conditions(before, after, condition_warnings(before, after))
    return [TimedTrials(tuple(t), tuple(s), measured, w) for t, s, w in zip(times, trials, wall)]
