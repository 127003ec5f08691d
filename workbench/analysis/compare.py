"""Comparing Runs: key metrics side by side, a per-layer diff, and latency against accuracy error (Pareto).

Runs are tagged ``A``, ``B``, ``C``… in the order given; ``A`` is the baseline that speed-ups and deltas refer to.

Layers of different runs rarely match one to one: backends fuse differently, and a precision change adds
Quantize/Dequantize nodes or moves fusion boundaries. :func:`align_layers` therefore groups layers of all runs
into the smallest sets that cover the same work: two layers belong to one group when they have the same name or
when they come from a common ONNX node (``onnx_nodes`` of the layer table). A group is one row of the diff.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import WorkbenchError
from ..config import Precision
from ..results.layers import nodes_text
from ..results.metrics import METRICS
from ..results.metrics import metric as metric_named

#: Error measures a Pareto chart can use: name → axis title (:func:`_error` reads each from a Run).
ERROR_METRICS = {
    "label_error": "label error (% of samples misclassified)",
    "top1_disagreement": "top-1 disagreement with FP32 (%)",
    "max_abs_error": "max abs error against FP32",
}


def run_tags(runs) -> list[str]:
    """``A``, ``B``, … ``Z``, ``AA``, … one per run."""
    letters = string.ascii_uppercase
    return [letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26] for i in range(len(runs))]


def run_labels(runs) -> list[str]:
    """Readable, unique labels: the run's name, with its id where two runs share a name."""
    names = [r.name for r in runs]
    return [f"{r.name} [{r.id}]" if names.count(r.name) > 1 else r.name for r in runs]


def _check(runs, at_least: int = 2) -> list:
    runs = list(runs)
    if len(runs) < at_least:
        raise WorkbenchError(f"Comparing needs at least {at_least} runs (got {len(runs)}): pick more runs.")
    return runs


# ---- key metrics ---------------------------------------------------------------------------------------------

def compare_metrics(runs) -> pd.DataFrame:
    """Key metrics side by side: one row per metric (its heading, see :mod:`workbench.results.metrics`), one
    column per run tag (``A`` = baseline). Values are numbers (ms, bytes, percent) or text; rows no run has a value
    for are left out. ``attrs["metrics"]`` maps each row to its :class:`~workbench.results.metrics.Metric`."""
    runs = _check(runs)
    tags = run_tags(runs)
    rows, described = {}, {}
    base = runs[0].latency.mean_ms if runs[0].latency else None
    for m in METRICS:
        if not m.in_comparison:
            continue
        if m.key == "speedup":
            values = [base / r.latency.mean_ms if base and r.latency and r.latency.mean_ms else None for r in runs]
        else:
            values = [m.value(r) for r in runs]
        if any(v is not None for v in values):
            rows[m.heading], described[m.heading] = values, m
    df = pd.DataFrame.from_dict(rows, orient="index", columns=tags)
    df.index.name = "metric"
    df.attrs["metrics"] = described
    return df


def format_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare_metrics` with every value as display text (units in the row headings or the values)."""
    described = df.attrs.get("metrics", {})
    return pd.DataFrame({tag: [described[m].text(v) if m in described else str(v) for m, v in df[tag].items()]
                         for tag in df.columns}, index=df.index)


def best_runs(df: pd.DataFrame) -> dict[str, list[str]]:
    """Metric row -> the tags of the runs best at it (lowest or highest, as the metric says), for rows where runs
    differ; metrics that are not a figure of merit (names, counts, settings) have no best."""
    described = df.attrs.get("metrics", {})
    best = {}
    for row, values in df.iterrows():
        m = described.get(row)
        numbers = {tag: float(v) for tag, v in values.items() if isinstance(v, (int, float, np.number)) and v == v}
        if m is None or m.better is None or len(numbers) < 2 or len(set(numbers.values())) == 1:
            continue
        target = (min if m.better == "lower" else max)(numbers.values())
        best[row] = [tag for tag, v in numbers.items() if v == target]
    return best


# ---- per-layer alignment -------------------------------------------------------------------------------------


class _Groups:
    """Union-find over (run index, layer row)."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression keeps 10,000-layer runs fast
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def align_layers(runs) -> pd.DataFrame:
    """Layers of all runs grouped by what they compute; one row per (group, run) that has layers in it.

    Columns: ``group`` (0, 1, … in execution order of the first run that has it), ``layer`` (the group's label:
    the common layer name, or the ONNX nodes it covers), ``tag``, ``run`` (label), ``layers`` (names, in order),
    ``types``, ``precision``, ``time_ms``, ``activation_bytes``, ``weight_bytes``, ``onnx_nodes`` (of the group,
    all runs together).
    """
    runs = _check(runs, at_least=1)
    groups = _Groups()
    first_by_name: dict[str, tuple] = {}
    first_by_node: dict[str, tuple] = {}
    for i, run in enumerate(runs):
        for j, (name, nodes) in enumerate(zip(run.layers["name"], run.layers["onnx_nodes"])):
            key = (i, j)
            groups.find(key)
            if name:
                groups.union(first_by_name.setdefault(name, key), key)
            for node in nodes:
                groups.union(first_by_node.setdefault(node, key), key)

    order: dict = {}
    members: dict = {}
    for i, run in enumerate(runs):
        for j in range(len(run.layers)):
            root = groups.find((i, j))
            order.setdefault(root, len(order))
            members.setdefault(root, []).append((i, j))

    tags, labels = run_tags(runs), run_labels(runs)
    # plain lists: row-by-row pandas access would make 10,000-layer runs take seconds
    columns = [{c: r.layers[c].tolist() for c in ("name", "type", "precision", "time_ms", "activation_bytes",
                                                   "weight_bytes", "onnx_nodes")} for r in runs]
    rows = []
    for root, keys in members.items():
        by_run: dict[int, list[int]] = {}
        for i, j in keys:
            by_run.setdefault(i, []).append(j)
        nodes_by_run = {i: [n for j in js for n in columns[i]["onnx_nodes"][j]] for i, js in by_run.items()}
        nodes = list(dict.fromkeys(n for run_nodes in nodes_by_run.values() for n in run_nodes))
        names = list(dict.fromkeys(columns[i]["name"][j] for i, j in keys))
        label = _group_label(names, nodes, next((n for n in nodes_by_run.values() if n), []))
        for i in sorted(by_run):
            col, js = columns[i], by_run[i]
            times = [col["time_ms"][j] for j in js if not np.isnan(col["time_ms"][j])]
            rows.append({
                "group": order[root], "layer": label, "tag": tags[i], "run": labels[i],
                "layers": [col["name"][j] for j in js],
                "types": ", ".join(dict.fromkeys(col["type"][j] for j in js)),
                "precision": ", ".join(p for p in dict.fromkeys(col["precision"][j] for j in js) if p),
                "time_ms": float(sum(times)) if times else np.nan,
                "activation_bytes": int(sum(col["activation_bytes"][j] for j in js)),
                "weight_bytes": int(sum(col["weight_bytes"][j] for j in js)),
                "onnx_nodes": nodes,
            })
    return pd.DataFrame(rows, columns=["group", "layer", "tag", "run", "layers", "types", "precision", "time_ms",
                                       "activation_bytes", "weight_bytes", "onnx_nodes"]
                        ).sort_values(["group", "tag"], kind="stable").reset_index(drop=True)


def _group_label(names: list[str], nodes: list[str], first_nodes: list[str]) -> str:
    """A layer name shared by the whole group, else its ONNX nodes as the first run that has any lists them."""
    if len(names) == 1:
        return names[0]
    if not nodes:
        return " + ".join(names)
    first, last = first_nodes[0], first_nodes[-1]
    if first == last:
        text = first
    else:
        shared = first[: len(os.path.commonprefix([first, last]))].rfind("/") + 1  # "…/conv1/Conv … relu/Relu"
        text = f"{first} … {last[shared:]}"
    return text if len(nodes) == 1 else f"{text} ({len(nodes)} ONNX nodes)"


def layer_diff(runs, aligned: pd.DataFrame | None = None) -> pd.DataFrame:
    """The per-layer diff: one row per aligned group (see :func:`align_layers`), in execution order.

    Columns: ``layer``, ``onnx_nodes``, then per run tag ``T``: ``ms T`` (time per inference), ``layers T``
    (layer names), ``precision T``; and for every run after the baseline: ``Δ ms T−A`` and ``ratio T/A``.
    A group missing from a run has NaN time there (the work is done elsewhere or not at all).
    """
    runs = _check(runs)
    aligned = align_layers(runs) if aligned is None else aligned
    tags = run_tags(runs)
    base = aligned.groupby("group", sort=True).first()[["layer", "onnx_nodes"]]
    out = pd.DataFrame({"layer": base["layer"], "onnx_nodes": base["onnx_nodes"]})
    for tag in tags:
        mine = aligned[aligned["tag"] == tag].set_index("group")
        out[f"ms {tag}"] = mine["time_ms"].reindex(out.index)
        out[f"layers {tag}"] = mine["layers"].reindex(out.index).map(lambda v: ", ".join(v) if isinstance(v, list)
                                                                      else "")
        out[f"precision {tag}"] = mine["precision"].reindex(out.index).fillna("")
    a = tags[0]
    for tag in tags[1:]:
        out[f"Δ ms {tag}−{a}"] = out[f"ms {tag}"] - out[f"ms {a}"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"ratio {tag}/{a}"] = out[f"ms {tag}"] / out[f"ms {a}"].where(out[f"ms {a}"] > 0)
    return out.reset_index(drop=True)


# ---- latency against accuracy error --------------------------------------------------------------------------


def _error(run, metric: str):
    """The run's error by ``metric``; an FP32 run without an accuracy check is the reference (error 0)."""
    acc = run.accuracy
    if metric == "label_error":
        return None if not acc or acc.label_accuracy is None else 100.0 * (1.0 - acc.label_accuracy)
    if acc is None:
        return 0.0 if run.precision == Precision.FP32 else None
    if metric == "top1_disagreement":
        agree = metric_named("top1_agreement").value(run)  # percent
        return None if agree is None else 100.0 - agree
    return metric_named("max_abs_error").value(run)


def error_metric(runs) -> str:
    """The error measure every given run has: label error, else top-1 disagreement, else max abs error."""
    for metric in ERROR_METRICS:
        if all(_error(r, metric) is not None for r in runs):
            return metric
    counts = {m: sum(_error(r, m) is not None for r in runs) for m in ERROR_METRICS}
    return max(counts, key=lambda m: counts[m])


def pareto_points(runs, metric: str = "auto") -> pd.DataFrame:
    """Latency (mean ms) against accuracy error per run, with ``front`` True for runs no other run beats on both.

    Columns: ``tag``, ``run``, ``precision``, ``backend``, ``latency_ms``, ``error``, ``front``; ``attrs["metric"]``
    names the error measure (:data:`ERROR_METRICS`). Runs lacking the latency or the error have NaN there and
    are never on the front.
    """
    runs = list(runs)
    metric = error_metric(runs) if metric == "auto" else metric
    if metric not in ERROR_METRICS:
        raise WorkbenchError(f"Unknown error measure '{metric}': choose auto, {', '.join(ERROR_METRICS)}.")
    df = pd.DataFrame({
        "tag": run_tags(runs), "run": run_labels(runs), "precision": [r.precision for r in runs],
        "backend": [r.backend for r in runs],
        "latency_ms": [r.latency.mean_ms if r.latency else np.nan for r in runs],
        "error": [_error(r, metric) for r in runs],
    })
    df["error"] = df["error"].astype(float)
    df["front"] = False
    best = np.inf
    for idx in df.dropna(subset=["latency_ms", "error"]).sort_values(["latency_ms", "error"]).index:
        if df.at[idx, "error"] < best:
            df.at[idx, "front"] = True
            best = df.at[idx, "error"]
    df.attrs["metric"] = metric
    return df


# ---- all of it -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Two or more runs compared; what the Compare tab, ``workbench compare`` and comparison reports show."""

    runs: tuple
    metrics: pd.DataFrame
    aligned: pd.DataFrame  # align_layers
    layers: pd.DataFrame  # layer_diff
    pareto: pd.DataFrame

    @property
    def tags(self) -> list[str]:
        return run_tags(self.runs)

    def legend(self) -> list[tuple[str, str]]:
        """(tag, "label — run id") for every run."""
        return [(t, f"{r.name} — run {r.id}") for t, r in zip(self.tags, self.runs)]

    def changed_layers(self, top: int = 20) -> pd.DataFrame:
        """The ``top`` groups whose time changed most (absolute Δ against A, any run)."""
        deltas = self.layers.filter(like="Δ ms").abs().max(axis=1)
        return self.layers.loc[deltas.sort_values(ascending=False, na_position="last").index[:top]]

    def to_text(self, top: int = 15) -> str:
        """Plain text for a terminal: legend, metrics, and the layers whose time changed most."""
        lines = [f"{t} = {label}" for t, label in self.legend()]
        lines += ["", format_metrics(self.metrics).to_string(), ""]
        cols = ["layer"] + [c for c in self.layers.columns if c.startswith(("ms ", "Δ ms"))]
        changed = self.changed_layers(top)[cols].copy()
        changed["layer"] = [v if len(v) <= 80 else v[:39] + "…" + v[-40:] for v in changed["layer"]]
        lines += [f"Layers whose time changed most (of {len(self.layers)} aligned groups):",
                  changed.to_string(index=False, float_format=lambda v: f"{v:.4f}")]
        metric = self.pareto.attrs.get("metric")
        front = ", ".join(self.pareto.loc[self.pareto["front"], "tag"])
        if metric and front:
            lines += ["", f"Pareto front (mean latency vs {ERROR_METRICS[metric]}): {front}"]
        return "\n".join(lines)


def compare(runs) -> Comparison:
    """Compare two or more Runs (the first is the baseline ``A``)."""
    runs = tuple(_check(runs))
    aligned = align_layers(runs)
    return Comparison(runs=runs, metrics=compare_metrics(runs), aligned=aligned, layers=layer_diff(runs, aligned),
                      pareto=pareto_points(runs))


def layer_diff_html(diff: pd.DataFrame, limit: int = 300, classes: str | None = None) -> str:
    """The layer diff as an HTML table (the first ``limit`` groups; ONNX nodes abbreviated; CSS ``classes``)."""
    shown = diff.head(limit).copy()
    shown["onnx_nodes"] = shown["onnx_nodes"].map(nodes_text)
    note = f"<p>The first {limit} of {len(diff)} aligned groups.</p>" if len(diff) > limit else ""
    return note + shown.to_html(index=False, border=0, na_rep="–", float_format=lambda v: f"{v:.4f}", classes=classes)
