"""The Sweep tab: a grid of settings for the panel's model, run on local workers or Ray, filling in live."""

from __future__ import annotations

import html
import threading
from concurrent.futures import Future

import ipywidgets as widgets

from ..errors import Cancelled, WorkbenchError
from ..progress import Progress
from .parts import FIELD, BackgroundTab, error_html, error_text


class SweepPanel(BackgroundTab):
    """Precisions × batches × workspaces × optimization levels of the panel's model; Start / Cancel; the points
    table updates as each point finishes, then the Pareto report's path.

    ``request()`` (from the panel) gives the model path, backend, base BuildConfig and calibration / evaluation
    data; :meth:`start` does what the Start button does (``wait=True`` returns the :class:`~workbench.sweeps.Sweep`).
    """

    def __init__(self, store, request, on_done=None):
        self.store = store
        self.request = request
        self.on_done = on_done
        self.precisions = widgets.Text("fp32,fp16,int8", description="Precisions", **FIELD)
        self.batches = widgets.Text("1,8", description="Batch sizes", **FIELD)
        self.workspaces = widgets.Text("", description="Workspaces", placeholder="e.g. 1G,4G (TensorRT)", **FIELD)
        self.opt_levels = widgets.Text("", description="Opt. levels", placeholder="e.g. 3,5 (TensorRT)", **FIELD)
        self.executor = widgets.ToggleButtons(
            options=[("Local workers", "local"), ("Ray", "ray")],
            value="local",
            description="Executor",
            style={"description_width": "120px"},
        )
        self.workers = widgets.BoundedIntText(
            0, min=0, max=1024, description="Workers", tooltip="points run at once (0 = auto)", **FIELD
        )
        self.address = widgets.Text("", description="Ray address", placeholder="empty: a local Ray cluster", **FIELD)
        self.start_button = widgets.Button(description="Start sweep", button_style="primary", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress_bar = widgets.IntProgress(value=0, min=0, max=1, layout={"width": "300px"})
        self.status = widgets.HTML()
        self.table = widgets.HTML("<i>No sweep yet.</i>")
        self.widget = widgets.VBox(
            [
                widgets.HTML("<b>Every combination of these settings is one run</b> (comma-separated lists)"),
                self.precisions,
                self.batches,
                self.workspaces,
                self.opt_levels,
                self.executor,
                self.workers,
                self.address,
                widgets.HBox([self.start_button, self.cancel_button, self.progress_bar]),
                self.status,
                self.table,
            ]
        )
        self.start_button.on_click(lambda _: self._safely(self.start, wait=False))
        self.cancel_button.on_click(lambda _: self.cancel())
        self._progress: Progress | None = None
        self._future: Future | None = None
        self.result = None

    @property
    def running(self) -> bool:
        return self._future is not None and not self._future.done()

    def start(self, wait: bool = True):
        if self.running:
            raise WorkbenchError("A sweep is already running: wait for it or press Cancel.")
        request = dict(self.request())
        request.update(
            precisions=self.precisions.value,
            batches=self.batches.value or None,
            workspaces=self.workspaces.value or None,
            opt_levels=self.opt_levels.value or None,
            executor=self.executor.value,
            workers=self.workers.value or None,
            address=self.address.value.strip() or None,
        )
        self._progress = Progress()
        self._future = Future()
        self.start_button.disabled, self.cancel_button.disabled = True, False
        self.status.value = "<span style='color:#666'>planning and building the precision variants…</span>"
        if wait:
            self._work(request)
            return self._future.result()
        threading.Thread(target=self._work, args=(request,), daemon=True, name="workbench-sweep").start()
        return self._future

    def cancel(self) -> None:
        """Start no new point; the running ones finish and are kept (resume the sweep for the rest)."""
        if self._progress is not None and self.running:
            self._progress.cancel()
            self.status.value = "cancelling: the points running now finish, no new one starts…"

    def _on_point(self, result, row) -> None:
        from ..views.sweep import sweep_table_html

        self.result = result
        counts = result.record.counts()
        self.progress_bar.max = len(result.record.points)
        self.progress_bar.value = counts["done"] + counts["failed"]
        self.table.value = sweep_table_html(result.record.to_json(), result.table())

    def _work(self, request: dict) -> None:
        from ..sweeps import sweep

        try:
            result = sweep(store=self.store, progress=self._progress, on_point=self._on_point, **request)
        except Exception as e:  # noqa: BLE001 - the sweep thread reports everything
            stopped = "Cancelled" if isinstance(e, Cancelled) else "Stopped"
            self.status.value = error_html(f"{stopped}: {error_text(e)}")
            self._future.set_exception(e)
        else:
            self._on_point(result, None)
            self.status.value = (
                f"<span style='color:#1b5e20'>{html.escape(result.record.summary())}</span>; "
                f"report: <code>{html.escape(str(result.report_path))}</code>"
            )
            self._future.set_result(result)
            if self.on_done is not None:
                self.on_done(result)
        finally:
            self.start_button.disabled, self.cancel_button.disabled = False, True
