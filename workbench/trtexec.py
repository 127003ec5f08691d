"""trtexec interop: import its outputs as a Run, and render a BuildConfig as a trtexec command line.

Import (:func:`import_trtexec`) recognises each file by its content, whatever it is called:

============================  ====================================================================================
layer information             ``--exportLayerInfo`` JSON (8.x, 10.x, 11.x; see :mod:`workbench.layerinfo`)
per-layer profile             ``--exportProfile`` JSON: ``[{"count": N}, {"name", "timeMs", "averageMs", ...}]``
per-iteration times           ``--exportTimes`` JSON: ``[{"startEnqMs", ..., "latencyMs"}, ...]``
log                           trtexec's console output: options, device, ``=== Performance summary ===``,
                              the ``=== Profile (N iterations ) ===`` table of ``--dumpProfile``
TREx metadata                 ``*.metadata.json`` (device attributes), ``*.build.metadata.json`` (model/build
                              options), ``*.profile.metadata.json`` (performance summary, inference options, device)
============================  ====================================================================================

Units: the layer table's ``time_ms`` is the mean time per inference (a layer's total time over the profiled
iterations divided by their count), as everywhere in the workbench.
"""

from __future__ import annotations

import dataclasses

import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import GRAPH_PRECISIONS, BuildConfig, ShapeRange, format_shape
from .errors import WorkbenchError
from .layerinfo import LayerInfo, guess_precision, is_layer_info, parse_layer_info, strip_profile_suffix
from .layers import layer_table, onnx_nodes_from
from .run import LatencyStats, Memory, Run, TensorInfo

#: Flags trtexec 11 rejects ("Unknown option"): the weakly-typed precision flags and INT8 calibration (removed in
#: 11.0, strongly typed networks are the only kind), and flags removed earlier (10.0: --workspace, --explicitBatch,
#: --maxBatch, --buildOnly, --nvtxMode...). Checked against samples/common/sampleOptions.cpp of TensorRT 8.6, 10.0,
#: 10.16 and 11.1.
REMOVED_IN_11 = (
    "--fp16", "--bf16", "--int8", "--fp8", "--int4", "--best", "--calib", "--calibProfile", "--minShapesCalib",
    "--optShapesCalib", "--maxShapesCalib", "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes",
    "--restricted", "--weightless", "--workspace", "--explicitBatch", "--maxBatch", "--batch", "--buildOnly",
    "--nvtxMode", "--explicitPrecision", "--heuristic", "--minTiming", "--deploy", "--model", "--output", "--uff",
    "--uffInput", "--uffNHWC",
)

#: Versions :func:`command` writes for.
COMMAND_VERSIONS = (10, 11)

FILE_KINDS = ("layer_info", "profile", "times", "log", "device_metadata", "build_metadata", "profile_metadata")

# trtexec's default warm-up (ms); older trtexec (< 8.5) wrote warm-up iterations into --exportTimes files.
DEFAULT_WARMUP_MS = 200.0


# ---- recognising files ---------------------------------------------------------------------------------------

def recognize(path) -> tuple[str | None, object]:
    """(kind, parsed content) of one file, judged by its content; kind None when it is none of :data:`FILE_KINDS`."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except (OSError, UnicodeError):
        return None, None
    if "\x00" in text[:4096]:
        return None, None  # binary: an engine plan or something else
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):  # a log line starts with "[date]" too, so failing JSON is no verdict
        try:
            value = json.loads(stripped)
            return _json_kind(value), value
        except json.JSONDecodeError:
            pass
    if "TensorRT.trtexec" in text or "=== Performance summary ===" in text or "=== Profile (" in text:
        return "log", text
    return None, None


def _json_kind(value) -> str | None:
    if is_layer_info(value):
        return "layer_info"
    if isinstance(value, dict):
        if "performance_summary" in value:
            return "profile_metadata"
        if "build_options" in value or "model_options" in value:
            return "build_metadata"
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        return None
    if "count" in value[0] and all("name" in v and ("timeMs" in v or "averageMs" in v) for v in value[1:]):
        return "profile"
    if all("latencyMs" in v or "computeMs" in v for v in value):
        return "times"
    if "ComputeCapability" in value[0] and "Name" in value[0]:
        return "device_metadata"
    return None


# ---- per-layer profiles --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LayerProfile:
    """Per-layer times from ``--exportProfile`` or the log's ``=== Profile ===`` table."""

    table: pd.DataFrame  # name, time_ms (mean per inference), median_ms, total_ms, file_pct
    iterations: int
    total_ms: float  # the file's own total: the Total row of a log table, the sum of timeMs in a JSON
    source: str  # "profile JSON" or "log table"


def parse_profile_json(value: list) -> LayerProfile:
    """``--exportProfile`` JSON → per-layer times (mean per inference = total time / profiled iterations)."""
    count = int(value[0].get("count") or 0)
    rows = []
    for rec in value[1:]:
        total = float(rec.get("timeMs", np.nan))
        avg = float(rec.get("averageMs", np.nan))
        rows.append({
            "name": str(rec["name"]),
            "time_ms": total / count if count and not math.isnan(total) else avg,
            "median_ms": float(rec.get("medianMs", np.nan)),
            "total_ms": total,
            "file_pct": float(rec.get("percentage", np.nan)),
        })
    table = _numbered(pd.DataFrame(rows, columns=["name", "time_ms", "median_ms", "total_ms", "file_pct"]))
    return LayerProfile(table, count, float(table["total_ms"].sum()), "profile JSON")


_PROFILE_HEADER = re.compile(r"=== Profile \((\d+) iterations? \) ===")
_PROFILE_ROW = re.compile(r"^\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S.*?)\s*$")


def parse_profile_table(lines: list[str]) -> LayerProfile | None:
    """The last ``=== Profile (N iterations ) ===`` table of a log (lines without their ``[date] [I]`` prefix)."""
    headers = [(i, m) for i, line in enumerate(lines) if (m := _PROFILE_HEADER.search(line))]
    if not headers:
        return None
    start, header = headers[-1]
    iterations = int(header.group(1))
    rows, total = [], np.nan
    for line in lines[start + 2:]:
        m = _PROFILE_ROW.match(line)
        if not m:
            break
        time_total, avg, median, pct, name = m.groups()
        if name == "Total":
            total = float(time_total)
            break
        rows.append({"name": name, "time_ms": float(time_total) / iterations if iterations else float(avg),
                     "median_ms": float(median), "total_ms": float(time_total), "file_pct": float(pct)})
    table = _numbered(pd.DataFrame(rows, columns=["name", "time_ms", "median_ms", "total_ms", "file_pct"]))
    return LayerProfile(table, iterations, float(total), "log table")


def _numbered(table: pd.DataFrame) -> pd.DataFrame:
    """Number repeated names ``#2``, ``#3`` like :func:`workbench.layerinfo.parse_layer_info` does."""
    counts: dict[str, int] = {}
    names = []
    for name in table["name"]:
        counts[name] = counts.get(name, 0) + 1
        names.append(name if counts[name] == 1 else f"{name} #{counts[name]}")
    return table.assign(name=names)


# ---- per-iteration times -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Times:
    latency_ms: tuple[float, ...]
    wall_s: float
    warmup_dropped: int


def parse_times(value: list, warmup_ms: float) -> Times:
    """``--exportTimes`` JSON → per-inference latencies, without warm-up iterations.

    trtexec < 8.5 wrote the warm-up iterations too; like trtexec's own summary, iterations whose compute started
    before ``warmup_ms`` are left out (newer files have none). Wall time runs from the first kept H2D start to the
    last D2H end, as trtexec measures "Total Host Walltime".
    """
    kept = [rec for rec in value if float(rec.get("startComputeMs", math.inf)) >= warmup_ms]
    if not kept:
        raise WorkbenchError(f"The times file holds only warm-up iterations (all start before {warmup_ms:g} ms): "
                             "export it from a run with --duration or --iterations above the warm-up.")
    latency = tuple(float(rec.get("latencyMs", rec.get("computeMs"))) for rec in kept)
    try:
        wall = (float(kept[-1]["endD2hMs"]) - float(kept[0]["startH2dMs"])) / 1000.0
    except KeyError:
        wall = 0.0
    return Times(latency, wall, len(value) - len(kept))


# ---- logs and TREx metadata ------------------------------------------------------------------------------------

_PREFIX = re.compile(r"^\[[^\]]*\]\s*\[[A-Z]\]\s?")
_SECTION = re.compile(r"^=== (.+?) ===\s*$")
_STAT = re.compile(r"(min|max|mean|median|percentile\(([\d.]+)%\))\s*=\s*([-+\d.eE]+)")
_VERSION_TAG = re.compile(r"\[TensorRT v(\d+)\]")
_STAT_KEYS = ("Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency")


@dataclass(frozen=True, eq=False)
class TrtexecLog:
    """What a trtexec log (or TREx's metadata made from one) says."""

    sections: dict = field(default_factory=dict)  # section title -> {key: value text}
    stats: dict = field(default_factory=dict)  # "Latency" -> {"min", "max", "mean", "median", "p90", ...}
    throughput_qps: float | None = None
    host_walltime_s: float | None = None
    gpu_compute_total_s: float | None = None
    queries: int | None = None
    version: str = ""
    command: str = ""
    bindings: tuple[TensorInfo, ...] = ()
    binding_modes: tuple[str, ...] = ()
    profile: LayerProfile | None = None
    device_memory_bytes: int | None = None
    cuda_graph: bool | None = None  # "Successfully captured CUDA graph" seen (logs without Inference Options)


def parse_log(text: str) -> TrtexecLog:
    """Parse trtexec console output: options, device information, the performance summary, the profile table."""
    raw_lines = text.splitlines()
    lines = [_PREFIX.sub("", line) for line in raw_lines]
    sections: dict[str, dict] = {}
    current = None
    for line in lines:
        m = _SECTION.match(line.strip())
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        if current is None or not line.strip():
            current = None if not line.strip() else current
            continue
        key, sep, value = line.strip().partition(":")
        if sep:
            current.setdefault(key.strip(), value.strip())
    summary = sections.get("Performance summary", {})
    command, version = _command_line(raw_lines)
    bindings, modes = _log_bindings(lines)
    queries = _first_int(r"Timing trace has (\d+) queries", text)
    memory = _device_memory(text)
    return TrtexecLog(
        sections=sections,
        stats={k: _stats(summary[k]) for k in _STAT_KEYS if k in summary},
        throughput_qps=_number(summary.get("Throughput")),
        host_walltime_s=_number(summary.get("Total Host Walltime")),
        gpu_compute_total_s=_number(summary.get("Total GPU Compute Time")),
        queries=queries,
        version=_version(text, version),
        command=command,
        bindings=bindings,
        binding_modes=modes,
        profile=parse_profile_table(lines),
        device_memory_bytes=memory,
        cuda_graph=True if "Successfully captured CUDA graph" in text else None,
    )


def log_from_metadata(build: dict | None, profile: dict | None) -> TrtexecLog:
    """TREx's ``*.build.metadata.json`` / ``*.profile.metadata.json`` → the same facts as a parsed log.

    TREx stored each statistic as a list: min, max, mean, median, then the percentiles trtexec printed
    (99 by default before TensorRT 8.5; 90, 95, 99 since), so 5 values end with p99 and 7 with p90, p95, p99.
    """
    sections = {}
    build, profile = build or {}, profile or {}
    for title, key, src in (("Model Options", "model_options", build), ("Build Options", "build_options", build),
                            ("Inference Options", "inference_options", profile),
                            ("Device Information", "device_information", profile)):
        if isinstance(src.get(key), dict):
            sections[title] = {k: str(v) for k, v in src[key].items()}
    summary = profile.get("performance_summary") or {}
    stats = {k: _stats_from_list(summary[k]) for k in _STAT_KEYS if isinstance(summary.get(k), list)}
    throughput, wall = _number(summary.get("Throughput")), _number(summary.get("Total Host Walltime"))
    return TrtexecLog(
        sections=sections,
        stats=stats,
        throughput_qps=throughput,
        host_walltime_s=wall,
        gpu_compute_total_s=_number(summary.get("Total GPU Compute Time")),
        # trtexec's throughput is queries / host walltime, so their product gives the query count back
        queries=round(throughput * wall) if throughput and wall else None,
    )


def _device_memory(text: str) -> int | None:
    """Execution-context device memory: exact bytes from a verbose log, else the rounded MiB of the info line."""
    exact = re.search(r"device scratch memory of size (\d+)", text)
    if exact:
        return int(exact.group(1))
    mib = re.search(r"device memory size: ([\d.]+) MiB", text)
    return round(float(mib.group(1)) * 2**20) if mib else None


def _stats(text: str) -> dict:
    result = {}
    for key, pct, value in _STAT.findall(text):
        result[f"p{pct.rstrip('0').rstrip('.') if '.' in pct else pct}" if pct else key] = float(value)
    return result


def _stats_from_list(values: list) -> dict:
    names = ["min", "max", "mean", "median"] + (["p99"] if len(values) == 5 else ["p90", "p95", "p99"])
    return {k: float(v) for k, v in zip(names, values)}


def _number(value) -> float | None:
    if value is None:
        return None
    m = re.search(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?", str(value))
    return float(m.group(0)) if m else None


def _first_int(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


def _command_line(lines: list[str]) -> tuple[str, str]:
    for line in lines:
        if line.startswith("&&&&") and "TensorRT.trtexec" in line:
            tag = _VERSION_TAG.search(line)
            return line.partition(" # ")[2].strip(), tag.group(1) if tag else ""
    return "", ""


def _version(text: str, tag: str) -> str:
    """``TensorRT version: 10.16.1``, else decode the ``[TensorRT v101601]`` tag (8.x: v8601 = 8.6.1)."""
    m = re.search(r"TensorRT version: ([\d.]+)", text)
    if m:
        return m.group(1)
    if not tag:
        return ""
    major, minor, patch = (tag[:-4], tag[-4:-2], tag[-2:]) if len(tag) >= 6 else (tag[0], tag[1], tag[2:])
    return f"{int(major)}.{int(minor)}.{int(patch)}"


_BINDING = re.compile(r"^(Input|Output) binding for (.+?) with dimensions ([\dx]*) and type (\w+) is created")
_LOG_DTYPES = {"fp32": "float32", "fp16": "float16", "int8": "int8", "int32": "int32", "int64": "int64",
               "bool": "bool", "uint8": "uint8"}


def _log_bindings(lines: list[str]) -> tuple[tuple[TensorInfo, ...], tuple[str, ...]]:
    found: dict[str, tuple[TensorInfo, str]] = {}
    for line in lines:
        m = _BINDING.match(line.strip())
        if m:
            mode, name, dims, dtype = m.groups()
            shape = tuple(int(d) for d in dims.split("x") if d)
            found.setdefault(name, (TensorInfo(name, _LOG_DTYPES.get(dtype, ""), shape), mode.lower()))
    return tuple(t for t, _ in found.values()), tuple(m for _, m in found.values())


# ---- joining layer information and profiles ------------------------------------------------------------------

def _key(name: str) -> str:
    return " ".join(strip_profile_suffix(name).split())


def join_profile(info: pd.DataFrame | None, profile: LayerProfile) -> tuple[pd.DataFrame, list[str]]:
    """Put a profile's times on layer-information rows, matching names exactly, then without ``[profile N]``
    suffixes and extra spaces. Rows only one side has are kept (times NaN, or type unknown) and reported."""
    notes: list[str] = []
    prof = profile.table
    if info is None:
        rows = prof.drop(columns=["file_pct", "total_ms"])
        return layer_table(rows.assign(calls=profile.iterations, onnx_nodes=[_nodes(n) for n in rows["name"]])), notes
    table = info.copy()
    for col in ("time_ms", "median_ms"):
        table[col] = np.nan
    by_name = {n: i for i, n in enumerate(table["name"])}
    by_key: dict[str, int] = {}
    for i, n in enumerate(table["name"]):
        by_key.setdefault(_key(n), i)
    unmatched, used = [], set()
    for rec in prof.itertuples(index=False):
        row = by_name.get(rec.name)
        if row is None or row in used:
            row = by_key.get(_key(rec.name))
        if row is None or row in used:
            unmatched.append(rec)
            continue
        used.add(row)
        table.loc[row, ["time_ms", "median_ms"]] = [rec.time_ms, rec.median_ms]
    table["calls"] = [profile.iterations if i in used else 0 for i in range(len(table))]
    if unmatched:
        defaults = {c: _default(table[c]) for c in table.columns}
        extra = pd.DataFrame([{**defaults, "name": r.name, "time_ms": r.time_ms, "median_ms": r.median_ms,
                               "calls": profile.iterations, "onnx_nodes": _nodes(r.name)} for r in unmatched])
        table = pd.concat([table, extra], ignore_index=True)
        notes.append(f"{len(unmatched)} of {len(prof)} profiled layers are not in the layer information (kept "
                     f"with unknown type): {_names(r.name for r in unmatched)}.")
    missing = [n for i, n in enumerate(info["name"]) if i not in used]
    if missing:
        notes.append(f"{len(missing)} of {len(info)} layers have no time in the {profile.source} (kept with no "
                     f"time): {_names(missing)}.")
    if unmatched and len(unmatched) > len(prof) / 2:
        notes.append("Most profiled layers do not match the layer information: the two files may come from "
                     "different engines.")
    table["time_pct"] = np.nan
    return layer_table(table), notes


def _default(column: pd.Series):
    """The empty value of a column (rows only a profile has get these, not NaN, so a run's CSV keeps its types)."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_integer_dtype(column):
        return -1 if column.name == "stream_id" else 0
    if pd.api.types.is_float_dtype(column):
        return np.nan
    return ""


def _nodes(name: str) -> list[str]:
    """ONNX nodes of a profiled layer known only by name (``Conv_0 + Relu_1``); none for inserted reformats."""
    if name.startswith(("Reformatting CopyNode", "Reformatted ")) or re.search(r"__my[le]|_myl\d", name):
        return []  # inserted by TensorRT, or named by Myelin: no ONNX node of that name
    return onnx_nodes_from(_key(name))


def _names(names, limit: int = 5) -> str:
    names = list(names)
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ---- import --------------------------------------------------------------------------------------------------

def import_trtexec(paths, *, plan=None, name: str | None = None) -> Run:
    """Turn trtexec outputs (files or folders, recognised by content) into a Run (backend ``tensorrt``, source
    ``import``). ``plan`` is an optional engine file, kept as the run's ``engine`` artifact (Triton export)."""
    files = _collect(paths)
    found: dict[str, tuple[Path, object]] = {}
    notes: list[str] = []
    unrecognised = []
    for path in files:
        kind, value = recognize(path)
        if kind is None:
            unrecognised.append(path)
        elif kind in found:
            raise WorkbenchError(f"Two {kind.replace('_', ' ')} files: '{found[kind][0]}' and '{path}'. Import one "
                                 "engine's files at a time (one folder or one set of files per engine).")
        else:
            found[kind] = (path, value)
    if unrecognised:
        hint = " (an engine plan goes in with plan= / --plan)" if any(_binary(p) for p in unrecognised) else ""
        notes.append(f"Not recognised as trtexec output (left out){hint}: "
                     f"{', '.join(p.name for p in unrecognised)}.")
    if not set(found) & {"layer_info", "profile", "times", "log", "profile_metadata"}:
        raise WorkbenchError(f"Nothing to import in {', '.join(str(p) for p in paths)}: no layer information, "
                             "profile, times or trtexec log. Pass files written by trtexec --exportLayerInfo, "
                             "--exportProfile, --exportTimes, or its console log.")
    return _build_run(found, notes, plan=plan, name=name)


def _binary(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return b"\x00" in f.read(4096)
    except OSError:
        return False


def _collect(paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            files.append(p)
        else:
            raise WorkbenchError(f"'{p}' does not exist: pass trtexec output files or folders that hold them.")
    return files


def _build_run(found: dict, notes: list[str], *, plan, name) -> Run:
    log = _merged_log(found, notes)
    profile = _pick_profile(found, log, notes)
    info = None
    if "layer_info" in found:
        info = parse_layer_info(found["layer_info"][1], profile=_profile_index(profile, found["layer_info"][1]))
        notes += info.notes
    layers, join_notes = _layers(info, profile)
    notes += join_notes
    latency, latency_ms, times_note = _latency(found, log)
    notes += times_note
    precision, precision_source = _precision(log, info)
    config, known = _config(log, precision, info)
    model_path = _model_path(log)
    inputs, outputs = _io(info, log)
    batch = _batch(inputs, config)
    if latency is not None and batch != latency.batch:
        latency = dataclasses.replace(latency, batch=batch)
    artifacts = {kind: str(path.resolve()) for kind, (path, _) in found.items()}
    if plan is not None:
        if not Path(plan).is_file():
            raise WorkbenchError(f"Engine plan '{plan}' does not exist: pass the file trtexec --saveEngine wrote.")
        artifacts["engine"] = str(Path(plan).resolve())
    return Run(
        backend="tensorrt",
        source="import",
        name=name or "",
        layers=layers,
        config=config,
        latency=latency,
        latency_ms=latency_ms,
        memory=_memory(layers, log, plan),
        model={"name": _model_name(model_path, found), "path": model_path},
        variant={"precision": precision},
        environment=_environment(found, log),
        inputs=inputs,
        outputs=outputs,
        artifacts=artifacts,
        notes=tuple(notes),
        extra={**_extra(found, log, info, profile, precision_source), "config_from_files": known},
    )


def _batch(inputs: tuple[TensorInfo, ...], config: BuildConfig) -> int:
    """Samples per inference: the first dimension of the first input, as profiled (trtexec's qps counts inferences)."""
    if not inputs or not inputs[0].shape:
        return 1
    first = inputs[0]
    shape = config.shape_map.get(first.name) or first.shape
    return int(shape[0]) if isinstance(shape[0], int) and shape[0] > 0 else 1


def _merged_log(found: dict, notes: list[str]) -> TrtexecLog:
    """The log when there is one, else TREx metadata; the log wins where both say something."""
    meta = None
    if "build_metadata" in found or "profile_metadata" in found:
        meta = log_from_metadata(found.get("build_metadata", (None, None))[1],
                                 found.get("profile_metadata", (None, None))[1])
    if "log" not in found:
        return meta or TrtexecLog()
    log = parse_log(found["log"][1])
    if meta is None:
        return log
    sections = {**meta.sections, **{k: {**meta.sections.get(k, {}), **v} for k, v in log.sections.items()}}
    notes.append("Both a trtexec log and TREx metadata were given; where both have a value the log's is used.")
    return TrtexecLog(
        sections=sections,
        stats=log.stats or meta.stats,
        throughput_qps=log.throughput_qps or meta.throughput_qps,
        host_walltime_s=log.host_walltime_s or meta.host_walltime_s,
        gpu_compute_total_s=log.gpu_compute_total_s or meta.gpu_compute_total_s,
        queries=log.queries or meta.queries,
        version=log.version, command=log.command, bindings=log.bindings, binding_modes=log.binding_modes,
        profile=log.profile, device_memory_bytes=log.device_memory_bytes, cuda_graph=log.cuda_graph,
    )


def _pick_profile(found: dict, log: TrtexecLog, notes: list[str]) -> LayerProfile | None:
    if "profile" in found:
        if log.profile is not None:
            notes.append("Per-layer times come from the profile JSON; the log's === Profile === table (rounded) "
                         "was not used.")
        return parse_profile_json(found["profile"][1])
    return log.profile


def _profile_index(profile: LayerProfile | None, layer_info) -> int:
    """The optimization profile a per-layer profile timed: names of profile k > 0 end in `` [profile k]``."""
    names = [str(layer.get("Name", "")) for layer in layer_info.get("Layers", []) if isinstance(layer, dict)]
    available = {int(m.group(1)) if m else 0 for m in (re.search(r"\[profile (\d+)\]\s*$", n) for n in names)}
    wanted = 0
    if profile is not None and len(profile.table):
        m = re.search(r"\[profile (\d+)\]\s*$", profile.table["name"].iloc[0])
        wanted = int(m.group(1)) if m else 0
    return wanted if wanted in available or not available else min(available)


def _layers(info: LayerInfo | None, profile: LayerProfile | None) -> tuple[pd.DataFrame, list[str]]:
    if profile is None:
        return (info.layers if info else layer_table([])), []
    return join_profile(info.layers if info else None, profile)


def _warmup_ms(log: TrtexecLog) -> tuple[float, bool]:
    """The run's warm-up in ms from ``Duration: 3s (+ 200ms warm up)``, or trtexec's default (known=False)."""
    duration = log.sections.get("Inference Options", {}).get("Duration", "")
    m = re.search(r"\(\+\s*([\d.]+)\s*ms warm ?up\)", duration)
    return (float(m.group(1)), True) if m else (DEFAULT_WARMUP_MS, False)


def _latency(found: dict, log: TrtexecLog) -> tuple[LatencyStats | None, tuple, list[str]]:
    if "times" in found:
        warmup, known = _warmup_ms(log)
        times = parse_times(found["times"][1], warmup)
        notes = []
        if times.warmup_dropped:
            notes.append(f"Left out {times.warmup_dropped} warm-up iterations of the times file (compute started "
                         f"before {warmup:g} ms{'' if known else ', trtexec default warm-up'}), as trtexec's "
                         "summary does.")
        stats = LatencyStats.from_times(times.latency_ms, wall_s=times.wall_s or None)
        return stats, times.latency_ms, notes
    lat = log.stats.get("Latency")
    if not lat:
        return None, (), []
    nan = float("nan")
    stats = LatencyStats(
        mean_ms=lat.get("mean", nan), p50_ms=lat.get("median", nan), p90_ms=lat.get("p90", nan),
        p99_ms=lat.get("p99", nan), min_ms=lat.get("min", nan), max_ms=lat.get("max", nan), std_ms=nan,
        throughput_qps=log.throughput_qps if log.throughput_qps else 1000.0 / lat["mean"],
        samples=int(log.queries or round((log.throughput_qps or 0) * (log.host_walltime_s or 0))),
    )
    return stats, (), ["Latency statistics come from trtexec's performance summary (no per-iteration times "
                       "file): no standard deviation or histogram."]


_PRECISION_FLAGS = (("--best", "int8"), ("--fp8", "fp8"), ("--int8", "int8"), ("--fp16", "fp16"),
                    ("--bf16", "bf16"), ("--noTF32", "fp32"))


def _precision(log: TrtexecLog, info: LayerInfo | None) -> tuple[str, str]:
    """(precision, where it came from): command-line flags, then the build options, then the layers' types."""
    args = shlex.split(log.command) if log.command else []
    for flag, precision in _PRECISION_FLAGS:
        if flag in args:
            return precision, f"trtexec flag {flag}"
    text = log.sections.get("Build Options", {}).get("Precision", "")
    if text and "strongly" not in text.lower():
        for token, precision in (("FP8", "fp8"), ("INT8", "int8"), ("FP16", "fp16"), ("BF16", "bf16")):
            if token in text.upper():
                return precision, f"build options Precision: {text}"
        return "fp32", f"build options Precision: {text}"
    if info is not None and len(info.layers):
        return guess_precision(info.layers), "the layers' output types"
    return "fp32", "unknown (assumed fp32)"


def _config(log: TrtexecLog, precision: str, info: LayerInfo | None = None) -> tuple[BuildConfig, list[str]]:
    """The BuildConfig as far as the files tell, and the names of the fields they told (the rest are defaults)."""
    inf = log.sections.get("Inference Options", {})
    build = log.sections.get("Build Options", {})
    args = _flags(log.command)
    kwargs: dict = {"precision": precision}
    shapes = args.get("--shapes") or inf.get("Input inference shape") or inf.get("Input inference shapes")
    if shapes and shapes != "model":
        kwargs["shapes"] = _shape_spec(shapes)
    ranges = [dict(_shape_spec(args[k])) for k in ("--minShapes", "--optShapes", "--maxShapes") if k in args]
    if len(ranges) == 3 and ranges[0].keys() == ranges[1].keys() == ranges[2].keys():
        # an input with min = opt = max is static: its shape stays in ``shapes``, not in a range
        kwargs["profiles"] = tuple(ShapeRange(n, mn, ranges[1][n], ranges[2][n]) for n, mn in ranges[0].items()
                                   if not mn == ranges[1][n] == ranges[2][n])
    elif info is not None:  # 11.x layer information records each input's profile range
        kwargs["profiles"] = tuple(ShapeRange(t.name, t.min_shape, t.opt_shape, t.max_shape) for t in info.io_tensors
                                   if t.min_shape and t.opt_shape and t.max_shape and t.min_shape != t.max_shape)
    duration = re.match(r"\s*([\d.]+)\s*s", inf.get("Duration", ""))
    warmup, known = _warmup_ms(log)
    if duration:
        kwargs["duration_s"] = float(duration.group(1))
    if known:
        kwargs["warmup_ms"] = warmup
    iterations = _number(inf.get("Iterations"))
    if iterations:
        kwargs["iterations"] = max(1, int(iterations))
    if "CUDA Graph" in inf:
        kwargs["cuda_graph"] = inf["CUDA Graph"].lower().startswith("enabled")
    elif log.cuda_graph is not None:
        kwargs["cuda_graph"] = log.cuda_graph
    level = _number(build.get("BuilderOptimizationLevel") or args.get("--builderOptimizationLevel"))
    if level is not None:
        kwargs["optimization_level"] = int(level)
    if build.get("Sparsity", "").lower().startswith("enabled") or args.get("--sparsity") in ("enable", "force"):
        kwargs["sparsity"] = True
    workspace = re.search(r"workspace:\s*([\d.]+)\s*MiB", build.get("Memory Pools", ""))
    flag = re.search(r"workspace:([\d.]+)([KMG]?)", args.get("--memPoolSize", ""))
    if workspace:
        kwargs["workspace_bytes"] = int(float(workspace.group(1)) * 2**20)
    elif flag:  # trtexec reads pool sizes in MiB unless suffixed
        kwargs["workspace_bytes"] = int(float(flag.group(1)) * 2 ** {"K": 10, "M": 20, "G": 30, "": 20}[flag.group(2)])
    try:
        return BuildConfig(**kwargs), sorted(kwargs)
    except WorkbenchError:
        return BuildConfig(precision=precision), ["precision"]  # odd values in a log must not stop an import


def _flags(command: str) -> dict[str, str]:
    flags = {}
    for arg in shlex.split(command) if command else []:
        if arg.startswith("--"):
            key, _, value = arg.partition("=")
            flags[key] = value
    return flags


def _shape_spec(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``x:4x1x28x28`` (command line) or ``input.1=32x3x224x224`` (log) → ((name, shape), ...)."""
    result = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, dims = item.rpartition(":") if ":" in item else item.rpartition("=")
        try:
            result.append((name.strip().strip("'"), tuple(int(d) for d in dims.split("x") if d)))
        except ValueError:
            continue
    return tuple(result)


def _model_path(log: TrtexecLog) -> str:
    args = _flags(log.command)
    return (args.get("--onnx") or log.sections.get("Model Options", {}).get("Model")
            or args.get("--loadEngine") or "")


_NAME_END = re.compile(r"\.(onnx|engine|plan|trt|layerinfo|layers|graph|profile|timing|times|metadata|json|log|txt)"
                       r"\b.*$", re.IGNORECASE)


def _model_name(model_path: str, found: dict) -> str:
    """``resnet.onnx`` → resnet; without a model path, the first file's name up to its trtexec suffixes."""
    name = Path(model_path).name if model_path else next(iter(found.values()))[0].name
    return _NAME_END.sub("", name) or "model"


def _io(info: LayerInfo | None, log: TrtexecLog) -> tuple[tuple, tuple]:
    if info is not None and info.io_tensors:
        return info.inputs, info.outputs
    ins = tuple(t for t, m in zip(log.bindings, log.binding_modes) if m == "input")
    outs = tuple(t for t, m in zip(log.bindings, log.binding_modes) if m == "output")
    return ins, outs


def _memory(layers: pd.DataFrame, log: TrtexecLog, plan) -> Memory:
    has_info = len(layers) and (layers["activation_bytes"].sum() or layers["weight_bytes"].sum())
    return Memory(
        weights_bytes=int(layers["weight_bytes"].sum()) if has_info else None,
        activations_bytes=int(layers["activation_bytes"].sum()) if has_info else None,
        engine_device_bytes=log.device_memory_bytes,
        plan_bytes=Path(plan).stat().st_size if plan else None,
    )


def _environment(found: dict, log: TrtexecLog) -> dict:
    dev = log.sections.get("Device Information", {})
    gpu = {"name": dev.get("Selected Device"), "compute_capability": dev.get("Compute Capability"),
           "memory_bytes": _mib(dev.get("Device Global Memory"))}
    cuda = None
    if "device_metadata" in found:
        d = found["device_metadata"][1][0]
        gpu = {"name": d.get("Name") or gpu["name"],
               "compute_capability": ".".join(map(str, d.get("ComputeCapability", []))) or gpu["compute_capability"],
               "memory_bytes": d.get("TotalMemory") or gpu["memory_bytes"]}
        cuda = ".".join(map(str, d.get("CUDA_VERSION", []))) or None
    if gpu["compute_capability"] is not None:
        gpu["compute_capability"] = str(gpu["compute_capability"])
    return {
        "source": "trtexec import",
        "gpu": gpu["name"],
        "gpus": [{"index": 0, **gpu}] if gpu["name"] else [],
        "versions": {"tensorrt": log.version or None, "cuda": cuda},
    }


def _mib(text) -> int | None:
    value = _number(text)
    return int(value * 2**20) if value is not None and "MiB" in str(text) else None


_OPTION_SECTIONS = ("Model Options", "Build Options", "System Options", "Inference Options", "Reporting Options",
                    "Device Information")


def _extra(found: dict, log: TrtexecLog, info: LayerInfo | None, profile: LayerProfile | None,
           precision_source: str) -> dict:
    extra: dict = {
        "import": {kind: path.name for kind, (path, _) in found.items()},
        "precision_source": precision_source,
    }
    if log.stats or log.throughput_qps:
        extra["trtexec_summary"] = {
            "throughput_qps": log.throughput_qps, "host_walltime_s": log.host_walltime_s,
            "gpu_compute_total_s": log.gpu_compute_total_s, "queries": log.queries, **log.stats,
        }
    if log.command:
        extra["trtexec_command"] = log.command
    options = {k: v for k, v in log.sections.items() if k in _OPTION_SECTIONS}
    if options:
        extra["trtexec_options"] = options
    if info is not None:
        extra["layer_info"] = {"schema": info.schema, "profiles": info.profiles, "profile": info.profile,
                               "engine_metadata": info.engine_metadata}
    if profile is not None:
        extra["profile"] = {"source": profile.source, "iterations": profile.iterations,
                            "total_ms": profile.total_ms}
    return extra


# ---- the trtexec command line ----------------------------------------------------------------------------------

def command(config: BuildConfig, onnx_path, *, engine_path=None, version: int = 11, exports: bool = True,
            timing_cache_path=None) -> str:
    """The trtexec command that builds and profiles like ``config`` (TensorRT 11 syntax; ``version=10`` for 10.x).

    Precision lives in the ONNX graph (ModelOpt Q/DQ or AutoCast casts): 11.x networks are always strongly typed;
    10.x needs ``--stronglyTyped`` for such graphs. ``fp32`` adds ``--noTF32``. With ``exports`` the command also
    writes layer information, the per-layer profile and per-iteration times next to the engine, ready for
    ``workbench import``. The result never holds a flag of :data:`REMOVED_IN_11`.
    """
    if version not in COMMAND_VERSIONS:
        raise WorkbenchError(f"Cannot write a trtexec command for TensorRT {version}: choose 10 or 11.")
    onnx = Path(onnx_path)
    engine = Path(engine_path) if engine_path else onnx.with_name(f"{onnx.stem}.{config.precision}.plan")
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}"]
    if version == 10 and config.precision in GRAPH_PRECISIONS:
        args.append("--stronglyTyped")
    if config.precision == "fp32":
        args.append("--noTF32")
    args += _build_flags(config, timing_cache_path)
    args += _shape_flags(config)
    args += _timing_flags(config, version)
    if exports:
        base = engine.with_suffix("")
        args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={base}.layers.json",
                 f"--exportProfile={base}.profile.json", f"--exportTimes={base}.times.json", "--dumpProfile"]
        if version == 10:
            args.append("--separateProfileRun")  # always on (and deprecated) in 11
    return " ".join(shlex.quote(a) for a in args)


def _build_flags(config: BuildConfig, timing_cache_path) -> list[str]:
    args = []
    if config.workspace_bytes:
        args.append(f"--memPoolSize=workspace:{_mib_text(config.workspace_bytes)}")
    if config.optimization_level != 3:
        args.append(f"--builderOptimizationLevel={config.optimization_level}")
    if config.sparsity:
        args.append("--sparsity=enable")
    if config.timing_cache:
        args.append(f"--timingCacheFile={timing_cache_path or 'timing.cache'}")
    else:
        args.append("--noBuilderCache")
    return args


def _mib_text(n: int) -> str:
    """trtexec reads pool sizes in MiB unless suffixed; keep it exact with a K suffix when needed."""
    return f"{n // 2**20}M" if n % 2**20 == 0 else f"{n / 1024:g}K"


def _shape_flags(config: BuildConfig) -> list[str]:
    shapes = dict(config.shapes)
    args = []
    if config.profiles:
        ranged = {r.name for r in config.profiles}
        fixed = [(n, s) for n, s in config.shapes if n not in ranged]  # static inputs: min = opt = max
        for flag, attr in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
            spec = [(r.name, getattr(r, attr)) for r in config.profiles] + fixed
            args.append(f"{flag}={_spec(spec)}")
        for r in config.profiles:
            shapes.setdefault(r.name, r.opt)
    if shapes:
        args.append(f"--shapes={_spec(shapes.items())}")
    return args


def _spec(items) -> str:
    # trtexec splits specs at ',' and ':'; names holding those go in single quotes
    return ",".join(f"{_quoted(n)}:{format_shape(s)}" for n, s in items)


def _quoted(name: str) -> str:
    return f"'{name}'" if any(c in name for c in ",:") else name


def _timing_flags(config: BuildConfig, version: int) -> list[str]:
    args = [f"--warmUp={config.warmup_ms:g}", f"--iterations={config.iterations}",
            f"--duration={config.duration_s:g}"]
    if version == 11:
        if not config.cuda_graph:
            args.append("--noCudaGraph")  # 11 captures a CUDA graph unless told not to
    else:
        if config.cuda_graph:
            args.append("--useCudaGraph")
        args.append("--noDataTransfers")  # time the engine alone, as 11 does by default
    return args


def command_for_run(run: Run, *, version: int = 11) -> str:
    """The trtexec command equivalent to a run (its config, ONNX file and engine when known)."""
    onnx = run.artifact("onnx") or run.model.get("path") or f"{run.model.get('name') or 'model'}.onnx"
    if str(onnx).endswith((".plan", ".engine", ".trt")):  # an import that only knows the loaded engine
        onnx = Path(onnx).with_suffix(".onnx")
    return command(run.config, onnx, engine_path=run.artifact("engine"), version=version)
