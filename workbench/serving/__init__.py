"""Serve a run's variant through a real Triton Inference Server, load-test it, and search its serving configuration.

::

    with wb.serve(run) as served:              # exported, started on 127.0.0.1, READY
        served.infer()                          # one request: {output name: array}
        load = served.load((1, 4, 16), duration_s=5)   # a serving Run: p50/p99, throughput, Triton's counts
    found = wb.search_serving(run, p99_ms=10, repository="repo")   # Model Analyzer's question, answered here

Which engine serves: where the ``tritonserver`` comes from the ``nvidia-pytriton`` wheel (Python backend only), an
ONNX Runtime run is served through the Python backend running ONNX Runtime with the run's own providers and graph
optimization (``export_triton(..., flavour="python")``); in NGC's Triton container (``tritonserver`` on PATH with
``/opt/tritonserver/backends``) the run's file is served by Triton's own ``onnxruntime_onnx`` or ``tensorrt_plan``
backend. A TensorRT run needs the latter. Servers stop when the ``with`` block ends, on :meth:`Served.stop`, at
interpreter exit, and with their parent process (see :mod:`workbench.serving.server`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError
from ..progress import Progress
from ..results.run import LatencyStats, Run
from ..results.serving import Serving, ServingConfig
from .load import LoadResult, LoadSettings, load_test, perf_analyzer_levels, read_perf_analyzer_csv, request_inputs
from .server import REPOSITORY_PREFIX, TritonServer, find_triton

__all__ = [
    "LoadSettings",
    "Served",
    "TritonServer",
    "find_triton",
    "load_test",
    "read_perf_analyzer_csv",
    "serve",
    "serving_lines",
    "serving_run",
]


def serve(
    run: Run,
    *,
    repository=None,
    name: str | None = None,
    max_batch_size: int | None = None,
    dynamic_batching: bool = True,
    preferred_batch_sizes=(),
    max_queue_delay_us: int = 0,
    instances: int = 1,
    flavour: str = "auto",
    triton: str = "auto",
    timeout_s: float = 120.0,
) -> Served:
    """Export ``run`` into a Triton model repository and serve it on 127.0.0.1 until READY; returns the handle.

    ``repository``: where to export (kept); by default a temporary one removed on stop. ``flavour``: "python"
    (Python backend running ONNX Runtime), "platform" (Triton's own backend for the file) or "auto" (platform
    where the server has those backends, i.e. NGC; python with the wheel's server). ``triton``: which server
    (:func:`~workbench.serving.server.find_triton`). The batching options are those of
    :func:`workbench.interop.triton.export_triton`.
    """
    from ..interop.triton import export_triton

    if not isinstance(run, Run):
        raise WorkbenchError(f"serve() takes a Run, not {type(run).__name__}: load one with wb.load_run or the Store.")
    install = find_triton(triton)
    if flavour == "auto":
        flavour = "platform" if install.source == "PATH" else "python"
    if flavour == "platform" and install.source != "PATH":
        raise WorkbenchError(
            "The nvidia-pytriton server has only the Python backend: serve with flavour 'python' (ONNX Runtime runs), "
            "or run in NGC's Triton container for the onnxruntime/tensorrt backends."
        )
    owned = repository is None
    repo = Path(tempfile.mkdtemp(prefix=f"{REPOSITORY_PREFIX}{os.getpid()}-")) if owned else Path(repository)
    kind = "KIND_GPU" if run.backend == "tensorrt" or run.environment.get("gpu") else "KIND_CPU"
    try:
        model_dir = export_triton(
            run,
            repo,
            name=name,
            max_batch_size=max_batch_size,
            dynamic_batching=dynamic_batching,
            instances=instances,
            kind=kind,
            flavour=flavour,
            preferred_batch_sizes=tuple(preferred_batch_sizes),
            max_queue_delay_us=max_queue_delay_us,
        )
        server = TritonServer(repo, install=install)
        server.start([model_dir.name], timeout_s=timeout_s)
    except BaseException:
        if owned:
            shutil.rmtree(repo, ignore_errors=True)
        raise
    return Served(run, server, model_dir, flavour, owned)


class Served:
    """A run's variant served by a running Triton: ``infer``, ``load``, ``stop`` (also a context manager)."""

    def __init__(self, run: Run, server: TritonServer, model_dir: Path, flavour: str, owned_repository: bool):
        self.run = run
        self.server = server
        self.model_dir = model_dir
        self.model = model_dir.name
        self.flavour = flavour
        self._owned = owned_repository
        self.config = _serving_config(self._model_config())
        self._inputs: dict[str, np.ndarray] | None = None

    def __repr__(self) -> str:
        return f"Served({self.model}: {self.config.label}; {self.server!r})"

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server (and its stubs); remove the repository when it was a temporary one."""
        self.server.stop()
        if self._owned:
            shutil.rmtree(self.model_dir.parent, ignore_errors=True)

    @property
    def engine(self) -> str:
        """What runs inside the server for this model."""
        if self.flavour == "python":
            spec = json.loads((self.model_dir / "1" / "engine.json").read_text())
            return f"Python backend: onnxruntime {', '.join(spec['providers'])}"
        return f"{'tensorrt_plan' if self.run.backend == 'tensorrt' else 'onnxruntime_onnx'} backend"

    def _model_config(self) -> dict:
        """The model configuration the server loaded (its JSON), not the file we wrote."""
        with urllib.request.urlopen(f"http://{self.server.http_url}/v2/models/{self.model}/config", timeout=5) as r:
            return json.loads(r.read())

    # ---- requests -----------------------------------------------------------------------------------------------

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """One request's inputs: the run's profiled shapes with one sample per request where the model batches,
        values from :func:`workbench.model.inputs.make_inputs` (seed 0)."""
        if self._inputs is None:
            from ..model.inputs import make_inputs
            from ..model.onnx_model import load_model

            model_file = next((self.model_dir / "1").glob("model.*"))
            model = load_model(model_file if model_file.suffix == ".onnx" else self.run.model["path"])
            self._inputs = make_inputs(model, shapes=self.request_shapes or None)
        return self._inputs

    @property
    def request_shapes(self) -> dict[str, tuple]:
        shapes = self.run.shapes
        if self.config.max_batch_size > 0:
            return {k: (1, *v[1:]) for k, v in shapes.items() if v}
        return dict(shapes)

    def infer(self, inputs: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """One request over gRPC; the outputs by name."""
        from .._optional import optional_import

        grpc = optional_import("tritonclient.grpc", purpose="requests to Triton", extra="serve")
        utils = optional_import("tritonclient.utils", purpose="requests to Triton", extra="serve")
        tensors = request_inputs("grpc", self.inputs if inputs is None else inputs)
        client = grpc.InferenceServerClient(self.server.grpc_url)
        try:
            result = client.infer(self.model, tensors)
        except utils.InferenceServerException as e:
            raise WorkbenchError(
                f"Triton refused the request: {e.message()}: check the inputs' names and shapes."
            ) from None
        finally:
            client.close()
        return {o.name: result.as_numpy(o.name) for o in self.run.outputs}

    def load(
        self,
        concurrency=(1, 2, 4, 8, 16),
        *,
        duration_s: float = 10.0,
        protocol: str = "grpc",
        generator: str = "tritonclient",
        settings: LoadSettings | None = None,
        progress: Progress | None = None,
    ) -> Run:
        """A load test at each concurrency (see :func:`workbench.serving.load.load_test`); the serving Run.

        ``generator``: "tritonclient" (built in) or "perf_analyzer" (where it is on PATH)."""
        settings = settings or LoadSettings(duration_s=duration_s, window_s=min(1.0, duration_s / 3))
        if generator == "perf_analyzer":
            levels = perf_analyzer_levels(
                self.server, self.model, concurrency, protocol=protocol, duration_s=duration_s
            )
            result = LoadResult(tuple(levels), {})
            notes = ("perf_analyzer reports no request counts: the client's and Triton's counts are not compared",)
        elif generator == "tritonclient":
            result = load_test(
                self.server,
                self.model,
                self.inputs,
                concurrency,
                protocol=protocol,
                settings=settings,
                progress=progress,
            )
            notes = ()
        else:
            raise WorkbenchError(f"Unknown load generator '{generator}': choose tritonclient or perf_analyzer.")
        return serving_run(self, result, protocol=protocol, generator=generator, notes=notes)


def _serving_config(config: dict) -> ServingConfig:
    dynamic = config.get("dynamic_batching")
    groups = config.get("instance_group") or [{}]
    return ServingConfig(
        max_batch_size=int(config.get("max_batch_size", 0)),
        dynamic_batching=dynamic is not None,
        preferred_batch_sizes=tuple(int(b) for b in (dynamic or {}).get("preferred_batch_size", ())),
        max_queue_delay_us=int((dynamic or {}).get("max_queue_delay_microseconds", 0)),
        instances=sum(int(g.get("count", 1)) for g in groups),
        kind=str(groups[0].get("kind", "KIND_CPU")),
    )


def serving_run(
    served: Served,
    result: LoadResult,
    *,
    protocol: str,
    generator: str,
    notes=(),
    p99_budget_ms: float | None = None,
    search: str = "",
) -> Run:
    """The Run of a load test: ``serving`` holds every level; ``latency`` is the client latency of the level with the
    highest throughput (its concurrency in ``notes``), so the history and comparisons read it like any run."""
    from ..env import environment

    source = served.run
    samples = max(1, int(next(iter(served.request_shapes.values()), (1,))[0] or 1)) if served.request_shapes else 1
    serving = Serving(
        server=f"{served.server.version()} ({served.server.install.source})",
        engine=served.engine,
        protocol=protocol,
        generator=f"tritonclient {protocol}.aio" if generator == "tritonclient" else generator,  # grpc or http
        config=served.config,
        levels=result.levels,
        served_run=source.id,
        samples_per_request=samples,
        p99_budget_ms=p99_budget_ms,
        search=search,
        notes=tuple(notes),
    )
    best = serving.best()
    times = result.latencies_ms.get(best.concurrency, ()) if best else ()
    latency = LatencyStats.from_times(times, batch=samples, wall_s=best.seconds) if len(times) else None
    text = [f"served run {source.id} ({source.name}) through {serving.server}, {serving.engine}"]
    if best is not None:
        text.append(f"latency: the client's at concurrency {best.concurrency}, the level with the highest throughput")
    return Run(
        backend=source.backend,
        layers=[],
        config=source.config,
        latency=latency,
        latency_ms=times,
        model=source.model,
        variant=source.variant,
        environment=environment(),
        inputs=source.inputs,
        outputs=source.outputs,
        notes=tuple(text) + tuple(notes),
        source="serve",
        name=f"{source.model.get('name') or 'model'} {source.precision} served ({served.config.label})",
        profiled_shapes=served.request_shapes,
        serving=serving,
    )


def serving_lines(run: Run) -> list[str]:
    """A serving run as text: what served it, then one line per concurrency level with client latency, throughput,
    the server's share of the time, the achieved batch and whether the client's count equals Triton's."""
    s = run.serving
    if s is None:
        return [f"run '{run.name}' is not a serving run: 'workbench serve RUN --load' makes one"]
    lines = [
        f"{s.server}; {s.engine}; {s.config.label}; {s.protocol} via {s.generator}",
        "client and server share this machine: the client's own work is in its latencies",
    ]
    for lv in s.levels:
        counts = (
            f"client {lv.requests} = Triton {lv.server_requests}"
            + (f" = metrics {lv.metrics_requests}" if lv.metrics_requests is not None else "")
            + " requests"
            if lv.counts_agree
            else f"COUNTS DIFFER: client {lv.requests}, Triton {lv.server_requests}, metrics {lv.metrics_requests}"
            if lv.requests
            else "no request counts"
        )
        lines.append(
            f"c={lv.concurrency:<3} {lv.throughput_rps:8.1f} req/s  p50 {lv.p50_ms:.3g}  p90 {lv.p90_ms:.3g}  "
            f"p95 {lv.p95_ms:.3g}  p99 {lv.p99_ms:.3g} ms  | server: queue {lv.queue_ms:.3g}, input "
            f"{lv.compute_input_ms:.3g}, infer {lv.compute_infer_ms:.3g}, output {lv.compute_output_ms:.3g} ms  | "
            f"batch {lv.batch:.2f} ({lv.server_inferences}/{lv.server_executions})  | {counts}"
            + ("" if lv.stable else f"  | p99 not stable in {lv.windows} windows")
        )
    lines += list(s.notes)
    return lines
