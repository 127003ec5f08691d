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
# # Which layers lose accuracy — and the fewest to keep in higher precision
#
# **What this teaches:** how to see *where* INT8 loses accuracy (layer-wise error against FP32), how to rank the
# layers by what each costs, and how to find the smallest set of nodes to keep in higher precision that meets an
# accuracy budget — weighed against latency.
#
# Under TensorRT 11 precision lives in the ONNX graph: INT8 is a graph with Q/DQ pairs (ModelOpt post-training
# quantization), and "keep this node in higher precision" means "leave its Q/DQ out". So the whole search runs
# here, on ONNX Runtime on a CPU, on real variants — and the plan it finds is a graph TensorRT builds as is.
#
# The model: `outlier_digits`, a small CNN trained on handwritten digits (see `data/README.md`). It was built to
# show two classic INT8 failures: a **wide-range input** (a raw sensor channel in [-255, 255] beside pixels in
# [0, 1]) and an **outlier feature** (one channel at 300 while the others stay below ~10, like the massive
# activations of large transformers). FP32 ignores both; INT8's one scale per tensor cannot.

# %%
import workbench as wb

model = wb.load_model(wb.sample_path("outlier_digits"))
calib = wb.sample_path("outlier_digits_calib")  # 128 training images, never the test ones
test = wb.sample_path("outlier_digits_test")  # 450 held-out images with labels
model

# %% [markdown]
# ## 1. The loss
# Quantize everything ModelOpt quantizes by default and measure top-1 on the held-out labels.

# %%
config = wb.BuildConfig(iterations=20)
int8 = wb.profile(model, "int8", backend="onnxruntime", config=config, calibration=calib, eval_data=test)
acc = int8.accuracy
print(f"FP32 top-1 {100 * acc.reference_label_accuracy:.2f}%  ->  INT8 top-1 {100 * acc.label_accuracy:.2f}%")

# %% [markdown]
# ## 2. Where the error comes from: layer-wise error
# `wb.layer_error` runs the variant and FP32 on the same inputs with every intermediate tensor exposed, matches
# them by ONNX tensor name (through the inserted Q/DQ pairs and casts) and reports cosine, max abs and relative L2
# error, and SNR per tensor, in graph order. *Where the error first jumps* is the first node that itself lost
# at least 10 dB. Hover a point to see its node.

# %%
variant = wb.make_variant(model, "int8", calibration=calib)
errors = wb.layer_error(variant, test)
print("error first jumps at:", errors.attrs["first_jump"])
wb.charts.layer_error(errors).show()
errors[["tensor", "op_type", "cosine", "rel_l2", "snr_db", "added_db", "jump"]].head(8)

# %% [markdown]
# The first Conv already loses almost everything: its input's single INT8 scale is set by the sensor channel
# (255 / 127 = 2.0 per step), so pixels in [0, 1] round to 0 or 2. A second drop follows at the third Conv (the
# outlier feature). Layer-wise error shows *where*, and it is the search's first ranking; it does not say *what
# keeping a node in FP16 would buy*, because errors compound. That is what the sensitivity search measures.
#
# ## 3. Sensitivity and a plan
# `wb.sensitivity` calibrates **once**, groups the quantized nodes (conv+bn+act, attention, LayerNorm, residual add)
# and ranks the groups from one layer-wise error pass (the error each adds; groups adding none are tied, not
# ordered). Then it keeps groups in higher precision in ranking order (bisection over how many, then pruning: the
# plan without each of its groups is measured) until the budget holds: here at most 0.5 points of top-1 below
# FP32. Every candidate is the calibrated graph with the Q/DQ pairs in front of its kept nodes removed, run on the
# evaluation data. The summary's first line answers the real question: is the plan faster than FP32 here?

# %%
plan = wb.sensitivity(model, "int8", calibration=calib, eval_data=test, budget="top1:0.5")
found = wb.Sensitivity.from_dict(plan.sensitivity)
print(found.summary())
found.scores_frame()[["rank", "tie", "label", "added_db", "quant_snr_db", "loss", "in_plan"]]

# %%
wb.charts.sensitivity_ranking(plan.sensitivity).show()

# %% [markdown]
# ## 4. Accuracy against latency
# The timed candidates (all INT8, all kept, the plan), with the Pareto front: on a CPU, ONNX Runtime runs Q/DQ
# graphs through its quantized kernels, and a tiny model may well be *faster* without them — a real figure, not a
# TensorRT one; the summary says so first when the plan does not beat FP32. On a GPU, profile the recipe with
# TensorRT to weigh the same plans there.

# %%
wb.charts.sensitivity_pareto(plan.sensitivity).show()
found.candidates_frame()[["label", "kept_nodes", "label_accuracy", "latency_ms", "meets"]]

# %% [markdown]
# ## 5. The plan as a reusable recipe
# The plan is a recipe: the precision plus the nodes kept out of INT8. `profile` (and `workbench profile --recipe`,
# the panel, sweeps, `export trtexec` through the run's ONNX) applies it: ModelOpt quantizes with those nodes
# excluded (cached: the excluded nodes are part of the variant's cache key), which is what the search measured.

# %%
recovered = wb.profile(
    model, recipe=found.recipe, backend="onnxruntime", config=config, calibration=calib, eval_data=test
)
print("kept in higher precision:", found.recipe["keep_nodes"])
print(f"top-1 with the recipe: {100 * recovered.accuracy.label_accuracy:.2f}%")

# %% [markdown]
# ## Try this
# - Ask for a stricter budget: `budget="cosine:0.9999"`. Which nodes join the plan, and what does it cost?
# - Group per node instead of per block: `group_by="node"`. Does the plan change?
# - Where the TensorRT-RTX compiler is installed (`pip install tensorrt-rtx`, no GPU needed), add
#   `compile_arch="sm89"`: every plan also gets its real engine's layer count and memory.
# - Run the search from a shell and open its report:
#   `workbench sensitivity outlier_digits --calib outlier_digits_calib --eval outlier_digits_test --out /tmp/plan`
#   (the bundled samples by name).
