"""Rich display without importing upward: a type's ``_repr_html_`` asks :func:`repr_html`, and the renderers in
:mod:`workbench.views.formatting_html` register themselves with :func:`renders_html` (``import workbench`` loads
them). A type never imports its renderer; the renderer lives with the other views (xarray's way)."""

from __future__ import annotations

from collections.abc import Callable

_RENDERERS: dict[type, Callable[[object], str]] = {}


def renders_html(cls: type):
    """Decorator: register ``function(obj) -> str`` as the HTML of instances of ``cls`` (and its subclasses)."""

    def register(function: Callable[[object], str]):
        _RENDERERS[cls] = function
        return function

    return register


def repr_html(obj) -> str | None:
    """The registered HTML of ``obj``, or None (Jupyter then shows its plain ``repr``)."""
    for klass in type(obj).__mro__:
        if klass in _RENDERERS:
            return _RENDERERS[klass](obj)
    return None
