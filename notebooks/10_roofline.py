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
# # How far from the hardware limit: the roofline
#
# **What this teaches:** a per-layer time says where the time goes, not whether it could go faster. Beside each
# measured layer this notebook puts the least time the hardware allows for that layer's work, and sums those into
# the model's **lower bound** latency.
#
# A layer does `F` floating-point operations (a multiply-add counts 2) and must move at least `B` bytes to and from
# DRAM (its inputs, weights and outputs, once each, at the precision it runs in). A device does at most `P` FLOP/s
# at that precision and moves at most `W` bytes/s. So the layer needs at least
# `limit = max(F / P, B / W)` seconds: **compute-bound** when the first term is larger, **memory-bound** otherwise.
# Its arithmetic intensity `F / B` (FLOP per byte) decides which; the *roofline* `min(P, F/B × W)` is the most
# FLOP/s that intensity allows. `% of the roofline = limit / measured time`.

# %%
import tempfile
from pathlib import Path

from IPython.display import display

import workbench as wb

# %% [markdown]
# ## 1. The work of each ONNX node
# FLOPs and bytes come from the model's shapes at the input shape you profile. `model_work` counts them per node;
# these counts are checked against hand counts in the tests (ResNet-style sample: 89.3 MFLOP at 1×3×128×128).

# %%
model = wb.load_model(wb.sample_path("resnet_mini"))
work = wb.model_work(model, {"input": (1, 3, 128, 128)})
print(f"{work.total_flops / 1e6:.1f} MFLOP, {work.total_bytes / 1e6:.2f} MB if every node ran alone")
work.nodes.head(8)

# %% [markdown]
# ## 2. A CPU run against this CPU's measured peak
# There is no datasheet for "whatever CPU this is", so the workbench measures one: a float32 matrix product for the
# FLOP/s (numpy's and ONNX Runtime's own kernels, the faster) and a large array copy for the bandwidth (about two
# seconds, cached per CPU model). The figures say "measured on this CPU". Small layers whose data stays in the CPU's
# caches can run *above* a DRAM roof: a note then names each such layer and its cause.

# %%
run = wb.profile(model, "fp32", backend="onnxruntime", config=wb.BuildConfig(iterations=20, warmup_ms=50, duration_s=0))
cpu = wb.roofline(run)
print(cpu.to_text(top=8))

# %%
wb.charts.roofline(cpu)

# %% [markdown]
# ## 3. A real TensorRT engine on an A100
# These are real trtexec outputs of ResNet-18 (batch 32) on an **NVIDIA A100 80GB PCIe**, from NVIDIA's TensorRT
# repository, recorded in this repository's `data/recorded/` with their provenance. The run names its GPU, so the workbench picks the A100's datasheet figures (dense Tensor Core peaks,
# DRAM bandwidth; the source is printed). The ONNX file is not in those outputs: each engine layer's work is
# counted from TensorRT's layer information (kernel size, output maps, weights, tensor shapes and types) — the
# table says which way every figure was obtained.

# %%
fp16 = wb.import_trtexec(wb.recorded_path("trtexec", "resnet18-a100-fp16"), name="resnet18 A100 fp16")
a100 = wb.roofline(fp16)
print(a100.to_text(top=10))

# %%
display(wb.charts.roofline(a100))
display(wb.charts.time_above_limit(a100, top=12))

# %% [markdown]
# Reading it: most convolutions sit at 40–60% of the FP16 Tensor Core roof; the first convolution (3 input
# channels) and the input reformat are memory-bound and far from their limit. The **lower bound** — every layer at
# its roof — is about half the measured latency: that is the most any tactic, fusion or kernel could win at FP16 on
# this GPU. INT8 (the Q/DQ engine) raises the compute roof to 624 TOPS:

# %%
qat = wb.roofline(wb.import_trtexec(wb.recorded_path("trtexec", "resnet18-a100-qat"), name="resnet18 A100 int8"))
print(
    f"INT8: measured {qat.measured_ms:.3f} ms, lower bound {qat.lower_bound_ms:.3f} ms; "
    f"FP16: measured {a100.measured_ms:.3f} ms, lower bound {a100.lower_bound_ms:.3f} ms"
)
qat.above_limit(8)

# %% [markdown]
# ## 4. The device table, and "what would the limit be on another GPU?"
# Every number has its source (NVIDIA datasheet or architecture whitepaper). Holding a run against another GPU's
# roof gives that GPU's *limit* for the same work — not a measurement of it.

# %%
wb.gpu_table()

# %%
h100 = wb.roofline(fp16, device="H100 SXM")
print(
    f"Lower bound of the same work on {h100.device.name}: {h100.lower_bound_ms:.3f} ms "
    f"(A100: {a100.lower_bound_ms:.3f} ms)"
)

# %% [markdown]
# The same in a report (`wb.report.write_report`, section "Hardware limit") and from the shell:
# `workbench roofline RUN [--device NAME] [--out roofline.html]`.

# %%
with tempfile.TemporaryDirectory() as tmp:
    page = wb.report.write_roofline(run, Path(tmp) / "roofline.html")
    print(f"wrote {page.name}: {page.stat().st_size / 1e6:.1f} MB (self-contained)")

# %% [markdown]
# ## Try this
# - Profile the `transformer_encoder` sample (`{"input_ids": (8, 64)}`) and find its memory-bound layers.
# - Profile resnet_mini at batch 32 instead of 1: how does the arithmetic intensity of its convolutions change?
# - Import your own trtexec outputs (`--exportLayerInfo --profilingVerbosity=detailed --exportProfile`) and pass
#   `model=` your ONNX file: the work then comes from the ONNX nodes, fused layers included.
