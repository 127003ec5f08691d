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
# # Quickstart: from an ONNX file to per-layer timing
#
# **What this teaches:** how to load an ONNX model, profile it on the best backend this machine has, and read
# its per-layer timing and memory.
#
# The workbench picks **TensorRT** when it is installed and a GPU is present (an NGC container), and otherwise
# **ONNX Runtime on the CPU** — it says which and why. Everything below runs either way.

# %%
import workbench as wb

model = wb.load_model(wb.sample_path("resnet_mini"))  # or wb.load_model("path/to/your.onnx")
model

# %% [markdown]
# Loading validates the model (ONNX checker and shape inference) and summarises it: inputs with their dynamic
# dimensions by name, operators, parameters, and a content hash that covers external weights.
#
# ## Profile it
# `wb.profile` builds an engine (a TensorRT plan, or an ONNX Runtime session), times whole inferences, then runs
# a separate profiled pass for the per-layer table. The batch dimension is dynamic, so we choose a shape.

# %%
config = wb.BuildConfig(shapes=wb.parse_shapes("input:1x3x128x128"), iterations=500)
run = wb.profile(model, backend="auto", config=config)
run

# %% [markdown]
# ## Keep it in the History
# A run from `wb.profile` lives in this kernel until you keep it: `wb.Store().add(run)` puts it in the workspace's
# one history, the one the panel's History tab and `workbench history` list (the panel and the CLI keep their runs
# there themselves). Its id works wherever a run is asked for (`workbench report ID --out report.html`).

# %%
kept = wb.Store().add(run)
kept.id

# %% [markdown]
# ## Where the time goes
# The per-layer chart shows the slowest layers (hover for the layer type, precision, kernel and the ONNX nodes
# it came from); the rest are summed as "other".

# %%
wb.charts.layer_timing(run, top=15)

# %%
wb.charts.time_by_type(run)

# %% [markdown]
# ## Memory per layer: what each layer writes (activations) and the weights it reads

# %%
wb.charts.layer_memory(run, top=15)

# %% [markdown]
# ## Latency distribution

# %%
wb.charts.latency_histogram(run)

# %% [markdown]
# ## The layer table (the same columns for every backend and for imported trtexec results)

# %%
run.layers.sort_values("time_ms", ascending=False).head(10)[
    ["name", "type", "precision", "time_ms", "time_pct", "output_shapes", "onnx_nodes"]
]

# %% [markdown]
# ## Try this
# - Change the batch in `shapes` to 8: how do latency and throughput change?
# - Profile `wb.sample_path("transformer_encoder")` with `shapes=wb.parse_shapes("input_ids:1x128")`.
# - Open `01_workbench.ipynb` for the interactive panel (precision toggles, history, comparisons).
