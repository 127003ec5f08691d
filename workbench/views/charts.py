"""Plotly figures from Runs. Pure functions: Run(s) in, ``go.Figure`` out; nothing is shown or saved here."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..analysis.compare import ERROR_METRICS, align_layers, pareto_points, run_labels
from ..analysis.serving import best_under, serving_points
from ..errors import WorkbenchError
from ..results.layers import nodes_text, typical_ms
from ..results.run import NOT_TIMED

TOP_LAYERS = 25

_BYTE_UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B"))


def _figure():
    import plotly.graph_objects as go

    return go.Figure()


def _byte_unit(max_bytes: float) -> tuple[int, str]:
    return next(((f, u) for f, u in _BYTE_UNITS if max_bytes >= f), (1, "B"))


def _title(run, what: str) -> str:
    return f"{what} — {run.name}"


#: Per-layer charts: pixels per bar and the chart's frame (title, axis, legend); the height grows with the bars, so
#: 25 or 60 layers stay as readable as 5.
BAR_PX = 24
FRAME_PX = 170
LABEL_CHARS = 48


def _top(df: pd.DataFrame, column: str, top: int) -> tuple[pd.DataFrame, int, float]:
    """The ``top`` rows by ``column`` (largest first), and the count and sum of ``column`` of the rest."""
    df = df.sort_values(column, ascending=False, kind="stable")
    rest = df.iloc[top:]
    return df.head(top), len(rest), float(rest[column].sum()) if len(rest) else 0.0


def layer_labels(names, width: int = LABEL_CHARS) -> list[str]:
    """Short, unique axis labels for layer names: long fused names keep their start and end ("conv1 + … + relu3"),
    so the bars keep their width; the full name is in the hover text."""
    labels, seen = [], {}
    for name in names:
        label = _short(str(name), width)
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return labels


def _other_text(count: int, value: str, share: float | None) -> str:
    pct = f", {share:.1f}% of the total" if share is not None else ""
    return f"not drawn: the other {count} layers, {value}{pct} together"


def _layer_hover(df: pd.DataFrame) -> list[str]:
    nodes = df["onnx_nodes"] if "onnx_nodes" in df else [[]] * len(df)
    kernels = df["kernel_names"] if "kernel_names" in df else [[]] * len(df)
    counts = df["kernels"] if "kernels" in df else [None] * len(df)
    return [
        f"<b>{r.name}</b><br>type: {r.type}<br>precision: {r.precision or 'n/a'}<br>tactic: {str(r.tactic)[:60]}"
        + (f"<br>ONNX nodes: {nodes_text(n, shown=6)}" if isinstance(n, list) and n else "")
        + (
            f"<br>GPU work per inference: {c:.0f} ({html.escape(_short(', '.join(k[:3]), 160))})"
            if isinstance(k, list) and k and c is not None
            else ""
        )
        for r, n, k, c in zip(df.itertuples(), nodes, kernels, counts)
    ]


def time_axis(run, what: str) -> str:
    """An axis title that says where the layer times come from: ``… (ms) — GPU kernels (CUPTI)``."""
    return f"{what} — {run.time_source_label}"


def layer_timing(run, top: int = TOP_LAYERS, stat: str = "median"):
    """Per-layer time (ms per inference): the ``top`` slowest layers, slowest first, coloured by layer type.

    ``stat="median"`` (the default) draws and ranks each layer by its median with a whisker to its 90th percentile,
    and marks the layers whose mean a few slow inferences pulled up (:func:`~workbench.results.layers.slow_outliers`)
    with that mean: one slow call no longer puts a cheap layer first. ``stat="mean"`` draws the means.
    The rest are summed in the subtitle, not drawn: a bar for hundreds of small layers would set the scale and
    squeeze the layers that matter. Labels are shortened (full names on hover)."""
    if stat not in ("median", "mean"):
        raise WorkbenchError(f"Per-layer statistic '{stat}' is not known: use 'median' or 'mean'.")
    df = run.layers.dropna(subset=["time_ms"])
    fig = _figure()
    if df.empty:
        return _empty(_title(run, "Per-layer time"), _no_time(run, "This run has no per-layer timing."))
    df = df.assign(shown_ms=typical_ms(df) if stat == "median" else df["time_ms"])
    timed, total = len(df), float(df["shown_ms"].sum())
    df, rest, rest_ms = _top(df, "shown_ms", top)
    df = df.assign(label=layer_labels(df["name"]), share=100 * df["shown_ms"] / total if total else 0.0)
    df = df.assign(hover=_layer_hover(df))
    for layer_type in dict.fromkeys(df["type"]):
        mine = df[(df["type"] == layer_type).to_numpy()]
        whisker = (mine["p90_ms"] - mine["shown_ms"]).clip(lower=0) if stat == "median" else None
        fig.add_bar(
            y=mine["label"],
            x=mine["shown_ms"],
            orientation="h",
            name=layer_type or "unknown",
            error_x=None
            if whisker is None or whisker.isna().all()
            else {"type": "data", "symmetric": False, "array": whisker.fillna(0), "arrayminus": [0] * len(mine)},
            text=[f"outlier: mean {m:.4g} ms" if o else "" for m, o in zip(mine["time_ms"], mine["outlier"])],
            textposition="outside",
            customdata=np.stack(
                [mine["share"].fillna(0), mine["time_ms"], mine["median_ms"], mine["p90_ms"], mine["calls"]], axis=-1
            ),
            hovertext=list(mine["hover"]),
            hovertemplate="%{hovertext}<br>%{x:.4f} ms (%{customdata[0]:.1f}%)<br>median %{customdata[2]:.4f} ms, "
            "p90 %{customdata[3]:.4f} ms, mean %{customdata[1]:.4f} ms over %{customdata[4]} calls<extra></extra>",
        )
    flagged = int(df["outlier"].sum())
    notes = [_other_text(rest, f"{rest_ms:.4f} ms", 100 * rest_ms / total if total else None)] if rest else []
    if flagged and stat == "median":
        notes.append(f"{flagged} layer{'s' if flagged > 1 else ''} with a mean pulled up by a few slow calls: labelled")
    what = "median, whisker to p90" if stat == "median" else "mean"
    title = _title(run, f"Per-layer time ({what}; the {len(df)} slowest of {timed} timed layers)")
    fig.update_layout(
        title={"text": title + "".join(f"<br><sup>{n}</sup>" for n in notes)},
        xaxis_title=time_axis(run, f"{stat} time per inference (ms)"),
        yaxis_title=None,
        barmode="stack",
        height=max(360, BAR_PX * len(df) + FRAME_PX),
        legend_title="layer type",
        # slowest at the top, whatever the type: one category order for all traces
        yaxis={"automargin": True, "categoryorder": "array", "categoryarray": list(df["label"])[::-1]},
    )
    return fig


def time_by_type(run):
    """Total time per layer type (the layers' summed medians, ms per inference, and share)."""
    df = run.layers.dropna(subset=["time_ms"])
    fig = _figure()
    if df.empty:
        return _empty(_title(run, "Time by layer type"), _no_time(run, "This run has no per-layer timing."))
    df = df.assign(time_ms=typical_ms(df))  # medians: one slow call in a cheap layer does not make its type slow
    grouped = df.groupby("type", dropna=False).agg(time_ms=("time_ms", "sum"), layers=("name", "count"))
    grouped = grouped.sort_values("time_ms")
    share = 100 * grouped["time_ms"] / grouped["time_ms"].sum()
    fig.add_bar(
        y=grouped.index,
        x=grouped["time_ms"],
        orientation="h",
        text=[f"{p:.1f}%" for p in share],
        textposition="auto",
        customdata=np.stack([grouped["layers"], share], axis=-1),
        hovertemplate="<b>%{y}</b><br>%{x:.4f} ms (%{customdata[1]:.1f}%)<br>%{customdata[0]} layers<extra></extra>",
    )
    fig.update_layout(
        title=_title(run, "Time by layer type"),
        xaxis_title=time_axis(run, "summed median time per inference (ms)"),
        height=max(320, 28 * len(grouped) + 140),
        yaxis={"automargin": True},
    )
    return fig


def layer_memory(run, top: int = TOP_LAYERS):
    """Per-layer memory: bytes written (activations) and weights, the ``top`` layers by their sum (largest first;
    the rest summed in the subtitle, not drawn)."""
    df = run.layers.assign(total_bytes=run.layers["activation_bytes"] + run.layers["weight_bytes"])
    df = df[df["total_bytes"] > 0]
    fig = _figure()
    if df.empty:
        return _empty(_title(run, "Per-layer memory"), "This run has no per-layer memory figures.")
    counted, total = len(df), float(df["total_bytes"].sum())
    df, rest, rest_bytes = _top(df, "total_bytes", top)
    df = df.assign(label=layer_labels(df["name"]))
    factor, unit = _byte_unit(float(df["total_bytes"].max()))
    hover = _layer_hover(df)
    for column, label in (("activation_bytes", "activations (outputs)"), ("weight_bytes", "weights")):
        fig.add_bar(
            y=df["label"],
            x=df[column] / factor,
            orientation="h",
            name=label,
            hovertext=hover,
            hovertemplate=f"%{{hovertext}}<br>{label}: %{{x:.2f}} {unit}<extra></extra>",
        )
    subtitle = _other_text(rest, f"{rest_bytes / factor:.2f} {unit}", 100 * rest_bytes / total) if rest else ""
    fig.update_layout(
        title={
            "text": _title(run, f"Per-layer memory (the {len(df)} largest of {counted} layers)")
            + (f"<br><sup>{subtitle}</sup>" if subtitle else "")
        },
        barmode="stack",
        xaxis_title=f"bytes per inference ({unit})",
        height=max(360, BAR_PX * len(df) + FRAME_PX),
        yaxis={"automargin": True, "categoryorder": "array", "categoryarray": list(df["label"])[::-1]},
    )
    return fig


def latency_histogram(run):
    """Distribution of whole-inference latency with p50/p90/p99 marked. A few far outliers (beyond
    p99 + 3 × (p99 − p50), e.g. one stalled inference) are left out of the bins, and the title says so,
    so that they do not squeeze every other inference into one bar."""
    fig = _figure()
    if not run.latency_ms:
        return _empty(_title(run, "Latency"), _no_time(run, "This run has no per-inference times."))
    times = np.asarray(run.latency_ms)
    p50, p99 = np.percentile(times, [50, 99])
    cut = p99 + 3 * (p99 - p50)
    shown = times[times <= cut]
    fig.add_histogram(
        x=shown,
        nbinsx=min(60, max(10, len(shown) // 5)),
        name="inferences",
        hovertemplate="%{x} ms: %{y} inferences<extra></extra>",
    )
    lat = run.latency
    if lat is not None:
        for value, label, dash, where in (
            (lat.p50_ms, "p50", "solid", "top left"),
            (lat.p90_ms, "p90", "dash", "top right"),
            (lat.p99_ms, "p99", "dot", "bottom right"),
        ):
            fig.add_vline(x=value, line_dash=dash, annotation_text=f"{label} {value:.3f} ms", annotation_position=where)
    hidden = len(times) - len(shown)
    title = f"Latency of {len(times)} inferences" + (
        f" ({hidden} outlier{'s' if hidden > 1 else ''} up to {times.max():.3f} ms not shown)" if hidden else ""
    )
    fig.update_layout(
        title=_title(run, title), xaxis_title="latency (ms)", yaxis_title="inferences", bargap=0.05, showlegend=False
    )
    return fig


def run_figures(run) -> dict:
    """The standard set of figures for one run, by title."""
    return {
        "Per-layer time": layer_timing(run),
        "Time by layer type": time_by_type(run),
        "Per-layer memory": layer_memory(run),
        "Latency": latency_histogram(run),
    }


def _no_time(run, message: str) -> str:
    """Why a time view is empty: a compiled, never-run engine says so rather than looking like missing data."""
    return NOT_TIMED if not getattr(run, "timed", True) else message


def _front_line(fig, x, y, colour: str | None = None, **shape) -> None:
    """The Pareto front as a dotted line (no hover: its points have their own)."""
    line = {"dash": "dot", "color": colour} if colour else {"dash": "dot"}
    fig.add_scatter(x=x, y=y, mode="lines", name="Pareto front", line=line, hoverinfo="skip", **shape)


def _empty(title: str, message: str):
    fig = _figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=240)
    return fig


# ---- comparisons (several runs; see workbench.analysis.compare) ---------------------------------------------------------


def _compare_title(runs, what: str) -> str:
    return f"{what} — {len(runs)} runs"


def compare_latency(runs):
    """Latency of each run side by side: p50, mean and p99 bars per run, with the speed-up against the first."""
    runs = list(runs)
    labels = run_labels(runs)
    fig = _figure()
    timed = [(label, r.latency) for label, r in zip(labels, runs) if r.latency is not None]
    if not timed:
        return _empty(_compare_title(runs, "Latency"), "None of these runs has latency figures.")
    from ..analysis.compare import latency_differences

    versus = dict(zip(labels, latency_differences(runs)["text"]))  # significant or not, never a bare ratio
    names = [label for label, _ in timed]
    for stat, label in (("p50_ms", "p50"), ("mean_ms", "mean"), ("p99_ms", "p99")):
        values = [getattr(lat, stat) for _, lat in timed]
        text = [versus[name] if label == "p50" and versus[name] not in ("baseline", "–") else "" for name in names]
        fig.add_bar(
            x=names,
            y=values,
            name=label,
            text=text,
            textposition="outside",
            hovertemplate=f"%{{x}}<br>{label}: %{{y:.4f}} ms<extra></extra>",
        )
    fig.update_layout(
        title=_compare_title(runs, "Latency (labels: median against the first run, 95% interval)"),
        yaxis_title="latency per inference (ms)",
        barmode="group",
        legend_title="statistic",
        xaxis={"automargin": True},
    )
    return fig


def latency_trials(runs):
    """Each run's median latency with its 95% interval (error bar) and every trial's median (dots): whether two
    runs differ, and whether a run's trials agree. Runs without trial records show their one sample set."""
    from ..results.stats import median_ci

    runs = list(runs)
    fig = _figure()
    rows = [(label, r) for label, r in zip(run_labels(runs), runs) if r.latency_ms]
    title = _compare_title(runs, "Median latency, 95% interval, and each trial's median")
    if not rows:
        return _empty(title, "None of these runs has per-inference latencies.")
    medians, low, high, verdicts = [], [], [], []
    for _, r in rows:
        t = r.timing
        interval = (
            (t.median_ms, t.ci_low_ms, t.ci_high_ms)
            if t
            else tuple(getattr(median_ci(r.trial_samples), k) for k in ("value", "low", "high"))
        )
        medians.append(interval[0])
        low.append(interval[0] - interval[1])
        high.append(interval[2] - interval[0])
        verdicts.append(t.verdict if t else "no trials recorded")
    names = [label for label, _ in rows]
    fig.add_scatter(
        x=names,
        y=medians,
        mode="markers",
        name="median (95% interval)",
        marker={"size": 11},
        error_y={"type": "data", "array": high, "arrayminus": low},
        customdata=verdicts,
        hovertemplate="%{x}<br>median %{y:.4f} ms<br>%{customdata}<extra></extra>",
    )
    trials = [(label, float(np.median(trial))) for label, r in rows for trial in r.trial_samples]
    fig.add_scatter(
        x=[label for label, _ in trials],
        y=[median for _, median in trials],
        mode="markers",
        name="trial median",
        marker={"size": 6, "color": "grey", "symbol": "line-ew-open"},
        hovertemplate="%{x}<br>trial median %{y:.4f} ms<extra></extra>",
    )
    fig.update_layout(title=title, yaxis_title="latency per inference (ms)", xaxis={"automargin": True})
    return fig


_MEMORY_FIELDS = (
    ("weights_bytes", "weights"),
    ("activations_bytes", "activations"),
    ("engine_device_bytes", "engine device memory"),
    ("plan_bytes", "plan / model size"),
    ("gpu_used_bytes", "GPU memory used"),
    ("host_peak_bytes", "host peak memory"),
)


def compare_memory(runs):
    """Memory of each run side by side: one bar group per run, one bar per memory figure any run has."""
    runs = list(runs)
    labels = run_labels(runs)
    fields = [(f, label) for f, label in _MEMORY_FIELDS if any(getattr(r.memory, f) is not None for r in runs)]
    fig = _figure()
    if not fields:
        return _empty(_compare_title(runs, "Memory"), "None of these runs has memory figures.")
    top = max(getattr(r.memory, f) or 0 for r in runs for f, _ in fields)
    factor, unit = _byte_unit(float(top))
    for f, label in fields:
        values = [None if getattr(r.memory, f) is None else getattr(r.memory, f) / factor for r in runs]
        fig.add_bar(
            x=labels, y=values, name=label, hovertemplate=f"%{{x}}<br>{label}: %{{y:.2f}} {unit}<extra></extra>"
        )
    # a log axis: process memory (hundreds of MiB) and a small model's weights (KiB) both stay readable
    fig.update_layout(
        title=_compare_title(runs, "Memory"),
        yaxis_title=f"{unit} (log scale)",
        yaxis_type="log",
        barmode="group",
        xaxis={"automargin": True},
    )
    return fig


def compare_layers(runs, top: int = TOP_LAYERS, aligned=None):
    """Per-layer time of several runs on one chart, layers aligned by name and ONNX nodes
    (:func:`workbench.analysis.compare.align_layers`, or its result passed as ``aligned``): the ``top`` groups by their
    largest time in any run."""
    runs = list(runs)
    aligned = (align_layers(runs) if aligned is None else aligned).dropna(subset=["time_ms"])
    fig = _figure()
    if aligned.empty:
        return _empty(_compare_title(runs, "Per-layer time"), "None of these runs has per-layer timing.")
    peak = aligned.groupby("group")["time_ms"].max().sort_values(ascending=False)
    chosen = list(peak.index[:top])[::-1]  # slowest at the top of a horizontal bar chart
    rows = aligned[aligned["group"].isin(chosen)]
    labels = rows.drop_duplicates("group").set_index("group")["layer"]
    axis = [_short(labels[g]) + f" #{g}" for g in chosen]  # the group number keeps equal labels apart
    for (_, run_label), mine in rows.groupby(["tag", "run"], sort=False):  # by tag: a run compared with itself
        mine = mine.set_index("group").reindex(chosen)
        hover = [
            f"<b>{labels[g]}</b><br>{run_label}<br>layers: {_short(', '.join(ls), 120)}<br>precision: {p}"
            if isinstance(ls, list)
            else f"<b>{labels[g]}</b><br>{run_label}: not in this run"
            for g, ls, p in zip(chosen, mine["layers"], mine["precision"])
        ]
        fig.add_bar(
            y=axis,
            x=mine["time_ms"],
            orientation="h",
            name=run_label,
            hovertext=hover,
            hovertemplate="%{hovertext}<br>%{x:.4f} ms<extra></extra>",
        )
    fig.update_layout(
        title=_compare_title(runs, f"Per-layer time, aligned (top {len(chosen)} of {peak.size} groups)"),
        xaxis_title="time per inference (ms) — " + " / ".join(dict.fromkeys(r.time_source_label for r in runs)),
        barmode="group",
        height=max(380, 16 * len(chosen) * len(runs) + 160),
        yaxis={"automargin": True},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2) :]


def pareto(runs, metric: str = "auto"):
    """Mean latency against accuracy error, one point per run, the Pareto front (no run faster AND more accurate)
    drawn as a line. ``metric``: see :data:`workbench.analysis.compare.ERROR_METRICS`.

    A run with a latency but no accuracy measurement (a trtexec import, a run not checked) sits on the latency axis
    (a tick at the bottom, "accuracy not measured"), never on the front; the chart says which runs those are, which
    have no latency at all, and why a chart shows a single point."""
    runs = list(runs)
    points = pareto_points(runs, metric)
    timed = points["latency_ms"].notna()
    shown = points[timed & points["error"].notna()]
    latency_only = points[timed & points["error"].isna()]
    fig = _figure()
    title = _compare_title(runs, "Latency vs accuracy error")
    if not timed.any():
        return _empty(title, "No run has a latency to plot.")
    front = shown[shown["front"]].sort_values("latency_ms")
    _front_line(fig, front["latency_ms"], front["error"], line_shape="hv")
    for precision, mine in shown.groupby("precision", sort=False):
        broken = (mine["verdict"] == "broken").to_numpy()
        fig.add_scatter(
            x=mine["latency_ms"],
            y=mine["error"],
            mode="markers+text",
            name=precision,
            text=[t + (" BROKEN" if b else "") for t, b in zip(mine["tag"], broken)],
            textposition="top center",
            marker={"size": 12, "symbol": ["x" if b else "circle" for b in broken]},
            customdata=mine[["run"]].to_numpy(),
            hovertemplate="%{customdata[0]}<br>%{x:.4f} ms<br>error %{y:.4g}<extra></extra>",
        )
    if len(latency_only):  # on an axis of its own, pinned to the bottom: an error of 0 would claim exactness
        fig.add_scatter(
            x=latency_only["latency_ms"],
            y=[0.04] * len(latency_only),  # just above the axis line, not cut by it
            yaxis="y2",
            mode="markers+text",
            name="accuracy not measured",
            text=[f"{t} ({p})" for t, p in zip(latency_only["tag"], latency_only["precision"])],
            textposition="top center",
            marker={"size": 16, "symbol": "line-ns-open", "line": {"width": 2}},
            customdata=latency_only[["run"]].to_numpy(),
            hovertemplate="%{customdata[0]}<br>%{x:.4f} ms<br>accuracy not measured<extra></extra>",
        )
        fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1], "visible": False})
    notes = _pareto_notes(points, shown, latency_only)
    if notes:
        fig.add_annotation(
            text="<br>".join(notes),
            showarrow=False,
            x=1,
            y=1.02,
            xref="paper",
            yref="paper",
            xanchor="right",
            yanchor="bottom",
            align="right",
        )
    fig.update_layout(
        title=title,
        xaxis_title="mean latency (ms)",
        yaxis_title=ERROR_METRICS[points.attrs["metric"]],
        legend_title="precision",
    )
    return fig


def _pareto_notes(points, shown, latency_only) -> list[str]:
    """What the Pareto chart leaves out or cannot rank, and why, in words."""
    notes = []
    if len(latency_only):
        notes.append(
            "on the latency axis only, accuracy not measured (an import or a run not checked against FP32): "
            + ", ".join(latency_only["tag"])
        )
    missing = points[points["latency_ms"].isna()]
    if len(missing):
        notes.append("not plotted (no latency): " + ", ".join(missing["tag"]))
    if len(shown) == 1:
        notes.append(f"only {shown['tag'].iloc[0]} has both a latency and an accuracy: no trade-off to draw")
    elif shown.empty:
        notes.append("no run has an accuracy measurement: latencies only, no front")
    return notes


# ---- serving (Run.serving: a Triton load test; see workbench.analysis.serving) ---------------------------------


def serving_latency_throughput(runs, p99_budget_ms: float | None = None):
    """p99 latency against throughput, one line per served configuration through its concurrency levels, the Pareto
    front over all points (no other point with lower p99 and higher throughput) and, with a budget, that budget and
    the best point within it. Hover: concurrency, p50, achieved batch, whether the client's count equals Triton's."""
    runs = list(runs)
    points = serving_points(runs)
    fig = _figure()
    title = "Served latency vs throughput" + (f" (p99 budget {p99_budget_ms:g} ms)" if p99_budget_ms else "")
    if points.empty:
        return _empty(title, "No serving run (workbench serve --load) to plot.")
    for config, mine in points.groupby("config", sort=False):
        mine = mine.sort_values("concurrency")
        fig.add_scatter(
            x=mine["throughput_rps"],
            y=mine["p99_ms"],
            mode="lines+markers+text",
            name=config,
            text=[f"c{c}" for c in mine["concurrency"]],
            textposition="top center",
            customdata=mine[["concurrency", "p50_ms", "batch", "counts_agree", "run"]].to_numpy(),
            hovertemplate=(
                "concurrency %{customdata[0]}<br>%{x:.1f} requests/s<br>p99 %{y:.3f} ms, p50 %{customdata[1]:.3f} ms"
                "<br>achieved batch %{customdata[2]:.2f}<br>client count = Triton's: %{customdata[3]}"
                "<br>%{customdata[4]}<extra>%{fullData.name}</extra>"
            ),
        )
    front = points[points["front"]].sort_values("throughput_rps")
    _front_line(fig, front["throughput_rps"], front["p99_ms"], line_shape="vh", colour="black")
    if p99_budget_ms:
        fig.add_hline(
            y=p99_budget_ms, line_dash="dash", line_color="red", annotation_text=f"p99 budget {p99_budget_ms:g} ms"
        )
        best = best_under(points, p99_budget_ms)
        if best is not None:
            fig.add_scatter(
                x=[best["throughput_rps"]],
                y=[best["p99_ms"]],
                mode="markers",
                marker={"symbol": "star", "size": 18, "color": "gold", "line": {"width": 1, "color": "black"}},
                name=f"best within budget: {best['config']}, c{best['concurrency']}",
                hoverinfo="skip",
            )
    fig.update_layout(
        title=title, xaxis_title="throughput (requests/s)", yaxis_title="p99 latency (ms)", legend_title="configuration"
    )
    return fig


# ---- sensitivity (a plan run's ``sensitivity`` record; see workbench.analysis.sensitivity) ----------------------


def layer_error(table, metric: str = "snr_db", title: str = "Layer-wise error against FP32"):
    """Error of every tensor along the graph (topological order): ``table`` is
    :func:`workbench.analysis.layer_error.layer_error`'s DataFrame (or its rows). Hover names the node; the node
    name is each point's ``customdata[0]`` (the panel shows the node when a point is clicked)."""
    df = pd.DataFrame(table) if not isinstance(table, pd.DataFrame) else table
    fig = _figure()
    shown = df[df["compared"].astype(bool)] if len(df) else df
    if shown.empty:
        return _empty(title, "No tensor of the variant matched one of the FP32 model.")
    labels = {
        "snr_db": "SNR (dB, higher = closer to FP32)",
        "cosine": "cosine similarity",
        "rel_l2": "relative L2 error",
        "max_abs": "max abs error",
    }
    esc = html.escape
    hover = [
        f"<b>{esc(_short(str(r.node)))}</b> ({esc(str(r.op_type))})<br>tensor: {esc(_short(str(r.tensor)))}"
        f"<br>SNR {r.snr_db:.1f} dB"
        f" (this node added {r.added_db:.1f} dB)<br>cosine {r.cosine:.6f}<br>rel L2 {r.rel_l2:.3g}<br>"
        f"max abs {r.max_abs:.3g}"
        for r in shown.itertuples()
    ]
    fig.add_scatter(
        x=list(range(len(shown))),
        y=shown[metric],
        mode="lines+markers",
        name=metric,
        customdata=shown[["node", "tensor"]].to_numpy(),
        hovertext=hover,
        hoverinfo="text",
    )
    jump = shown[shown["jump"].astype(bool)]
    if len(jump):
        x = int(np.flatnonzero(shown["jump"].astype(bool).to_numpy())[0])
        fig.add_scatter(
            x=[x],
            y=jump[metric],
            mode="markers",
            marker={"size": 16, "symbol": "x", "color": "red"},
            name=f"error first jumps: {_short(str(jump['node'].iloc[0]), 40)}",
            hoverinfo="skip",
        )
    fig.update_layout(
        title=title,
        xaxis_title="tensor (topological order)",
        yaxis_title=labels.get(metric, metric),
        hovermode="closest",
    )
    return fig


def sensitivity_ranking(record: dict, top: int = TOP_LAYERS):
    """The ranking: what each group adds to the error of the all-low-precision graph (layer-wise error, dB), the
    ``top`` most sensitive; tied groups say so, the plan's groups are marked. A record of the earlier search
    (each group alone in low precision, no ``added_db``) shows its measured ``loss``."""
    scores = pd.DataFrame(list(record.get("scores") or []))
    fig = _figure()
    precision = record.get("precision", "?")
    if "added_db" in scores:
        title, column = f"Sensitivity: error each group adds in all-{precision}", "added_db"
        axis = "SNR the group's nodes lose (dB; red: kept by the plan)"
    else:
        title, column = f"Sensitivity: each group alone in {precision}", "loss"
        axis = "top-1 points lost" if record["budget"]["kind"] == "top1" else "1 - output cosine to FP32"
    if scores.empty or column not in scores or scores[column].isna().all():
        return _empty(title, "No group was scored.")
    scores = scores.dropna(subset=[column]).head(top).iloc[::-1]
    optional = {c: scores[c] if c in scores else [None] * len(scores) for c in ("label", "tie", "in_plan")}
    label = [lab or g for lab, g in zip(optional["label"], scores["group"])]
    fig.add_bar(
        x=scores[column],
        y=[_short(g, 50) + (" (tie)" if t else "") for g, t in zip(label, optional["tie"])],
        orientation="h",
        marker_color=["#c62828" if p else "#90a4ae" for p in optional["in_plan"]],
        customdata=scores[["group", "kind"]].to_numpy(),
        hovertext=[
            f"<b>{html.escape(g)}</b> ({k}), rank {r}<br>nodes: {html.escape(', '.join(n[:6]))}"
            f"{' …' if len(n) > 6 else ''}"
            for g, k, r, n in zip(scores["group"], scores["kind"], scores["rank"], scores["nodes"])
        ],
        hoverinfo="text+x",
    )
    fig.update_layout(title=title, xaxis_title=axis, height=max(300, 26 * len(scores) + 140))
    fig.update_yaxes(automargin=True, dtick=1)  # every group named, however many
    return fig


def sensitivity_pareto(record: dict):
    """Every measured plan candidate: latency (ONNX Runtime, p50) against accuracy, the Pareto front, the budget,
    the all-low-precision variant and the chosen plan marked."""
    cands = pd.DataFrame(list(record.get("candidates") or [])).dropna(subset=["latency_ms"])
    fig = _figure()
    title = "Plans: accuracy against latency"
    if cands.empty:
        return _empty(title, "No candidate was timed.")
    top1 = record["budget"]["kind"] == "top1"
    y = 100 * cands["label_accuracy"] if top1 else cands["cosine"]
    cands = cands.assign(y=y, kept=cands["kept_nodes"].map(len))
    order = cands.sort_values("latency_ms")
    front = order[order["y"] > order["y"].fillna(-np.inf).cummax().shift(fill_value=-np.inf)]  # beats all faster
    _front_line(fig, front["latency_ms"], front["y"], line_shape="hv")
    fig.add_scatter(
        x=cands["latency_ms"],
        y=cands["y"],
        mode="markers",
        marker={"size": 11},
        name="candidates",
        customdata=cands[["label"]].to_numpy(),
        hovertext=[
            f"<b>{html.escape(r.label)}</b><br>{r.kept} node(s) kept<br>{r.latency_ms:.4f} ms"
            for r in cands.itertuples()
        ],
        hoverinfo="text+y",
    )
    plan = record.get("plan")
    for label, what, symbol in (
        (cands["label"].iloc[0], f"all {record.get('precision')}", "square"),
        (plan["label"] if plan else None, "chosen plan", "star"),
    ):
        mine = cands[cands["label"] == label]
        if len(mine):
            fig.add_scatter(
                x=mine["latency_ms"],
                y=mine["y"],
                mode="markers+text",
                text=[what],
                textposition="top center",
                marker={"size": 18, "symbol": symbol},
                name=what,
                hoverinfo="skip",
            )
    budget = record["budget"]
    reference = record.get("reference") or {}
    if top1 and reference.get("label_accuracy") is not None:
        fig.add_hline(y=100 * reference["label_accuracy"] - budget["value"], line_dash="dash", annotation_text="budget")
    elif not top1:
        fig.add_hline(y=budget["value"], line_dash="dash", annotation_text="budget")
    where = (record.get("reference") or {}).get("backend") or "onnxruntime"
    fig.update_layout(
        title=title,
        xaxis_title=f"latency p50 (ms, {where}, 1 sample)",
        yaxis_title="top-1 accuracy (%)" if top1 else "min output cosine to FP32",
    )
    return fig


def sensitivity_figures(record: dict) -> dict:
    figures = {"Sensitivity ranking": sensitivity_ranking(record), "Plans": sensitivity_pareto(record)}
    if record.get("layer_error"):
        figures["Layer-wise error"] = layer_error(
            list(record["layer_error"]), title=f"Layer-wise error of all-{record.get('precision')}"
        )
    return figures


def comparison_figures(comparison) -> dict:
    """The charts of a :class:`~workbench.analysis.compare.Comparison`, by title (the Compare tab, its HTML page)."""
    return {
        "Latency": compare_latency(comparison.runs),
        "Latency intervals": latency_trials(comparison.runs),
        "Memory": compare_memory(comparison.runs),
        "Per-layer time": compare_layers(comparison.runs, aligned=comparison.aligned),
        "Latency vs accuracy error": pareto(comparison.runs),
    }


# ---- roofline (one run against a device's limits; see workbench.analysis.roofline) ------------------------------

_PRECISION_COLOURS = {
    "fp32": "#1f77b4",
    "tf32": "#17becf",
    "fp16": "#2ca02c",
    "bf16": "#bcbd22",
    "int8": "#d62728",
    "fp8": "#9467bd",
}


def roofline(roof):
    """Roofline chart of a :class:`~workbench.analysis.roofline.Roofline`: log-log, arithmetic intensity (FLOP/byte)
    against attained FLOP/s; one point per layer sized by its time and coloured by its precision; the roofs
    (min(peak, intensity × bandwidth)) drawn for each peak the layers use (Tensor Cores solid, CUDA cores dashed),
    with DRAM's bandwidth and, where the device's cache roof is known, a second line with the cache's (dotted,
    labelled with its size and source: a layer whose bytes fit in the cache is held against it). Layers without
    FLOPs (pure data movement) or with unknown work cannot sit on a log axis: the title counts them."""
    df = roof.layers
    dev = roof.device
    fig = _figure()
    title = f"Roofline — {roof.run_name} on {dev.name}"
    shown = df[(df["flops"] > 0) & (df["bytes"] > 0) & (df["time_ms"] > 0)]
    if shown.empty:
        return _empty(title, "No layer has both measured time and known FLOPs.")
    lo = float(min(shown["intensity"].min(), dev.peaks["fp32"] / dev.bandwidth)) / 4
    hi = float(shown["intensity"].max()) * 4
    xs = np.logspace(np.log10(lo), np.log10(hi), 200)
    for label in dict.fromkeys(shown["peak_from"]):
        peak = float(shown.loc[shown["peak_from"] == label, "peak_flops"].iloc[0])
        colour = _PRECISION_COLOURS.get(label.split(" ")[0], "#7f7f7f")
        fig.add_scatter(
            x=xs,
            y=np.minimum(peak, xs * dev.bandwidth),
            mode="lines",
            name=f"roof: {label} ({peak / 1e12:.4g} T/s, DRAM {dev.bandwidth / 1e9:.4g} GB/s)",
            line={"color": colour, "dash": "dash" if "cuda" in label else "solid", "width": 1.5},
            hoverinfo="skip",
        )
        if dev.cache_bandwidth and dev.cache_bytes:
            fig.add_scatter(
                x=xs,
                y=np.minimum(peak, xs * dev.cache_bandwidth),
                mode="lines",
                name=f"cache roof: {label}, {dev.cache_name} {dev.cache_bandwidth / 1e9:.4g} GB/s for layers moving "
                f"≤ {dev.cache_bytes / 2**20:g} MiB ({_source_label(dev.cache_source)})",
                line={"color": colour, "dash": "dot", "width": 1.5},
                hoverinfo="skip",
            )
    size = 8 + 40 * np.sqrt(shown["time_ms"] / shown["time_ms"].max())
    for precision, peak_from in dict.fromkeys(zip(shown["precision"], shown["peak_from"])):
        part = shown[(shown["precision"] == precision) & (shown["peak_from"] == peak_from)]
        hover = [
            f"<b>{r.name}</b><br>type: {r.type}<br>{r.time_ms:.4f} ms, limit {r.limit_ms:.4f} ms "
            f"({r.pct_of_roof:.1f}% of the roof, {r.bound}-bound)<br>{r.flops / 1e9:.4g} GFLOP, "
            f"{r.bytes / 1e6:.4g} MB, {r.intensity:.3g} FLOP/B<br>roof: {r.peak_from}, {r.memory_roof} bandwidth; "
            f"work from {r.work_from}"
            for r in part.itertuples()
        ]
        fig.add_scatter(
            x=part["intensity"],
            y=part["attained_flops"],
            mode="markers",
            name=f"{precision} layers on {peak_from}",
            marker={
                "size": size[part.index],
                "color": _PRECISION_COLOURS.get(precision, "#7f7f7f"),
                "symbol": "circle" if "cuda" not in peak_from else "diamond",
                "opacity": 0.7,
                "line": {"width": 1, "color": "#333"},
            },
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
        )
    hidden = len(df) - len(shown)
    if hidden:
        title += f" ({hidden} layers without FLOPs, time or known work not shown)"
    fig.update_layout(
        title=title,
        xaxis_type="log",
        yaxis_type="log",
        height=520,
        xaxis_title="arithmetic intensity (FLOP per byte moved)",
        yaxis_title="attained FLOP/s",
        legend_title="roof / layers (size = time)",
    )
    return fig


def _source_label(source: str) -> str:
    """A legend's short form of a roof's source: up to its first parenthesis or colon ("measured on this CPU")."""
    return source.split(" (")[0].split(":")[0].strip() or "source not given"


def time_above_limit(roof, top: int = TOP_LAYERS):
    """Per layer, the hardware limit and the measured time above it (stacked to the measured time), the ``top``
    layers by time above the limit: where a faster kernel could save the most."""
    df = roof.above_limit(top).iloc[::-1]
    fig = _figure()
    title = f"Time above the hardware limit — {roof.run_name} on {roof.device.name}"
    if df.empty:
        return _empty(title, "No layer has both a measured time and known work.")
    hover = [
        f"<b>{r.name}</b><br>type: {r.type}<br>{r.pct_of_roof:.1f}% of the roof ({r.bound}-bound)"
        for r in df.itertuples()
    ]
    for column, name in (("limit_ms", "hardware limit"), ("above_limit_ms", "above the limit")):
        fig.add_bar(
            y=df["name"],
            x=df[column].clip(lower=0),
            orientation="h",
            name=name,
            hovertext=hover,
            hovertemplate=f"%{{hovertext}}<br>{name.removeprefix('hardware ')} %{{x:.4f}} ms<extra></extra>",
        )
    fig.update_layout(
        title=title,
        barmode="stack",
        xaxis_title="time per inference (ms)",
        height=max(360, 22 * len(df) + 140),
        yaxis={"automargin": True},
    )
    return fig
