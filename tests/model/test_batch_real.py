"""The batch a run records comes from the shapes it profiled, on real models whose batch dimension is unnamed (-1,
as Paddle exports it) or shared with state tensors and scalars: samples/s = batch × inferences/s."""

from __future__ import annotations


import numpy as np
import pytest
from support import cli
from real_models import real_model

import workbench as wb
from workbench.model.inputs import profiled_batch

FAST = wb.BuildConfig(iterations=5, warmup_ms=0, trials=1)


def _config(shapes: str) -> wb.BuildConfig:
    return FAST.replace(shapes=wb.parse_shapes(shapes))


def _samples_per_s(run) -> float:
    return wb.metrics.metric("samples_per_s").value(run)


@pytest.fixture(scope="module")
def ppocr_cls():
    return wb.load_model(real_model("ppocr_cls"))


def test_an_unnamed_batch_dimension_takes_the_profiled_batch(ppocr_cls):
    assert ppocr_cls.inputs[0].shape[0] == -1  # Paddle's unnamed batch: the case that recorded batch 1
    run = wb.profile(ppocr_cls, "fp32", backend="onnxruntime", config=_config("x:4x3x48x192"))
    assert run.profiled_shapes["x"] == (4, 3, 48, 192)
    assert run.latency.batch == 4
    assert _samples_per_s(run) == pytest.approx(4 * run.latency.throughput_qps, rel=1e-9)
    assert not any("batch unknown" in n for n in run.notes)


def test_the_cli_records_the_batch_of_its_shapes(ppocr_cls, tmp_path):
    out = tmp_path / "cls-b4"
    result = cli(
        *("profile", ppocr_cls.path, "--backend", "onnxruntime", "--shapes", "x:4x3x48x192"),
        *("--iterations", "5", "--warmup", "0", "--trials", "1", "--out", out),
    )
    assert result.returncode == 0, result.stderr
    run = wb.load_run(out)
    assert run.latency.batch == 4
    assert _samples_per_s(run) == pytest.approx(4 * run.latency.throughput_qps, rel=1e-9)


def test_state_tensors_and_scalars_do_not_carry_the_batch():
    """silero_vad: input [?, ?], state [2, ?, 128], sr scalar: the batch is the input's first dimension."""
    model = wb.load_model(real_model("silero_vad"))
    audio = {  # 3 streams of 512 samples at 16 kHz (the only rates the model takes), fresh state
        "input": np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32),
        "state": np.zeros((2, 3, 128), np.float32),
        "sr": np.array(16000, np.int64),
    }
    run = wb.profile(model, "fp32", backend="onnxruntime", config=FAST, inputs=audio)
    assert run.latency.batch == 3
    assert _samples_per_s(run) == pytest.approx(3 * run.latency.throughput_qps, rel=1e-9)


def test_first_dimensions_that_disagree_give_batch_one_with_a_note():
    model = wb.load_model(real_model("silero_vad"))
    # two inputs, each a candidate for the batch, fed different first dimensions
    two = [type("Spec", (), {"name": n, "shape": ("?", 4)}) for n in ("a", "b")]
    batch, note = profiled_batch(two, {"a": (2, 4), "b": (3, 4)})
    assert batch == 1 and "'a' 2" in note and "'b' 3" in note
    # a model without any dynamic first dimension and unequal fixed ones (a fixed-size silero-like export)
    fixed = [type("Spec", (), {"name": n, "shape": s}) for n, s in (("input", (1, 512)), ("state", (2, 1, 128)))]
    assert profiled_batch(fixed, {"input": (1, 512), "state": (2, 1, 128)})[0] == 1
    assert profiled_batch(model.inputs, {"input": (5, 512), "state": (2, 5, 128), "sr": ()}) == (5, "")


def test_a_sweep_over_batches_records_each_points_batch(ppocr_cls, tmp_path):
    from workbench.sweeps import sweep

    result = sweep(
        ppocr_cls.path,
        batches="1,4",
        shapes="x:1x3x48x192",
        backend="onnxruntime",
        config=FAST,
        store=tmp_path / "ws",
        report=False,
    )
    table = result.table()
    assert list(table["state"]) == ["done", "done"]
    assert sorted(table["batch"]) == [1, 4]
    by_batch = {r.latency.batch: r for r in result.runs()}
    assert sorted(by_batch) == [1, 4]
    for batch, run in by_batch.items():
        assert run.profiled_shapes["x"] == (batch, 3, 48, 192)
        row = table[table["batch"] == batch].iloc[0]
        assert row["samples_per_s"] == pytest.approx(batch * run.latency.throughput_qps, rel=1e-9)
    best = result.best()["samples_per_s"]
    assert best["value"] == pytest.approx(table["samples_per_s"].max())


def test_a_sweep_batch_leaves_state_tensors_as_they_are():
    from workbench.sweeps import plan_points

    model = wb.load_model(real_model("silero_vad"))
    points = plan_points(model, batches="2,8", base=_config("input:1x512,state:2x1x128"))
    assert [dict(p.config.shapes)["input"] for p in points] == [(2, 512), (8, 512)]
    assert [dict(p.config.shapes)["state"] for p in points] == [(2, 1, 128), (2, 1, 128)]  # dim 0 is not the batch


def test_an_import_takes_the_batch_trtexec_ran_not_the_layer_informations():
    """TensorRT 10.16 on an H100: layer information exported at 1x1x28x28, inference run with --shapes=x:4x1x28x28."""
    from support import FIXTURES

    run = wb.import_trtexec(FIXTURES / "trtexec-10.16" / "h100")
    assert run.inputs[0].shape[0] == 1 and dict(run.config.shapes)["x"][0] == 4
    assert run.latency.batch == 4
    assert _samples_per_s(run) == pytest.approx(4 * run.latency.throughput_qps, rel=1e-9)


def test_a_sweep_batch_also_sets_a_state_dimension_named_as_the_batch():
    from workbench.sweeps import plan_points

    model = wb.load_model(real_model("silero_vad_ifless"))  # input [batch, sequence], state [2, batch, 128], sr []
    points = plan_points(model, batches="4", base=_config("input:1x512,state:2x1x128"))
    shapes = dict(points[0].config.shapes)
    assert shapes["input"] == (4, 512) and shapes["state"] == (2, 4, 128) and shapes["sr"] == ()


def _state_first_model(path):
    """``state [2, 1, 4]`` (h and c first) listed before ``x [1, 8]``; every dimension fixed. The batch is x's first
    axis: it flows to ``y [1, 4]`` and to the new state's second axis; the state's first axis flows nowhere."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gather", ["state", "zero"], ["h"], axis=0),
        helper.make_node("Gather", ["state", "one"], ["c"], axis=0),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "h"], ["xwh"]),
        helper.make_node("Tanh", ["xwh"], ["y"]),
        helper.make_node("Add", ["y", "c"], ["c2"]),
        helper.make_node("Unsqueeze", ["y", "axis0"], ["y3"]),
        helper.make_node("Unsqueeze", ["c2", "axis0"], ["c3"]),
        helper.make_node("Concat", ["y3", "c3"], ["stateN"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "state_first",
        [
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 4]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, 1, 4]),
        ],
        [
            numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
            numpy_helper.from_array(np.array(1, np.int64), "one"),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_the_batch_input_is_read_from_the_graph_not_the_first_inputs_first_dimension(tmp_path):
    from workbench.model.inputs import batch_inputs, evaluation_inputs, sample_count

    model = wb.load_model(_state_first_model(tmp_path / "state_first.onnx"))
    assert batch_inputs(model) == ("x",)
    data = evaluation_inputs(model, samples=5)
    assert data["x"].shape == (5, 8) and data["state"].shape == (2, 1, 4)  # the state held whole, not sampled
    assert sample_count(model, data) == 5
    assert profiled_batch(model.inputs, {"state": (2, 1, 4), "x": (1, 8)}, batch_inputs(model)) == (1, "")


def _fixed_shape_vad(path):
    """silero VAD (the If-less export) with every dimension fixed, as a user's export has it: input [1, 576],
    state [2, 1, 128], a scalar sr."""
    import onnx

    proto = onnx.load(real_model("silero_vad_ifless"))
    fixed = {"input": [1, 576], "state": [2, 1, 128]}
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            size = fixed[value.name][i] if value.name in fixed else (1 if d.dim_param == "batch" else None)
            if size is not None:
                d.Clear()
                d.dim_value = size
    onnx.save(proto, path)
    return path


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_fixed_shape_recurrent_model_runs_low_precision_accuracy_with_its_state_held(precision, tmp_path):
    """Refused before: "Accuracy inputs have different sample counts [16, 32]" (the state sampled as a batch)."""
    path = _fixed_shape_vad(tmp_path / "vad_fixed.onnx")
    run = wb.profile(path, precision, backend="onnxruntime", random_calibration=precision == "int8", config=FAST)
    assert run.accuracy is not None and run.accuracy.samples == 32
    assert "held fixed across samples: sr [scalar], state [2x1x128]" in run.accuracy.note
    assert run.latency.batch == 1 and not any(n.startswith("batch unknown") for n in run.notes)
