"""The sample models in data/ load, run on ONNX Runtime, and the digits model is actually accurate."""

import numpy as np
import onnxruntime as ort
import pytest

from workbench.errors import WorkbenchError
from workbench.model.inputs import make_inputs
from workbench.model.onnx_model import load_model
from workbench.model.samples import SAMPLES, digits_calibration, digits_test_set, sample_path

MODELS = ["digits_cnn", "resnet_mini", "transformer_encoder"]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", MODELS)
def test_sample_loads_with_dynamic_batch_and_runs_on_onnxruntime(name):
    model = load_model(sample_path(name))
    assert model.opset == 17
    assert all(spec.shape[0] == "batch" for spec in model.inputs + model.outputs)
    names = [n.name for n in model.proto.graph.node]
    assert all(names) and len(set(names)) == len(names)
    feeds = make_inputs(
        model,
        {model.inputs[0].name: (3,) + tuple(d if isinstance(d, int) else 20 for d in model.inputs[0].shape[1:])},
        seed=1,
    )
    (out,) = _session(model.path).run(None, feeds)
    assert out.shape[0] == 3 and np.isfinite(out).all()


def test_transformer_has_layernorm_and_dynamic_sequence():
    model = load_model(sample_path("transformer_encoder"))
    assert model.op_histogram["LayerNormalization"] == 5
    assert model.inputs[0].shape == ("batch", "seq") and model.outputs[0].shape == ("batch", "seq", 128)
    session = _session(model.path)
    for seq in (1, 7, 64):
        (hidden,) = session.run(None, {"input_ids": np.arange(2 * seq, dtype=np.int64).reshape(2, seq) % 1000})
        assert hidden.shape == (2, seq, 128)


def test_digits_model_is_accurate_on_its_held_out_test_set():
    inputs, labels = digits_test_set()
    assert inputs["input"].dtype == np.float32 and inputs["input"].shape == (len(labels), 1, 8, 8)
    assert 0.0 <= inputs["input"].min() and inputs["input"].max() <= 1.0  # pixels / 16
    (logits,) = _session(sample_path("digits_cnn")).run(None, inputs)
    assert (logits.argmax(1) == labels).mean() >= 0.9


def test_digits_calibration_set_is_separate_from_the_test_set():
    calib = digits_calibration()["input"]
    test = digits_test_set()[0]["input"]
    assert calib.shape == (256, 1, 8, 8) and calib.dtype == np.float32
    test_rows = {row.tobytes() for row in test}
    assert sum(row.tobytes() in test_rows for row in calib) < 5  # digits has a few duplicate images, no more


def test_unknown_sample_lists_the_names():
    with pytest.raises(WorkbenchError, match="digits_cnn") as info:
        sample_path("mnist")
    assert "mnist" in str(info.value) and len(SAMPLES) >= 5
