"""Progress of long work (builds, calibration, profiling), shown where it goes, and cancellable.

:func:`console_progress` picks the display for a command's stderr: tqdm bars on a terminal (widgets in Jupyter),
plain lines in a log or a pipe (no carriage returns, no cursor escapes). Progress is only progress: what the user
must read goes through the modules' loggers (:mod:`workbench.messages`).
"""

from __future__ import annotations

import sys
import threading
import time
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

    def close(self) -> None:
        """Close what the display holds open (bars)."""


class _Console(Progress):
    """A display on stderr (progress goes there, results to stdout)."""

    def __init__(self):
        super().__init__(self._advance)

    def _write(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def _advance(self, phase: str, step: int, total: int) -> None:
        raise NotImplementedError


class TqdmProgress(_Console):
    """Progress bars in a terminal or notebook (tqdm.auto), one bar per phase."""

    def __init__(self):
        super().__init__()
        self._bars: dict[str, object] = {}

    def _write(self, text: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)  # above the bars, which stay where they are

    def _advance(self, phase: str, step: int, total: int) -> None:
        from tqdm.auto import tqdm

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


class LineProgress(_Console):
    """Progress for a log or a pipe: a plain line when a phase that took ``min_s`` or more ends, and at most one every
    ``every_s`` seconds while a long one runs; no carriage returns or cursor escapes. Quicker phases (TensorRT
    reports dozens of them per build) leave no line: a log keeps what took time."""

    def __init__(self, every_s: float = 10.0, min_s: float = 1.0):
        super().__init__()
        self._every_s, self._min_s = every_s, min_s
        self._phases: dict[str, list[float]] = {}  # phase -> [started, last line]

    def _advance(self, phase: str, step: int, total: int) -> None:
        now = time.monotonic()
        started, last = self._phases.setdefault(phase, [now, now])
        if total and step >= total:
            if now - started >= self._min_s:
                self._write(f"{phase}: done ({total} step{'s' if total != 1 else ''} in {now - started:.1f} s)")
            del self._phases[phase]  # a phase that starts again gets its own lines
        elif now - last >= self._every_s:
            self._phases[phase][1] = now
            self._write(f"{phase}: {step}" + (f" of {total}" if total else "") + f" after {now - started:.0f} s")


def _in_jupyter() -> bool:
    """Whether this code runs in a Jupyter kernel (a notebook's cell), asked now: a process that only imported
    ipykernel (jupyter_client does, to find a kernel) is not one. The test is tqdm.auto's, which draws the bars."""
    ipython = sys.modules.get("IPython")  # a kernel has loaded it; importing it here would cost a second
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def console_progress() -> Progress:
    """The progress display for a command's stderr: bars on a terminal or in Jupyter, plain lines elsewhere."""
    return TqdmProgress() if _in_jupyter() or sys.stderr.isatty() else LineProgress()


def ensure(progress: Progress | None) -> Progress:
    return progress if progress is not None else Progress()
