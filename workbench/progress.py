"""Progress of long work (builds, calibration, profiling), shown by tqdm or a widget, and cancellable."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from .errors import Cancelled

#: ``callback(phase, step, total)``: ``step`` of ``total`` in ``phase`` is done (``total`` 0 = unknown).
Callback = Callable[[str, int, int], None]


class Progress:
    """Reports phases and steps to a callback; :meth:`cancel` (from any thread) stops the work at the next step.

    Backends call :meth:`step` and must stop (raising :class:`~workbench.errors.Cancelled`) when it returns False.
    """

    def __init__(self, callback: Callback | None = None):
        self._callback = callback
        self._cancel = threading.Event()

    def step(self, phase: str, step: int, total: int = 0) -> bool:
        """Report progress; False means the user asked to cancel."""
        if self._callback is not None:
            self._callback(phase, step, total)
        return not self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the user asked to cancel."""
        if self._cancel.is_set():
            raise Cancelled("Cancelled by the user: nothing was written.")

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


class TqdmProgress(Progress):
    """Progress bars in a terminal or notebook (tqdm.auto), one bar per phase."""

    def __init__(self):
        super().__init__(self._show)
        self._bars: dict[str, object] = {}

    def _show(self, phase: str, step: int, total: int) -> None:
        from tqdm.auto import tqdm

        if total == 0 and step == 0:  # a message, not a measurable phase
            tqdm.write(phase, file=sys.stderr)  # progress goes to stderr, results to stdout
            return
        bar = self._bars.get(phase)
        if bar is None:
            bar = self._bars[phase] = tqdm(total=total or None, desc=phase, leave=False)
        bar.update(step - bar.n)  # update() honours tqdm's refresh interval; refresh() would redraw every step
        if total and step >= total:
            bar.close()
            del self._bars[phase]  # a phase that starts again (TensorRT reuses names) gets a new bar

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def ensure(progress: Progress | None) -> Progress:
    return progress if progress is not None else Progress()
