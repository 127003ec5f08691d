"""How many inferences a profile times: an exact count when the user gives one, else a count adapted to the model's
speed (a slow model is timed for seconds, not minutes), stated in the run."""

from __future__ import annotations

import re
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.backends.onnxruntime import PROFILE_AUTO_LEAST, PROFILE_RUNS
from workbench.backends.timing import timed_loop
from workbench.config import AUTO_ITERATIONS, AUTO_TRIAL_S
from workbench.progress import ensure
from workbench.results.stats import MIN_SAMPLES_PER_TRIAL

LEAST, MOST = AUTO_ITERATIONS


def _slow_model(path, matmuls: int = 16, rows: int = 128, width: int = 1024):
    """``matmuls`` chained [rows, width] x [width, width] MatMuls sharing one weight: about 4 GFLOP an inference,
    tens of milliseconds on a CPU (so 100 runs take longer than a trial's budget), 4 MB of weights."""
    weight = numpy_helper.from_array(
        (np.random.default_rng(0).standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), "w"
    )
    nodes, last = [], "x"
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [last, "w"], [f"h{i}"], name=f"mm{i}"))
        last = f"h{i}"
    nodes.append(helper.make_node("Identity", [last], ["y"], name="out"))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, width])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def slow_path(tmp_path_factory):
    return _slow_model(tmp_path_factory.mktemp("slow") / "slow.onnx")


def test_without_a_count_a_fast_model_gets_the_most_runs_and_a_given_count_is_exact():
    assert wb.BuildConfig().iterations is None and wb.BuildConfig().timed_runs() == (LEAST, MOST, AUTO_TRIAL_S)
    times, _ = timed_loop(lambda: None, wb.BuildConfig(), ensure(None))
    assert len(times) == MOST  # a fast model is timed as before: 100 runs a trial
    assert wb.BuildConfig(iterations=7).timed_runs() == (7, 7, 0.0)
    times, wall = timed_loop(lambda: time.sleep(0.4), wb.BuildConfig(iterations=7), ensure(None))
    assert len(times) == 7 and wall > AUTO_TRIAL_S  # a given count is kept past the adaptive budget
    assert wb.BuildConfig(iterations=1, duration_s=0.5).timed_runs() == (1, None, 0.5)  # trtexec's --duration
    assert wb.BuildConfig.from_dict({"iterations": 100}).iterations == 100  # a saved run's count stays exact


def test_an_adaptive_trial_of_a_slow_call_stops_once_it_has_the_least_runs():
    times, wall = timed_loop(lambda: time.sleep(0.25), wb.BuildConfig(), ensure(None))
    assert len(times) == LEAST == 10  # 10 x 0.25 s is past the 2 s budget: no eleventh run
    assert wall >= AUTO_TRIAL_S
    # the count chosen is never what the stability verdict calls "few samples"
    assert LEAST >= MIN_SAMPLES_PER_TRIAL


def test_a_slow_model_is_timed_within_the_budget_and_the_run_states_the_counts(slow_path):
    run = wb.profile(slow_path, backend="onnxruntime")
    counts = [t.samples for t in run.trials]
    assert len(counts) == 3 and all(LEAST <= n < MOST for n in counts), counts
    times = np.asarray(run.latency_ms) / 1000
    ends = np.cumsum(counts)
    for trial, end, n in zip(run.trials, ends, counts):
        runs = times[end - n : end]
        # it stopped because the budget was spent (not at 100 runs), at the first run that ended past it: every run
        # but the last started inside the budget, and the trial ended one run after
        assert trial.wall_s >= AUTO_TRIAL_S
        assert n == LEAST or runs[:-1].sum() < AUTO_TRIAL_S
        assert trial.wall_s < max(AUTO_TRIAL_S, runs[:-1].sum()) + runs[-1] + 0.5
    assert run.latency.samples == sum(counts)
    runs = run.extra["profile_runs"]
    assert PROFILE_AUTO_LEAST <= runs <= PROFILE_RUNS[0]
    assert not any(cause.startswith("few samples") for cause in run.timing.causes)
    note = next(n for n in run.notes if n.startswith("timed "))
    found = re.match(r"timed 3 trials x (\d+)(?:-(\d+))? inferences \(.+ each, the per-layer table from (\d+)\)", note)
    assert found, note
    assert (int(found[1]), int(found[2] or found[1])) == (min(counts), max(counts))
    assert int(found[3]) == runs
    assert f"once it has run {AUTO_TRIAL_S:g} s" in note and "--iterations N times exactly N" in note


def test_a_given_count_times_exactly_that_on_a_slow_model_and_says_nothing_of_a_budget(slow_path):
    run = wb.profile(slow_path, backend="onnxruntime", config=wb.BuildConfig(iterations=7, trials=3, warmup_ms=0))
    assert [t.samples for t in run.trials] == [7, 7, 7]
    assert run.extra["profile_runs"] == 50  # the per-layer pass keeps its rule for a given count
    assert not [n for n in run.notes if n.startswith("timed ")]
