"""Intervals that hold on a rerun: the rerun interval against trial-to-trial variation, the contended-host label,
paired (interleaved) differences, and compare's warnings for runs timed under other conditions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from workbench.env import cpu_time_waited, waited_share
from workbench.results.stats import MAX_CPU_WAIT, difference, median_ci, paired_difference, rerun_interval, stability


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
