"""The parts of the TensorRT backend that need no GPU: the engine cache, optimization-profile ranges, joining the
inspector's layer table with profiler times, and the reason given when TensorRT is missing."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from support import make_mlp

from workbench.backends import choose_backend
from workbench.backends.tensorrt import TensorRTBackend, _join_layer_times, shape_ranges
from workbench.config import BuildConfig, ShapeRange
from workbench.backends.engine_cache import META_FILE, PLAN_FILE, EngineCache, PlanKey, default_cache_dir
from workbench.errors import WorkbenchError
from workbench.results.layerinfo import parse_layer_info
from workbench.model.onnx_model import load_model
from workbench.model.samples import sample_path

KEY = PlanKey("ab" * 32, "cfg1", "10.16.1.11", "NVIDIA H100 80GB HBM3", "9.0")


# ---- engine cache ---------------------------------------------------------------------------------------------


def test_cache_round_trip_and_miss(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.get(KEY) is None
    stored = cache.put(KEY, b"plan-bytes", {"build_seconds": 1.5})
    hit = cache.get(KEY)
    assert hit is not None and hit.read() == b"plan-bytes" and hit.meta["build_seconds"] == 1.5
    assert hit.path == stored.path and hit.path.name == PLAN_FILE
    # any part of the key changing is a different entry
    for changed in (KEY.__class__(**{**KEY.__dict__, field: "other"}) for field in KEY.__dict__):
        assert cache.get(changed) is None
    assert [e.key for e in cache.entries()] == [KEY]


def test_default_location_follows_workbench_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "engines"
    assert TensorRTBackend().cache.directory == tmp_path / "c" / "engines"


def test_interrupted_put_leaves_no_entry(tmp_path, monkeypatch):
    cache = EngineCache(tmp_path)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.put(KEY, b"plan-bytes")
    monkeypatch.undo()
    assert cache.get(KEY) is None and list(tmp_path.iterdir()) == []


def test_truncated_or_damaged_entries_are_misses(tmp_path):
    cache = EngineCache(tmp_path)
    entry = cache.put(KEY, b"0123456789").path
    entry.write_bytes(b"01234")  # a plan cut short
    assert cache.get(KEY) is None
    cache.put(KEY, b"0123456789")
    entry.with_name(META_FILE).write_text("{not json")
    assert cache.get(KEY) is None


def test_plan_for_another_tensorrt_or_gpu_is_refused(tmp_path):
    cache = EngineCache(tmp_path)
    entry = cache.put(KEY, b"plan").path
    meta = json.loads(entry.with_name(META_FILE).read_text())
    meta["key"]["tensorrt_version"] = "11.4.0.106"
    entry.with_name(META_FILE).write_text(json.dumps(meta))
    with pytest.raises(WorkbenchError, match="built for TensorRT 11.4.0.106.*this is TensorRT 10.16.1.11") as e:
        cache.get(KEY)
    assert "TensorRT version differs" in str(e.value) and "rebuild" in str(e.value)
    meta["key"].update(tensorrt_version=KEY.tensorrt_version, gpu_name="NVIDIA A100-SXM4-80GB")
    entry.with_name(META_FILE).write_text(json.dumps(meta))
    with pytest.raises(WorkbenchError, match="on NVIDIA A100-SXM4-80GB .*its GPU differs"):
        cache.get(KEY)


def test_empty_plan_is_not_cached(tmp_path):
    with pytest.raises(WorkbenchError, match="empty engine plan"):
        EngineCache(tmp_path).put(KEY, b"")
    assert not list(tmp_path.iterdir())


def test_timing_cache_is_per_gpu_and_version_and_written_whole(tmp_path):
    cache = EngineCache(tmp_path)
    h100 = cache.timing_cache_path("NVIDIA H100 80GB HBM3", "9.0", "10.16.1.11")
    a100 = cache.timing_cache_path("NVIDIA A100-SXM4-80GB", "8.0", "10.16.1.11")
    newer = cache.timing_cache_path("NVIDIA H100 80GB HBM3", "9.0", "11.4.0.106")
    assert len({h100, a100, newer}) == 3 and h100.name == "nvidia-h100-80gb-hbm3-sm90-trt10.16.1.11.cache"
    assert cache.read_timing_cache(h100) == b""
    cache.write_timing_cache(h100, b"timings")
    cache.write_timing_cache(h100, b"")  # an empty cache never replaces a real one
    assert cache.read_timing_cache(h100) == b"timings"
    assert [p.name for p in h100.parent.iterdir()] == [h100.name]


# ---- optimization profiles --------------------------------------------------------------------------------------


def test_profile_ranges_default_to_the_profiled_shapes():
    model = load_model(sample_path("transformer_encoder"))
    assert shape_ranges(model, BuildConfig()) == {"input_ids": ((1, 32),) * 3}
    config = BuildConfig(shapes=(("input_ids", (4, 128)),))
    assert shape_ranges(model, config) == {"input_ids": ((4, 128),) * 3}


def test_profile_ranges_from_the_user():
    model = load_model(sample_path("transformer_encoder"))
    config = BuildConfig(profiles=(ShapeRange("input_ids", (1, 16), (2, 64), (8, 512)),))
    assert shape_ranges(model, config) == {"input_ids": ((1, 16), (2, 64), (8, 512))}


@pytest.mark.parametrize(
    "profile, message",
    [
        (ShapeRange("tokens", (1, 1), (1, 1), (1, 1)), "unknown input 'tokens'"),
        (ShapeRange("input_ids", (1, 1, 1), (1, 1, 1), (1, 1, 1)), "does not fit its declared shape"),
    ],
)
def test_bad_profile_ranges_are_explained(profile, message):
    model = load_model(sample_path("transformer_encoder"))
    with pytest.raises(WorkbenchError, match=message):
        shape_ranges(model, BuildConfig(profiles=(profile,)))


def test_range_for_a_fixed_input_is_refused(tmp_path):
    model = load_model(make_mlp(tmp_path / "fixed.onnx", batch=3))
    assert shape_ranges(model, BuildConfig()) == {}  # nothing dynamic: no profile needed
    with pytest.raises(WorkbenchError, match="input 'x', whose shape is fixed"):
        shape_ranges(model, BuildConfig(profiles=(ShapeRange("x", (3, 4), (3, 4), (3, 4)),)))


# ---- layer table ------------------------------------------------------------------------------------------------


def test_profiler_times_join_the_inspector_layers(fixtures_dir):
    info = parse_layer_info(fixtures_dir / "trtexec-10.16" / "h100" / "model-trained.layerinfo.json")
    names = list(info.layers["name"])
    stats = {
        names[0]: {"time_ms": 0.03, "median_ms": 0.029, "p90_ms": 0.041, "calls": 10},
        names[2]: {"time_ms": 0.01, "median_ms": 0.011, "p90_ms": 0.012, "calls": 10},
        "Reformatting CopyNode for Output Tensor 0": {"time_ms": 0.01, "median_ms": 0.01, "p90_ms": 0.01, "calls": 10},
    }
    table, notes = _join_layer_times(info.layers, stats, runs=10)
    assert list(table["name"][: len(names)]) == names  # execution order kept
    assert table.loc[0, "time_ms"] == 0.03 and table.loc[0, "calls"] == 10
    assert table.loc[0, "median_ms"] == 0.029 and table.loc[0, "p90_ms"] == 0.041  # the whisker the chart draws
    assert np.isnan(table.loc[1, "time_ms"])  # not reported by the profiler: no time invented
    assert table.loc[0, "time_pct"] == pytest.approx(60.0)
    assert table["time_pct"].sum() == pytest.approx(100.0)
    extra = table.iloc[-1]
    assert extra["name"] == "Reformatting CopyNode for Output Tensor 0" and extra["type"] == ""
    assert table.loc[0, "onnx_nodes"] == info.layers.loc[0, "onnx_nodes"]
    assert any("not in the layer information" in n and "Reformatting CopyNode" in n for n in notes)
    assert any(names[1] in n for n in notes)  # a layer with no time is reported, not dropped


# ---- availability -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    "tensorrt" in sys.modules or __import__("importlib").util.find_spec("tensorrt") is not None,
    reason="TensorRT is installed here",
)
def test_missing_tensorrt_is_explained_and_auto_falls_back():
    ok, reason = TensorRTBackend().available()
    assert not ok and "not installed" in reason and "NGC" in reason and "\n" not in reason
    backend, why = choose_backend("auto")
    assert backend.name == "onnxruntime" and why.startswith("onnxruntime (TensorRT unavailable: ")
    with pytest.raises(WorkbenchError, match="^tensorrt backend unavailable: TensorRT's Python package"):
        choose_backend("tensorrt")
    with pytest.raises(WorkbenchError, match="TensorRT unavailable"):
        TensorRTBackend().build(None, BuildConfig())
