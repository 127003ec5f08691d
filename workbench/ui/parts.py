"""Small widget parts of the workbench panel: figures in Output widgets, a precision picker whose impossible
choices are disabled with their reason, a sortable layer table, and a log that catches a build thread's output."""

from __future__ import annotations

import html
import json
import logging
import sys
import threading
import time

import ipywidgets as widgets
import pandas as pd
import traitlets

from ..errors import WorkbenchError, first_line
from ..messages import ROOT, message_text
from ..results.layers import SHOWN_COLUMNS, nodes_text

PLOTLY_MIME = "application/vnd.plotly.v1+json"


# ---- figures -------------------------------------------------------------------------------------------------


def figure_bundle(fig) -> dict:
    """A plotly figure as a display bundle: the plotly mimetype (rendered by JupyterLab's plotly extension,
    VS Code and Notebook 7) and a text fallback naming the chart."""
    import plotly.io as pio

    title = fig.layout.title.text or "plotly figure"
    data = json.loads(pio.to_json(fig, validate=False, remove_uids=False))
    data["config"] = {"displaylogo": False, "responsive": True}
    return {PLOTLY_MIME: data, "text/plain": f"<Figure: {title}>"}


def show_figures(out: widgets.Output, *figures) -> None:
    """Replace what ``out`` shows with ``figures``. Sets the outputs directly, so it works from any thread."""
    out.outputs = tuple({"output_type": "display_data", "data": figure_bundle(f), "metadata": {}} for f in figures)


def figures_in(out: widgets.Output) -> list[dict]:
    """The plotly figure dicts an Output shows (for scripts and tests)."""
    return [o["data"][PLOTLY_MIME] for o in out.outputs if PLOTLY_MIME in o.get("data", {})]


#: Compact tables: one line per row (long cells scroll sideways), numbers in a monospaced font.
TABLE_STYLE = (
    "<style>.wb-table{border-collapse:collapse;font-size:12px}"
    ".wb-table th,.wb-table td{padding:2px 8px;white-space:nowrap;text-align:left}"
    ".wb-table tr:nth-child(even){background:#f6f6f6}.wb-table td{font-variant-numeric:tabular-nums}"
    "</style>"
)


#: The panel's tabs: each title takes the width it needs (ipywidgets gives every tab 144 px and cuts longer
#: titles: "Per-layer memor"), a bar too long for the panel wraps onto a second row; and what a tab holds is no
#: wider than the tab (flex items grow to their content by default), so a wide table scrolls in its box instead
#: of running past the tab's edge, cut off.
TABS_CLASS = "wb-tabs"
TABS_STYLE = (
    f"<style>.widget-tab.{TABS_CLASS} > .lm-TabBar .lm-TabBar-tab{{flex:0 0 auto}}"
    f".widget-tab.{TABS_CLASS} > .lm-TabBar .lm-TabBar-content{{flex-wrap:wrap}}"
    f".widget-tab.{TABS_CLASS} .widget-html,.widget-tab.{TABS_CLASS} .widget-html-content,"
    f".widget-tab.{TABS_CLASS} .widget-box{{min-width:0;max-width:100%}}</style>"
)


#: Labelled fields line up: one description width everywhere.
FIELD = {"style": {"description_width": "120px"}, "layout": {"width": "95%", "max_width": "480px"}}


def titled_tabs(tabs: dict) -> widgets.Tab:
    """A Tab of ``{title: widget}``, styled as the panel's tabs (:data:`TABS_CLASS`)."""
    tab = widgets.Tab(children=list(tabs.values()))
    for i, title in enumerate(tabs):
        tab.set_title(i, title)
    tab.add_class(TABS_CLASS)
    return tab


def table_block(df: pd.DataFrame, caption: str = "", max_height: int = 480, **to_html) -> str:
    """A DataFrame as a compact, scrollable HTML table with a caption line."""
    table = df.to_html(index=False, border=0, classes="wb-table", **to_html)
    return (
        f"{TABLE_STYLE}<div style='color:#666'>{html.escape(caption)}</div>"
        f"<div style='max-height:{max_height}px;overflow:auto'>{table}</div>"
    )


def error_text(error: Exception) -> str:
    """One line about an error: a WorkbenchError's message, or the type and first line of anything else."""
    if isinstance(error, WorkbenchError):
        return str(error)
    first = first_line(error)
    return first if first == type(error).__name__ else f"{type(error).__name__}: {first}"


def error_html(message: str) -> str:
    return f"<div style='color:#b00020'><b>Error:</b> {html.escape(message)}</div>"


# ---- precision picker ----------------------------------------------------------------------------------------


class BackgroundTab:
    """A tab whose work runs in a daemon thread, with a progress line (``self.progress``, a Label) and Cancel."""

    _progress = None
    _thread: threading.Thread | None = None

    def _new_progress(self):
        from ..progress import Progress

        self._progress = Progress(self._on_progress)
        return self._progress

    def _in_background(self, target, args: tuple, name: str, wait: bool) -> None:
        self._thread = threading.Thread(target=target, args=args, daemon=True, name=name)
        self._thread.start()
        if wait:
            self._thread.join()

    def _safely(self, action, *args, **kwargs):
        try:
            return action(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the user must see it, not the kernel log
            self.status.value = error_html(error_text(e))

    def cancel(self) -> None:
        if self._progress is not None:
            self._progress.cancel()
            self.progress.value = "cancelling…"

    def _on_progress(self, phase: str, step: int, total: int) -> None:
        self.progress.value = (f"{phase} {step}/{total}" if total else phase)[:90]


class PrecisionPicker(widgets.VBox):
    """One toggle button per precision; those the backend or GPU cannot do are disabled, their reason shown in
    the tooltip and in a line below. ``value`` is the chosen precision."""

    value = traitlets.Unicode("fp32")

    def __init__(self, precisions, value: str = "fp32"):
        self.buttons = {
            p: widgets.ToggleButton(description=p, value=p == value, layout={"width": "70px"}) for p in precisions
        }
        self.reasons = widgets.HTML()
        super().__init__([widgets.HBox(list(self.buttons.values())), self.reasons])
        self.value = value
        for precision, button in self.buttons.items():
            button.observe(lambda change, p=precision: self._pressed(p, change["new"]), "value")

    def _pressed(self, precision: str, down: bool) -> None:
        if down and not self.buttons[precision].disabled:
            self.value = precision
        elif down or self.value == precision:  # a disabled button stays up; the chosen one stays down
            self.buttons[precision].value = precision == self.value

    @traitlets.validate("value")
    def _check(self, proposal):
        new = proposal["value"]
        if new not in self.buttons:
            raise traitlets.TraitError(f"Unknown precision '{new}': choose one of {', '.join(self.buttons)}.")
        if self.buttons[new].disabled:
            raise traitlets.TraitError(f"Precision {new} is not available here: {self.buttons[new].tooltip}")
        return new

    @traitlets.observe("value")
    def _show(self, change) -> None:
        for precision, button in self.buttons.items():
            button.value = precision == change["new"]

    def set_support(self, support: dict[str, tuple[bool, str]]) -> None:
        """Enable what can run, disable the rest with its reason; falls back to fp32 if the choice went away."""
        for precision, button in self.buttons.items():
            ok, reason = support.get(precision, (True, ""))
            button.disabled = not ok
            button.tooltip = reason if not ok else f"build and profile at {precision}"
        if self.buttons[self.value].disabled:
            self.value = "fp32"
        off = [f"<b>{p}</b>: {html.escape(self.buttons[p].tooltip)}" for p in self.buttons if self.buttons[p].disabled]
        self.reasons.value = (
            "<div style='color:#666;font-size:.9em'>Unavailable — " + "; ".join(off) + "</div>" if off else ""
        )

    @property
    def available(self) -> list[str]:
        return [p for p, b in self.buttons.items() if not b.disabled]


# ---- layer table ---------------------------------------------------------------------------------------------


class LayerTable(widgets.VBox):
    """The layer table of a run as HTML, sortable by any column, filterable by name/type/ONNX node text."""

    COLUMNS = SHOWN_COLUMNS

    def __init__(self):
        self.sort_by = widgets.Dropdown(
            options=self.COLUMNS, value="median_ms", description="Sort by", layout={"width": "230px"}
        )
        self.descending = widgets.ToggleButton(
            value=True,
            description="descending",
            icon="sort-amount-desc",
            tooltip="sort direction",
            layout={"width": "120px"},
        )
        self.filter = widgets.Text(
            placeholder="filter: name, type or ONNX node",
            description="Filter",
            continuous_update=False,
            layout={"width": "320px"},
        )
        self.limit = widgets.BoundedIntText(value=50, min=1, max=100000, description="Rows", layout={"width": "150px"})
        self.table = widgets.HTML()
        self._layers = pd.DataFrame(columns=list(self.COLUMNS))
        self._time_source = ""
        super().__init__([widgets.HBox([self.sort_by, self.descending, self.filter, self.limit]), self.table])
        for w in (self.sort_by, self.descending, self.filter, self.limit):
            w.observe(lambda _: self._render(), "value")
        self._render()

    #: The GPU's drill-down (CUPTI), shown after ``time_ms`` where the run has it.
    GPU_COLUMNS = ("host_ms", "kernels", "kernel_names")

    def set_layers(self, layers: pd.DataFrame, time_source: str = "") -> None:
        """Show ``layers``; ``time_source`` (``Run.time_source_label``) is named with the table."""
        self._layers = layers
        self._time_source = time_source
        self._render()

    def rows(self) -> pd.DataFrame:
        """The rows shown, in the order shown."""
        df = self._layers
        text = self.filter.value.strip().lower()
        if text:
            hay = (df["name"] + " " + df["type"] + " " + df["onnx_nodes"].map(" ".join)).str.lower()
            df = df[hay.str.contains(text, regex=False)]
        key = self.sort_by.value
        if key == "onnx_nodes":
            order = df[key].map(len).sort_values(ascending=not self.descending.value, kind="stable").index
            df = df.loc[order]
        else:
            df = df.sort_values(key, ascending=not self.descending.value, na_position="last", kind="stable")
        return df.head(self.limit.value)

    def _render(self) -> None:
        self.descending.description = "descending" if self.descending.value else "ascending"
        shown = self.rows()
        if self._layers.empty:
            self.table.value = "<i>No run yet: press Build & profile.</i>"
            return
        columns = list(self.COLUMNS)
        at = columns.index("time_ms") + 1
        columns[at:at] = [c for c in self.GPU_COLUMNS if c in shown.columns]
        out = shown[columns].copy()
        out["onnx_nodes"] = out["onnx_nodes"].map(nodes_text)
        if "kernel_names" in out:
            out["kernel_names"] = out["kernel_names"].map(lambda names: nodes_text(names, shown=3))
        self.table.value = table_block(
            out,
            f"{len(shown)} of {len(self._layers)} layers"
            + (f"; times: {self._time_source}" if self._time_source else ""),
            na_rep="–",
            float_format=lambda v: f"{v:.4f}",
        )


# ---- a log that catches what a build thread prints --------------------------------------------------------------


class _ThreadRoutedStream:
    """Stands in for sys.stdout/stderr while builds run: what a build thread writes goes to its log, everything
    else to the original stream (other cells keep printing where they did)."""

    def __init__(self, original):
        self.original = original
        self.sinks: dict[int, object] = {}

    def write(self, text):
        sink = self.sinks.get(threading.get_ident())
        return sink(text) if sink is not None else self.original.write(text)

    def flush(self):
        self.original.flush()

    def __getattr__(self, name):
        return getattr(self.original, name)


_route_lock = threading.Lock()


class BuildLog:
    """An Output widget that a build writes its phases to, and that catches the build thread's prints and log
    records (ModelOpt, the backends) while :meth:`capture` is active."""

    def __init__(self, max_lines: int = 500):
        self.output = widgets.Output(layout={"max_height": "240px", "overflow": "auto", "border": "1px solid #ddd"})
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._lock = threading.Lock()

    @property
    def text(self) -> str:
        return "".join(self._lines)

    def clear(self) -> None:
        with self._lock:
            self._lines = []
            self.output.outputs = ()

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            self._lines.append(text)
            del self._lines[: -self.max_lines]
            self.output.outputs = ({"output_type": "stream", "name": "stdout", "text": "".join(self._lines)},)
        return len(text)

    def line(self, message: str) -> None:
        self.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")

    def capture(self):
        return _Capture(self)


class _LogHandler(logging.Handler):
    """The workbench's messages as the CLI shows them (``note: ...`` / ``warning: ...``); a library's records with
    their level and logger."""

    def __init__(self, log: BuildLog):
        super().__init__()
        self.log = log
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(ROOT + "."):
            kind = "warning" if record.levelno >= logging.WARNING else "note"
            self.log.write(f"{kind}: {message_text(record)}\n")
        else:
            self.log.write(self.format(record) + "\n")


class _Capture:
    """Route this thread's stdout, stderr and logging records to a BuildLog until exit."""

    def __init__(self, log: BuildLog):
        self.log = log
        self.handler = _LogHandler(log)

    def __enter__(self):
        ident = threading.get_ident()
        self.handler.addFilter(lambda record: record.thread == ident)
        logging.getLogger().addHandler(self.handler)
        with _route_lock:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if not isinstance(stream, _ThreadRoutedStream):
                    stream = _ThreadRoutedStream(stream)
                    setattr(sys, name, stream)
                stream.sinks[ident] = self.log.write
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self.handler)
        ident = threading.get_ident()
        with _route_lock:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if isinstance(stream, _ThreadRoutedStream):
                    stream.sinks.pop(ident, None)
                    if not stream.sinks:  # the last build is done: put the original stream back
                        setattr(sys, name, stream.original)
        return False
