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
# # Serve it: the chosen variant behind a real Triton, under load
#
# **What this teaches:** what a served model delivers under concurrent requests — latency percentiles and
# throughput per concurrency, where the server spends the time, what dynamic batching buys — and how to pick the
# serving configuration (max batch size, dynamic batching, instances) with the highest throughput under a p99
# latency budget, the question Triton's Model Analyzer answered.
#
# Engine-level timing (notebook 06) measures one inference at a time. A server sees many clients at once: requests
# queue, and Triton's **dynamic batcher** groups those waiting into one execution. That raises throughput and costs
# latency; only a load test says how much. The server here is real: the `tritonserver` binary of the
# `nvidia-pytriton` wheel, on 127.0.0.1, running the run's own ONNX Runtime engine in its Python backend. In NGC's
# Triton container the same calls serve the file with Triton's ONNX Runtime or TensorRT backend.
#
# On a small shared CPU the client and the server compete for the same cores: read the figures as this machine's,
# and compare configurations measured in the same session.

# %%
import workbench as wb

model = wb.load_model(wb.sample_path("digits_cnn"))
run = wb.profile(model, "fp32", backend="onnxruntime", config=wb.BuildConfig(iterations=50))
run

# %% [markdown]
# ## 1. Serve the run and send one request
# `wb.serve(run)` exports the run into a Triton model repository, starts the server on free local ports and waits
# until the model is READY. The `with` block stops it — server and Python stubs — when it ends; so does a kernel
# restart. The request's outputs equal the run's engine on the same inputs.

# %%
with wb.serve(run) as served:
    print(served)
    print("engine inside:", served.engine)
    outputs = served.infer()
    print({name: value.shape for name, value in outputs.items()})

# %% [markdown]
# ## 2. A load test: concurrency 1 to 8
# Each level keeps `concurrency` requests in flight for up to `duration_s` (sooner when its p99 is stable). Per
# level: throughput, client-side p50/p99, Triton's own view of the same requests — time in the queue and in the
# model — and the **achieved batch** (samples inferred per model execution). The client's request count is compared
# with Triton's statistics and its Prometheus counter.

# %%
with wb.serve(run, max_queue_delay_us=1000) as served:
    loaded = served.load((1, 4, 8), duration_s=1.5)
wb.Store().add(loaded)
for level in loaded.serving.levels:
    print(
        f"c={level.concurrency}: {level.throughput_rps:.0f} req/s, p50 {level.p50_ms:.2f} ms, p99 {level.p99_ms:.2f} ms, "
        f"queue {level.queue_ms:.2f} ms, batch {level.batch:.2f}, client = Triton's count: {level.counts_agree}"
    )

# %% [markdown]
# At concurrency 1 nothing waits, so every execution carries one sample (batch 1.00). With more requests in flight
# the batcher combines them: the achieved batch rises above 1 and each execution serves several requests.

# %% [markdown]
# ## 3. Which configuration? A search under a p99 budget
# Each candidate configuration is served and load-tested at the same concurrencies; the winner is the point with
# the highest throughput whose p99 stays within the budget. Every configuration's result is a serving run in the
# history, and the winner's `config.pbtxt` (with its model) is written into the repository.

# %%
from pathlib import Path

repository = Path("outputs/11_serve_with_triton/model_repository")
configs = wb.serving_configs(max_batch_sizes=(8,), queue_delays_us=(1000,), instances=(1,))  # + a no-batching baseline
found = wb.search_serving(run, p99_ms=100, repository=repository, configs=configs, concurrency=(1, 8), duration_s=1.0)
print(found.summary())
print(found.config_path.read_text() if found.config_path else "no winner: raise the budget")

# %%
wb.charts.serving_latency_throughput(found.runs, p99_budget_ms=100)

# %% [markdown]
# The dotted line is the Pareto front: no other point has both a lower p99 and a higher throughput. The star is the
# best point within the budget. On the command line the same search is
# `workbench serve RUN --search --p99-ms 10 --out model_repository --chart serving.html`.
#
# ## Try this
# - Tighten the budget (`p99_ms=20`) and see which configuration still qualifies.
# - Add `instances=(1, 2)` to the candidates: on two CPU cores a second instance competes for the same cores.
# - Load-test over HTTP: `served.load((1, 4), protocol="http")`.
