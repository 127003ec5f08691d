"""Views of Runs: plotly figures (:mod:`.charts`), self-contained HTML reports (:mod:`.report`)."""
