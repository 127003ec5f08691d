"""The sweep report and sweep charts: the Pareto front over latency, accuracy error and memory, the best point per
objective, every point with its state (and reason when it failed) and its trtexec command."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ..analysis.frontier import BEST, best_points, sweep_table
from ..errors import WorkbenchError
from ..format import human_bytes
from ..interop.trtexec import command_for_run
from ..paths import atomic_write
from .charts import _PRECISION_COLOURS, _empty, _figure, _front_line
from .formatting_html import note_html, table_html
from .report import figures_html, page_html

_STATE_COLOURS = {"done": "#1b7f3b", "failed": "#b00020", "pending": "#777"}


def pareto_chart(table):
    """Mean latency against accuracy error, marker area by memory, the front's points outlined and joined."""
    shown = table.dropna(subset=["latency_ms", "error"])
    fig = _figure()
    title = f"Latency vs {table.attrs.get('error_label', 'accuracy error')} (marker size: memory)"
    if shown.empty:
        return _empty(title, "No point has both a latency and an accuracy error yet.")
    memory = shown["memory_bytes"].fillna(shown["memory_bytes"].min() if shown["memory_bytes"].notna().any() else 1)
    top = float(memory.max()) or 1.0
    front = shown[shown["front"]].sort_values("latency_ms")
    _front_line(fig, front["latency_ms"], front["error"], colour="#444")
    for precision, mine in shown.groupby("precision", sort=False):
        sizes = 10 + 30 * np.sqrt(memory[mine.index] / top)
        fig.add_scatter(
            x=mine["latency_ms"],
            y=mine["error"],
            mode="markers",
            name=precision,
            marker={
                "size": sizes,
                "color": _PRECISION_COLOURS.get(precision),
                "line": {"width": np.where(mine["front"], 3, 0.5), "color": "#000"},
            },
            customdata=np.stack([mine["point"], mine["memory_bytes"].map(human_bytes), mine["front"]], axis=-1),
            hovertemplate="%{customdata[0]}<br>%{x:.4f} ms<br>error %{y:.4g}<br>memory %{customdata[1]}"
            "<br>on the front: %{customdata[2]}<extra></extra>",
        )
    fig.update_layout(
        title=title,
        xaxis_title="mean latency per inference (ms)",
        yaxis_title=table.attrs.get("error_label", "error"),
        legend_title="precision",
    )
    return fig


def memory_chart(table):
    """Mean latency against memory, one marker per done point (the third objective of the front)."""
    shown = table.dropna(subset=["latency_ms", "memory_bytes"])
    fig = _figure()
    for precision, mine in shown.groupby("precision", sort=False):
        fig.add_scatter(
            x=mine["latency_ms"],
            y=mine["memory_bytes"] / (1 << 20),
            mode="markers",
            name=precision,
            marker={
                "size": 11,
                "symbol": np.where(mine["front"], "diamond", "circle"),
                "color": _PRECISION_COLOURS.get(precision),
            },
            text=mine["point"],
            hovertemplate="%{text}<br>%{x:.4f} ms<br>%{y:.2f} MiB<extra></extra>",
        )
    fig.update_layout(
        title=f"Latency vs memory ({table.attrs.get('memory', '')}; diamonds: on the front)",
        xaxis_title="mean latency per inference (ms)",
        yaxis_title="MiB",
        legend_title="precision",
    )
    return fig


def _fmt(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if kind == "bytes":
        return human_bytes(value)
    return f"{value:.4g}"


def sweep_table_html(record: dict, table) -> str:
    """The points table (state, figures, front), for the report and the panel."""
    head = (
        "<tr><th>#</th><th>point</th><th>state</th><th>mean ms</th><th>p99 ms</th><th>samples/s</th>"
        "<th>error</th><th>memory</th><th>front</th><th>run / reason</th></tr>"
    )
    rows = []
    for _, r in table.iterrows():
        colour = _STATE_COLOURS.get(r["state"], "#000")
        detail = html.escape(r["reason"] if r["state"] == "failed" else r["run"])
        rows.append(
            f"<tr><td>{int(r['index'])}</td><td>{html.escape(r['point'])}</td>"
            f"<td style='color:{colour}'>{html.escape(r['state'])}</td><td>{_fmt(r['latency_ms'], 'n')}</td>"
            f"<td>{_fmt(r['p99_ms'], 'n')}</td><td>{_fmt(r['samples_per_s'], 'n')}</td>"
            f"<td>{_fmt(r['error'], 'n')}</td><td>{_fmt(r['memory_bytes'], 'bytes')}</td>"
            f"<td>{'★' if r['front'] else ''}</td><td>{detail}</td></tr>"
        )
    counts = {s: int((table["state"] == s).sum()) for s in ("done", "failed", "pending")}
    summary = (
        f"<p>Sweep <b>{html.escape(record['id'])}</b> ({html.escape(record.get('status', ''))}): "
        f"{counts['done']} done, {counts['failed']} failed, {counts['pending']} pending of {len(table)}.</p>"
    )
    return summary + f"<div class='wide'><table>{head}{''.join(rows)}</table></div>"


def _best_html(table) -> str:
    best = best_points(table)
    if not best:
        return "<p>No point is done yet.</p>"
    kinds = {"latency_ms": "ms", "samples_per_s": "samples/s", "error": "", "memory_bytes": "bytes"}
    rows = [
        (
            b["label"],
            f"{b['point']} — "
            + (human_bytes(b["value"]) if kinds[c] == "bytes" else f"{b['value']:.4g} {kinds[c]}")
            + f" (run {b['run']})",
        )
        for c, b in best.items()
        if c in BEST
    ]
    return table_html(rows)


def _commands_html(runs) -> str:
    parts = []
    for run in runs:
        try:
            text = command_for_run(run)
        except WorkbenchError as e:
            text = str(e)
        parts.append(f"<p><b>{html.escape(run.name)}</b> ({html.escape(run.id)})</p><pre>{html.escape(text)}</pre>")
    return "".join(parts) or "<p>No point is done yet.</p>"


def sweep_report_html(record: dict, runs) -> str:
    """A self-contained HTML page of a sweep (``record``: :meth:`SweepRecord.to_json`; ``runs``: its done Runs)."""
    runs = list(runs)
    table = sweep_table(record["points"], runs)
    request, model, executor = record.get("request", {}), record.get("model", {}), record.get("executor", {})
    settings = [
        ("Model", f"{model.get('name')} ({model.get('path')}, sha256 {str(model.get('sha256'))[:12]}…)"),
        ("Backend requested", str(request.get("backend"))),
        ("Trials per point", str(request.get("trials"))),
        ("Executor", f"{executor.get('name', '?')}: {executor.get('why', '')}"),
        ("Calibration", str(request.get("calibration") or ("random" if request.get("random_calibration") else "none"))),
        ("Accuracy measured on", str(request.get("eval") or "the profiling inputs, against FP32")),
        ("Error measure", table.attrs["error_label"]),
        ("Memory measure", table.attrs["memory"]),
        ("Created / updated", f"{record.get('created')} / {record.get('updated')}"),
    ]
    notes = []
    if runs and all(r.backend == "onnxruntime" for r in runs):
        notes.append(
            "Workspace size and builder optimization level are TensorRT build settings: ONNX "
            "Runtime ignores them, so points that differ only there measure the same session."
        )
    if any(r.variant.get("calibration", {}).get("random") for r in runs):
        notes.append("Some points were calibrated on RANDOM data: their accuracy does not represent real data.")
    if (table["state"] != "done").any():
        notes.append(
            "Points not done are listed below with their state; failed ones with the reason. "
            f"Resume with: workbench sweep --resume {record['id']}"
        )
    body = [
        f"<h1>Sweep of {html.escape(str(model.get('name')))}</h1>",
        *map(note_html, notes),
        table_html(settings),
        "<h2>Pareto front</h2>",
        "<p>A point is on the front (★) when no other point is at least as good on latency, accuracy error and "
        "memory together and better on one.</p>",
        figures_html([pareto_chart(table), memory_chart(table)]),
        "<h2>Best point per objective</h2>",
        _best_html(table),
        "<h2>Every point</h2>",
        sweep_table_html(record, table),
        "<h2>trtexec commands</h2>",
        _commands_html(runs),
    ]
    return page_html(f"Sweep {record['id']}", body)


def write_sweep_report(record: dict, runs, path) -> Path:
    """Write :func:`sweep_report_html` to ``path`` atomically."""
    return atomic_write(path, sweep_report_html(record, runs))
