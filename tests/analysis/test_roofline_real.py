"""The roofline and the node costs on real trained models and real trtexec files (issue 20, items 2-6).

Figures are hand counts written out from each model's architecture (all-MiniLM-L6-v2's config, the tensors'
dimensions in TensorRT's layer information), never copied from the code's output.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import onnx
import pytest
from real_models import (
    MINILM_HEADS,
    MINILM_HIDDEN,
    MINILM_INTERMEDIATE,
    MINILM_LAYERS,
    minilm_onnx,
    minilm_transformers_onnx,
    real_model,
)

import workbench as wb
from workbench.analysis.roofline import _layer_info_layers, layer_info_work, roofline
from workbench.config import BuildConfig
from workbench.model.node_cost import model_work

RECORDED = Path(__file__).resolve().parents[2] / "data" / "recorded"
MATMUL_OPS = {"MatMul", "Gemm", "Einsum", "FusedMatMul"}


def test_one_minilm_encoder_layer_matches_a_hand_count():
    batch, seq = 2, 64
    shapes = dict.fromkeys(("input_ids", "attention_mask", "token_type_ids"), (batch, seq))
    nodes = model_work(wb.load_model(minilm_onnx()), shapes).nodes
    matmuls = nodes[nodes["op_type"].isin(MATMUL_OPS)]
    assert matmuls["flops"].notna().all() and (matmuls["note"] == "").all()  # every MatMul counted, none unexplained
    layer0 = matmuls[matmuls["node"].str.startswith("/layer.0/")]
    tokens, hidden, head = batch * seq, MINILM_HIDDEN, MINILM_HIDDEN // MINILM_HEADS
    projections = 4 * 2 * tokens * hidden * hidden  # query, key, value, attention output: (B·S × H) @ (H × H)
    attention = 2 * (2 * batch * MINILM_HEADS * seq * seq * head)  # QKᵀ and scores @ V, per head
    feed_forward = 2 * (2 * tokens * hidden * MINILM_INTERMEDIATE)  # H → 4H and back
    assert len(layer0) == 8
    assert layer0["flops"].sum() == projections + attention + feed_forward


def _minilm_matmul_flops(batch: int, seq: int) -> int:
    """all-MiniLM-L6-v2's matrix products by hand: per layer four H×H projections, QKᵀ and scores·V per head, the
    H → 4H → H feed-forward; a multiply-add is 2."""
    tokens, hidden, head = batch * seq, MINILM_HIDDEN, MINILM_HIDDEN // MINILM_HEADS
    projections = 4 * 2 * tokens * hidden * hidden
    attention = 2 * (2 * batch * MINILM_HEADS * seq * seq * head)
    feed_forward = 2 * (2 * tokens * hidden * MINILM_INTERMEDIATE)
    return MINILM_LAYERS * (projections + attention + feed_forward)


def test_a_bert_exported_by_transformers_and_by_plain_torch_is_counted_from_inferred_shapes():
    """transformers' BertModel builds token_type_ids by expanding a buffer to the input's shape inside the graph:
    nothing ran here (``info``), so shape inference at 1×128 gives every MatMul's shape; the plain torch export of
    the same encoder counts the same matrix work."""
    shapes = {"input_ids": (1, 128), "attention_mask": (1, 128)}
    nodes = model_work(wb.load_model(minilm_transformers_onnx()), shapes).nodes
    live = nodes[~nodes["folded"]]  # what runs: ONNX Runtime and TensorRT fold the rest at load
    assert live["flops"].notna().all() and (live["note"] == "").all()
    assert nodes.loc[nodes["op_type"] == "MatMul", "flops"].sum() == _minilm_matmul_flops(1, 128)
    plain = model_work(wb.load_model(minilm_onnx()), {**shapes, "token_type_ids": (1, 128)}).nodes
    assert plain.loc[plain["op_type"] == "MatMul", "flops"].sum() == _minilm_matmul_flops(1, 128)


def test_a_transformers_exported_bert_profiled_at_1x128_counts_every_matmul_it_ran(tmp_path, monkeypatch):
    """The roofline takes each tensor's shape from what ONNX Runtime executed (its profiler records every node's
    input and output shapes): every matrix layer of the run has its work, within 10% of the hand count (ONNX
    Runtime fuses the 1/√d scale into QKᵀ: a FusedMatMul counts that multiply too)."""
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    config = BuildConfig(
        iterations=2, warmup_ms=0, duration_s=0, shapes=(("input_ids", (1, 128)), ("attention_mask", (1, 128)))
    )
    run = wb.profile(minilm_transformers_onnx(), "fp32", backend="onnxruntime", config=config)
    executed = run.extra["tensor_shapes"]
    assert executed["/bert/embeddings/Expand_1_output_0"] == [1, 128]  # the expanded token type ids, as ORT ran them
    layers = roofline(run).layers
    matrix = layers[layers["type"].isin(MATMUL_OPS)]
    assert len(matrix) == MINILM_LAYERS * 8 and (matrix["work_from"] == "onnx").all()
    assert matrix["flops"].sum() == pytest.approx(_minilm_matmul_flops(1, 128), rel=0.10)
    assert matrix["flops"].sum() >= _minilm_matmul_flops(1, 128)


def test_pp_ocr_recognizer_attention_matmuls_match_a_hand_count():
    """PP-OCRv4 rec's SVTR neck at 1×3×48×320: 40 tokens (the width / 8) of 120 channels, 8 heads of 15, two
    blocks (QKV, scores, context, projection, a 2× MLP), then the CTC head over the 6625 classes. Its Reshape targets
    are computed through Shape → Cast → Slice → Concat, which ONNX inference alone leaves open."""
    model = wb.load_model(real_model("ppocr_rec"))
    nodes = model_work(model, {"x": (1, 3, 48, 320)}).nodes
    tokens, dim, heads, classes = 320 // 8, 120, 8, model.outputs[0].shape[-1]
    block = (
        2 * tokens * dim * 3 * dim  # QKV
        + 2 * (2 * heads * tokens * tokens * (dim // heads))  # scores and context, per head
        + 2 * tokens * dim * dim  # projection
        + 2 * (2 * tokens * dim * 2 * dim)  # MLP up and down
    )
    matmuls = nodes[nodes["op_type"] == "MatMul"]
    assert matmuls["flops"].sum() == 2 * block + 2 * tokens * dim * classes


def test_minilm_fused_by_onnx_runtime_counts_its_attention_and_matmuls(tmp_path):
    """ONNX Runtime's transformer optimizer fuses the encoder into contrib operators (EmbedLayerNormalization,
    Attention with packed QKV, SkipLayerNormalization, BiasGelu) that ONNX shape inference does not know: every node
    is still counted, and the matrix work equals the unfused export's."""
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer")
    fused_path = tmp_path / "minilm-fused.onnx"
    optimizer.optimize_model(
        str(minilm_onnx()), model_type="bert", num_heads=MINILM_HEADS, hidden_size=MINILM_HIDDEN, opt_level=0
    ).save_model_to_file(str(fused_path))
    batch, seq = 2, 64
    shapes = dict.fromkeys(("input_ids", "attention_mask", "token_type_ids"), (batch, seq))
    fused = model_work(wb.load_model(fused_path), shapes).nodes
    plain = model_work(wb.load_model(minilm_onnx()), shapes).nodes
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization"} <= set(fused["op_type"])
    live = fused[~fused["folded"]]  # what runs: ONNX Runtime and TensorRT fold the rest at load
    assert live["flops"].notna().all() and (live["note"] == "").all()
    tokens, hidden, head = batch * seq, MINILM_HIDDEN, MINILM_HIDDEN // MINILM_HEADS
    attention = fused[fused["op_type"] == "Attention"]
    per_layer_matrix = 2 * tokens * hidden * 3 * hidden + 2 * (2 * batch * MINILM_HEADS * seq * seq * head)
    per_layer = per_layer_matrix + tokens * 3 * hidden + 5 * batch * MINILM_HEADS * seq * seq  # QKV bias, softmax
    assert (attention["flops"] == per_layer).all()
    matmul = fused.loc[fused["op_type"] == "MatMul", "flops"].sum()
    assert matmul + len(attention) * per_layer_matrix == plain.loc[plain["op_type"] == "MatMul", "flops"].sum()


@pytest.mark.parametrize(
    ("key", "shapes"),
    [
        ("ppocr_det", {"x": (1, 3, 320, 320)}),
        ("ppocr_rec", {"x": (2, 3, 48, 320)}),
        ("ppocr_cls", {"x": (4, 3, 48, 192)}),
        ("nudenet", {"images": (1, 3, 320, 320)}),
    ],
)
def test_every_node_of_a_real_model_is_counted(key, shapes):
    nodes = model_work(wb.load_model(real_model(key)), shapes).nodes
    live = nodes[~nodes["folded"]]  # what runs: ONNX Runtime and TensorRT fold the rest at load
    assert live["flops"].notna().all() and live["bytes"].notna().all() and (live["note"] == "").all()


def test_shapes_a_tool_stored_at_another_size_do_not_stop_the_count():
    """ModelOpt writes every tensor's shape at the model's own dims (Paddle's -1 batch) into its variants; fixing the
    input at the profiled size must not leave the graph uncounted."""
    stored = onnx.shape_inference.infer_shapes(onnx.load(str(real_model("ppocr_cls"))))
    assert len(stored.graph.value_info) > 100
    nodes = model_work(wb.Model(stored, name="cls with stored shapes"), {"x": (1, 3, 48, 192)}).nodes
    live = nodes[~nodes["folded"]]  # what runs: ONNX Runtime and TensorRT fold the rest at load
    assert live["flops"].notna().all() and (live["note"] == "").all()


def test_minilm_roofline_on_this_cpu_counts_its_matmuls(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    config = BuildConfig(iterations=5, warmup_ms=0, duration_s=0)
    run = wb.profile(minilm_onnx(), "fp32", backend="onnxruntime", config=config)
    roof = roofline(run)
    layers = roof.layers
    matrix = layers[layers["type"].isin(MATMUL_OPS)]
    assert len(matrix) >= 6 * 6 and (matrix["work_from"] == "onnx").all() and (matrix["flops"] > 0).all()
    assert not layers["note"].isin(["not counted: ", "not counted:"]).any()
    # the run records no input shape: the roofline reads it from the profiled layers, so the work is at 1×32 tokens
    assert any("read from the profiled layers" in n for n in roof.notes)
    query = run.layers.set_index("name").loc["/layer.0/attention/query/MatMul"]
    tokens = math.prod(int(d) for d in query["input_shapes"].split(";")[0].split("x")[:-1])
    counted = layers.set_index("name").loc["/layer.0/attention/query/MatMul", "flops"]
    assert counted == 2 * tokens * MINILM_HIDDEN * MINILM_HIDDEN
    unknown_share = layers.loc[layers["work_from"] == "unknown", "time_ms"].sum() / layers["time_ms"].sum()
    assert unknown_share < 0.05
    shown = roof.above_limit(top=len(layers))
    assert not shown["type"].isin({"Shape", "Unsqueeze", "Squeeze", "Reshape", "Constant", "Concat", "Range"}).any()
    outputs = run.layers.set_index("name").loc[shown["name"], "output_shapes"]
    assert not outputs.str.fullmatch(r"scalar|\d+").any()  # no Gather of a dimension: shape arithmetic is no work
    assert (shown["limit_ms"] > 0).all()  # only layers with work a faster kernel could do in less time


def test_lower_bound_of_a_real_cpu_run_is_below_the_measured_latency_or_says_which_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    config = BuildConfig(iterations=10, warmup_ms=0, duration_s=0, shapes=(("x", (1, 3, 48, 192)),))
    run = wb.profile(real_model("ppocr_cls"), "fp32", backend="onnxruntime", config=config)
    roof = roofline(run)
    assert roof.known_time_ms > 0.95 * roof.layer_time_ms  # the bound covers almost all the time
    if roof.lower_bound_ms > roof.measured_ms:
        assert any("it is the roof" in n or "it is the work" in n for n in roof.notes), roof.notes


def test_a_real_stride_2_convolution_reads_what_its_windows_touch():
    """PP-OCR's classifier opens with a 3×3 stride-2 convolution: windows overlap, so it reads its whole input
    (the strided count must never under-count a reader that touches everything)."""
    model = wb.load_model(real_model("ppocr_cls"))
    work = model_work(model, {"x": (1, 3, 48, 192)})
    first = work.nodes.set_index("node").loc["Conv@0"]
    assert first.input_bytes == 1 * 3 * 48 * 192 * 4


def test_stride_2_1x1_convolutions_of_a_real_engine_read_a_quarter_and_stay_under_the_roof():
    run = wb.import_trtexec(wb.recorded_path("trtexec", "resnet18-a100-fp16"))
    downsample = {
        name: layer
        for name, layer in _layer_info_layers(run).items()
        if layer.get("Kernel") == [1, 1] and layer.get("Stride") == [2, 2]
    }
    assert len(downsample) == 3  # ResNet-18's three projection shortcuts
    for layer in downsample.values():
        (n, c, h, w), residual = layer["Inputs"][0]["Dimensions"], layer["Inputs"][1]["Dimensions"]
        out = layer["Outputs"][0]["Dimensions"]
        fp16 = 2
        weights = (layer["Weights"]["Count"] + layer["Bias"]["Count"]) * fp16
        quarter = n * c * (h // 2) * (w // 2) * fp16  # every other row and column
        expected = quarter + math.prod(residual) * fp16 + math.prod(out) * fp16 + weights
        assert layer_info_work(layer)["bytes"] == expected
    for name in ("resnet18-a100-fp16", "resnet18-a100-fp32", "resnet18-a100-qat"):
        roof = roofline(wb.import_trtexec(wb.recorded_path("trtexec", name)))
        above = roof.layers[roof.layers["pct_of_roof"] > 105]
        assert above["note"].str.contains("above the roof").all(), name  # each one carries its cause


def test_weights_of_a_tensorrt_10_16_build_come_from_the_logs_total():
    folder = RECORDED / "trtexec-10.16" / "h100-build"
    stated = int(re.search(r"Total Weights Memory: (\d+) bytes", (folder / "build.log").read_text()).group(1))
    run = wb.import_trtexec(folder)
    assert run.memory.weights_bytes == stated == 13_100_672
    assert run.layers["weight_bytes"].sum() < stated  # the layer information misses the Myelin constants


def test_a_dump_profile_roofline_without_its_model_prints_no_nan_and_no_zero_bound():
    run = wb.import_trtexec(RECORDED / "trtexec-10.16" / "h100-dump-profile")
    assert len(run.layers) and run.layers["time_ms"].gt(0).all()
    roof = roofline(run, device="H100 SXM")
    text = roof.to_text()
    assert "nan" not in text.lower() and math.isnan(roof.lower_bound_ms)
    summary = dict(roof.summary_rows())
    assert summary["Lower bound (sum of per-layer limits)"].startswith("unknown")
    assert roof.layers["note"].str.len().gt(0).all()  # each layer says why its work is unknown
    with pytest.raises(wb.WorkbenchError, match="no per-layer times"):
        roofline(run.replace(layers=run.layers.iloc[0:0]), "H100 SXM")


def test_profiled_layer_times_above_the_timed_latency_of_a_real_gpu_run_are_stated():
    """ONNX Runtime CUDA on an H200: the profiler's per-layer times sum to far more than the timed latency."""
    run = wb.load_run(wb.measured_run_path("h200-ort-cuda", "transformer_encoder-b8-fp32"))
    roof = roofline(run, model=wb.sample_path("transformer_encoder"))
    share = 100 * run.layers["time_ms"].sum() / run.latency.mean_ms
    assert share > 200
    assert any(f"sum to {share:.0f}% of the timed mean latency" in note for note in roof.notes)
    assert roof.lower_bound_ms <= roof.measured_ms
