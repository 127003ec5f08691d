"""Serving runs (``Run.serving``) as points of latency against throughput, their Pareto front and the best point
under a p99 budget — what Model Analyzer reported for a set of Triton model configurations."""

from __future__ import annotations

import pandas as pd

from .frontier import pareto_front

COLUMNS = [
    "run",
    "config",
    "concurrency",
    "throughput_rps",
    "samples_per_s",
    "p50_ms",
    "p99_ms",
    "batch",
    "queue_ms",
    "compute_infer_ms",
    "counts_agree",
    "front",
]


def serving_points(runs) -> pd.DataFrame:
    """One row per (serving run, concurrency level); ``front`` marks the Pareto front over (p99 lower, throughput
    higher) across all of them. Runs without ``serving`` are left out."""
    rows = []
    for run in runs:
        serving = run.serving
        if serving is None:
            continue
        for level in serving.levels:
            rows.append(
                {
                    "run": run.id,
                    "config": serving.config.label,
                    "concurrency": level.concurrency,
                    "throughput_rps": level.throughput_rps,
                    "samples_per_s": level.throughput_rps * serving.samples_per_request,
                    "p50_ms": level.p50_ms,
                    "p99_ms": level.p99_ms,
                    "batch": level.batch,
                    "queue_ms": level.queue_ms,
                    "compute_infer_ms": level.compute_infer_ms,
                    "counts_agree": level.counts_agree,
                }
            )
    df = pd.DataFrame(rows, columns=COLUMNS[:-1])
    df["front"] = _front(df)
    return df


def _front(df: pd.DataFrame) -> pd.Series:
    """True where no other point has p99 as low or lower and throughput as high or higher (one strictly better)."""
    return pareto_front(df.assign(slowness=-df["throughput_rps"]), ("p99_ms", "slowness"))


def best_under(points: pd.DataFrame, p99_budget_ms: float | None) -> pd.Series | None:
    """The point with the highest throughput whose p99 is within the budget (any p99 when None); None if none is."""
    within = points if p99_budget_ms is None else points[points["p99_ms"] <= p99_budget_ms]
    if within.empty:
        return None
    return within.loc[within["throughput_rps"].idxmax()]
