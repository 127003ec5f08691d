"""Load tests of a served model, as Triton users know them from ``perf_analyzer``: concurrency levels, each run until
its p99 is stable or its time is up, with the server's own view of the same requests.

The load generator is ``tritonclient``'s asyncio client (gRPC or HTTP): ``concurrency`` coroutines each keep one
request in flight. A level first warms up, then waits until no request is in flight and reads Triton's statistics
(the statistics extension) and Prometheus counters, measures in windows, stops issuing, waits for the last
responses and reads them again — so the server's counts cover exactly the measured requests, and
:attr:`ServingLevel.counts_agree` says whether they match the client's. The client runs on the same machine as the
server: on a small CPU its own work competes with the model's (say so next to the figures).

Where NVIDIA's ``perf_analyzer`` is on PATH (NGC's SDK container), :func:`perf_analyzer_levels` runs it instead and
imports its CSV (``-f``); it does not report Triton's request counts, so those levels carry its server-side times only.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

import numpy as np

from .._optional import optional_import
from ..errors import Cancelled, WorkbenchError
from ..progress import Progress, ensure
from ..results.serving import ServingLevel

PROTOCOLS = ("grpc", "http")
#: Triton's statistics of the parts of a request's time on the server (a ServingLevel's ``<part>_ms``).
_SERVER_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")
#: The latency percentiles of a level (a ServingLevel's ``p<q>_ms``).
_PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class LoadSettings:
    """How each level is measured: ``warmup_s`` of warm-up, windows of ``window_s``, until the level's p99 and
    throughput so far, read at the end of the last ``stable_windows`` windows, lie within ``tolerance`` of their
    mean, or ``duration_s`` is spent."""

    duration_s: float = 10.0
    window_s: float = 1.0
    warmup_s: float = 0.5
    stable_windows: int = 3
    tolerance: float = 0.10

    def __post_init__(self):
        if not self.duration_s > 0 or not self.window_s > 0 or self.warmup_s < 0:
            raise WorkbenchError(
                f"Load durations must be positive (duration {self.duration_s} s, window {self.window_s} s): "
                "pass --duration S with S > 0."
            )


@dataclass(frozen=True)
class LoadResult:
    """The levels of a load test and each level's client latencies (milliseconds, in completion order)."""

    levels: tuple[ServingLevel, ...]
    latencies_ms: dict  # concurrency -> tuple of latencies


def parse_concurrency(text) -> tuple[int, ...]:
    """``"1,2,4"`` or ``(1, 2, 4)`` -> (1, 2, 4); each level 1..1024."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        levels = tuple(int(str(x).strip()) for x in items if str(x).strip())
    except ValueError:
        raise WorkbenchError(f"Concurrency '{text}' is not a list of integers: pass e.g. 1,2,4,8,16.") from None
    if not levels or any(not 1 <= c <= 1024 for c in levels):
        raise WorkbenchError(f"Concurrency '{text}' is out of range: pass levels from 1 to 1024, e.g. 1,2,4,8,16.")
    return levels


def load_test(
    server,
    model: str,
    inputs: dict[str, np.ndarray],
    concurrency=(1, 2, 4, 8, 16),
    *,
    protocol: str = "grpc",
    settings: LoadSettings | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Drive ``model`` on a running :class:`~workbench.serving.server.TritonServer` with ``inputs`` (one request's
    tensors) at each concurrency; one :class:`ServingLevel` per level. Runs its own event loop in a thread, so it
    works inside a notebook's running loop too; ``progress`` shows each level and can cancel between requests."""
    if protocol not in PROTOCOLS:
        raise WorkbenchError(f"Unknown protocol '{protocol}': choose grpc or http.")
    settings = settings or LoadSettings()
    progress = ensure(progress)
    levels = parse_concurrency(concurrency)
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = asyncio.run(_all_levels(server, model, inputs, levels, protocol, settings, progress))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=target, name="workbench-load-test", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


async def _all_levels(server, model, inputs, levels, protocol, settings, progress) -> LoadResult:
    client = _client(server, protocol)
    try:
        request = request_inputs(protocol, inputs)
        found, latencies = [], {}
        for i, concurrency in enumerate(levels):
            progress.step(f"Load test: concurrency {concurrency}", i, len(levels))
            level, times = await _level(client, server, model, request, concurrency, settings, progress)
            found.append(level)
            latencies[concurrency] = tuple(float(t) for t in times)
        progress.step("Load test", len(levels), len(levels))
        return LoadResult(tuple(found), latencies)
    finally:
        await client.close()


def _client(server, protocol: str):
    if protocol == "grpc":
        aio = optional_import("tritonclient.grpc.aio", purpose="load tests over gRPC", extra="serve")
        return aio.InferenceServerClient(server.grpc_url)
    aio = optional_import("tritonclient.http.aio", purpose="load tests over HTTP", extra="serve")
    return aio.InferenceServerClient(server.http_url)


def request_inputs(protocol: str, inputs: dict[str, np.ndarray]) -> list:
    """The request's tensors, serialized once and shared by every request (reading only)."""
    module = optional_import(f"tritonclient.{protocol}", purpose="load tests", extra="serve")
    utils = optional_import("tritonclient.utils", purpose="load tests", extra="serve")
    tensors = []
    for name, array in inputs.items():
        array = np.ascontiguousarray(array)
        tensor = module.InferInput(name, list(array.shape), utils.np_to_triton_dtype(array.dtype))
        if protocol == "http":
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


async def infer_once(client, model: str, tensors) -> float:
    """One request; its round-trip time in milliseconds."""
    start = time.perf_counter()
    await client.infer(model, tensors)
    return (time.perf_counter() - start) * 1000.0


async def _level(client, server, model, tensors, concurrency, settings: LoadSettings, progress):
    """(the level, its client latencies in ms)."""
    errors: list[str] = []
    await _drive(client, model, tensors, concurrency, settings.warmup_s, errors, progress, None)
    if errors:
        raise WorkbenchError(f"The served model fails requests ({errors[0]}): check it with 'workbench serve RUN'.")
    before = await _settled_counts(client, server, model)
    latencies: list[tuple[float, float]] = []  # (completion time, latency ms)
    start = time.perf_counter()
    stop = asyncio.Event()
    windows_done = []

    async def watch():
        window = 1
        while not stop.is_set():
            await asyncio.sleep(settings.window_s)
            windows_done.append(window)
            elapsed = time.perf_counter() - start
            if elapsed >= settings.duration_s or _stable(latencies, start, settings, window):
                stop.set()
            window += 1

    watcher = asyncio.create_task(watch())
    await _drive(client, model, tensors, concurrency, None, errors, progress, stop, latencies)
    watcher.cancel()
    end = max((t for t, _ in latencies), default=time.perf_counter())
    after = await _settled_counts(client, server, model, before, len(latencies))
    if not latencies:
        raise WorkbenchError(
            f"No request completed at concurrency {concurrency} ({errors[0] if errors else 'none answered'}): "
            "raise --duration, or check the model with 'workbench serve RUN'."
        )
    times = np.asarray([ms for _, ms in latencies])
    seconds = max(end - start, 1e-9)
    percentiles = {f"p{q}_ms": float(v) for q, v in zip(_PERCENTILES, np.percentile(times, _PERCENTILES))}
    delta = {k: after[k] - before[k] for k in after if k != "metrics_requests"}
    requests = delta["success"] or 1
    metrics = (
        after["metrics_requests"] - before["metrics_requests"]
        if after["metrics_requests"] is not None and before["metrics_requests"] is not None
        else None
    )
    return ServingLevel(
        concurrency=concurrency,
        requests=len(times),
        errors=len(errors),
        seconds=seconds,
        throughput_rps=len(times) / seconds,
        **percentiles,
        mean_ms=float(times.mean()),
        stable=_stable(latencies, start, settings, len(windows_done)),
        windows=len(windows_done),
        server_requests=delta["success"],
        server_inferences=delta["inference_count"],
        server_executions=delta["execution_count"],
        metrics_requests=metrics,
        **{f"{part}_ms": delta[f"{part}_ns"] / requests / 1e6 for part in _SERVER_PARTS},
        server_ms=delta["success_ns"] / requests / 1e6,
    ), times


async def _drive(client, model, tensors, concurrency, seconds, errors, progress, stop, latencies=None) -> None:
    """``concurrency`` workers, each with one request in flight, until ``seconds`` pass or ``stop`` is set; returns
    when every request has completed (nothing left in flight)."""
    until = time.perf_counter() + seconds if seconds is not None else None

    async def worker():
        while not (stop is not None and stop.is_set()) and (until is None or time.perf_counter() < until):
            if progress.cancelled:
                raise Cancelled("Load test cancelled.")
            try:
                ms = await infer_once(client, model, tensors)
            except Exception as e:  # noqa: BLE001 - tritonclient raises InferenceServerException and transport errors
                errors.append(str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
                if len(errors) > 100:  # a model that fails every request: stop instead of spinning
                    raise WorkbenchError(f"The served model fails requests ({errors[0]}).") from None
                continue
            if latencies is not None:
                latencies.append((time.perf_counter(), ms))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _stable(latencies, start: float, settings: LoadSettings, windows: int) -> bool:
    """The level's figures have settled: the p99 and the throughput of everything measured so far, taken at the
    end of each of the last ``stable_windows`` windows, lie within ``tolerance`` of their mean. (The p99 of one
    short window rests on its few slowest requests and swings on a shared machine; the p99 reported is that of the
    whole level, so that is the one whose stability counts.)"""
    if windows < settings.stable_windows:
        return False
    p99s, rates = [], []
    for w in range(windows - settings.stable_windows + 1, windows + 1):
        end = start + w * settings.window_s
        so_far = [ms for t, ms in latencies if t < end]
        if len(so_far) < 100:  # a p99 needs a hundred requests to rest on more than the slowest one
            return False
        p99s.append(float(np.percentile(so_far, 99)))
        rates.append(len(so_far) / (w * settings.window_s))
    return all(
        max(abs(v - np.mean(vals)) for v in vals) <= settings.tolerance * np.mean(vals) for vals in (p99s, rates)
    )


async def _settled_counts(client, server, model: str, base: dict | None = None, completed: int = 0) -> dict:
    """Triton's counters once they have settled: Triton records a request's statistics and metrics after it sends the
    response, so right after the client's last response the last few may not be counted yet. Read until two reads
    50 ms apart agree and (given ``base``) both counters have moved by at least the ``completed`` requests the client
    saw answered — or 3 s have passed: a count that still differs then is reported as it is."""
    deadline = time.monotonic() + 3.0
    previous = await _server_counts(client, server, model)
    while True:
        await asyncio.sleep(0.05)
        counts = await _server_counts(client, server, model)
        caught_up = base is None or (
            counts["success"] - base["success"] >= completed
            and (
                counts["metrics_requests"] is None
                or counts["metrics_requests"] - (base["metrics_requests"] or 0) >= completed
            )
        )
        if (counts == previous and caught_up) or time.monotonic() > deadline:
            return counts
        previous = counts


async def _server_counts(client, server, model: str) -> dict:
    """Triton's cumulative counters for ``model`` (statistics extension; nanoseconds) and the Prometheus
    ``nv_inference_request_success`` counter (None when metrics do not answer)."""
    stats = (
        await client.get_inference_statistics(model_name=model, as_json=True)
        if _is_grpc(client)
        else (await client.get_inference_statistics(model_name=model))
    )
    entry = (stats.get("model_stats") or [{}])[0]
    inference = entry.get("inference_stats", {})

    def field(name: str, key: str) -> int:
        return int((inference.get(name) or {}).get(key, 0))

    loop = asyncio.get_running_loop()
    metrics_text = await loop.run_in_executor(None, server.metrics)
    return {
        "success": field("success", "count"),
        "success_ns": field("success", "ns"),
        **{f"{part}_ns": field(part, "ns") for part in _SERVER_PARTS},
        "inference_count": int(entry.get("inference_count", 0)),
        "execution_count": int(entry.get("execution_count", 0)),
        "metrics_requests": prometheus_counter(metrics_text, "nv_inference_request_success", model),
    }


def _is_grpc(client) -> bool:
    return type(client).__module__.startswith("tritonclient.grpc")


def prometheus_counter(text: str, metric: str, model: str) -> int | None:
    """The value of ``metric{model="<model>",...}`` in Prometheus text (summed over versions); None if absent."""
    if not text:
        return None
    pattern = re.compile(rf"^{re.escape(metric)}\{{([^}}]*)\}}\s+([0-9.eE+-]+)\s*$", re.MULTILINE)
    values = [float(v) for labels, v in pattern.findall(text) if f'model="{model}"' in labels]
    return int(sum(values)) if values else None


# ---- perf_analyzer (NGC) -----------------------------------------------------------------------------------------


def perf_analyzer_available() -> bool:
    return shutil.which("perf_analyzer") is not None


def perf_analyzer_levels(
    server, model: str, concurrency, *, protocol: str = "grpc", duration_s: float = 5.0
) -> list[ServingLevel]:
    """Run NVIDIA's ``perf_analyzer`` against ``server`` and import its CSV (see :func:`read_perf_analyzer_csv`)."""
    binary = shutil.which("perf_analyzer")
    if binary is None:
        raise WorkbenchError(
            "perf_analyzer is not on PATH: run in NGC's Triton SDK container, or use the built-in load test."
        )
    import tempfile
    from pathlib import Path

    found = []
    with tempfile.TemporaryDirectory(prefix="workbench-perf-") as tmp:
        for level in parse_concurrency(concurrency):  # one run per level: its range syntax takes no list
            csv_path = Path(tmp) / f"perf-{level}.csv"
            command = [
                binary,
                "-m", model,
                "-u", server.url(protocol),
                "-i", protocol,
                "--concurrency-range", f"{level}:{level}",
                "--measurement-interval", str(int(duration_s * 1000)),
                "-f", str(csv_path),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s * 20 + 60)
            if done.returncode != 0 or not csv_path.is_file():
                raise WorkbenchError(
                    f"perf_analyzer failed at concurrency {level}: {(done.stderr or done.stdout).strip()[-300:]}"
                )
            found += read_perf_analyzer_csv(csv_path.read_text())
    return found


#: A level's counts, which perf_analyzer does not report.
_COUNTS = ("requests", "errors", "windows", "server_requests", "server_inferences", "server_executions")
#: perf_analyzer's CSV columns that add up to a request's latency (when it writes no "Avg latency").
_PA_PARTS = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input", "Server Compute Infer",
             "Server Compute Output", "Client Recv")  # fmt: skip


def read_perf_analyzer_csv(text: str) -> list[ServingLevel]:
    """Levels from ``perf_analyzer -f`` CSV (times in microseconds; its columns ``Concurrency``,
    ``Inferences/Second``, ``Server Queue``, ``Server Compute Input/Infer/Output``, ``p50/p90/p95/p99 latency``).
    perf_analyzer reports no request counts: ``requests`` and Triton's counts are 0 (not compared)."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "Concurrency" not in rows[0]:
        raise WorkbenchError("Not a perf_analyzer CSV (no 'Concurrency' column): pass the file perf_analyzer -f wrote.")

    def us(row, key) -> float:
        return float(row.get(key) or 0) / 1000.0

    levels = []
    for row in rows:
        server = {f"{part}_ms": us(row, f"Server {part.replace('_', ' ').title()}") for part in _SERVER_PARTS}
        levels.append(
            ServingLevel(
                concurrency=int(float(row["Concurrency"])),
                **dict.fromkeys(_COUNTS, 0),  # perf_analyzer counts nothing: not compared
                seconds=0.0,
                throughput_rps=float(row["Inferences/Second"]),
                **{f"p{q}_ms": us(row, f"p{q} latency") for q in _PERCENTILES},
                mean_ms=us(row, "Avg latency") or sum(us(row, k) for k in _PA_PARTS),
                stable=True,  # perf_analyzer reports a level only once it is stable
                **server,
                server_ms=sum(server.values()),
            )
        )
    return levels
