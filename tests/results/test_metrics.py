"""The one description of a Run's metrics (results/metrics.py) and the typed Run fields it reads."""

from __future__ import annotations

import json

import pytest
from support import make_run

import workbench as wb
from workbench.analysis.compare import best_runs, compare_metrics, format_metrics
from workbench.results import metrics as metrics_module
from workbench.results.metrics import METRICS, Metric, metric, register, summary_rows
from workbench.results.run import Memory
from workbench.views.report import metrics_table_html


def test_one_description_drives_the_summary_and_the_comparison():
    run = make_run()
    rows = dict(summary_rows(run))
    assert rows["Latency mean (ms)"] == f"{run.latency.mean_ms:.4f}"
    assert rows["Throughput (samples/s)"] == f"{run.latency.throughput_qps * 4:,.1f}"
    assert rows["Weights"] == "2.0 KiB" and rows["Top-1 agreement with FP32 (%)"] == "90.00"
    assert rows["Precision"] == "int8" and rows["Device"] == "Test CPU"
    assert "Engine device memory" not in rows and "Speed-up vs A (median, 95% CI)" not in rows
    html = run._repr_html_()
    assert "Latency mean (ms)" in html and run.id in html
    shown = format_metrics(compare_metrics([run, make_run()]))
    assert shown.loc["Latency mean (ms)", "A"] == rows["Latency mean (ms)"]
    assert shown.loc["Speed-up vs A (median, 95% CI)", "B"] == "no significant difference"  # the same samples
    assert "Run" not in shown.index  # the legend names the runs
    assert {m.better for m in METRICS} == {None, "lower", "higher"}
    assert metric("mean_ms").better == "lower" and metric("throughput_qps").better == "higher"


def test_a_registered_metric_appears_everywhere(monkeypatch):
    monkeypatch.setattr("workbench.results.metrics.METRICS", list(METRICS))
    register(Metric("extra_ms", "Something new", "ms", lambda v: f"{v:.1f}", "lower", lambda r: 3.0), after="p99_ms")
    keys = [m.key for m in metrics_module.METRICS]
    assert keys[keys.index("p99_ms") + 1] == "extra_ms"
    assert ("Something new (ms)", "3.0") in summary_rows(make_run())
    with pytest.raises(ValueError, match="already described"):
        register(Metric("extra_ms", "Again", "", str, None, lambda r: 1))


def test_typed_run_fields_round_trip_and_old_run_json_still_loads(tmp_path):
    run = make_run(build_seconds=0.25, cache_hit=True, precision_source="trtexec flag --fp16")
    saved = run.save(tmp_path / "new")
    back = wb.load_run(saved.directory)
    assert (back.build_seconds, back.cache_hit, back.precision_source) == (0.25, True, "trtexec flag --fp16")
    meta = json.loads((saved.directory / "run.json").read_text())
    for key in ("build_seconds", "cache_hit", "precision_source"):  # an older run.json kept them in "extra"
        meta["extra"][key] = meta.pop(key)
    (saved.directory / "run.json").write_text(json.dumps(meta))
    old = wb.load_run(saved.directory)
    assert (old.build_seconds, old.cache_hit, old.precision_source) == (0.25, True, "trtexec flag --fp16")
    assert dict(summary_rows(old))["Build time (s)"] == "0.25"


def test_the_better_direction_marks_the_best_run():
    slow_times = (2.0, 2.2, 2.1, 1.9)  # twice the fast run's: beyond any noise in its samples
    fast, slow = make_run(), make_run(latency_ms=slow_times, memory=Memory(weights_bytes=1024))
    slow = slow.replace(latency=wb.LatencyStats.from_times(slow_times, batch=4))
    table = compare_metrics([slow, fast])
    best = best_runs(table)
    assert best["Latency mean (ms)"] == ["B"] and best["Throughput (inferences/s)"] == ["B"]
    assert best["Weights"] == ["A"]  # lower is better
    assert "Precision" not in best and "Layers" not in best  # not figures of merit
    assert "Top-1 agreement with FP32 (%)" not in best  # equal for both
    html = metrics_table_html(table)
    assert f"<b>{format_metrics(table).loc['Latency mean (ms)', 'B']}</b>" in html


def test_speed_has_no_best_run_where_the_difference_is_noise():
    runs = [
        make_run(latency_ms=t, latency=wb.LatencyStats.from_times(t, batch=4), name=n)
        for t, n in (((1.0, 1.2, 1.1, 0.9), "a"), ((1.05, 1.15, 1.0, 0.95), "b"))
    ]  # 2% apart, inside the spread
    table = compare_metrics(runs)
    assert table.loc["Latency mean (ms)", "A"] != table.loc["Latency mean (ms)", "B"]
    best = best_runs(table)
    assert "Latency mean (ms)" not in best and "Latency median (ms)" not in best and "Latency p99 (ms)" not in best
