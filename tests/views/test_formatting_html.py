"""How notebooks show a Model and a Run: rendered by views/formatting_html.py through the display hook, escaped."""

from __future__ import annotations

from support import make_run

import workbench as wb


def test_notebook_display_of_model_and_run_comes_from_the_views(mlp_path):
    model = wb.load_model(mlp_path)
    assert "<table>" in model._repr_html_() and model.name in model._repr_html_()
    run = make_run(notes=("<script>x</script>",), name="m <b>")
    shown = run._repr_html_()
    assert "m &lt;b&gt;" in shown and "&lt;script&gt;" in shown and "<script>" not in shown
