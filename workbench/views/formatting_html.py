"""HTML of single objects: (label, value) tables, a Model, a Run's key metrics, a Roofline. Registered as the notebook
display of :class:`~workbench.model.onnx_model.Model`, :class:`~workbench.results.run.Run` and
:class:`~workbench.analysis.roofline.Roofline` (see :mod:`workbench.display`);
the panel and reports use the same functions. Everything from a file or a model is escaped."""

from __future__ import annotations

import html

from ..analysis.checks import checked
from ..analysis.roofline import Roofline
from ..display import renders_html
from ..format import model_rows
from ..model.onnx_model import Model
from ..results.metrics import summary_rows
from ..results.run import Run


def table_html(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{cells}</table>"


def note_html(message: str) -> str:
    """A highlighted note (styled inline, so it looks the same in a report and in a widget)."""
    return (
        f"<div style='background:#fff4d6;border-left:4px solid #e0a800;padding:.4em .9em;margin:.4em 0'>"
        f"{html.escape(message)}</div>"
    )


@renders_html(Model)
def model_html(model: Model) -> str:
    return table_html(model_rows(model))


def findings_html(findings) -> str:
    """The self-checks a run fails (:mod:`workbench.results.checks`), each a warning: the figure, the relation it
    breaks, the likely cause and what to do."""
    return "".join(note_html(f"Self-check {f.text()}") for f in findings)


def metrics_html(run: Run) -> str:
    """The run's name, its self-check warnings (the roofline's included), its notes and its key metrics (the
    notebook display of a Run and the panel's first tab)."""
    run = checked(run)
    notes = "".join(note_html(n) for n in run.notes)
    return f"<h4>{html.escape(run.name)}</h4>{findings_html(run.findings)}{notes}{table_html(summary_rows(run))}"


renders_html(Run)(metrics_html)  # the notebook display of a Run


@renders_html(Roofline)
def roofline_html(roof: Roofline) -> str:
    """A roofline's summary, its notes and the layers with the most time above the limit (its notebook display)."""
    notes = "".join(note_html(n) for n in roof.notes)
    above = roof.above_limit().to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)  # escapes cells
    return (
        f"<h4>Roofline: {html.escape(roof.run_name)}</h4>{notes}{table_html(roof.summary_rows())}"
        f"<p>Time above the limit:</p>{above}"
    )
