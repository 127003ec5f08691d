"""Run: the one result object every backend and every import produces, and its run directory.

A run directory holds ``run.json`` (everything but the tables; schema below), ``layers.csv`` (the layer table,
see :mod:`workbench.results.layers`) and ``latency.csv`` (one row per timed inference, column ``latency_ms``).
Other files (engine plan, ONNX variant, profiler JSON, build log, ``report.html``) are listed in ``artifacts``
with paths relative to the run directory.

``run.json`` schema (version 1)::

    {"schema": 1, "id", "created", "name", "backend", "source",
     "model": {name, path, sha256, opset, inputs, outputs}, "variant": {precision, options, changes, calibration},
     "config": BuildConfig.to_dict(), "environment": {...}, "latency": LatencyStats | null,
     "memory": Memory, "accuracy": Accuracy | null, "inputs": [TensorInfo], "outputs": [TensorInfo],
     "artifacts": {name: relative path}, "notes": [str], "extra": {...},
     "build_seconds": float | null, "cache_hit": bool | null, "precision_source": str,
     "layer_columns": {extra layer-table column: "bool" | "int" | "float" | "text"},
     "timed": bool, "compiled": CompileReport | null, "sensitivity": {...} | null}

``sensitivity`` (optional; absent in older files) is set on the plan run of ``workbench sensitivity``: the search
of :class:`workbench.analysis.sensitivity.Sensitivity` (``model, precision, budget, reference, group_by, samples,
scores[], candidates[], plan, recipe, notes, seconds, variants_built, layer_error[]``) plus ``profiled``
(``all_low`` and ``plan``: ``name, run, backend, p50_ms, mean_ms, label_accuracy, cosine``).

``timed`` is False for a run that was compiled but never run (``workbench compile``: TensorRT-RTX on a machine
without a supported GPU): it has no latency and no per-layer times, and views that need time say so. ``compiled``
(:class:`CompileReport`) holds what the compiler reported: target architecture, build time and phases, engine layers
against ONNX nodes (fused, folded away) and the memory plan. Both are absent from older ``run.json`` files, which
load as ``timed=True, compiled=None``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import layers as _layers
from ..config import BuildConfig
from ..display import repr_html
from ..errors import WorkbenchError
from ..paths import atomic_directory

SCHEMA_VERSION = 1
#: What views that need time show for a run that was compiled but not run (``Run.timed`` is False).
NOT_TIMED = "not timed: compiled on a machine without a supported GPU"


@dataclass(frozen=True)
class LatencyStats:
    """Latency of whole inferences, in milliseconds; throughput in inferences per second."""

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
        return cls(float(t.mean()), float(p50), float(p90), float(p99), float(t.min()), float(t.max()),
                   float(t.std()), float(qps), int(t.size), int(batch))


@dataclass(frozen=True)
class Memory:
    """Bytes; ``None`` where the backend cannot tell."""

    weights_bytes: int | None = None  # parameters held by the engine / session
    activations_bytes: int | None = None  # summed layer outputs (layer table) for one inference
    engine_device_bytes: int | None = None  # TensorRT scratch memory (device_memory_size_v2)
    plan_bytes: int | None = None  # serialized engine / model file size
    gpu_used_bytes: int | None = None  # NVML: device memory in use while the engine was loaded
    host_peak_bytes: int | None = None  # peak resident memory of this process (ONNX Runtime on CPU)


@dataclass(frozen=True)
class OutputAgreement:
    """How one output of a variant agrees with the FP32 reference on the same inputs."""

    name: str
    max_abs_error: float
    max_rel_error: float
    mean_rel_error: float
    cosine: float
    top1_agreement: float | None = None  # classifiers (last axis = classes)


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Accuracy | None:
        if not d:
            return None
        d = dict(d)
        d["outputs"] = tuple(OutputAgreement(**o) for o in d.get("outputs", ()))
        return cls(**d)


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
    builder_host_peak_bytes: int | None = None  # the builder's own peak host memory
    cache_hit: bool = False

    @classmethod
    def from_dict(cls, d: dict | None) -> CompileReport | None:
        if not d:
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["phases"] = tuple(d.get("phases", ()))
        d["folded_nodes"] = tuple(d.get("folded_nodes", ()))
        return cls(**d)


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
    source: str = "profile"  # "profile", "compile" (built, not run) or "import"
    name: str = ""
    id: str = field(default_factory=lambda: _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    directory: Path | None = field(default=None, compare=False)
    extra: dict = field(default_factory=dict)
    #: seconds the engine / session took to build (None: not built here, e.g. an import)
    build_seconds: float | None = None
    #: the engine came from the engine cache (None where the backend has no cache)
    cache_hit: bool | None = None
    #: imports: where the precision was read from (a builder flag such as ``--fp16`` means weak typing)
    precision_source: str = ""
    timed: bool = True  # False: compiled, not run (no latency, no layer times)
    compiled: CompileReport | None = None
    sensitivity: dict | None = None  # the search of `workbench sensitivity` (on its plan run)

    def __post_init__(self):
        object.__setattr__(self, "layers", _layers.layer_table(self.layers))
        object.__setattr__(self, "latency_ms", tuple(float(t) for t in self.latency_ms))
        if not self.name:
            model = self.model.get("name") or "model"
            object.__setattr__(self, "name", f"{model} {self.config.precision} {self.backend}")

    @property
    def precision(self) -> str:
        return self.variant.get("precision") or self.config.precision

    def replace(self, **changes) -> Run:
        return dataclasses.replace(self, **changes)

    def artifact(self, key: str) -> Path | None:
        """Absolute path of an artifact, or None when the run has none of that name."""
        rel = self.artifacts.get(key)
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() or self.directory is None else self.directory / p

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
            "layers": len(self.layers),
            "weights_bytes": self.memory.weights_bytes,
            "activations_bytes": self.memory.activations_bytes,
            "label_accuracy": self.accuracy.label_accuracy if self.accuracy else None,
            "max_abs_error": max((o.max_abs_error for o in self.accuracy.outputs), default=None)
            if self.accuracy
            else None,
        }

    def _repr_html_(self) -> str | None:
        return repr_html(self)  # registered by workbench.views.formatting_html

    # ---- run directory -------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "id": self.id,
            "created": self.created,
            "name": self.name,
            "backend": self.backend,
            "source": self.source,
            "model": self.model,
            "variant": self.variant,
            "config": self.config.to_dict(),
            "environment": self.environment,
            "latency": dataclasses.asdict(self.latency) if self.latency else None,
            "memory": dataclasses.asdict(self.memory),
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "inputs": [dataclasses.asdict(t) for t in self.inputs],
            "outputs": [dataclasses.asdict(t) for t in self.outputs],
            "artifacts": self.artifacts,
            "notes": list(self.notes),
            "extra": self.extra,
            "build_seconds": self.build_seconds,
            "cache_hit": self.cache_hit,
            "precision_source": self.precision_source,
            "layer_columns": _layers.column_kinds(self.layers),
            "timed": self.timed,
            "compiled": dataclasses.asdict(self.compiled) if self.compiled else None,
            "sensitivity": self.sensitivity,
        }

    def save(self, directory, files: dict[str, Path] | None = None) -> Run:
        """Write the run directory (atomically: a crash leaves no half-written run) and return the saved Run.

        Artifacts (``artifacts`` plus ``files``: name -> file) are copied in and then listed relative to it, so a
        run directory is complete on its own: an engine plan, the ONNX variant, the profiler's JSON, a log.
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
            pd.DataFrame({"latency_ms": list(saved.latency_ms)}).to_csv(tmp / "latency.csv", index=False)
            if directory.exists():
                for p in directory.iterdir():  # files the caller put there (report.html) survive a re-save
                    if not (tmp / p.name).exists() and not p.name.startswith("."):
                        shutil.copy2(p, tmp / p.name) if p.is_file() else shutil.copytree(p, tmp / p.name)
        return saved.replace(directory=directory)


def load_run(directory) -> Run:
    """Load a run directory written by :meth:`Run.save` (on any machine; no backend needed)."""
    directory = Path(directory)
    meta_path = directory / "run.json"
    if not meta_path.is_file():
        raise WorkbenchError(f"'{directory}' is not a run directory: it has no run.json. Pass a folder written by "
                             "'workbench profile --out' or 'workbench import'.")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise WorkbenchError(f"'{meta_path}' is damaged ({e.msg} at line {e.lineno}): profile or import "
                             "again.") from None
    if meta.get("schema", 0) > SCHEMA_VERSION:
        raise WorkbenchError(f"'{directory}' was written by a newer workbench (schema {meta['schema']}): upgrade.")
    extra = meta.get("extra") or {}
    layers_csv = directory / "layers.csv"
    layers = _layers.read_csv(layers_csv, meta.get("layer_columns")) if layers_csv.exists() else []
    lat_path = directory / "latency.csv"
    latency_ms = tuple(pd.read_csv(lat_path)["latency_ms"]) if lat_path.exists() else ()
    return Run(
        id=meta["id"],
        created=meta["created"],
        name=meta.get("name", ""),
        backend=meta["backend"],
        source=meta.get("source", "profile"),
        model=meta.get("model") or {},
        variant=meta.get("variant") or {},
        config=BuildConfig.from_dict(meta.get("config") or {}),
        environment=meta.get("environment") or {},
        latency=LatencyStats(**meta["latency"]) if meta.get("latency") else None,
        latency_ms=latency_ms,
        memory=Memory(**(meta.get("memory") or {})),
        accuracy=Accuracy.from_dict(meta.get("accuracy")),
        inputs=tuple(TensorInfo(t["name"], t["dtype"], tuple(t["shape"])) for t in meta.get("inputs", ())),
        outputs=tuple(TensorInfo(t["name"], t["dtype"], tuple(t["shape"])) for t in meta.get("outputs", ())),
        artifacts=meta.get("artifacts") or {},
        notes=tuple(meta.get("notes", ())),
        extra=extra,
        # before these were fields they were keys of "extra"
        build_seconds=meta.get("build_seconds", extra.get("build_seconds")),
        cache_hit=meta.get("cache_hit", extra.get("cache_hit")),
        precision_source=meta.get("precision_source") or extra.get("precision_source", ""),
        timed=bool(meta.get("timed", True)),
        compiled=CompileReport.from_dict(meta.get("compiled")),
        sensitivity=meta.get("sensitivity"),
        layers=layers,
        directory=directory,
    )


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
