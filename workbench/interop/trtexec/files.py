"""Reading each kind of trtexec output on its own: recognising a file by content, per-layer profiles,
per-iteration times, console logs and TREx metadata. :mod:`workbench.interop.trtexec.importer` joins them into a Run."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import WorkbenchError
from ...paths import read_user_file
from ...results.layerinfo import dtype_of, is_layer_info, number_repeats, numpy_name
from ...results.profile import LayerProfile
from ...results.run import TensorInfo
from .layerdump import LOG_PREFIX, parse_layer_dump

#: The largest trtexec output read (a 1.3-million-layer engine's layer information is about 420 MB).
MAX_IMPORT_BYTES = 1 << 30
FILE_KINDS = ("layer_info", "profile", "times", "log", "device_metadata", "build_metadata", "profile_metadata")


# ---- recognising files ---------------------------------------------------------------------------------------


def recognize(path) -> tuple[str | None, object]:
    """(kind, parsed content) of one file, judged by its content; kind None when it is none of :data:`FILE_KINDS`.

    Only a regular file is opened, and its first 4 KiB are looked at before the rest is read: a binary file (an
    engine plan, a sparse file of zeros) is passed over unread; a text file larger than :data:`MAX_IMPORT_BYTES` is
    refused with one line naming it (a 2 GiB profile would cost GBs of memory as text and JSON).
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None, None  # a pipe would block the read, a device never end
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None, None
    if b"\x00" in head:
        return None, None  # binary: an engine plan or something else
    data = read_user_file(
        path, "trtexec output", limit=MAX_IMPORT_BYTES, fix="import the files of one trtexec run, not this one"
    )
    text = data.decode("utf-8", errors="replace")
    del data
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):  # a log line starts with "[date]" too, so failing JSON is no verdict
        try:
            value = json.loads(stripped)
            return _json_kind(value), value
        except (ValueError, RecursionError):  # not JSON, or nested deeper than any trtexec output
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


def parse_profile_json(value: list) -> LayerProfile:
    """``--exportProfile`` JSON → per-layer times (mean per inference = total time / profiled iterations)."""
    count = int(value[0].get("count") or 0)
    rows = [
        _profile_row(
            str(r["name"]), count, *(float(r.get(k, np.nan)) for k in ("timeMs", "averageMs", "medianMs", "percentage"))
        )
        for r in value[1:]
    ]
    table = _profile_table(rows)
    return LayerProfile(table, count, float(table["total_ms"].sum()), "profile JSON")


def _profile_row(name: str, iterations: int, total: float, average: float, median: float, pct: float) -> dict:
    """A layer's profile row: its mean time per inference is its total over the profiled iterations."""
    time_ms = total / iterations if iterations and not math.isnan(total) else average
    return {"name": name, "time_ms": time_ms, "median_ms": median, "total_ms": total, "file_pct": pct}


def _profile_table(rows: list[dict]) -> pd.DataFrame:
    """Profile rows as a table; repeated names numbered like the layer information's
    (see :func:`workbench.results.layerinfo.number_repeats`)."""
    table = pd.DataFrame(rows, columns=["name", "time_ms", "median_ms", "total_ms", "file_pct"])
    return table.assign(name=number_repeats(table["name"])[0])


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
    for line in lines[start + 2 :]:
        m = _PROFILE_ROW.match(line)
        if not m:
            break
        time_total, avg, median, pct, name = m.groups()
        if name == "Total":
            total = float(time_total)
            break
        rows.append(_profile_row(name, iterations, float(time_total), float(avg), float(median), float(pct)))
    return LayerProfile(_profile_table(rows), iterations, float(total), "log table")


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
        raise WorkbenchError(
            f"The times file holds only warm-up iterations (all start before {warmup_ms:g} ms): "
            "export it from a run with --duration or --iterations above the warm-up."
        )
    latency = tuple(float(rec.get("latencyMs", rec.get("computeMs"))) for rec in kept)
    try:
        wall = (float(kept[-1]["endD2hMs"]) - float(kept[0]["startH2dMs"])) / 1000.0
    except KeyError:
        wall = 0.0
    return Times(latency, wall, len(value) - len(kept))


# ---- logs and TREx metadata ------------------------------------------------------------------------------------

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
    layer_dump: object = None  # workbench.interop.trtexec.layerdump.LayerDump (--dumpLayerInfo), or None
    sizes: dict = field(default_factory=dict)  # engine_bytes, weights_bytes, build_seconds... (see _log_sizes)


def parse_log(text: str) -> TrtexecLog:
    """Parse trtexec console output: options, device information, the performance summary, the profile table."""
    raw_lines = text.splitlines()
    lines = [LOG_PREFIX.sub("", line) for line in raw_lines]
    sections: dict[str, dict] = {}
    current = None
    for line in lines:
        m = _SECTION.match(line.strip())
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        if not line.strip():
            current = None  # a blank line ends a section
            continue
        if current is None:
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
        throughput_qps=first_number(summary.get("Throughput")),
        host_walltime_s=first_number(summary.get("Total Host Walltime")),
        gpu_compute_total_s=first_number(summary.get("Total GPU Compute Time")),
        queries=queries,
        version=_version(text, version),
        command=command,
        bindings=bindings,
        binding_modes=modes,
        profile=parse_profile_table(lines),
        device_memory_bytes=memory,
        cuda_graph=True if "Successfully captured CUDA graph" in text else None,
        # not splitlines(): it also splits at \x1e, which separates the ONNX nodes in a layer's Metadata
        layer_dump=parse_layer_dump(text.replace("\r\n", "\n").split("\n")),
        sizes=_log_sizes(text),
    )


#: Sizes and times a log states: key -> (pattern, scale of the captured number to bytes or seconds).
_SIZE_PATTERNS = {
    "engine_bytes": (r"(?:Loaded engine size|Created engine with size|Engine size):\s*([\d.]+)\s*MiB", 2**20),
    "weights_bytes": (r"Total Weights Memory:\s*(\d+)\s*bytes", 1),
    "activation_bytes": (r"Total Activation Memory:\s*(\d+)\s*bytes", 1),
    "build_seconds": (r"Engine built in\s*([\d.]+)\s*sec", 1),
}


def _log_sizes(text: str) -> dict:
    """Engine, weight and activation sizes (bytes) and the build time (s) the log states, where it states them;
    an engine size in MiB is rounded by trtexec, ``engine_size_rounded`` says so."""
    sizes: dict = {}
    for key, (pattern, scale) in _SIZE_PATTERNS.items():
        m = re.search(pattern, text)
        if m:
            value = float(m.group(1)) * scale
            sizes[key] = value if key == "build_seconds" else int(round(value))
    if "engine_bytes" in sizes:
        sizes["engine_size_rounded"] = True
    return sizes


def log_from_metadata(build: dict | None, profile: dict | None) -> TrtexecLog:
    """TREx's ``*.build.metadata.json`` / ``*.profile.metadata.json`` → the same facts as a parsed log.

    TREx stored each statistic as a list: min, max, mean, median, then the percentiles trtexec printed
    (99 by default before TensorRT 8.5; 90, 95, 99 since), so 5 values end with p99 and 7 with p90, p95, p99.
    """
    sections = {}
    build, profile = build or {}, profile or {}
    for title, key, src in (
        ("Model Options", "model_options", build),
        ("Build Options", "build_options", build),
        ("Inference Options", "inference_options", profile),
        ("Device Information", "device_information", profile),
    ):
        if isinstance(src.get(key), dict):
            sections[title] = {k: str(v) for k, v in src[key].items()}
    summary = profile.get("performance_summary") or {}
    stats = {k: _stats_from_list(summary[k]) for k in _STAT_KEYS if isinstance(summary.get(k), list)}
    throughput, wall = first_number(summary.get("Throughput")), first_number(summary.get("Total Host Walltime"))
    return TrtexecLog(
        sections=sections,
        stats=stats,
        throughput_qps=throughput,
        host_walltime_s=wall,
        gpu_compute_total_s=first_number(summary.get("Total GPU Compute Time")),
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
    """``min = 1.2 ms, ..., percentile(99%) = 2.5 ms`` → {"min": 1.2, ..., "p99": 2.5}."""
    return {
        (f"p{pct.rstrip('0').rstrip('.') if '.' in pct else pct}" if pct else key): float(value)
        for key, pct, value in _STAT.findall(text)
    }


def _stats_from_list(values: list) -> dict:
    names = ["min", "max", "mean", "median"] + (["p99"] if len(values) == 5 else ["p90", "p95", "p99"])
    return {k: float(v) for k, v in zip(names, values)}


def first_number(value) -> float | None:
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
    if len(tag) < 3 or not tag.isdigit():  # a tag too short to decode says nothing
        return ""
    major, minor, patch = (tag[:-4], tag[-4:-2], tag[-2:]) if len(tag) >= 6 else (tag[0], tag[1], tag[2:])
    return f"{int(major)}.{int(minor)}.{int(patch)}"


_BINDING = re.compile(r"^(Input|Output) binding for (.+?) with dimensions ([\dx]*) and type (\w+) is created")


def _log_bindings(lines: list[str]) -> tuple[tuple[TensorInfo, ...], tuple[str, ...]]:
    found: dict[str, tuple[TensorInfo, str]] = {}
    for line in lines:
        m = _BINDING.match(line.strip())
        if m:
            mode, name, dims, dtype = m.groups()
            shape = tuple(int(d) for d in dims.split("x") if d)
            found.setdefault(name, (TensorInfo(name, numpy_name(dtype_of(dtype)[0]), shape), mode.lower()))
    return tuple(t for t, _ in found.values()), tuple(m for _, m in found.values())
