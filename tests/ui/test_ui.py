"""The workbench panel driven like a user would: set widget values, click buttons, read what the tabs show."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone

import pytest
import traitlets
from support import DATA, make_mlp

from workbench.backends import get_backend
from workbench.config import BuildConfig
from workbench.env import device_memory_bytes
from workbench.errors import Cancelled, WorkbenchError
from workbench.results.store import Store
from workbench.ui import Workbench
from workbench.ui.parts import PLOTLY_MIME, figures_in
from workbench.views.charts import layer_labels

FAST = 20  # timed inferences per build: enough for statistics, quick on 2 cores


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "workspace")


@pytest.fixture
def panel(store):
    w = Workbench("digits_cnn", store=store)
    w.iterations.value = FAST
    return w


def bar_labels(out) -> list[str]:
    """Layer names on the bars of the (first) figure an Output shows."""
    fig = figures_in(out)[0]
    return [y for trace in fig["data"] for y in trace["y"]]


def test_panel_opens_on_the_sample_with_its_summary_and_data(panel):
    assert panel.model.name == "digits_cnn" and panel.model_picker.value == "digits_cnn"
    assert "input: float32[batch, 1, 8, 8]" in panel.model_summary.value
    assert list(panel.shape_fields) == ["input"] and panel.shape_fields["input"][1].value == "1x1x8x8"
    assert panel.calibration.value == "sample" and panel.eval_path.value.endswith("digits_test.npz")
    assert panel.backend.value == "auto" and panel.backend_name == "onnxruntime"
    assert "tensorrt" in panel.backend_note.value.lower()  # why auto did not pick TensorRT here


def test_precisions_the_backend_cannot_do_are_disabled_with_the_reason(panel):
    support = get_backend("onnxruntime").precision_support()
    for precision, (ok, reason) in support.items():
        button = panel.precision.buttons[precision]
        assert button.disabled == (not ok)
        if not ok:
            assert button.tooltip == reason and precision in panel.precision.reasons.value
    assert panel.precision.buttons["bf16"].disabled and not panel.precision.buttons["fp8"].disabled
    assert "no BF16 kernels" in panel.precision.reasons.value

    panel.precision.buttons["bf16"].value = True  # a click that cannot happen in a browser changes nothing
    assert panel.precision.value == "fp32" and not panel.precision.buttons["bf16"].value
    with pytest.raises(traitlets.TraitError, match="not available here"):
        panel.precision.value = "bf16"

    panel.precision.buttons["fp16"].value = True  # clicking a toggle chooses it and releases the others
    assert panel.precision.value == "fp16" and panel.config().precision == "fp16"
    assert [p for p, b in panel.precision.buttons.items() if b.value] == ["fp16"]
    assert panel.calibration.disabled  # only int8/fp8 calibrate
    panel.precision.value = "int8"
    assert not panel.calibration.disabled


def test_workspace_optimization_and_shapes_make_the_config(panel):
    sizes = [v for _, v in panel.workspace.options]
    assert sizes[0] == 0 and sizes[1] == 16 << 20 and all(b == 2 * a for a, b in itertools.pairwise(sizes[1:]))
    assert sizes[-1] <= (device_memory_bytes() or 64 << 30) < 2 * sizes[-1]  # up to the device memory
    assert panel.config().workspace_bytes is None  # "default": TensorRT decides
    panel.workspace.value = 256 << 20
    panel.shape_fields["input"][1].value = "4x1x8x8"
    config = panel.config()
    assert config.workspace_bytes == 256 << 20 and config.shape_map == {"input": (4, 1, 8, 8)}
    assert config.profiles == ()  # min = opt = max needs no range
    panel.shape_fields["input"][0].value = "1x1x8x8"
    panel.shape_fields["input"][2].value = "16x1x8x8"
    (rng,) = panel.config().profiles
    assert (rng.min, rng.opt, rng.max) == ((1, 1, 8, 8), (4, 1, 8, 8), (16, 1, 8, 8))
    assert panel.opt_level.disabled and not panel.ort_optimization.disabled  # ONNX Runtime: its own setting
    panel.ort_optimization.value = "basic"
    assert panel.config().ort_graph_optimization == "basic"
    panel.iterations.value = 0  # the adaptive count, as the CLI and wb.profile default to
    assert panel.config().iterations is None and panel.config().timed_runs() == BuildConfig().timed_runs()
    panel.iterations.value = 7
    assert panel.config().iterations == 7 and panel.config().timed_runs() == (7, 7, 0.0)


def test_build_shows_metrics_charts_layers_and_saves_the_run(panel, store):
    panel.workspace.value = 64 << 20
    run = panel.build()
    assert run.directory.parent == store.path / "runs" and store.get(run.id).config.workspace_bytes == 64 << 20
    assert "Latency mean (ms)" in panel.metrics.value and run.id in panel.metrics.value
    timing = figures_in(panel.timing_chart)
    assert len(timing) == 2 and "Per-layer time" in timing[0]["layout"]["title"]["text"]
    slowest = run.layers.sort_values("median_ms", ascending=False, kind="stable")["name"]
    assert sorted(bar_labels(panel.timing_chart)) == sorted(layer_labels(slowest))  # short labels, full on hover
    assert "Per-layer memory" in figures_in(panel.memory_chart)[0]["layout"]["title"]["text"]
    assert figures_in(panel.latency_chart)[0]["data"][0]["type"] == "histogram"
    assert PLOTLY_MIME in panel.timing_chart.outputs[0]["data"]  # what JupyterLab renders
    # the eval data of the sample gives the accuracy tab real labels
    assert "Accuracy on 450 labelled samples" in panel.accuracy.value

    shown = panel.layer_table.rows()
    assert list(shown["median_ms"]) == sorted(run.layers["median_ms"], reverse=True)  # ranked by the median
    panel.layer_table.sort_by.value = "name"
    panel.layer_table.descending.value = False
    assert list(panel.layer_table.rows()["name"]) == sorted(run.layers["name"])
    panel.layer_table.filter.value = "conv"
    assert set(panel.layer_table.rows()["type"]) == {"Conv"}

    assert "Phases" not in panel.log.text and "Create ONNX Runtime session" in panel.log.text
    assert "Timed run" in panel.log.text and "Per-layer profile" in panel.log.text
    assert panel.progress_bar.value == 1 and panel.progress_bar.bar_style == "success"
    assert list(panel.history.runs()["run"]) == [run.id] and run.id in panel.history.table.value


def test_the_button_builds_in_the_background(panel, store):
    panel.build_button.click()
    assert panel.building and panel.build_button.disabled and not panel.cancel_button.disabled
    run = panel.wait(timeout=120)
    assert not panel.building and not panel.build_button.disabled and panel.cancel_button.disabled
    assert panel.run is run and run.id in store and "Done in" in panel.status.value


def test_cancel_stops_the_build_and_saves_nothing(panel, store):
    panel.iterations.value = 10_000_000  # a timed loop far longer than the test
    panel.eval_path.value = ""
    panel.build_button.click()
    deadline = time.monotonic() + 60
    while "Timed run" not in panel.progress_label.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Timed run" in panel.progress_label.value, "the progress bar follows the backend's steps"
    panel.cancel_button.click()
    with pytest.raises(Cancelled):
        panel.wait(timeout=30)
    assert "Cancelled" in panel.status.value and panel.progress_bar.bar_style == "warning"
    assert len(store) == 0 and not list((store.path / "runs").iterdir())
    assert not panel.build_button.disabled and panel.cancel_button.disabled


def test_errors_are_shown_as_one_line_not_raised_into_the_void(panel, store):
    panel.shape_fields["input"][1].value = "four"
    panel.build_button.click()  # the button path: the error lands in the status line
    assert "Cannot read shape" in panel.status.value and panel._future is None
    with pytest.raises(WorkbenchError, match="Cannot read shape"):
        panel.build()  # the scripted path raises it
    panel.shape_fields["input"][1].value = "1x1x8x8"
    panel.precision.value = "int8"
    panel.calibration.value = "file"
    with pytest.raises(WorkbenchError, match="No calibration file"):
        panel.build()
    panel.model_path.value = "/no/such/model.onnx"
    assert "does not exist" in panel.status.value and panel.model.name == "digits_cnn"
    assert len(store) == 0


def test_a_bug_after_the_build_still_ends_it_with_the_error_shown(panel, store, monkeypatch):
    """Whatever fails in the build thread (here: showing the run), the Future resolves and the buttons come back."""

    def broken_show(run):
        raise RuntimeError("chart failed\nsecond line of the message")

    monkeypatch.setattr(panel, "show", broken_show)
    panel.eval_path.value = ""
    panel.build_button.click()
    with pytest.raises(RuntimeError, match="chart failed"):
        panel.wait(timeout=120)
    assert not panel.building and not panel.build_button.disabled and panel.cancel_button.disabled
    assert "RuntimeError: chart failed (traceback in the log)" in panel.status.value
    assert "second line" not in panel.status.value and "Traceback" in panel.log.text


def test_fp16_and_int8_builds_compare_and_survive_a_restart(panel, store):
    """The newcomer's path: build FP32, FP16 and INT8 (digits calibration set), compare, restart, find them."""
    fp32 = panel.build()
    panel.precision.buttons["fp16"].value = True
    fp16 = panel.build()
    panel.precision.buttons["int8"].value = True
    int8 = panel.build()
    assert [r.precision for r in (fp32, fp16, int8)] == ["fp32", "fp16", "int8"]
    assert int8.variant["calibration"]["samples"] == 256 and not int8.variant["calibration"].get("random")
    assert int8.accuracy.label_accuracy > 0.9 and "Accuracy on 450 labelled samples" in panel.accuracy.value
    assert {"int8", "uint8"} & set(int8.layers["precision"]), "quantized layers show up in the layer table"

    result = panel.compare([fp32.id, int8.id])
    assert panel.tabs.get_title(panel.tabs.selected_index) == "Compare"
    assert set(panel.comparison.run_select.value) == {fp32.id, int8.id}
    assert result.metrics.loc["Precision"].tolist() == ["fp32", "int8"]
    assert "Speed-up vs A" in panel.comparison.metrics.value
    assert "Per-layer time, aligned" in figures_in(panel.comparison.layers_chart)[0]["layout"]["title"]["text"]
    assert figures_in(panel.comparison.pareto_chart)[0]["data"][0]["name"] == "Pareto front"
    assert "ms B" in panel.comparison.layer_diff.value

    restarted = Workbench(store=Store(store.path))  # a new kernel: a new panel on the same workspace
    listed = restarted.history.runs()
    assert set(listed["run"]) == {fp32.id, fp16.id, int8.id}
    assert {v for _, v in restarted.comparison.run_select.options} == set(listed["run"])
    restarted.history.show(fp16.id)
    assert restarted.run.id == fp16.id and fp16.id in restarted.metrics.value


def test_compare_button_needs_two_runs_and_takes_the_oldest_as_baseline(panel):
    first = panel.build()
    panel.comparison.run_select.value = (first.id,)
    panel.comparison.compare_button.click()
    assert "at least 2 runs" in panel.comparison.status.value
    panel.precision.value = "fp16"
    second = panel.build()
    panel.comparison.run_select.value = (second.id, first.id)
    panel.comparison.compare_button.click()
    assert [r.id for r in panel.comparison.result.runs] == [first.id, second.id]
    assert "A = digits_cnn fp32" in panel.comparison.status.value
    panel.comparison.interleave.value = True  # a fair A/B: both timed again, alternately, in one session
    panel.comparison.compare_button.click()
    fair = panel.comparison.result.runs
    assert [r.extra["interleaved_from"] for r in fair] == [first.id, second.id]
    assert fair[0].extra["interleaved"] == fair[1].extra["interleaved"] and len(fair[0].trials) == 5
    assert "Timed again alternately in one session." in panel.comparison.status.value


def test_history_filters_by_model(panel, store):
    digits = panel.build()
    panel.model_picker.value = "resnet_mini"
    assert panel.model.name == "resnet_mini" and panel.eval_path.value == ""
    assert panel.calibration.options[0][1] == "random"  # no calibration set ships with it
    resnet = panel.build()
    assert set(panel.history.runs()["run"]) == {digits.id, resnet.id}
    panel.history.model_filter.value = "resnet_mini"
    assert list(panel.history.runs()["run"]) == [resnet.id]
    assert [v for _, v in panel.comparison.run_select.options] == [resnet.id]  # Compare follows the filter


def test_a_model_from_a_path_or_an_upload(panel, tmp_path):
    path = make_mlp(tmp_path / "mlp.onnx")
    panel.model_path.value = str(path)
    assert panel.model.path == path and panel.model_picker.value == "other"
    assert "x: float32[N, 4]" in panel.model_summary.value

    data = make_mlp(tmp_path / "uploaded.onnx", hidden=4).read_bytes()
    panel.model_upload.value = (
        {
            "name": "uploaded.onnx",
            "type": "",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": datetime.now(timezone.utc),
        },
    )
    assert panel.model.name.endswith("uploaded") and panel.model.path.parent == panel.store.path / "uploads"
    assert panel.model.path.read_bytes() == data and panel.model_upload.value == ()  # ready for the next one
    run = panel.build()
    assert run.model["name"] == panel.model.name

    panel.model_picker.value = "digits_cnn"
    assert panel.model.name == "digits_cnn"


def test_a_dynamic_sequence_model_gets_shape_fields_per_dynamic_input(store):
    w = Workbench(DATA / "transformer_encoder.onnx", store=store)
    assert list(w.shape_fields) == ["input_ids"] and w.shape_fields["input_ids"][1].value == "1x32"
    w.shape_fields["input_ids"][1].value = "2x16"
    w.iterations.value = 5
    run = w.build()
    assert run.config.shape_map == {"input_ids": (2, 16)} and run.latency.batch == 2


def test_a_backend_that_compiles_but_cannot_run_here_gets_a_compile_only_state(store):
    """TensorRT-RTX without a supported GPU: Build compiles the real engine; nothing claims a time."""
    pytest.importorskip("tensorrt_rtx")
    from workbench.results.run import NOT_TIMED

    panel = Workbench("digits_cnn", store=store)
    assert ("tensorrt-rtx (compile only)", "tensorrt-rtx") in panel.backend.options
    assert panel.arch.layout.display == "none"
    panel.backend.value = "tensorrt-rtx"
    assert panel.compile_only and panel.build_button.description == "Compile" and panel.arch.layout.display == ""
    assert "compile only" in panel.compile_note.value and "sm89" in panel.compile_note.value
    panel.arch.value = "sm86"
    assert panel.precision.buttons["fp8"].disabled and "8.9" in panel.precision.buttons["fp8"].tooltip
    run = panel.build()
    assert run.timed is False and run.compiled.target == "sm86" and store.get(run.id).compiled == run.compiled
    assert NOT_TIMED in panel.metrics.value and "Built for" in panel.metrics.value
    assert NOT_TIMED in str(figures_in(panel.timing_chart)[0]["layout"]["annotations"][0]["text"])
    assert "Per-layer memory" in figures_in(panel.memory_chart)[0]["layout"]["title"]["text"]
    assert len(panel.layer_table.rows()) == len(run.layers) > 0
    assert "Compile digits_cnn: fp32 on tensorrt-rtx for sm86" in panel.log.text


def test_the_sweep_tab_calibrates_each_sample_on_its_own_data(store):
    """An outlier_digits sweep calibrates on outlier_digits_calib (not the digits set) and evaluates on its test set."""
    import numpy as np

    from workbench.model.samples import SAMPLES

    panel = Workbench("outlier_digits", store=store)
    panel.iterations.value = 5
    panel.sweeps.precisions.value, panel.sweeps.batches.value, panel.sweeps.workers.value = "int8", "1", 1
    result = panel.sweeps.start()
    (row,) = result.record.in_state("done")
    run = store.get(row["run"])
    own = np.load(SAMPLES["outlier_digits_calib"])
    assert run.variant["calibration"]["samples"] == len(own[own.files[0]]) != 256  # digits_calib has 256
    assert run.accuracy is not None and run.accuracy.samples == len(np.load(SAMPLES["outlier_digits_test"])["labels"])
    panel.calibration.value = "random"
    assert panel._sweep_request()["random_calibration"] and panel._sweep_request()["calibration"] is None


def test_input_values_show_what_the_graph_says_and_take_a_range(store):
    """A sample rate an If compares with, a table's row count: the panel shows them, and a range typed in reaches
    the build (the run's notes say it was given) or is refused in one line naming the input."""
    from real_models import real_model

    w = Workbench(real_model("silero_vad_ifless"), store=store)
    assert list(w.value_fields) == ["input", "sr", "state"]
    assert "16000" in w.value_fields["sr"].placeholder and "Equal" in w.value_fields["sr"].placeholder
    w.shape_fields["input"][1].value = "1x512"
    w.iterations.value = 5
    w.value_fields["input"].value = "-0.5..0.5"
    run = w.build()
    values = next(n for n in run.notes if n.startswith("input values"))
    assert "input -0.5..0.5 (given)" in values and "sr 16000" in values
    w.value_fields["sr"].value = "fast"
    w.build_button.click()
    assert "Input range &#x27;fast&#x27; for &#x27;sr&#x27;" in w.status.value  # escaped: it is the user's text
    assert len(store) == 1  # nothing was built


def test_serve_tab_load_tests_the_run_shown_and_keeps_the_serving_run(panel, store):
    """The Serve tab serves the run shown through a real Triton, shows one line per level and the chart, and keeps
    the serving run in the history; no run yet is a one-line error, not a traceback."""
    with pytest.raises(WorkbenchError, match="No run to serve"):
        panel.serve.start("load")  # the scripted path raises
    panel.serve.load_button.click()  # the button path: the error lands in the status line
    assert "No run to serve" in panel.serve.status.value
    run = panel.build()
    panel.serve.concurrency.value = "1,4"
    panel.serve.duration.value = 0.8
    (served,) = panel.serve.start("load")
    assert "Done" in panel.serve.status.value, panel.serve.status.value
    assert served.id in store and served.serving.served_run == run.id and served.serving.counts_agree
    assert [lv.concurrency for lv in served.serving.levels] == [1, 4]
    assert panel.serve.summary.value.count("c=") == 2 and "= Triton" in panel.serve.summary.value
    (figure,) = figures_in(panel.serve.chart)
    assert "Pareto front" in [t.get("name") for t in figure["data"]]
    assert panel.tabs.get_title(len(panel.tabs.children) - 1) == "Serve"
