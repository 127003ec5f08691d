# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # How an NVIDIA compiler fuses your model
#
# **What this teaches:** what a TensorRT-family compiler does to an ONNX graph — which nodes it fuses into one
# kernel, which it folds away, where the memory goes — and how FP32, FP16 and INT8 engines of the same model differ.
# **No GPU is needed**: TensorRT for RTX (`pip install tensorrt-rtx`) builds real engines on a CPU for a GPU
# architecture you name, and reports the engine's layers after fusion and its memory plan.
#
# **Which GPUs run these engines:** Ampere, Ada and Blackwell RTX GPUs — compute capability 8.0, 8.6, 8.9 and 12.x
# (RTX 30xx, 40xx, 50xx; A100, L4, L40S by capability). **Hopper (H100, H200) and B200 do not**: TensorRT-RTX
# refuses them. So here nothing is timed — every figure below is what the compiler reported, and the views that
# need time say so instead of showing a number no GPU measured.

# %%
import workbench as wb

model = wb.load_model(wb.sample_path("resnet_mini"))
model.op_histogram

# %% [markdown]
# ## Compile it for an RTX 40xx (sm89)
# `wb.compile` builds the real engine (the same build path as the TensorRT backend: ONNX parser, strongly typed
# network, optimization profile for the dynamic batch) with a target architecture instead of a GPU. The engine
# plan lands in the engine cache; the run is marked **compiled, not run**.

# %%
config = wb.BuildConfig(shapes=wb.parse_shapes("input:1x3x128x128"))
run = wb.compile(model, "fp32", arch="sm89", config=config)
run

# %% [markdown]
# ## The ONNX graph beside the engine
# Each engine layer lists the ONNX nodes it was built from (TensorRT's layer `Metadata`). A ResNet block's
# `Conv → Relu` and its second `Conv → Add → Relu` become one kernel each: the intermediate tensors are never
# written to memory. Nodes in no layer were folded into constants at build time or removed (`Flatten` is only a
# view of memory).

# %%
view = wb.fusion_view(run.layers, model)
print(view.attrs["summary"])
print("in no engine layer:", view.attrs["unmapped"])
view.head(12)[["name", "type", "precision", "fused", "onnx_nodes"]]

# %% [markdown]
# ## Where the memory goes
# `activation_bytes` is what each layer writes per inference; `weight_bytes` the constants it reads. The compiler's
# own plan (below) is a different figure: its activation memory is what one execution context allocates on the GPU,
# buffers whose lifetimes do not overlap shared, plus the scratch space of its fused kernels — here the whole network
# is one compiled region whose scratch dominates, so it exceeds the summed layer outputs.

# %%
wb.charts.layer_memory(run, top=15)

# %%
report = run.compiled
{
    "engine layers": report.engine_layers,
    "ONNX nodes": report.onnx_nodes,
    "layers fusing several nodes": report.fused_layers,
    "activation memory (MiB)": round(report.activation_memory_bytes / 2**20, 2),
    "summed layer outputs (MiB)": round(run.memory.activations_bytes / 2**20, 2),
    "weights (MiB)": round(report.weights_memory_bytes / 2**20, 2),
    "plan (MiB)": round(run.memory.plan_bytes / 2**20, 2),
    "build (s)": round(report.build_seconds, 2),
}

# %% [markdown]
# Views that need time say why they are empty — no latency is ever shown that a GPU did not measure:

# %%
wb.charts.layer_timing(run)

# %% [markdown]
# ## FP32 vs FP16 vs INT8, side by side
# The digits classifier in three precisions. FP16 comes from ModelOpt's AutoCast and INT8 from its Q/DQ
# quantization calibrated on the sample's own calibration split: precision lives in the ONNX graph, and which
# layers really run in INT8 is read from the engine, not assumed. In the INT8 engine, the fused quantize kernels
# write INT8 tensors that the convolutions read; weights shrink, yet in so small a model the plan grows — the extra
# kernels outweigh the saved bytes.

# %%
digits = wb.load_model(wb.sample_path("digits_cnn"))
engines = {
    "fp32": wb.compile(digits, "fp32", arch="sm89"),
    "fp16": wb.compile(digits, "fp16", arch="sm89"),
    "int8": wb.compile(digits, "int8", arch="sm89", calibration=wb.sample_path("digits_calib")),
}
{
    name: {
        "engine layers": r.compiled.engine_layers,
        "layer precisions": r.layers["precision"].value_counts().to_dict(),
        "weights (KiB)": round(r.compiled.weights_memory_bytes / 1024, 1),
        "plan (KiB)": round(r.memory.plan_bytes / 1024, 1),
    }
    for name, r in engines.items()
}

# %%
engines["int8"].layers[["name", "type", "precision", "output_formats", "onnx_nodes"]]

# %%
wb.charts.compare_memory(list(engines.values()))

# %% [markdown]
# ## Try this
# - Compile for `arch="sm86"` (RTX 30xx) and `arch="sm120"` (RTX 50xx): does the engine change?
# - Ask for `"fp8"` on `sm86`: the workbench refuses before building, and says why.
# - From the shell: `workbench compile data/transformer_encoder.onnx --arch sm89 --shapes input_ids:1x64` and open
#   the report it writes. Which attention nodes end up in one kernel?
