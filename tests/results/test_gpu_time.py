"""A run's GPU time (CUPTI): the time source every view names, the GPU self-checks, the launch-bound advice, and the
run folder that keeps it all."""

from __future__ import annotations

import pytest

from workbench.analysis.advice import advise
from workbench.results.metrics import summary_rows
from workbench.results.run import GpuTime, Run, Timing, load_run
from workbench.results.stats import Interval
from workbench.views import charts
from workbench.views.report import report_html

LAYERS = [
    {"name": "conv1 + relu1", "type": "FusedConv", "time_ms": 0.15, "median_ms": 0.15, "host_ms": 0.02,
     "kernels": 2.0, "kernel_names": ["sm90_xmma_fprop_implicit_gemm", "memset"], "calls": 100},
    {"name": "fc", "type": "Gemm", "time_ms": 0.04, "median_ms": 0.04, "host_ms": 0.015, "kernels": 1.0,
     "kernel_names": ["cutlass_gemm"], "calls": 100},
    {"name": "shape", "type": "Shape", "time_ms": 0.0, "median_ms": 0.0, "host_ms": 0.004, "kernels": 0.0,
     "kernel_names": [], "calls": 100},
]  # fmt: skip


def _gpu(busy=0.2, layers=0.19, matched=0.95, kernel=0.185, copy=0.01, kernels=3.0):
    return GpuTime(
        busy_ms=busy, kernel_ms=kernel, copy_ms=copy, kernels=kernels, span_ms=busy * 1.05, inferences=100,
        layers_ms=layers, unattributed_ms=busy - layers, matched_share=matched, clock_shift_us=1.0,
    )  # fmt: skip


def _run(median=1.0, gpu=None, **kw):
    return Run(
        backend="onnxruntime",
        layers=LAYERS,
        timing=Timing(median, median * 0.98, median * 1.02, 0.02, "stable", trials=5),
        environment={"provider": "CUDAExecutionProvider", "gpu": "NVIDIA H100 80GB HBM3"},
        time_source="cupti",
        gpu_time=_gpu() if gpu is None else gpu,
        model={"name": "m"},
        **kw,
    )


def _found(run, key):
    return [f for f in run.findings if f.check == key]


def test_a_launch_bound_run_is_diagnosed_with_its_figures():
    run = _run(median=1.0)
    finding = next(f for f in advise(run) if f.title.startswith("Launch-bound"))
    assert finding.title == "Launch-bound: the GPU is idle 80% of each inference"
    assert finding.severity == "high"
    assert "busy 0.2 ms of the 1 ms median" in finding.detail and "3 kernels per inference" in finding.detail
    assert "CUDA graphs" in finding.fix and "larger batch" in finding.fix
    rows = dict(summary_rows(run))
    assert rows["GPU idle (launch-bound share)"] == "80% (GPU busy 0.2 ms of the 1 ms median; 3 kernels per inference)"
    assert rows["Layer times"] == "GPU kernels (CUPTI)"
    widened = Timing.from_trials([[1.0] * 20] * 3, gpu_time=_gpu())  # busy 0.2 of 1.0 ms: the host's 0.8 ms
    assert (widened.ci_low_ms, widened.ci_high_ms) == pytest.approx((0.6, 1.8))
    assert dict(summary_rows(_run(gpu=_gpu()).replace(timing=widened)))["GPU idle (launch-bound share)"] == (
        "80% (GPU busy 0.2 ms of the 1 ms median; 3 kernels per inference); the rerun interval lets the host's "
        "0.8 ms move 2× either way, as it does between runs minutes apart"
    )
    assert rows["GPU busy per inference (CUPTI) (ms)"] == "0.2000"


def test_a_gpu_bound_run_gets_no_launch_bound_advice():
    run = _run(median=0.21)
    assert not [f for f in advise(run) if f.title.startswith("Launch-bound")]
    assert _found(run, "gpu_time") == []


def test_gpu_busy_longer_than_the_inference_is_flagged():
    run = _run(median=0.15)
    (finding,) = _found(run, "gpu_time")
    assert finding.figure == "GPU busy per inference (ms)" and "133% of the timed median 0.15 ms" in finding.value


def test_gpu_time_in_no_layer_is_stated():
    run = _run(gpu=_gpu(busy=0.25, layers=0.19, matched=0.76))
    (finding,) = _found(run, "gpu_time")
    assert finding.value == "76" and "0.06 ms per inference was launched outside every node" in finding.cause


def test_layers_given_more_gpu_time_than_recorded_is_an_error():
    run = _run(gpu=_gpu(kernel=0.1, copy=0.0))
    (finding,) = _found(run, "gpu_time")
    assert finding.severity == "error" and finding.value == "0.19"


@pytest.mark.parametrize(
    ("backend", "provider", "source", "label"),
    [
        ("onnxruntime", "CUDAExecutionProvider", "", "host time around launches"),
        ("onnxruntime", "CPUExecutionProvider", "", "CPU time per node (ONNX Runtime profiler)"),
        ("tensorrt", None, "", "TensorRT IProfiler"),
        ("onnxruntime", "CUDAExecutionProvider", "cupti", "GPU kernels (CUPTI)"),
    ],
)
def test_every_run_names_where_its_layer_times_come_from(backend, provider, source, label):
    run = Run(backend=backend, layers=LAYERS, environment={"provider": provider}, time_source=source)
    assert run.time_source_label == label
    assert charts.layer_timing(run).layout.xaxis.title.text == f"median time per inference (ms) — {label}"
    assert label in charts.time_by_type(run).layout.xaxis.title.text


def test_the_report_shows_the_source_and_each_layers_kernels():
    page = report_html(_run())
    assert "Layer times: GPU kernels (CUPTI)." in page
    assert "sm90_xmma_fprop_implicit_gemm, memset" in page and "<th>host_ms</th>" in page


def test_a_host_timed_gpu_run_says_why_cupti_was_not_used():
    note = (
        "GPU kernel times not recorded — cupti-python is not installed (x): layer times are host time around launches"
    )
    run = Run(
        backend="onnxruntime", layers=LAYERS[:2], environment={"provider": "CUDAExecutionProvider"},
        time_source="host", notes=(note,),
    )  # fmt: skip
    assert dict(summary_rows(run))["Layer times"] == (
        "host time around launches (CUPTI not used: cupti-python is not installed (x))"
    )


def test_the_run_folder_keeps_gpu_time_source_and_kernel_names(tmp_path):
    run = _run()
    loaded = load_run(run.save(tmp_path / "r").directory)
    assert loaded.gpu_time == run.gpu_time and loaded.time_source == "cupti"
    assert loaded.layers["kernel_names"].tolist() == [layer["kernel_names"] for layer in LAYERS]
    assert loaded.layers["kernels"].tolist() == [2.0, 1.0, 0.0]


def test_the_run_folder_keeps_the_busy_interval_and_each_trials_clocks(tmp_path):
    import dataclasses

    from workbench.results.run import TrialStats

    gpu = dataclasses.replace(_gpu(), busy_low_ms=0.199, busy_high_ms=0.202)
    trials = tuple(TrialStats.from_times([0.5] * 20, 0.01, 0.0, (sm, 2619)) for sm in (1980, 1755, 1980))
    loaded = load_run(_run(gpu=gpu, trials=trials).save(tmp_path / "r").directory)
    assert loaded.gpu_time.busy_interval() == Interval(0.2, 0.199, 0.202)
    assert [(t.gpu_sm_mhz, t.gpu_memory_mhz) for t in loaded.trials] == [(1980, 2619), (1755, 2619), (1980, 2619)]


# ---- the runs measured on an H100 with CUPTI (data/runs/h100-cupti) -------------------------------------------------


def _h100(name):
    from workbench.model.samples import measured_run_path

    return load_run(measured_run_path("h100-cupti", name))


def test_on_resnet50_the_convolutions_carry_the_gpu_time_not_the_launches():
    run = _h100("h100-resnet50-b32-fp32")
    assert run.time_source_label == "GPU kernels (CUPTI)" and run.gpu_time.matched_share == 1.0
    by_type = run.layers.groupby("type")["time_ms"].sum()
    assert by_type["Conv"] / by_type.sum() > 0.7  # host time put an Add and a Relu first before
    assert run.layers.sort_values("time_ms").iloc[-1]["type"] == "Conv"
    assert run.layers["time_ms"].sum() == pytest.approx(run.gpu_time.busy_ms, rel=1e-6)
    assert run.gpu_time.idle_share(run.timing.median_ms) < 0.1
    assert not [f for f in advise(run) if f.title.startswith("Launch-bound")]


def test_small_batches_on_the_h100_are_diagnosed_launch_bound():
    run = _h100("h100-digits_cnn-b64-fp32")
    finding = next(f for f in advise(run) if f.title.startswith("Launch-bound"))
    assert finding.severity == "high" and "81%" in finding.title
    assert run.gpu_time.kernels == 13 and _found(run, "gpu_time") == []


# ---- the second pass on an H100 (data/runs/h100-cupti-2: gpu_validation with CUPTI on the graph replays) ----------


def _second_pass(name):
    import json

    from workbench.model.samples import measured_run_path

    return json.loads((measured_run_path("h100-cupti-2") / name).read_text())


def _checked_rows():
    return [r for r in _second_pass("summary.json")["rows"] if r["repeat"] == 0]


def test_where_the_gpu_sets_the_pace_the_layers_sum_to_the_graph_replays_event_time():
    bound = {(r["model"], r["shapes"].split(":")[1].split("x")[0], r["precision"]): r for r in _checked_rows()}
    gpu_paced = {k: r for k, r in bound.items() if r["idle_share"] < 0.5}
    assert {("digits_cnn", "8192", "fp32"), ("resnet50", "32", "fp32"), ("resnet50", "32", "fp16"),
            ("resnet_mini", "256", "fp16"), ("transformer_encoder", "128", "fp16")} <= set(gpu_paced)  # fmt: skip
    for key, row in gpu_paced.items():
        assert row["reference"] == "graph" and 0.9 <= row["layers_over_reference"] <= 1.1, key


def test_where_the_host_sets_the_pace_the_gap_is_the_idle_time_cupti_recorded_in_the_replay():
    launch_bound = [r for r in _checked_rows() if r["idle_share"] >= 0.5]
    assert len(launch_bound) == 6  # digits b64, resnet_mini b8, transformer b8 in fp32 and fp16
    for row in launch_bound:
        replay = row["replay"]
        assert row["layers_over_reference"] < 0.9  # against the graph's events: outside, as measured before
        assert 0.95 <= row["layers_over_replay_busy"] <= 1.05  # against the replay's own busy time: the same
        assert replay["idle_ms"] > 0 and replay["span_ms"] == pytest.approx(
            replay["busy_ms"] + replay["idle_ms"], rel=0.02
        )  # medians of each
        assert row["graph_median_ms"] > replay["span_ms"]  # the events also hold the graph's launch


def test_host_paced_runs_say_so_with_their_gpu_busy_time_and_gpu_paced_runs_do_not():
    from workbench.model.samples import measured_run_path

    for name in ("h100-digits_cnn-b64-fp32", "h100-resnet_mini-b8-fp32", "h100-transformer_encoder-b8-fp32"):
        run = load_run(measured_run_path("h100-cupti-2", name))
        paced = [c for c in run.timing.causes if c.startswith("host-paced")]
        busy = run.gpu_time.busy_interval()
        assert run.timing.verdict == "unstable" and len(paced) == 1
        assert f"{busy.value:.4g} ms ({busy.low:.4g}–{busy.high:.4g})" in paced[0]
        assert busy.low <= busy.value <= busy.high and busy.high - busy.low < 0.05 * busy.value
        assert {t.gpu_sm_mhz for t in run.trials} == {1980}
    for name in ("h100-resnet50-b32-fp32", "h100-resnet_mini-b256-fp32", "h100-digits_cnn-b8192-fp32"):
        run = load_run(measured_run_path("h100-cupti-2", name))
        assert run.timing.verdict == "stable" and not run.timing.causes


def test_reruns_of_the_second_pass_as_committed():
    import itertools

    runs = _second_pass("reruns.json")["runs"]
    by_case: dict = {}
    for r in runs:
        by_case.setdefault(r["case"], []).append(r)
    pairs = [(a, b) for rs in by_case.values() for a, b in itertools.permutations(rs, 2)]
    inside = [a["ci_low_ms"] <= b["median_ms"] <= a["ci_high_ms"] for a, b in pairs]
    assert (sum(inside), len(pairs)) == (22, 30)  # 73%: not the 90% asked (docs/gpu-validation.md says why)
    misses = [(a, b) for (a, b), ok in zip(pairs, inside) if not ok]
    labelled = [(a, b) for a, b in misses if "unstable" in (a["verdict"], b["verdict"])]
    assert len(labelled) == 3
    # every miss no label foresaw is a GPU-paced run (idle < 50%), stable to within its ±0.4–2.5%, 1.0–4.0% apart
    for a, b in misses:
        if (a, b) not in labelled:
            assert a["gpu_busy_ms"] / a["median_ms"] > 0.5
            assert 0.009 < abs(b["median_ms"] / a["median_ms"] - 1) < 0.041


# ---- the third pass on an H100 (data/runs/h100-cupti-3: five profiles of each case, rounds ~80 s apart) --------


def _third_pass_rows() -> tuple:
    """Every committed rerun as ``benchmarks/interval_coverage.py --evaluate`` reads it (samples, CPU waits, clocks,
    CUPTI's figures), and that script's coverage and Timing functions, which recompute them with this checkout."""
    import json
    import sys
    from pathlib import Path

    from workbench.model.samples import measured_run_path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import interval_coverage

    rows = json.loads((measured_run_path("h100-cupti-3") / "coverage.json").read_text())["rows"]
    return rows, interval_coverage


def _inside(coverage: dict) -> tuple[int, int]:
    return sum(m["inside"] for m in coverage.values()), sum(m["pairs"] for m in coverage.values())


def test_identical_reruns_on_the_h100_fall_inside_each_others_rerun_interval():
    from workbench.records import from_dict

    rows, tool = _third_pass_rows()
    found = tool.coverage(rows)
    assert len(found) == 7 and {m["runs"] for m in found.values()} == {5}
    assert sorted(r["replicate"] for r in rows if r["model"] == "resnet50 x:32x3x224x224 fp32") == [0, 1, 2, 3, 4]
    assert _inside(found) == (140, 140)  # the issue asks for 90%
    # the trials alone (the interval before CUPTI's busy time was used): 33 of 140, the GPU-paced runs' ±0.1%
    # intervals missing reruns 0.5–2.7% away
    assert _inside(tool.coverage([{**r, "gpu_sm_mhz": None, "gpu_time": None} for r in rows])) == (33, 140)
    for row in rows:
        timing, gpu = tool._timing(row, None), from_dict(GpuTime, row["gpu_time"])
        host = timing.median_ms - gpu.busy_ms
        assert timing.ci_high_ms == pytest.approx(max(timing.ci_high_ms, gpu.busy_high_ms + 2 * host))
        if gpu.idle_share(timing.median_ms) < 0.3:  # GPU-paced: stable, and the interval says why it is wide
            assert timing.verdict == "stable", row["model"]
            assert timing.ci_high_ms / timing.median_ms - 1 < 0.2, row["model"]


def test_the_host_factor_came_from_the_second_pass_and_covers_its_reruns():
    """HOST_RERUN_FACTOR was read off the second pass (the host part moved up to 2.1× between its rounds); applied to
    the intervals those runs reported, 29 of its 30 ordered pairs hold (was 22): the one miss is transformer_encoder
    b8, labelled host-paced."""
    import itertools

    from workbench.results.stats import HOST_RERUN_FACTOR, gpu_rerun_interval

    runs = _second_pass("reruns.json")["runs"]
    by_case: dict = {}
    for r in runs:
        by_case.setdefault(r["case"], []).append(r)
    misses, pairs = [], 0
    for a, b in (p for rs in by_case.values() for p in itertools.permutations(rs, 2)):
        busy = Interval(a["gpu_busy_ms"], a["gpu_busy_low_ms"], a["gpu_busy_high_ms"])
        held = gpu_rerun_interval(Interval(a["median_ms"], a["ci_low_ms"], a["ci_high_ms"]), busy)
        pairs += 1
        if not held.low <= b["median_ms"] <= held.high:
            misses.append((a, b))
    assert HOST_RERUN_FACTOR == 2.0 and (pairs - len(misses), pairs) == (29, 30)
    ((a, b),) = misses
    assert a["case"] == "transformer_encoder input_ids:8x128 fp32" and "host-paced" in a["causes"][-1]
