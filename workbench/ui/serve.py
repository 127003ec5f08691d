"""The panel's Serve tab: the run shown, served by a real Triton on 127.0.0.1, load-tested, or its serving
configuration searched under a p99 budget (:mod:`workbench.serving`).

Work runs in a background thread with a progress line and Cancel (checked between requests); every server it starts
is stopped before the thread ends, and dies with the kernel if the kernel is killed. Results: one line per
concurrency level and the latency–throughput chart with its Pareto front; serving runs go into the history.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..errors import Cancelled, WorkbenchError
from .parts import FIELD, BackgroundTab, error_html, error_text, show_figures


class ServeTab(BackgroundTab):
    """``current()`` returns the panel's run (or None); ``store`` keeps the serving runs; ``on_run(run)`` is called
    with each serving run kept (the panel refreshes its history)."""

    def __init__(self, current, store, on_run=None):
        self._current, self._store, self._on_run = current, store, on_run
        self.runs: list = []
        self.concurrency = widgets.Text(value="1,4,8", description="Concurrency", **FIELD)
        self.duration = widgets.BoundedFloatText(value=2.0, min=0.2, max=600, description="Seconds/level", **FIELD)
        self.p99 = widgets.BoundedFloatText(value=10.0, min=0.01, max=60_000, description="p99 budget (ms)", **FIELD)
        self.load_button = widgets.Button(description="Load test", button_style="primary", icon="tachometer")
        self.search_button = widgets.Button(description="Search configs", icon="search")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.Label()
        self.status = widgets.HTML()
        self.summary = widgets.HTML()
        self.chart = widgets.Output()
        self.load_button.on_click(lambda _: self._safely(self.start, "load", wait=False))
        self.search_button.on_click(lambda _: self._safely(self.start, "search", wait=False))
        self.cancel_button.on_click(lambda _: self.cancel())
        self.widget = widgets.VBox(
            [
                widgets.HTML(
                    "Serve the run shown through a real Triton on 127.0.0.1 (its own engine, ONNX Runtime here) and "
                    "measure it under concurrent requests; or search max batch size, dynamic batching and instances "
                    "for the highest throughput within the p99 budget. Client and server share this machine."
                ),
                self.concurrency,
                self.duration,
                self.p99,
                widgets.HBox([self.load_button, self.search_button, self.cancel_button, self.progress]),
                self.status,
                self.summary,
                self.chart,
            ]
        )

    def start(self, what: str, wait: bool = True):
        """Load-test (``"load"``) or search (``"search"``) the panel's run; ``wait=False`` works in the background."""
        from ..serving.load import parse_concurrency

        if self._thread is not None and self._thread.is_alive():
            raise WorkbenchError("Serving is already running: wait for it or press Cancel.")
        run = self._current()
        if run is None or run.source == "serve":
            raise WorkbenchError("No run to serve: build & profile a model first (or show one from the History tab).")
        levels = parse_concurrency(self.concurrency.value)
        self._new_progress()
        self.load_button.disabled = self.search_button.disabled = True
        self.cancel_button.disabled = False
        self.status.value = "<span style='color:#666'>starting Triton…</span>"
        self._in_background(self._work, (what, run, levels), "workbench-serve", wait)
        return self.runs if wait else None

    def _work(self, what, run, levels) -> None:
        from ..serving import serve, serving_lines
        from ..serving.search import search_serving

        try:
            if what == "search":
                found = search_serving(
                    run,
                    p99_ms=self.p99.value,
                    concurrency=levels,
                    duration_s=self.duration.value,
                    progress=self._progress,
                )
                runs, headline = list(found.runs), found.summary()
            else:
                with serve(run) as served:
                    runs = [served.load(levels, duration_s=self.duration.value, progress=self._progress)]
                headline = f"{runs[0].name}: client count = Triton's: {runs[0].serving.counts_agree}"
            self.runs = [self._store.add(r) for r in runs]
            for kept in self.runs:
                if self._on_run is not None:
                    self._on_run(kept)
            text = "\n\n".join(f"{r.name}\n" + "\n".join(serving_lines(r)) for r in self.runs)
            self.summary.value = f"<b>{html.escape(headline)}</b><pre>{html.escape(text)}</pre>"
            self.show(self.runs)
            self.status.value = "<span style='color:#1b5e20'>Done; the server is stopped.</span>"
        except Cancelled as e:
            self.status.value = f"<b>Cancelled</b>: {html.escape(str(e))} (the server is stopped)"
        except Exception as e:  # noqa: BLE001 - the thread reports everything
            self.status.value = error_html(error_text(e))
        finally:
            self.load_button.disabled = self.search_button.disabled = False
            self.cancel_button.disabled = True
            self.progress.value = ""

    def show(self, runs) -> None:
        """The latency–throughput chart of serving runs (with the Pareto front and the budget)."""
        from ..views import charts

        show_figures(self.chart, charts.serving_latency_throughput(runs, p99_budget_ms=self.p99.value))
