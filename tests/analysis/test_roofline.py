"""Work per node (FLOPs, bytes) against hand counts, the device table, the roofline of CPU and imported A100 runs."""

from __future__ import annotations

import html
import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from support import FIXTURES

import workbench as wb
from workbench.analysis import devices
from workbench.analysis.roofline import layer_info_work, roofline
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.interop.trtexec import import_trtexec
from workbench.model.samples import sample_path
from workbench.model.node_cost import model_work
from workbench.results.run import LatencyStats, Run, TensorInfo
from workbench.views import charts
from workbench.views.report import report_html

A100_FP16 = FIXTURES / "trtexec" / "resnet18-a100-fp16"
A100_QAT = FIXTURES / "trtexec" / "resnet18-a100-qat"


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    domains = sorted({n.domain for n in nodes if n.domain})  # ONNX Runtime's contrib operators, when used
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    proto = helper.make_model(graph, opset_imports=opsets)
    return wb.Model(proto, name="hand")


def _init(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def _io(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


# ---- hand counts of single operators --------------------------------------------------------------------------


def test_conv_gemm_matmul_match_hand_counts():
    conv = _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])],
        [_io("x", ["n", 3, 8, 8])],
        [_io("y", ["n", 4, 8, 8])],
        [_init("w", (4, 3, 3, 3)), _init("b", (4,))],
    )
    row = model_work(conv, {"x": (2, 3, 8, 8)}).nodes.iloc[0]
    outputs = 2 * 4 * 8 * 8  # N * K * H * W
    assert row.flops == 2 * outputs * (3 * 3 * 3) + outputs  # a multiply-add is 2, plus the bias
    assert row.input_bytes == 2 * 3 * 8 * 8 * 4 and row.output_bytes == outputs * 4
    assert row.weight_bytes == (4 * 3 * 3 * 3 + 4) * 4 and row.matrix

    depthwise = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="dw", group=4, pads=[1, 1, 1, 1])],
        [_io("x", [1, 4, 8, 8])],
        [_io("y", [1, 4, 8, 8])],
        [_init("w", (4, 1, 3, 3))],
    )
    assert model_work(depthwise).nodes.iloc[0].flops == 2 * (4 * 8 * 8) * 9  # each output sees 1 channel × 3×3

    gemm = _model(
        [helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm", transB=1)],
        [_io("a", [2, 5])],
        [_io("y", [2, 3])],
        [_init("b", (3, 5)), _init("c", (3,))],
    )
    assert model_work(gemm).nodes.iloc[0].flops == 2 * 2 * 3 * 5 + 2 * 3  # 2·M·N·K + M·N for C

    batched = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
        [_io("a", [2, 4, 3, 5]), _io("b", [4, 5, 6])],
        [_io("y", [2, 4, 3, 6])],
    )
    row = model_work(batched).nodes.iloc[0]
    assert row.flops == 2 * (2 * 4) * 3 * 6 * 5  # broadcast batch 2×4, M=3, N=6, K=5
    assert row.input_bytes == (2 * 4 * 3 * 5 + 4 * 5 * 6) * 4 and row.output_bytes == 2 * 4 * 3 * 6 * 4


def test_qdq_and_fp16_bytes_follow_the_precision():
    scale, zero = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")
    wq = numpy_helper.from_array(np.ones((8, 4, 1, 1), np.int8), "wq")
    qdq = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
            helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], name="dqw"),
            helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv"),
        ],
        [_io("x", [1, 4, 16, 16])],
        [_io("y", [1, 8, 16, 16])],
        [scale, zero, wq],
    )
    work = model_work(qdq)
    conv = work.nodes.set_index("node").loc["conv"]
    assert conv.input_bytes == 4 * 16 * 16 * 1  # the DQ is fused into its reader: int8 in
    assert conv.weight_bytes == 8 * 4 * 1  # weights stored int8
    assert conv.precision == "int8" and conv.flops == 2 * 8 * 16 * 16 * 4
    assert work.nodes.set_index("node").loc["dqw", "folded"]  # a weight's DQ is folded at build time
    fused = work.group(["dq", "dqw", "conv"])
    # int8 input, int8 weights, the input DQ's scale (fp32) and zero point (int8), fp32 output
    assert fused["bytes"] == 4 * 16 * 16 + 8 * 4 + 4 + 1 + 8 * 16 * 16 * 4 and fused["precision"] == "int8"

    half = _model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        [_io("x", [1, 1000], TensorProto.FLOAT16)],
        [_io("y", [1, 1000], TensorProto.FLOAT16)],
    )
    row = model_work(half).nodes.iloc[0]
    assert (row.bytes, row.precision) == (2 * 1000 * 2, "fp16")


def test_attention_operator_matches_hand_count():
    attention = _model(
        [helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn")],
        [_io("q", [1, 2, 4, 8]), _io("k", [1, 2, 6, 8]), _io("v", [1, 2, 6, 8])],
        [_io("y", [1, 2, 4, 8])],
        opset=23,
    )
    b, h, s, s_kv, d = 1, 2, 4, 6, 8
    row = model_work(attention).nodes.iloc[0]
    assert row.flops == 2 * (2 * b * h * s * s_kv * d) + 5 * b * h * s * s_kv  # QKᵀ and AV, then the softmax
    assert row.matrix


def test_matmul_layouts_the_exporters_write_match_hand_counts():
    def flops(node, inputs, output, initializers=(), opset=17):
        return model_work(_model([node], inputs, [output], initializers, opset)).nodes.iloc[0]

    vector = flops(helper.make_node("MatMul", ["a", "b"], ["y"]), [_io("a", [5]), _io("b", [3, 5, 6])], _io("y", None))
    assert vector.flops == 2 * 3 * 1 * 6 * 5  # a 1-D left operand is a row, broadcast over the batch of 3
    gemm = flops(
        helper.make_node("Gemm", ["a", "b"], ["y"], transA=1, transB=1),
        [_io("a", [7, 4]), _io("b", [3, 7])],
        _io("y", [4, 3]),
    )
    assert gemm.flops == 2 * 4 * 3 * 7  # Aᵀ (4×7) · Bᵀ (7×3)
    fused = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain="com.microsoft", transB=1, alpha=0.125)
    row = flops(fused, [_io("a", [2, 12, 16, 32]), _io("b", [2, 12, 16, 32])], _io("y", [2, 12, 16, 16]))
    assert row.flops == 2 * (2 * 12) * 16 * 16 * 32 + 2 * 12 * 16 * 16 and row.note == ""  # QKᵀ, then the scale
    mha = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="com.microsoft", num_heads=4)
    row = flops(mha, [_io("q", [2, 10, 64]), _io("k", [2, 12, 64]), _io("v", [2, 12, 64])], _io("y", None))
    # QKᵀ and scores·V over all heads (2·2·B·S·S_kv·hidden), then the softmax per head (5·B·heads·S·S_kv)
    assert (row.flops, row.note) == (2 * 2 * 2 * 10 * 12 * 64 + 5 * 2 * 4 * 10 * 12, "")
    for equation, shapes, expected in [
        ("bhqd,bhkd->bhqk", ([2, 12, 16, 32], [2, 12, 24, 32]), 2 * 2 * 12 * 16 * 24 * 32),  # attention scores
        ("...ij,jk", ([3, 4, 5], [5, 6]), 2 * 3 * 4 * 5 * 6),  # implicit output, ellipsis batch
        ("ij,ij->ij", ([4, 5], [4, 5]), 4 * 5),  # a product, nothing summed
        ("ij->ji", ([4, 5],), 0),  # a transpose
    ]:
        names = [f"x{i}" for i in range(len(shapes))]
        node = helper.make_node("Einsum", names, ["y"], equation=equation)
        row = flops(node, [_io(n, s) for n, s in zip(names, shapes)], _io("y", None))
        assert (row.flops, row.note) == (expected, ""), equation


def test_a_matmul_whose_shapes_are_unknown_says_which():
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")
    row = model_work(_model([node], [_io("a", None), _io("b", [5, 6])], [_io("y", None)])).nodes.iloc[0]
    assert math.isnan(row.flops) and "'a'" in row.note and "not known" in row.note


def test_strided_and_sliced_readers_touch_only_what_they_read():
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="down", strides=[2, 2])
    work = model_work(_model([conv], [_io("x", [1, 8, 16, 16])], [_io("y", None)], [_init("w", (4, 8, 1, 1))]))
    assert work.nodes.iloc[0].input_bytes == 8 * 16 * 16 * 4 / 4  # every other row and column: a quarter
    sliced = _model(
        [helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="every_other")],
        [_io("x", [1, 8, 16, 16])],
        [_io("y", None)],
        [
            numpy_helper.from_array(np.array(v, np.int64), n)
            for n, v in [("s", [0]), ("e", [16]), ("a", [3]), ("st", [2])]
        ],
    )
    row = model_work(sliced).nodes.iloc[0]
    assert row.input_bytes == row.output_bytes == 8 * 16 * 8 * 4
    shape = _model(
        [helper.make_node("Shape", ["x"], ["y"], name="shape")],
        [_io("x", [1, 8, 16, 16])],
        [_io("y", [4], TensorProto.INT64)],
    )
    assert model_work(shape).nodes.iloc[0].input_bytes == 0  # the dimensions, not the data


def test_a_weight_dequantize_costs_nothing_in_tensorrt_and_runs_in_onnx_runtime():
    scale, zero = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")
    wq = numpy_helper.from_array(np.ones((64, 32), np.int8), "wq")
    model = _model(
        [
            helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], name="dqw"),
            helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
        ],
        [_io("x", [4, 64])],
        [_io("y", [4, 32])],
        [scale, zero, wq],
    )
    work = model_work(model)
    alone = work.group(["dqw"], engine_folds=False)  # ONNX Runtime lists it as a layer of its own: it ran
    assert alone["flops"] == 2 * 64 * 32 and alone["bytes"] == 64 * 32 * 1 + 4 + 1 + 64 * 32 * 4  # int8 in, fp32 out
    assert work.group(["dqw", "mm"])["flops"] == 2 * 4 * 32 * 64  # TensorRT folds it into the weights
    assert work.group(["dqw"])["flops"] == 2 * 64 * 32  # a layer of folded nodes only still ran: its work counts
    assert work.total_flops == 2 * 4 * 32 * 64


def test_a_lower_bound_above_the_measured_latency_names_the_roof_or_the_work():
    run = Run(
        backend="tensorrt",
        layers=[
            {"name": "conv", "type": "Conv", "precision": "fp32", "time_ms": 0.001, "onnx_nodes": ["conv"]},
        ],
        latency=LatencyStats.from_times([0.001]),
        model={"name": "digits_cnn"},
        inputs=(TensorInfo("x", "float32", (1, 8, 64, 64)),),
    )
    conv = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
        [_io("x", [1, 8, 64, 64])],
        [_io("y", None)],
        [_init("w", (8, 8, 3, 3))],
    )
    slow_peak = devices.Device("slow", {"fp32": 1e9}, 1e15, "test", "gpu", cache_bytes=2**20)
    roof = roofline(run, device=slow_peak, model=conv)
    assert roof.lower_bound_ms > roof.measured_ms and any("it is the roof" in n for n in roof.notes)
    assert any("Above the roof, compute-bound" in n and "conv" in n for n in roof.notes)
    assert "above the roof" in roof.layers.set_index("name").loc["conv", "note"]  # the layer's own row says why
    narrow = devices.Device("narrow", {"fp32": 1e18}, 1e6, "test", "gpu", cache_bytes=2**10)
    roof = roofline(run, device=narrow, model=conv)  # 260 KB through 1 MB/s, far more than a 1 KiB cache holds
    assert any("it is the work" in n for n in roof.notes)
    assert any("without a proven cause" in n and "cache does not explain it" in n for n in roof.notes)
    roomy = devices.Device("roomy", {"fp32": 1e18}, 1e6, "test", "gpu", cache_bytes=2**30)
    roof = roofline(run, device=roomy, model=conv)
    assert any("fits in the 1024 MiB cache" in n for n in roof.notes)
    assert not any("it is the work" in n for n in roof.notes)


def test_unknown_operator_says_so():
    model = _model([helper.make_node("Det", ["x"], ["y"], name="det")], [_io("x", [3, 3])], [_io("y", [])])
    row = model_work(model).nodes.iloc[0]
    assert math.isnan(row.flops) and "Det" in row.note


# ---- the bundled samples: totals against hand counts written out -------------------------------------------------


def test_sample_totals_match_hand_counts():
    # digits_cnn, batch 1, 1×8×8: conv 1→16 3×3, relu, conv 16→32 3×3, relu, maxpool 2×2, fc 512→64, relu, fc 64→10
    digits = (
        2 * 16 * 64 * 9
        + 16 * 64
        + 16 * 64
        + 2 * 32 * 64 * 144
        + 32 * 64
        + 32 * 64
        + 512 * 4
        + 2 * 512 * 64
        + 64
        + 64
        + 2 * 64 * 10
        + 10
    )
    # resnet_mini, batch 1, 3×128×128: multiply-adds of the convolutions and the classifier (K·H·W·C·k·k) ...
    macs = (
        16 * 64 * 64 * 3 * 49  # stem 7×7 stride 2
        + 4 * 16 * 32 * 32 * 16 * 9  # stage 0: four 3×3 convs at 32×32
        + 32 * 16 * 16 * 16
        + 32 * 16 * 16 * 16 * 9
        + 3 * 32 * 16 * 16 * 32 * 9  # stage 1 (1×1 downsample)
        + 64 * 8 * 8 * 32
        + 64 * 8 * 8 * 32 * 9
        + 3 * 64 * 8 * 8 * 64 * 9  # stage 2
        + 128 * 4 * 4 * 64
        + 128 * 4 * 4 * 64 * 9
        + 3 * 128 * 4 * 4 * 128 * 9  # stage 3
        + 128 * 1000
    )  # fc
    # ... plus one operation per bias, ReLU and residual-add output element, the 3×3 max pool and the global pool
    conv_outputs = 16 * 64 * 64 + 4 * 16 * 32 * 32 + 5 * 32 * 16 * 16 + 5 * 64 * 8 * 8 + 5 * 128 * 4 * 4
    relus = 16 * 64 * 64 + 4 * (16 * 32 * 32 + 32 * 16 * 16 / 2 + 64 * 8 * 8 / 4 + 128 * 4 * 4 / 8)
    resnet = (
        2 * macs
        + conv_outputs
        + 1000
        + relus
        + (2 * 16 * 32 * 32 + 2 * 32 * 16 * 16 + 2 * 64 * 8 * 8 + 2 * 128 * 4 * 4)
        + 16 * 32 * 32 * 9
        + 128 * 4 * 4
    )
    # transformer_encoder, batch 2 × 16 tokens, width 128, 4 heads of 32, MLP 512, two layers
    t, d, h, s, hd = 2 * 16, 128, 4, 16, 32
    layer = (
        2 * t * d * 3 * d
        + t * 3 * d  # qkv projection + bias
        + 2 * (2 * 2 * h * s * s * hd)
        + 2 * h * s * s
        + 5 * 2 * h * s * s  # QKᵀ, AV, scale, softmax
        + 2 * t * d * d
        + t * d
        + t * d  # output projection + bias, residual
        + 2 * 7 * t * d  # two LayerNorms
        + 2 * t * d * 4 * d
        + t * 4 * d
        + 5 * t * 4 * d  # MLP up + bias + exact GELU (div, erf, add, mul, mul)
        + 2 * t * 4 * d * d
        + t * d
        + t * d
    )  # MLP down + bias, residual
    transformer = 2 * layer + t * d + 7 * t * d  # + position embedding add, final LayerNorm
    for name, shapes, hand in (
        ("digits_cnn", {"input": (1, 1, 8, 8)}, digits),
        ("resnet_mini", {"input": (1, 3, 128, 128)}, resnet),
        ("transformer_encoder", {"input_ids": (2, 16)}, transformer),
    ):
        total = model_work(wb.load_model(sample_path(name)), shapes).total_flops
        assert total == pytest.approx(hand, rel=0.01), name
    assert 2 * macs == pytest.approx(resnet, rel=0.01)  # the multiply-adds are all but 1% of ResNet's work


def test_a_fused_layer_moves_only_what_crosses_its_boundary():
    work = model_work(wb.load_model(sample_path("resnet_mini")), {"input": (1, 3, 128, 128)})
    fused = work.group(["/stem/stem.0/Conv", "/stem/stem.2/Relu"])
    # reads the image and the weights, writes the ReLU's output; the conv's output never reaches DRAM
    assert fused["bytes"] == 3 * 128 * 128 * 4 + (16 * 3 * 49 + 16) * 4 + 16 * 64 * 64 * 4
    assert fused["flops"] == 2 * 16 * 64 * 64 * 3 * 49 + 2 * 16 * 64 * 64
    assert work.group(["nope"])["missing"] == ["nope"]


# ---- devices ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, row",
    [
        ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("Tesla T4", "T4"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("NVIDIA GeForce RTX 5090", "GeForce RTX 5090"),
        ("A100 SXM 40GB", "A100 SXM 40GB"),
        ("NVIDIA A10G", None),
        ("NVIDIA H100 NVL", None),
        ("TITAN RTX", None),
    ],
)
def test_device_found_by_name(name, row):
    found = devices.find_device(name)
    assert (found.name if found else None) == row


def test_every_device_number_has_a_source():
    table = devices.gpu_table()
    assert len(table) >= 15
    for rec in table.to_dict("records"):
        assert rec["source"].startswith("NVIDIA ") and "https://" in rec["source"], rec["device"]
        assert rec["fp32"] > 0 and rec["bandwidth_gbs"] > 0
        for p in ("tf32", "fp16", "bf16", "int8", "fp8"):  # dense Tensor Core rates exceed the CUDA-core FP32 rate
            assert rec[p] is None or np.isnan(rec[p]) or rec[p] >= rec["fp32"], (rec["device"], p)
    a100 = devices.find_device("NVIDIA A100-SXM4-40GB")
    assert a100.peaks["fp16"] == 312e12 and a100.bandwidth == 1555e9 and a100.peaks["fp8"] is None
    h100 = devices.find_device("NVIDIA H100 80GB HBM3")
    assert h100.peak("fp32", matrix=True, tf32=True) == (494.5e12, "tf32 tensor cores")
    assert h100.peak("fp32", matrix=True) == (67e12, "fp32 cuda cores")  # TF32 off (--noTF32): the FP32 peak
    assert devices.find_device("Tesla T4").peak("bf16", matrix=True) == (8.1e12, "fp32 cuda cores")  # no BF16 path
    with pytest.raises(WorkbenchError, match="No peak figures for device 'Quadro'"):
        devices.device_for("Quadro")


# ---- runs: a CPU profile, imported TensorRT A100 profiles -----------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_run():
    return wb.profile(
        sample_path("resnet_mini"),
        "fp32",
        backend="onnxruntime",
        config=wb.BuildConfig(iterations=5, warmup_ms=10, duration_s=0),
    )


def test_cpu_run_against_the_measured_cpu_peak(cpu_run):
    roof = roofline(cpu_run)
    assert roof.device.kind == "cpu" and "measured on this CPU" in roof.device.source
    assert roof.device.peaks["fp32"] > 1e8 and roof.device.bandwidth > 1e8  # a real measurement: numpy here
    convs = roof.layers[roof.layers["type"] == "Conv"]
    assert len(convs) >= 20 and (convs["work_from"] == "onnx").all()
    assert convs["pct_of_roof"].notna().all() and (convs["pct_of_roof"] > 0).all()
    # every ONNX node's FLOPs land on exactly one layer: the layers sum to the model's count
    assert roof.layers["flops"].sum() == pytest.approx(89_332_712, rel=1e-6)
    assert 0 < roof.lower_bound_ms < roof.layer_time_ms * 10
    html = report_html(cpu_run)
    assert "Hardware limit (roofline)" in html and "Lower bound (sum of per-layer limits)" in html
    assert "measured on this CPU" in html


def test_a_real_cpu_run_with_one_layer_made_a_million_times_faster_is_named_above_its_roof(cpu_run):
    """The check bites on a real run's counted work: held against this CPU's measured roofs raised 100-fold (so no
    layer of the correct run, timed under any load, is above them: no finding), the memory-bound layer with the
    most time, its time divided by a million, is named above the roof its bytes fit and blamed on its own figures."""
    import dataclasses

    from workbench.analysis.checks import checked

    measured = roofline(cpu_run).device
    high = dataclasses.replace(
        measured,
        peaks={"fp32": 100 * measured.peaks["fp32"]},
        bandwidth=100 * measured.bandwidth,
        cache_bandwidth=100 * measured.cache_bandwidth if measured.cache_bandwidth else None,
        contended="",  # raised 100-fold, no longer the load's figure
    )
    correct = roofline(cpu_run, device=high)
    assert not {"roof_percent", "lower_bound"} & {f.check for f in checked(cpu_run, correct).findings}
    layers = correct.layers
    target = layers[layers["bound"] == "memory"].sort_values("time_ms").iloc[-1]
    faster = cpu_run.layers.copy()
    faster.loc[faster["name"] == target["name"], "time_ms"] /= 1e6
    wrong = cpu_run.replace(layers=faster)
    roof = roofline(wrong, device=high)
    row = roof.layers.set_index("name").loc[target["name"]]
    assert row.pct_of_roof == pytest.approx(1e6 * target.pct_of_roof) and row.memory_roof == target.memory_roof
    found = {f.check: f for f in checked(wrong, roof).findings}["roof_percent"]
    assert found.value == f"1: {target['name']} ({row.pct_of_roof:.0f}%)"
    where = f"{high.cache_name} roof" if target.memory_roof != "DRAM" else "DRAM roof"
    assert found.cause.startswith(f"the figures of these layers, not the roof: 1 memory-bound, above the {where}")


def test_fp16_cpu_run_maps_layers_through_the_casts_ort_inserted():
    # ONNX Runtime runs an fp16 graph's convolutions in fp32 on a CPU and names them InsertedPrecisionFreeCast_…
    run = wb.profile(
        sample_path("digits_cnn"),
        "fp16",
        backend="onnxruntime",
        config=wb.BuildConfig(iterations=3, warmup_ms=0, duration_s=0),
    )
    layers = roofline(run).layers
    convs = layers[layers["type"] == "Conv"]
    assert len(convs) == 2 and (convs["work_from"] == "onnx").all()
    assert sorted(convs["flops"]) == [2 * 16 * 64 * 9 + 2 * 16 * 64, 2 * 32 * 64 * 144 + 2 * 32 * 64]
    assert convs["note"].str.contains("bytes at the graph's fp16; the backend ran it in fp32").all()


def test_imported_a100_run_shows_each_layer_against_the_a100_roof(tmp_path):
    run = import_trtexec([A100_FP16])
    roof = roofline(run)
    assert roof.device.name == "A100 PCIe 80GB"  # "NVIDIA A100 80GB PCIe" in the run's device metadata
    convs = roof.layers[roof.layers["type"] == "CaskConvolution"]
    assert len(convs) == 21 and (convs["work_from"] == "layer info").all()
    assert ((convs["pct_of_roof"] > 1) & (convs["pct_of_roof"] <= 100)).all()  # no layer beats the hardware
    assert (convs["precision"] == "fp16").all()
    first = convs.iloc[0]  # Conv_0 + Relu_1: 7×7, 3→64, stride 2, batch 32, + bias + ReLU
    out = 32 * 64 * 112 * 112
    assert first.flops == 2 * out * 3 * 49 + 2 * out
    # ResNet-18 is 1.814 G multiply-adds per image: the engine's layers hold that work (within 1%) for batch 32
    macs = (
        64 * 112 * 112 * 3 * 49
        + 4 * 64 * 56 * 56 * 64 * 9
        + sum(
            c * s * s * (c // 2) * 9 + 3 * c * s * s * c * 9 + c * s * s * (c // 2)
            for c, s in ((128, 28), (256, 14), (512, 7))
        )
        + 512 * 1000
    )
    assert macs == 1_814_073_344
    assert roof.layers["flops"].sum() == pytest.approx(2 * macs * 32, rel=0.01)
    assert 0 < roof.lower_bound_ms < run.latency.mean_ms < roof.layer_time_ms
    reformat = roof.layers[roof.layers["type"] == "Reformat"].iloc[0]
    assert reformat.flops == 0 and reformat.bound == "memory"
    shown = roof._repr_html_()  # the notebook display: summary, notes, the layers above their limit
    assert "Lower bound (sum of per-layer limits)" in shown and "Conv_0 + Relu_1" in shown
    html = report_html(run)
    assert "A100 PCIe 80GB" in html and "nvidia-a100-datasheet" in html and "pct_of_roof" in html
    assert f"{roof.lower_bound_ms:.4f} ms" in html


def test_imported_qat_run_uses_the_int8_peak():
    roof = roofline(import_trtexec([A100_QAT]))
    convs = roof.layers[roof.layers["type"] == "CaskConvolution"]
    assert (convs["precision"] == "int8").all() and (convs["peak_flops"] == 624e12).all()
    assert (convs["peak_from"] == "int8 tensor cores").all()


def test_an_engine_run_counted_from_its_onnx_model():
    model = wb.load_model(sample_path("resnet_mini"))
    names = [n.name for n in model.proto.graph.node]
    layers = [
        {
            "name": "stem + relu",
            "type": "CaskConvolution",
            "precision": "fp16",
            "time_ms": 0.02,
            "onnx_nodes": names[:2],
        }
    ]
    layers += [{"name": n, "type": "Layer", "precision": "fp16", "time_ms": 0.01, "onnx_nodes": [n]} for n in names[2:]]
    run = Run(
        backend="tensorrt",
        layers=layers,
        environment={"gpu": "NVIDIA L4"},
        inputs=(TensorInfo("input", "float32", (8, 3, 128, 128)),),
        model={"name": "resnet_mini"},
    )
    roof = roofline(run, model=model)
    assert (roof.layers["work_from"] == "onnx").all() and roof.device.name == "L4"
    assert roof.layers["flops"].sum() == pytest.approx(8 * 89_332_712)  # every node counted once, at batch 8
    stem = roof.layers.iloc[0]
    assert (stem.peak_from, stem.peak_flops) == ("fp16 tensor cores", 121e12)
    # the fused stem reads the image and the weights and writes the ReLU output: fp32 in the graph, fp16 in the
    # engine (a weakly typed --fp16 build), so half the graph's bytes
    assert stem.bytes == (8 * 3 * 128 * 128 + 16 * 3 * 49 + 16 + 8 * 16 * 64 * 64) * 2
    assert "scaled from the graph's fp32 to the fp16" in stem.note


def test_unrecorded_input_shapes_are_named():
    run = Run(
        backend="onnxruntime",
        model={"name": "digits_cnn"},
        environment={"cpu": "x"},
        layers=[{"name": "/features/features.0/Conv", "type": "Conv", "time_ms": 0.01, "precision": "fp32"}],
    )
    roof = roofline(run, device="NVIDIA L4", model=sample_path("digits_cnn"))
    assert any("does not record the shape of 'input': counted at 1x1x8x8" in n for n in roof.notes)
    assert roof.layers["flops"][0] == 2 * 16 * 64 * 9 + 16 * 64  # the layer named after its node is that node


def test_layers_without_known_work_say_so():
    run = Run(
        backend="tensorrt",
        layers=[
            {"name": "{ForeignNode[a...b]}", "type": "Myelin", "precision": "fp16", "time_ms": 0.5, "onnx_nodes": []},
            {
                "name": "Conv_0",
                "type": "CaskConvolution",
                "precision": "fp16",
                "time_ms": 0.1,
                "onnx_nodes": ["Conv_0"],
            },
        ],
        latency=LatencyStats.from_times([1.0]),
        environment={"gpu": "NVIDIA H100 PCIe"},
        model={"name": "m", "path": "/nowhere/model.onnx"},
    )
    roof = roofline(run)
    assert roof.layers["limit_ms"].isna().all() and (roof.layers["work_from"] == "unknown").all()
    assert "no ONNX nodes" in roof.layers["note"][0] and "not here" in roof.layers["note"][1]
    summary = dict(roof.summary_rows())
    assert math.isnan(roof.lower_bound_ms) and "Layers with unknown work" in summary  # unknown, never 0
    assert summary["Lower bound (sum of per-layer limits)"].startswith("unknown") and "nan" not in roof.to_text()
    from workbench.analysis.checks import checked, roofline_evaluations

    # an unknown bound is not a check result: no finding, and no "nan" among the findings
    assert roofline_evaluations(run, roof)["lower_bound"] is None
    assert not any("nan" in f.text() for f in checked(run, roof).findings)
    with pytest.raises(WorkbenchError, match="does not say which GPU"):
        roofline(run.replace(environment={}))


def test_roofline_charts():
    roof = roofline(import_trtexec([A100_FP16]), device="NVIDIA A100-SXM4-40GB")
    fig = charts.roofline(roof)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    roofs = [t for t in fig.data if t.mode == "lines"]
    points = [t for t in fig.data if t.mode == "markers"]
    # the roof of each peak the layers use: FP16 Tensor Cores (convolutions), FP32 CUDA cores (reformats, pooling)
    assert {t.name.split(" (")[0] for t in roofs} == {"roof: fp16 tensor cores", "roof: fp32 cuda cores"}
    assert sum(len(t.x) for t in points) == int(((roof.layers.flops > 0) & (roof.layers.time_ms > 0)).sum())
    assert max(roofs[0].y) == 312e12  # A100 FP16 dense peak
    bars = charts.time_above_limit(roof, top=5)
    assert [t.name for t in bars.data] == ["hardware limit", "above the limit"] and len(bars.data[0].y) == 5


def test_cli_roofline(tmp_path, capsys):
    run_dir = tmp_path / "run"
    import_trtexec([A100_FP16]).save(run_dir)
    out = tmp_path / "roof.html"
    assert main(["roofline", str(run_dir), "--device", "H100 SXM", "--out", str(out), "--top", "3"]) == 0
    text = capsys.readouterr().out
    assert "H100 SXM" in text and "Lower bound" in text and "Time above the limit (top 3)" in text
    assert "Plotly" in out.read_text()[:5_000_000] and "Time above the limit, per layer" in out.read_text()
    assert main(["roofline", str(run_dir), "--out", str(tmp_path / "roof.csv")]) == 0
    assert (tmp_path / "roof.csv").read_text().startswith("name,type,precision,peak_from,time_ms,flops,bytes")
    assert main(["roofline", str(run_dir), "--device", "Voodoo 3"]) == 2
    assert "No peak figures for device 'Voodoo 3'" in capsys.readouterr().err


def test_layer_info_work_of_a_pooling_and_an_unknown_layer():
    pool = {
        "LayerType": "CudaPooling",
        "ParameterType": "Pooling",
        "WindowSize": [3, 3],
        "Inputs": [{"Dimensions": [1, 8, 4, 4], "Format/Datatype": "Row major linear FP32"}],
        "Outputs": [{"Dimensions": [1, 8, 2, 2], "Format/Datatype": "Row major linear FP32"}],
    }
    assert layer_info_work(pool) == {
        "flops": 32 * 9.0,
        "bytes": (128 + 32) * 4.0,
        "matrix": False,
        "precision": "",
        "note": "",
    }
    sliced = {
        "LayerType": "Slice",
        "ParameterType": "Slice",
        "Inputs": [{"Dimensions": [1, 8, 4, 4], "Format/Datatype": "Row major linear FP32"}],
        "Outputs": [{"Dimensions": [1, 8, 2, 4], "Format/Datatype": "Row major linear FP32"}],
    }
    assert layer_info_work(sliced)["bytes"] == (64 + 64) * 4.0  # reads only the half it returns
    doc = json.loads((FIXTURES / "trtexec-11.1" / "h100" / "model-trained.layerinfo.json").read_text())
    gemm = layer_info_work(next(layer for layer in doc["Layers"] if layer.get("LayerType") == "gemm"))
    assert gemm["flops"] == 2 * 1024 * 3136 + 1024 and gemm["matrix"]  # [1, 3136] × [3136, 1024] + bias
    myelin = layer_info_work({"LayerType": "Myelin", "Name": "{ForeignNode[x]}"})
    assert math.isnan(myelin["flops"]) and "Myelin" in myelin["note"]


def test_public_api():
    assert wb.roofline is roofline and wb.model_work is model_work
    assert onnx.__name__ and "A100 SXM 40GB" in set(wb.gpu_table()["device"])


def test_panel_roofline_tab(tmp_path):
    from workbench.results.store import Store
    from workbench.ui import Workbench
    from workbench.ui.parts import figures_in

    panel = Workbench("digits_cnn", store=Store(tmp_path / "workspace"))
    titles = [panel.tabs.get_title(i) for i in range(len(panel.tabs.children))]
    assert titles[titles.index("Layers") + 1] == "Roofline"
    panel.show(import_trtexec([A100_FP16]))
    assert "Lower bound (sum of per-layer limits)" in panel.roofline_summary.value
    assert "A100 PCIe 80GB" in panel.roofline_summary.value
    assert len(figures_in(panel.roofline_chart)) == 2
    panel.show(import_trtexec([FIXTURES / "trtexec" / "mobilenet-qat-titanrtx"]))  # a GPU the table lacks
    assert "No peak figures for device 'NVIDIA TITAN RTX'" in html.unescape(panel.roofline_summary.value)
    assert figures_in(panel.roofline_chart) == []


# ---- bounds per precision on a GPU's real path ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_fp32_int8():
    # batch 64: the matrix layers reach past the FP32 ridge, so the peak (FP32 or TF32) shows in the bound
    config = wb.BuildConfig(iterations=3, warmup_ms=0, duration_s=0, shapes=(("input", (64, 1, 8, 8)),))
    return {
        p: wb.profile(
            sample_path("digits_cnn"),
            p,
            backend="onnxruntime",
            config=config,
            **({"random_calibration": True} if p == "int8" else {}),
        )
        for p in ("fp32", "int8")
    }


def test_fp32_is_held_against_the_fp32_peak_unless_tf32_is_on(digits_fp32_int8):
    """The workbench's FP32 engine is built with --noTF32: its matrix layers' roof is the FP32 peak (67 TFLOPS on
    an H100 SXM), not TF32's 494.5; a TF32 run, or an imported trtexec run without --noTF32, gets TF32's."""
    fp32 = digits_fp32_int8["fp32"]
    matrix = ["Conv", "FusedGemm", "Gemm"]
    strict = roofline(fp32, device="H100 SXM")
    rows = strict.layers[strict.layers["type"].isin(matrix)]
    assert len(rows) == 4 and set(rows["peak_flops"]) == {67e12} and set(rows["peak_from"]) == {"fp32 cuda cores"}
    assert any("FP32 peak, not TF32's: the run's fp32 build has TF32 off (--noTF32)" in n for n in strict.notes)
    tf32_run = fp32.replace(config=fp32.config.replace(precision="tf32"))
    loose = roofline(tf32_run, device="H100 SXM")
    rows = loose.layers[loose.layers["type"].isin(matrix)]
    assert set(rows["peak_flops"]) == {494.5e12} and set(rows["peak_from"]) == {"tf32 tensor cores"}
    assert loose.lower_bound_ms < strict.lower_bound_ms
    imported = fp32.replace(extra={**fp32.extra, "trtexec_command": "trtexec --onnx=m.onnx"})
    assert roofline(imported, device="H100 SXM").lower_bound_ms == pytest.approx(loose.lower_bound_ms)
    strict_import = fp32.replace(extra={**fp32.extra, "trtexec_command": "trtexec --onnx=m.onnx --noTF32"})
    assert roofline(strict_import, device="H100 SXM").lower_bound_ms == pytest.approx(strict.lower_bound_ms)


def test_int8_bound_on_a_gpu_falls_below_fp32s(digits_fp32_int8):
    """ONNX Runtime emulates Q/DQ on the CPU (DequantizeLinear, Cast, QuantizeLinear layers, its own bias
    arithmetic): TensorRT fuses them, so held against a GPU they are no traffic and the INT8 bound is below FP32's."""
    fp32, int8 = (roofline(digits_fp32_int8[p], device="H100 SXM") for p in ("fp32", "int8"))
    assert int8.lower_bound_ms < fp32.lower_bound_ms
    assert int8.layers["bytes"].sum() < 0.5 * fp32.layers["bytes"].sum()
    fused = int8.layers[int8.layers["work_from"] == "fused on target"]
    assert {"QuantizeLinear", "DequantizeLinear", "Cast"} <= set(fused["type"])
    assert (fused["limit_ms"] == 0).all() and fused["note"].str.startswith("not on the GPU's path: ").all()
    assert any(n.startswith(f"Not on H100 SXM's path: {len(fused)} layers") for n in int8.notes)
    convs = int8.layers[int8.layers["type"] == "FusedConv"]
    assert len(convs) == 2 and set(convs["peak_from"]) == {"int8 tensor cores"}
    # on the CPU it ran on, every layer ONNX Runtime ran is its work: nothing is fused away
    on_cpu = roofline(digits_fp32_int8["int8"], device=devices.Device("cpu", {"fp32": 1e11}, 1e10, "test", "cpu"))
    assert not (on_cpu.layers["work_from"] == "fused on target").any()
    assert on_cpu.layers.loc[on_cpu.layers["type"] == "DequantizeLinear", "bytes"].sum() > 0
