"""The timing loop every backend uses: ``trials`` × (warm-up, then a timed loop), with the machine's conditions read
before and after, summarised into the Run's ``latency``, ``trials``, ``timing`` and ``conditions``.

A backend passes one function that runs one trial's timed loop and returns its per-inference milliseconds (and the
loop's wall time); the warm-up and the repetition live here, so ONNX Runtime and TensorRT repeat the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import AUTO_ITERATIONS, AUTO_TRIAL_S, BuildConfig
from ..env import condition_warnings, conditions, cpu_time_waited, gpu_clocks, waited_share
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

    def timing(self, profiled_ms: float | None = None, gpu_time=None) -> Timing:
        """The Timing of these trials (``gpu_time``: what CUPTI recorded of the same engine, to judge whether the
        host paced the inferences)."""
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
            gpu_sm_mhz=tuple(t.gpu_sm_mhz for t in self.trials if t.gpu_sm_mhz is not None),
            gpu_time=gpu_time,
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


def timing_note(config: BuildConfig, trials, profile_runs: int | None = None) -> str:
    """What the timed loop ran when the count adapted to a slow model (``iterations`` not given and some trial
    stopped at :data:`~workbench.config.AUTO_TRIAL_S` before the most), else "": ``trials`` are the run's
    :class:`~workbench.results.run.TrialStats`; ``profile_runs`` the per-layer pass's inferences."""
    counts = [t.samples for t in trials]
    if config.iterations is not None or config.duration_s or not counts or min(counts) >= AUTO_ITERATIONS[1]:
        return ""
    shown = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
    each = sorted(t.p50_ms for t in trials)[len(trials) // 2]
    per_layer = f", the per-layer table from {profile_runs}" if profile_runs else ""
    return (
        f"timed {len(counts)} trial{'s' if len(counts) != 1 else ''} x {shown} inferences ({_duration(each)} each"
        f"{per_layer}): a trial stops once it has run {AUTO_TRIAL_S:g} s and at least {AUTO_ITERATIONS[0]} "
        f"inferences, at most {AUTO_ITERATIONS[1]}, when no count is given; --iterations N times exactly N"
    )


def _duration(ms: float) -> str:
    return f"{ms / 1000:.3g} s" if ms >= 1000 else f"{ms:.3g} ms"


def timed_loop(
    infer: Callable[[], object], config: BuildConfig, progress: Progress, label: str = "Timed run"
) -> tuple[list[float], float]:
    """Time runs of ``infer`` (host clock around each call); returns per-run milliseconds and the loop's wall time.

    How many: exactly ``iterations`` when given without ``duration_s``; at least ``iterations`` for at least
    ``duration_s`` seconds when a duration is given (trtexec); without ``iterations`` (the default) between
    :data:`~workbench.config.AUTO_ITERATIONS` runs, stopping once the loop has run
    :data:`~workbench.config.AUTO_TRIAL_S` seconds (a slow model: a few runs, not minutes).

    Two clock reads and an append per inference, nothing else: progress is reported (and a cancel noticed) every
    :data:`REPORT_S` seconds, not every inference, so the loop costs well under a microsecond per inference
    (``benchmarks/bench_timing_overhead.py``)."""
    times: list[float] = []
    append = times.append
    clock = time.perf_counter
    least, most, seconds = config.timed_runs()
    total = most if most == least else 0  # an adaptive count has no known total
    start = t1 = clock()
    end = start + seconds
    report = start + REPORT_S
    while len(times) < least or (t1 < end and (most is None or len(times) < most)):
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


def wait_between_trials(seconds: float, progress: Progress) -> None:
    """Sleep ``seconds`` (``BuildConfig.trial_gap_s``), reporting progress and noticing a cancel every
    :data:`REPORT_S` seconds."""
    end = time.perf_counter() + seconds
    while (left := end - time.perf_counter()) > 0:
        if not progress.step("Waiting between trials", int(seconds - left), int(seconds)):
            progress.check()
        time.sleep(min(REPORT_S, left))


def run_trials(
    warm: Callable[[], object],
    trial: Callable[[str], tuple[list[float], float]],
    config: BuildConfig,
    progress: Progress,
    gpu_index: int | None = None,
) -> TimedTrials:
    """``config.trials`` times: ``warm()`` (the warm-up), then ``trial(label)`` (one timed loop → per-inference ms
    and wall seconds). Conditions are read after the first warm-up (clocks have ramped up) and after the last
    trial; ``gpu_index`` adds NVML's readings of that GPU, and each trial's SM and memory clocks as it ended. Each
    trial records how much of its runnable time the process's threads waited for a CPU (the scheduler's
    accounting): a contended host, named by the verdict. ``config.trial_gap_s`` seconds pass between trials."""
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
        if k and config.trial_gap_s:
            wait_between_trials(config.trial_gap_s, progress)
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
            waited = waited_share(scheduled, cpu_time_waited())
            trials[i].append(TrialStats.from_times(samples, seconds, waited, gpu_clocks(gpu_index)))
    after = ConditionsSnapshot(**conditions(gpu_index))
    measured = Conditions(before, after, condition_warnings(before, after))
    return [TimedTrials(tuple(t), tuple(s), measured, w) for t, s, w in zip(times, trials, wall)]
