"""Timing statistics on synthetic samples with known answers: intervals, stability verdicts, significance."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.results.stats import (
    MAX_CV,
    bootstrap_medians,
    cv,
    difference,
    median_ci,
    robust_cv,
    stability,
)


def trials(median_ms=1.0, k=5, n=100, noise=0.02, seed=0, drift=0.0):
    """``k`` trials of ``n`` log-normal samples around ``median_ms`` (relative ``noise``); trial i is scaled by
    ``1 + drift * i``."""
    rng = np.random.default_rng(seed)
    return [median_ms * (1 + drift * i) * np.exp(rng.normal(0, noise, n)) for i in range(k)]


def test_median_interval_covers_the_true_median_and_narrows_with_samples():
    few = median_ci(trials(n=20))
    many = median_ci(trials(n=400))
    for interval in (few, many):
        assert interval.low <= 1.0 <= interval.high
        assert interval.low <= interval.value <= interval.high
    assert many.high - many.low < few.high - few.low


def test_interval_is_seeded():
    data = trials()
    assert median_ci(data) == median_ci(data)
    assert (bootstrap_medians(data, seed=1) != bootstrap_medians(data, seed=2)).any()


def test_trials_that_disagree_widen_the_interval():
    steady = median_ci(trials(k=5, n=100))
    drifting = median_ci(trials(k=5, n=100, drift=0.05))
    assert drifting.high - drifting.low > 3 * (steady.high - steady.low)


def test_cv_of_known_spread():
    data = np.array([1.0, 1.0, 1.0, 1.0]) * 2.0
    assert cv(data) == 0.0
    assert cv(trials(noise=0.10, n=5000, k=1)) == pytest.approx(0.10, rel=0.05)


def test_steady_samples_are_stable():
    verdict = stability(trials())
    assert verdict.verdict == "stable" and verdict.causes == ()


@pytest.mark.parametrize(
    "data, cause",
    [
        (trials(n=5), "few samples"),
        (trials(drift=0.05), "drift across trials"),
        ([np.r_[t[:90], np.full(10, 5.0)] for t in trials()], "outliers"),
        (trials(noise=0.5), "high variation"),
    ],
)
def test_unstable_samples_get_the_verdict_and_the_cause(data, cause):
    verdict = stability(data)
    assert verdict.verdict == "unstable"
    assert any(c.startswith(cause) for c in verdict.causes), verdict.causes


def test_drift_says_which_way():
    assert "rising trial after trial" in stability(trials(drift=0.05)).text()


def test_throttling_makes_a_run_unstable():
    verdict = stability(trials(), throttled=("thermal (hardware)",))
    assert verdict.verdict == "unstable" and verdict.causes == ("throttling (thermal (hardware))",)


def test_planted_ten_percent_slowdown_is_significant():
    base = trials(seed=1)
    slower = [t * 1.10 for t in trials(seed=2)]
    d = difference(base, slower)
    assert d.significant
    assert d.low < 1.10 < d.high and d.low > 1.05
    assert d.text().startswith("1.10× slower (")
    faster = difference(slower, base)
    assert faster.significant and faster.text().startswith("1.10× faster (")


def test_no_change_is_no_significant_difference():
    d = difference(trials(seed=1), trials(seed=2))
    assert not d.significant
    assert d.low <= 1.0 <= d.high
    assert d.text() == "no significant difference"


def test_a_tiny_change_beyond_the_interval_is_still_not_a_difference():
    # 0.5% slower with a very tight interval: real, but below the practical threshold
    d = difference(trials(noise=0.001, seed=1), [t * 1.005 for t in trials(noise=0.001, seed=2)])
    assert d.low > 1.0 and not d.significant


def test_noisy_runs_do_not_rank_a_small_difference():
    d = difference(trials(noise=0.3, n=30, seed=1), [t * 1.05 for t in trials(noise=0.3, n=30, seed=2)])
    assert not d.significant and d.text() == "no significant difference"


def test_flat_samples_are_one_trial():
    flat = trials(k=1)[0]
    assert median_ci(flat) == median_ci([flat])


def test_a_change_within_the_runs_own_trial_spread_is_not_ranked():
    # the baseline's trials agree; the candidate's drift by 28% and sit 10% lower: the interval may exclude 1, but
    # a run whose own trials disagree that much cannot rank a 10% change
    steady = trials(seed=1)
    drifting = [t * f for t, f in zip(trials(seed=2), (0.75, 0.85, 0.90, 0.95, 1.03))]
    d = difference(steady, drifting)
    assert d.noise > 0.25 and not d.significant
    assert difference(steady, [t * 0.5 for t in drifting]).significant  # twice as fast is beyond that spread


def test_conditions_warn_when_the_gpu_throttled_or_clocks_moved():
    from workbench.env import condition_warnings
    from workbench.results.run import ConditionsSnapshot

    calm = ConditionsSnapshot(cpu_mhz=2100.0, load_1m=0.5, gpu_sm_mhz=1980, gpu_temperature_c=40)
    assert condition_warnings(calm, calm, cpu_cores=4) == ()
    hot = ConditionsSnapshot(
        cpu_mhz=2100.0, load_1m=9.0, gpu_sm_mhz=1400, gpu_temperature_c=83, gpu_throttle=("thermal (hardware)",)
    )
    warnings = " | ".join(condition_warnings(calm, hot, cpu_cores=4))
    for expected in (
        "throttled (thermal (hardware))",
        "GPU SM clock changed from 1980 to 1400 MHz",
        "temperature rose from 40 to 83",
        "busy (load average 9.0 on 4 cores)",
    ):
        assert expected in warnings


def test_a_profile_keeps_its_trials_through_a_save(mlp_path, tmp_path):
    import pandas as pd

    import workbench as wb

    run = wb.profile(mlp_path, backend="onnxruntime", config=wb.BuildConfig(iterations=12, warmup_ms=0, trials=3))
    assert [t.samples for t in run.trials] == [12, 12, 12] and run.timing.trials == 3
    assert run.timing.ci_low_ms <= run.timing.median_ms <= run.timing.ci_high_ms
    assert run.timing.profiled_ms > 0 and run.conditions.before.cpu_model
    saved = run.save(tmp_path / "run")
    assert pd.read_csv(tmp_path / "run" / "latency.csv")["trial"].tolist() == [0] * 12 + [1] * 12 + [2] * 12
    loaded = wb.load_run(tmp_path / "run")
    assert loaded.trials == run.trials and loaded.timing == run.timing and loaded.conditions == run.conditions
    assert [len(t) for t in loaded.trial_samples] == [12, 12, 12] and saved.timing == run.timing


def test_one_hiccup_is_no_high_variation():
    """The quickstart's resnet_mini on this CPU: 150 samples near 0.44 ms and one of 4.4 ms (the kernel's heartbeat,
    a context switch) make the CV 66%, yet the samples are not far from their median: no "high variation", and one
    outlier in 150 is below the outlier rule's 1%."""
    rng = np.random.default_rng(3)
    data = [0.44 * np.exp(rng.normal(0, 0.03, 50)) for _ in range(3)]
    data[1][7] = 4.4
    assert cv(data) > 0.5 and robust_cv(data) < 0.05
    assert stability(data).stable
    spread = [t * np.exp(np.random.default_rng(4).normal(0, 0.5, 50)) for t in data]
    assert robust_cv(spread) > MAX_CV
    assert any(c.startswith("high variation (robust CV ") for c in stability(spread).causes)
