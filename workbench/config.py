"""BuildConfig: everything an engine build and its profiling run depend on, as one frozen value."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from enum import Enum

from .errors import WorkbenchError, excerpt


_WHAT = {"Precision": "precision", "BackendName": "backend"}


class _Name(str, Enum):
    """A name that is also its string: ``Precision.FP16 == "fp16"``, JSON writes ``"fp16"``, f-strings show it."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, name) -> _Name:
        """The member called ``name`` (any case), or a one-line error listing the choices."""
        try:
            return cls(str(name).lower())
        except ValueError:
            raise WorkbenchError(
                f"Unknown {_WHAT[cls.__name__]} {excerpt(name)}: choose one of {', '.join(m.value for m in cls)}."
            ) from None


class Precision(_Name):
    """The precisions a variant can be built at (the ONNX graph carries all but fp32 and tf32)."""

    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    FP8 = "fp8"

    @property
    def in_graph(self) -> bool:
        """Written into the ONNX graph by ModelOpt (fp32 and tf32 leave the graph as it is; tf32 is a build flag)."""
        return self in (Precision.FP16, Precision.BF16, Precision.INT8, Precision.FP8)

    @property
    def quantized(self) -> bool:
        """Q/DQ quantization: needs calibration data (real, or random with a warning)."""
        return self in (Precision.INT8, Precision.FP8)

    @property
    def autocast(self) -> bool:
        """A float cast of the graph (ModelOpt AutoCast): fp16, bf16."""
        return self in (Precision.FP16, Precision.BF16)


class BackendName(_Name):
    """The backends a Run can come from."""

    ONNXRUNTIME = "onnxruntime"
    TENSORRT = "tensorrt"
    TENSORRT_RTX = "tensorrt-rtx"


PRECISIONS = tuple(p.value for p in Precision)
#: Precisions written into the ONNX graph by ModelOpt (fp32 and tf32 leave the graph as it is).
GRAPH_PRECISIONS = tuple(p.value for p in Precision if p.in_graph)

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    """The min/opt/max shapes of one dynamic input (a TensorRT optimization profile entry)."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self):
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise WorkbenchError(
                f"Shape range for input '{self.name}' mixes ranks: min/opt/max must have the same rank."
            )
        if any(a > b for a, b in zip(self.min, self.opt)) or any(a > b for a, b in zip(self.opt, self.max)):
            raise WorkbenchError(
                f"Shape range for input '{self.name}' is not ordered: need min <= opt <= max in every dimension "
                f"(got {format_shape(self.min)}, {format_shape(self.opt)}, {format_shape(self.max)})."
            )


#: The ranges a BuildConfig's numbers must fall in, (low, high) inclusive, and how a message names them. The upper
#: bounds stop a typo (``--iterations 10**12``, ``--duration 1e12``) from running until the process is killed.
LIMITS = {
    "iterations": (1, 1_000_000, "iterations"),
    "trials": (1, 1_000, "trials"),
    "duration_s": (0.0, 86_400.0, "duration (s)"),
    "warmup_ms": (0.0, 3_600_000.0, "warm-up (ms)"),
    "optimization_level": (0, 5, "builder optimization level"),
    "workspace_bytes": (1, 1 << 50, "workspace size (bytes)"),
    "seed": (0, 2**32 - 1, "seed"),
    "trial_gap_s": (0.0, 3_600.0, "gap between trials (s)"),
}

#: Timed inferences per trial when ``iterations`` is not given: at least the first, at most the second, stopping
#: once the trial has run :data:`AUTO_TRIAL_S` seconds. A fast model runs the most (a p99 that is not simply the
#: slowest run); a slow one (an emulated INT8 graph on a CPU, a second an inference) stops at the budget instead of
#: timing for minutes. The least is the fewest a trial's median takes before the stability verdict calls it "few
#: samples" (:data:`workbench.results.stats.MIN_SAMPLES_PER_TRIAL`): a slow model is not labelled unstable for the
#: count the workbench chose.
AUTO_ITERATIONS = (10, 100)
#: Seconds of timed inferences after which a trial without a given ``iterations`` stops (once it has the least).
AUTO_TRIAL_S = 2.0

#: The most timed inferences (iterations x trials) a run keeps the times of (about 32 bytes each while timing, a
#: line each in latency.csv): 1,000,000 iterations in two trials.
MAX_TIMED_INFERENCES = 2_000_000


def check_number(value, low, high, what: str, *, integer: bool):
    """``value`` when it is a finite number (an integer where ``integer``) in ``low..high``, else a one-line error
    naming ``what`` and the range (the value shown bounded)."""
    if integer and isinstance(value, float) and value.is_integer() and low <= value <= high:
        value = int(value)  # 100.0 from a JSON file is 100
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    finite = is_int or (is_number and math.isfinite(value))
    if finite and (is_int or not integer) and low <= value <= high:
        return value
    kind = "an integer" if integer else "a finite number"
    problem = "is out of range" if finite and (is_int or not integer) else "is not " + kind
    if is_int and value.bit_length() > 64:
        shown = f"(an integer of {value.bit_length()} bits)"  # str() of a huge one is refused or megabytes
    else:
        shown = f"{value:g}" if isinstance(value, float) else str(value) if is_int else excerpt(value)
    raise WorkbenchError(f"The {what} {shown} {problem}: give {kind} from {_plain(low)} to {_plain(high)}.")


def _plain(number) -> str:
    return f"{int(number):,}" if float(number).is_integer() else str(number)


@dataclass(frozen=True)
class BuildConfig:
    """What a build and a profile depend on. Hashable; part of every engine cache key.

    ``shapes`` are the shapes profiled (and the ``opt`` of a profile when ``profiles`` names no range for an input).
    ``warmup_ms``, ``iterations`` and ``duration_s`` follow trtexec: warm up for ``warmup_ms``, then time at least
    ``iterations`` runs and keep going until ``duration_s`` seconds have passed; ``iterations`` given without a
    duration is an exact count. ``iterations=None`` (the default) adapts the count to the model's speed: each trial
    times between :data:`AUTO_ITERATIONS` runs (10 and 100), stopping once it has run :data:`AUTO_TRIAL_S` seconds,
    so a fast model gets 100 per trial (300 timed runs give a p99 that is not simply the slowest run) and a slow one
    (an emulated INT8 graph on a CPU) a few seconds instead of minutes; the run states the counts it timed
    (:func:`workbench.backends.timing.timing_note`). ``trials`` repeats that warm-up + timed loop: the Run reports
    the median of all trials with a bootstrap interval and whether the trials agree. The default, 3, is the fewest
    that can show drift (a trend needs three points) while keeping a profile short; use 5 or more for figures you
    will publish. ``trial_gap_s`` waits that long between trials, so that they sample the machine over a longer
    stretch of time (a rerun minutes later meets the states the trials met, and the rerun interval, made from the
    trials' spread, covers them). A CLI user, a ``wb.profile`` user and the panel all time the same thing — these
    defaults are the only ones (the CLI, panel and sweeps read them). ``keep_raw_profile`` keeps ONNX Runtime's raw
    profiler JSON with the
    run (by default it is summarised into the layer table and dropped). Numbers outside :data:`LIMITS` (not finite,
    negative, or past the bound) are refused with the bound in the message.
    """

    precision: Precision = Precision.FP32
    workspace_bytes: int | None = None
    optimization_level: int = 3
    sparsity: bool = False
    shapes: tuple[tuple[str, Shape], ...] = ()
    profiles: tuple[ShapeRange, ...] = ()
    timing_cache: bool = True
    warmup_ms: float = 200.0
    iterations: int | None = None
    duration_s: float = 0.0
    trials: int = 3
    cuda_graph: bool = False
    ort_graph_optimization: str = "all"
    seed: int = 0
    keep_raw_profile: bool = False  # keep ONNX Runtime's raw profiler JSON (tens of MB) as a run artifact
    trial_gap_s: float = 0.0  # seconds between trials (timing only: not part of the engine's identity)

    def __post_init__(self):
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        for name, (low, high, what) in LIMITS.items():
            value = getattr(self, name)
            if value is not None or name not in ("workspace_bytes", "iterations"):
                object.__setattr__(self, name, check_number(value, low, high, what, integer=isinstance(low, int)))
        for flag in ("sparsity", "timing_cache", "cuda_graph", "keep_raw_profile"):
            if not isinstance(getattr(self, flag), bool):
                raise WorkbenchError(f"The setting {flag} must be true or false (got {excerpt(getattr(self, flag))}).")
        if self.most_iterations * self.trials > MAX_TIMED_INFERENCES:  # every time is kept: memory grows with them
            raise WorkbenchError(
                f"{self.most_iterations:,} iterations x {self.trials:,} trials is {self.most_iterations * self.trials:,} timed "
                f"inferences, more than the {MAX_TIMED_INFERENCES:,} whose times a run keeps: lower --iterations or "
                "--trials."
            )
        if self.ort_graph_optimization not in ("disable", "basic", "extended", "all"):
            raise WorkbenchError(
                f"Unknown ONNX Runtime graph optimization {excerpt(self.ort_graph_optimization)}: "
                "choose disable, basic, extended or all."
            )
        # Normalise so that equal settings hash equally whatever container the caller passed.
        object.__setattr__(self, "shapes", tuple((str(n), tuple(int(d) for d in s)) for n, s in self.shapes))
        object.__setattr__(self, "profiles", tuple(self.profiles))

    @property
    def most_iterations(self) -> int:
        """Timed runs per trial without a duration: the given ``iterations``, else the most the adaptive count
        takes (:data:`AUTO_ITERATIONS`)."""
        return self.iterations if self.iterations is not None else AUTO_ITERATIONS[1]

    def timed_runs(self) -> tuple[int, int | None, float]:
        """(least runs, most runs or None, seconds) of one trial's timed loop: it runs while it has fewer than the
        least, or while it is under both the most and the seconds. Exactly ``iterations`` when given without
        ``duration_s``; at least ``iterations`` (100 when not given) for at least ``duration_s`` with one (trtexec);
        neither given: :data:`AUTO_ITERATIONS` runs within :data:`AUTO_TRIAL_S`."""
        if self.iterations is None and not self.duration_s:
            return AUTO_ITERATIONS[0], AUTO_ITERATIONS[1], AUTO_TRIAL_S
        if self.duration_s:
            return self.most_iterations, None, self.duration_s
        return self.iterations, self.iterations, 0.0

    @property
    def tf32(self) -> bool:
        """TF32 matmuls are allowed for every precision except strict fp32 (trtexec ``--noTF32``)."""
        return self.precision != Precision.FP32

    @property
    def shape_map(self) -> dict[str, Shape]:
        return dict(self.shapes)

    def replace(self, **changes) -> BuildConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["shapes"] = {n: list(s) for n, s in self.shapes}
        d["profiles"] = [
            {"name": r.name, "min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for r in self.profiles
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BuildConfig:
        """The config ``to_dict`` wrote (unknown keys ignored); anything else (from a tampered file) is a one-line
        error naming the field."""
        if not isinstance(d, dict):
            raise WorkbenchError(f"Build settings must be a JSON object, not {type(d).__name__}: write them again.")
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        field_name = "shapes"
        try:
            d["shapes"] = tuple((str(n), tuple(s)) for n, s in (d.get("shapes") or {}).items())
            field_name = "profiles"
            d["profiles"] = tuple(
                ShapeRange(str(p["name"]), tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))
                for p in d.get("profiles") or ()
            )
            return cls(**d)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
            raise WorkbenchError(
                f"Build settings field '{field_name}' cannot be read ({type(e).__name__}): write it as to_dict() does."
            ) from None

    def key(self) -> str:
        """A stable hash of the settings that change the built engine (not of the timing settings)."""
        d = self.to_dict()
        for timing_only in (
            "warmup_ms",
            "iterations",
            "duration_s",
            "trials",
            "cuda_graph",
            "seed",
            "keep_raw_profile",
            "trial_gap_s",
        ):
            d.pop(timing_only)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def format_shape(shape, scalar: str = "") -> str:
    """``(1, 3, 224, 224)`` -> ``"1x3x224x224"`` (dims as they are: ``-1`` or a name for a dynamic one); a shape
    without dims is ``scalar``."""
    return "x".join(str(d) for d in shape) or scalar


def format_shapes(shapes, sep: str = ", ") -> str:
    """``{name: shape}`` (or its items) -> ``"name:1x3x224x224, other:16"``; with ``sep=","`` what
    :func:`parse_shapes` (and ``--shapes``) reads back."""
    items = shapes.items() if hasattr(shapes, "items") else shapes
    return sep.join(f"{name}:{format_shape(shape)}" for name, shape in items)


def parse_shapes(text: str) -> tuple[tuple[str, Shape], ...]:
    """Parse trtexec-style shapes, ``name:1x3x224x224,other:1x16``, into ``((name, shape), ...)``."""
    result = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, dims = item.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.lower().split("x"))
            if any(d < 0 for d in shape):
                raise ValueError
        except ValueError:
            raise WorkbenchError(
                f"Cannot read shape {excerpt(item)}: write name:DxDxD, e.g. input:1x3x224x224 (several separated by commas)."
            ) from None
        result.append((name.strip(), shape))
    return tuple(result)


_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str | int, unit: str = "") -> int:
    """Bytes of a size such as ``512M``, ``2GiB``, ``1.5 MiB``, ``1073741824`` (binary units). A bare number
    counts ``unit``s (``"M"``: trtexec's pool sizes), else bytes."""
    if isinstance(text, int):
        return text
    s = str(text).strip().upper().removesuffix("B").removesuffix("I").strip()
    try:
        if s and s[-1] in _SIZE_UNITS:
            return int(float(s[:-1]) * _SIZE_UNITS[s[-1]])
        return int(float(s) * _SIZE_UNITS[unit]) if unit else int(s)
    except ValueError:
        raise WorkbenchError(
            f"Cannot read size {excerpt(text)}: write bytes or a number with K, M or G, e.g. 512M."
        ) from None
