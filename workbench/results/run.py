"""Run: the one result object every backend and every import produces, and its run directory.

A run directory holds ``run.json`` (everything but the tables; schema below), ``layers.csv`` (the layer table,
see :mod:`workbench.results.layers`) and ``latency.csv`` (one row per timed inference, column ``latency_ms``).
Other files (engine plan, ONNX variant, profiler JSON, build log, ``report.html``) are listed in ``artifacts``
with paths relative to the run directory.

A run directory may come from anyone: :func:`load_run` refuses an artifact path that leaves the directory
(absolute, ``..``, a link), and ``id`` is never used as a path as read — the store gives a run from elsewhere a new
id (:func:`new_run_id`). A damaged ``run.json``, ``layers.csv`` or ``latency.csv`` is one :class:`WorkbenchError`.

``run.json`` schema (version 1)::

    {"schema": 1, "id", "created", "name", "backend", "source",
     "model": {name, path, sha256, opset, inputs, outputs}, "variant": {precision, options, changes, calibration},
     "config": BuildConfig.to_dict(), "environment": {...}, "latency": LatencyStats | null,
     "memory": Memory, "accuracy": Accuracy | null, "inputs": [TensorInfo], "outputs": [TensorInfo],
     "artifacts": {name: relative path}, "notes": [str], "extra": {...},
     "profiled_shapes": {input name: [dims]},
     "build_seconds": float | null, "cache_hit": bool | null, "precision_source": str,
     "layer_columns": {extra layer-table column: "bool" | "int" | "float" | "text"},
     "timed": bool, "compiled": CompileReport | null,
     "trials": [TrialStats], "timing": Timing | null, "conditions": Conditions | null, "sensitivity": {...} | null,
     "sweep_id": str | null, "sweep_point": str | null, "serving": Serving | null, "time_source": str,
     "gpu_time": GpuTime | null}

``serving`` (optional; absent in older files): a load test of the run's variant served by Triton
(``source="serve"``; :mod:`workbench.results.serving`): the server, the model configuration served and one entry per
concurrency with client latency percentiles, throughput, Triton's own request/execution counts and its queue and
compute times.

``sensitivity`` (optional; absent in older files) is set on the plan run of ``workbench sensitivity``: the search
of :class:`workbench.analysis.sensitivity.Sensitivity` (``model, precision, budget, reference, group_by, samples,
scores[], candidates[], plan, recipe, notes, seconds, variants_built, layer_error[], evaluations, verdict,
plan_precision``) plus
``profiled`` (``all_low`` and ``plan``: ``name, run`` (the id in the store, when the caller passed one), ``backend,
p50_ms, mean_ms, label_accuracy, cosine``).

``timed`` is False for a run that was compiled but never run (``workbench compile``: TensorRT-RTX on a machine
without a supported GPU): it has no latency and no per-layer times, and views that need time say so. ``compiled``
(:class:`CompileReport`) holds what the compiler reported: target architecture, build time and phases, engine layers
against ONNX nodes (fused, folded away) and the memory plan. Both are absent from older ``run.json`` files, which
load as ``timed=True, compiled=None``.

``trials`` (optional, default ``[]``): one entry per trial (a warm-up followed by a timed loop), in order; the
samples of trial *i* are the rows of ``latency.csv`` with ``trial`` = *i* (consecutive, ``samples`` of them).
``timing`` (optional): the median of all samples with its 95% rerun interval (``ci_low_ms``/``ci_high_ms``: where
an identical rerun's median should fall, see :func:`workbench.results.stats.rerun_interval`), the coefficient of
variation, the stability verdict and its causes, ``cpu_wait`` (the largest share of a trial the timing threads
waited for a CPU; each trial's own is in ``trials``), and
``profiled_ms`` — the mean wall time of one inference of the per-layer profiled pass, which states the profiler's
overhead against the timed median. ``conditions`` (optional): CPU model, frequency governor, CPU clock and load
average, and on a GPU NVML's clocks, power, temperature and throttle reasons, read before and after the trials;
``warnings`` say what changed or throttled.
``profiled_shapes`` are the input shapes the run measured (older runs kept them in ``extra["shapes"]``; they are
read from there). ``accuracy`` carries per-output figures (``max_abs_error``, ``max_rel_error``,
``mean_rel_error``, ``cosine``, ``top1_agreement``, ``rel_l2_error``, ``mask_iou``, ``collapsed``), ``data`` (what
the samples were), ``verdict`` ("ok" / "degraded" / "broken"), ``verdict_reason`` and the ``tolerance`` it was
judged against (see :mod:`workbench.precision.accuracy`). Fields added later default when an older file lacks them.
``sweep_id`` / ``sweep_point`` (optional, absent in older files): the sweep that made the run and the key of its
point in that sweep's plan (see :mod:`workbench.sweeps.record`); null for runs made outside a sweep.

``time_source`` (optional; "" in older files): where the layer table's ``time_ms`` comes from — ``cupti`` (GPU
kernels CUPTI recorded, attributed to the node that launched them), ``host`` (ONNX Runtime's profiler on the CUDA
provider: host time around each node's launches), ``tensorrt`` (TensorRT's IProfiler), ``cpu`` (ONNX Runtime's
profiler on the CPU); :data:`TIME_SOURCES` holds the label views show. ``gpu_time`` (:class:`GpuTime`, optional): the
GPU's own figures per inference (busy time, kernels, launch-bound share against the timed median). With ``cupti``,
the layer table's extra columns ``host_ms`` (the profiler's host time), ``kernels`` (per inference) and
``kernel_names`` (distinct kernel names, most GPU time first) hold the drill-down.

``findings`` (a field, not in ``run.json``): the self-checks the run fails (:mod:`workbench.results.checks`),
re-evaluated whenever a Run is constructed (made, loaded, imported, or changed with :meth:`Run.replace`); findings
of checks from rooms above (the roofline's, :mod:`workbench.analysis.checks`) are kept across ``replace``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import checks as _checks
from . import layers as _layers
from . import stats as _stats
from .serving import Serving
from ..config import BuildConfig, format_shapes
from ..display import repr_html
from ..errors import WorkbenchError
from ..format import human_bytes
from ..paths import atomic_directory, read_user_file
from ..records import from_dict

SCHEMA_VERSION = 1
#: What views that need time show for a run that was compiled but not run (``Run.timed`` is False).
NOT_TIMED = "not timed: compiled on a machine without a supported GPU"

#: A run id as :func:`new_run_id` makes it: creation time, then 6 random hex digits (a plain folder name).
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


def new_run_id() -> str:
    """A fresh run id (``20260101-120000-1a2b3c``). Ids are generated, never taken from a file: see Store.add."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def is_run_id(text) -> bool:
    """Whether ``text`` is a run id as :func:`new_run_id` makes them (so a safe folder name)."""
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class LatencyStats:
    """Latency of whole inferences, in milliseconds; throughput in inferences per second. ``batch``: samples per
    inference, from the shapes profiled (:func:`workbench.model.inputs.profiled_batch`); samples/s = batch ×
    throughput."""

    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    throughput_qps: float
    samples: int
    batch: int = 1

    @classmethod
    def from_times(cls, times_ms, batch: int = 1, wall_s: float | None = None) -> LatencyStats:
        """Statistics of per-inference times. ``wall_s`` (the whole timed loop) gives a throughput that
        counts launch gaps, like trtexec; without it throughput is 1000 / mean."""
        t = np.asarray(times_ms, dtype=float)
        if t.size == 0:
            raise WorkbenchError("No timed inferences to summarise: run at least one iteration.")
        qps = t.size / wall_s if wall_s else 1000.0 / float(t.mean())
        p50, p90, p99 = np.percentile(t, [50, 90, 99])
        return cls(
            float(t.mean()),
            float(p50),
            float(p90),
            float(p99),
            float(t.min()),
            float(t.max()),
            float(t.std()),
            float(qps),
            int(t.size),
            int(batch),
        )


@dataclass(frozen=True)
class TrialStats:
    """One trial (warm-up + timed loop): its sample count and statistics in milliseconds, and its wall time."""

    samples: int
    mean_ms: float
    p50_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    wall_s: float = 0.0
    cpu_wait: float | None = None  # share of the timing threads' runnable time spent waiting for a CPU
    gpu_sm_mhz: int | None = None  # NVML's SM clock read as the trial ended (None off a GPU)
    gpu_memory_mhz: int | None = None  # NVML's memory clock read as the trial ended

    @classmethod
    def from_times(
        cls,
        times_ms,
        wall_s: float = 0.0,
        cpu_wait: float | None = None,
        gpu_clocks: tuple[int | None, int | None] = (None, None),
    ) -> TrialStats:
        t = np.asarray(times_ms, dtype=float)
        return cls(
            int(t.size),
            float(t.mean()),
            float(np.median(t)),
            float(t.min()),
            float(t.max()),
            float(t.std()),
            float(wall_s),
            cpu_wait,
            *gpu_clocks,
        )


@dataclass(frozen=True)
class Timing:
    """What the trials say about the latency: median with its interval, variation, and whether to trust it."""

    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    cv: float
    verdict: str  # "stable" | "unstable"
    causes: tuple[str, ...] = ()
    trials: int = 1
    confidence: float = _stats.CONFIDENCE
    profiled_ms: float | None = None  # mean wall time of one profiled (per-layer) inference
    cpu_wait: float | None = None  # the most any trial's timing threads waited for a CPU (share of runnable time)

    @classmethod
    def from_trials(
        cls,
        trials_ms,
        throttled: tuple[str, ...] = (),
        profiled_ms: float | None = None,
        cpu_wait: float | None = None,
        gpu_sm_mhz: tuple[int, ...] = (),
        gpu_time: GpuTime | None = None,
    ) -> Timing:
        """The median with its rerun interval (:func:`workbench.results.stats.rerun_interval`) and the stability
        verdict; ``cpu_wait``: the largest share of a trial the timing threads waited for a CPU; ``gpu_sm_mhz``:
        each trial's SM clock; ``gpu_time``: CUPTI's record of the same engine (a host-paced run is named, and the
        interval allows the host's part of the median to move as it does between runs,
        :func:`workbench.results.stats.gpu_rerun_interval`)."""
        sampled = _stats.rerun_interval(trials_ms)
        busy = gpu_time.busy_interval() if gpu_time is not None else None
        # the verdict judges what the trials sampled; the host part's allowance is no sign of a noisy run
        verdict = _stats.stability(trials_ms, sampled, throttled, cpu_wait, tuple(gpu_sm_mhz), busy)
        interval = _stats.gpu_rerun_interval(sampled, busy) if busy is not None else sampled
        return cls(
            interval.value,
            interval.low,
            interval.high,
            _stats.cv(trials_ms),
            verdict.verdict,
            verdict.causes,
            len(_stats._trials(trials_ms)),
            interval.confidence,
            profiled_ms,
            cpu_wait,
        )

    def text(self) -> str:
        """``0.512 ms (95% rerun interval 0.508–0.519), CV 3.1%, 5 trials: stable``."""
        verdict = self.verdict if not self.causes else f"{self.verdict} — {'; '.join(self.causes)}"
        return (
            f"{self.median_ms:.4g} ms ({100 * self.confidence:.0f}% rerun interval {self.ci_low_ms:.4g}–"
            f"{self.ci_high_ms:.4g}), CV {100 * self.cv:.1f}%, {self.trials} trial{'s' if self.trials != 1 else ''}: {verdict}"
        )


@dataclass(frozen=True)
class ConditionsSnapshot:
    """Machine conditions at one moment; ``None`` where they cannot be read (no cpufreq, no NVML)."""

    cpu_model: str | None = None
    governor: str | None = None  # CPU frequency governor (cpufreq), e.g. "performance"
    cpu_mhz: float | None = None  # mean current CPU clock
    load_1m: float | None = None  # load average over one minute
    gpu_sm_mhz: int | None = None
    gpu_memory_mhz: int | None = None
    gpu_power_w: float | None = None
    gpu_temperature_c: int | None = None
    gpu_throttle: tuple[str, ...] = ()  # NVML clock-event reasons that slow the GPU down (power, thermal...)


@dataclass(frozen=True)
class Conditions:
    """Conditions before and after the trials, and warnings when they changed or throttled."""

    before: ConditionsSnapshot = field(default_factory=ConditionsSnapshot)
    after: ConditionsSnapshot = field(default_factory=ConditionsSnapshot)
    warnings: tuple[str, ...] = ()

    @property
    def throttled(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.before.gpu_throttle + self.after.gpu_throttle))


#: Where a run's per-layer times come from, and the label every view shows with them.
TIME_SOURCES = {
    "cupti": "GPU kernels (CUPTI)",
    "host": "host time around launches",
    "tensorrt": "TensorRT IProfiler",
    "cpu": "CPU time per node (ONNX Runtime profiler)",
}


@dataclass(frozen=True)
class GpuTime:
    """What the GPU itself recorded (CUPTI activity records) over the profiled inferences, per inference, in ms.

    ``busy_ms``: the union of every kernel, memcpy and memset interval (time the GPU was working);
    ``kernel_ms`` / ``copy_ms``: summed kernel / memcpy + memset durations; ``kernels``: kernels launched;
    ``span_ms``: first GPU start to last GPU end of an inference's work (0 where the inferences' bounds are not
    known); ``inferences``: how many profiled inferences. Where the records were given to layers (ONNX Runtime):
    ``layers_ms`` (the summed ``time_ms`` of the layer table), ``unattributed_ms`` (work launched inside an
    inference but outside every node's window: the runtime's own copies), ``matched_share`` (share of the GPU time
    given to a layer) and ``clock_shift_us`` (how far the fitted clock alignment moved from the clocks read side
    by side, :mod:`workbench.backends.cupti`); None where they were not (TensorRT: IProfiler times the layers and
    CUPTI's sum stands beside them)."""

    busy_ms: float
    kernel_ms: float
    copy_ms: float
    kernels: float
    span_ms: float
    inferences: int
    layers_ms: float | None = None
    unattributed_ms: float | None = None
    matched_share: float | None = None
    clock_shift_us: float | None = None
    #: 95% rerun interval of the median GPU busy time of one inference (from each profiled inference's own busy
    #: time, :func:`workbench.results.stats.rerun_interval`); None where inferences were not told apart
    busy_low_ms: float | None = None
    busy_high_ms: float | None = None

    def busy_interval(self) -> _stats.Interval:
        """GPU busy per inference with its interval (the busy time itself where no interval was recorded)."""
        low = self.busy_low_ms if self.busy_low_ms is not None else self.busy_ms
        high = self.busy_high_ms if self.busy_high_ms is not None else self.busy_ms
        return _stats.Interval(self.busy_ms, min(low, self.busy_ms), max(high, self.busy_ms))

    def idle_share(self, latency_ms: float | None) -> float | None:
        """Share of an inference of ``latency_ms`` the GPU sits idle (launch-bound share); None without a latency."""
        if not latency_ms or latency_ms <= 0:
            return None
        return max(0.0, 1.0 - self.busy_ms / latency_ms)


@dataclass(frozen=True)
class Memory:
    """Bytes; ``None`` where the backend cannot tell."""

    weights_bytes: int | None = None  # parameters held by the engine / session
    activations_bytes: int | None = None  # summed layer outputs (layer table) for one inference
    engine_device_bytes: int | None = None  # TensorRT scratch memory (device_memory_size_v2)
    plan_bytes: int | None = None  # serialized engine / model file size
    gpu_used_bytes: int | None = None  # NVML: device memory in use while the engine was loaded
    #: peak resident memory of the process that made the run (or its largest child), read after the run's last
    #: step: variant, calibration, build, timing and accuracy included (workbench.env.host_peak_bytes)
    host_peak_bytes: int | None = None


@dataclass(frozen=True)
class OutputAgreement:
    """How one output of a variant agrees with the FP32 reference on the same inputs."""

    name: str
    max_abs_error: float
    max_rel_error: float
    mean_rel_error: float
    cosine: float
    top1_agreement: float | None = None  # classifiers (last axis = classes)
    rel_l2_error: float | None = None  # ||v - r|| / ||r||: 1.0 for an all-zero output, unlike max_abs_error
    mask_iou: float | None = None  # segmentation-like outputs (values in [0, 1]): IoU of the masks above a threshold
    collapsed: bool = False  # the variant's output is constant where the FP32 output is not
    #: what the output holds (workbench.precision.accuracy.output_kind): "class scores", "class ids", "mask",
    #: "embedding", "regression" or "constant"; "" in runs saved before outputs were classified
    kind: str = ""
    constant_value: float | None = None  # the FP32 output's one value when it is constant (its comparison is vacuous)


@dataclass(frozen=True)
class Accuracy:
    """Accuracy of a variant against its FP32 reference (and against labels when given)."""

    reference: str = "fp32"
    backend: str = "onnxruntime"
    samples: int = 0
    outputs: tuple[OutputAgreement, ...] = ()
    label_accuracy: float | None = None  # this variant, against the labels
    reference_label_accuracy: float | None = None  # FP32, same samples
    note: str = ""  # e.g. "accuracy checked only on the GPU backend"
    data: str = ""  # what the samples were: "evaluation data", "calibration data (first 64 of 500)", "32 seeded..."
    #: "ok" | "degraded" | "broken" against ``tolerance``; "inconclusive" when every output compared is constant in
    #: FP32 (nothing was shown); "" when nothing was compared
    verdict: str = ""
    verdict_reason: str = ""  # the check that decided it, e.g. "output 'y': cosine 0.0000 < 0.9"
    tolerance: dict = field(default_factory=dict)  # workbench.precision.accuracy.Tolerance as a dict

    def verdict_text(self) -> str:
        """``BROKEN: output 'y': cosine 0 < 0.9 (on 32 seeded random samples ...)``: the verdict, why, on what."""
        if not self.verdict:
            return "not measured" + (f" ({self.note})" if self.note else "")
        on = f" (on {self.data})" if self.data else f" (on {self.samples} samples)"
        return f"{self.verdict.upper()}: {self.verdict_reason}{on}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TensorInfo:
    """An engine input or output: name, numpy dtype name, shape (``-1`` or a name for dynamic dims)."""

    name: str
    dtype: str
    shape: tuple


@dataclass(frozen=True)
class CompileReport:
    """What a compiler reported about an engine it built (``workbench compile``); bytes, seconds, ``None`` where
    the build log did not say."""

    target: str  # "sm89": the architecture the engine was built for
    compute_capability: str  # "8.9"
    compiler: str  # "TensorRT-RTX 1.7.1.116"
    build_seconds: float = 0.0
    phases: tuple[str, ...] = ()  # the builder's progress phases, in order
    engine_layers: int = 0
    onnx_nodes: int = 0
    fused_layers: int = 0  # engine layers built from more than one ONNX node
    folded_nodes: tuple[str, ...] = ()  # ONNX nodes in no engine layer: folded into constants or removed
    activation_memory_bytes: int | None = None  # device memory for activations (what a context allocates)
    weights_memory_bytes: int | None = None
    scratch_memory_bytes: int | None = None
    host_persistent_bytes: int | None = None
    device_persistent_bytes: int | None = None
    builder_host_peak_bytes: int | None = None  # the builder's own peak host memory, as its log states it (whole MiB)
    cache_hit: bool = False

    @property
    def builder_host_peak_text(self) -> str | None:
        """The builder's peak host memory as its log states it, in whole MiB: a 0 there is under 1 MiB, not 0 B."""
        if self.builder_host_peak_bytes is None:
            return None
        if self.builder_host_peak_bytes == 0:
            return "under 1 MiB (the builder logs whole MiB)"
        return human_bytes(self.builder_host_peak_bytes)


@dataclass(frozen=True)
class Run:
    """The result of one build + profile, or of an import. Charts, stores, comparisons and reports read only this."""

    backend: str
    layers: pd.DataFrame
    config: BuildConfig = field(default_factory=BuildConfig)
    latency: LatencyStats | None = None
    latency_ms: tuple[float, ...] = ()
    memory: Memory = field(default_factory=Memory)
    accuracy: Accuracy | None = None
    model: dict = field(default_factory=dict)
    variant: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    artifacts: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    source: str = "profile"  # "profile", "compile" (built, not run), "import" or "serve" (a Triton load test)
    name: str = ""
    id: str = field(default_factory=new_run_id)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    directory: Path | None = field(default=None, compare=False)
    extra: dict = field(default_factory=dict)
    profiled_shapes: dict = field(default_factory=dict)  # input name -> the shape fed while profiling
    #: seconds the engine / session took to build (None: not built here, e.g. an import)
    build_seconds: float | None = None
    #: the engine came from the engine cache (None where the backend has no cache)
    cache_hit: bool | None = None
    #: imports: where the precision was read from (a builder flag such as ``--fp16`` means weak typing)
    precision_source: str = ""
    timed: bool = True  # False: compiled, not run (no latency, no layer times)
    compiled: CompileReport | None = None
    trials: tuple[TrialStats, ...] = ()
    timing: Timing | None = None
    conditions: Conditions | None = None
    sensitivity: dict | None = None  # the search of `workbench sensitivity` (on its plan run)
    sweep_id: str | None = None  # the sweep that made this run (workbench.sweeps), None outside sweeps
    sweep_point: str | None = None  # the key of its point in that sweep's plan
    #: where ``layers["time_ms"]`` comes from: a key of :data:`TIME_SOURCES` ("" in older files: see
    #: :attr:`time_source_key`)
    time_source: str = ""
    gpu_time: GpuTime | None = None  # CUPTI's figures per inference (runs on a GPU with CUPTI)
    serving: Serving | None = None  # a load test through Triton (source "serve"): workbench.results.serving
    #: self-checks that failed (workbench.results.checks): its own checks re-evaluated on every construction and
    #: load, plus those a room above added (the roofline's, workbench.analysis.checks); never read from run.json
    findings: tuple[_checks.Finding, ...] = field(default=(), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "layers", _layers.layer_table(self.layers))
        object.__setattr__(self, "latency_ms", tuple(float(t) for t in self.latency_ms))
        if not self.name:
            model = self.model.get("name") or "model"
            object.__setattr__(self, "name", f"{model} {self.config.precision} {self.backend}")
        added = tuple(f for f in self.findings if f.check not in _checks.RUN_CHECK_KEYS)
        object.__setattr__(self, "findings", _checks.run_findings(self) + added)

    @property
    def trial_samples(self) -> list[tuple[float, ...]]:
        """``latency_ms`` split by trial (one trial when the run has no trial records, e.g. an import)."""
        counts = [t.samples for t in self.trials]
        if not counts or sum(counts) != len(self.latency_ms):
            return [self.latency_ms] if self.latency_ms else []
        bounds = np.cumsum([0] + counts)
        return [self.latency_ms[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    @property
    def precision(self) -> str:
        return self.variant.get("precision") or self.config.precision

    @property
    def time_source_key(self) -> str:
        """Where the layer times come from (a key of :data:`TIME_SOURCES`); runs written before it was recorded:
        TensorRT's profiler for TensorRT runs and imports, ONNX Runtime's profiler on the CPU or, on the CUDA
        provider, host time around each node's launches."""
        if self.time_source in TIME_SOURCES:
            return self.time_source
        if self.backend != "onnxruntime":
            return "tensorrt"
        return "host" if self.environment.get("provider") == "CUDAExecutionProvider" else "cpu"

    @property
    def time_source_label(self) -> str:
        """The label every view shows with layer times: ``GPU kernels (CUPTI)``, ``host time around launches``…"""
        return TIME_SOURCES[self.time_source_key]

    @property
    def shapes(self) -> dict[str, tuple]:
        """The input shapes this run measured (input name -> shape): a run's identity as much as its precision.

        Profiled runs record the concrete shapes fed (``profiled_shapes``); imports and older runs fall back to
        the configured ``--shapes``, then to the engine inputs' shapes where those are all fixed."""
        recorded = self.profiled_shapes or self.extra.get("shapes")
        if recorded:
            return {k: tuple(v) for k, v in recorded.items()}
        if self.config.shapes:
            return dict(self.config.shapes)
        fixed = {t.name: tuple(t.shape) for t in self.inputs if all(isinstance(d, int) and d >= 0 for d in t.shape)}
        return fixed if fixed and len(fixed) == len(self.inputs) else {}

    @property
    def shapes_text(self) -> str:
        """``x:1x3x640x640, mask:1x128``; "" when the run does not say."""
        return format_shapes(self.shapes)

    def replace(self, **changes) -> Run:
        return dataclasses.replace(self, **changes)

    def artifact(self, key: str) -> Path | None:
        """Absolute path of an artifact, or None when the run has none of that name."""
        rel = self.artifacts.get(key)
        if rel is None:
            return None
        if self.directory is None:  # a run not saved yet: its files are wherever they were made
            return Path(rel)
        # a saved run lists names inside its directory, nothing else
        from ..paths import inside

        return inside(
            self.directory,
            rel,
            f"artifact path '{key}' of run.json",
            fix="the run folder is damaged or crafted; profile or import it again",
        )

    def summary(self) -> dict:
        """Key metrics as one flat dict (for tables, the store and the CLI)."""
        lat = self.latency
        return {
            "run": self.id,
            "name": self.name,
            "model": self.model.get("name", ""),
            "backend": self.backend,
            "precision": self.precision,
            "mean_ms": lat.mean_ms if lat else None,
            "p50_ms": lat.p50_ms if lat else None,
            "p99_ms": lat.p99_ms if lat else None,
            "throughput_qps": lat.throughput_qps if lat else None,
            "median_ms": self.timing.median_ms if self.timing else None,
            "timing": (
                f"{self.timing.median_ms:.4g} ms ({self.timing.ci_low_ms:.4g}–{self.timing.ci_high_ms:.4g}), "
                f"{self.timing.verdict}"
            )
            if self.timing
            else None,
            "layers": len(self.layers),
            "weights_bytes": self.memory.weights_bytes,
            "activations_bytes": self.memory.activations_bytes,
            "label_accuracy": self.accuracy.label_accuracy if self.accuracy else None,
            "max_abs_error": max((o.max_abs_error for o in self.accuracy.outputs), default=None)
            if self.accuracy
            else None,
            "verdict": self.accuracy.verdict if self.accuracy else "",
            "min_cosine": min((o.cosine for o in self.accuracy.outputs), default=None) if self.accuracy else None,
            "shapes": self.shapes_text,
            "device": self.environment.get("gpu") or self.environment.get("cpu") or "",
            "checks": ", ".join(dict.fromkeys(f.check for f in self.findings)),  # failed self-checks, "" if none
        }

    def _repr_html_(self) -> str | None:
        return repr_html(self)  # registered by workbench.views.formatting_html

    # ---- run directory -------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        """``run.json``'s object (module docstring): every field but the tables, the folder and the findings."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _NOT_IN_JSON}
        return {
            "schema": SCHEMA_VERSION,
            **{name: _plain(value) for name, value in fields.items()},
            "config": self.config.to_dict(),
            "layer_columns": _layers.column_kinds(self.layers),
        }

    def save(self, directory, files: dict[str, Path] | None = None, *, finish=None) -> Run:
        """Write the run directory (atomically: a crash leaves no half-written run) and return the saved Run.

        Artifacts (``artifacts`` plus ``files``: name -> file) are copied in and then listed relative to it, so a
        run directory is complete on its own: an engine plan, the ONNX variant, the profiler's JSON, a log.
        ``finish(run)`` is called with the run in its not yet renamed folder, to add files of its own (the report),
        so the directory appears with all of them or not at all.
        """
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            sources = {key: self.artifact(key) for key in self.artifacts}
            sources.update({key: Path(src) for key, src in (files or {}).items()})
            artifacts = {}
            for key, src in sources.items():
                if src is None or not src.is_file():
                    continue  # a file that is gone (a cleaned temp dir) is not listed as if it were there
                shutil.copy2(src, tmp / src.name)
                artifacts[key] = src.name
            saved = self.replace(artifacts=artifacts)
            (tmp / "run.json").write_text(json.dumps(saved.to_json(), indent=1, default=_json_default))
            _layers.to_csv(saved.layers, tmp / "layers.csv")
            latency = pd.DataFrame({"latency_ms": list(saved.latency_ms)})
            if len(saved.trial_samples) > 1:
                latency["trial"] = [i for i, t in enumerate(saved.trial_samples) for _ in t]
            latency.to_csv(tmp / "latency.csv", index=False)
            if directory.exists():
                for p in directory.iterdir():  # files the caller put there (report.html) survive a re-save
                    if not (tmp / p.name).exists() and not p.name.startswith(".") and not p.is_symlink():
                        shutil.copy2(p, tmp / p.name) if p.is_file() else shutil.copytree(p, tmp / p.name)
            if finish is not None:
                finish(saved.replace(directory=tmp))
        return saved.replace(directory=directory)


#: The largest run.json read (a run of a 1.3-million-layer engine writes a few MB: its layers are in layers.csv).
MAX_RUN_JSON_BYTES = 256 << 20


def load_run(directory) -> Run:
    """Load a run directory written by :meth:`Run.save` (on any machine; no backend needed)."""
    directory = Path(directory)
    meta_path = directory / "run.json"
    if not meta_path.is_file():
        raise WorkbenchError(
            f"'{directory}' is not a run directory: it has no run.json. Pass a folder written by "
            "'workbench profile --out' or 'workbench import'."
        )
    data = read_user_file(meta_path, "run record", limit=MAX_RUN_JSON_BYTES, fix="profile or import again")
    try:
        meta = json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as e:
        raise WorkbenchError(
            f"'{meta_path}' is damaged ({e.msg} at line {e.lineno}): profile or import again."
        ) from None
    except (UnicodeDecodeError, RecursionError) as e:
        raise WorkbenchError(
            f"'{meta_path}' cannot be read ({e.__class__.__name__}): profile or import again."
        ) from None
    if not isinstance(meta, dict):
        raise WorkbenchError(f"'{meta_path}' is damaged (not a JSON object): profile or import again.")
    schema = meta.get("schema", 0)
    if isinstance(schema, (int, float)) and schema > SCHEMA_VERSION:
        raise WorkbenchError(f"'{directory}' was written by a newer workbench (schema {meta['schema']}): upgrade.")
    try:
        return _run_from_json(meta, directory)
    except WorkbenchError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        what = f"field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {str(e)[:150]}"
        raise WorkbenchError(
            f"The run folder '{directory}' is damaged ({what}): profile or import it again, or delete the folder."
        ) from None


def _run_from_json(meta: dict, directory: Path) -> Run:
    artifacts = meta.get("artifacts") or {}
    if not isinstance(artifacts, dict):
        raise TypeError("'artifacts' is not an object")
    from ..paths import inside

    for key, rel in artifacts.items():  # every path a run lists stays inside its folder
        inside(
            directory,
            rel,
            f"artifact path '{key}' of run.json",
            fix="the run folder is damaged or crafted; profile or import it again",
        )
    layers_csv = directory / "layers.csv"
    layers = _layers.read_csv(layers_csv, meta.get("layer_columns")) if layers_csv.is_file() else []
    lat_path = directory / "latency.csv"
    latency_ms = tuple(pd.read_csv(lat_path)["latency_ms"]) if lat_path.is_file() else ()
    # a field absent, null or {} takes its default; what run.json never holds is not read from it
    data = {k: v for k, v in meta.items() if k not in _NOT_IN_JSON and v is not None and v != {}}
    data.update({k: str(meta[k]) for k in ("id", "created", "backend")})  # required
    data.update({k: str(data[k]) for k in ("name", "source", "time_source", "precision_source") if k in data})
    data.update({k: dict(data.get(k, {})) for k in ("model", "variant", "environment", "extra")})
    extra = data["extra"]
    for key, old in (("build_seconds", "build_seconds"), ("cache_hit", "cache_hit"), ("profiled_shapes", "shapes")):
        if key not in data and extra.get(old) is not None:  # before these were fields they were keys of "extra"
            data[key] = extra[old]
    if not data.get("precision_source") and extra.get("precision_source"):
        data["precision_source"] = str(extra["precision_source"])
    data["profiled_shapes"] = {k: tuple(v) for k, v in (data.get("profiled_shapes") or {}).items()}
    data["notes"] = tuple(str(n) for n in data.get("notes", ()))
    data["timed"] = bool(data.get("timed", True))
    data["config"] = BuildConfig.from_dict(data.get("config", {}))
    return from_dict(
        Run, {**data, "artifacts": artifacts, "layers": layers, "latency_ms": latency_ms, "directory": directory}
    )


#: Run fields that ``run.json`` leaves out: the tables have files of their own, the folder is where it is read from
#: and the findings are evaluated afresh on load.
_NOT_IN_JSON = ("layers", "latency_ms", "directory", "findings")


def _plain(value):
    """A field's value as JSON holds it: dataclasses as dicts, tuples as lists (of dicts)."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
