"""The panel's Sensitivity tab: which layers lose accuracy, the plan, the Pareto, and the recipe (one click).

It calls :func:`workbench.pipeline.sensitivity` with the panel's model, precision, calibration and evaluation data,
in a background thread with a progress bar and Cancel; results: the summary, the ranking, the plans' Pareto and
the layer-wise error chart (hover names the node; the node list below it shows a node's figures, the first
jump preselected). "Use recipe" puts the plan's recipe into the panel,
so the next Build & profile applies it; "Save recipe" writes ``recipe.json``.
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as widgets

from ..errors import Cancelled, WorkbenchError
from .parts import FIELD, BackgroundTab, error_html, error_text, show_figures


class SensitivityTab(BackgroundTab):
    """``request()`` returns (model, precision, variant options, eval data) from the panel; ``on_recipe(recipe)``
    is called by "Use recipe"; ``on_run(run)`` when a search finished (the panel keeps the run)."""

    def __init__(self, request, on_recipe, on_run=None):
        self._request, self._on_recipe, self._on_run = request, on_recipe, on_run
        self.run = None
        self.budget = widgets.Text(
            value="", placeholder="top1:0.5 with labels, else cosine:0.999", description="Budget", **FIELD
        )
        self.group_by = widgets.Dropdown(
            options=[
                ("blocks (conv+bn+act, attention, LayerNorm, add)", "block"),
                ("single nodes", "node"),
                ("name scopes", "scope"),
            ],
            value="block",
            description="Groups",
            **FIELD,
        )
        self.max_minutes = widgets.BoundedFloatText(value=10, min=0.1, max=600, description="Max minutes", **FIELD)
        self.start = widgets.Button(description="Find plan", button_style="primary", icon="search")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.Label()
        self.status = widgets.HTML()
        self.summary = widgets.HTML()
        self.charts = widgets.Output()
        self.nodes = widgets.Dropdown(description="Node", options=[], **FIELD)
        self.node = widgets.HTML()
        self.nodes.observe(lambda c: self._show_node(c["new"]), "value")
        self.use_recipe = widgets.Button(
            description="Use recipe", disabled=True, tooltip="apply the plan in the next Build & profile"
        )
        self.recipe_path = widgets.Text(value="recipe.json", description="Recipe file", **FIELD)
        self.save_recipe = widgets.Button(description="Save recipe", disabled=True)
        self.start.on_click(lambda _: self._safely(self.find, wait=False))
        self.cancel_button.on_click(lambda _: self.cancel())
        self.use_recipe.on_click(lambda _: self._safely(self._use))
        self.save_recipe.on_click(lambda _: self._safely(self._save))
        self.widget = widgets.VBox(
            [
                widgets.HTML(
                    "Rank the nodes by what low precision costs each, then find the fewest to keep in higher "
                    "precision to meet the budget (uses the precision, calibration and evaluation data above)."
                ),
                self.budget,
                self.group_by,
                self.max_minutes,
                widgets.HBox([self.start, self.cancel_button, self.progress]),
                self.status,
                self.summary,
                widgets.HBox([self.use_recipe, self.recipe_path, self.save_recipe]),
                self.charts,
                self.nodes,
                self.node,
            ]
        )

    def find(self, wait: bool = True):
        """Run the search with the panel's settings; ``wait=False`` runs it in a background thread."""
        if self._thread is not None and self._thread.is_alive():
            raise WorkbenchError("A search is already running: wait for it or press Cancel.")
        model, precision, options, eval_data = self._request()
        if precision not in ("int8", "fp8", "fp16", "bf16"):
            raise WorkbenchError(
                f"Sensitivity compares a low precision with FP32: pick int8, fp8, fp16 or bf16 "
                f"(the panel's precision is {precision})."
            )
        if not eval_data:
            raise WorkbenchError(
                "Sensitivity needs evaluation data: enter an .npz in 'Eval data' (with 'labels' for a top-1 budget)."
            )
        request = dict(
            eval_data=eval_data,
            budget=self.budget.value.strip() or None,
            group_by=self.group_by.value,
            max_minutes=self.max_minutes.value,
            progress=self._new_progress(),
            **options,
        )
        self.start.disabled, self.cancel_button.disabled = True, False
        self.status.value = "<span style='color:#666'>searching…</span>"
        self._in_background(self._work, (model, precision, request), "workbench-sensitivity", wait)
        return self.run if wait else None

    def _work(self, model, precision, request) -> None:
        from ..pipeline import sensitivity

        try:
            run = sensitivity(model, precision, **request)
            self.show(run)
            if self._on_run is not None:
                self._on_run(run)
            self.status.value = "<span style='color:#1b5e20'>Done.</span>"
        except Cancelled as e:
            self.status.value = f"<b>Cancelled</b>: {html.escape(str(e))}"
        except Exception as e:  # noqa: BLE001 - the thread reports everything
            self.status.value = error_html(error_text(e))
        finally:
            self.start.disabled, self.cancel_button.disabled = False, True
            self.progress.value = ""

    def show(self, run) -> None:
        """Show a plan run (its ``sensitivity`` record): summary, ranking, Pareto, layer-wise error."""
        from ..analysis.sensitivity import Sensitivity
        from ..views import charts
        from ..views.report import sensitivity_html

        self.run = run
        found = Sensitivity.from_dict(run.sensitivity)
        self.summary.value = f"<pre>{html.escape(found.summary())}</pre>" + sensitivity_html(run.sensitivity)
        show_figures(self.charts, *charts.sensitivity_figures(run.sensitivity).values())
        rows = [r for r in run.sensitivity.get("layer_error", ()) if r.get("compared")]
        self.nodes.options = [
            (f"{r['order']}: {r['node']}" + ("  <- error first jumps" if r["jump"] else ""), i)
            for i, r in enumerate(rows)
        ]
        self._rows = rows
        self.nodes.value = next((i for i, r in enumerate(rows) if r["jump"]), 0 if rows else None)  # the first jump
        self.use_recipe.disabled = self.save_recipe.disabled = found.recipe is None

    def _show_node(self, index) -> None:
        row = {} if index is None else self._rows[index]
        self.node.value = "".join(f"{html.escape(k)}: <code>{html.escape(str(v))}</code><br>" for k, v in row.items())

    def _use(self) -> None:
        recipe = self.run.sensitivity["recipe"]
        self._on_recipe(recipe)
        self.status.value = (
            f"<span style='color:#1b5e20'>Recipe in use: Build & profile keeps "
            f"{len(recipe['keep_nodes'])} nodes in higher precision.</span>"
        )

    def _save(self) -> None:
        from ..precision.recipe import save_recipe

        path = save_recipe(self.run.sensitivity["recipe"], Path(self.recipe_path.value.strip() or "recipe.json"))
        self.status.value = f"<span style='color:#1b5e20'>Recipe saved: {html.escape(str(path))}</span>"
