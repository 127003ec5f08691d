"""Jupyter widgets over the public API: ``Workbench(model)`` is the whole panel (see :mod:`workbench.ui.panel`).

from workbench.ui import Workbench
panel = Workbench("digits_cnn")     # shown when it is the last expression of a cell
run = panel.build()                 # what the Build & profile button does, returning the Run
"""

from .panel import Workbench

__all__ = ["Workbench"]
