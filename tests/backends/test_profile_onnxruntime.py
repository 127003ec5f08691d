"""The whole loop on ONNX Runtime: build, timed run, per-layer profile, Run, run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import DATA, make_mlp

import workbench as wb
from workbench.backends import choose_backend, get_backend
from workbench.results.layers import LAYER_COLUMNS
from workbench.precision.variant import make_variant


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "resnet"
    config = wb.BuildConfig(iterations=30, warmup_ms=0, shapes=(("input", (2, 3, 128, 128)),))
    return wb.profile(DATA / "resnet_mini.onnx", backend="onnxruntime", config=config, out=out)


def test_latency_statistics_are_consistent(resnet_run):
    lat = resnet_run.latency
    times = np.array(resnet_run.latency_ms)
    assert lat.samples == len(times) >= 30
    assert lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
    assert lat.mean_ms == pytest.approx(times.mean())
    assert lat.batch == 2  # from --shapes: throughput counts samples per inference
    assert 0 < lat.throughput_qps <= 1000 / lat.min_ms * 1.01


def test_layer_table_has_shared_columns_and_real_times(resnet_run):
    layers = resnet_run.layers
    assert list(layers.columns[: len(LAYER_COLUMNS)]) == list(LAYER_COLUMNS)
    assert (layers["time_ms"] > 0).all()
    assert layers["time_pct"].sum() == pytest.approx(100.0)
    assert (layers["median_ms"] > 0).all() and (layers["calls"] > 0).all()
    assert "Conv" in set(layers["type"])
    conv = layers[layers["type"] == "Conv"].iloc[0]
    assert conv["output_shapes"].startswith("2x")  # batch 2 flowed through
    assert conv["tactic"] == "CPUExecutionProvider"
    # every ONNX node of the model is attributed to at most one executed layer (the fusion view)
    claimed = [n for nodes in layers["onnx_nodes"] for n in nodes]
    assert len(claimed) == len(set(claimed))
    model = wb.load_model(DATA / "resnet_mini.onnx")
    names = {n.name for n in model.proto.graph.node}
    assert set(claimed) <= names and len(claimed) >= 0.9 * len(names)


def test_fused_layers_list_their_onnx_nodes(resnet_run):
    fused = resnet_run.layers[resnet_run.layers["onnx_nodes"].map(len) > 1]
    assert len(fused), "ORT fuses Conv+Relu on a CPU; the fusion must show"
    assert any(any("Relu" in n for n in nodes) and any("Conv" in n for n in nodes) for nodes in fused["onnx_nodes"])


def test_memory_and_environment(resnet_run):
    mem = resnet_run.memory
    model = wb.load_model(DATA / "resnet_mini.onnx")
    assert mem.weights_bytes == model.parameter_bytes
    assert mem.activations_bytes == resnet_run.layers["activation_bytes"].sum() > 0
    assert resnet_run.environment["versions"]["onnxruntime"]
    assert resnet_run.environment["cpu"]


def test_every_weight_is_in_the_layer_that_reads_it(resnet_run):
    """ONNX Runtime pre-packs a Gemm's matrix (its profile's parameter_size then holds only the bias): each layer's
    weights are traced back to the model's initializers, so the fc layer holds its matrix and bias and the layers
    sum to the model's weights; the run says so (nothing left unread) and the self-check stays quiet."""
    model = wb.load_model(DATA / "resnet_mini.onnx")
    sizes = {i.name: i.raw_data and len(i.raw_data) or 4 * int(np.prod(i.dims)) for i in model.proto.graph.initializer}
    gemm = next(n for n in model.proto.graph.node if n.op_type == "Gemm")
    layers = resnet_run.layers
    fc = layers[layers["onnx_nodes"].map(lambda nodes: gemm.name in nodes)].iloc[0]
    assert fc["weight_bytes"] == sum(sizes[t] for t in gemm.input[1:])  # its matrix and its bias
    assert layers["weight_bytes"].sum() == model.parameter_bytes == resnet_run.memory.weights_bytes
    assert resnet_run.extra["weights_in_no_layer"] == {"bytes": 0, "tensors": 0, "largest": []}
    assert not [f for f in resnet_run.findings if f.check == "memory_sums"]
    halved = layers.assign(weight_bytes=layers["weight_bytes"] // 2)  # the check fires on a real inconsistency
    assert [f.figure for f in resnet_run.replace(layers=halved).findings if f.check == "memory_sums"] == ["Weights"]


def test_run_directory_round_trip(resnet_run):
    d = resnet_run.directory
    assert (d / "run.json").is_file() and (d / "layers.csv").is_file() and (d / "report.html").is_file()
    meta = json.loads((d / "run.json").read_text())
    assert meta["schema"] == 1 and meta["backend"] == "onnxruntime"
    loaded = wb.load_run(d)
    assert loaded.latency == resnet_run.latency
    assert loaded.layers.drop(columns="onnx_nodes").equals(resnet_run.layers.drop(columns="onnx_nodes"))
    assert list(loaded.layers["onnx_nodes"]) == list(resnet_run.layers["onnx_nodes"])
    assert loaded.config == resnet_run.config
    assert loaded.artifact("ort_profile") is None  # summarised into the layer table, not kept (tens of MB)
    assert sorted(p.name for p in d.iterdir() if p.suffix == ".json") == ["run.json"]
    assert loaded.inputs[0].name == "input"
    assert loaded.shapes_text == "input:2x3x128x128"


def test_onnxruntime_layers_are_named_by_their_onnx_nodes(resnet_run):
    layers = resnet_run.layers
    assert not layers["name"].str.contains("_output_0|_nchwc").any()  # never an output tensor's name
    fused = layers[layers["onnx_nodes"].map(len) > 1].iloc[0]
    assert fused["name"].startswith(fused["onnx_nodes"][0]) and " + " in fused["name"]
    assert (layers["ort_node"] != "").all()  # ONNX Runtime's own node name is kept beside it


def test_the_raw_profile_is_kept_on_request(tmp_path, mlp_path):
    config = wb.BuildConfig(iterations=2, warmup_ms=0, keep_raw_profile=True)
    run = wb.profile(mlp_path, backend="onnxruntime", config=config, out=tmp_path / "run")
    assert run.artifact("ort_profile").is_file()
    assert config.key() == config.replace(keep_raw_profile=False).key()  # not part of the engine's identity


def test_run_save_is_atomic(tmp_path, resnet_run, monkeypatch):
    import workbench.results.layers as layers

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(layers, "to_csv", boom)
    with pytest.raises(OSError):
        resnet_run.save(tmp_path / "broken")
    assert not (tmp_path / "broken").exists()
    assert not list(tmp_path.iterdir()), "no half-written temp folder may remain"


def test_duration_keeps_timing(mlp_path):
    config = wb.BuildConfig(iterations=1, duration_s=0.3, warmup_ms=0)
    run = wb.profile(mlp_path, backend="onnxruntime", config=config)
    assert run.latency.samples > 10  # a tiny model runs many times in 0.3 s


def test_user_inputs_are_checked(tmp_path, mlp_path):
    np.savez(tmp_path / "good.npz", x=np.ones((3, 4), np.float32))
    run = wb.profile(
        mlp_path, backend="onnxruntime", inputs=tmp_path / "good.npz", config=wb.BuildConfig(iterations=2, warmup_ms=0)
    )
    assert run.profiled_shapes["x"] == (3, 4) and run.shapes_text == "x:3x4"
    np.savez(tmp_path / "bad.npz", x=np.ones((3, 5), np.float32))
    with pytest.raises(wb.WorkbenchError, match="'x' has shape 3x5, expected"):
        wb.profile(mlp_path, backend="onnxruntime", inputs=tmp_path / "bad.npz")


def test_generated_inputs_follow_shapes_and_embedding_bounds():
    model = wb.load_model(DATA / "transformer_encoder.onnx")
    feed = wb.make_inputs(model, {"input_ids": (2, 16)}, seed=1)
    assert feed["input_ids"].shape == (2, 16) and feed["input_ids"].dtype == np.int64
    vocab = next(int(t.dims[0]) for t in model.proto.graph.initializer if "token" in t.name and len(t.dims) == 2)
    assert feed["input_ids"].max() < vocab
    assert np.array_equal(feed["input_ids"], wb.make_inputs(model, {"input_ids": (2, 16)}, seed=1)["input_ids"])
    with pytest.raises(wb.WorkbenchError, match="unknown input 'ids'"):
        wb.make_inputs(model, {"ids": (1, 4)})
    with pytest.raises(wb.WorkbenchError, match="'input_ids' has a 0 dimension"):
        wb.make_inputs(model, {"input_ids": (0, 16)})


def test_engine_infer_matches_session(mlp_path):
    backend = get_backend("onnxruntime")
    engine = backend.build(make_variant(mlp_path), wb.BuildConfig())
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    w = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_allclose(engine.infer({"x": x})["z"], np.maximum(x @ w, 0), rtol=1e-5)


def test_auto_backend_says_why_it_fell_back():
    backend, why = choose_backend("auto")
    ok, reason = get_backend("tensorrt").available()
    if ok:
        assert backend.name == "tensorrt"
    else:
        assert backend.name == "onnxruntime" and reason in why


def test_tensorrt_backend_refuses_with_reason_when_unavailable():
    ok, reason = get_backend("tensorrt").available()
    if ok:
        pytest.skip("TensorRT is available here")
    with pytest.raises(wb.WorkbenchError, match="tensorrt backend unavailable: "):
        choose_backend("tensorrt")


def test_config_validation_and_parsing():
    assert wb.parse_shapes("input:1x3x8x8, mask:1x16") == (("input", (1, 3, 8, 8)), ("mask", (1, 16)))
    for bad in ("input", "input:1xAx3", ":1x2"):
        with pytest.raises(wb.WorkbenchError, match="Cannot read shape"):
            wb.parse_shapes(bad)
    assert wb.parse_size("512M") == 512 << 20 and wb.parse_size("2GiB") == 2 << 30
    with pytest.raises(wb.WorkbenchError, match="optimization level 7"):
        wb.BuildConfig(optimization_level=7)
    a = wb.BuildConfig(precision="fp16", shapes=[("x", [1, 4])])
    assert a == wb.BuildConfig.from_dict(a.to_dict()) and a.key() == wb.BuildConfig.from_dict(a.to_dict()).key()
    assert a.key() == a.replace(iterations=999).key()  # timing settings do not change the engine
    assert a.key() != a.replace(workspace_bytes=1 << 30).key()


def test_an_opset_too_new_for_onnx_runtime_says_so_in_one_clean_line(tmp_path):
    """ORT's C++ location and function signature are dropped; its own sentence (the opset it reads) is kept."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    path = make_mlp(tmp_path / "new.onnx", opset=newest)
    try:
        wb.profile(path, backend="onnxruntime", config=wb.BuildConfig(iterations=1, warmup_ms=0))
    except wb.WorkbenchError as error:
        message = str(error)
    else:
        pytest.skip(f"this ONNX Runtime reads opset {newest}")
    assert f"Opset {newest}" in message and "onnxruntime::" not in message and "(const std::" not in message
    assert "\n" not in message and ".." not in message


def test_a_precision_the_backend_cannot_run_fails_before_the_transform(mlp_path, tmp_path, monkeypatch):

    ok, reason = get_backend("onnxruntime").precision_support()["bf16"]
    if ok:
        pytest.skip("this ONNX Runtime has a CUDA provider that runs bf16")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(wb.WorkbenchError, match="Precision bf16 cannot run on onnxruntime here: .*BF16"):
        wb.profile(mlp_path, "bf16", backend="onnxruntime")
    assert not (tmp_path / "cache").exists()  # no variant was made for nothing


def test_node_names_with_quotes_and_line_breaks_profile(tmp_path):
    """ONNX Runtime's profiler writes node names unescaped: a `"` (or a line break, or the text it writes around
    an event's args) in a name must still give the layer table, every layer named after its nodes."""
    import onnx
    from real_models import real_model

    source = real_model("ppocr_cls")
    proto = onnx.load(source)
    tricky = ['say "hi"', "back\\slash", "line\nbreak", '{x}","args" : {"a": 1}}']
    for i, node in enumerate(proto.graph.node):
        node.name = f"{tricky[i % len(tricky)]} {i}"
    path = tmp_path / "quoted.onnx"
    onnx.save(proto, path)
    config = wb.BuildConfig(iterations=2, warmup_ms=0, trials=1)
    plain = wb.profile(source, backend="onnxruntime", config=config)
    run = wb.profile(path, backend="onnxruntime", config=config)
    assert len(run.layers) == len(plain.layers) and (run.layers["time_ms"] > 0).all()
    claimed = {n for nodes in run.layers["onnx_nodes"] for n in nodes}
    plain_claimed = {n for nodes in plain.layers["onnx_nodes"] for n in nodes}
    assert claimed <= {n.name for n in proto.graph.node}
    assert len(claimed) >= 0.98 * len(plain_claimed)
    assert {t for t in tricky if any(t in name for name in run.layers["name"])} == set(tricky)


def test_work_of_onnx_runtime_rewrites_stays_with_the_node_that_does_it(tmp_path):
    """ONNX Runtime runs a MatMul + Add over a 3-D input as Reshape → Gemm → Reshape, and three Gathers of one
    tensor as a Split and three Squeezes: the Gemm and the Split are the layers of those ONNX nodes (the views it
    wraps them in move nothing), so no view carries a matrix product's FLOPs or a copy it does not make."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((16, 48)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(48).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([2, 8, 3, 16], dtype=np.int64), "split_shape"),
        numpy_helper.from_array(np.array([0, 2, 1, 3], dtype=np.int64), "perm_unused"),
        *(numpy_helper.from_array(np.array(i, dtype=np.int64), f"i{i}") for i in range(3)),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="qkv/MatMul"),
        helper.make_node("Add", ["mm", "b"], ["qkv"], name="qkv/Add"),
        helper.make_node("Reshape", ["qkv", "split_shape"], ["heads"], name="heads/Reshape"),
        helper.make_node("Transpose", ["heads"], ["t"], name="heads/Transpose", perm=[2, 0, 1, 3]),
        *(helper.make_node("Gather", ["t", f"i{i}"], [f"g{i}"], name=f"Gather_{i}", axis=0) for i in range(3)),
        helper.make_node("Sum", ["g0", "g1", "g2"], ["y"], name="Sum"),
    ]
    graph = helper.make_graph(
        nodes,
        "rewrites",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 16])],
        weights,
    )
    path = tmp_path / "rewrites.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    run = wb.profile(path, backend="onnxruntime", config=wb.BuildConfig(iterations=3, warmup_ms=0, duration_s=0))
    layers = run.layers.set_index("ort_node")
    gemm = layers[layers["type"] == "Gemm"]
    assert len(gemm) == 1 and {"qkv/MatMul", "qkv/Add"} <= set(gemm["onnx_nodes"].iloc[0])
    split = layers[layers["type"] == "Split"]
    assert len(split) == 1 and {"Gather_0", "Gather_1", "Gather_2"} <= set(split["onnx_nodes"].iloc[0])
    views = layers[layers["type"].isin(["Reshape", "Squeeze"]) & layers["onnx_nodes"].map(len).eq(0)]
    assert len(views) >= 4  # the Gemm's two reshapes, the Split's three squeezes
    roof = wb.roofline(run).layers.set_index("name")
    assert roof.loc[gemm["name"].iloc[0], "flops"] == 2 * 16 * 16 * 48 + 16 * 48  # (2·8 tokens) × 16 → 48, + bias
    split_bytes = roof.loc[split["name"].iloc[0], "bytes"]
    assert split_bytes == 2 * 4 * (2 * 8 * 48) + 3 * 8  # reads the tensor once, writes its parts; the 3 indices
    assert (roof.loc[views["name"], ["flops", "bytes"]] == 0).all().all()


def test_a_function_onnx_runtime_expands_into_unnamed_nodes_is_counted_from_its_shapes(tmp_path):
    """ONNX Runtime expands HardSwish (MobileNetV3's activation) into a HardSigmoid and a Mul with no names: no
    ONNX node names those layers, so their work comes from the shapes they ran at, not 'unknown'."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((16, 8, 3, 3), 0.01, dtype=np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c"], ["y"], name="hardswish"),
    ]
    graph = helper.make_graph(
        nodes,
        "hs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32, 32])],
        [weight],
    )
    path = tmp_path / "hardswish.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    run = wb.profile(path, backend="onnxruntime", config=wb.BuildConfig(iterations=3, warmup_ms=0, duration_s=0))
    roof = wb.roofline(run).layers
    expanded = roof[roof["type"].isin(["HardSigmoid", "Mul"]) & (roof["work_from"] == "layer table")]
    assert len(expanded) == 2, run.layers[["name", "type", "onnx_nodes"]].to_dict("records")
    elements = 16 * 32 * 32
    assert expanded["flops"].tolist() == [elements, elements]
    assert sorted(expanded["bytes"]) == [4 * 2 * elements, 4 * 3 * elements]  # x → hs; x · hs → y
    assert roof["flops"].notna().all()
