"""Self-checks of a Run: the invariants a physicist checks before believing a figure.

A :class:`Check` is a pure function of what it checks (a Run here; a Roofline in :mod:`workbench.analysis.checks`)
with a ``key``, the ``figure`` it guards and the ``relation`` that must hold, returning the :class:`Finding` s of what breaks the relation, or ``None`` when the run lacks the figures (not
applicable). A Finding names its ``severity`` (``"error"``: impossible, such as p50 above p99 or a negative time;
``"warning"``: a figure that contradicts another and must not be read as right), the ``figure`` and its ``value``,
the relation it was ``expected`` to satisfy, the likely ``cause`` and what to do (``fix``); ``metrics`` are the
:mod:`~workbench.results.metrics` keys that show the figure, so every summary puts the warning next to it.

:data:`RUN_CHECKS` need only the Run; they run in ``Run.__post_init__``, so every Run made, loaded from a run
directory or the store, or imported from trtexec files carries their findings in ``Run.findings`` (recomputed on
load, never read from ``run.json``). Checks that need a room above ``results/`` (the roofline's lower bound and
per-layer roof percentages: :mod:`workbench.analysis.checks`) are run by the pipeline and the loaders above it and
added with :meth:`Run.replace` (``findings=``); the Run keeps those while re-evaluating its own.

=====================  ===========================================================================================
``latency_order``      min ≤ p50 ≤ p90 ≤ p99 ≤ max, min ≤ mean ≤ max; the median's interval holds the median
``finite``             no negative figure (latency, throughput, timing, memory, layer time, bytes, accuracy) and no
                       NaN mean, median or throughput (other NaNs are figures an import did not report, shown
                       as "–"); a timed run with some layers untimed is stated
``batch``              samples/s = batch × inferences/s with the batch the inputs carried: the recorded batch is
                       the leading dimension of a profiled input
``throughput``         inferences/s ≤ 1000 / fastest inference (ms) for runs timed one inference at a time
``layer_sum``          profiled layer times sum to no more than the profiled inference they ran in (within 110%;
                       the timed median where no profiled pass was timed: CUPTI, trtexec files); else stated
``gpu_time``           with CUPTI's record: the GPU busy ≤ the timed median (within 110%); where CUPTI's records
                       were given to layers, their GPU times ≤ the GPU's summed work and ≥ 95% of it given
``memory_sums``        activations = the layer table's summed outputs; weights = the layers' weights + the weights
                       no layer reads where each weight was traced to its layer (ONNX Runtime runs), else
                       ≥ the heaviest layer's weights
``percentages``        no percentage above 100 (layer shares, accuracies, agreements) and cosines in [-1, 1]
=====================  ===========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

SEVERITIES = ("error", "warning")
#: Profiled layer times may exceed the timed median by this factor before the sum is flagged (profiler overhead).
LAYER_SUM_TOLERANCE = 1.10
#: Figures that must be numbers whenever the run has a latency (others may be NaN: not reported by trtexec).
_CENTRAL = frozenset({"mean_ms", "p50_ms", "throughput_qps", "median_ms", "batch", "max_abs_error"})
_REL = 1e-6  # relative slack of orderings (figures rounded by whoever wrote them)


@dataclass(frozen=True)
class Finding:
    """One figure that fails its check."""

    check: str  # the Check's key
    severity: str  # "error" | "warning"
    figure: str  # what the reader sees it as: "Throughput (samples/s)"
    value: str  # the figure as shown: "312.4"
    expected: str  # the relation it breaks, with numbers: "= batch × inferences/s = 4 × 312.4 = 1250"
    cause: str  # the likely cause
    fix: str  # what to do
    metrics: tuple[str, ...] = ()  # keys of the metrics that show this figure

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"finding {self.check}: severity must be one of {SEVERITIES}, not {self.severity!r}")

    def text(self) -> str:
        """``warning: Throughput (samples/s) 312.4, expected = 4 × 312.4 = 1250: <cause>; <fix>``."""
        return f"{self.severity}: {self.figure} {self.value}, expected {self.expected}: {self.cause}; {self.fix}"

    def short(self) -> str:
        """What goes next to the figure in a summary row."""
        return f"⚠ check failed: expected {self.expected}"


@dataclass(frozen=True)
class Check:
    """An invariant: ``evaluate(run)`` gives the findings that break it, ``()`` when it holds, ``None`` when the
    run lacks the figures."""

    key: str
    figure: str
    relation: str
    evaluate: Callable[[object], tuple[Finding, ...] | None]


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _num(x: float) -> str:
    """A figure as the summaries write it (4 significant digits)."""
    return f"{x:.4g}"


def _latency_order(run):
    lat = run.latency
    if lat is None:
        return None
    found = []
    chain = [("min", lat.min_ms), ("p50", lat.p50_ms), ("p90", lat.p90_ms), ("p99", lat.p99_ms), ("max", lat.max_ms)]
    for (a, x), (b, y) in zip(chain, chain[1:]):
        if not (_missing(x) or _missing(y)) and x > y * (1 + _REL):
            found.append(
                Finding(
                    "latency_order",
                    "error",
                    f"Latency {a} (ms)",
                    _num(x),
                    f"≤ latency {b} {_num(y)} ms",
                    "percentiles out of order: the statistics were written by hand or from different samples",
                    "profile again, or import the files of one trtexec run",
                    (f"{a}_ms", f"{b}_ms"),  # the metric keys of both figures
                )
            )
    if not (_missing(lat.mean_ms) or _missing(lat.min_ms) or _missing(lat.max_ms)):
        if not lat.min_ms * (1 - _REL) <= lat.mean_ms <= lat.max_ms * (1 + _REL):
            found.append(
                Finding(
                    "latency_order",
                    "error",
                    "Latency mean (ms)",
                    _num(lat.mean_ms),
                    f"between min {_num(lat.min_ms)} and max {_num(lat.max_ms)} ms",
                    "a mean outside the range of its own samples is impossible: the statistics come from different runs",
                    "profile again",
                    ("mean_ms",),
                )
            )
    t = run.timing
    if t is not None and not t.ci_low_ms * (1 - _REL) <= t.median_ms <= t.ci_high_ms * (1 + _REL):
        found.append(
            Finding(
                "latency_order",
                "error",
                "Latency median (ms)",
                _num(t.median_ms),
                f"inside its interval {_num(t.ci_low_ms)}–{_num(t.ci_high_ms)} ms",
                "the interval was not computed from these samples",
                "profile again",
                ("median_ms", "median_ci"),
            )
        )
    return tuple(found)


def _figures(run):
    """(figure, value, metric key) of every number that must be finite and not negative."""
    lat, mem, t = run.latency, run.memory, run.timing
    if lat is not None:
        for name in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms", "throughput_qps"):
            yield f"latency {name}", getattr(lat, name), name
        yield "batch", float(lat.batch), "batch"
    if t is not None:
        for name in ("median_ms", "ci_low_ms", "ci_high_ms", "cv"):
            yield f"timing {name}", getattr(t, name), name
    for name in ("weights_bytes", "activations_bytes", "engine_device_bytes", "plan_bytes", "gpu_used_bytes"):
        value = getattr(mem, name)
        if value is not None:
            yield f"memory {name}", float(value), name
    samples = [v for v in run.latency_ms if math.isnan(v) or v < 0]
    if samples:
        yield f"{len(samples)} timed inferences of {len(run.latency_ms)} (latency.csv), e.g.", samples[0], "mean_ms"
    if run.accuracy is not None:
        for o in run.accuracy.outputs:
            for name in ("max_abs_error", "max_rel_error", "mean_rel_error", "cosine"):
                yield (
                    f"output '{o.name}' {name}",
                    getattr(o, name),
                    "min_cosine" if name == "cosine" else "max_abs_error",
                )


def _finite(run):
    found = []
    for figure, value, key in _figures(run):
        missing = math.isnan(value) and key not in _CENTRAL  # NaN elsewhere means "not reported" and shows as "–"
        if not missing and (math.isnan(value) or value < 0) and not (figure.endswith("cosine") and value < 0):
            found.append(
                Finding(
                    "finite",
                    "error",
                    figure,
                    str(value),
                    "a finite number ≥ 0",
                    "a measurement that produced no number, or a damaged file",
                    "profile or import again",
                    (key,),
                )
            )
    layers = run.layers
    for column in ("time_ms", "median_ms", "activation_bytes", "weight_bytes"):
        negative = layers[layers[column] < 0] if len(layers) else layers
        if len(negative):
            found.append(
                Finding(
                    "finite",
                    "error",
                    f"layer {column}",
                    f"{negative[column].iloc[0]} ({negative['name'].iloc[0]}, {len(negative)} layers)",
                    "≥ 0",
                    "a negative time or size in the layer table: a damaged layers.csv or profile",
                    "profile or import again",
                )
            )
    if len(layers) and run.timed and layers["time_ms"].notna().any() and layers["time_ms"].isna().any():
        missing = layers[layers["time_ms"].isna()]
        found.append(
            Finding(
                "finite",
                "warning",
                "layer time_ms",
                f"NaN for {len(missing)} of {len(layers)} layers ({', '.join(missing['name'].astype(str)[:3])})",
                "a time for every profiled layer",
                "these layers were not in the profile: the sum of layer times leaves them out",
                "profile again with per-layer profiling",
            )
        )
    return tuple(found)


def leading_dims(run) -> set[int]:
    """The profiled first dimension of every input whose first dimension is dynamic (``-1`` or a name), or of
    every input when the run does not declare its inputs: the candidates for the batch."""
    declared = {t.name: t.shape for t in run.inputs}
    dims = set()
    for name, shape in run.shapes.items():
        first = declared.get(name, (None,))[0] if declared.get(name) else None
        dynamic = name not in declared or not isinstance(first, int) or first < 0
        if dynamic and len(shape) and isinstance(shape[0], int) and shape[0] > 0:
            dims.add(int(shape[0]))
    return dims


def _batch(run):
    lat = run.latency
    if lat is not None and lat.batch < 1:
        return (
            Finding(
                "batch",
                "error",
                "Batch",
                str(lat.batch),
                "≥ 1 sample per inference",
                "samples/s counts no samples: a damaged run.json",
                "profile or import again",
                ("samples_per_s", "batch"),
            ),
        )
    dims = leading_dims(run)
    if lat is None or not dims:
        return None
    if lat.batch in dims:
        return ()
    batch = max(dims)
    return (
        Finding(
            "batch",
            "warning",
            "Throughput (samples/s)",
            f"{lat.throughput_qps * lat.batch:.1f} (batch {lat.batch})",
            f"= batch × inferences/s = {batch} × {lat.throughput_qps:.1f} = {batch * lat.throughput_qps:.1f} "
            f"(the profiled shapes {run.shapes_text} carry batch {batch})",
            f"the run recorded batch {lat.batch}, which no profiled input has as its first dimension",
            "read inferences/s; profile again with a workbench that records the batch of the profiled shapes",
            ("samples_per_s", "batch"),
        ),
    )


def _throughput(run):
    lat = run.latency
    if lat is None or run.source == "import" or _missing(lat.min_ms) or lat.min_ms <= 0 or _missing(lat.throughput_qps):
        return None  # trtexec overlaps transfers with compute: its qps may exceed 1000 / latency
    # a served run keeps that many requests in flight: each finishes no faster than the fastest one
    in_flight = run.serving.best().concurrency if run.serving is not None and run.serving.levels else 1
    ceiling = in_flight * 1000.0 / lat.min_ms
    if lat.throughput_qps <= ceiling * 1.05:
        return ()
    return (
        Finding(
            "throughput",
            "warning",
            "Throughput (inferences/s)",
            f"{lat.throughput_qps:.1f}",
            f"≤ 1000 / fastest inference = 1000 / {_num(lat.min_ms)} ms = {ceiling:.1f}",
            "inferences timed one at a time cannot finish faster than the fastest one: the throughput and the "
            "latencies come from different loops or batches",
            "profile again; compare latencies rather than this throughput",
            ("throughput_qps", "samples_per_s"),
        ),
    )


def timed_median_ms(run) -> float | None:
    """The median of whole timed inferences: the trials' median, else the latency p50."""
    if run.timing is not None and not _missing(run.timing.median_ms):
        return run.timing.median_ms
    if run.latency is not None and not _missing(run.latency.p50_ms):
        return run.latency.p50_ms
    return None


def _layer_sum(run):
    """Σ layer times against the inference they were profiled in.

    The layers of one profiled inference cannot take longer than that inference, so the sum is held against the
    profiled pass's own time per inference where the backend measured it (ONNX Runtime's profiled pass, TensorRT's
    IProfiler pass), else against the timed median (CUPTI's GPU kernel time, which carries no profiler overhead;
    imported trtexec files). That a profiled pass runs slower than the timed inferences — the profiler's overhead,
    which dominates a small model on a CPU — is stated in the summary's "Per-layer profile" row, not failed here.
    """
    median = timed_median_ms(run)
    times = run.layers["time_ms"] if len(run.layers) else None
    if median is None or median <= 0 or times is None or times.isna().all():
        return None
    total = float(times.sum())
    profiled = run.timing.profiled_ms if run.timing is not None else None
    within_profiled = bool(profiled) and run.time_source != "cupti"
    if total <= (profiled if within_profiled else median) * LAYER_SUM_TOLERANCE:
        return ()
    share = f"{100 * total / median:.0f}% of the timed median"
    if within_profiled:
        value = f"{_num(total)} ({100 * total / profiled:.0f}% of the profiled inference, {_num(profiled)} ms)"
        expected = f"≤ {100 * LAYER_SUM_TOLERANCE:.0f}% of the profiled inference"
        cause = (
            f"profiled layer times sum to {share} and {100 * total / profiled:.0f}% of the {_num(profiled)} ms "
            "profiled inference they were measured in: nodes ran concurrently or the profile's times are not this run's"
        )
    else:
        value = f"{_num(total)} ({share} {_num(median)} ms)"
        expected = f"≤ {100 * LAYER_SUM_TOLERANCE:.0f}% of the timed median"
        if run.time_source == "cupti":  # GPU kernel times carry no host profiler overhead
            why = (
                "the GPU's kernels took longer in the profiled pass than whole timed inferences (other clocks or load)"
            )
        else:
            why = "the layer times come from a profiled pass (profiler overhead, another batch or engine) not the timed one"
        cause = f"profiled layer times sum to {share}: {why}"
    return (
        Finding(
            "layer_sum",
            "warning",
            "Summed layer times (ms)",
            value,
            expected,
            cause,
            "read layer times as shares (time_pct) of the profiled pass, not as milliseconds of the timed latency",
            ("profile_overhead",),
        ),
    )


#: Share of CUPTI's GPU time that must be given to a layer before the layer table is said to miss some.
GPU_MATCHED_SHARE = 0.95


def _gpu_time(run):
    """Layer GPU times vs the GPU's busy time vs the end-to-end median (CUPTI runs only)."""
    g = run.gpu_time
    if g is None or not len(run.layers):
        return None
    found = []
    median = timed_median_ms(run)
    if median and g.busy_ms > median * LAYER_SUM_TOLERANCE:
        found.append(
            Finding(
                "gpu_time",
                "warning",
                "GPU busy per inference (ms)",
                f"{_num(g.busy_ms)} ({100 * g.busy_ms / median:.0f}% of the timed median {_num(median)} ms)",
                f"≤ {100 * LAYER_SUM_TOLERANCE:.0f}% of the timed median",
                "the GPU worked longer per profiled inference than a whole timed inference took: the profiled pass "
                "ran under other clocks or load than the timed trials",
                "profile again on an idle GPU; compare the conditions before and after",
                ("gpu_busy_ms", "median_ms"),
            )
        )
    layers_ms = float(run.layers["time_ms"].fillna(0).sum())
    work = g.kernel_ms + g.copy_ms
    if run.time_source == "cupti" and layers_ms > work * (1 + 1e-3) + 1e-6:
        found.append(
            Finding(
                "gpu_time",
                "error",
                "Summed layer GPU times (ms)",
                _num(layers_ms),
                f"≤ the GPU's summed kernel, memcpy and memset time {_num(work)} ms",
                "layers were given more GPU time than the GPU recorded: a layer counted twice",
                "report this run; profile again",
                ("gpu_busy_ms",),
            )
        )
    if g.matched_share is not None and g.matched_share < GPU_MATCHED_SHARE:
        found.append(
            Finding(
                "gpu_time",
                "warning",
                "GPU time given to layers (%)",
                f"{100 * g.matched_share:.0f}",
                f"≥ {100 * GPU_MATCHED_SHARE:.0f}% of the GPU time CUPTI recorded",
                f"{_num(g.unattributed_ms)} ms per inference was launched outside every node's profiled window "
                "(the runtime's own copies, or clocks that did not align)",
                "read the layer table as missing that time; it is in the GPU busy time",
                ("gpu_busy_ms",),
            )
        )
    return tuple(found)


def _memory_sums(run):
    layers, mem = run.layers, run.memory
    if not len(layers):
        return None
    found = []
    # layers may share weights (and count constants), so the total is held against the heaviest layer, not the sum
    acts, heaviest = int(layers["activation_bytes"].sum()), int(layers["weight_bytes"].max())
    if mem.activations_bytes is not None and acts and mem.activations_bytes != acts:
        found.append(
            Finding(
                "memory_sums",
                "warning",
                "Activations (summed layer outputs)",
                f"{mem.activations_bytes:,} bytes",
                f"= the layer table's summed activation_bytes, {acts:,} bytes",
                "the total and the layer table come from different engines or files",
                "profile or import the layer table and the totals of one engine",
                ("activations_bytes",),
            )
        )
    unread, weights = (run.extra or {}).get("weights_in_no_layer"), mem.weights_bytes
    if isinstance(unread, dict):  # each weight traced to the layer that reads it: the sum must be exact
        summed, unread_bytes = int(layers["weight_bytes"].sum()), int(unread.get("bytes", 0))
        wrong = summed + unread_bytes != weights
        expected = f"= the layers' weights, {summed:,} bytes, + the weights no layer reads, {unread_bytes:,} bytes"
        cause = "the per-layer weights were traced in another model than the one whose weights are totalled"
        fix = "profile the run again: its layer table and its totals come from different models"
    else:
        wrong = bool(heaviest) and weights is not None and weights < heaviest
        expected = f"≥ the weights of its heaviest layer, {heaviest:,} bytes ({layers.loc[layers['weight_bytes'].idxmax(), 'name']})"
        cause = "a total smaller than one of its parts: the total was read from the wrong line or unit"
        fix = "read the layer table's weights; import the log's totals again"
    if weights is not None and wrong:
        found.append(
            Finding("memory_sums", "warning", "Weights", f"{weights:,} bytes", expected, cause, fix, ("weights_bytes",))
        )
    return tuple(found)


def _percentages(run):
    found = []
    layers = run.layers
    if len(layers) and layers["time_pct"].notna().any():
        over = layers[layers["time_pct"] > 100 * (1 + _REL)]
        if len(over):
            found.append(
                Finding(
                    "percentages",
                    "error",
                    "layer time_pct",
                    f"{over['time_pct'].iloc[0]:.1f}% ({over['name'].iloc[0]})",
                    "≤ 100% (a share of the summed layer time)",
                    "a share above the whole: the layer table was written by hand or damaged",
                    "profile or import again",
                )
            )
    acc = run.accuracy
    if acc is not None:
        shares = [("label accuracy", acc.label_accuracy, "label_accuracy")]
        shares += [(f"output '{o.name}' top-1 agreement", o.top1_agreement, "top1_agreement") for o in acc.outputs]
        shares += [(f"output '{o.name}' mask IoU", o.mask_iou, "mask_iou") for o in acc.outputs]
        for figure, value, key in shares:
            if value is not None and not _missing(value) and not 0 <= value <= 1 + _REL:
                found.append(
                    Finding(
                        "percentages",
                        "error",
                        figure,
                        f"{100 * value:.1f}%",
                        "between 0% and 100%",
                        "a share outside [0, 1]: the accuracy was computed on other data or damaged",
                        "measure accuracy again",
                        (key,),
                    )
                )
        for o in acc.outputs:
            if not _missing(o.cosine) and not -1 - 1e-4 <= o.cosine <= 1 + 1e-4:
                found.append(
                    Finding(
                        "percentages",
                        "error",
                        f"output '{o.name}' cosine",
                        _num(o.cosine),
                        "between -1 and 1",
                        "a cosine outside [-1, 1] is impossible",
                        "measure accuracy again",
                        ("min_cosine",),
                    )
                )
    if acc is None and not (len(layers) and layers["time_pct"].notna().any()):
        return None
    return tuple(found)


RUN_CHECKS: tuple[Check, ...] = (
    Check("latency_order", "latency percentiles", "min ≤ p50 ≤ p90 ≤ p99 ≤ max", _latency_order),
    Check("finite", "every figure", "finite and ≥ 0", _finite),
    Check("batch", "samples/s", "samples/s = batch × inferences/s, batch = a profiled leading dimension", _batch),
    Check("throughput", "inferences/s", "inferences/s ≤ 1000 / fastest inference (ms)", _throughput),
    Check(
        "layer_sum",
        "summed layer times",
        "Σ layer times ≤ 110% of the profiled inference (else of the timed median)",
        _layer_sum,
    ),
    Check("gpu_time", "GPU time", "GPU busy ≤ median; Σ layer GPU ≤ GPU work; ≥ 95% given to layers", _gpu_time),
    Check("memory_sums", "memory totals", "totals agree with the layer table's sums", _memory_sums),
    Check("percentages", "percentages", "0 ≤ share ≤ 100%, cosine in [-1, 1]", _percentages),
)
RUN_CHECK_KEYS = frozenset(c.key for c in RUN_CHECKS)
#: Checks of figures only a GPU records (CUPTI): not applicable to a run on the CPU.
GPU_ONLY_CHECKS = frozenset({"gpu_time"})


def evaluate(run, checks: tuple[Check, ...] = RUN_CHECKS) -> dict[str, tuple[Finding, ...] | None]:
    """Each check's findings (``()``: holds; ``None``: the run lacks its figures), by key."""
    return {c.key: c.evaluate(run) for c in checks}


def run_findings(run, checks: tuple[Check, ...] = RUN_CHECKS) -> tuple[Finding, ...]:
    """The findings of every check in ``checks`` that applies to ``run``."""
    return tuple(f for found in evaluate(run, checks).values() for f in found or ())


def flagged(findings, metric_key: str) -> Finding | None:
    """The first finding about the figure a metric shows (its summary row carries the warning)."""
    return next((f for f in findings if metric_key in f.metrics), None)


__all__ = [
    "RUN_CHECKS",
    "RUN_CHECK_KEYS",
    "Check",
    "Finding",
    "GPU_ONLY_CHECKS",
    "evaluate",
    "flagged",
    "leading_dims",
    "run_findings",
    "timed_median_ms",
]
