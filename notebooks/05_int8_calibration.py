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
# # INT8 calibration: how many samples, which method, and where the Q/DQ nodes go
#
# **What this teaches:** how INT8 post-training quantization turns a few hundred real inputs into one scale per
# tensor, how entropy and max calibration choose that scale differently, how accuracy depends on the number of
# calibration samples, and what becomes of the Quantize/Dequantize nodes on ONNX Runtime and on TensorRT.
#
# **The idea.** INT8 stores a tensor as integers from -127 to 127 times one *scale*: `x ≈ scale × q`. Everything
# beyond `amax = 127 × scale` is clipped, and everything inside is rounded to steps of `scale`. Weights are known in
# advance, so their scales come from the weights themselves. Activations depend on the input, so their scales are
# measured by running the model on **calibration data** — real inputs, like the ones it will see in production.
#
# **Where it lives.** TensorRT 11 removed its INT8 calibrator (notebook 02). NVIDIA ModelOpt now runs the
# calibration and writes the result into the ONNX graph as **QuantizeLinear/DequantizeLinear (Q/DQ)** pairs that
# carry the scales. TensorRT reads those and fuses them into INT8 kernels.
#
# We use the sample `digits_cnn`: a small CNN **trained** on handwritten digits (8×8 images), with 256 training
# images for calibration and 450 held-out test images to measure accuracy on — never the same images.

# %%
import numpy as np
import pandas as pd
import plotly.express as px
from IPython.display import display

import workbench as wb

model = wb.load_model(wb.sample_path("digits_cnn"))
calibration = wb.digits_calibration()["input"]  # 256 training images, float32 (256, 1, 8, 8), values in [0, 1]
test_images, test_labels = wb.digits_test_set()  # 450 test images and their labels
evaluation = {**test_images, "labels": test_labels}
config = wb.BuildConfig(shapes=wb.parse_shapes("input:1x1x8x8"), iterations=20)
print(model)
print("calibration:", calibration.shape, "| test:", test_images["input"].shape)

# %% [markdown]
# ## 1. FP32 and INT8 with all 256 calibration images

# %%
fp32 = wb.profile(model, "fp32", backend="auto", config=config, eval_data=evaluation)
int8 = wb.profile(
    model, "int8", backend="auto", config=config, eval_data=evaluation, calibration={"input": calibration}
)
for run in (fp32, int8):
    acc = run.accuracy
    print(
        f"{run.precision}: test accuracy {100 * acc.label_accuracy:.2f}% "
        f"(FP32 on the same images {100 * acc.reference_label_accuracy:.2f}%), backend {run.backend}"
    )
print("calibration recorded with the run:", {k: int8.variant["calibration"][k] for k in ("source", "samples")})

# %% [markdown]
# ## 2. What calibration decided: one scale per tensor
# Each row is a QuantizeLinear node. Weights get one scale per output channel (`channels`); activations get one
# scale for the whole tensor, and `amax` is the range it keeps. The input's `amax` is about 1.0 — the images are
# scaled to [0, 1], and calibration found exactly that.

# %%
int8_model = wb.load_model(int8.artifacts["onnx"])  # the INT8 variant the run built
pd.DataFrame(wb.quantization_scales(int8_model))

# %% [markdown]
# ## 3. Entropy vs max
# Both methods run the calibration images through the model and look at each activation's values:
#
# - **max** (the default: ModelOpt's own INT8 preset for CNNs) takes the largest absolute value seen. Nothing is
#   clipped, but one outlier stretches the range, and every ordinary value gets a coarser step. The run of section
#   1 used it; its notes say so.
# - **entropy** (TensorRT's classic method) builds a histogram and picks the clipping point that loses the least
#   information (smallest KL divergence between the original and the quantized distribution). It clips rare
#   outliers to keep fine steps for the bulk of the values, at the cost of a histogram of every activation of every
#   sample (on a CPU, a ResNet-50's INT8 calibration takes about 1.6x the time of max's).
#
# So entropy's `amax` is usually *smaller* than max's:

# %%
int8_entropy = wb.profile(
    model,
    "int8",
    backend="auto",
    config=config,
    eval_data=evaluation,
    calibration={"input": calibration},
    calibration_method="entropy",
)
print([note for note in int8.notes if "calibration on" in note])
activations = {
    method: pd.DataFrame(wb.quantization_scales(wb.load_model(run.artifacts["onnx"])))
    .query("kind == 'activation'")
    .set_index("tensor")["amax"]
    for method, run in (("entropy", int8_entropy), ("max", int8))
}
pd.DataFrame(activations)

# %% [markdown]
# ## 4. How many calibration samples?
# The usual guidance is **100–500 samples**: fewer give noisy ranges (they depend on which images you happened to
# pick), more rarely change anything and cost time and memory. The workbench warns outside that range: a warning
# of its `logging` logger (shown below on stderr, where Python shows a library's warnings when nobody else listens),
# recorded with the variant's calibration, and, in a profile, among the run's notes:

# %%
few = wb.make_variant(model, "int8", calibration={"input": calibration[:16]})
print("the variant's calibration:", few.calibration["samples"], "samples;", *few.calibration["notes"])

# %% [markdown]
# Now the experiment: for 1, 4, 16, 64 and 256 samples, draw 3 random subsets of the calibration set (at 256 there
# is only one: all of it, shuffled), calibrate
# with each method, and measure test accuracy (and the `amax` of the last ReLU before the classifier). About 30
# small runs — some 20 seconds on a laptop CPU.

# %%
rng = np.random.default_rng(0)
rows = []
for samples in (1, 4, 16, 64, 256):
    for draw in range(3 if samples < len(calibration) else 1):
        subset = calibration[rng.choice(len(calibration), samples, replace=False)]
        for method in ("entropy", "max"):
            run = wb.profile(
                model,
                "int8",
                backend="auto",
                config=config.replace(iterations=1, trials=1, warmup_ms=0),  # accuracy, not speed
                eval_data=evaluation,
                calibration={"input": subset},
                calibration_method=method,
            )
            last_relu = wb.quantization_scales(wb.load_model(run.artifacts["onnx"]))[-1]
            rows.append(
                {
                    "samples": samples,
                    "method": method,
                    "draw": draw,
                    "accuracy %": 100 * run.accuracy.label_accuracy,
                    "error vs FP32": run.accuracy.outputs[0].mean_rel_error,
                    "last ReLU amax": last_relu["amax"],
                    "warned": any("outside the documented range" in note for note in run.notes),
                }
            )
sweep = pd.DataFrame(rows)
print("runs warned about their sample count:", sorted(sweep.query("warned")["samples"].unique().tolist()))
sweep.groupby(["method", "samples"])[["accuracy %", "last ReLU amax"]].agg(["min", "max"]).round(3)

# %%
fig = px.scatter(
    sweep,
    x="samples",
    y="accuracy %",
    color="method",
    symbol="method",
    log_x=True,
    title="INT8 test accuracy against the number of calibration samples (3 random subsets each)",
)
fig.add_hline(y=100 * fp32.accuracy.label_accuracy, line_dash="dot", annotation_text="FP32")
fig.update_traces(marker_size=10)
fig

# %%
px.scatter(
    sweep,
    x="samples",
    y="last ReLU amax",
    color="method",
    symbol="method",
    log_x=True,
    title="Range chosen for the last ReLU's output, by calibration method and sample count",
)

# %% [markdown]
# How to read these:
#
# - **Accuracy barely moves** on this model: its inputs always lie in [0, 1] and its activations are tame, so even
#   one image gets within a few tenths of a percent of FP32. Larger models on natural images, audio or text are
#   far less forgiving; that is where the 100–500 guidance comes from. Measure it on *your* model with this loop.
# - **The ranges move.** With max, the range is simply the largest value seen: it grows with more samples and the
#   subsets agree more and more. Entropy's clipping point still differs between subsets of 64 images — it is
#   chosen from a histogram, and ModelOpt's calibrator (ONNX Runtime's histogram collector) lays out the
#   histogram's bins from the *first* calibration batch, so even the order of the samples matters. Compare the
#   256-image entropy run of section 3 (images in their stored order) with the shuffled one of the sweep:

# %%
in_order = wb.quantization_scales(wb.load_model(int8_entropy.artifacts["onnx"]))[-1]["amax"]
shuffled = sweep.query("method == 'entropy' and samples == 256")["last ReLU amax"].iloc[0]
print(f"entropy, 256 images in stored order: amax {in_order:.3f}; the same 256 images shuffled: {shuffled:.3f}")

# %% [markdown]
# Neither difference costs accuracy here. On a model where it does, prefer more samples (they make the max
# stabler and the histogram better filled), shuffle them once with a fixed seed, and keep the same calibration set
# for every variant you compare.
#
# ## 5. Where did the Q/DQ nodes go?
# **In the ONNX graph**, ModelOpt placed Q/DQ pairs on the inputs of the operators it quantizes, and explains what
# it left alone:

# %%
changes = int8.variant["changes"]
print(changes["summary"])
print("quantized nodes:", changes["quantized_nodes"])
pd.DataFrame(changes["not_quantized"])

# %% [markdown]
# The two fully connected layers (`Gemm`) stayed in FP16: at batch 1 they are matrix–vector products (GEMV), which
# TensorRT runs faster in higher precision than through an INT8 kernel. Everything not quantized runs in the
# `high_precision_dtype` (FP16 by default), hence the inserted Casts.
#
# **On ONNX Runtime (CPU)** the Q/DQ nodes mostly stay separate operators: the convolutions compute in floating point
# on dequantized values. That *simulates* INT8 rounding faithfully — the accuracy above is meaningful — but says
# nothing about INT8 speed:

# %%
qdq = int8.layers["type"].isin(["QuantizeLinear", "DequantizeLinear"])
print(
    f"{int8.backend}: {qdq.sum()} of {len(int8.layers)} layers are Q/DQ operators, "
    f"{int8.layers.loc[qdq, 'time_pct'].sum():.0f}% of the layer time"
)
int8.layers.loc[~qdq, ["name", "type", "precision", "time_ms"]].sort_values("time_ms", ascending=False).head(6)

# %% [markdown]
# **On TensorRT** they disappear into the layers. Below is a real engine built by trtexec from a ResNet-18 with
# Q/DQ nodes on an A100 (NVIDIA's TensorRT repository, recorded in `data/recorded/`): each convolution layer lists the
# QuantizeLinear it absorbed in its `onnx_nodes`, and runs an INT8 kernel (`tactic`).

# %%
qat = wb.import_trtexec(wb.recorded_path("trtexec", "resnet18-a100-qat"))
absorbed = qat.layers["onnx_nodes"].map(lambda nodes: any("QuantizeLinear" in n for n in nodes))
fused = absorbed & (qat.layers["type"] != "Reformat")
print(
    f"{fused.sum()} layers absorbed a QuantizeLinear; {(absorbed & ~fused).sum()} Quantize steps run on their "
    f"own (type Reformat); precisions: {qat.layers['precision'].value_counts().to_dict()}"
)
display(qat.layers.loc[fused, ["name", "type", "precision", "time_ms", "tactic"]].head(6))

# %% [markdown]
# The standalone Quantize layers are worth a look: the workbench's advice explains what they cost and why they are
# there (a Q/DQ pair TensorRT could not fold into a neighbour).

# %%
for finding in wb.advise(qat)[:2]:
    print(f"[{finding.severity}] {finding.title}\n  {finding.detail}\n  fix: {finding.fix}\n")

# %% [markdown]
# ## Try this
# - Calibrate with `random_calibration=True` instead of real images: what happens to accuracy, and how is the run
#   labelled (`run.name`, `run.notes`)?
# - Why must calibration images never come from the test set? What would the test accuracy measure if they did?
# - Keep the classifier in INT8 too: `calibration_batch=16` changes the GEMV rule's view of the `Gemm` layers.
#   Which nodes are quantized now (`changes["quantized_nodes"]`), and does accuracy change?
# - Exclude the first convolution with `exclude_nodes=["/features/features.0/Conv"]` (first layers are often the
#   most sensitive) and compare the error against FP32.
