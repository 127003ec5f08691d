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
# # Benchmark and layers: latency you can trust, and where the time goes
#
# **What this teaches:** how to read a benchmark (mean, percentiles, throughput), how to find the layers that cost
# the time and memory, how ONNX nodes are fused into engine layers, what the TensorRT workspace size and builder
# optimization level do, and how to act on the workbench's advice.
#
# **How the workbench measures.** Like `trtexec`, it first *warms up* (200 ms by default: caches, clocks and lazy
# initialisation settle), then times whole inferences one by one. Then it runs a **separate profiled pass** for
# the per-layer table, because a per-layer profiler adds overhead of its own and would distort the end-to-end
# numbers. Two consequences: the latency statistics never include profiler overhead, and the per-layer times do
# not add up exactly to the measured latency.

# %%
import pandas as pd
from IPython.display import display

import workbench as wb

pd.set_option("display.max_colwidth", 90)
model = wb.load_model(wb.sample_path("resnet_mini"))  # a quarter-width ResNet-18, random weights, 128x128 input
model

# %% [markdown]
# ## 1. Latency percentiles and throughput
# - **mean** is what you pay on average; **p50** (the median) is the typical inference; **p90/p99** are the slow
#   tail: 1 inference in 10 (or 100) is slower than that. Services promise tail latency, so look at p99.
# - **throughput** is inferences per second; multiply by the batch size for samples per second. Larger batches
#   usually raise throughput and latency together.

# %%
runs = {}
for batch, iterations in ((1, 200), (8, 40)):
    config = wb.BuildConfig(shapes=wb.parse_shapes(f"input:{batch}x3x128x128"), iterations=iterations)
    runs[batch] = wb.profile(model, backend="auto", config=config)

pd.DataFrame(
    {
        f"batch {b}": {
            "mean ms": r.latency.mean_ms,
            "p50 ms": r.latency.p50_ms,
            "p90 ms": r.latency.p90_ms,
            "p99 ms": r.latency.p99_ms,
            "inferences": r.latency.samples,
            "images/s": r.latency.throughput_qps * r.latency.batch,
        }
        for b, r in runs.items()
    }
).round(3)

# %%
run = runs[1]
print("measured on:", run.backend, "|", run.environment.get("gpu") or run.environment.get("cpu"))
wb.charts.latency_histogram(run)

# %% [markdown]
# A long right tail or a mean far above the median means something else competed for the machine (other
# processes, CPU frequency changes, on a GPU clock ramp-up or data transfers). On a busy laptop or a 2-core CI
# runner expect noise; repeat the measurement and compare medians before believing a small difference.
#
# ## 2. Where the time goes: per-layer timing

# %%
wb.charts.layer_timing(run, top=12)

# %%
wb.charts.time_by_type(run)

# %%
per_layer_sum = run.layers["time_ms"].sum()
print(
    f"sum of per-layer times {per_layer_sum:.3f} ms vs measured mean latency {run.latency.mean_ms:.3f} ms "
    f"(profiled separately; the difference is overhead between layers and profiler effects)"
)

# %% [markdown]
# ## 3. Memory per layer
# `activation_bytes` is what each layer writes per inference, `weight_bytes` what it reads as weights. Big
# activations early in a CNN (high resolution, few channels) and big weights late (many channels) are typical.

# %%
wb.charts.layer_memory(run, top=12)

# %%
mem = run.memory
print(f"weights {mem.weights_bytes / 2**20:.2f} MiB, summed layer outputs {mem.activations_bytes / 2**20:.2f} MiB")

# %% [markdown]
# ## 4. The fusion view: ONNX nodes → engine layers
# Backends do not run the ONNX graph node by node: they **fuse** neighbours into one kernel (a convolution with the
# bias, the residual add and the ReLU after it), so the intermediate tensors never travel through memory. The
# layer table's `onnx_nodes` column records which ONNX nodes each layer came from; `fusion_view` puts the largest
# fusions first and says what became of every node.

# %%
view = wb.fusion_view(run.layers, model)
print(view.attrs["summary"])
view.head(8)

# %% [markdown]
# That is ONNX Runtime's graph optimizer. TensorRT fuses more aggressively and also picks a memory layout and a
# kernel ("tactic") per layer; where layouts or precisions differ between neighbours it inserts **reformat**
# layers that come from no ONNX node. Here is a real ResNet-18 FP16 engine built by trtexec on an A100 (NVIDIA's
# TensorRT repository, recorded in `data/recorded/`):

# %%
a100_fp16 = wb.import_trtexec(wb.recorded_path("trtexec", "resnet18-a100-fp16"))
trt_view = wb.fusion_view(a100_fp16.layers)
print(trt_view.attrs["summary"])
display(trt_view.head(5))
display(trt_view[trt_view["fused"] == 0].head(5))

# %% [markdown]
# Newer TensorRT versions hand whole subgraphs (attention, MLPs) to **Myelin**, a graph compiler; its layers
# (`gemm`, `kgen`) each cover several ONNX nodes, named in the layer's metadata. From a TensorRT 10.16 engine on an
# H100 (NVIDIA's TensorRT cookbook):

# %%
h100 = wb.import_trtexec(wb.recorded_path("trtexec-10.16", "h100", "model-trained.layerinfo.json"))
wb.fusion_view(h100.layers)[["name", "type", "precision", "fused", "onnx_nodes"]]

# %% [markdown]
# ## 5. Workspace size and builder optimization level (TensorRT builds only)
# Two settings change what TensorRT builds — and **nothing** on ONNX Runtime:
#
# - **workspace** (`workspace_bytes`, trtexec `--memPoolSize=workspace:...`): the scratch memory a kernel may use
#   while it runs. Some of the fastest tactics need a lot; with too little, the builder skips them (slower engine)
#   or fails to find any for a layer. Default: as much as the GPU has.
# - **builder optimization level** (`optimization_level` 0–5, trtexec `--builderOptimizationLevel`, default 3):
#   how long the builder searches for tactics and fusions. Lower builds faster and may run slower; higher builds
#   slower and sometimes runs faster. Worth trying 4–5 for a model you will deploy for a long time.
#
# Both are part of the build settings' key (`BuildConfig.key()`, one part of the engine cache key): change them and
# TensorRT builds a new engine.

# %%
settings = {"default": wb.BuildConfig(shapes=wb.parse_shapes("input:1x3x128x128"), iterations=100)}
settings["32 MiB workspace"] = settings["default"].replace(workspace_bytes=wb.parse_size("32M"))
settings["level 0 (fast build)"] = settings["default"].replace(optimization_level=0)
settings["level 5 (long search)"] = settings["default"].replace(optimization_level=5)
for label, config in settings.items():
    print(f"{label:22s} config key {config.key()}  ->  {wb.trtexec_command(config, 'resnet_mini.onnx', exports=False)}")

# %%
backend, why = wb.choose_backend("auto")
if backend.name == "tensorrt":
    sweep = {label: wb.profile(model, backend="auto", config=config) for label, config in settings.items()}
    display(
        pd.DataFrame(
            {
                label: {
                    "build s": r.build_seconds,
                    "engine from cache": r.cache_hit,
                    "mean ms": r.latency.mean_ms,
                    "p99 ms": r.latency.p99_ms,
                    "layers": len(r.layers),
                }
                for label, r in sweep.items()
            }
        ).round(3)
    )
else:
    print(
        f"Backend here: {backend.name}. Workspace size and builder optimization level are TensorRT build "
        "settings: ONNX Runtime ignores them, so a sweep here would only measure noise. Run this notebook on a "
        "GPU with TensorRT (an NGC container), or run the trtexec commands above there and import the results "
        "(notebook 07)."
    )

# %% [markdown]
# ## 6. Advice
# `wb.advise(run)` reads a run's layer table and says what stands out, with the layers and numbers it rests on and
# a fix. It works on live runs and imported trtexec results alike:


# %%
def show(findings):
    for f in findings:
        print(f"[{f.severity}] {f.title}\n    {f.detail}\n    fix: {f.fix}")
        for line in f.evidence[:3]:
            print("      -", line)


show(wb.advise(run))

# %%
show(wb.advise(a100_fp16))

# %% [markdown]
# ## 7. Can you trust the number? Trials, intervals, significance
# One timed loop gives one number; run it again and you get another. The workbench therefore repeats warm-up +
# timed loop (`trials`, 3 by default, `--trials 5` on the command line) and reports the **median with a 95%
# confidence interval** (bootstrapped over trials, then the inferences inside them), the **coefficient of
# variation**, and a **stability verdict** with its likely cause: few samples, drift across trials, outliers,
# throttling. It also records the machine's conditions (CPU clock and load; on a GPU its clocks, power,
# temperature and throttle reasons) before and after, and warns when they moved.

# %%
steady = wb.profile(
    model, config=wb.BuildConfig(shapes=wb.parse_shapes("input:1x3x128x128"), iterations=30, warmup_ms=50, trials=5)
)
print(steady.timing.text())
print("conditions:", steady.conditions.before, "\nwarnings:", steady.conditions.warnings or "none")

# %% [markdown]
# Comparisons state every difference as a ratio with its interval, or say there is none: two runs of the *same*
# configuration should come out as "no significant difference" (if they do not, the machine changed between them,
# and the runs' verdicts say so).

# %%
again = wb.profile(model, config=steady.config)
wb.latency_differences([steady, again])[["tag", "run", "ratio", "low", "high", "text"]]

# %% [markdown]
# ## 8. Real GPU runs: measured on an H200 with ONNX Runtime CUDA
# The repository ships run directories measured on an NVIDIA H200 with ONNX Runtime's CUDA execution provider
# (`data/runs/h200-ort-cuda/`, see `docs/gpu-validation.md`; no TensorRT was involved). They load anywhere, with
# no GPU. At batch 8 the host launching kernels sets the pace and the trials drift (the verdict says "unstable");
# at batch 256 the GPU sets the pace, the runs are stable, and FP16 is measurably faster than FP32.

# %%
GPU_RUNS = wb.measured_run_path("h200-ort-cuda")
gpu = {p.name: wb.load_run(p) for p in sorted(GPU_RUNS.iterdir()) if (p / "run.json").is_file()}
pd.DataFrame(
    {
        name: {
            "device": f"{r.environment['gpu']} ({r.environment['provider']})",
            "median ms": round(r.timing.median_ms, 4),
            "95% CI": f"{r.timing.ci_low_ms:.4f}–{r.timing.ci_high_ms:.4f}",
            "CV %": round(100 * r.timing.cv, 1),
            "verdict": r.timing.verdict,
        }
        for name, r in gpu.items()
    }
).T

# %%
large = [
    gpu["resnet_mini-b256-fp32"],
    gpu["resnet_mini-b256-fp16"],
    gpu["resnet_mini-b8-fp32"],
    gpu["resnet_mini-b8-fp16"],
]
wb.charts.latency_trials(large)

# %%
print("resnet_mini, batch 256, FP16 against FP32:", wb.latency_differences(large[:2])["text"].iloc[1])
print("resnet_mini, batch 8,   FP16 against FP32:", wb.latency_differences(large[2:])["text"].iloc[1])
wb.charts.layer_timing(gpu["resnet_mini-b256-fp16"], top=12)

# %% [markdown]
# ## Try this
# - Profile batch 32 (`input:32x3x128x128`, `iterations=10`): which layers gain the most share of the time?
# - Set `ort_graph_optimization="disable"` in the `BuildConfig` and compare the fusion view and latency with the
#   default: how much do ONNX Runtime's fusions buy on this model?
# - In the A100 fusion view, find the layers with `fused == 0`: which ONNX layers sit on either side of them, and
#   why would the precision or layout change there?
# - On a GPU, add `cuda_graph=True` to the config: how do the mean and p99 change for batch 1, where launch
#   overhead matters most?
# - Profile with `trials=1` and then `trials=5`: how does the interval change, and does the verdict?
