"""The DETAILED build log's layer block → layer information (parsed by the same code as trtexec and inspector
JSON), and the memory and time figures around it. The text is TensorRT-RTX 1.7's own format."""

from __future__ import annotations

import pytest

from workbench.errors import WorkbenchError
from workbench.results.buildlog import build_figures, is_report_message, layer_info_from_log
from workbench.results.layerinfo import parse_layer_info

LOG = """[INFO] Total Activation Memory: 8650752 bytes
[INFO] Total Weights Memory: 3320256 bytes
[INFO] Max Scratch Memory: 8650752 bytes
[INFO] Engine generation completed in 0.101885 seconds.
[VERBOSE] Layers:
Name: /stem/Conv_myl0_1, LayerType: correlation, Inputs: [ { Name: input, Dimensions: [1,3,8,8], Strides: [192,64,8,1], StrideOrder: [3,2,1,0], Datatype: Float, Format: (Linear) Row major linear format }], Constants: [ { Name: w, Dimensions: [16,3,3,3], Strides: [27,1,9,3], StrideOrder: [3,0,2,1], Datatype: Half, Format: (NHWC) Channel major format }], Outputs: [ { Name: t0, Dimensions: [1,16,8,8], Strides: [1024,1,128,16], StrideOrder: [3,0,2,1], Datatype: Half, Format: (NHWC) Channel major format }], TacticName: __myelin_CASK_STUB, StreamId: 0, Metadata: [ONNX Layer: /stem/Conv]\x1f[ONNX Layer: /stem/Relu, with a comma]
Name: __myl_Cast_myl0_2, LayerType: kgen, Inputs: [ { Name: t0, Dimensions: [1,16,8,8], Strides: [1024,1,128,16], StrideOrder: [3,0,2,1], Datatype: Half, Format: (NHWC) Channel major format }], Constants: [], Outputs: [ { Name: out, Dimensions: [-1,16,8,8], Strides: [1024,64,8,1], StrideOrder: [3,2,1,0], Datatype: Float, Format: (Linear) Row major linear format }], TacticName: , StreamId: 1, Metadata:

I/O Tensors:
 Name: input, IOMode: Input, DataType: Float, Dimensions: [1,3,8,8], Location: Device, IsShapeInferenceIO: false, ProfileInfo: [ { MinShape: [1,3,8,8], OptShape: [1,3,8,8], MaxShape: [4,3,8,8], Format: Row major linear FP32 format (kLINEAR) }]
 Name: out, IOMode: Output, DataType: Float, Dimensions: [-1,16,8,8], Location: Device, IsShapeInferenceIO: false, ProfileInfo: [ { Format: Row major linear FP32 format (kLINEAR) }]

Engine Metadata:
 Multi-Device: Disabled
[INFO] [MemUsageStats] Peak memory usage of TRT CPU/GPU memory allocators: CPU 3 MiB, GPU 0 MiB
"""


def test_layer_block_reads_like_inspector_json():
    info = parse_layer_info(layer_info_from_log(LOG))
    assert info.schema == "11.x" and list(info.layers["name"]) == ["/stem/Conv_myl0_1", "__myl_Cast_myl0_2"]
    conv, cast = info.layers.iloc[0], info.layers.iloc[1]
    assert conv["onnx_nodes"] == ["/stem/Conv", "/stem/Relu, with a comma"]
    assert conv["precision"] == "fp16" and conv["weight_bytes"] == 16 * 3 * 3 * 3 * 2
    assert conv["activation_bytes"] == 16 * 8 * 8 * 2 and conv["output_formats"] == "(NHWC) Channel major format"
    assert conv["tactic"] == "__myelin_CASK_STUB" and conv["stream_id"] == 0
    assert cast["onnx_nodes"] == [] and cast["stream_id"] == 1 and cast["tactic"] == "" and cast["dynamic_shape"]
    assert [t.name for t in info.io_tensors] == ["input", "out"]
    assert info.io_tensors[0].max_shape == (4, 3, 8, 8)


def test_figures_around_the_block():
    assert build_figures(LOG) == {
        "activation_bytes": 8650752,
        "weights_bytes": 3320256,
        "scratch_bytes": 8650752,
        "generation_seconds": 0.101885,
        "builder_host_peak_bytes": 3 << 20,
    }
    assert is_report_message("Layers:\nName: x") and is_report_message("Total Weights Memory: 12 bytes")
    assert not is_report_message("Timing tactic 0x1234")


def test_a_log_without_the_block_says_how_to_get_it():
    with pytest.raises(WorkbenchError, match="ProfilingVerbosity.DETAILED"):
        layer_info_from_log("[INFO] Engine generation completed in 0.1 seconds.")
