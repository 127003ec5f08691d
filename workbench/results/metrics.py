"""The one description of a Run's metrics: what each is called, its unit, how it is written, which way is better,
and how it is read from a Run. The notebook repr, the panel, reports, the CLI and comparisons all read it.

A :class:`Metric` is ``(key, label, unit, formatter, better, getter)``:

``key``        stable identifier (``"mean_ms"``), also the column name where metrics become table columns
``label``      what a reader sees (``"Latency mean"``); :attr:`Metric.heading` adds the unit: ``"Latency mean (ms)"``
``unit``       ``"ms"``, ``"inferences/s"``, ``"%"``, ``"s"``…; empty for text and counts; for ``"bytes"`` and ``"×"``
               the formatter writes the unit into the value (``1.2 MiB``, ``2.00×``) and the heading leaves it out
``formatter``  value -> text (never called with ``None``: :meth:`Metric.text` writes ``–`` there)
``better``     ``"lower"``, ``"higher"`` or ``None`` (not a figure of merit: a name, a count, a setting)
``getter``     Run -> value or ``None`` where the run has none; ``None`` for metrics only a comparison can compute
               (``speedup``: relative to the baseline run)
``in_summary`` shown for one run (notebook repr, panel, report, CLI); ``in_comparison``: a row of a comparison

To add a metric, append it to :data:`METRICS` with :func:`register` (in this module, next to the ones alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import BackendName
from ..format import human_bytes
from . import stats as _stats
from .checks import flagged
from .run import NOT_TIMED

_UNIT_IN_VALUE = ("", "bytes", "×")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    formatter: Callable[[Any], str]
    better: str | None
    getter: Callable[[Any], Any] | None
    in_summary: bool = True
    in_comparison: bool = True

    def __post_init__(self):
        if self.better not in (None, "lower", "higher"):
            raise ValueError(f"metric {self.key}: better must be 'lower', 'higher' or None, not {self.better!r}")

    @property
    def heading(self) -> str:
        """The label with the unit where the values do not carry it: ``Latency mean (ms)``, ``Weights``."""
        return self.label if self.unit in _UNIT_IN_VALUE else f"{self.label} ({self.unit})"

    def value(self, run):
        """The metric of ``run``, or ``None`` (missing, NaN, or a comparison-only metric)."""
        if self.getter is None:
            return None
        value = self.getter(run)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        return value

    def text(self, value) -> str:
        return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else self.formatter(value)


def _fixed(digits: int) -> Callable[[Any], str]:
    return lambda v: f"{v:,.{digits}f}"


def _pct(x):
    return None if x is None else 100.0 * x


def _outputs(run, name: str) -> list[float]:
    if not run.accuracy:
        return []
    return [getattr(o, name) for o in run.accuracy.outputs if getattr(o, name) is not None]


def _latency(name: str):
    return lambda r: getattr(r.latency, name) if r.latency else None


def _target(report) -> str:
    compute = f" (compute {report.compute_capability})" if report.compute_capability else ""
    return f"{report.target}{compute}, {report.compiler}"


def _device(run):
    device = run.environment.get("gpu") or run.environment.get("cpu")
    provider = run.environment.get("provider")  # ONNX Runtime: the execution provider that ran
    return f"{device} ({provider})" if device and provider else device


def _median_interval(run):
    t = run.timing
    return f"{t.ci_low_ms:.4f}–{t.ci_high_ms:.4f}" if t else None


def _stability(run):
    t = run.timing
    if t is None:
        return None
    return t.verdict + (f" — {'; '.join(t.causes)}" if t.causes else "")


def _profile_overhead(run):
    """The per-layer profiled pass against the timed median: the profiler's overhead, stated."""
    t = run.timing
    if t is None or not t.profiled_ms or not t.median_ms:
        return None
    layers = float(run.layers["time_ms"].sum()) if len(run.layers) else 0.0
    return (
        f"a profiled inference took {t.profiled_ms:.4g} ms ({t.profiled_ms / t.median_ms:.2f}× the timed "
        f"median); its layers sum to {layers:.4g} ms of {run.time_source_label} "
        f"({100 * layers / t.median_ms:.0f}% of the median)"
    )


def _time_source(run):
    """Where the layer times come from, and why not the GPU's own record where CUPTI could not be used."""
    if not len(run.layers) or run.layers["time_ms"].isna().all():
        return None
    why = next((n.split(" — ", 1)[1] for n in run.notes if n.startswith("GPU kernel times not recorded — ")), "")
    return run.time_source_label + (f" (CUPTI not used: {why.split(': layer times')[0]})" if why else "")


def _gpu_idle(run):
    """The launch-bound share: how much of the timed median the GPU sat idle, with the figures it comes from."""
    g = run.gpu_time
    median = run.timing.median_ms if run.timing else (run.latency.p50_ms if run.latency else None)
    share = g.idle_share(median) if g else None
    if share is None:
        return None
    text = (
        f"{100 * share:.0f}% (GPU busy {g.busy_ms:.4g} ms of the {median:.4g} ms median; "
        f"{g.kernels:.0f} kernels per inference)"
    )
    t, host = run.timing, median - g.busy_ms
    interval = t and _stats.Interval(t.median_ms, t.ci_low_ms, t.ci_high_ms, t.confidence)
    if host > 0 and interval and _stats.gpu_rerun_interval(interval, g.busy_interval()) == interval:
        # the interval holds the host's allowance (runs made before it was allowed for do not): say why it is wide
        text += (
            f"; the rerun interval lets the host's {host:.4g} ms move {_stats.HOST_RERUN_FACTOR:g}× "
            "either way, as it does between runs minutes apart"
        )
    return text


def _conditions(run):
    """``before → after`` of what was read: CPU governor, clock and load; GPU clocks, power, temperature."""
    if run.conditions is None:
        return None
    b, a = run.conditions.before, run.conditions.after

    def pair(key, fmt, unit):
        x, y = getattr(b, key), getattr(a, key)
        if x is None and y is None:
            return None

        def show(v):
            return "?" if v is None else fmt.format(v)

        return (f"{show(x)} → {show(y)} {unit}" if x != y else f"{show(x)} {unit}").strip()

    parts = [
        b.cpu_model and f"CPU {b.cpu_model}",
        b.governor and f"governor {b.governor}",
        (p := pair("cpu_mhz", "{:.0f}", "MHz")) and f"CPU clock {p}",
        (p := pair("load_1m", "{:.2f}", "")) and f"load average {p}",
        (p := pair("gpu_sm_mhz", "{}", "MHz")) and f"GPU SM clock {p}",
        (p := pair("gpu_memory_mhz", "{}", "MHz")) and f"GPU memory clock {p}",
        (p := pair("gpu_power_w", "{:.0f}", "W")) and f"GPU power {p}",
        (p := pair("gpu_temperature_c", "{}", "°C")) and f"GPU temperature {p}",
        run.conditions.throttled and f"throttled: {', '.join(run.conditions.throttled)}",
    ]
    return "; ".join(p for p in parts if p) or None


METRICS: list[Metric] = [
    Metric("run", "Run", "", str, None, lambda r: r.id, in_comparison=False),
    Metric("model", "Model", "", str, None, lambda r: r.model.get("name") or None, in_comparison=False),
    Metric("backend", "Backend", "", str, None, lambda r: r.backend),
    Metric("precision", "Precision", "", str, None, lambda r: r.precision),
    Metric("shapes", "Input shapes", "", str, None, lambda r: r.shapes_text or None),
    Metric(
        "verdict_detail",
        "Accuracy verdict",
        "",
        str,
        None,
        lambda r: r.accuracy.verdict_text() if r.accuracy else None,
        in_comparison=False,
    ),
    Metric(
        "verdict",
        "Accuracy verdict",
        "",
        str,
        None,
        lambda r: (r.accuracy.verdict or None) if r.accuracy else None,
        in_summary=False,
    ),
    Metric("device", "Device", "", str, None, _device),
    Metric("created", "Created", "", str, None, lambda r: r.created, in_comparison=False),
    Metric(
        "target", "Built for", "", str, None, lambda r: _target(r.compiled) if getattr(r, "compiled", None) else None
    ),
    Metric("not_timed", "Latency", "", str, None, lambda r: NOT_TIMED if not getattr(r, "timed", True) else None),
    Metric("mean_ms", "Latency mean", "ms", _fixed(4), "lower", _latency("mean_ms")),
    Metric("p50_ms", "Latency p50", "ms", _fixed(4), "lower", _latency("p50_ms")),
    Metric("p90_ms", "Latency p90", "ms", _fixed(4), "lower", _latency("p90_ms")),
    Metric("p99_ms", "Latency p99", "ms", _fixed(4), "lower", _latency("p99_ms")),
    Metric("min_ms", "Latency min", "ms", _fixed(4), "lower", _latency("min_ms"), in_comparison=False),
    Metric("max_ms", "Latency max", "ms", _fixed(4), "lower", _latency("max_ms"), in_comparison=False),
    Metric("throughput_qps", "Throughput", "inferences/s", _fixed(1), "higher", _latency("throughput_qps")),
    Metric(
        "samples_per_s",
        "Throughput",
        "samples/s",
        _fixed(1),
        "higher",
        lambda r: r.latency.throughput_qps * r.latency.batch if r.latency else None,
    ),
    Metric("batch", "Batch", "", str, None, _latency("batch")),
    Metric("timed_inferences", "Timed inferences", "", str, None, _latency("samples"), in_comparison=False),
    Metric("median_ms", "Latency median", "ms", _fixed(4), "lower", lambda r: r.timing.median_ms if r.timing else None),
    # where an identical rerun's median should fall (workbench.results.stats.rerun_interval)
    Metric("median_ci", "Latency median, 95% rerun interval", "ms", str, None, _median_interval),
    Metric("trials", "Trials", "", str, None, lambda r: r.timing.trials if r.timing else None),
    Metric("cv", "Coefficient of variation", "%", _fixed(1), "lower", lambda r: _pct(r.timing and r.timing.cv)),
    Metric("stability", "Timing stability", "", str, None, _stability),
    Metric("profile_overhead", "Per-layer profile", "", str, None, _profile_overhead, in_comparison=False),
    Metric("time_source", "Layer times", "", str, None, _time_source),
    Metric(
        "gpu_busy_ms",
        "GPU busy per inference (CUPTI)",
        "ms",
        _fixed(4),
        "lower",
        lambda r: r.gpu_time.busy_ms if r.gpu_time else None,
    ),
    Metric(
        "kernels_per_inference",
        "Kernels per inference (CUPTI)",
        "",
        lambda v: f"{v:.0f}",
        "lower",
        lambda r: r.gpu_time.kernels if r.gpu_time else None,
    ),
    Metric("gpu_idle", "GPU idle (launch-bound share)", "", str, None, _gpu_idle),
    Metric("conditions", "Conditions", "", str, None, _conditions, in_comparison=False),
    Metric(
        "condition_warnings",
        "Warnings",
        "",
        str,
        None,
        lambda r: "; ".join(r.conditions.warnings) if r.conditions and r.conditions.warnings else None,
    ),
    # "1.12× faster (1.09–1.15)" or "no significant difference" (workbench.analysis.compare.latency_differences)
    Metric("speedup", "Speed-up vs A (median, 95% CI)", "", str, None, None, in_summary=False),
    Metric("weights_bytes", "Weights", "bytes", human_bytes, "lower", lambda r: r.memory.weights_bytes),
    Metric(
        "activations_bytes",
        "Activations (summed layer outputs)",
        "bytes",
        human_bytes,
        "lower",
        lambda r: r.memory.activations_bytes,
    ),
    Metric(
        "engine_device_bytes",
        "Engine device memory",
        "bytes",
        human_bytes,
        "lower",
        lambda r: r.memory.engine_device_bytes,
    ),
    Metric("plan_bytes", "Plan / model size", "bytes", human_bytes, "lower", lambda r: r.memory.plan_bytes),
    Metric("gpu_used_bytes", "GPU memory used", "bytes", human_bytes, "lower", lambda r: r.memory.gpu_used_bytes),
    Metric("host_peak_bytes", "Host peak memory", "bytes", human_bytes, "lower", lambda r: r.memory.host_peak_bytes),
    Metric(
        "label_accuracy",
        "Label accuracy",
        "%",
        _fixed(2),
        "higher",
        lambda r: _pct(r.accuracy and r.accuracy.label_accuracy),
    ),
    Metric(
        "reference_label_accuracy",
        "FP32 label accuracy, same samples",
        "%",
        _fixed(2),
        "higher",
        lambda r: _pct(r.accuracy and r.accuracy.reference_label_accuracy),
    ),
    Metric(
        "top1_agreement",
        "Top-1 agreement with FP32",
        "%",
        _fixed(2),
        "higher",
        lambda r: _pct(min(_outputs(r, "top1_agreement"), default=None)),
    ),
    Metric(
        "max_abs_error",
        "Max abs error vs FP32",
        "",
        lambda v: f"{v:.4g}",
        "lower",
        lambda r: max(_outputs(r, "max_abs_error"), default=None),
    ),
    Metric(
        "rel_l2_error",
        "Rel L2 error vs FP32",
        "",
        lambda v: f"{v:.4g}",
        "lower",
        lambda r: max(_outputs(r, "rel_l2_error"), default=None),
    ),
    Metric(
        "mean_rel_error",
        "Mean rel error vs FP32",
        "",
        lambda v: f"{v:.4g}",
        "lower",
        lambda r: max(_outputs(r, "mean_rel_error"), default=None),
    ),
    Metric(
        "min_cosine",
        "Min cosine similarity vs FP32",
        "",
        lambda v: f"{v:.6f}",
        "higher",
        lambda r: min(_outputs(r, "cosine"), default=None),
    ),
    Metric("layers", "Layers", "", str, None, lambda r: len(r.layers)),
    Metric("workspace_bytes", "Workspace", "bytes", human_bytes, None, lambda r: r.config.workspace_bytes),
    Metric(
        "optimization_level",
        "Builder optimization level",
        "",
        str,
        None,
        lambda r: r.config.optimization_level if r.backend != BackendName.ONNXRUNTIME else None,
    ),
    Metric("build_seconds", "Build time", "s", lambda v: f"{v:.4g}", "lower", lambda r: r.build_seconds),
    Metric(
        "fused_layers",
        "Engine layers fusing several ONNX nodes",
        "",
        str,
        None,
        lambda r: r.compiled.fused_layers if getattr(r, "compiled", None) else None,
    ),
]


def register(metric: Metric, after: str | None = None) -> Metric:
    """Add ``metric`` (after the metric keyed ``after``, else at the end); its key must be new."""
    if any(m.key == metric.key for m in METRICS):
        raise ValueError(f"metric {metric.key!r} is already described")
    index = next((i + 1 for i, m in enumerate(METRICS) if m.key == after), len(METRICS))
    METRICS.insert(index, metric)
    return metric


def _kept_nodes(run):
    """Nodes a sensitivity plan keeps in higher precision (the plan run of ``workbench sensitivity``)."""
    plan = (run.sensitivity or {}).get("plan")
    return len(plan["kept_nodes"]) if plan else None


register(
    Metric("kept_nodes", "Nodes kept in higher precision (sensitivity plan)", "", str, None, _kept_nodes),
    after="min_cosine",
)


def metric(key: str) -> Metric:
    """The metric called ``key``."""
    for m in METRICS:
        if m.key == key:
            return m
    raise KeyError(f"no metric {key!r}: choose one of {', '.join(m.key for m in METRICS)}")


def summary_rows(run) -> list[tuple[str, str]]:
    """(heading, text) for every one-run metric ``run`` has: the notebook repr, the panel, reports and the CLI.

    A figure that fails a self-check (``run.findings``, :mod:`workbench.results.checks`) carries the warning next to
    it: it is never shown as if it were right."""
    rows = []
    for m in METRICS:
        value = m.value(run) if m.in_summary else None
        if value is not None:
            finding = flagged(run.findings, m.key)
            rows.append((m.heading, m.text(value) + (f"  {finding.short()}" if finding else "")))
    return rows
