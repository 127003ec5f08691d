"""Per-layer times joined onto layer information: one join for TensorRT's own profiler (the TensorRT backends) and
for trtexec's ``--exportProfile`` / ``=== Profile ===`` table (imports). Names match exactly, then without
``[profile N]`` suffixes and extra spaces; rows only one side has are kept and reported in notes."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .layerinfo import REFORMAT_PREFIXES, strip_profile_suffix
from .layers import layer_table, onnx_nodes_from


@dataclass(frozen=True, eq=False)
class LayerProfile:
    """Per-layer times from ``--exportProfile`` or the log's ``=== Profile ===`` table."""

    table: pd.DataFrame  # name, time_ms (mean per inference), median_ms, total_ms, file_pct (p90_ms: IProfiler)
    iterations: int
    total_ms: float  # the file's own total: the Total row of a log table, the sum of timeMs in a JSON
    source: str  # "profile JSON" or "log table"


def _key(name: str) -> str:
    return " ".join(strip_profile_suffix(name).split())


def join_profile(info: pd.DataFrame | None, profile: LayerProfile) -> tuple[pd.DataFrame, list[str]]:
    """Put a profile's times on layer-information rows, matching names exactly, then without ``[profile N]``
    suffixes and extra spaces. Rows only one side has are kept (times NaN, or type unknown) and reported."""
    notes: list[str] = []
    prof = profile.table
    if info is None:
        rows = prof.drop(columns=["file_pct", "total_ms"])
        return layer_table(
            rows.assign(calls=profile.iterations, onnx_nodes=[layer_onnx_nodes(n) for n in rows["name"]])
        ), notes
    table = info.copy()
    # filled in arrays and set once: a row-by-row .loc assignment costs milliseconds per row on big engines
    times, medians, p90s = (np.full(len(table), np.nan) for _ in range(3))
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
        times[row], medians[row] = rec.time_ms, rec.median_ms
        p90s[row] = getattr(rec, "p90_ms", np.nan)  # an IProfiler's times have it; a trtexec profile does not
    table["time_ms"], table["median_ms"], table["p90_ms"] = times, medians, p90s
    table["calls"] = [profile.iterations if i in used else 0 for i in range(len(table))]
    if unmatched:
        defaults = {c: _default(table[c]) for c in table.columns}
        extra = pd.DataFrame(
            [
                {
                    **defaults,
                    "name": r.name,
                    "time_ms": r.time_ms,
                    "median_ms": r.median_ms,
                    "p90_ms": getattr(r, "p90_ms", np.nan),
                    "calls": profile.iterations,
                    "onnx_nodes": layer_onnx_nodes(r.name),
                }
                for r in unmatched
            ]
        )
        table = pd.concat([table, extra], ignore_index=True)
        notes.append(
            f"{len(unmatched)} of {len(prof)} profiled layers are not in the layer information (kept "
            f"with unknown type): {quoted_names(r.name for r in unmatched)}."
        )
    missing = [n for i, n in enumerate(info["name"]) if i not in used]
    if missing:
        notes.append(
            f"{len(missing)} of {len(info)} layers have no time in the {profile.source} (kept with no "
            f"time): {quoted_names(missing)}."
        )
    if unmatched and len(unmatched) > len(prof) / 2:
        notes.append(
            "Most profiled layers do not match the layer information: the two files may come from different engines."
        )
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


def layer_onnx_nodes(name: str) -> list[str]:
    """ONNX nodes of a profiled layer known only by name (``Conv_0 + Relu_1``); none for inserted reformats."""
    if name.startswith(REFORMAT_PREFIXES) or re.search(r"__my[le]|_myl\d", name):
        return []  # inserted by TensorRT, or named by Myelin: no ONNX node of that name
    return onnx_nodes_from(_key(name))


def quoted_names(names, limit: int = 5) -> str:
    """``'a', 'b', 'c' and 2 more``: the first ``limit`` names, for a note."""
    names = list(names)
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ---- import --------------------------------------------------------------------------------------------------
