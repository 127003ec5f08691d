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
# # The workbench panel
#
# **What this is:** one panel to pick a model, a precision and a workspace size, build and profile it, read the
# per-layer timing, memory and accuracy, and compare runs. It uses the same API as the CLI and the other notebooks.
#
# - **Precision**: FP32 / TF32 / FP16 / BF16 / INT8 / FP8. Choices this backend or GPU cannot do are greyed out, with
#   the reason underneath (ONNX Runtime on a CPU has no BF16 kernels and emulates FP8 Q/DQ; TensorRT needs compute
#   8.0+ for BF16 and 8.9+ for FP8). INT8/FP8 are calibrated: the digits sample comes with its own calibration set.
# - **Workspace**: the TensorRT builder's scratch-memory limit (capped at the GPU's memory); ONNX Runtime ignores it.
# - **Build & profile** shows the builder's phases (TensorRT) or the steps (ModelOpt, ONNX Runtime) in the
#   progress bar and the log; **Cancel** stops at the next step and saves nothing.
# - Every run is saved in the **workspace** folder (`$WORKBENCH_WORKSPACE`, default: the checkout's `workspace/`, the same for notebooks and the CLI): the
#   **History** tab lists them — also after a kernel restart — and **Compare** puts two or more side by side.

# %%
from workbench.ui import Workbench

panel = Workbench("digits_cnn")  # a sample name, a path to an .onnx file, or a loaded wb.Model
panel

# %% [markdown]
# ## From code
# `panel.build()` does what the button does and returns the Run; `panel.compare([id_a, id_b])` fills the Compare
# tab. The run history is a table too:

# %%
panel.store.list(model="digits_cnn")[["created", "name", "mean_ms", "label_accuracy", "run"]]
