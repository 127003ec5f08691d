"""Intervals that hold on a rerun: the rerun interval against trial-to-trial variation, the contended-host label,
paired (interleaved) differences, and compare's warnings for runs timed under other conditions."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import pytest

from workbench.backends.timing import run_trials
from workbench.config import BuildConfig
from workbench.env import cpu_time_waited, waited_share
from workbench.errors import Cancelled, WorkbenchError
from workbench.progress import Progress
from workbench.results.run import GpuTime, Timing
from workbench.results.stats import (
    MAX_CPU_WAIT,
    HOST_RERUN_FACTOR,
    MAX_GPU_IDLE,
    Interval,
    difference,
    median_ci,
    paired_difference,
    rerun_interval,
    stability,
)


def profile_like(rng, k=3, n=100, state=0.03, noise=0.02, median_ms=1.0):
    """``k`` trials of a profile on a machine whose state moves from trial to trial (a random factor of relative
    spread ``state`` per trial, as back-to-back trials and reruns minutes later see), ``n`` samples each."""
    return [median_ms * np.exp(rng.normal(0, state)) * np.exp(rng.normal(0, noise, n)) for _ in range(k)]


def test_rerun_interval_holds_where_the_session_interval_does_not():
    rng = np.random.default_rng(7)
    runs = [profile_like(rng) for _ in range(40)]
    medians = [float(np.median(np.concatenate(r))) for r in runs]

    def coverage(interval):
        intervals = [interval(r) for r in runs]
        pairs = list(itertools.permutations(range(len(runs)), 2))
        return sum(intervals[i].low <= medians[j] <= intervals[i].high for i, j in pairs) / len(pairs)

    assert coverage(rerun_interval) >= 0.90
    assert coverage(median_ci) < 0.75  # the session's own interval: too narrow for a rerun


def test_rerun_interval_of_steady_trials_stays_narrow():
    steady = profile_like(np.random.default_rng(1), k=5, state=0.0, noise=0.01)
    interval = rerun_interval(steady)
    assert interval.low < 1.0 < interval.high and interval.half_width < 0.01


def test_a_contended_host_is_named_and_a_calm_one_is_not():
    data = profile_like(np.random.default_rng(2), state=0.0)
    assert stability(data, cpu_wait=0.02).stable
    busy = stability(data, cpu_wait=0.35)
    assert not busy.stable
    assert busy.causes == (
        "host contended (the timing threads waited for a CPU 35% of the time: other processes shared the cores, "
        "and a rerun under other load will measure other times)",
    )
    assert MAX_CPU_WAIT == 0.10


def test_a_single_trial_says_a_rerun_may_differ():
    verdict = stability(profile_like(np.random.default_rng(3), k=1, state=0.0))
    assert [c.split(" (")[0] for c in verdict.causes] == ["one trial"]


def test_waited_share_is_the_waiting_part_of_runnable_time():
    assert waited_share((1_000, 0), (4_000, 1_000)) == 0.25
    assert waited_share(None, (4_000, 1_000)) is None
    before = cpu_time_waited()
    sum(i * i for i in range(200_000))  # run on a CPU for a while
    after = cpu_time_waited()
    if before is None:  # a kernel without scheduler statistics: nothing to read, said as None
        assert after is None
    else:
        assert after[0] > before[0] and 0.0 <= waited_share(before, after) <= 1.0


def test_interleaved_rounds_rank_a_change_that_back_to_back_trials_drown():
    rng = np.random.default_rng(4)
    states = rng.uniform(0.7, 1.5, 6)  # the machine's state in each round, shared by both variants' trials
    a = [s * np.exp(rng.normal(0, 0.01, 200)) for s in states]
    b = [0.9 * s * np.exp(rng.normal(0, 0.01, 200)) for s in states]
    paired = paired_difference(a, b)
    assert paired.significant and 0.88 < paired.ratio < 0.92
    assert paired.text().startswith("1.11× faster (")
    assert not difference(a, b).significant  # unpaired, the drift between rounds hides it
    same = paired_difference(a, [s * np.exp(rng.normal(0, 0.01, 200)) for s in states])
    assert not same.significant and same.text() == "no significant difference"


def test_paired_difference_needs_rounds():
    with pytest.raises(ValueError, match="same number of trials"):
        paired_difference([[1.0, 1.1]], [[1.0, 1.1]])


def test_a_host_paced_gpu_run_is_named_with_its_stable_gpu_busy_time():
    # transformer_encoder b8 on the H100: 0.12 ms of kernels in a 0.45 ms inference; the end-to-end time moved
    # 0.62 -> 0.41 -> 0.64 ms between calls while the GPU busy time repeated to 0.2%
    data = profile_like(np.random.default_rng(4), k=5, state=0.0, noise=0.01, median_ms=0.5)
    busy = Interval(0.1222, 0.1219, 0.1225)
    paced = stability(data, gpu_busy=busy)
    assert paced.causes == (
        "host-paced (the GPU is idle 76% of each inference: the end-to-end time follows the host CPU launching "
        "kernels, which a rerun minutes later may not match; GPU busy time is the stable figure: 0.1222 ms "
        "(0.1219–0.1225))",
    )
    # a GPU-bound run (ResNet-50 b32: busy 5.56 of 6.0 ms) is not host-paced
    assert stability(data, gpu_busy=Interval(0.45, 0.449, 0.451)).stable
    assert MAX_GPU_IDLE == 0.5


def test_gpu_clocks_that_moved_between_trials_are_named():
    data = profile_like(np.random.default_rng(5), k=3, state=0.0)
    assert stability(data, gpu_sm_mhz=(1980, 1980, 1965)).stable  # NVML's boost steps are not a change
    moved = stability(data, gpu_sm_mhz=(1980, 1755, 1980))
    assert moved.causes == (
        "GPU clocks moved (SM 1755–1980 MHz across trials: the GPU ran at another speed, and a rerun at either "
        "clock measures another time)",
    )


def test_the_timing_of_a_gpu_run_reads_the_trials_clocks_and_cuptis_busy_time():
    trials = profile_like(np.random.default_rng(6), k=3, state=0.0, median_ms=0.5)
    gpu = GpuTime(busy_ms=0.1, kernel_ms=0.1, copy_ms=0.0, kernels=13, span_ms=0.12, inferences=20,
                  busy_low_ms=0.099, busy_high_ms=0.101)  # fmt: skip
    timing = Timing.from_trials(trials, gpu_sm_mhz=(1980, 1980, 1980), gpu_time=gpu)
    assert timing.verdict == "unstable" and timing.causes[0].startswith("host-paced (the GPU is idle 80% ")
    assert timing.causes[0].endswith("0.1 ms (0.099–0.101))")
    assert Timing.from_trials(trials).verdict == "stable"  # the CPU, and runs without CUPTI: unchanged


def test_a_gpu_runs_interval_lets_the_host_part_move_as_it_does_between_runs():
    # resnet_mini b256 on the H100, round 0: trials within 0.7% of each other, GPU busy 1.4274 ms of 1.6234 ms; the
    # rerun two minutes later measured 1.5616 ms (host part 0.196 -> 0.139 ms), outside the trials' interval
    rng = np.random.default_rng(7)
    trials = [1.6234 * np.exp(rng.normal(0, 0.002, 200)) for _ in range(5)]
    gpu = GpuTime(busy_ms=1.4274, kernel_ms=1.40, copy_ms=0.02, kernels=40, span_ms=1.43, inferences=20,
                  busy_low_ms=1.4270, busy_high_ms=1.4279)  # fmt: skip
    sampled = Timing.from_trials(trials)
    timing = Timing.from_trials(trials, gpu_time=gpu)
    assert not sampled.ci_low_ms <= 1.5616 <= sampled.ci_high_ms  # the trials alone cannot foresee it
    host = timing.median_ms - 1.4274
    assert timing.ci_low_ms == pytest.approx(1.4270 + host / HOST_RERUN_FACTOR)
    assert timing.ci_high_ms == pytest.approx(1.4279 + host * HOST_RERUN_FACTOR)
    assert timing.ci_low_ms <= 1.5616 <= timing.ci_high_ms
    assert timing.verdict == "stable" and timing.median_ms == sampled.median_ms  # the allowance is no noise
    # all GPU work: nothing to allow for; a run whose trials disagree more keeps its wider interval
    assert Timing.from_trials(trials, gpu_time=replace(gpu, busy_ms=1.7, busy_low_ms=1.7, busy_high_ms=1.7)) == sampled
    drifting = [t * f for t, f in zip(trials, (0.8, 1.0, 1.2, 1.0, 0.9))]
    assert Timing.from_trials(drifting, gpu_time=gpu).ci_high_ms == Timing.from_trials(drifting).ci_high_ms


def test_trials_are_spread_by_the_gap_and_the_gap_is_no_part_of_the_engine():
    starts = []

    def trial(label):
        starts.append(time.perf_counter())
        return [1.0] * 10, 0.01

    config = BuildConfig(trials=3, trial_gap_s=0.3)
    timed = run_trials(lambda: None, trial, config, Progress())
    assert len(timed.trials) == 3 and np.diff(starts).min() >= 0.3
    assert all(t.gpu_sm_mhz is None for t in timed.trials)  # no GPU: no clocks
    assert config.key() == config.replace(trial_gap_s=0.0).key()
    with pytest.raises(WorkbenchError, match="gap between trials"):
        BuildConfig(trial_gap_s=-1)


def test_a_cancel_during_the_gap_stops_the_trials():
    progress = Progress()
    calls = []

    def trial(label):
        calls.append(label)
        progress.cancel()  # asked while the next gap runs
        return [1.0] * 10, 0.01

    started = time.perf_counter()
    with pytest.raises(Cancelled):
        run_trials(lambda: None, trial, BuildConfig(trials=3, trial_gap_s=30), progress)
    assert len(calls) == 1 and time.perf_counter() - started < 2
