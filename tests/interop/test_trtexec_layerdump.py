"""Imports keep what a trtexec log holds: its text layer dump, engine and weight sizes, and its command line."""

from pathlib import Path


from workbench.interop.trtexec import command_for_run, import_trtexec
from workbench.interop.trtexec.layerdump import parse_layer_dump

RECORDED = (
    Path(__file__).resolve().parents[2] / "data" / "recorded" / "trtexec-10.16" / "h100" / "inference-verbose.log"
)
HEAD = (
    "&&&& RUNNING TensorRT.trtexec [TensorRT v101601] [b11] # trtexec --onnx=resnet.onnx --fp16 "
    "--shapes=x:1x3x8x8 --dumpLayerInfo --profilingVerbosity=detailed --saveEngine=resnet.plan\n"
    "[07/07/2026-02:11:26] [I] === Model Options ===\n[07/07/2026-02:11:26] [I] Model: resnet.onnx\n"
    "[07/07/2026-02:11:26] [I]\n"
)
DETAILED = (
    "[07/07/2026-02:11:27] [I] [TRT] Total Weights Memory: 9472 bytes\n"
    "[07/07/2026-02:11:27] [I] Engine built in 12.5 sec.\n"
    "[07/07/2026-02:11:27] [I] Created engine with size: 0.5 MiB\n"
    "[07/07/2026-02:11:27] [I] Layer Information:\n"
    "Layers:\n"
    "Name: Reformatting CopyNode for Input Tensor 0 to conv1 + relu1, LayerType: Reformat, Inputs: [ { Name: x, "
    "Location: Device, Dimensions: [1,3,8,8], Format/Datatype: Row major linear FP32 }], Outputs: [ { Name: x "
    "copy, Location: Device, Dimensions: [1,3,8,8], Format/Datatype: Channel major FP16 format where channel % 8 "
    "== 0 }], ParameterType: Reformat, Origin: REFORMAT, TacticValue: 0x00000000000003e8, StreamId: 0, Metadata: \n"
    "Name: conv1 + relu1, LayerType: CaskConvolution, Inputs: [ { Name: x copy, Location: Device, Dimensions: "
    "[1,3,8,8], Format/Datatype: Channel major FP16 format where channel % 8 == 0 }], Outputs: [ { Name: r1, "
    "Location: Device, Dimensions: [1,16,8,8], Format/Datatype: Channel major FP16 format where channel % 8 == 0 "
    '}], ParameterType: Convolution, Kernel: [3,3], OutMaps: 16, Groups: 1, Weights: {"Type": "Half", '
    '"Count": 432}, Bias: {"Type": "Half", "Count": 16}, HasReLU: 1, Activation: RELU, TacticName: '
    "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16, TacticValue: 0x1, StreamId: 0, Metadata: [ONNX Layer: "
    "/conv1/Conv]\x1e[ONNX Layer: /relu1/Relu]\n"
    "Name: fc, LayerType: gemm, Inputs: [ { Name: r1, Location: Device, Dimensions: [1,16,8,8], Format/Datatype: "
    "Half }], Outputs: [ { Name: y, Location: Device, Dimensions: [1,10], Format/Datatype: Float }], "
    "TacticName: gemm_kernel, StreamId: 0, Metadata: [ONNX Layer: /fc/Gemm]\n"
    "Name: broken record without a colon space\n"
    "\n"
    "Bindings:\n"
    "x\n"
    "y\n"
    "[07/07/2026-02:11:28] [I] Starting inference\n"
)


def test_a_detailed_text_layer_dump_becomes_the_layer_table(tmp_path):
    log = tmp_path / "build.log"
    log.write_text(HEAD + DETAILED)
    run = import_trtexec([log])
    assert list(run.layers["name"]) == [
        "Reformatting CopyNode for Input Tensor 0 to conv1 + relu1",
        "conv1 + relu1",
        "fc",
    ]
    conv = run.layers.set_index("name").loc["conv1 + relu1"]
    assert conv["type"] == "CaskConvolution" and conv["precision"] == "fp16"
    assert conv["onnx_nodes"] == ["/conv1/Conv", "/relu1/Relu"]
    assert conv["activation_bytes"] == 16 * 8 * 8 * 2 and "sm80_xmma" in conv["tactic"]
    assert run.memory.weights_bytes > 0  # from the layers' weights
    assert run.memory.plan_bytes == 2**19 and run.build_seconds == 12.5
    assert any("read from the log's text layer dump" in n for n in run.notes)
    assert any("could not be read" in n and "broken record" in n for n in run.notes)  # unparsed: a warning
    assert command_for_run(run, version=10).startswith("trtexec --onnx=resnet.onnx --fp16 --shapes=x:1x3x8x8")


def test_a_names_only_dump_keeps_the_names_and_says_what_is_missing(tmp_path):
    dump = parse_layer_dump(
        [
            "[07/07/2026-02:11:27] [I] Layer Information:",
            "Layers:",
            "conv1 + relu1",
            "fc",
            "",
            "Bindings:",
            "x",
            "[07/07/2026-02:11:28] [I] Starting inference",
        ]
    )
    assert dump.layers == ("conv1 + relu1", "fc") and not dump.detailed and dump.bindings == ("x",)
    log = tmp_path / "names.log"
    log.write_text(
        HEAD.replace(" --profilingVerbosity=detailed", "") + "[07/07/2026-02:11:27] [I] Layer "
        "Information:\nLayers:\nconv1 + relu1\nfc\n\nBindings:\nx\ny\n"
    )
    run = import_trtexec([log])
    assert list(run.layers["name"]) == ["conv1 + relu1", "fc"]
    assert run.layers["onnx_nodes"].iloc[0] == ["conv1", "relu1"]
    assert any("layer names only" in n and "--profilingVerbosity=detailed" in n for n in run.notes)


def test_the_recorded_verbose_log_keeps_its_command_and_engine_size():
    run = import_trtexec([RECORDED])
    command = (
        "trtexec --loadEngine=model-trained.trt --shapes=x:4x1x28x28 --noDataTransfers --useSpinWait "
        "--useCudaGraph --verbose"
    )
    assert command_for_run(run) == command and run.extra["trtexec_command"] == command
    assert run.memory.plan_bytes == 6 * 2**20 and run.memory.engine_device_bytes == 2007040
    assert any("No layers in these files" in n for n in run.notes)  # said, not a silent "Layers 0"
    assert run.shapes_text == "x:4x1x28x28"
