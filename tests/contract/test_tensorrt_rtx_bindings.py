"""The TensorRT family against the real TensorRT-RTX library (its wheels install here, so no stubs are needed).

What a TensorRT-RTX user relies on: every TensorRT name and member the shared TensorRT-family code uses exists in
TensorRT-RTX (or is asked for with hasattr); the profiler, progress monitor and logger work as subclasses of
TensorRT-RTX's own base classes; without a supported GPU the backend says why in one line while it can still compile;
the package's maps from TensorRT enums cover TensorRT-RTX's members.
"""

from __future__ import annotations

from test_tensorrt_bindings import _trt_member_uses, _trt_sources, missing_names

from workbench.backends import tensorrt as backend
from workbench.results.layerinfo import TRT_DTYPES


def test_every_trt_name_the_package_uses_exists_in_rtx(rtx_probe):
    missing = missing_names(rtx_probe["api"])
    assert not missing, f"TensorRT-RTX {rtx_probe['version']} lacks names the package uses unguarded: {missing}"


def test_every_member_the_package_calls_exists_in_rtx(rtx_probe):
    here = {m for members in rtx_probe["api"].values() for m in members}
    uses = [(path, *use) for path, tree in _trt_sources().items() for use in _trt_member_uses(tree)]
    seen = {member for _, member, _, _ in uses}
    assert {
        "create_network",
        "build_serialized_network",
        "set_compute_capability",
        "create_runtime_config",
        "execute_async_v3",
        "report_to_profiler",
        "get_engine_information",
    } <= seen, sorted(seen)
    missing = [
        f"{path}:{line} .{member}"
        for path, member, line, guarded in uses
        if member not in here and member not in guarded
    ]
    assert not missing, f"TensorRT-RTX lacks members the package uses without hasattr: {missing}"


def test_rtx_has_what_compile_and_the_runtime_configuration_need(rtx_probe):
    api = rtx_probe["api"]
    assert {"SM75", "SM80", "SM86", "SM89", "SM120", "SM121"} <= set(api["ComputeCapability"])
    assert {"set_compute_capability", "num_compute_capabilities"} <= set(api["IBuilderConfig"])
    assert {
        "create_runtime_cache",
        "set_runtime_cache",
        "cuda_graph_strategy",
        "dynamic_shapes_kernel_specialization_strategy",
    } <= set(api["IRuntimeConfig"])
    assert "EAGER" in api["DynamicShapesKernelSpecializationStrategy"]
    assert "WHOLE_GRAPH_CAPTURE" in api["CudaGraphStrategy"]
    assert {"serialize", "deserialize"} <= set(api["IRuntimeCache"])


def test_callbacks_subclass_rtx_base_classes(rtx_probe):
    profiler, monitor, logger = rtx_probe["profiler"], rtx_probe["monitor"], rtx_probe["logger"]
    assert profiler["is_iprofiler"] and profiler["stats"]["conv1 + relu1"]["time_ms"] == 2.0
    assert profiler["stats"]["fc #2"]["time_ms"] == 0.25
    assert monitor["is_monitor"] and monitor["step_after_cancel"] is False and monitor["cancelled"] is True
    assert monitor["broken_step"] is False and "progress widget was closed" in monitor["broken_failure"]
    assert rtx_probe["monitor_threads"] == {"calls": 161, "overlaps": 0}
    assert logger["is_ilogger"] and logger["errors"] == ["Network has dynamic inputs but no profile"]


def test_rtx_without_a_supported_gpu_compiles_and_says_why_it_cannot_run(rtx_probe):
    report = rtx_probe["availability"]
    assert report["can_compile"] == [True, ""]
    assert report["available"] is False and "\n" not in report["reason"]
    assert "8.0, 8.6, 8.9 or 12.x" in report["reason"] and "'workbench compile' still" in report["reason"]
    assert report["named_error"].startswith("tensorrt-rtx backend unavailable: ")
    assert report["auto_backend"] == "onnxruntime"


def test_enum_maps_cover_every_rtx_member(rtx_probe):
    enums = rtx_probe["enums"]
    gaps = {
        "DataType": set(enums["DataType"]) - set(TRT_DTYPES),
        "TensorFormat": set(enums["TensorFormat"]) - set(backend.TENSOR_FORMATS),
        "LayerType": set(enums["LayerType"]) - set(backend.LAYER_TYPES),
    }
    assert not any(gaps.values()), f"TensorRT-RTX enum members the package does not map: {gaps}"
