"""Statistics of timings: a median with its bootstrap confidence interval, the coefficient of variation, a
stability verdict with its likely cause, and the ratio of two runs with its interval (significant or not).

Pure functions over numbers (numpy only); the Run, comparisons, reports and the panel all read them from here.

The unit of repetition is the *trial*: one warm-up followed by one timed loop. Samples inside a trial are not
independent of each other (they share the trial's clocks, caches and neighbours), so intervals come from a
two-level bootstrap: resample the trials, then the samples inside each resampled trial, and take the median of
what was drawn. With one trial this is the ordinary bootstrap of the median; with several, a run whose trials
disagree (drift, throttling) gets a wide interval, as it should.

The interval a Run reports is a *rerun interval* (:func:`rerun_interval`): where the median of the same profile,
run again, should fall. A confidence interval of this session's median alone is too narrow for that: trials timed
back to back share the machine's state, and a rerun minutes later does not (measured by
``benchmarks/interval_coverage.py``). So the rerun interval is the wider of (a) the session's bootstrap interval
widened by √2 (the rerun has sampling noise of its own) and (b) a Student-t interval from the spread of the trial
medians (a random effect per trial, again for two runs). What no interval can foresee, a machine whose load
changes between the runs, is measured instead (the share of time the timing threads waited for a CPU, per trial)
and named by :func:`stability` as the reason the interval cannot be promised.

All randomness is seeded: the same samples always give the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
#: Differences smaller than this (a ratio within 1 ± 1%) are "no significant difference" even when the interval
#: excludes 1: below it, clocks and neighbours move timings more than any change a user makes. Runs whose trials
#: disagree more raise this floor to their own trial-to-trial spread (:func:`difference`).
PRACTICAL_THRESHOLD = 0.01
#: Stability limits (see :func:`stability`).
MIN_SAMPLES_PER_TRIAL = 10
MAX_TRIAL_SPREAD = 0.05  # trial medians more than 5% apart: drift
MAX_CI_HALF_WIDTH = 0.05  # median known to worse than ±5%
OUTLIER_FACTOR = 2.0  # a sample above twice the median is an outlier
MAX_OUTLIER_FRACTION = 0.01
MAX_CV = 0.25  # robust coefficient of variation above 25%: most samples are far from the median
#: The timing threads waited for a CPU more than this share of their runnable time (another process held the
#: cores): the timing measures the neighbours as much as the model, and a rerun under other load will differ.
MAX_CPU_WAIT = 0.10
#: The GPU's SM clock differed by more than this between trials (NVML, read as each trial ended): the GPU ran at
#: another speed, and a rerun at either clock measures another time.
MAX_CLOCK_CHANGE = 0.05
#: The GPU sat idle more than this share of each inference (CUPTI's busy time against the median): the host
#: launching kernels sets the pace, and the end-to-end time follows the host CPU's state from minute to minute.
MAX_GPU_IDLE = 0.5
#: How far the host's part of a GPU inference (the end-to-end median less the GPU's busy time: launches, the
#: runtime's bookkeeping, synchronisation) moves between identical runs minutes apart, as a factor either way. On the
#: lent H100 (ONNX Runtime's CUDA provider, ``data/runs/h100-cupti-2/reruns.json``) it moved by up to 2.1× from one
#: run to the next while the GPU busy time repeated to 0.3%: each run's fresh session sets it, so trials within one
#: run do not sample it, and :func:`gpu_rerun_interval` allows for it instead.
HOST_RERUN_FACTOR = 2.0
#: Student's t, two-sided 95% (the 97.5% quantile), for 1, 2, … 30 degrees of freedom; beyond, the normal's 1.96.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_CHUNK = 2_000_000  # values drawn at once (memory bound of one bootstrap step)


def _trials(samples) -> list[np.ndarray]:
    """A flat sequence of samples (one trial) or a sequence of sequences (trials) -> non-empty float arrays."""
    if len(samples) and np.ndim(samples[0]) == 0:
        samples = [samples]
    trials = [np.asarray(t, dtype=float) for t in samples]
    trials = [t[np.isfinite(t)] for t in trials]
    trials = [t for t in trials if t.size]
    if not trials:
        raise ValueError("no samples")
    return trials


def bootstrap_medians(samples, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``resamples`` bootstrap replicates of the median: trials drawn with replacement, then samples drawn with
    replacement inside each drawn trial (as many as that trial has; every trial weighs the same)."""
    trials = _trials(samples)
    rng = np.random.default_rng(seed)
    k = len(trials)
    n = max(t.size for t in trials)
    padded = np.full((k, n), np.nan)
    for i, t in enumerate(trials):
        padded[i, : t.size] = t
    lengths = np.array([t.size for t in trials])
    out = np.empty(resamples)
    step = max(1, _CHUNK // (k * n))
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        chosen = rng.integers(0, k, size=(b, k)) if k > 1 else np.zeros((b, 1), dtype=int)
        # a draw inside trial t picks one of its own samples: floor(u * length)
        inside = (rng.random((b, k, n)) * lengths[chosen][..., None]).astype(int)
        values = padded[chosen[..., None], inside]
        out[start : start + b] = np.median(values.reshape(b, -1), axis=1)
    return out


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval."""

    value: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        """Half the interval's width, relative to the value."""
        return (self.high - self.low) / 2 / self.value if self.value else float("inf")


def median_ci(samples, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """The median of all samples (every trial's pooled) with a two-level bootstrap interval."""
    trials = _trials(samples)
    boot = bootstrap_medians(trials, resamples, seed)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    value = float(np.median(np.concatenate(trials)))
    return Interval(value, float(min(low, value)), float(max(high, value)), confidence)


def _t95(degrees: int) -> float:
    return _T95[degrees - 1] if degrees <= len(_T95) else 1.96


def rerun_interval(samples) -> Interval:
    """Where the median of an identical rerun (same trials, same samples per trial) should fall, 95% of the time.

    The wider, on each side, of the session's two-level bootstrap interval (:func:`median_ci`) times √2, and
    ``median · exp(±t(k−1) · s · √(2/k))`` with ``s`` the standard deviation of the logarithms of the ``k`` trial
    medians (each trial a draw of the machine's state, which scales latency by a factor; the difference of two
    k-trial means has variance 2s²/k). With one trial only the first
    applies, and :func:`stability` says a single trial cannot show drift."""
    trials = _trials(samples)
    session = median_ci(trials)
    value = session.value
    below, above = np.sqrt(2) * (value - session.low), np.sqrt(2) * (session.high - value)
    k = len(trials)
    medians = np.array([np.median(t) for t in trials])
    if k > 1 and value > 0 and (medians > 0).all():  # latencies vary by factors: the spread is taken in logs
        spread = _t95(k - 1) * float(np.log(medians).std(ddof=1)) * np.sqrt(2 / k)
        below, above = max(below, value * -np.expm1(-spread)), max(above, value * np.expm1(spread))
    return Interval(value, max(0.0, value - below), value + above, CONFIDENCE)


def gpu_rerun_interval(interval: Interval, gpu_busy: Interval) -> Interval:
    """A GPU run's rerun interval (``interval``, :func:`rerun_interval` of its end-to-end trials) widened so that the
    host's part of the median, ``host = median − GPU busy``, may move by :data:`HOST_RERUN_FACTOR` either way on a
    rerun while the GPU's own work stays inside its interval (``gpu_busy``): at least ``busy.low + host / F`` to
    ``busy.high + host · F``. A run whose median is all GPU work keeps its interval."""
    host = interval.value - gpu_busy.value
    if host <= 0:
        return interval
    low = gpu_busy.low + host / HOST_RERUN_FACTOR
    high = gpu_busy.high + host * HOST_RERUN_FACTOR
    return Interval(interval.value, min(interval.low, low), max(interval.high, high), interval.confidence)


def cv(samples) -> float:
    """Coefficient of variation of all samples: standard deviation / mean (0 for a single sample)."""
    t = np.concatenate(_trials(samples))
    return float(t.std(ddof=1) / t.mean()) if t.size > 1 and t.mean() else 0.0


def robust_cv(samples) -> float:
    """1.4826 × the median absolute deviation / the median of all samples: the coefficient of variation of normal
    data, but blind to a few outliers (one 4 ms hiccup among 150 samples of 0.44 ms makes the CV 66%), which
    :func:`stability` judges on their own."""
    t = np.concatenate(_trials(samples))
    middle = float(np.median(t))
    return float(1.4826 * np.median(np.abs(t - middle)) / middle) if middle else 0.0


@dataclass(frozen=True)
class Stability:
    """``verdict`` is ``stable`` or ``unstable``; ``causes`` say why (empty when stable)."""

    verdict: str
    causes: tuple[str, ...] = ()

    @property
    def stable(self) -> bool:
        return self.verdict == "stable"

    def text(self) -> str:
        return self.verdict if self.stable else f"{self.verdict}: {'; '.join(self.causes)}"


def stability(
    samples,
    interval: Interval | None = None,
    throttled: tuple[str, ...] = (),
    cpu_wait: float | None = None,
    gpu_sm_mhz: tuple[int, ...] = (),
    gpu_busy: Interval | None = None,
) -> Stability:
    """Whether a median from these trials can be trusted, and the likely cause when not.

    Causes: few samples (fewer than :data:`MIN_SAMPLES_PER_TRIAL` in a trial), drift across trials (trial
    medians more than :data:`MAX_TRIAL_SPREAD` apart), outliers (more than :data:`MAX_OUTLIER_FRACTION` of the
    samples above :data:`OUTLIER_FACTOR` × the median), high variation (:func:`robust_cv` above :data:`MAX_CV`), a
    wide interval, throttling (``throttled``: reasons the caller read from the device, e.g. NVML's), a single trial (no drift
    can show) and a contended host (``cpu_wait``: the largest share of a trial's runnable time the timing threads
    spent waiting for a CPU, above :data:`MAX_CPU_WAIT`), GPU clocks that moved between trials (``gpu_sm_mhz``:
    each trial's SM clock, more than :data:`MAX_CLOCK_CHANGE` apart) and a host-paced GPU run (``gpu_busy``: the
    GPU's own busy time per inference, with its interval; idle more than :data:`MAX_GPU_IDLE` of the median): the
    last four are why a rerun may fall outside the interval.
    """
    trials = _trials(samples)
    interval = interval or median_ci(trials)
    causes = []
    fewest = min(t.size for t in trials)
    if fewest < MIN_SAMPLES_PER_TRIAL:
        causes.append(f"few samples ({fewest} in a trial; time at least {MIN_SAMPLES_PER_TRIAL})")
    medians = np.array([np.median(t) for t in trials])
    if len(trials) > 1 and interval.value:
        spread = (medians.max() - medians.min()) / interval.value
        if spread > MAX_TRIAL_SPREAD:
            trend = ""
            if len(trials) > 2 and np.all(np.diff(medians) > 0):
                trend = ", rising trial after trial"
            elif len(trials) > 2 and np.all(np.diff(medians) < 0):
                trend = ", falling trial after trial"
            causes.append(
                f"drift across trials (trial medians {medians.min():.4g}–{medians.max():.4g} ms, "
                f"{100 * spread:.0f}% apart{trend})"
            )
    pooled = np.concatenate(trials)
    outliers = float(np.mean(pooled > OUTLIER_FACTOR * interval.value)) if interval.value else 0.0
    if outliers > MAX_OUTLIER_FRACTION:
        causes.append(f"outliers ({100 * outliers:.1f}% of runs took over {OUTLIER_FACTOR:g}× the median)")
    variation = robust_cv(trials)
    if variation > MAX_CV:
        causes.append(f"high variation (robust CV {100 * variation:.0f}%: most samples are far from the median)")
    if interval.half_width > MAX_CI_HALF_WIDTH and not causes:
        causes.append(f"wide interval (±{100 * interval.half_width:.0f}%): time more runs or trials")
    if throttled:
        causes.append(f"throttling ({', '.join(throttled)})")
    if len(trials) == 1:
        causes.append(
            "one trial (drift between trials cannot show, so a rerun may fall outside the interval: time 3 or more)"
        )
    if cpu_wait is not None and cpu_wait > MAX_CPU_WAIT:
        causes.append(
            f"host contended (the timing threads waited for a CPU {100 * cpu_wait:.0f}% of the time: other "
            "processes shared the cores, and a rerun under other load will measure other times)"
        )
    if gpu_sm_mhz and max(gpu_sm_mhz) and (max(gpu_sm_mhz) - min(gpu_sm_mhz)) / max(gpu_sm_mhz) > MAX_CLOCK_CHANGE:
        causes.append(
            f"GPU clocks moved (SM {min(gpu_sm_mhz)}–{max(gpu_sm_mhz)} MHz across trials: the GPU ran at another "
            "speed, and a rerun at either clock measures another time)"
        )
    if gpu_busy is not None and interval.value and 1 - gpu_busy.value / interval.value > MAX_GPU_IDLE:
        causes.append(
            f"host-paced (the GPU is idle {100 * (1 - gpu_busy.value / interval.value):.0f}% of each inference: the "
            "end-to-end time follows the host CPU launching kernels, which a rerun minutes later may not match; GPU "
            f"busy time is the stable figure: {gpu_busy.value:.4g} ms ({gpu_busy.low:.4g}–{gpu_busy.high:.4g}))"
        )
    return Stability("stable" if not causes else "unstable", tuple(causes))


def trial_spread(samples) -> float:
    """How far a run's trial medians are apart, relative to its median (0 for one trial)."""
    trials = _trials(samples)
    medians = np.array([np.median(t) for t in trials])
    middle = float(np.median(np.concatenate(trials)))
    return float((medians.max() - medians.min()) / middle) if middle and len(trials) > 1 else 0.0


@dataclass(frozen=True)
class Difference:
    """How much slower ``candidate`` is than ``baseline``: ``ratio`` = candidate median / baseline median, with its
    interval; ``significant`` when the interval excludes 1 and the ratio is beyond the noise floor (``noise``: the
    practical threshold, or the runs' own trial-to-trial spread when that is larger)."""

    ratio: float
    low: float
    high: float
    significant: bool
    confidence: float = CONFIDENCE
    noise: float = PRACTICAL_THRESHOLD
    #: Why an interval that excludes 1 is still not claimed (e.g. the runs were timed under other conditions).
    unclaimed: str = ""

    def text(self) -> str:
        """``1.12× faster (1.09–1.15)``, ``1.10× slower (1.08–1.12)`` or ``no significant difference``; a
        difference that is ``unclaimed`` reads ``1.12× faster (1.09–1.15) — not claimed: <why>``.

        Faster/slower factors are baseline/candidate and candidate/baseline, so both read as "× something" ≥ 1.
        """
        if self.unclaimed:
            return f"{self._ratio_text()} — not claimed: {self.unclaimed}"
        if not self.significant:
            return "no significant difference"
        return self._ratio_text()

    def _ratio_text(self) -> str:
        if self.ratio < 1:
            return f"{1 / self.ratio:.2f}× faster ({1 / self.high:.2f}–{1 / self.low:.2f})"
        return f"{self.ratio:.2f}× slower ({self.low:.2f}–{self.high:.2f})"

    @property
    def speedup(self) -> float:
        """Baseline / candidate (above 1: the candidate is faster)."""
        return 1 / self.ratio


def difference(
    baseline,
    candidate,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    threshold: float = PRACTICAL_THRESHOLD,
) -> Difference:
    """Ratio of ``candidate``'s median to ``baseline``'s with a bootstrap interval (each run resampled on its own,
    trials then samples). Samples: flat (one trial) or a sequence of trials.

    A difference smaller than either run's trial-to-trial spread (:func:`trial_spread`) is not called
    significant however narrow the interval: runs whose own trials disagree by 20% cannot rank a 10% change.
    """
    a, b = _trials(baseline), _trials(candidate)
    ratio = float(np.median(np.concatenate(b)) / np.median(np.concatenate(a)))
    noise = max(threshold, trial_spread(a), trial_spread(b))
    return difference_of(
        bootstrap_medians(a, resamples, seed), bootstrap_medians(b, resamples, seed + 1), ratio, confidence, noise
    )


def difference_of(
    baseline_boot: np.ndarray,
    candidate_boot: np.ndarray,
    ratio: float,
    confidence: float = CONFIDENCE,
    noise: float = PRACTICAL_THRESHOLD,
) -> Difference:
    """:func:`difference` from bootstrap replicates already drawn (:func:`bootstrap_medians`), so that many pairs
    of runs can be compared with one draw per run; ``noise`` is the relative change below which nothing is
    significant."""
    alpha = (1 - confidence) / 2
    low, high = (float(x) for x in np.quantile(candidate_boot / baseline_boot, [alpha, 1 - alpha]))
    low, high = min(low, ratio), max(high, ratio)
    beyond_noise = ratio > 1 + noise or ratio < 1 / (1 + noise)
    significant = (low > 1 or high < 1) and beyond_noise
    return Difference(ratio, low, high, bool(significant), confidence, noise)


def paired_difference(baseline, candidate, threshold: float = PRACTICAL_THRESHOLD) -> Difference:
    """:class:`Difference` of two runs timed alternately in one session (baseline trial 1, candidate trial 1,
    baseline trial 2, …): each round's two trials share the machine's state of that moment, so drift and a
    neighbour's load cancel in the round's ratio of trial medians. The ratio is the geometric mean of the rounds'
    ratios, its 95% interval Student's t over their logarithms; ``threshold`` is the smallest change called
    significant (rounds that agree leave no trial-to-trial spread to raise it)."""
    a, b = _trials(baseline), _trials(candidate)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("a paired difference needs the same number of trials in both runs, at least 2")
    logs = np.log([np.median(y) / np.median(x) for x, y in zip(a, b)])
    centre = float(logs.mean())
    half = _t95(len(logs) - 1) * float(logs.std(ddof=1)) / np.sqrt(len(logs))
    ratio, low, high = float(np.exp(centre)), float(np.exp(centre - half)), float(np.exp(centre + half))
    beyond_noise = ratio > 1 + threshold or ratio < 1 / (1 + threshold)
    return Difference(ratio, low, high, bool((low > 1 or high < 1) and beyond_noise), CONFIDENCE, threshold)
