"""Precision variants through the real ModelOpt (AutoCast, ONNX PTQ) on the sample models."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from workbench.precision.calibration import load_calibration
from workbench.errors import Cancelled, WorkbenchError
from workbench.model.inputs import make_inputs
from workbench.model.onnx_model import load_model
from workbench.precision.variant import make_variant
from workbench.progress import Progress
from workbench.model.samples import digits_calibration, sample_path
from support import warnings_logged


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for tests that do not look at caching, so identical variants are made once."""
    return tmp_path_factory.mktemp("variants")


def _int8(digits, cache, **options):
    return make_variant(digits, "int8", cache_dir=cache, calibration=digits_calibration(), **options)


def _entries(cache):
    return sorted(p.name for p in cache.iterdir())


# ---- fp32 / tf32 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_fp32_and_tf32_keep_the_graph_and_refuse_graph_options(digits, precision, tmp_path):
    variant = make_variant(digits, precision, cache_dir=tmp_path)
    assert variant.model is digits and variant.path == digits.path and variant.precision == precision
    assert not any(tmp_path.iterdir())
    with pytest.raises(WorkbenchError, match="takes no graph options"):
        make_variant(digits, precision, keep_fp32_op_types=["Conv"])
    with pytest.raises(WorkbenchError, match="Unknown precision 'int4'"):
        make_variant(digits, "int4")


# ---- int8 / fp8 --------------------------------------------------------------------------------------------


def test_int8_inserts_qdq_and_explains_what_stayed_unquantized(digits, shared_cache):
    variant = _int8(digits, shared_cache)
    ops = variant.model.op_histogram
    changes = variant.changes
    assert ops["QuantizeLinear"] == changes["qdq_pairs"] == changes["inserted"]["QuantizeLinear"] > 0
    assert changes["quantized_weights"] == 2 and changes["quantized_activations"] == changes["qdq_pairs"] - 2
    assert {"/features/features.0/Conv", "/features/features.2/Conv"} <= set(changes["quantized_nodes"])
    assert changes["nodes_by_precision"]["int8"] == len(changes["quantized_nodes"])
    assert sum(changes["nodes_by_precision"].values()) == digits.node_count  # every source node is accounted for
    # calibrating one sample at a time, ModelOpt's GEMV rule leaves the classifier's Gemms unquantized, and says so
    gemms = {n["node"]: n["reason"] for n in changes["not_quantized"]}
    assert set(gemms) == {"/classifier/classifier.1/Gemm", "/classifier/classifier.3/Gemm"}
    assert all("GEMV" in reason for reason in gemms.values())
    # max calibration by default (ModelOpt's INT8 preset for CNNs), and ModelOpt ran that method
    assert variant.options["calibration_method"] == "max" and variant.options["high_precision_dtype"] == "fp16"
    assert variant.calibration_method == "max"
    assert variant.calibration["samples"] == 256 and not variant.random_calibration
    assert variant.path.parent.joinpath("modelopt.log").read_text().count("INT8 quantization with method: max")
    assert variant.model.inputs == digits.inputs and variant.model.outputs == digits.outputs  # I/O stays float32


def test_calibration_batch_and_exclude_nodes_change_what_is_quantized(digits, shared_cache):
    batched = _int8(digits, shared_cache, calibration_batch=32)
    assert "/classifier/classifier.1/Gemm" in batched.changes["quantized_nodes"]  # no longer a GEMV at batch 32
    excluded = _int8(digits, shared_cache, exclude_nodes=[r"/features/features\.2/"])
    reasons = {n["node"]: n["reason"] for n in excluded.changes["not_quantized"]}
    assert reasons["/features/features.2/Conv"] == "its name matches exclude_nodes"
    assert "/features/features.0/Conv" in excluded.changes["quantized_nodes"]


def test_high_precision_fp32_keeps_unquantized_nodes_in_fp32_with_the_reason(digits, shared_cache):
    variant = _int8(digits, shared_cache, high_precision_dtype="fp32")
    kept = {n["node"]: n["reason"] for n in variant.changes["kept_fp32"]}
    assert "/classifier/classifier.3/Gemm" in kept
    assert kept["/classifier/classifier.3/Gemm"] == "not quantized, and high_precision_dtype is fp32"
    assert "fp16" not in variant.changes["nodes_by_precision"]


def test_fp8_quantizes_resnet_with_float8_qdq(shared_cache, caplog):
    resnet = load_model(sample_path("resnet_mini"))
    data = make_inputs(resnet, {"input": (8, 3, 128, 128)}, seed=5)
    variant = make_variant(resnet, "fp8", cache_dir=shared_cache, calibration=data)
    assert warnings_logged(caplog) == [
        "8 calibration samples is outside the documented range 100-500: activation ranges may be noisy"
    ]
    float8 = onnx.TensorProto.FLOAT8E4M3FN
    zero_points = [t for t in variant.model.proto.graph.initializer if t.data_type == float8]
    assert zero_points and variant.changes["nodes_by_precision"]["fp8"] > 10
    assert any(n["reason"] == "small-channel Conv (FP8 rule)" for n in variant.changes["not_quantized"])


def test_int8_without_calibration_data_is_an_error_unless_random_is_asked_for(digits, shared_cache):
    with pytest.raises(WorkbenchError, match="random_calibration=True") as info:
        make_variant(digits, "int8", cache_dir=shared_cache)
    assert "\n" not in str(info.value)
    variant = make_variant(digits, "int8", cache_dir=shared_cache, random_calibration=True)
    assert variant.random_calibration and variant.calibration["random"] is True
    assert variant.label == "int8 (RANDOM calibration)" and "RANDOM" in variant.to_dict()["label"]
    assert variant.calibration["samples"] == 128 and variant.calibration["source"].startswith("random")
    with pytest.raises(WorkbenchError, match="choose one"):
        make_variant(digits, "int8", calibration=digits_calibration(), random_calibration=True)


# ---- calibration data --------------------------------------------------------------------------------------


def _bad(tmp_path):
    good = digits_calibration()["input"]
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "notes.txt").write_text("not numpy")
    return {
        "wrong shape": ({"input": good[:, :, :4, :]}, r"'input' has shape 256x1x4x8, expected \[batchx1x8x8\]"),
        "no batch axis": ({"input": good[0]}, r"'input' has shape 1x8x8, expected \[batchx1x8x8\]"),
        "wrong name": ({"image": good}, "'image' that is not a model input"),
        "strings": ({"input": np.full((4, 1, 8, 8), "x")}, "'input' has dtype <U1"),
        "NaN": ({"input": np.full((4, 1, 8, 8), np.nan, np.float32)}, "NaN"),
        "no samples": ({"input": good[:0]}, "0 samples"),
        "missing file": (tmp_path / "nope.npz", "does not exist"),
        "not numpy": (tmp_path / "notes.txt", "is not a .npy/.npz file"),
        "no images": (tmp_path / "empty_folder", "has no images"),
        "wrong type": ([1, 2, 3], "type list is not supported"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong shape",
        "no batch axis",
        "wrong name",
        "strings",
        "NaN",
        "no samples",
        "missing file",
        "not numpy",
        "no images",
        "wrong type",
    ],
)
def test_bad_calibration_data_gets_a_one_line_error(digits, tmp_path, case):
    data, message = _bad(tmp_path)[case]
    with pytest.raises(WorkbenchError, match=message) as info:
        make_variant(digits, "int8", cache_dir=tmp_path / "cache", calibration=data)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_calibration_from_npz_npy_and_memory_is_the_same_data(digits, tmp_path):
    arrays = digits_calibration()
    np.savez(tmp_path / "calib.npz", **arrays)
    np.save(tmp_path / "calib.npy", arrays["input"])
    hashes = {
        load_calibration(src, digits).sha256
        for src in (arrays, tmp_path / "calib.npz", str(tmp_path / "calib.npy"), arrays["input"])
    }
    assert len(hashes) == 1
    doubles = load_calibration({"input": arrays["input"].astype(np.float64)}, digits)
    assert doubles.arrays["input"].dtype == np.float32 and doubles.sha256 in hashes


def test_image_folder_calibration_follows_the_documented_recipe(digits, tmp_path, caplog):
    from PIL import Image

    pixels = digits_calibration()["input"][:20, 0]  # pixel/16, in [0, 1]
    for i, img in enumerate(pixels):
        Image.fromarray(np.round(img * 255).astype(np.uint8), mode="L").save(tmp_path / f"{i:03d}.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "zzz_big_rgb.png")  # resized and greyed
    (tmp_path / "README.txt").write_text("ignored")
    data = load_calibration(tmp_path, digits)
    assert warnings_logged(caplog) == [
        "21 calibration samples is outside the documented range 100-500: activation ranges may be noisy"
    ]
    assert data.arrays["input"].shape == (21, 1, 8, 8)
    np.testing.assert_allclose(data.arrays["input"][:20], pixels[:, None], atol=0.5 / 255 + 1e-6)
    assert np.all(data.arrays["input"][20] == 0)
    assert "greyscale" in data.describe()["preprocessing"] and data.describe()["source"] == str(tmp_path)
    with pytest.raises(WorkbenchError, match="needs 3-channel input"):
        load_calibration(tmp_path, digits, image_normalization="imagenet")


def test_token_ids_beyond_the_embedding_are_rejected():
    transformer = load_model(sample_path("transformer_encoder"))
    ids = np.full((4, 16), 1000, dtype=np.int64)
    with pytest.raises(WorkbenchError, match=r"'input_ids' has values 1000..1000 but indexes a table of 1000 rows"):
        load_calibration({"input_ids": ids}, transformer)


# ---- fp16 / bf16 (AutoCast) ---------------------------------------------------------------------------------


def test_fp16_converts_every_node_and_keeps_float32_io(digits, shared_cache):
    variant = make_variant(digits, "fp16", cache_dir=shared_cache)
    assert variant.changes["nodes_by_precision"] == {"fp16": digits.node_count}
    assert variant.changes["inserted"] == {"Cast": 2} and variant.changes["kept_fp32"] == []
    assert variant.model.inputs == digits.inputs and variant.model.outputs == digits.outputs
    weights = {t.name: t.data_type for t in variant.model.proto.graph.initializer}
    assert set(weights.values()) == {onnx.TensorProto.FLOAT16}


def test_fp16_nodes_kept_in_fp32_come_with_their_reason(digits, shared_cache):
    variant = make_variant(
        digits,
        "fp16",
        cache_dir=shared_cache,
        keep_fp32_op_types=["MaxPool"],
        keep_fp32_nodes=[r"/classifier/classifier\.3/"],
        init_max=0.5,
    )
    kept = {n["node"]: n["reason"] for n in variant.changes["kept_fp32"]}
    assert kept["/features/features.4/MaxPool"] == "its op type is in keep_fp32_op_types"
    assert kept["/classifier/classifier.3/Gemm"] == "its name matches keep_fp32_nodes"
    assert kept["/features/features.0/Conv"].startswith("init_max: initializer features.0.weight out of range")
    assert variant.changes["nodes_by_precision"]["fp32"] == len(kept)


def test_fp16_data_max_uses_the_calibration_data(digits, shared_cache):
    variant = make_variant(digits, "fp16", cache_dir=shared_cache, calibration=digits_calibration(), data_max=5.0)
    reasons = [n["reason"] for n in variant.changes["kept_fp32"]]
    assert reasons and all(r.startswith("data_max: reference IO out of range") for r in reasons)
    assert variant.calibration["samples"] == 256


def test_transformer_survives_fp16_autocast_with_its_layernorms(shared_cache):
    transformer = load_model(sample_path("transformer_encoder"))
    variant = make_variant(transformer, "fp16", cache_dir=shared_cache)
    nodes = {n.name: n for n in variant.model.proto.graph.node}
    norms = [n.name for n in transformer.proto.graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 5 and all(nodes[name].op_type == "LayerNormalization" for name in norms)
    assert variant.changes["nodes_by_precision"]["fp16"] > 50
    assert variant.model.inputs == transformer.inputs and variant.model.outputs == transformer.outputs
    kept = make_variant(transformer, "fp16", cache_dir=shared_cache, keep_fp32_op_types=["LayerNormalization"])
    assert sorted(n["node"] for n in kept.changes["kept_fp32"]) == sorted(norms)


def test_bf16_variant_is_made_at_opset_22(digits, shared_cache):
    variant = make_variant(digits, "bf16", cache_dir=shared_cache)
    assert variant.model.opset >= 22 and variant.changes["nodes_by_precision"] == {"bf16": digits.node_count}


# ---- options -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "precision, options, message",
    [
        ("fp16", {"calibration_method": "max"}, "Option 'calibration_method' does not apply to fp16"),
        ("int8", {"data_max": 10}, "Option 'data_max' does not apply to int8"),
        ("int8", {"keep_fp32_nodes": ["/features"]}, "Option 'keep_fp32_nodes' does not apply to int8"),
        ("fp16", {"random_calibration": True}, "random_calibration applies to int8/fp8"),
        ("int8", {"calibration_method": "percentile"}, "calibration_method='percentile' is not valid"),
        ("int8", {"exclude_nodes": ["/features/conv9"]}, "matches no node"),
        ("int8", {"exclude_nodes": ["(unclosed"]}, "not a valid regular expression"),
        ("fp16", {"keep_fp32_op_types": ["Softmax"]}, "does not use: its op types are"),
        ("fp16", {"data_max": -1}, "data_max must be a positive number"),
        ("int8", {"calibration_batch": 1000}, "calibration_batch must be an integer in 1..256"),
    ],
)
def test_bad_options_get_a_one_line_error(digits, tmp_path, precision, options, message):
    if precision == "int8":
        options = {"calibration": digits_calibration(), **options}
    with pytest.raises(WorkbenchError, match=message):
        make_variant(digits, precision, cache_dir=tmp_path, **options)
    assert not any(tmp_path.iterdir())


# ---- cache ---------------------------------------------------------------------------------------------------


def test_variants_are_cached_by_model_options_and_calibration_data(digits, tmp_path):
    first = _int8(digits, tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = _int8(digits, tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert again.changes == first.changes and again.model.sha256 == first.model.sha256
    other_method = _int8(digits, tmp_path, calibration_method="entropy")
    other_data = make_variant(
        digits, "int8", cache_dir=tmp_path, calibration={"input": digits_calibration()["input"][:128]}
    )
    assert len({first.path, other_method.path, other_data.path}) == 3
    assert len(_entries(tmp_path)) == 3 and not any(name.startswith(".") for name in _entries(tmp_path))
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["model.onnx", "modelopt.log", "variant.json"]


def test_cache_location_follows_workbench_cache(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "env-cache"))
    variant = make_variant(digits, "fp16")
    assert variant.path.parent.parent == tmp_path / "env-cache" / "variants"


@pytest.mark.parametrize("interrupt", [Cancelled, KeyboardInterrupt])
def test_interrupted_calibration_leaves_nothing_in_the_cache(digits, tmp_path, interrupt):
    steps = []

    def on_step(phase, step, total):
        steps.append((phase, step, total))
        if phase == "int8 calibration" and step == 5:
            if interrupt is Cancelled:
                progress.cancel()
            else:
                raise KeyboardInterrupt

    progress = Progress(on_step)
    with pytest.raises(interrupt):
        _int8(digits, tmp_path, progress=progress)
    assert ("int8 calibration", 5, 256) in steps
    assert _entries(tmp_path) == []
    assert _int8(digits, tmp_path).changes["qdq_pairs"] > 0  # and the next attempt works


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_modelopt_failure_is_one_line_and_leaves_nothing(tmp_path, precision):
    # A contrib op (com.microsoft Gelu) passes the workbench's checks but ModelOpt cannot type or check it
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Gelu", ["h"], ["y"], name="gelu", domain="com.microsoft"),
        ],
        "contrib",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [4, 2], np.ones(8))],
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model = load_model(proto.SerializeToString())
    options = {"calibration": {"x": np.ones((100, 4), np.float32)}} if precision == "int8" else {}
    with pytest.raises(WorkbenchError, match="ModelOpt .* failed on 'contrib' .*Gelu") as info:
        make_variant(model, precision, cache_dir=tmp_path, **options)
    assert "\n" not in str(info.value)
    assert _entries(tmp_path) == []


def test_cache_and_workspace_folders_follow_the_environment(tmp_path, monkeypatch):
    from workbench import paths

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path / "w"))
    assert paths.cache_dir() == tmp_path / "c" and paths.cache_dir("engines") == tmp_path / "c" / "engines"
    assert paths.workspace_dir() == tmp_path / "w"
    monkeypatch.delenv("WORKBENCH_CACHE")
    monkeypatch.delenv("WORKBENCH_WORKSPACE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = paths.workspace_dir()
    monkeypatch.chdir(tmp_path)
    assert paths.cache_dir("variants") == tmp_path / "xdg" / "trt-workbench" / "variants"
    # one history: the same workspace from any folder (notebooks/, the shell's), the checkout's own
    assert paths.workspace_dir() == before == Path(paths.__file__).resolve().parents[1] / "workspace"
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "workspace").exists()  # nothing created early
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    installed = tmp_path / "site-packages" / "workbench"  # no pyproject.toml beside an installed package
    assert paths.default_workspace(installed) == tmp_path / "data" / "trt-workbench" / "workspace"
