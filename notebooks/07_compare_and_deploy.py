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
# # Compare and deploy: choosing a variant and handing it off
#
# **What this teaches:** how to compare runs side by side and choose one on the latency-vs-accuracy Pareto front,
# keep every run in a store, and hand the choice off — as a trtexec command, a Triton model repository and a
# self-contained HTML report — and how to bring in trtexec results made on another machine.
#
# Optimizing is choosing between variants: FP32, FP16, INT8, different settings. Each is a **Run** (latency,
# layers, memory, accuracy, the exact config), and every tool here reads Runs — the ones you profile, and the
# ones you import from trtexec on a GPU somewhere else. The files this notebook writes (reports, the trtexec script,
# the Triton repository) go to `outputs/07_compare_and_deploy` beside it, and its runs into the workspace's history —
# the one the panel and `workbench history` show (start Jupyter with `WORKBENCH_WORKSPACE=DIR` to keep them apart).
# The cell below prints both places.

# %%
from pathlib import Path

from IPython.display import display

import workbench as wb

out = Path("outputs/07_compare_and_deploy")  # beside this notebook: open the reports from JupyterLab's file browser
out.mkdir(parents=True, exist_ok=True)
store = wb.Store()  # the one history the panel and `workbench history` show too ($WORKBENCH_WORKSPACE overrides it)
print("writing under", out.resolve(), "; runs kept in", store.path)

# %% [markdown]
# ## 1. Three variants of one model
# The trained digits classifier in FP32, FP16 and INT8 (calibrated on 256 training images), each with its accuracy
# on the 450 held-out test images. Every run goes into the store as it is made.

# %%
model = wb.load_model(wb.sample_path("digits_cnn"))
config = wb.BuildConfig(shapes=wb.parse_shapes("input:16x1x8x8"), iterations=50)
images, labels = wb.digits_test_set()
evaluation = {**images, "labels": labels}

runs = [
    store.add(wb.profile(model, "fp32", backend="auto", config=config, eval_data=evaluation)),
    store.add(wb.profile(model, "fp16", backend="auto", config=config, eval_data=evaluation)),
    store.add(
        wb.profile(
            model, "int8", backend="auto", config=config, eval_data=evaluation, calibration=wb.digits_calibration()
        )
    ),
]
store.list().head(6)[["run", "name", "shapes", "precision", "backend", "mean_ms", "label_accuracy", "verdict"]]

# %% [markdown]
# The store is a folder (an SQLite index plus one directory per run): it survives kernel restarts, and
# `store.get(run_id)` brings any run back. The workbench panel (notebook 01) shows the same history.
#
# ## 2. Compare
# `wb.compare(runs)` tags the runs A, B, C (A is the baseline), lines up their key metrics, and aligns their layers —
# even when fusions differ — to show which ones got faster or slower.

# %%
comparison = wb.compare(runs)
for tag, label in comparison.legend():
    print(tag, "=", label)
wb.format_metrics(comparison.metrics)

# %%
wb.charts.compare_latency(runs)

# %%
comparison.changed_layers(top=8)

# %% [markdown]
# ### The Pareto chart
# No variant is best at everything; the useful ones are those no other run beats on **both** latency and error:
# the **Pareto front**. Anything off the front is dominated — some other run is at least as fast *and* at least as
# accurate.

# %%
wb.charts.pareto(runs)

# %%
front = comparison.pareto[comparison.pareto["front"]]
display(comparison.pareto)
chosen_tag = front.sort_values("latency_ms").iloc[0]["tag"]
chosen = runs[comparison.tags.index(chosen_tag)]
print(f"fastest run on the front: {chosen_tag} = {chosen.name}")

# %% [markdown]
# On a CPU the front is often just FP32: ONNX Runtime has no fast FP16 or INT8 kernels there (notebooks 04 and 05),
# so the lower precisions are slower *and* no more accurate. On a GPU with TensorRT, FP16 and INT8 usually move
# left and join the front; then the choice is how much error you accept for the speed.
#
# ## 3. Hand it off
# ### The trtexec command
# The exact build and benchmark, for a GPU machine with TensorRT: the ONNX file with the precision already in the
# graph, the shapes, the timing settings, and the exports the workbench can import back (section 4).

# %%
print("TensorRT 11:", wb.trtexec_command(chosen), sep="\n", end="\n\n")
print("TensorRT 10:", wb.trtexec_command(chosen, version=10), sep="\n")

# %% [markdown]
# ### A Triton model repository
# NVIDIA Triton Inference Server serves models from a folder: `<repository>/<model name>/config.pbtxt` and
# `<model name>/1/model.plan` (a TensorRT engine) or `model.onnx` (ONNX Runtime). The export writes both, with
# input/output names, types and shapes from the run, and a batch size it can vouch for.

# %%
kind = "KIND_GPU" if chosen.backend == "tensorrt" else "KIND_CPU"
model_dir = wb.export_triton(chosen, out / "model_repository", name="digits", kind=kind)
for path in sorted(model_dir.rglob("*")):
    print(path.relative_to(out))
print()
print((model_dir / "config.pbtxt").read_text())

# %% [markdown]
# ### An HTML report
# One file with everything about a run — metrics, accuracy, what the precision transform changed, the trtexec
# command, advice, the charts and the layer table. plotly is embedded, so it opens offline and can be attached
# to a ticket. A comparison has its own report.

# %%
report = wb.report.write_report(chosen, out / "report.html")
comparison_report = wb.report.write_comparison(comparison, out / "comparison.html")
for path in (report, comparison_report):
    print(f"{path}  ({path.stat().st_size / 1024:.0f} KiB) — open it in a browser")

# %% [markdown]
# ## 4. Import trtexec results made elsewhere
# The usual loop when your laptop has no GPU: run the command from section 3 on a GPU machine, copy back the
# files it wrote (`--exportLayerInfo`, `--exportProfile`, `--exportTimes`, or just its console log) and import
# them. The files are recognised by their content, whatever they are called.
#
# These are real trtexec outputs of ResNet-18 on an A100 in FP32, FP16 and INT8 (Q/DQ), from NVIDIA's TensorRT
# repository, recorded in this repository's `data/recorded/` with their provenance.

# %%
imported = [
    store.add(wb.import_trtexec(wb.recorded_path("trtexec", name), name=f"resnet18 A100 {name.split('-')[-1]}"))
    for name in ("resnet18-a100-fp32", "resnet18-a100-fp16", "resnet18-a100-qat")
]
a100 = wb.compare(imported)
wb.format_metrics(a100.metrics)

# %%
wb.charts.compare_layers(imported, top=12)

# %% [markdown]
# Imported runs work everywhere Runs do — the store, comparisons, reports, advice — with two honest gaps: trtexec
# measures no accuracy (so these runs have no place on a Pareto chart until you measure it), and a Triton export
# needs the engine itself, which these folders do not include:

# %%
try:
    wb.export_triton(imported[1], out / "model_repository")
except wb.WorkbenchError as error:
    print("WorkbenchError:", error)
store.list().head(6)[["run", "name", "shapes", "precision", "backend", "mean_ms"]]

# %% [markdown]
# ## Try this
# - Add a fourth run — INT8 with `calibration_method="entropy"` — to `runs` and redraw the Pareto chart: where does it
#   land?
# - Restart the kernel, then `wb.Store().list()`: the runs are still there. Load one with
#   `store.get(run_id)` and compare it with a new run.
# - Open `comparison.html` and find the layer whose time changed most between A and C.
# - From a terminal: `workbench import <folder> --out runs/a100`, then `workbench compare` and `workbench export
#   triton` do the same as this notebook (`workbench --help` lists them).
