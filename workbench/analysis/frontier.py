"""A sweep's points as one table and its Pareto front over latency, accuracy error and memory.

:func:`sweep_table` columns: ``index``, ``point`` (label), ``state``, ``reason``, ``run``, ``precision``, ``batch``,
``workspace_bytes``, ``optimization_level``, ``latency_ms`` (mean per inference), ``p99_ms``, ``samples_per_s``
(throughput × batch), ``error`` (``attrs["error_metric"]``, see :data:`workbench.analysis.compare.ERROR_METRICS`),
``memory_bytes`` (``attrs["memory"]`` says which measure), ``front`` (True when no other done point is at least as
good on all three of latency, error and memory and better on one). A point lacking one of the three is never on
the front.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .compare import ERROR_METRICS, _error, error_metric

#: The objectives of the front, all lower-is-better.
OBJECTIVES = ("latency_ms", "error", "memory_bytes")
#: What "best per objective" reports: column → (label, "min" or "max").
BEST = {
    "latency_ms": ("lowest latency", "min"),
    "samples_per_s": ("highest throughput", "max"),
    "error": ("lowest accuracy error", "min"),
    "memory_bytes": ("least memory", "min"),
}


def memory_measure(runs) -> tuple[str, callable]:
    """The memory figure every run has: GPU memory in use (NVML) where all runs have it, else weights plus
    activations (summed layer outputs for one inference)."""
    if runs and all(r.memory.gpu_used_bytes is not None for r in runs):
        return "GPU memory in use (NVML)", lambda r: r.memory.gpu_used_bytes
    return (
        "weights + activations (summed layer outputs)",
        lambda r: (
            None
            if r.memory.weights_bytes is None and r.memory.activations_bytes is None
            else (r.memory.weights_bytes or 0) + (r.memory.activations_bytes or 0)
        ),
    )


def sweep_table(points: list[dict], runs) -> pd.DataFrame:
    """One row per point of a sweep record (done or not), with its run's figures where it has one."""
    runs = list(runs)
    by_id = {r.id: r for r in runs}
    metric = error_metric(runs) if runs else "max_abs_error"
    memory_label, memory = memory_measure(runs)
    rows = []
    for p in points:
        run = by_id.get(p.get("run"))
        config = p["config"]
        lat = run.latency if run is not None else None
        rows.append(
            {
                "index": p["index"],
                "point": p["label"],
                "state": p["state"],
                "reason": p.get("reason") or "",
                "run": run.id if run is not None else "",
                "precision": config["precision"],
                "batch": lat.batch if lat else p.get("batch"),  # the batch the run measured
                "workspace_bytes": config.get("workspace_bytes"),
                "optimization_level": config.get("optimization_level"),
                "latency_ms": lat.mean_ms if lat else np.nan,
                "p99_ms": lat.p99_ms if lat else np.nan,
                "samples_per_s": lat.throughput_qps * lat.batch if lat else np.nan,
                "error": _error(run, metric) if run is not None else np.nan,
                "memory_bytes": memory(run) if run is not None else np.nan,
                "seconds": p.get("seconds"),
                "worker": p.get("worker") or "",
            }
        )
    df = pd.DataFrame(
        rows,
        columns=[
            "index",
            "point",
            "state",
            "reason",
            "run",
            "precision",
            "batch",
            "workspace_bytes",
            "optimization_level",
            "latency_ms",
            "p99_ms",
            "samples_per_s",
            "error",
            "memory_bytes",
            "seconds",
            "worker",
        ],
    )
    for column in ("latency_ms", "p99_ms", "samples_per_s", "error", "memory_bytes"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    df["front"] = pareto_front(df)
    df.attrs["error_metric"] = metric
    df.attrs["error_label"] = ERROR_METRICS[metric]
    df.attrs["memory"] = memory_label
    return df


def pareto_front(df: pd.DataFrame, objectives=OBJECTIVES) -> pd.Series:
    """True for rows no other row dominates (lower or equal on every objective, lower on one); rows with a
    missing objective are False."""
    values = df[list(objectives)].to_numpy(dtype=float)
    complete = ~np.isnan(values).any(axis=1)
    front = np.zeros(len(df), dtype=bool)
    for i in np.flatnonzero(complete):
        others = values[complete]
        dominated = np.any(np.all(others <= values[i], axis=1) & np.any(others < values[i], axis=1))
        front[i] = not dominated
    return pd.Series(front, index=df.index)


def best_points(df: pd.DataFrame) -> dict[str, dict]:
    """The best done point per objective (:data:`BEST`): ``{column: {"label", "point", "run", "value"}}``."""
    best = {}
    for column, (label, how) in BEST.items():
        shown = df.dropna(subset=[column])
        if shown.empty:
            continue
        row = shown.loc[shown[column].idxmin() if how == "min" else shown[column].idxmax()]
        best[column] = {"label": label, "point": row["point"], "run": row["run"], "value": float(row[column])}
    return best
