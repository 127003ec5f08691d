"""Plotly figures from Runs. Pure functions: Run(s) in, ``go.Figure`` out; nothing is shown or saved here."""

from __future__ import annotations

import numpy as np
import pandas as pd

TOP_LAYERS = 25

_BYTE_UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B"))


def _go():
    import plotly.graph_objects as go

    return go


def _byte_unit(max_bytes: float) -> tuple[int, str]:
    return next(((f, u) for f, u in _BYTE_UNITS if max_bytes >= f), (1, "B"))


def _title(run, what: str) -> str:
    return f"{what} — {run.name}"


def _top(df: pd.DataFrame, column: str, top: int) -> pd.DataFrame:
    """The ``top`` rows by ``column``, plus one "other (N layers)" row summing the rest (kept numeric)."""
    df = df.sort_values(column, ascending=False)
    head, rest = df.head(top), df.iloc[top:]
    if len(rest):
        other = {c: rest[c].sum() for c in rest.select_dtypes("number").columns if c != "calls"}
        other.update(name=f"other ({len(rest)} layers)", type="other", precision="", tactic="")
        head = pd.concat([head, pd.DataFrame([other])], ignore_index=True)
    return head


def _layer_hover(df: pd.DataFrame) -> list[str]:
    nodes = df["onnx_nodes"] if "onnx_nodes" in df else [[]] * len(df)
    return [
        f"<b>{r.name}</b><br>type: {r.type}<br>precision: {r.precision or 'n/a'}<br>tactic: {str(r.tactic)[:60]}"
        + (f"<br>ONNX nodes: {', '.join(n[:6])}{' …' if len(n) > 6 else ''}" if isinstance(n, list) and n else "")
        for r, n in zip(df.itertuples(), nodes)
    ]


def layer_timing(run, top: int = TOP_LAYERS):
    """Per-layer mean time (ms per inference), the ``top`` slowest layers plus "other", coloured by layer type."""
    go = _go()
    df = run.layers.dropna(subset=["time_ms"])
    fig = go.Figure()
    if df.empty:
        return _empty(fig, _title(run, "Per-layer time"), "This run has no per-layer timing.")
    df = _top(df, "time_ms", top).iloc[::-1]  # slowest at the top of a horizontal bar chart
    hover = _layer_hover(df)
    for layer_type in dict.fromkeys(df["type"]):
        mask = (df["type"] == layer_type).to_numpy()
        fig.add_bar(
            y=df["name"][mask], x=df["time_ms"][mask], orientation="h", name=layer_type or "unknown",
            customdata=np.stack([df["time_pct"][mask].fillna(0)], axis=-1),
            hovertext=[h for h, m in zip(hover, mask) if m],
            hovertemplate="%{hovertext}<br>%{x:.4f} ms (%{customdata[0]:.1f}%)<extra></extra>",
        )
    fig.update_layout(
        title=_title(run, f"Per-layer time (top {min(top, len(run.layers))} of {len(run.layers)} layers)"),
        xaxis_title="mean time per inference (ms)", yaxis_title=None, barmode="stack",
        height=max(360, 22 * len(df) + 140), legend_title="layer type", yaxis={"automargin": True},
    )
    return fig


def time_by_type(run):
    """Total time per layer type (ms per inference and share)."""
    go = _go()
    df = run.layers.dropna(subset=["time_ms"])
    fig = go.Figure()
    if df.empty:
        return _empty(fig, _title(run, "Time by layer type"), "This run has no per-layer timing.")
    grouped = df.groupby("type", dropna=False).agg(time_ms=("time_ms", "sum"), layers=("name", "count"))
    grouped = grouped.sort_values("time_ms")
    share = 100 * grouped["time_ms"] / grouped["time_ms"].sum()
    fig.add_bar(
        y=grouped.index, x=grouped["time_ms"], orientation="h",
        text=[f"{p:.1f}%" for p in share], textposition="auto",
        customdata=np.stack([grouped["layers"], share], axis=-1),
        hovertemplate="<b>%{y}</b><br>%{x:.4f} ms (%{customdata[1]:.1f}%)<br>%{customdata[0]} layers<extra></extra>",
    )
    fig.update_layout(title=_title(run, "Time by layer type"), xaxis_title="time per inference (ms)",
                      height=max(320, 28 * len(grouped) + 140), yaxis={"automargin": True})
    return fig


def layer_memory(run, top: int = TOP_LAYERS):
    """Per-layer memory: bytes written (activations) and weights, the ``top`` layers by their sum."""
    go = _go()
    df = run.layers.assign(total_bytes=run.layers["activation_bytes"] + run.layers["weight_bytes"])
    df = df[df["total_bytes"] > 0]
    fig = go.Figure()
    if df.empty:
        return _empty(fig, _title(run, "Per-layer memory"), "This run has no per-layer memory figures.")
    df = _top(df, "total_bytes", top).iloc[::-1]
    factor, unit = _byte_unit(float(df["total_bytes"].max()))
    hover = _layer_hover(df)
    for column, label in (("activation_bytes", "activations (outputs)"), ("weight_bytes", "weights")):
        fig.add_bar(y=df["name"], x=df[column] / factor, orientation="h", name=label, hovertext=hover,
                    hovertemplate=f"%{{hovertext}}<br>{label}: %{{x:.2f}} {unit}<extra></extra>")
    fig.update_layout(
        title=_title(run, f"Per-layer memory (top {min(top, len(df))} layers)"), barmode="stack",
        xaxis_title=f"bytes per inference ({unit})", height=max(360, 22 * len(df) + 140),
        yaxis={"automargin": True},
    )
    return fig


def latency_histogram(run):
    """Distribution of whole-inference latency with the mean and p50/p90/p99 marked."""
    go = _go()
    fig = go.Figure()
    if not run.latency_ms:
        return _empty(fig, _title(run, "Latency"), "This run has no per-inference times.")
    fig.add_histogram(x=list(run.latency_ms), nbinsx=min(60, max(10, len(run.latency_ms) // 5)), name="inferences",
                      hovertemplate="%{x} ms: %{y} inferences<extra></extra>")
    lat = run.latency
    if lat is not None:
        for value, label, dash in ((lat.p50_ms, "p50", "solid"), (lat.p90_ms, "p90", "dash"),
                                   (lat.p99_ms, "p99", "dot")):
            fig.add_vline(x=value, line_dash=dash, annotation_text=f"{label} {value:.3f} ms")
    fig.update_layout(title=_title(run, f"Latency of {len(run.latency_ms)} inferences"),
                      xaxis_title="latency (ms)", yaxis_title="inferences", bargap=0.05, showlegend=False)
    return fig


def run_figures(run) -> dict:
    """The standard set of figures for one run, by title."""
    return {
        "Per-layer time": layer_timing(run),
        "Time by layer type": time_by_type(run),
        "Per-layer memory": layer_memory(run),
        "Latency": latency_histogram(run),
    }


def _empty(fig, title: str, message: str):
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=240)
    return fig
