"""Shapes are part of a run's identity; accuracy is measured on enough samples and says which."""

from onnx import TensorProto, helper
from support import make_mlp

import workbench as wb
from workbench.cli import main
from workbench.model.inputs import defaulted_shapes_note, resolve_shapes
from workbench.model.onnx_model import load_model
from workbench.model.samples import digits_calibration, sample_path
from workbench.results.metrics import summary_rows

FAST = wb.BuildConfig(iterations=2, warmup_ms=0)


def test_dynamic_image_sides_default_to_224_and_the_note_says_which_shape(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "img",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    model = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    assert resolve_shapes(model) == {"x": (1, 3, 224, 224)}
    note = defaulted_shapes_note(model)
    assert "profiled 'x' [?x3x?x?] at 1x3x224x224" in note and "--shapes (e.g. x:1x3x224x224)" in note
    assert defaulted_shapes_note(model, {"x": (1, 3, 640, 640)}) == ""


def test_a_dynamic_model_profiled_without_shapes_says_so_everywhere(tmp_path, capsys):
    path = make_mlp(tmp_path / "mlp.onnx")
    assert main(["profile", str(path), "--precision", "fp16", "--iterations", "2", "--warmup", "0"]) == 0
    out, err = capsys.readouterr()
    # shown once, when it applies (before the build), as a warning beside the progress
    assert (out + err).count("dynamic input shapes not given") == 1
    assert "warning: dynamic input shapes not given: profiled 'x' [?x4] at 1x4 (default batch 1)" in err
    assert "Input shapes" in out and "x:1x4" in out
    assert "Accuracy verdict" in out and "OK: every output within the tolerance (on 32 seeded random samples" in out
    run = wb.profile(path, "fp32", backend="onnxruntime", config=FAST.replace(shapes=(("x", (3, 4)),)))
    assert run.shapes == {"x": (3, 4)} and not any("dynamic input shapes" in n for n in run.notes)
    assert ("Input shapes", "x:3x4") in summary_rows(run)


def test_accuracy_defaults_to_calibration_samples_then_to_32_seeded_samples(tmp_path):
    digits = sample_path("digits_cnn")
    calibrated = wb.profile(digits, "int8", backend="onnxruntime", config=FAST, calibration=digits_calibration())
    acc = calibrated.accuracy
    assert acc.samples == 32 and acc.data.startswith("calibration data (the first 32 of 256 samples")
    assert acc.verdict in ("ok", "degraded", "broken") and acc.tolerance["cosine_ok"] == 0.99
    half = wb.profile(digits, "fp16", backend="onnxruntime", config=FAST, tolerance="cosine_ok=0.9999")
    assert half.accuracy.samples == 32 and half.accuracy.data.startswith("32 seeded random samples (seed 0)")
    assert half.accuracy.verdict == "ok" and half.accuracy.tolerance["cosine_ok"] == 0.9999
