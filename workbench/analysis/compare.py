"""Comparing Runs: key metrics side by side, a per-layer diff, and latency against accuracy error (Pareto).

Runs are tagged ``A``, ``B``, ``C``… in the order given; ``A`` is the baseline that speed-ups and deltas refer to.

Layers of different runs rarely match one to one: backends fuse differently, and a precision change adds
Quantize/Dequantize nodes or moves fusion boundaries. :func:`align_layers` therefore groups layers of all runs
into the smallest sets that cover the same work: two layers belong to one group when they have the same name or
when they come from a common ONNX node (``onnx_nodes`` of the layer table). A group is one row of the diff.

Latency differences are never ranked on point values alone: each run's median is bootstrapped over its trials and
samples (:mod:`workbench.results.stats`), and a difference is stated as ``1.12× faster (1.09–1.15)`` or ``no
significant difference`` (:func:`latency_differences`); the Pareto front treats latencies that are not
significantly different as equal.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import string
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import WorkbenchError
from ..format import fit_table
from ..config import Precision
from ..results.layers import nodes_text
from ..results.metrics import METRICS
from ..results.metrics import metric as metric_named
from ..results.stats import (
    HOST_RERUN_FACTOR,
    MAX_CPU_WAIT,
    PRACTICAL_THRESHOLD,
    bootstrap_medians,
    difference_of,
    paired_difference,
    trial_spread,
)

#: Error measures a Pareto chart can use: name → axis title (:func:`_error` reads each from a Run), in the order
#: "auto" prefers them. All but max_abs_error see a collapse (an all-zero output is far from FP32); max_abs_error
#: does not (a probability map that became all zeros is "off by 0.0007"), so it comes last.
ERROR_METRICS = {
    "label_error": "label error (% of samples misclassified)",
    "top1_disagreement": "top-1 disagreement with FP32 (%)",
    "cosine_distance": "1 − cosine similarity with FP32 (worst output)",
    "rel_l2_error": "relative L2 error against FP32 (worst output)",
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
    for m in METRICS:
        if not m.in_comparison:
            continue
        if m.key == "speedup":  # significant or not, with its interval: never a bare ratio of noisy figures
            values = [None if v == "–" else v for v in latency_differences(runs)["text"]]
        else:
            values = [m.value(r) for r in runs]
        if any(v is not None for v in values):
            rows[m.heading], described[m.heading] = values, m
    df = pd.DataFrame.from_dict(rows, orient="index", columns=tags)
    df.index.name = "metric"
    df.attrs["metrics"] = described
    df.attrs["significantly_fastest"] = significantly_fastest(runs)
    return df


def format_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare_metrics` with every value as display text (units in the row headings or the values)."""
    described = df.attrs.get("metrics", {})
    return pd.DataFrame(
        {tag: [described[m].text(v) if m in described else str(v) for m, v in df[tag].items()] for tag in df.columns},
        index=df.index,
    )


# ---- latency differences with their intervals --------------------------------------------------------------


def interleaved_session(a, b) -> str | None:
    """The session id when runs ``a`` and ``b`` were timed alternately in one session with as many trials each
    (``extra["interleaved"]``, set by :func:`workbench.pipeline.interleave`), else None."""
    sa, sb = (r.extra.get("interleaved") if r.extra else None for r in (a, b))
    same = sa and sb and sa == sb and len(a.trial_samples) == len(b.trial_samples) > 1
    return sa if same else None


#: Runs timed further apart than this (minutes), not in one interleaved session, are said to be from other times.
APART_MINUTES = 10.0
#: Clocks (CPU MHz, GPU SM MHz) further apart than this share between two runs are "other clocks".
CLOCK_CHANGE = 0.10
#: Load averages per core further apart than this between two runs are "other load".
LOAD_CHANGE = 0.5


def same_gpu_work(a, b) -> str:
    """Why an end-to-end difference between GPU runs ``a`` and ``b`` is not claimed, or "": the GPU's own work per
    inference is the same (CUPTI: as many kernels, busy times within :data:`PRACTICAL_THRESHOLD`) and the medians
    differ by less than the host's part of an inference moves between sessions (:data:`HOST_RERUN_FACTOR`; each
    variant has a session of its own, so even runs timed alternately carry their sessions' host parts)."""
    ga, gb, ta, tb = a.gpu_time, b.gpu_time, a.timing, b.timing
    if None in (ga, gb, ta, tb) or ga.kernels != gb.kernels or not ga.busy_ms:
        return ""
    host = max(ta.median_ms - ga.busy_ms, tb.median_ms - gb.busy_ms, 0.0)
    if abs(gb.busy_ms / ga.busy_ms - 1) > PRACTICAL_THRESHOLD or abs(tb.median_ms - ta.median_ms) > host * (
        HOST_RERUN_FACTOR - 1
    ):
        return ""
    return (
        f"the GPU's own work is the same (busy {ga.busy_ms:.4g} vs {gb.busy_ms:.4g} ms, {gb.kernels:.0f} kernels); "
        "the difference is in the host's part, which moves between sessions"
    )


class _Bootstrap:
    """One bootstrap draw of each run's median (trials, then samples), reused for every pair of runs."""

    def __init__(self, runs):
        self.runs = list(runs)
        self._boot: dict[int, np.ndarray | None] = {}

    def samples(self, i: int):
        return self.runs[i].trial_samples

    def boot(self, i: int):
        if i not in self._boot:
            samples = self.samples(i)
            self._boot[i] = bootstrap_medians(samples, seed=i) if samples else None
        return self._boot[i]

    def difference(self, i: int, j: int):
        """Run ``j`` against run ``i`` (None when either has no samples); paired round by round where the two were
        timed alternately in one session (:func:`interleaved_session`); not claimed where the GPU's own work is the
        same and only the host's part moved (:func:`same_gpu_work`)."""
        found = self._difference(i, j)
        why = found is not None and found.significant and same_gpu_work(self.runs[i], self.runs[j])
        return dataclasses.replace(found, significant=False, unclaimed=why) if why else found

    def _difference(self, i: int, j: int):
        if interleaved_session(self.runs[i], self.runs[j]):
            return paired_difference(self.samples(i), self.samples(j))
        a, b = self.boot(i), self.boot(j)
        if a is None or b is None:
            return None
        ratio = float(np.median(np.concatenate(self.samples(j))) / np.median(np.concatenate(self.samples(i))))
        noise = max(PRACTICAL_THRESHOLD, trial_spread(self.samples(i)), trial_spread(self.samples(j)))
        found = difference_of(a, b, ratio, noise=noise)
        if found.significant and condition_differences(self.runs[i], self.runs[j]):
            # a speed-up is claimed only between runs that saw the same machine
            return dataclasses.replace(found, significant=False, unclaimed="timed under other conditions")
        return found


def latency_differences(runs) -> pd.DataFrame:
    """Every run's median latency against the baseline ``A``'s, with its 95% interval.

    Columns: ``tag``, ``run``, ``ratio`` (run / A; below 1 is faster), ``low``, ``high``, ``significant``,
    ``text`` (``1.12× faster (1.09–1.15)``, ``1.10× slower (…)``, ``no significant difference``, ``baseline`` for
    A, ``–`` for a run without per-inference samples).
    """
    runs = list(runs)
    boot = _Bootstrap(runs)
    rows = []
    for j, (tag, label) in enumerate(zip(run_tags(runs), run_labels(runs))):
        d = boot.difference(0, j) if j else None
        rows.append(
            {
                "tag": tag,
                "run": label,
                "ratio": d.ratio if d else (1.0 if j == 0 else np.nan),
                "low": d.low if d else np.nan,
                "high": d.high if d else np.nan,
                "significant": bool(d.significant) if d else False,
                "text": "baseline" if j == 0 else d.text() if d else "–",
            }
        )
    return pd.DataFrame(rows, columns=["tag", "run", "ratio", "low", "high", "significant", "text"])


#: Metrics that rank runs by speed: :func:`best_runs` marks a best there only for a significantly fastest run.
SPEED_METRICS = frozenset({"mean_ms", "p50_ms", "p90_ms", "p99_ms", "median_ms", "throughput_qps", "samples_per_s"})


def significantly_fastest(runs) -> str | None:
    """The tag of the run whose median latency is significantly lower than every other run's, else None."""
    runs = list(runs)
    boot = _Bootstrap(runs)
    timed = [i for i, r in enumerate(runs) if r.trial_samples]
    if len(timed) < 2:
        return None
    fastest = min(timed, key=lambda i: float(np.median(np.concatenate(runs[i].trial_samples))))
    for j in timed:
        if j != fastest:
            d = boot.difference(j, fastest)
            if d is None or not d.significant or d.ratio >= 1:
                return None
    return run_tags(runs)[fastest]


def best_runs(df: pd.DataFrame) -> dict[str, list[str]]:
    """Metric row -> the tags of the runs best at it (lowest or highest, as the metric says), for rows where runs
    differ; metrics that are not a figure of merit (names, counts, settings) have no best. Speed rows
    (:data:`SPEED_METRICS`) have one only where that run's median is significantly faster than every other run's
    (``attrs["significantly_fastest"]``, set by :func:`compare_metrics`)."""
    described = df.attrs.get("metrics", {})
    best = {}
    for row, values in df.iterrows():
        m = described.get(row)
        numbers = {tag: float(v) for tag, v in values.items() if isinstance(v, (int, float, np.number)) and v == v}
        if m is None or m.better is None or len(numbers) < 2 or len(set(numbers.values())) == 1:
            continue
        target = (min if m.better == "lower" else max)(numbers.values())
        best[row] = [tag for tag, v in numbers.items() if v == target]
        if m.key in SPEED_METRICS and best[row] != [df.attrs.get("significantly_fastest")]:
            del best[row]  # never rank noise: speed has a best only where one run is significantly faster
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
    columns = [
        {
            c: r.layers[c].tolist()
            for c in ("name", "type", "precision", "time_ms", "activation_bytes", "weight_bytes", "onnx_nodes")
        }
        for r in runs
    ]
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
            rows.append(
                {
                    "group": order[root],
                    "layer": label,
                    "tag": tags[i],
                    "run": labels[i],
                    "layers": [col["name"][j] for j in js],
                    "types": ", ".join(dict.fromkeys(col["type"][j] for j in js)),
                    "precision": ", ".join(p for p in dict.fromkeys(col["precision"][j] for j in js) if p),
                    "time_ms": float(sum(times)) if times else np.nan,
                    "activation_bytes": int(sum(col["activation_bytes"][j] for j in js)),
                    "weight_bytes": int(sum(col["weight_bytes"][j] for j in js)),
                    "onnx_nodes": nodes,
                }
            )
    return (
        pd.DataFrame(
            rows,
            columns=[
                "group",
                "layer",
                "tag",
                "run",
                "layers",
                "types",
                "precision",
                "time_ms",
                "activation_bytes",
                "weight_bytes",
                "onnx_nodes",
            ],
        )
        .sort_values(["group", "tag"], kind="stable")
        .reset_index(drop=True)
    )


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
        out[f"layers {tag}"] = (
            mine["layers"].reindex(out.index).map(lambda v: ", ".join(v) if isinstance(v, list) else "")
        )
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
    if metric == "cosine_distance":
        cosine = metric_named("min_cosine").value(run)
        return None if cosine is None else 1.0 - cosine
    return metric_named(metric).value(run)


def error_metric(runs) -> str:
    """The error measure every given run has: label error, else top-1 disagreement, else 1 − cosine, else relative
    L2 error, else (older runs only) max abs error."""
    for metric in ERROR_METRICS:
        if all(_error(r, metric) is not None for r in runs):
            return metric
    counts = {m: sum(_error(r, m) is not None for r in runs) for m in ERROR_METRICS}
    return max(counts, key=lambda m: counts[m])


def pareto_points(runs, metric: str = "auto") -> pd.DataFrame:
    """Latency (mean ms) against accuracy error per run, with ``front`` True for runs no other run beats on both.

    "Beats" on latency means significantly faster (the median's 95% intervals, :func:`latency_differences`):
    runs whose latencies differ only by noise are not ranked against each other.

    Columns: ``tag``, ``run``, ``precision``, ``backend``, ``latency_ms``, ``error``, ``verdict``, ``front``;
    ``attrs["metric"]`` names the error measure (:data:`ERROR_METRICS`). Runs lacking the latency or the error have
    NaN there and are never on the front; nor is a run whose accuracy verdict is "broken" (it is no trade-off).
    """
    runs = list(runs)
    metric = error_metric(runs) if metric == "auto" else metric
    if metric not in ERROR_METRICS:
        raise WorkbenchError(f"Unknown error measure '{metric}': choose auto, {', '.join(ERROR_METRICS)}.")
    df = pd.DataFrame(
        {
            "tag": run_tags(runs),
            "run": run_labels(runs),
            "precision": [r.precision for r in runs],
            "backend": [r.backend for r in runs],
            "latency_ms": [r.latency.mean_ms if r.latency else np.nan for r in runs],
            "error": [_error(r, metric) for r in runs],
            "verdict": [r.accuracy.verdict if r.accuracy else "" for r in runs],
        }
    )
    df["error"] = df["error"].astype(float)
    df["front"] = False
    boot = _Bootstrap(runs)
    known = df[df["verdict"] != "broken"].dropna(subset=["latency_ms", "error"]).index

    def faster(j, i) -> int:
        """1: run j significantly faster than i; 0: no significant difference; -1: significantly slower."""
        d = boot.difference(i, j)
        if d is None:  # no samples: fall back to the point values
            return int(np.sign(df.at[i, "latency_ms"] - df.at[j, "latency_ms"]))
        return 0 if not d.significant else (1 if d.ratio < 1 else -1)

    for i in known:  # on the front unless another run is no slower and no less accurate, and better in one
        dominated = False
        for j in known:
            if i == j:
                continue
            speed = faster(j, i)
            if (
                speed >= 0
                and df.at[j, "error"] <= df.at[i, "error"]
                and (speed > 0 or df.at[j, "error"] < df.at[i, "error"])
            ):
                dominated = True
                break
        df.at[i, "front"] = not dominated
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

    def warnings(self) -> list[str]:
        """What makes these runs not comparable one to one: other models, other input shapes."""
        return comparison_warnings(self.runs)

    def legend(self) -> list[tuple[str, str]]:
        """(tag, "label — run id") for every run."""
        return [(t, f"{r.name} — run {r.id}") for t, r in zip(self.tags, self.runs)]

    def changed_layers(self, top: int = 20) -> pd.DataFrame:
        """The ``top`` groups whose time changed most (absolute Δ against A, any run)."""
        deltas = self.layers.filter(like="Δ ms").abs().max(axis=1)
        return self.layers.loc[deltas.sort_values(ascending=False, na_position="last").index[:top]]

    def to_text(self, top: int = 15, width: int | None = None) -> str:
        """Plain text for a terminal: legend, metrics, and the layers whose time changed most. The tables fit in
        ``width`` characters (default: the terminal's; a large one shows everything), the runs or columns left out
        named below them."""
        lines = [f"{t} = {label}" for t, label in self.legend()]
        lines += [f"warning: {w}" for w in self.warnings()]
        metrics, hidden = fit_table(format_metrics(self.metrics), width, cell=24, index=True)
        lines += ["", metrics] + ([f"(runs left out to fit: {', '.join(hidden)}; --wide shows all)"] if hidden else [])
        lines += [""]
        diffs = latency_differences(self.runs)
        lines += [
            "Latency against A (median, 95% interval; a difference within the interval, under 1% or under "
            "the runs' own trial-to-trial spread is not significant, and one between runs timed under other "
            "conditions is not claimed):"
        ]
        lines += [f"  {r.tag} vs A: {r.text}" for r in diffs.iloc[1:].itertuples()] + [""]
        cols = ["layer"] + [c for c in self.layers.columns if c.startswith(("ms ", "Δ ms"))]
        changed = self.changed_layers(top)[cols].copy()
        changed["layer"] = [v if len(v) <= 48 else v[:23] + "…" + v[-24:] for v in changed["layer"]]
        layers, hidden = fit_table(changed, width, cell=48, float_format=lambda v: f"{v:.4f}")
        lines += [f"Layers whose time changed most (of {len(self.layers)} aligned groups):", layers]
        if hidden:
            lines.append(f"(columns left out to fit: {', '.join(hidden)}; --wide shows all)")
        metric = self.pareto.attrs.get("metric")
        front = ", ".join(self.pareto.loc[self.pareto["front"], "tag"])
        if metric and front:
            lines += [
                "",
                f"Pareto front (mean latency vs {ERROR_METRICS[metric]}; latencies that are not "
                f"significantly different count as equal): {front}",
            ]
        unmeasured = self.pareto.loc[self.pareto["latency_ms"].notna() & self.pareto["error"].isna(), "tag"]
        if len(unmeasured):
            lines.append(f"Not on the Pareto front, accuracy not measured: {', '.join(unmeasured)}")
        width = width or shutil.get_terminal_size((120, 24)).columns
        # a line of prose wraps at the width (a table, several lines, fits it already)
        return "\n".join(line if "\n" in line else textwrap.fill(line, width, subsequent_indent="  ") for line in lines)


def comparison_warnings(runs) -> list[str]:
    """Warnings for runs that measure different things: different models (by SHA-256, else name), or different
    input shapes (speed-ups and layer diffs between them compare unlike work); and runs timed under different
    conditions (:func:`timing_condition_warnings`)."""
    runs = list(runs)
    tags = run_tags(runs)
    out = []
    models = [r.model.get("sha256") or r.model.get("name") or "" for r in runs]
    if len({m for m in models if m}) > 1:
        names = ", ".join(f"{t}: {r.model.get('name') or '?'}" for t, r in zip(tags, runs))
        out.append(
            f"these runs are of different models ({names}): speed-ups and the layer diff compare unlike "
            "work; compare variants of one model"
        )
    shapes = [r.shapes_text for r in runs]
    if len({s for s in shapes if s}) > 1:
        out.append(
            "these runs measured different input shapes ("
            + "; ".join(f"{t}: {s or 'not recorded'}" for t, s in zip(tags, shapes))
            + "): latency depends on shape; profile them at the same --shapes"
        )
    return out + timing_condition_warnings(runs)


def _minutes_apart(a, b) -> float | None:
    import datetime as dt

    try:
        ta, tb = (dt.datetime.fromisoformat(r.created) for r in (a, b))
        return abs((tb - ta).total_seconds()) / 60
    except (TypeError, ValueError):
        return None


def _load_per_core(run) -> float | None:
    c = run.conditions
    loads = [x.load_1m for x in (c.before, c.after) if x.load_1m is not None] if c else []
    cores = (run.environment or {}).get("cpu_cores") or os.cpu_count() or 1
    return max(loads) / cores if loads else None


def _clock(run, key: str) -> float | None:
    c = run.conditions
    values = [getattr(x, key) for x in (c.before, c.after) if getattr(x, key)] if c else []
    return sum(values) / len(values) if values else None


def condition_differences(a, b) -> list[str]:
    """Why a latency difference between runs ``a`` and ``b`` may be the machine's, not the variants' (empty when
    they were timed alternately in one session, ``compare --interleave``, or either lacks trials): timed more than
    :data:`APART_MINUTES` apart, under other clocks (CPU or GPU SM clock more than :data:`CLOCK_CHANGE` apart),
    under other load (load average per core more than :data:`LOAD_CHANGE` apart) or on a contended host (timing
    threads waiting for a CPU more than :data:`MAX_CPU_WAIT` of the time)."""
    if interleaved_session(a, b) or not (a.timing and b.timing):
        return []
    why = []
    apart = _minutes_apart(a, b)
    if apart is not None and apart > APART_MINUTES:
        why.append(f"{apart:.0f} min apart")
    for key, what, unit in (("cpu_mhz", "CPU clock", "MHz"), ("gpu_sm_mhz", "GPU SM clock", "MHz")):
        x, y = _clock(a, key), _clock(b, key)
        if x and y and abs(y - x) / x > CLOCK_CHANGE:
            why.append(f"{what} {x:.0f} vs {y:.0f} {unit}")
    x, y = _load_per_core(a), _load_per_core(b)
    if x is not None and y is not None and abs(y - x) > LOAD_CHANGE:
        why.append(f"load average per core {x:.2f} vs {y:.2f}")
    waits = [r.timing.cpu_wait or 0.0 for r in (a, b)]
    if max(waits) > MAX_CPU_WAIT:
        why.append(f"timing threads waited for a CPU {100 * waits[0]:.0f}% vs {100 * waits[1]:.0f}% of the time")
    return why


def timing_condition_warnings(runs) -> list[str]:
    """One warning per run timed under other conditions than the baseline A (:func:`condition_differences`)."""
    runs = list(runs)
    out = []
    for tag, run in zip(run_tags(runs)[1:], runs[1:]):
        why = condition_differences(runs[0], run)
        if why:
            out.append(
                f"A and {tag} were timed under other conditions ({'; '.join(why)}): their latency difference may "
                "be the machine's; 'workbench compare --interleave' times both alternately in one session"
            )
    return out


def compare(runs) -> Comparison:
    """Compare two or more Runs (the first is the baseline ``A``)."""
    runs = tuple(_check(runs))
    aligned = align_layers(runs)
    return Comparison(
        runs=runs,
        metrics=compare_metrics(runs),
        aligned=aligned,
        layers=layer_diff(runs, aligned),
        pareto=pareto_points(runs),
    )


def layer_diff_html(diff: pd.DataFrame, limit: int = 300, classes: str | None = None) -> str:
    """The layer diff as an HTML table (the first ``limit`` groups; ONNX nodes abbreviated; CSS ``classes``)."""
    shown = diff.head(limit).copy()
    shown["onnx_nodes"] = shown["onnx_nodes"].map(nodes_text)
    note = f"<p>The first {limit} of {len(diff)} aligned groups.</p>" if len(diff) > limit else ""
    return note + shown.to_html(index=False, border=0, na_rep="–", float_format=lambda v: f"{v:.4f}", classes=classes)
