"""Compare says when runs were timed at other times or under other load or clocks, and ranks runs timed
alternately in one session (``compare --interleave``) round by round."""

from __future__ import annotations

import numpy as np
from support import make_run

import workbench as wb
from workbench.analysis.compare import compare, latency_differences
from workbench.results.run import Conditions, ConditionsSnapshot, Timing, TrialStats


def timed(median_ms, *, created="2026-12-07T18:00:00+00:00", load=0.2, cpu_mhz=2000.0, wait=0.01, seed=0, **extra):
    rng = np.random.default_rng(seed)
    trials = [median_ms * np.exp(rng.normal(0, 0.01, 50)) for _ in range(5)]
    flat = [float(x) for t in trials for x in t]
    snapshot = ConditionsSnapshot(cpu_model="Test CPU", cpu_mhz=cpu_mhz, load_1m=load)
    return make_run(
        latency_ms=flat,
        trials=tuple(TrialStats.from_times(t, 0.1, wait) for t in trials),
        timing=Timing.from_trials(trials, cpu_wait=wait),
        conditions=Conditions(snapshot, snapshot),
        environment={"cpu": "Test CPU", "cpu_cores": 2},
        created=created,
        **extra,
    )


def test_runs_timed_together_under_the_same_conditions_get_no_condition_warning():
    assert compare([timed(1.0), timed(1.0, seed=1, created="2026-12-07T18:04:00+00:00")]).warnings() == []
    together = [timed(1.0), timed(0.8, seed=1, created="2026-12-07T18:04:00+00:00")]
    assert latency_differences(together)["text"].tolist()[1].startswith("1.25× faster (")


def test_runs_timed_apart_under_other_load_and_clocks_say_so():
    a = timed(1.0)
    b = timed(0.8, seed=1, created="2026-12-07T18:45:00+00:00", load=3.0, cpu_mhz=1400.0, wait=0.4)
    (warning,) = compare([a, b]).warnings()
    # significant on its own intervals, but not a fair A/B: the figure is shown, the speed-up is not claimed
    differences = latency_differences([a, b])
    assert not differences["significant"][1]
    assert differences["text"][1].startswith("1.25× faster (")
    assert differences["text"][1].endswith(" — not claimed: timed under other conditions")
    assert warning == (
        "A and B were timed under other conditions (45 min apart; CPU clock 2000 vs 1400 MHz; load average per core "
        "0.10 vs 1.50; timing threads waited for a CPU 1% vs 40% of the time): their latency difference may be the "
        "machine's; 'workbench compare --interleave' times both alternately in one session"
    )


def test_interleaved_runs_are_compared_round_by_round_without_the_warning():
    rng = np.random.default_rng(5)
    states = rng.uniform(0.7, 1.5, 5)  # each round's machine state, shared by A's and B's trial of that round
    runs = []
    for speed in (1.0, 0.9):
        trials = [speed * s * np.exp(rng.normal(0, 0.01, 50)) for s in states]
        runs.append(
            timed(1.0).replace(
                latency_ms=[float(x) for t in trials for x in t],
                trials=tuple(TrialStats.from_times(t) for t in trials),
                timing=Timing.from_trials(trials),
                extra={"interleaved": "session1"},
            )
        )
    assert latency_differences(runs)["text"].tolist()[1].startswith("1.11× faster (")
    apart = [r.replace(extra={}) for r in runs]  # the same samples, not known to be paired: drift hides it
    assert latency_differences(apart)["text"].tolist()[1] == "no significant difference"
    assert compare(runs).warnings() == []


def test_interleave_times_the_variants_alternately_in_one_session():
    from workbench.model.samples import sample_path

    config = wb.BuildConfig(iterations=20, warmup_ms=0, trials=1)
    big = wb.profile(sample_path("resnet_mini"), backend="onnxruntime", config=config)
    small = wb.profile(sample_path("digits_cnn"), backend="onnxruntime", config=config)
    a, b = wb.interleave([big, small], rounds=3)
    assert a.extra["interleaved"] == b.extra["interleaved"] and a.extra["interleaved_from"] == big.id
    assert [t.samples for t in a.trials] == [20, 20, 20] and [t.samples for t in b.trials] == [20, 20, 20]
    assert a.conditions is b.conditions and a.timing.trials == 3
    assert a.layers.equals(big.layers) and "alternately" in a.notes[-1]
    text = latency_differences([a, b])["text"].tolist()[1]
    assert text.endswith("faster" + text.split("faster")[1]) and float(text.split("×")[0]) > 5


def test_gpu_runs_whose_gpu_work_is_the_same_claim_no_end_to_end_speed_up():
    """resnet_mini b256 on the H100 with ONNX Runtime's graph optimization 'basic' and 'all': the same 112 kernels and
    GPU busy time (1.4303 vs 1.4306 ms); the interleaved compare on the device still read '1.01× faster (1.01–1.02)'
    from the host's part (each variant has a session of its own). An end-to-end change within what the host's part
    moves between sessions is shown, not claimed; a change of the GPU's own work is claimed."""
    from dataclasses import replace

    from workbench.model.samples import measured_run_path

    basic, full = (
        wb.load_run(measured_run_path("h100-cupti-3", f"h100-resnet_mini-b256-fp32-graphopt-{v}"))
        for v in ("basic", "all")
    )
    assert latency_differences([basic, full])["text"].tolist()[1] == "no significant difference"

    def faster(run, by, busy_by=1.0):
        samples = tuple(x * by for x in run.latency_ms)
        g = replace(run.gpu_time, busy_ms=run.gpu_time.busy_ms * busy_by)
        return run.replace(
            latency_ms=samples, timing=replace(run.timing, median_ms=run.timing.median_ms * by), gpu_time=g
        )

    host_only = latency_differences([basic, faster(full, 0.97)]).iloc[1]
    assert not host_only["significant"]
    assert host_only["text"].startswith("1.03× faster (")
    assert host_only["text"].endswith(
        " — not claimed: the GPU's own work is the same (busy 1.43 vs 1.431 ms, 112 kernels); the difference is in "
        "the host's part, which moves between sessions"
    )
    gpu_too = latency_differences([basic, faster(full, 0.97, busy_by=0.97)]).iloc[1]
    assert gpu_too["significant"] and gpu_too["text"].startswith("1.03× faster (")
    beyond_host = latency_differences([basic, faster(full, 0.85)]).iloc[1]  # 0.235 ms: more than the host's 0.139
    assert beyond_host["significant"] and beyond_host["text"].startswith("1.18× faster (")
