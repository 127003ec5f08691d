"""The committed runs measured on an H200 with ONNX Runtime CUDA load on any machine, say what measured them, and
keep their trials (docs/gpu-validation.md)."""

from __future__ import annotations

import json

import pytest
from support import DATA

import workbench as wb
from workbench.analysis.compare import compare, latency_differences

GPU_RUNS = DATA / "runs" / "h200-ort-cuda"
FOLDERS = sorted(p for p in GPU_RUNS.iterdir() if (p / "run.json").is_file())


def test_every_bundled_sample_in_fp32_and_fp16_was_run():
    names = {p.name for p in FOLDERS}
    for sample in ("digits_cnn", "resnet_mini", "transformer_encoder"):
        assert {n.rsplit("-", 1)[1] for n in names if n.startswith(sample)} >= {"fp32", "fp16", "int8"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_gpu_runs_load_and_say_where_they_were_measured(folder):
    run = wb.load_run(folder)
    assert run.environment["gpu"] == "NVIDIA H200" and run.environment["provider"] == "CUDAExecutionProvider"
    assert run.environment["versions"]["onnxruntime"] == "1.31.1"
    assert len(run.trials) == 5 and [len(t) for t in run.trial_samples] == [t.samples for t in run.trials]
    t = run.timing
    assert t.ci_low_ms <= t.median_ms <= t.ci_high_ms and t.verdict in ("stable", "unstable")
    assert t.profiled_ms > 0 and len(run.layers) and run.memory.gpu_used_bytes > 0
    assert run.conditions.before.gpu_sm_mhz and run.conditions.after.gpu_power_w
    assert not run.artifacts  # small: no raw profiler JSON travels with them


def test_fp16_against_fp32_at_a_large_batch_is_a_ratio_with_its_interval():
    fp32, fp16 = (wb.load_run(GPU_RUNS / f"resnet_mini-b256-{p}") for p in ("fp32", "fp16"))
    diff = latency_differences([fp32, fp16]).iloc[1]
    assert diff["significant"] and diff["ratio"] < 1 and diff["low"] <= diff["ratio"] <= diff["high"]
    assert diff["text"].endswith(f"({1 / diff['high']:.2f}–{1 / diff['low']:.2f})")
    assert "Speed-up vs A (median, 95% CI)" in compare([fp32, fp16]).metrics.index


def test_the_independent_cuda_event_check_agrees_where_the_gpu_sets_the_pace():
    rows = json.loads((GPU_RUNS / "summary.json").read_text())["rows"]
    large = [r for r in rows if r["shapes"] in ("input:256x3x128x128", "input_ids:128x128")]
    assert len(large) == 4
    for r in large:  # the workbench's host clock against CUDA events on the session's stream: within 5%
        assert r["median_ms"] == pytest.approx(r["events_median_ms"], rel=0.05)


def test_interval_chart_shows_each_runs_interval_and_trials():
    runs = [wb.load_run(GPU_RUNS / f"resnet_mini-b256-{p}") for p in ("fp32", "fp16")]
    medians, trials = wb.charts.latency_trials(runs).data
    assert list(medians.y) == pytest.approx([r.timing.median_ms for r in runs])
    assert list(medians.error_y.array) == pytest.approx([r.timing.ci_high_ms - r.timing.median_ms for r in runs])
    assert len(trials.y) == 10  # five trial medians per run
