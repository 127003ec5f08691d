"""Self-checks of a Run on real models and real trtexec files: every invariant is evaluated, a planted violation is
flagged next to its figure in the summary, the report and the CLI."""

from __future__ import annotations

import json
import shutil
import statistics

import numpy as np
import pytest
from real_models import minilm_onnx, minilm_token_ids, real_model
from support import DATA, FIXTURES, cli

import workbench as wb
from workbench.analysis.checks import ROOFLINE_CHECKS, checked, roofline_evaluations, roofline_of
from workbench.analysis.devices import Device
from workbench.analysis.roofline import roofline
from workbench.results.checks import GPU_ONLY_CHECKS, RUN_CHECKS, evaluate, leading_dims, timed_median_ms
from workbench.model.samples import sample_path
from workbench.results.metrics import summary_rows
from workbench.ui import Workbench
from workbench.views.formatting_html import metrics_html
from workbench.views.report import report_html

H200_RUNS = sorted(p for p in (DATA / "runs" / "h200-ort-cuda").iterdir() if (p / "run.json").is_file())
TRTEXEC = [
    FIXTURES / "trtexec" / "resnet18-a100-fp16",
    FIXTURES / "trtexec" / "resnet18-a100-fp32",
    FIXTURES / "trtexec" / "resnet18-a100-qat",
    FIXTURES / "trtexec" / "mobilenet-qat-titanrtx",
    FIXTURES / "trtexec-10.16" / "h100",
    FIXTURES / "trtexec-11.1" / "h100",
]
# what any run with latency and layer times answers (the others need figures some files lack)
ALWAYS = {"latency_order", "finite", "memory_sums"}


def _quick(shapes: str = "") -> wb.BuildConfig:
    return wb.BuildConfig(shapes=wb.parse_shapes(shapes), iterations=5, trials=2, warmup_ms=20)


def _by_check(run) -> dict:
    return {f.check: f for f in run.findings}


# ---- real models profiled on this CPU -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cls_run():
    """PP-OCR's classifier, whose batch dimension is an unnamed -1, profiled at batch 4."""
    return wb.profile(str(real_model("ppocr_cls")), "fp32", backend="onnxruntime", config=_quick("x:4x3x48x192"))


@pytest.fixture(scope="module")
def det_run():
    return wb.profile(str(real_model("ppocr_det")), "fp32", backend="onnxruntime", config=_quick("x:1x3x96x96"))


@pytest.fixture(scope="module")
def minilm_run():
    ids = np.array([minilm_token_ids("A man is playing a guitar on a stage tonight.")] * 2, np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return wb.profile(str(minilm_onnx()), "fp32", backend="onnxruntime", config=_quick(), inputs=feed)


@pytest.mark.parametrize("name", ["cls_run", "det_run", "minilm_run"])
def test_every_invariant_is_evaluated_on_real_cpu_runs(name, request):
    run = request.getfixturevalue(name)
    results = {**evaluate(run), **roofline_evaluations(run, roofline_of(run))}
    assert set(results) == {c.key for c in RUN_CHECKS + ROOFLINE_CHECKS}
    not_applicable = [k for k, v in results.items() if v is None and k not in GPU_ONLY_CHECKS]
    assert not not_applicable, f"{name}: checks that found no figures to check: {not_applicable}"
    # what the pipeline returns carries every finding of the run's own figures; the roofline's checks ran there too
    # (their verdicts may differ from this second roofline: a CPU's roof is measured, and again when a layer beats it)
    run_keys = {c.key for c in RUN_CHECKS}
    assert {f.check for f in run.findings if f.check in run_keys} == {
        f.check for k in run_keys for f in results[k] or ()
    }
    assert {f.check for f in run.findings} <= run_keys | {c.key for c in ROOFLINE_CHECKS}
    assert not [f.text() for f in run.findings if f.severity == "error"]


def test_batch_check_holds_exactly_when_samples_per_second_counts_the_profiled_batch(cls_run):
    lat = cls_run.latency
    assert leading_dims(cls_run) == {4}
    finding = _by_check(cls_run).get("batch")
    assert (finding is not None) == (lat.batch != 4)
    if finding is not None:  # a run that recorded batch 1 for x:4x...: samples/s is flagged where it is shown
        assert f"4 × {lat.throughput_qps:.1f}" in finding.expected
        row = dict(summary_rows(cls_run))["Throughput (samples/s)"]
        assert "⚠ check failed" in row


def test_layer_sum_is_held_against_the_profiled_inference_and_states_the_profiler_overhead(minilm_run, det_run):
    for run in (minilm_run, det_run):
        total = float(run.layers["time_ms"].sum())
        profiled = run.timing.profiled_ms
        assert profiled > 0  # ONNX Runtime times its profiled pass
        assert (_by_check(run).get("layer_sum") is not None) == (total > 1.10 * profiled)
        row = dict(summary_rows(run))["Per-layer profile"]  # the profiler's overhead is stated, not failed
        assert f"({100 * total / timed_median_ms(run):.0f}% of the median)" in row
        assert f"{profiled / timed_median_ms(run):.2f}× the timed median" in row


def test_a_small_cpu_model_whose_profiler_overhead_doubles_its_layers_passes():
    run = wb.profile(sample_path("digits_cnn"), config=wb.BuildConfig(iterations=50, trials=3))
    total = float(run.layers["time_ms"].sum())
    assert total <= 1.10 * run.timing.profiled_ms  # the layers of a profiled inference fit in it
    assert "layer_sum" not in _by_check(run)
    moved = run.layers.assign(time_ms=run.layers["time_ms"] * 1.5 * run.timing.profiled_ms / total)
    planted = run.replace(layers=moved)  # layers longer than the inference they were profiled in
    finding = _by_check(planted)["layer_sum"]
    assert finding.expected == "≤ 110% of the profiled inference"
    assert "150% of the" in finding.cause and "profiled inference they were measured in" in finding.cause


# ---- real trtexec files and the H200 runs ---------------------------------------------------------------------


@pytest.mark.parametrize("folder", TRTEXEC, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_trtexec_imports_are_checked_without_impossibilities(folder):
    run = checked(wb.import_trtexec(folder))
    results = evaluate(run)
    assert ALWAYS <= {k for k, v in results.items() if v is not None}
    assert not [f.text() for f in run.findings if f.severity == "error"]  # real files hold no impossible figure


def test_resnet18_fp16_layer_sum_is_stated_from_the_files_by_hand():
    folder = FIXTURES / "trtexec" / "resnet18-a100-fp16"
    profile = json.loads((folder / "resnet.onnx.engine.profile.json").read_text())
    timing = json.loads((folder / "resnet.onnx.engine.timing.json").read_text())
    share = sum(layer["averageMs"] for layer in profile[1:]) / statistics.median(t["latencyMs"] for t in timing)
    assert 1.15 < share < 1.20  # one profiled inference (count 1) against 3698 timed ones
    finding = _by_check(wb.import_trtexec(folder))["layer_sum"]
    assert f"{100 * share:.0f}% of the timed median" in finding.cause


def test_trtexec_11_layer_info_of_another_engine_is_stated():
    # the 11.1 layer information and profile tail come from different engines (data/recorded/README.md)
    run = wb.import_trtexec(FIXTURES / "trtexec-11.1" / "h100")
    finding = next(f for f in run.findings if f.check == "finite" and f.figure == "layer time_ms")
    assert f"of {len(run.layers)} layers" in finding.value


@pytest.mark.parametrize("folder", H200_RUNS, ids=lambda p: p.name)
def test_h200_runs_are_checked_and_consistent(folder):
    run = checked(wb.load_run(folder))
    results = {**evaluate(run), **roofline_evaluations(run, roofline_of(run))}
    assert ALWAYS | {"batch", "throughput", "layer_sum", "percentages"} <= {
        k for k, v in results.items() if v is not None
    }
    assert run.latency.batch in leading_dims(run)  # b8 / b64 / b128 runs: samples/s counts the batch
    assert not [f.text() for f in run.findings if f.severity == "error"]


# ---- planted violations ---------------------------------------------------------------------------------------


def _planted(tmp_path, edit) -> wb.Run:
    folder = tmp_path / "run"
    shutil.copytree(DATA / "runs" / "h200-ort-cuda" / "resnet_mini-b8-fp32", folder)
    meta = json.loads((folder / "run.json").read_text())
    edit(meta, folder)
    (folder / "run.json").write_text(json.dumps(meta))
    return wb.load_run(folder)


def _batch_of_one(meta, folder):
    meta["latency"]["batch"] = 1  # run.json says x:8x..., samples/s counts 1 sample per inference


def test_planted_batch_is_flagged_in_summary_report_and_history(tmp_path):
    run = _planted(tmp_path, _batch_of_one)
    finding = _by_check(run)["batch"]
    assert "carry batch 8" in finding.expected
    rows = dict(summary_rows(run))
    assert "⚠ check failed" in rows["Throughput (samples/s)"] and "⚠ check failed" in rows["Batch"]
    assert "⚠ check failed" not in rows["Latency p50 (ms)"]
    assert "Self-check warning: Throughput (samples/s)" in metrics_html(run)  # the notebook display of a Run
    panel = Workbench()
    panel.show(run)
    assert "Self-check warning: Throughput (samples/s)" in panel.metrics.value  # the panel's summary tab
    report = report_html(run)
    assert "Self-check warning: Throughput (samples/s)" in report and "carry batch 8" in report
    stored = wb.Store().add(run)
    history = cli("history")
    assert history.returncode == 0, history.stderr
    line = next(line for line in history.stdout.splitlines() if stored.id in line)
    failed = wb.Store().list().set_index("run").loc[stored.id, "checks"]
    assert "batch" in failed.split(", ") and line.rstrip().endswith(failed)  # the checks column, last
    panel.history.refresh()  # the panel's History lists them too
    assert f"<td>{failed}</td>" in panel.history.table.value and "failed self-checks" in panel.history.table.value


def test_planted_layer_times_of_230_percent_are_stated(tmp_path):
    def inflate(meta, folder):
        import pandas as pd

        layers = pd.read_csv(folder / "layers.csv")
        median = meta["timing"]["median_ms"]
        layers["time_ms"] *= 2.3 * median / layers["time_ms"].sum()
        layers.to_csv(folder / "layers.csv", index=False)

    run = _planted(tmp_path, inflate)
    assert "profiled layer times sum to 230% of the timed median" in _by_check(run)["layer_sum"].cause
    assert "sum to 230% of the timed median" in report_html(run)
    shown = cli("roofline", run.directory)  # the roofline's layer times are stated before its figures
    assert shown.returncode == 0, shown.stderr
    assert "230% of the timed median" in shown.stdout.split("Roofline of")[0]


def test_planted_lower_bound_above_the_measured_latency_says_which_is_wrong(tmp_path):
    def too_fast(meta, folder):
        meta["latency"].update(mean_ms=1e-4, p50_ms=1e-4, p90_ms=1e-4, p99_ms=1e-4, min_ms=1e-4, max_ms=1e-4)
        meta["latency"]["throughput_qps"] = 1e7
        meta.pop("timing", None)

    run = checked(_planted(tmp_path, too_fast))
    finding = _by_check(run)["lower_bound"]
    assert finding.expected.startswith("≤ the fastest measured inference 0.0001 ms")
    # every layer is within its roof: the latency, not the roof or the work, is what disagrees
    assert "every layer runs within its roof" in finding.cause
    assert "Self-check warning: Lower bound (ms)" in report_html(run)


def test_planted_impossible_figures_are_errors_next_to_them(tmp_path):
    def impossible(meta, folder):
        meta["latency"]["p99_ms"] = meta["latency"]["p50_ms"] / 2  # p99 below p50
        meta["latency"]["throughput_qps"] = float("nan")
        meta["memory"]["weights_bytes"] = -1

    run = _planted(tmp_path, impossible)
    errors = {(f.check, f.figure) for f in run.findings if f.severity == "error"}
    assert ("latency_order", "Latency p90 (ms)") in errors  # p90 ≤ p99 breaks first: p99 is the planted one
    assert ("finite", "latency throughput_qps") in errors and ("finite", "memory weights_bytes") in errors
    rows = dict(summary_rows(run))
    assert "⚠ check failed" in rows["Latency p99 (ms)"] and "⚠ check failed" in rows["Weights"]
    assert "Self-check error: Latency p90 (ms)" in report_html(run)


def test_planted_weights_totals_are_held_against_the_traced_sum_or_the_heaviest_layer(tmp_path):
    def traced(meta, folder):  # each weight traced to its layer: layers + unread must equal the total exactly
        meta["extra"]["weights_in_no_layer"] = {"bytes": 100, "tensors": 1, "largest": []}

    finding = _by_check(_planted(tmp_path / "traced", traced))["memory_sums"]
    summed = int(_planted(tmp_path / "plain", lambda meta, folder: None).layers["weight_bytes"].sum())
    assert (finding.figure, finding.value) == ("Weights", "3,319,584 bytes")
    assert finding.expected == f"= the layers' weights, {summed:,} bytes, + the weights no layer reads, 100 bytes"
    assert "traced in another model" in finding.cause

    def below_a_layer(meta, folder):  # not traced: the total may not be below its heaviest layer
        meta["memory"]["weights_bytes"] = 10

    run = _planted(tmp_path / "below", below_a_layer)
    heaviest = run.layers.loc[run.layers["weight_bytes"].idxmax()]
    finding = _by_check(run)["memory_sums"]
    assert (finding.figure, finding.value) == ("Weights", "10 bytes")
    assert (
        finding.expected == f"≥ the weights of its heaviest layer, {heaviest.weight_bytes:,} bytes ({heaviest['name']})"
    )
    assert "memory_sums" not in _by_check(_planted(tmp_path / "plain2", lambda meta, folder: None))


def test_cli_import_prints_the_findings_of_planted_trtexec_files(tmp_path):
    folder = tmp_path / "resnet18"
    shutil.copytree(FIXTURES / "trtexec" / "resnet18-a100-fp16", folder)
    run = wb.import_trtexec(folder)
    factor = 2.3 * timed_median_ms(run) / float(run.layers["time_ms"].sum())
    path = folder / "resnet.onnx.engine.profile.json"
    profile = json.loads(path.read_text())
    for layer in profile[1:]:
        for key in ("timeMs", "averageMs", "medianMs"):
            layer[key] *= factor
    path.write_text(json.dumps(profile))
    result = cli("import", folder)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("check warning: Summed layer times (ms)") and "230% of the timed median" in first


def test_a_roof_every_layer_beats_is_blamed_on_the_device():
    # the real A100 ResNet-18 held against a device 1000x slower than any GPU: the roof, not the work, is wrong
    run = wb.import_trtexec(FIXTURES / "trtexec" / "resnet18-a100-fp16")
    slow = Device("slow test device", {"fp32": 1e10, "tf32": 1e10, "fp16": 1e10}, 1e9, "a made-up roof")
    found = _by_check(checked(run, roofline(run, device=slow)))
    assert found["lower_bound"].cause.startswith("the device's roof is too low")
    assert "slow test device" in found["lower_bound"].cause
    assert int(found["roof_percent"].value.split(":")[0]) > len(run.layers) / 2  # most layers above it
    # held against its own A100, neither the bound nor any layer breaks the roof
    assert not {"lower_bound", "roof_percent"} & set(_by_check(checked(run)))
