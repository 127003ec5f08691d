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
# # ONNX: exporting a PyTorch model with a dynamic batch, and checking the export
#
# **What this teaches:** how to export a PyTorch model to ONNX with a dynamic batch dimension, check what came out
# (inputs, operators, opset, outputs against PyTorch), and spot the two classic export traps — a dimension baked
# into the graph and an opset too new for the runtime.
#
# TensorRT does not read PyTorch code: it reads **ONNX**, a file that describes the network as a graph of standard
# operators (Conv, Relu, MatMul...) with the weights inside. The **opset** number says which version of each
# operator's definition the file uses; every runtime (TensorRT's ONNX parser, ONNX Runtime) supports opsets up to
# some maximum. Each input has a shape; a dimension can be a fixed number or a **named dynamic dimension**
# (`batch`), which lets one file serve any batch size. Getting those two things right at export time saves most
# of the "it worked in PyTorch" surprises later.
#
# The exports below go to a temporary folder, never into the repository.

# %%
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import workbench as wb

# keep the exporter's internal chatter (optional torchvision ops, a pytree deprecation) out of the way
logging.getLogger("torch.onnx").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*LeafSpec")
torch.manual_seed(0)
workdir = Path(tempfile.mkdtemp(prefix="wb-onnx-"))
print("exports go to", workdir)

# %% [markdown]
# ## 1. A tiny PyTorch model
# A small image classifier: one convolution, a pooling step and a linear layer. `flatten(1)` keeps whatever batch
# size comes in — remember that line, it matters in section 4.


# %%
class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.fc = torch.nn.Linear(8 * 16 * 16, 10)

    def forward(self, x):
        y = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(y.flatten(1))


net = TinyNet().eval()  # eval(): export inference behaviour (no dropout, fixed BatchNorm statistics)
example = torch.randn(1, 3, 32, 32)

# %% [markdown]
# ## 2. Export with a dynamic batch
# `torch.onnx.export` runs the model once on `example` and records what it does. Without more information every
# dimension of `example` becomes a fixed number. `dynamic_shapes` says which dimensions may vary: here dimension 0
# of the argument `x`, named `batch`. (Older code uses the TorchScript exporter, `dynamo=False`, with
# `dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}` — same idea, keyed by the ONNX names.)

# %%
good_path = workdir / "tinynet.onnx"
batch = torch.export.Dim("batch", min=1, max=1024)
torch.onnx.export(
    net,
    (example,),
    good_path,
    input_names=["input"],
    output_names=["logits"],
    dynamic_shapes={"x": {0: batch}},
    opset_version=18,
    verbose=False,
)
model = wb.load_model(good_path)
model

# %% [markdown]
# ## 3. Inspect what came out
# `wb.load_model` validates the file (ONNX checker and shape inference) without running it. Check three things
# after every export: the **inputs** (is `batch` a name, not `1`?), the **operators** (anything exotic your
# runtime may lack?), and the **opset**.

# %%
for tensor in model.inputs + model.outputs:
    print(f"{tensor.name:8s} {tensor.dtype:8s} {tensor.shape}")
print("opset:", model.opset, "| parameters:", f"{model.parameters:,}")
print("operators:", dict(model.op_histogram))

# %% [markdown]
# Then check the numbers: run the ONNX file on the backend this machine has, at a batch size the export never
# saw (4), and compare with PyTorch. Tiny differences (around 1e-6) are normal float rounding; anything large
# means the graph does something different from your Python code.

# %%
x4 = torch.randn(4, 3, 32, 32)
with torch.no_grad():
    expected = net(x4).numpy()

backend, why = wb.choose_backend("auto")
config = wb.BuildConfig(shapes=wb.parse_shapes("input:4x3x32x32"), iterations=20)
engine = backend.build(wb.make_variant(model), config)
got = engine.infer({"input": x4.numpy()})["logits"]
print(f"{backend.name}: output {got.shape}, max abs difference from PyTorch {np.abs(got - expected).max():.2e}")

# %% [markdown]
# The same file profiles at any batch size — the point of a dynamic batch:

# %%
for b in (1, 8):
    run = wb.profile(
        model, backend="auto", config=wb.BuildConfig(shapes=wb.parse_shapes(f"input:{b}x3x32x32"), iterations=30)
    )
    print(
        f"batch {b}: {run.latency.mean_ms:.3f} ms mean, {run.latency.throughput_qps * b:,.0f} images/s ({run.backend})"
    )

# %% [markdown]
# On TensorRT a dynamic dimension needs one more decision: the **optimization profile** (min / opt / max shape).
# TensorRT picks its kernels for `opt` and accepts anything between `min` and `max`; a narrow range gives faster
# engines, a wide one more flexibility. In the workbench that is `BuildConfig(profiles=...)`, and the equivalent
# trtexec flags are `--minShapes/--optShapes/--maxShapes`:

# %%
ranged = wb.BuildConfig(
    shapes=wb.parse_shapes("input:8x3x32x32"),
    profiles=(wb.ShapeRange("input", min=(1, 3, 32, 32), opt=(8, 3, 32, 32), max=(32, 3, 32, 32)),),
)
print(wb.trtexec_command(ranged, "tinynet.onnx"))

# %% [markdown]
# ## 4. Trap 1: a dimension baked into the graph
# **(a) Forgetting `dynamic_shapes`.** The export succeeds, but the input is now `[1, 3, 32, 32]` for good. The
# workbench refuses other shapes with a one-line reason instead of a confusing runtime error:

# %%
static_path = workdir / "tinynet_static.onnx"
torch.onnx.export(
    net, (example,), static_path, input_names=["input"], output_names=["logits"], opset_version=18, verbose=False
)
static = wb.load_model(static_path)
print("inputs:", [(t.name, t.shape) for t in static.inputs])
try:
    wb.profile(static, backend="auto", config=wb.BuildConfig(shapes=wb.parse_shapes("input:8x3x32x32")))
except wb.WorkbenchError as error:
    print("WorkbenchError:", error)

# %% [markdown]
# **(b) A batch size written in the Python code.** Replace `y.flatten(1)` by `y.reshape(1, -1)` — harmless while
# you test with one image. Two things can happen at export:
# - the current exporter notices that the code only works for batch 1 and quietly exports a **static** input,
#   even though you asked for a dynamic `batch`;
# - the older TorchScript exporter does what you asked — the input *says* `batch` — but the graph holds a
#   `Reshape` to `[1, -1]`, so the model **breaks at run time** for any other batch.


# %%
class TinyNetFixedBatch(TinyNet):
    def forward(self, x):
        y = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(y.reshape(1, -1))  # the bug: batch 1 written into the code


fixed = TinyNetFixedBatch().eval()
fixed.load_state_dict(net.state_dict())

torch.onnx.export(
    fixed,
    (example,),
    workdir / "fixed_dynamo.onnx",
    input_names=["input"],
    output_names=["logits"],
    dynamic_shapes={"x": {0: batch}},
    opset_version=18,
    verbose=False,
)
print("current exporter, inputs:", [(t.name, t.shape) for t in wb.load_model(workdir / "fixed_dynamo.onnx").inputs])

torch.onnx.export(
    fixed,
    (example,),
    workdir / "fixed_torchscript.onnx",
    dynamo=False,
    input_names=["input"],
    output_names=["logits"],
    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    opset_version=17,
)
legacy = wb.load_model(workdir / "fixed_torchscript.onnx")
print("TorchScript exporter, inputs:", [(t.name, t.shape) for t in legacy.inputs])

# %%
try:
    wb.profile(legacy, backend="auto", config=wb.BuildConfig(shapes=wb.parse_shapes("input:8x3x32x32"), iterations=5))
    print("batch 8 ran")
except Exception as error:  # the runtime's own error: the file claimed a dynamic batch it cannot serve
    print(f"batch 8 fails: {type(error).__name__}: {str(error).splitlines()[0][:300]}")

# %% [markdown]
# The fix is in the model code: derive sizes from the input (`x.shape[0]`, `flatten(1)`, `reshape(x.shape[0], -1)`),
# never write them as numbers. The test that catches it is the one in section 3: **run the export at a batch size
# other than the example's** and compare with PyTorch.
#
# ## 5. Trap 2: an opset too new for the runtime
# Newer exporters can write newer opsets than your runtime reads. The `onnx` package here knows opset 26, but this
# ONNX Runtime stops earlier, and TensorRT's parser has its own maximum (NVIDIA's ONNX opset guide lists 25 for
# TensorRT 11.x; older 10.x releases stop lower — check the support matrix of the TensorRT you deploy on). The
# export succeeds; loading in the runtime fails:

# %%
import onnx

newest = onnx.defs.onnx_opset_version()
new_path = workdir / f"tinynet_opset{newest}.onnx"
torch.onnx.export(
    net,
    (example,),
    new_path,
    input_names=["input"],
    output_names=["logits"],
    dynamic_shapes={"x": {0: batch}},
    opset_version=newest,
    verbose=False,
)
too_new = wb.load_model(new_path)
print("exported at opset", too_new.opset)
try:
    wb.profile(too_new, backend="auto", config=wb.BuildConfig(shapes=wb.parse_shapes("input:1x3x32x32"), iterations=5))
    print(f"this machine's backend accepts opset {too_new.opset}")
except Exception as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# (On a CPU machine the message comes from ONNX Runtime; version 1.24's full message ends "Current official support
# for domain ai.onnx is till opset 25".) The cure is to export at an opset your deployment runtime supports: pass
# `opset_version=` with a number the support matrix of *that* TensorRT (or ONNX Runtime) lists. Opset 17 is the
# lowest with a single `LayerNormalization` op (which TensorRT maps to its own normalization layer); the
# workbench's sample models use 17, which every TensorRT it supports (10.2 and later) parses.
#
# ## Try this
# - Export `TinyNet` with `dynamic_shapes={"x": {0: batch, 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}}`:
#   does the export succeed? Why would the `Linear` layer care about the image size? (Hint: 8 × 16 × 16.)
# - Export with `dynamo=False` and `dynamic_axes` instead, then compare `model.op_histogram` and the node names of
#   the two files (`[n.name for n in model.proto.graph.node]`). Names matter later: they are how the workbench maps
#   TensorRT layers back to ONNX nodes.
# - Profile the dynamic export at batch 1, 8 and 64: how does throughput (images/s) change, and why?
# - Load `../data/transformer_encoder.onnx` and list its inputs: which dimensions are dynamic?
