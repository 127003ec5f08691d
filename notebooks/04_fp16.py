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
# # FP16 first: half the bytes, and what it costs in accuracy
#
# **What this teaches:** why FP16 is the first optimization to try, how the workbench writes it into the ONNX graph
# (ModelOpt AutoCast) and measures latency and accuracy against FP32, and which parts AutoCast keeps in FP32 —
# LayerNorm and anything with large values — and why.
#
# **Why FP16 first.** An FP16 number takes 2 bytes instead of 4: weights and activations move through memory twice
# as fast, and NVIDIA GPUs since Volta run FP16 matrix math on Tensor Cores at many times the FP32 rate. Unlike
# INT8 (notebook 05) it needs no calibration data, and most networks lose almost no accuracy. The catch is range
# and resolution, shown below.
#
# **Why precision lives in the graph.** TensorRT 11 removed the "FP16 allowed" builder switch: networks are strongly
# typed, every tensor has exactly the type the ONNX file gives it (notebook 02). So FP16 is made *before* TensorRT:
# NVIDIA ModelOpt's AutoCast rewrites the ONNX graph — FP16 weights, Cast nodes at the borders — and TensorRT (10.x
# or 11.x) builds what it is given. A useful side effect: the FP16 model is a file you can inspect, diff and run on
# any backend, including ONNX Runtime on a CPU.

# %%
import numpy as np
import pandas as pd

import workbench as wb

pd.set_option("display.max_colwidth", 120)

# %% [markdown]
# ## 1. What FP16 can and cannot hold
# FP16 has a 10-bit mantissa (about 3 significant decimal digits) and its largest finite value is 65504. Above
# 2048, not every integer exists any more; above 65504 there is only infinity.

# %%
with np.errstate(over="ignore"):  # 70000 overflows on purpose
    for value in (0.1, 1.0001, 2049.0, 65504.0, 70000.0):
        print(f"{value:>10}  ->  float16 {np.float16(value)!s:>8}")

# %% [markdown]
# Two consequences for a network: **large activations overflow** (a sum of squares of a few hundred values
# of magnitude 20 already exceeds 65504), and **reductions lose precision** (a mean over 512 values in FP16
# rounds at every step). Normalisation layers such as LayerNorm do exactly these reductions, which is why they
# are the usual suspects.
#
# ## 2. FP32 vs FP16 on a transformer encoder
# The sample `transformer_encoder` (2 layers, d_model 128, random weights) has 5 LayerNorms. We profile FP32 and
# the AutoCast FP16 variant, and measure accuracy against FP32 on 128 random token sequences.

# %%
model = wb.load_model(wb.sample_path("transformer_encoder"))
config = wb.BuildConfig(shapes=wb.parse_shapes("input_ids:1x128"), iterations=50)
tokens = {"input_ids": np.random.default_rng(0).integers(0, 1000, size=(128, 128)).astype(np.int64)}

fp32 = wb.profile(model, "fp32", backend="auto", config=config, eval_data=tokens)
fp16 = wb.profile(model, "fp16", backend="auto", config=config, eval_data=tokens)
print("backend:", fp16.backend)
wb.format_metrics(wb.compare_metrics([fp32, fp16]))

# %% [markdown]
# Read the accuracy rows first: the largest difference from FP32 over all 128 × 128 × 128 output values, and the
# cosine similarity (1.0 = same direction). The weights halved. Accuracy notes recorded with the run:

# %%
print(fp16.accuracy.note)

# %% [markdown]
# **Latency depends on where you run it.** If the backend above is `onnxruntime`, FP16 is probably *not* faster: a
# CPU has no FP16 matrix units, and ONNX Runtime's CPU provider lacks FP16 kernels for many operators, so it
# inserts Casts and computes those in FP32. The layer table shows it — more layers, many of them `Cast`:


# %%
def layer_summary(run):
    return run.layers.groupby("type")["time_ms"].agg(["count", "sum"]).sort_values("sum", ascending=False).head(8)


pd.concat({"fp32": layer_summary(fp32), "fp16": layer_summary(fp16)}, axis=1)

# %% [markdown]
# On a GPU with TensorRT the picture flips. These are **real** trtexec runs of ResNet-18 (batch 32) on an A100,
# FP32 and FP16 engines, from NVIDIA's TensorRT repository (recorded in `data/recorded/`) — imported, not re-measured here:

# %%
a100 = [
    wb.import_trtexec(wb.recorded_path("trtexec", "resnet18-a100-fp32")),
    wb.import_trtexec(wb.recorded_path("trtexec", "resnet18-a100-fp16")),
]
wb.format_metrics(wb.compare_metrics(a100)).loc[
    ["Device", "Precision", "Latency mean (ms)", "Latency p99 (ms)", "Speed-up vs A (median, 95% CI)", "Weights"]
]

# %% [markdown]
# ## 3. What AutoCast changed
# The variant records what the transform did: how many nodes now compute in FP16, which Casts were inserted, which
# nodes stayed FP32 and why, and ModelOpt's warnings.

# %%
changes = fp16.variant["changes"]
print(changes["summary"])
print("nodes by precision:", changes["nodes_by_precision"])
print("inserted:", changes["inserted"])
for warning in changes["warnings"]:
    print("ModelOpt:", warning)

# %% [markdown]
# The second warning is about opsets again: `Range` (which makes the position indices) has no FP16 version in
# opset 17, so it stays as it is — harmless, it computes integers.
#
# Nothing was kept in FP32 here. That is because AutoCast decides with a **range check**: it runs the FP32 model
# on sample data and keeps a node in FP32 when a value it reads or writes exceeds `data_max` (default 512), or
# when a weight exceeds `init_max` (default 65504, the FP16 maximum). Without `calibration=` data it checks random
# inputs in [-1, 1] — which never trips the check. With real inputs it can:

# %%
real_check = wb.make_variant(model, "fp16", calibration=tokens)
print(real_check.changes["summary"])
pd.DataFrame(real_check.changes["kept_fp32"])

# %% [markdown]
# The token ids go up to 999, above `data_max`, so the embedding lookup that reads them stays FP32. A model with
# large activations inside (unnormalised features, attention scores before softmax, big residual sums) gets those
# nodes listed here the same way. To see the rule at work on this small model, lower the threshold:

# %%
strict = wb.make_variant(model, "fp16", calibration=tokens, data_max=4.0)
print(strict.changes["summary"])
kept = pd.DataFrame(strict.changes["kept_fp32"])
kept.groupby("op_type").size().rename("nodes kept in FP32")

# %% [markdown]
# ## 4. Keeping LayerNorm in FP32
# When TensorRT finds a LayerNorm computed in FP16 from its pieces (ReduceMean, Pow, Sqrt...), it warns that
# after self-attention it may overflow. The sample exports LayerNorm as the single opset-17 `LayerNormalization`
# op, which TensorRT maps to its own normalization layer — but in a strongly typed network that layer still
# computes in the type the graph gives it. If in doubt, keep LayerNorm in FP32 and measure what it costs; any op
# type can be kept this way, at the price of a few Casts around each node:

# %%
fp16_ln32 = wb.profile(
    model, "fp16", backend="auto", config=config, eval_data=tokens, keep_fp32_op_types=["LayerNormalization"]
)
print(fp16_ln32.variant["changes"]["summary"])
wb.format_metrics(wb.compare_metrics([fp32, fp16, fp16_ln32])).loc[
    ["Precision", "Latency mean (ms)", "Max abs error vs FP32", "Mean rel error vs FP32", "Weights", "Layers"]
]

# %% [markdown]
# Keeping the 5 LayerNorms in FP32 roughly halves the largest error on this model. Whether it is worth the Casts
# is a trade-off you measure — on a GPU with TensorRT, compare the latency columns too.

# %%
wb.charts.compare_latency([fp32, fp16, fp16_ln32])

# %% [markdown]
# ## Try this
# - Profile `wb.sample_path("digits_cnn")` in FP32 and FP16 with `eval_data=wb.sample_path("digits_test")`: does FP16
#   change a single prediction (the `Label accuracy` rows)?
# - Pass `keep_fp32_nodes=["/norm/"]` instead of the op type: only the final LayerNorm stays FP32. Where does the
#   error land between the two runs above?
# - Try `data_max=64` with `calibration=tokens`: which nodes does AutoCast keep, and what does that tell you about
#   the size of the activations inside this encoder?
# - On a GPU (NGC container), rerun this notebook: `backend` becomes `tensorrt`, and the latency rows show what
#   FP16 buys there.
