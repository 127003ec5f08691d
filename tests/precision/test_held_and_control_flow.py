"""INT8 on real recurrent models: calibration with inputs held whole (a scalar sample rate, recurrent state) and
post-training quantization around If bodies ModelOpt cannot take (silero VAD, akiki VAD; tests/real_models.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from real_models import real_model

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.precision.variant import make_variant

FAST = wb.BuildConfig(iterations=3, warmup_ms=0, trials=1)
VAD_SHAPES = wb.parse_shapes("input:1x512")


def _speech_like(samples: int, seed: int = 1) -> np.ndarray:
    """Tones of random pitch and loudness in light noise: 512-sample windows at 16 kHz, as silero VAD reads them."""
    rng = np.random.default_rng(seed)
    t = np.arange(512) / 16000
    tones = [rng.uniform(0, 0.5) * np.sin(2 * np.pi * rng.uniform(100, 800) * t) for _ in range(samples)]
    return (np.stack(tones) + 0.01 * rng.normal(size=(samples, 512))).astype(np.float32)


@pytest.fixture(scope="module")
def vad_calibration(tmp_path_factory):
    path = tmp_path_factory.mktemp("vad") / "calib.npz"
    np.savez(path, input=_speech_like(128), sr=np.array(16000), state=np.zeros((2, 1, 128), np.float32))
    return path


def test_int8_calibrates_with_a_scalar_rate_and_state_given_once(vad_calibration):
    """silero VAD takes `input [batch, 512]` beside a scalar `sr` and `state [2, batch, 128]`: calibration was
    refused ("The model has a scalar input"). Now `input` is split into samples, `sr` and `state` go whole with
    each, the run says so, and accuracy is measured on the same data."""
    model = real_model("silero_vad_ifless")
    run = wb.profile(
        model, "int8", backend="onnxruntime", calibration=str(vad_calibration), config=FAST.replace(shapes=VAD_SHAPES)
    )
    held = next(n for n in run.notes if n.startswith("calibration:"))
    assert "sr [scalar]" in held and "state [2x1x128]" in held and "128 samples" in held
    assert run.accuracy is not None and run.accuracy.samples == 32
    # all of this model's work sits in one If body, which ModelOpt leaves alone: said, not shown as INT8
    assert any("placed no Q/DQ pair" in n and "If/Loop/Scan" in n for n in run.notes)


def test_a_held_input_given_per_sample_is_refused_naming_it(vad_calibration, tmp_path):
    with np.load(vad_calibration) as d:
        np.savez(tmp_path / "bad.npz", input=d["input"], sr=np.full(128, 16000), state=d["state"])
    with pytest.raises(WorkbenchError) as e:
        make_variant(real_model("silero_vad_ifless"), "int8", calibration=str(tmp_path / "bad.npz"))
    text = str(e.value)
    assert "\n" not in text and "'sr'" in text and "once, whole" in text and "a scalar" in text


def test_a_calibration_batch_the_held_state_contradicts_is_refused(vad_calibration, tmp_path):
    """state [2, batch, 128] given for one sample fixes the calibration batch at 1."""
    with np.load(vad_calibration) as d:
        np.savez(tmp_path / "half.npz", input=d["input"], state=d["state"])
    with pytest.raises(WorkbenchError, match=r"calibration_batch=4 but the inputs held whole \(state\) fix it at 1"):
        make_variant(real_model("silero_vad_half"), "int8", calibration=str(tmp_path / "half.npz"), calibration_batch=4)


def test_ptq_quantizes_around_if_bodies_modelopt_fails_on():
    """ModelOpt 0.47's PTQ fails with a KeyError on akiki VAD's If nodes; the retry keeps them (and their bodies)
    FP32, quantizes the rest, and the run names the nodes, the tool and its error."""
    run = wb.profile(real_model("akiki_vad"), "int8", backend="onnxruntime", random_calibration=True, config=FAST)
    kept = next(n for n in run.notes if "kept in FP32" in n)
    assert "If '/model/If'" in kept and "ModelOpt ONNX PTQ" in kept and "upstream" in kept
    assert kept.endswith("the rest of the graph is int8")
    variant = onnx.load(run.artifacts["onnx"])
    assert sum(n.op_type == "QuantizeLinear" for n in variant.graph.node) > 0
    assert sum(n.op_type == "If" for n in variant.graph.node) == 2
    assert run.accuracy is not None  # ONNX Runtime ran the restored graph


def test_if_bodies_put_back_follow_the_opset_modelopt_raised():
    """PTQ raises the model to opset 19; silero VAD's If bodies (opset 16, ReduceMean with an `axes` attribute) are
    upgraded with it, else ONNX Runtime refuses the variant. Nothing outside the If was quantized: the run says so."""
    run = wb.profile(
        real_model("silero_vad"),
        "int8",
        backend="onnxruntime",
        random_calibration=True,
        config=FAST.replace(shapes=wb.parse_shapes("input:1x512,state:2x1x128")),
    )
    variant = onnx.load(run.artifacts["onnx"])
    assert {o.version for o in variant.opset_import if o.domain in ("", "ai.onnx")} == {19}
    note = next(n for n in run.notes if "kept in FP32" in n)
    assert "nothing else was quantized" in note


def test_an_if_is_timed_without_its_body():
    """ONNX Runtime times an If around its body's nodes, which are rows of their own: the layers summed to more
    than the profiled inference. The If keeps only its own time now."""
    run = wb.profile(
        real_model("silero_vad_ifless"), "fp32", backend="onnxruntime", config=FAST.replace(shapes=VAD_SHAPES)
    )
    layers = run.layers
    assert (layers["type"] == "If").sum() == 1 and len(layers) > 30  # the body's nodes are rows
    assert layers["time_ms"].sum() <= run.timing.profiled_ms * 1.02


def test_sensitivity_searches_a_recurrent_model_with_its_state_held(tmp_path):
    """silero VAD (FP16 export): `state [2, batch, 128]` is evaluated whole with every sample of `input`, the If
    bodies stay FP32 around the calibrated rest, and the search still finds a plan meeting the budget."""
    state = np.zeros((2, 1, 128), np.float32)
    np.savez(tmp_path / "calib.npz", input=_speech_like(32, seed=3), state=state)
    np.savez(tmp_path / "eval.npz", input=_speech_like(16, seed=4), state=state)
    run = wb.sensitivity(
        real_model("silero_vad_half"),
        "int8",
        calibration=str(tmp_path / "calib.npz"),
        eval_data=str(tmp_path / "eval.npz"),
        budget="cosine:0.99",
    )
    found = run.sensitivity
    assert found["plan"]["cosine"] >= 0.99 and found["candidates"][0]["cosine"] < found["plan"]["cosine"]
    assert found["samples"] == 16 and 0 < len(found["plan"]["kept_nodes"]) < 20
