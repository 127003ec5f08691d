"""History and Compare tabs: the runs in the experiment store, and two or more of them side by side."""

from __future__ import annotations

import html

import ipywidgets as widgets
import pandas as pd

from .parts import TABLE_STYLE, error_html, error_text, show_figures, table_block, titled_tabs

_ALL = ""
#: Columns of the History table: store column -> (header, format).
_HISTORY_COLUMNS = {
    "created": ("created (UTC)", lambda v: str(v).replace("T", " ")[:19]),
    "name": ("run", str),
    "shapes": ("input shapes", lambda v: "–" if not isinstance(v, str) or not v else v),
    "device": ("device", lambda v: "–" if not isinstance(v, str) or not v else v[:28]),
    "precision": ("precision", str),
    "backend": ("backend", str),
    "mean_ms": ("mean ms", lambda v: "–" if pd.isna(v) else f"{v:.4f}"),
    "p99_ms": ("p99 ms", lambda v: "–" if pd.isna(v) else f"{v:.4f}"),
    "timing": ("median (95% rerun interval), stability", lambda v: "–" if v is None or pd.isna(v) else str(v)),
    "throughput_qps": ("inferences/s", lambda v: "–" if pd.isna(v) else f"{v:,.0f}"),
    "label_accuracy": ("label acc. %", lambda v: "–" if pd.isna(v) else f"{100 * v:.2f}"),
    "min_cosine": ("min cosine", lambda v: "–" if pd.isna(v) else f"{v:.4f}"),
    "verdict": ("accuracy", lambda v: v.upper() if isinstance(v, str) and v else "–"),
    "checks": ("failed self-checks", lambda v: v if isinstance(v, str) and v else "none"),
    "layers": ("layers", str),
    "run": ("id", str),
}


def run_option(row) -> tuple[str, str]:
    """(label, run id) for a run picker."""
    mean = "" if pd.isna(row["mean_ms"]) else f" · {row['mean_ms']:.4f} ms"
    return f"{str(row['created'])[5:19].replace('T', ' ')} · {row['name']}{mean} · {row['run'][-6:]}", row["run"]


class HistoryPanel:
    """Every stored run (newest first), filterable by model; a run can be shown in the result tabs."""

    def __init__(self, store, on_show):
        self.store = store
        self.on_show = on_show
        self.on_filter = None  # called with the model filter when it changes (the Compare tab follows it)
        self.model_filter = widgets.Dropdown(options=[("all models", _ALL)], value=_ALL, description="Model")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.table = widgets.HTML()
        self.run_picker = widgets.Dropdown(description="Run", layout={"width": "560px"})
        self.show_button = widgets.Button(description="Show in result tabs", icon="eye", layout={"width": "180px"})
        self.status = widgets.HTML()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.model_filter, self.refresh_button]),
                self.table,
                widgets.HBox([self.run_picker, self.show_button]),
                self.status,
            ]
        )
        self.model_filter.observe(lambda _: self._filtered(), "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.show_button.on_click(lambda _: self.show(self.run_picker.value))

    def runs(self) -> pd.DataFrame:
        """The runs listed (``Store.list`` columns), newest first."""
        return self.store.list(self.model_filter.value or None)

    def refresh(self) -> None:
        models = self.store.models()
        current = self.model_filter.value if self.model_filter.value in models else _ALL
        self.model_filter.options = [("all models", _ALL)] + [(m, m) for m in models]
        self.model_filter.value = current
        self._filtered()

    def _filtered(self) -> None:
        runs = self.runs()
        self.run_picker.options = [run_option(row) for _, row in runs.iterrows()]
        self.run_picker.value = self.run_picker.options[0][1] if len(runs) else None
        if runs.empty:
            self.table.value = "<i>No runs stored yet in this workspace.</i>"
        else:
            shown = pd.DataFrame({header: runs[col].map(fmt) for col, (header, fmt) in _HISTORY_COLUMNS.items()})
            self.table.value = table_block(shown, f"{len(runs)} runs in {self.store.path}", max_height=420)
        if self.on_filter is not None:
            self.on_filter(self.model_filter.value)

    def show(self, run_id: str) -> None:
        try:
            self.on_show(self.store.get(run_id))
            self.status.value = f"Showing run <code>{html.escape(run_id)}</code> in the result tabs."
        except Exception as e:  # noqa: BLE001 - a button's error must show, not vanish into the kernel's log
            self.status.value = error_html(error_text(e))


class ComparePanel:
    """Two or more stored runs: metrics side by side, latency and memory charts, the per-layer diff aligned by
    layer name and ONNX nodes, and latency against accuracy error (Pareto)."""

    def __init__(self, store):
        self.store = store
        self.result = None  # the last workbench.analysis.compare.Comparison
        self._model = _ALL
        self.run_select = widgets.SelectMultiple(description="Runs", rows=8, layout={"width": "640px"})
        self.compare_button = widgets.Button(description="Compare", button_style="primary", icon="columns")
        self.interleave = widgets.Checkbox(
            value=False,
            description="time again, alternately (fair A/B)",
            indent=False,
            tooltip="time the runs' variants again, alternately in one session, so that load and drift fall on all",
        )
        self.status = widgets.HTML(
            "<i>Select two or more runs (Ctrl/Shift-click) and press Compare; the oldest is the baseline A.</i>"
        )
        self.metrics = widgets.HTML()
        self.latency_chart = widgets.Output()
        self.memory_chart = widgets.Output()
        self.layers_chart = widgets.Output()
        self.layer_diff = widgets.HTML()
        self.pareto_chart = widgets.Output()
        self.tabs = titled_tabs(
            {
                "Metrics": self.metrics,
                "Latency & memory": widgets.VBox([self.latency_chart, self.memory_chart]),
                "Per-layer diff": widgets.VBox([self.layers_chart, self.layer_diff]),
                "Latency vs error": self.pareto_chart,
            }
        )
        self.widget = widgets.VBox(
            [self.run_select, widgets.HBox([self.compare_button, self.interleave]), self.status, self.tabs]
        )
        self.compare_button.on_click(lambda _: self._clicked())

    def set_model_filter(self, model: str) -> None:
        self._model = model
        self.refresh()

    def refresh(self) -> None:
        chosen = self.run_select.value
        runs = self.store.list(self._model or None)
        self.run_select.options = [run_option(row) for _, row in runs.iterrows()]
        self.run_select.value = tuple(r for r in chosen if r in set(runs["run"]))

    def _clicked(self) -> None:
        listed = [v for _, v in self.run_select.options]  # newest first
        oldest_first = sorted(self.run_select.value, key=listed.index, reverse=True)
        try:
            self.compare(oldest_first, interleave=self.interleave.value)
        except Exception as e:  # noqa: BLE001 - a button's error must show, not vanish into the kernel's log
            self.status.value = error_html(error_text(e))

    def compare(self, runs, interleave: bool = False):
        """Compare runs given as stored ids (or unique prefixes) or as Run objects; returns the Comparison.
        ``interleave``: time their variants again, alternately in one session (:func:`workbench.pipeline.interleave`)
        and compare those timings."""
        from ..analysis.compare import compare, format_metrics, layer_diff_html
        from ..views import charts

        loaded = [r if hasattr(r, "layers") else self.store.get(r) for r in runs]
        if interleave:
            from ..pipeline import interleave as time_alternately

            self.status.value = f"<i>Timing {len(loaded)} variants again, alternately…</i>"
            loaded = list(time_alternately(loaded))
        result = compare(loaded)
        stored = [r.id for r in loaded if r.id in self.store]
        if stored and set(stored) - {v for _, v in self.run_select.options}:
            self._model = _ALL  # a run of another model was asked for: list all so the selection can show it
            self.refresh()
        self.run_select.value = tuple(i for i in stored if i in {v for _, v in self.run_select.options})
        legend = "".join(f"<tr><th>{t}</th><td>{html.escape(label)}</td></tr>" for t, label in result.legend())
        from ..views.report import note_html

        self.metrics.value = (
            f"<table>{legend}</table><br>"
            + "".join(note_html(w) for w in result.warnings())
            + table_block(format_metrics(result.metrics).reset_index(), max_height=600)
        )
        figures = charts.comparison_figures(result)
        show_figures(self.latency_chart, figures["Latency"], figures["Latency intervals"])
        show_figures(self.memory_chart, figures["Memory"])
        show_figures(self.layers_chart, figures["Per-layer time"])
        show_figures(self.pareto_chart, figures["Latency vs accuracy error"])
        self.layer_diff.value = (
            f"{TABLE_STYLE}<p>Aligned by layer name and ONNX nodes, in execution order; "
            "Δ against A.</p><div style='max-height:480px;overflow:auto'>"
            + layer_diff_html(result.layers, classes="wb-table")
            + "</div>"
        )
        self.status.value = f"Compared {len(loaded)} runs; A = {html.escape(loaded[0].name)} is the baseline." + (
            " Timed again alternately in one session." if interleave else ""
        )
        self.result = result
        return result
