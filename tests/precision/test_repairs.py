"""Refusals that name the real cause, and repairs made where they are safe, on models exported as users export them:
scikit-learn models (ai.onnx.ml: TreeEnsemble, ZipMap) from skl2onnx, weights listed as graph inputs (CenterFace's
export), a GPT-2 from transformers through torch's dynamo exporter (entropy calibration fails: "Too many bins")."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from real_models import cache_dir, torchvision_ops_declared

import workbench as wb
from workbench.errors import WorkbenchError

FAST = wb.BuildConfig(iterations=3, warmup_ms=0, trials=1)
DATA = Path(__file__).resolve().parents[2] / "data"


def _sklearn_onnx(estimator, path: Path) -> Path:
    skl2onnx = pytest.importorskip("skl2onnx", reason="scikit-learn models as ONNX need skl2onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)).astype(np.float32)
    estimator.fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
    proto = skl2onnx.to_onnx(estimator, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_forests_refusal_names_its_ml_operators_and_zipmap(precision, tmp_path):
    """Before: AutoCast's "dtype is unsupported for objects of type: list", PTQ's "Cannot restore public graph output
    metadata", neither naming ZipMap; both blamed the user's node choices."""
    from sklearn.ensemble import RandomForestClassifier

    path = _sklearn_onnx(RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0), tmp_path / "forest.onnx")
    with pytest.raises(WorkbenchError) as e:
        wb.profile(path, precision, backend="onnxruntime", random_calibration=precision == "int8", config=FAST)
    text = str(e.value)
    assert "\n" not in text and "TreeEnsembleClassifier" in text and "ZipMap (its output a sequence of maps" in text
    assert "TensorRT cannot run" in text and "profile it at fp32 on ONNX Runtime" in text


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_network_ending_in_zipmap_converts_around_it(precision, tmp_path):
    from sklearn.neural_network import MLPClassifier

    path = _sklearn_onnx(MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0), tmp_path / "mlp.onnx")
    run = wb.profile(path, precision, backend="onnxruntime", random_calibration=precision == "int8", config=FAST)
    note = next(n for n in run.notes if "ai.onnx.ml operators" in n)
    assert note.startswith("ZipMap (its output a sequence of maps, not a tensor), ArrayFeatureExtractor kept")
    assert note.endswith(f"the rest is {precision}")
    variant = onnx.load(run.artifacts["onnx"])
    assert [n.op_type for n in variant.graph.node if n.domain == "ai.onnx.ml"] == ["ZipMap", "ArrayFeatureExtractor"]
    if precision == "fp16":  # (ModelOpt leaves this batch-1 network's MatMuls, GEMVs, unquantized: said in a note)
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in variant.graph.initializer)
    assert run.accuracy is not None and run.accuracy.samples == 32


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_weights_listed_as_graph_inputs_are_taken_out_of_the_inputs(precision, tmp_path):
    """CenterFace lists 194 initializers as graph inputs; AutoCast refused with a long "names changed" line."""
    proto = onnx.load(DATA / "digits_cnn.onnx")
    inputs = {i.name for i in proto.graph.input}
    proto.graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in proto.graph.initializer
        if t.name not in inputs
    )
    listed = len(proto.graph.input) - 1
    onnx.save(proto, tmp_path / "listed.onnx")
    run = wb.profile(
        tmp_path / "listed.onnx", precision, backend="onnxruntime", calibration=DATA / "digits_calib.npz", config=FAST
    )
    note = next(n for n in run.notes if "listed as graph inputs" in n)
    assert note.startswith(f"{listed} initializers listed as graph inputs (features.0.weight")
    assert [i.name for i in onnx.load(run.artifacts["onnx"]).graph.input] == ["input"]
    assert run.accuracy is not None and run.accuracy.samples > 0


def _gpt2_dynamo() -> Path:
    """A 2-layer GPT-2 with random weights (no download), exported by torch's dynamo exporter (cached)."""
    target = cache_dir("gpt2_random") / "gpt2-2layer-dynamo.onnx"
    if target.is_file():
        return target
    torch = pytest.importorskip("torch", reason="exporting GPT-2 needs torch")
    torchvision_ops_declared()
    transformers = pytest.importorskip("transformers", reason="GPT-2 comes from transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=128, use_cache=False)
    model = transformers.GPT2LMHeadModel(config).eval()

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gpt2 = model

        def forward(self, input_ids, attention_mask):
            return self.gpt2(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    example = (torch.randint(0, 1000, (1, 16)), torch.ones(1, 16, dtype=torch.int64))
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        torch.onnx.export(
            Logits(),
            example,
            str(partial),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes=(dims, dims),
            opset_version=18,
            dynamo=True,
        )
        whole = Path(tmp) / "whole.onnx"  # the exporter writes the weights beside the graph: one file kept
        onnx.save(onnx.load(partial), whole)
        os.replace(whole, target)
    return target


def test_gpt2_int8_falls_back_to_max_calibration_when_histograms_fail():
    """Entropy calibration failed on GPT-2's attention mask fill ("Too many bins for data range"); the max method
    works, and the run says which was used."""
    shapes = wb.parse_shapes("input_ids:1x16,attention_mask:1x16")
    run = wb.profile(
        _gpt2_dynamo(),
        "int8",
        backend="onnxruntime",
        random_calibration=True,
        calibration_method="entropy",
        config=FAST.replace(shapes=shapes),
    )
    note = next(n for n in run.notes if n.startswith("entropy calibration failed"))
    assert "Too many bins" in note and "calibrated with the max method instead" in note
    samples = run.variant["calibration"]["samples"]
    assert f"int8 scales: max calibration on {samples} samples, 1 per step (ModelOpt ONNX PTQ)" in run.notes
    assert sum(n.op_type == "QuantizeLinear" for n in onnx.load(run.artifacts["onnx"]).graph.node) > 0
    assert run.accuracy is not None


def test_a_batch_one_export_with_a_free_batch_is_compared_one_sample_at_a_time(tmp_path):
    """Its input says [batch, 16] but a Reshape to [1, 8] fixes the batch at 1: accuracy ran 32 samples as one chunk
    and refused with "cannot run the FP32 model" (after 444 s of INT8 calibration on the issue's model)."""
    from onnx import TensorProto, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Reshape", ["h", "one_row"], ["y"])],
        "batch_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [
            numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([1, 8], np.int64), "one_row"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "batch_one.onnx")
    run = wb.profile(tmp_path / "batch_one.onnx", "fp16", backend="onnxruntime", config=FAST)
    # a profile on ONNX Runtime compares in chunks of the batch it profiled (1): all 32 samples, nothing refused
    assert run.accuracy is not None and run.accuracy.samples == 32 and run.accuracy.outputs[0].name == "y"
    # given larger chunks (another backend's default), the refusal is met and the samples go one at a time
    from workbench.precision.accuracy import measure_accuracy
    from workbench.precision.variant import make_variant

    variant = make_variant(tmp_path / "batch_one.onnx", "fp16")
    x = rng.standard_normal((32, 16)).astype(np.float32)
    accuracy = measure_accuracy(variant, {"x": x})
    assert accuracy.samples == 32
    assert "the model refused 32 samples at once" in accuracy.note
    assert "compared one sample at a time" in accuracy.note
