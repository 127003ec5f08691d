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
# # Environment: what this machine can run, and what TensorRT 10 vs 11 means for you
#
# **What this teaches:** how to ask the workbench what this machine can run (and why not), why TensorRT 11 made
# precision a property of the ONNX graph instead of a builder switch, and which parts of the workflow need a GPU.
#
# TensorRT is NVIDIA's compiler for neural networks: it turns an ONNX graph into an *engine* (a "plan") tuned for
# one GPU. It needs an NVIDIA GPU, its driver and the TensorRT libraries — usually all three come together in an
# NGC container. Many machines where you study or prepare models (a laptop, a CI runner, a workshop VM) have none
# of these, so the workbench also runs every step on **ONNX Runtime on the CPU**, and it always tells you which
# backend it used and why.

# %% [markdown]
# ## 1. `workbench doctor`
# The same check as `workbench doctor` in a terminal: versions of everything that matters, the GPUs the NVIDIA
# driver reports, and for each backend either *available* or the reason it is not (with the fix).

# %%
import json

import pandas as pd
from IPython.display import display

import workbench as wb

pd.set_option("display.max_colwidth", 200)
pd.DataFrame(wb.doctor(), columns=["item", "finding"]).set_index("item")

# %% [markdown]
# `backend="auto"` (the default everywhere) picks TensorRT when it imports *and* a GPU is present, else ONNX
# Runtime. It returns the backend and a sentence saying why; that sentence is also stored in every Run's notes.

# %%
backend, why = wb.choose_backend("auto")
print("auto ->", backend.name)
print("why:  ", why)

# %% [markdown]
# Asking for a backend by name never falls back silently: if it cannot run here you get one line with the
# cause and the fix, instead of numbers from some other backend.

# %%
try:
    wb.choose_backend("tensorrt")
    print("TensorRT is available on this machine.")
except wb.WorkbenchError as error:
    print("WorkbenchError:", error)

# %% [markdown]
# ## 2. What runs without a GPU
# The workbench's steps split into those that only read or rewrite ONNX files (no GPU needed anywhere) and those
# that execute a model (a *backend*). Which precisions can each backend build? For ONNX Runtime the answer is
# about this machine; for TensorRT it depends on the GPU's compute capability, so the table shows two example GPUs
# (rules, not measurements: TF32 and BF16 need compute 8.0, FP8 needs 8.9).


# %%
def readable(support):
    return {p: ("yes" if ok else f"no: {why}") for p, (ok, why) in support.items()}


pd.DataFrame(
    {
        "onnxruntime (this machine)": readable(wb.get_backend("onnxruntime").precision_support()),
        "tensorrt on a T4 (compute 7.5)": readable(
            wb.get_backend("tensorrt").precision_support({"name": "T4", "compute_capability": "7.5"})
        ),
        "tensorrt on an H100 (compute 9.0)": readable(
            wb.get_backend("tensorrt").precision_support({"name": "H100", "compute_capability": "9.0"})
        ),
    }
)

# %%
ok, reason = wb.backend_status()["tensorrt"]
print("TensorRT on this machine:", "available" if ok else f"unavailable — {reason}")

# %% [markdown]
# In words:
#
# | step | needs a GPU? |
# |---|---|
# | load, validate and summarise an ONNX model | no |
# | write FP16/BF16 (ModelOpt AutoCast) or INT8/FP8 (ModelOpt quantization) into the graph | no |
# | build + time + per-layer profile | TensorRT: yes. ONNX Runtime: no (FP32, FP16, INT8, FP8 Q/DQ emulated; not BF16 on a CPU) |
# | accuracy against FP32 | no (ONNX Runtime is the FP32 reference) |
# | import trtexec results from elsewhere, charts, comparisons, reports, Triton export | no |
#
# ONNX Runtime numbers on a CPU tell you about *your model on a CPU*, not about TensorRT: which layers are heavy,
# how accuracy moves with precision, whether shapes are right. Latency on a GPU is a different story, which is why
# the workbench never shows TensorRT numbers that TensorRT did not produce — on a CPU machine you can instead
# import real `trtexec` results made on a GPU (notebook 06 and 07 do).
#
# A quick end-to-end check that this machine can run the whole loop (a small trained CNN, FP32):

# %%
config = wb.BuildConfig(shapes=wb.parse_shapes("input:1x1x8x8"), iterations=20)
run = wb.profile(wb.sample_path("digits_cnn"), backend="auto", config=config)
print(run.name, "|", run.backend, "|", f"{run.latency.mean_ms:.3f} ms mean over {run.latency.samples} inferences")
print(run.notes[-1])

# %% [markdown]
# ## 3. TensorRT 10 vs 11: what changes for you
# TensorRT 10 still accepted **weakly typed** networks: you built an FP32 graph and told the builder "FP16 is
# allowed" (`BuilderFlag.FP16`, `trtexec --fp16`) or "INT8 is allowed, here is a calibrator" (`--int8 --calib`).
# The builder then chose per layer. TensorRT 11 **removed** that: every network is *strongly typed*, so each
# tensor's type is exactly what the ONNX graph says. The consequences:
#
# - **Precision lives in the graph.** To get FP16 you write FP16 into the ONNX file (casts and FP16 weights); to get
#   INT8 you write Quantize/DequantizeLinear (Q/DQ) nodes with their scales. The workbench does this with NVIDIA
#   ModelOpt (AutoCast for FP16/BF16, post-training quantization for INT8/FP8) — on any machine, no GPU needed.
# - **Calibration moved out of TensorRT.** The INT8 calibrator API is gone; ModelOpt computes the scales from your
#   calibration data and stores them in the Q/DQ nodes (notebook 05).
# - **Old flags are errors.** `--fp16`, `--int8`, `--best`, `--calib`, `--workspace`, `--explicitBatch`... make
#   trtexec 11 stop with "Unknown option".
# - **One path for both.** TensorRT 10.x builds the same Q/DQ/AutoCast graphs as strongly typed networks too
#   (`--stronglyTyped`), so the workbench takes that path on 10.2+ and 11.x alike and checks for features
#   (`hasattr`), never for version strings.
#
# Here is the same FP16 build as trtexec commands for both versions (the workbench writes these for you):

# %%
fp16 = wb.BuildConfig(precision="fp16", shapes=wb.parse_shapes("input:8x3x128x128"), iterations=100)
cmd11 = wb.trtexec_command(fp16, "resnet_mini.fp16.onnx", version=11)
cmd10 = wb.trtexec_command(fp16, "resnet_mini.fp16.onnx", version=10)
print("TensorRT 11:\n ", cmd11, "\n")
print("TensorRT 10:\n ", cmd10, "\n")
print("only in the 10.x command:", sorted(set(cmd10.split()) - set(cmd11.split())))
print("only in the 11.x command:", sorted(set(cmd11.split()) - set(cmd10.split())))
print("\nflags trtexec 11 rejects (never written by the workbench):", " ".join(wb.trtexec.REMOVED_IN_11))

# %% [markdown]
# Notice what is *not* there: no `--fp16`. The file name says FP16 because the graph is FP16. On 10.x,
# `--stronglyTyped` asks for the same strict behaviour 11.x always has, `--noDataTransfers` makes 10.x time the
# engine alone (11.x does by default) and `--separateProfileRun` keeps the per-layer profiler out of the latency
# measurement (always on in 11.x).
#
# ### The files trtexec writes changed too
# `--exportLayerInfo` describes every engine layer. TensorRT 10 lists the engine's inputs/outputs under
# `Bindings`; TensorRT 11 replaced that with `I/O Tensors` and split per-tensor format and data type. Below are
# real files written by trtexec 10.16 and 11.1 on an H100 (from NVIDIA's TensorRT cookbook, recorded in the
# repository's `data/recorded/` with their provenance). The workbench reads both into the *same* layer table.

# %%
pairs = {"10.16": wb.recorded_path("trtexec-10.16", "h100"), "11.1": wb.recorded_path("trtexec-11.1", "h100")}
for version, folder in pairs.items():
    doc = json.loads((folder / "model-trained.layerinfo.json").read_text())
    print(f"TensorRT {version}: top-level keys {list(doc)}")
imported = {version: wb.import_trtexec(folder / "model-trained.layerinfo.json") for version, folder in pairs.items()}
same = list(imported["10.16"].layers.columns) == list(imported["11.1"].layers.columns)
print("same layer-table columns for both versions:", same)

# %%
display(imported["11.1"].layers[["name", "type", "precision", "output_shapes", "onnx_nodes"]])

# %% [markdown]
# Layer names such as `node_conv2d + node_relu` are **fusions**: TensorRT merged two ONNX nodes into one kernel,
# and the `onnx_nodes` column lists where each layer came from. Layers whose names contain `myl` were compiled by
# Myelin, TensorRT's graph compiler for transformer-like blocks. Notebook 06 explores these views.
#
# ## Try this
# - Run `workbench doctor` in a terminal (`source .venv/bin/activate` first) and compare it with the table above.
# - Print `wb.trtexec_command(wb.BuildConfig(precision="int8"), "model.int8.onnx", version=10)`: which flag makes
#   TensorRT 10 respect the Q/DQ types? Why is there no `--int8`?
# - Call `wb.get_backend("tensorrt").precision_support({"name": "L4", "compute_capability": "8.9"})`: which precisions does an
#   Ada GPU gain over the T4?
# - If you have access to a GPU machine, run this notebook inside `nvcr.io/nvidia/tensorrt` and watch
#   `choose_backend("auto")` switch to TensorRT.
