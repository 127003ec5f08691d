"""What a served model delivered under load: the typed ``Run.serving`` field (``workbench serve RUN --load``).

A serving run is a :class:`~workbench.results.run.Run` with ``source="serve"`` whose ``serving`` holds the server,
the Triton model configuration it served (:class:`ServingConfig`) and one :class:`ServingLevel` per concurrency;
its ``latency`` is the client-side latency of the level with the highest throughput (so history tables and
comparisons read it like any run). ``run.json`` keeps it under ``"serving"`` (schema in ``docs/run-schema.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServingConfig:
    """The Triton model configuration served: batching, dynamic batching, instances."""

    max_batch_size: int = 0
    dynamic_batching: bool = False
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    instances: int = 1
    kind: str = "KIND_CPU"

    @property
    def label(self) -> str:
        """``mbs 8, dyn [4 8] 100 µs, 2 inst``: the configuration in one short line (chart legends, names)."""
        parts = [f"mbs {self.max_batch_size}"]
        if self.dynamic_batching:
            preferred = f" [{' '.join(map(str, self.preferred_batch_sizes))}]" if self.preferred_batch_sizes else ""
            parts.append(f"dyn{preferred} {self.max_queue_delay_us} µs")
        else:
            parts.append("no dyn")
        parts.append(f"{self.instances} inst")
        return ", ".join(parts)


@dataclass(frozen=True)
class ServingLevel:
    """One concurrency level of a load test: client-side latency in milliseconds, what Triton counted in the same
    window (its statistics extension; its Prometheus counters agree when ``metrics_requests`` equals ``requests``),
    and where the server spent the time (means per request, milliseconds)."""

    concurrency: int
    requests: int  # requests the client completed in the measured window
    errors: int  # requests that failed (not in ``requests``)
    seconds: float  # the measured window
    throughput_rps: float  # requests / seconds (× samples per request = samples/s)
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    stable: bool  # p99 and throughput of the last windows within the stability tolerance
    windows: int  # measurement windows run
    server_requests: int  # Triton statistics: successful inference requests in the window
    server_inferences: int  # Triton statistics: samples inferred (inference count)
    server_executions: int  # Triton statistics: model executions (batches run)
    metrics_requests: int | None = None  # Prometheus nv_inference_request_success delta (None: metrics off)
    queue_ms: float = 0.0  # mean per request: waiting in the scheduler's queue
    compute_input_ms: float = 0.0
    compute_infer_ms: float = 0.0
    compute_output_ms: float = 0.0
    server_ms: float = 0.0  # mean per request: the whole request inside the server (statistics "success")

    @property
    def batch(self) -> float:
        """Achieved batch size: samples inferred per model execution (1.0 without batching)."""
        return self.server_inferences / self.server_executions if self.server_executions else 0.0

    @property
    def counts_agree(self) -> bool:
        """The client's request count equals Triton's own (statistics, and metrics where read); False where nothing
        was counted (perf_analyzer's levels carry no counts)."""
        return (
            self.requests > 0
            and self.requests == self.server_requests
            and self.metrics_requests in (None, self.requests)
        )


@dataclass(frozen=True)
class Serving:
    """A load test of one served configuration (the typed ``Run.serving`` field)."""

    server: str  # "tritonserver 2.51.0 (nvidia-pytriton wheel)"
    engine: str  # what ran inside: "python backend: onnxruntime CPUExecutionProvider", "tensorrt_plan"...
    protocol: str  # "grpc" | "http"
    generator: str  # "tritonclient grpc.aio" | "perf_analyzer"
    config: ServingConfig = field(default_factory=ServingConfig)
    levels: tuple[ServingLevel, ...] = ()
    served_run: str = ""  # the id of the run whose variant was served
    samples_per_request: int = 1
    p99_budget_ms: float | None = None  # the configuration search's budget, when one was given
    search: str = ""  # the search this run belongs to (one id per `workbench serve --search`), "" outside one
    winner: bool = False  # the search's pick: highest throughput with p99 within the budget
    notes: tuple[str, ...] = ()

    @property
    def counts_agree(self) -> bool:
        return all(level.counts_agree for level in self.levels)

    def best(self, p99_budget_ms: float | None = None) -> ServingLevel | None:
        """The level with the highest throughput (with p99 within ``p99_budget_ms`` when given)."""
        within = [lv for lv in self.levels if p99_budget_ms is None or lv.p99_ms <= p99_budget_ms]
        return max(within, key=lambda lv: lv.throughput_rps, default=None)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
