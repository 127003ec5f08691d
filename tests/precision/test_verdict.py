"""Accuracy verdicts: a variant whose output collapses is "broken" wherever it is shown; tolerances are the user's."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.analysis.advice import advise
from workbench.analysis.compare import compare, pareto_points
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.model.onnx_model import load_model
from workbench.precision.accuracy import Tolerance, judge, measure_accuracy, output_agreement
from workbench.precision.variant import Variant
from workbench.results.run import Accuracy, LatencyStats, OutputAgreement, Run
from workbench.results.store import Store
from workbench.ui.panel import done_html
from workbench.views.report import report_html


def _segmenter(scale: float = 1.0, offset: float = 0.0) -> onnx.ModelProto:
    """A tiny text-detector-like model: Conv -> Sigmoid probability map [N, 1, H, W], then * scale + offset
    (scale 0 with offset 0 is the INT8 collapse seen on PP-OCRv4 det: an all-zero map)."""
    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(rng.standard_normal((1, 3, 3, 3)).astype(np.float32), "w")
    consts = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("scale", scale), ("offset", offset))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["p"], name="sigmoid"),
        helper.make_node("Mul", ["p", "scale"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "offset"], ["maps"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "seg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", 1, 16, 16])],
        [weight, *consts],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def segmenter():
    return load_model(_segmenter().SerializeToString(), name="segmenter")


def _variant(source, scale, offset=0.0) -> Variant:
    model = load_model(_segmenter(scale, offset).SerializeToString(), name="segmenter")
    return Variant(model=model, source=source, precision="int8")


def _inputs(samples=8):
    return {"x": np.random.default_rng(1).standard_normal((samples, 3, 16, 16)).astype(np.float32)}


def test_an_all_zero_output_is_broken_although_its_max_abs_error_is_small():
    reference = np.full((4, 1, 8, 8), 0.01, np.float32)
    reference[:, :, 2:4, :] = 0.9  # a few "text" pixels
    zeros = np.zeros_like(reference)
    agreement = output_agreement("maps", zeros, reference)
    assert agreement.collapsed and agreement.rel_l2_error == pytest.approx(1.0) and agreement.mask_iou == 0.0
    assert agreement.cosine == 0.0
    verdict, reason = judge([agreement])
    assert verdict == "broken" and reason.startswith("output 'maps' (mask): collapsed to a constant")
    assert "cosine 0 < 0.9" in reason and "mask IoU at 0.5 0 < 0.5" in reason
    # a constant output against a constant reference is no collapse, and proves nothing either way
    same = output_agreement("c", np.ones((2, 3, 4)), np.ones((2, 3, 4)))
    assert not same.collapsed and same.kind == "constant" and same.constant_value == 1.0
    verdict, reason = judge([same])
    assert verdict == "inconclusive" and "'c' (all 1) is constant in FP32" in reason and "proves nothing" in reason


def test_measured_verdicts_ok_degraded_broken_and_the_users_tolerance(segmenter):
    inputs = _inputs()
    ok = measure_accuracy(_variant(segmenter, 1.0), inputs, data="8 test samples")
    assert ok.verdict == "ok" and ok.data == "8 test samples" and ok.tolerance["cosine_ok"] == 0.99
    (maps,) = ok.outputs
    assert maps.mask_iou == 1.0 and maps.rel_l2_error == 0.0 and maps.top1_agreement is None

    degraded = measure_accuracy(_variant(segmenter, 1.25), inputs)  # same direction, 25% too large
    (maps,) = degraded.outputs
    assert maps.cosine == pytest.approx(1.0) and maps.rel_l2_error == pytest.approx(0.25, rel=1e-3)
    assert degraded.verdict == "degraded" and "relative L2 error 0.25 > 0.15" in degraded.verdict_reason
    # the user's tolerance decides: 0.3 allowed is ok, 0.2 as the broken bound is broken
    assert measure_accuracy(_variant(segmenter, 1.25), inputs, tolerance="rel_error_ok=0.3").verdict == "ok"
    strict = measure_accuracy(
        _variant(segmenter, 1.25), inputs, tolerance={"rel_error_ok": 0.1, "rel_error_broken": 0.2}
    )
    assert strict.verdict == "broken" and strict.tolerance["rel_error_broken"] == 0.2

    broken = measure_accuracy(_variant(segmenter, 0.0), inputs)
    (maps,) = broken.outputs
    assert maps.collapsed and maps.max_abs_error <= 1.0 and maps.mask_iou == 0.0
    assert broken.verdict == "broken" and "collapsed" in broken.verdict_reason


def test_tolerance_values_are_checked():
    assert Tolerance.parse("cosine_ok=0.995, cosine_broken=0.95") == Tolerance(cosine_ok=0.995, cosine_broken=0.95)
    with pytest.raises(WorkbenchError, match="Unknown tolerance 'cosine'"):
        Tolerance.parse("cosine=0.9")
    with pytest.raises(WorkbenchError, match="Cannot read tolerance 'cosine_ok'"):
        Tolerance.parse("cosine_ok")
    with pytest.raises(WorkbenchError, match="cosine_broken=0.999 is above cosine_ok=0.99"):
        Tolerance(cosine_broken=0.999)


def _run(precision, mean_ms, accuracy=None, model="segmenter", shapes=None):
    times = [mean_ms] * 5
    return Run(
        backend="onnxruntime",
        layers=[{"name": "conv", "type": "Conv", "time_ms": mean_ms}],
        latency=LatencyStats.from_times(times),
        latency_ms=times,
        accuracy=accuracy,
        model={"name": model, "sha256": model},
        variant={"precision": precision},
        profiled_shapes=shapes or {"x": (1, 3, 640, 640)},
        environment={"cpu": "test cpu"},
    )


@pytest.fixture(scope="module")
def broken_accuracy(segmenter):
    return measure_accuracy(_variant(segmenter, 0.0), _inputs(), data="8 seeded random samples")


def test_a_broken_run_is_broken_in_the_report_panel_advice_history_compare_and_pareto(
    broken_accuracy, capsys, monkeypatch, tmp_path
):
    # a history of these runs only: the session's shared workspace holds other tests' runs and their checks
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path / "workspace"))
    fp32 = _run("fp32", 10.0)
    fp16 = _run(
        "fp16",
        6.0,
        Accuracy(
            samples=8,
            outputs=(OutputAgreement("maps", 1e-3, 1e-3, 1e-4, 0.99999, rel_l2_error=1e-3),),
            verdict="ok",
            verdict_reason="every output within the tolerance",
        ),
    )
    int8 = _run("int8", 3.0, broken_accuracy)

    html = report_html(int8)
    assert "Accuracy verdict" in html and "BROKEN" in html and "Try:" in html and "calib-method" in html
    assert "x:1x3x640x640" in html
    status = done_html(int8, 1.0, "ws")
    assert "#1b5e20" not in status and "BROKEN" in status  # never green
    assert "#1b5e20" in done_html(fp16, 1.0, "ws")
    (first, *_) = advise(int8)
    assert first.severity == "high" and "BROKEN" in first.title and "exclude" in first.fix

    points = pareto_points([fp32, fp16, int8])
    assert points.attrs["metric"] == "cosine_distance"  # sees the collapse; max abs error would not
    assert list(points["front"]) == [True, True, False]  # fastest, but broken: no trade-off
    assert points["error"].iloc[2] == pytest.approx(1.0)
    comparison = compare([fp32, int8])
    metrics = comparison.metrics
    assert metrics.loc["Accuracy verdict", "B"] == "broken" and metrics.loc["Input shapes", "A"] == "x:1x3x640x640"

    store = Store()
    for run in (fp32, int8):
        store.add(run)
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal: the verdict is among the columns kept
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    table, left_out = out.split("\n(left out to fit the terminal: ")
    header, *rows = table.splitlines()
    assert "verdict" in header.split() and max(map(len, [header, *rows])) <= 80
    verdicts = {row.split()[0]: row.split()[-1] for row in rows}  # the checks column is empty: the verdict is last
    assert verdicts[int8.id] == "broken" and verdicts[fp32.id] != "broken"
    assert "shapes" in left_out.split(";")[0] and "x:1x3x640x640" not in out
    assert main(["history", "--wide"]) == 0  # every column: the shapes and the device too
    out = capsys.readouterr().out
    (int8_line,) = [line for line in out.splitlines() if line.startswith(int8.id)]
    assert "x:1x3x640x640" in int8_line and "broken" in int8_line and "test cpu" in int8_line
    row = store.list().set_index("run").loc[int8.id]
    assert row["verdict"] == "broken" and row["shapes"] == "x:1x3x640x640" and row["min_cosine"] == 0.0


def test_compare_warns_about_other_models_and_shapes():
    a, b = _run("fp32", 1.0, model="det"), _run("fp32", 1.0, model="rec", shapes={"x": (1, 3, 48, 320)})
    warnings = compare([a, b]).warnings()
    assert any("different models (A: det, B: rec)" in w for w in warnings)
    assert any("different input shapes" in w and "B: x:1x3x48x320" in w for w in warnings)
    assert "warning: these runs are of different models" in compare([a, b]).to_text()
    assert compare([a, _run("int8", 1.0, model="det")]).warnings() == []


def test_old_run_json_without_verdict_fields_still_loads(tmp_path):
    run = _run("int8", 1.0, Accuracy(samples=1, outputs=(OutputAgreement("y", 0.1, 0.1, 0.1, 0.5),)))
    saved = run.save(tmp_path / "run")
    import json

    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    for key in ("data", "verdict", "verdict_reason", "tolerance"):
        del meta["accuracy"][key]
    for key in ("rel_l2_error", "mask_iou", "collapsed"):
        del meta["accuracy"]["outputs"][0][key]
    meta.pop("profiled_shapes")
    meta["extra"]["shapes"] = {"x": [2, 3, 16, 16]}
    (tmp_path / "run" / "run.json").write_text(json.dumps(meta))
    from workbench.results.run import load_run

    loaded = load_run(saved.directory)
    assert loaded.accuracy.verdict == "" and loaded.accuracy.outputs[0].rel_l2_error is None
    assert loaded.shapes_text == "x:2x3x16x16"


def _mos(samples=8, seed=5):
    """Three MOS-like scores per sample (DNSMOS: SIG, BAK, OVRL between 1 and 5), close to each other."""
    return np.random.default_rng(seed).uniform(2.8, 3.2, (samples, 3)).astype(np.float32)


def test_kinds_of_outputs_from_shape_dtype_and_values():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 1000)).astype(np.float32)
    probabilities = np.exp(logits[:, :3]) / np.exp(logits[:, :3]).sum(axis=1, keepdims=True)
    unit = logits[:, :64] / np.linalg.norm(logits[:, :64], axis=1, keepdims=True)
    kinds = {
        "logits": output_agreement("a", logits, logits).kind,
        "3 probabilities": output_agreement("a", probabilities, probabilities).kind,
        "log-probabilities": output_agreement("a", np.log(probabilities), np.log(probabilities)).kind,
        "unit rows": output_agreement("a", unit, unit).kind,
        "MOS": output_agreement("a", _mos(), _mos()).kind,
        "label map": output_agreement("a", *[np.eye(8, dtype=np.int64)[None]] * 2).kind,
        "probability map": output_agreement("a", *[rng.uniform(0, 1, (2, 1, 8, 8))] * 2).kind,
        "features": output_agreement("a", *[rng.standard_normal((2, 5, 8))] * 2).kind,
        "zeros": output_agreement("a", np.zeros((4, 1000)), np.zeros((4, 1000))).kind,
    }
    assert output_agreement("a", np.array([0.7]), np.array([0.7])).kind == "regression"  # one sample's value
    assert output_agreement("a", np.zeros(1), np.zeros(1)).kind == "constant"
    assert kinds == {
        "logits": "class scores",
        "3 probabilities": "class scores",
        "log-probabilities": "class scores",
        "unit rows": "embedding",
        "MOS": "regression",
        "label map": "class ids",
        "probability map": "mask",
        "features": "regression",
        "zeros": "constant",
    }


def test_a_regression_output_is_judged_by_cosine_and_relative_l2_not_top1():
    """DNSMOS's three MOS scores: a variant off by a few tenths flips their argmax on most samples (a top-1
    agreement of 12.5% was called BROKEN); by cosine and relative L2 error it is degraded."""
    reference = _mos()
    noise = np.random.default_rng(9).standard_normal(reference.shape).astype(np.float32)
    variant = reference + 0.06 * reference.mean() * noise
    agreement = output_agreement("mos", variant, reference)
    assert agreement.kind == "regression" and agreement.top1_agreement is None
    assert np.mean(variant.argmax(axis=1) == reference.argmax(axis=1)) < 0.9  # what a top-1 would have judged
    assert 0.99 < agreement.cosine < 0.999 and 0.04 < agreement.rel_l2_error < 0.15
    assert judge([agreement]) == ("ok", "every output within the tolerance")
    degraded = output_agreement("mos", reference + 0.3 * reference.mean() * noise, reference)
    verdict, reason = judge([degraded])
    assert verdict == "degraded" and reason.startswith("output 'mos' (regression): ")
    assert "top-1" not in reason and "relative L2 error" in reason
    # the user's bounds still decide
    assert (
        judge([degraded], Tolerance(cosine_ok=0.5, cosine_broken=0.4, rel_error_ok=0.6, rel_error_broken=0.9))[0]
        == "ok"
    )


def test_all_zero_outputs_prove_nothing(segmenter):
    """A random-weight model whose output is all zeros: variant and FP32 agree exactly, which shows nothing."""
    zeros = load_model(_segmenter(0.0).SerializeToString(), name="dead")
    accuracy = measure_accuracy(Variant(model=zeros, source=zeros, precision="int8"), _inputs())
    assert accuracy.verdict == "inconclusive" and accuracy.outputs[0].max_abs_error == 0.0
    assert "'maps' (all zeros) is constant in FP32" in accuracy.verdict_reason
    assert accuracy.verdict_text().startswith("INCONCLUSIVE: ") and "proves nothing" in accuracy.verdict_text()
    (advice, *_) = advise(_run("int8", 1.0, accuracy))
    assert advice.title == "The INT8 variant's accuracy is not known: the comparison proves nothing"
    assert advice.evidence == ("maps: constant 0 in FP32",) and "--eval-data" in advice.fix
    # beside an output that varies, the verdict is that output's, and the constant one is named
    varying = output_agreement("y", np.arange(4.0), np.arange(4.0))
    verdict, reason = judge([accuracy.outputs[0], varying])
    assert verdict == "ok" and "'maps' (all zeros) is constant" in reason
