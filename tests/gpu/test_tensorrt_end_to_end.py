"""End to end on a GPU with TensorRT: build and profile every sample model in fp32 and fp16, check the outputs
against ONNX Runtime, and the engine cache, cancellation, profiles and parser errors.

Marked ``gpu``; skipped with the reason where TensorRT or a GPU is missing. Run it in an NGC TensorRT container
(see docs/gpu-validation.md):  ``python -m pytest -m gpu tests/gpu -v``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from workbench.backends import cupti, get_backend
from workbench.backends.tensorrt import TensorRTBackend
from workbench.config import BuildConfig, ShapeRange
from workbench.backends.engine_cache import META_FILE
from workbench.errors import Cancelled, WorkbenchError
from workbench.model.inputs import make_inputs
from workbench.model.onnx_model import load_model
from workbench.precision.variant import make_variant
from workbench.progress import Progress
from workbench.results.run import load_run
from workbench.model.samples import sample_path

TRT_OK, TRT_REASON = get_backend("tensorrt").available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not TRT_OK, reason=f"TensorRT unavailable: {TRT_REASON}")]

#: Shapes profiled per sample (a batch above 1, so dynamic batch dims and per-sample outputs are exercised).
SHAPES = {
    "digits_cnn": {"input": (8, 1, 8, 8)},
    "resnet_mini": {"input": (2, 3, 128, 128)},
    "transformer_encoder": {"input_ids": (2, 64)},
}
#: Relative L2 error allowed against ONNX Runtime's FP32 outputs (fp32 builds run with TF32 off).
TOLERANCE = {"fp32": 1e-4, "fp16": 3e-2}


@pytest.fixture
def backend(tmp_path) -> TensorRTBackend:
    return TensorRTBackend(cache_dir=tmp_path / "engines")


def _variant(name: str, precision: str):
    if precision != "fp32":
        pytest.importorskip("modelopt", reason="fp16 variants need nvidia-modelopt (pip install nvidia-modelopt)")
    return make_variant(load_model(sample_path(name)), precision)


def _config(name: str, precision: str, **kw) -> BuildConfig:
    return BuildConfig(precision=precision, shapes=tuple(SHAPES[name].items()), iterations=50, warmup_ms=50, **kw)


def _reference(model, inputs) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.to_bytes(), providers=["CPUExecutionProvider"])
    return dict(zip((o.name for o in session.get_outputs()), session.run(None, inputs), strict=False))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_build_profile_and_match_onnxruntime(name, precision, backend, tmp_path):
    variant = _variant(name, precision)
    config = _config(name, precision)
    phases = []
    engine = backend.build(variant, config, Progress(lambda phase, step, total: phases.append(phase)))
    assert engine.backend == "tensorrt" and not engine.cache_hit and engine.plan_path.is_file()
    assert any(p.startswith("TensorRT: ") for p in phases), "the progress monitor never reported a phase"

    inputs = make_inputs(variant.source, config.shape_map, seed=1)
    outputs = engine.infer(inputs)
    reference = _reference(variant.source, inputs)
    assert set(outputs) == set(reference)
    for key, ref in reference.items():
        got = outputs[key].astype(np.float64)
        assert got.shape == ref.shape and np.isfinite(got).all()
        error = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert error < TOLERANCE[precision], f"{name} {precision} output {key}: relative error {error:.2e}"

    run = backend.profile(engine, inputs, config)
    print(
        f"\n{name} {precision}: p50 {run.latency.p50_ms:.4f} ms, {len(run.layers)} layers, "
        f"plan {run.memory.plan_bytes} B, device memory {run.memory.engine_device_bytes} B"
    )
    assert run.backend == "tensorrt" and run.latency.samples >= 50 and run.latency.p50_ms > 0
    timed = run.layers.dropna(subset=["time_ms"])
    assert len(timed) >= 1 and (timed["calls"] > 0).all()
    assert abs(run.layers["time_pct"].sum() - 100) < 0.5
    assert (run.layers["type"] != "").any() and (run.layers["precision"] != "").any()
    assert any(len(nodes) for nodes in run.layers["onnx_nodes"])
    assert run.memory.plan_bytes == engine.plan_path.stat().st_size
    assert run.memory.engine_device_bytes is not None and run.memory.gpu_used_bytes > 0
    assert run.environment["tensorrt"] and run.environment["compute_capability"]
    assert [t.name for t in run.inputs] == [t.name for t in variant.source.inputs]
    assert [t.name for t in run.outputs] == [t.name for t in variant.source.outputs]
    # IProfiler's layer times, with CUPTI's record of the same inferences beside them (or the reason it is missing)
    assert run.time_source_label == "TensorRT IProfiler"
    if cupti.unavailable():
        assert any(n.startswith("CUPTI's kernel sum not recorded") for n in run.notes)
    else:
        g = run.gpu_time
        assert g is not None and g.kernels >= 1 and g.busy_ms > 0 and g.matched_share is None
        assert any(n.startswith("CUPTI cross-check:") for n in run.notes)
        # IProfiler times each layer around the same kernels: the GPU cannot have been much busier than their sum
        assert g.busy_ms <= float(run.layers["time_ms"].sum()) * 1.5

    saved = run.save(tmp_path / "run", files={"engine": engine.plan_path})
    loaded = load_run(tmp_path / "run")
    assert loaded.artifact("engine").is_file() and len(loaded.layers) == len(saved.layers)


def test_engine_infer_splits_batches_outside_the_profile(backend):
    variant = _variant("digits_cnn", "fp32")
    engine = backend.build(variant, _config("digits_cnn", "fp32"))  # profile: batch 8 only
    inputs = make_inputs(variant.source, {"input": (21, 1, 8, 8)}, seed=2)
    outputs = engine.infer(inputs)
    reference = _reference(variant.source, inputs)
    assert outputs["logits"].shape == (21, 10)
    np.testing.assert_allclose(outputs["logits"], reference["logits"], rtol=1e-4, atol=1e-4)


def test_cache_hit_skips_the_build(backend):
    variant = _variant("resnet_mini", "fp32")
    config = _config("resnet_mini", "fp32")
    start = time.perf_counter()
    first = backend.build(variant, config)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    second = backend.build(variant, config)
    second_s = time.perf_counter() - start
    print(f"\nbuild {first_s:.2f} s, cache hit {second_s:.2f} s")
    assert second.cache_hit and second.plan_path == first.plan_path and second_s < first_s
    timing_caches = list((backend.cache.directory / "timing").glob("*.cache"))
    assert len(timing_caches) == 1 and timing_caches[0].stat().st_size > 0


def test_cancelled_build_leaves_no_cache_entry(backend):
    variant = _variant("resnet_mini", "fp32")
    config = _config("resnet_mini", "fp32")

    def cancel_once_tensorrt_starts(phase, step, total):
        if phase.startswith("TensorRT: "):
            progress.cancel()

    progress = Progress(cancel_once_tensorrt_starts)
    with pytest.raises(Cancelled):
        backend.build(variant, config, progress)
    assert backend.cache.get(backend.plan_key(variant, config)) is None
    assert not backend.cache.entries()


def test_plan_from_another_tensorrt_version_is_refused(backend):
    variant = _variant("digits_cnn", "fp32")
    config = _config("digits_cnn", "fp32")
    engine = backend.build(variant, config)
    meta_path = engine.plan_path.with_name(META_FILE)
    meta = json.loads(meta_path.read_text())
    meta["key"]["tensorrt_version"] = "9.9.9"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WorkbenchError, match="built for TensorRT 9.9.9") as e:
        backend.load(engine.plan_path, variant, config)
    assert "rebuild" in str(e.value)


def test_dynamic_shapes_follow_the_profile_range(backend):
    variant = _variant("transformer_encoder", "fp32")
    config = BuildConfig(
        shapes=(("input_ids", (2, 64)),),
        iterations=10,
        warmup_ms=10,
        profiles=(ShapeRange("input_ids", (1, 16), (2, 64), (4, 128)),),
    )
    engine = backend.build(variant, config)
    run = backend.profile(engine, make_inputs(variant.source, {"input_ids": (4, 128)}), config)
    assert run.extra["shapes"] == {"input_ids": [4, 128]}
    with pytest.raises(WorkbenchError, match="outside the engine's optimization profile"):
        backend.profile(engine, make_inputs(variant.source, {"input_ids": (8, 128)}), config)


def test_parser_error_names_the_node_and_operator(backend, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["y"], name="unique_values", sorted=1)],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    path = tmp_path / "unique.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    variant = make_variant(load_model(path), "fp32")
    with pytest.raises(WorkbenchError, match=r"node 'unique_values' \(Unique\)"):
        backend.build(variant, BuildConfig())
    assert not backend.cache.entries()
