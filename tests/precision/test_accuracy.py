"""Accuracy of variants against the FP32 model on ONNX Runtime (CPU), with real ModelOpt variants."""

import numpy as np
import onnx
import pytest
from onnx import helper
from support import make_mlp

from workbench.precision.accuracy import GPU_ONLY, measure_accuracy, output_agreement
from workbench.errors import WorkbenchError
from workbench.model.inputs import make_inputs
from workbench.model.onnx_model import load_model
from workbench.precision.variant import Variant, make_variant
from workbench.model.samples import digits_calibration, digits_test_set, sample_path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("variants")


@pytest.fixture(scope="module")
def digits_results(digits, cache):
    inputs, labels = digits_test_set()
    variants = {
        "fp32": make_variant(digits, "fp32"),
        "fp16": make_variant(digits, "fp16", cache_dir=cache),
        "int8": make_variant(digits, "int8", cache_dir=cache, calibration=digits_calibration()),
    }
    return {p: measure_accuracy(v, inputs, labels) for p, v in variants.items()}


def test_digits_fp32_fp16_int8_accuracy_on_the_held_out_test_set(digits_results):
    fp32, fp16, int8 = digits_results["fp32"], digits_results["fp16"], digits_results["int8"]
    assert fp32.samples == fp16.samples == int8.samples == 450
    assert fp32.label_accuracy == fp32.reference_label_accuracy >= 0.95
    assert fp16.reference_label_accuracy == int8.reference_label_accuracy == fp32.label_accuracy
    assert abs(fp16.label_accuracy - fp32.label_accuracy) <= 0.005  # FP16 is a rounding change only
    assert abs(int8.label_accuracy - fp32.label_accuracy) <= 0.02  # PTQ with 256 training samples
    (exact,) = fp32.outputs
    assert exact.max_abs_error == 0.0 and exact.top1_agreement == 1.0 and exact.cosine == pytest.approx(1.0)
    (half,) = fp16.outputs
    assert 0 < half.max_abs_error < 0.05 and half.cosine > 0.99999 and half.top1_agreement >= 0.995
    (quantized,) = int8.outputs
    assert half.max_abs_error < quantized.max_abs_error < 5 and quantized.cosine > 0.999
    assert quantized.top1_agreement >= 0.97 and quantized.name == "logits"
    assert "FP16 rounding" in fp16.note and int8.note == "" and fp32.note == ""


def test_agreement_metrics_on_a_known_change(digits):
    """A variant whose logits are exactly doubled or negated: the figures are known without running anything."""
    inputs, labels = digits_test_set()
    doubled = Variant(model=_scaled_logits(digits, 2.0), source=digits)
    (agreement,) = measure_accuracy(doubled, inputs, labels).outputs
    assert agreement.cosine == pytest.approx(1.0) and agreement.top1_agreement == 1.0
    assert agreement.max_rel_error == pytest.approx(1.0) and 0.9 < agreement.mean_rel_error <= 1.0
    negated = measure_accuracy(Variant(model=_scaled_logits(digits, -1.0), source=digits), inputs, labels)
    assert negated.outputs[0].cosine == pytest.approx(-1.0) and negated.outputs[0].top1_agreement < 0.2
    assert negated.label_accuracy < 0.2 and negated.reference_label_accuracy > 0.95


def test_output_agreement_handles_zeros_and_class_ids():
    zeros = output_agreement("z", np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32))
    assert (zeros.max_abs_error, zeros.max_rel_error, zeros.cosine) == (0.0, 0.0, 1.0)
    ids = output_agreement("label", np.array([1, 2, 3, 0]), np.array([1, 2, 0, 0]))
    assert ids.top1_agreement == 0.75 and ids.max_abs_error == 3.0
    hidden = output_agreement("hidden", np.ones((2, 5, 8)), np.ones((2, 5, 8)))
    assert hidden.top1_agreement is None  # not a classifier output
    with pytest.raises(WorkbenchError, match="changed the model's interface"):
        output_agreement("logits", np.ones((2, 3)), np.ones((2, 4)))


def test_variant_can_run_through_an_engines_infer(digits, cache, digits_results):
    """The pipeline passes ``Engine.infer`` (TensorRT on a GPU); here the ONNX Runtime backend's engine."""
    from workbench.backends import get_backend
    from workbench.config import BuildConfig

    inputs, labels = digits_test_set()
    variant = make_variant(digits, "fp16", cache_dir=cache)
    engine = get_backend("onnxruntime").build(variant, BuildConfig(precision="fp16"))
    chunks = []

    def infer(feeds):
        chunks.append(len(feeds["input"]))
        return engine.infer(feeds)

    accuracy = measure_accuracy(variant, inputs, labels, infer=infer, backend=engine.backend, batch_size=100)
    assert chunks == [100, 100, 100, 100, 50]
    assert accuracy.backend == "onnxruntime" and "ONNX Runtime (CPU) runs FP16" not in accuracy.note
    assert accuracy.label_accuracy == digits_results["fp16"].label_accuracy
    assert accuracy.outputs[0].max_abs_error == pytest.approx(digits_results["fp16"].outputs[0].max_abs_error)


def test_bf16_is_reported_as_checked_only_on_the_gpu_backend(digits, cache):
    inputs, labels = digits_test_set()
    accuracy = measure_accuracy(make_variant(digits, "bf16", cache_dir=cache), inputs, labels)
    assert accuracy.note.startswith(f"{GPU_ONLY}: ONNX Runtime (CPU) cannot run this bf16 variant")
    assert accuracy.outputs == () and accuracy.label_accuracy is None
    assert accuracy.samples == 450 and accuracy.reference_label_accuracy > 0.95


def test_random_calibration_is_labelled_in_the_accuracy(digits, cache):
    inputs, labels = digits_test_set()
    variant = make_variant(digits, "int8", cache_dir=cache, random_calibration=True)
    accuracy = measure_accuracy(variant, inputs, labels)
    assert "RANDOM" in accuracy.note and accuracy.outputs[0].top1_agreement is not None


def test_transformer_fp16_agrees_with_fp32(cache):
    transformer = load_model(sample_path("transformer_encoder"))
    inputs = make_inputs(transformer, {"input_ids": (4, 48)}, seed=7)
    accuracy = measure_accuracy(make_variant(transformer, "fp16", cache_dir=cache), inputs)
    (hidden,) = accuracy.outputs
    assert hidden.name == "hidden" and hidden.top1_agreement is None
    assert hidden.cosine > 0.9999 and 0 < hidden.max_abs_error < 0.05
    assert accuracy.label_accuracy is None and accuracy.samples == 4


def test_bad_inputs_and_labels_get_one_line_errors(digits):
    inputs, labels = digits_test_set()
    variant = make_variant(digits, "fp32")
    with pytest.raises(WorkbenchError, match=r"'input' has shape 450x8x8"):
        measure_accuracy(variant, {"input": inputs["input"][:, 0]})
    with pytest.raises(WorkbenchError, match="Labels must be 450 integer class ids"):
        measure_accuracy(variant, inputs, labels[:10])
    transformer = load_model(sample_path("transformer_encoder"))
    with pytest.raises(WorkbenchError, match="no classifier output"):
        measure_accuracy(
            make_variant(transformer, "fp32"), make_inputs(transformer, {"input_ids": (2, 8)}), labels=[0, 1]
        )


def test_a_fixed_batch_model_is_evaluated_on_any_multiple_of_its_batch(tmp_path):
    """Evaluation data counts samples on its first axis: 6 samples of a batch-2 model run as 3 batches."""
    import workbench as wb

    model = load_model(make_mlp(tmp_path / "fixed.onnx", batch=2))
    x = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
    accuracy = measure_accuracy(make_variant(model, "fp32"), {"x": x})
    assert accuracy.samples == 6 and accuracy.outputs[0].max_abs_error == 0.0
    np.savez(tmp_path / "eval.npz", x=x)
    run = wb.profile(model, config=wb.BuildConfig(iterations=3), eval_data=tmp_path / "eval.npz")
    assert run.accuracy.samples == 6
    with pytest.raises(WorkbenchError, match=r"Evaluation input 'x' has shape 6x3"):
        wb.profile(model, config=wb.BuildConfig(iterations=3), eval_data={"x": x[:, :3]})
    with pytest.raises(WorkbenchError, match=r"Evaluation input file '.*notes.txt' is not a .npy/.npz file"):
        (tmp_path / "notes.txt").write_text("not numpy")
        wb.profile(model, config=wb.BuildConfig(iterations=3), eval_data=tmp_path / "notes.txt")


def test_an_unseen_trained_model_with_dynamic_batch_goes_through_fp16_and_int8(tmp_path, cache):
    """A torch MLP trained here on scikit-learn's breast-cancer data and exported by torch's dynamo exporter
    (opset 18+, its own node naming): a model and an exporter path the samples never use."""
    torch = pytest.importorskip("torch")
    path, (x_train, x_test, y_test) = _train_breast_cancer_mlp(torch, tmp_path / "breast_cancer_mlp.onnx")
    model = load_model(path)
    assert model.inputs[0].dynamic and model.producer.startswith("pytorch")
    inputs = {model.inputs[0].name: x_test}
    fp32 = measure_accuracy(make_variant(model, "fp32"), inputs, y_test)
    fp16 = measure_accuracy(make_variant(model, "fp16", cache_dir=cache), inputs, y_test)
    int8_variant = make_variant(
        model, "int8", cache_dir=cache, calibration={model.inputs[0].name: x_train[:100]}, calibration_batch=20
    )
    int8 = measure_accuracy(int8_variant, inputs, y_test)
    # ModelOpt quantizes the two 64-wide layers and leaves the 2-class head alone, saying why
    assert int8_variant.changes["qdq_pairs"] > 0 and int8_variant.changes["nodes_by_precision"]["int8"] == 2
    (head,) = int8_variant.changes["not_quantized"]
    assert head["reason"].startswith("small MatMul/Gemm (N=2, K=64")
    assert fp32.samples == len(y_test) == 143 and fp32.label_accuracy >= 0.93
    assert abs(fp16.label_accuracy - fp32.label_accuracy) <= 0.015
    assert abs(int8.label_accuracy - fp32.label_accuracy) <= 0.03
    assert fp16.outputs[0].cosine > 0.9999 and int8.outputs[0].cosine > 0.99
    assert fp16.outputs[0].top1_agreement >= 0.99 and int8.outputs[0].top1_agreement >= 0.95


# ---- helpers -------------------------------------------------------------------------------------------------


def _scaled_logits(model, factor: float):
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{o}_unscaled" if o == out else o for o in node.output]
    graph.initializer.append(helper.make_tensor("factor", onnx.TensorProto.FLOAT, [], [factor]))
    graph.node.append(helper.make_node("Mul", [f"{out}_unscaled", "factor"], [out], name="scale_logits"))
    return load_model(proto.SerializeToString(), name=f"{model.name}_x{factor}")


def _train_breast_cancer_mlp(torch, path):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data.astype(np.float32), data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    mean, std = x_train.mean(0), x_train.std(0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(30, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    features, targets = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(features), targets).backward()
        optimizer.step()
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        net.eval(),
        (features[:4],),
        str(path),
        input_names=["features"],
        output_names=["scores"],
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    return path, (x_train, x_test, y_test.astype(np.int64))
