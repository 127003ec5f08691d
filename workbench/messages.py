"""What the workbench tells its user, on one channel: a standard logger per module.

Every module says things with ``log = logging.getLogger(__name__)`` (named ``workbench.<module>``, as ModelOpt's
``modelopt.onnx`` package does): ``log.info`` for a note a reader of the result must know (the backend chosen, the
values an input got), ``log.warning`` for what may make a figure wrong (a calibration set outside the documented
size). Each is logged once, where it is found. Nothing here prints by itself; who listens decides where it goes:

- the CLI shows each text once on stderr as ``note: ...`` / ``warning: ...`` (:class:`Console`, which also takes
  the libraries' warnings and Python ``warnings``), and prints only the notes of a Run it did not show already;
- :func:`collected` gathers the messages said in a block by its thread (the notes of a Run, a sweep worker's
  messages for its driver);
- the panel writes them into the build's log; in a notebook or a script Python's last-resort handler shows the
  warnings on stderr (notes reach the Run's notes, which its display shows).

Progress (:mod:`workbench.progress`) carries progress only, never a message.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Iterator

#: The parent of every module's logger. Notes are INFO: set here so that they reach the handlers above (a library
#: leaves the root logger's level alone; Python's last resort still shows WARNING and up only).
ROOT = "workbench"
logging.getLogger(ROOT).setLevel(logging.INFO)


def message_text(record: logging.LogRecord) -> str:
    """A record's message on one line (a library's multi-line message folded), the form every listener keeps."""
    return " ".join(record.getMessage().split())


class _Collector(logging.Handler):
    def __init__(self, level: int):
        super().__init__(level)
        self.thread = threading.get_ident()
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = message_text(record)
        if record.thread == self.thread and text and text not in self.texts:
            self.texts.append(text)


@contextlib.contextmanager
def collected(level: int = logging.INFO) -> Iterator[list[str]]:
    """The texts the workbench's loggers said at ``level`` and above while the block ran, in this thread (another
    thread's run is not this one's), each once, in order; the list fills as the block runs."""
    handler = _Collector(level)
    logger = logging.getLogger(ROOT)
    logger.addHandler(handler)
    try:
        yield handler.texts
    finally:
        logger.removeHandler(handler)


class Console(logging.Handler):
    """Each message once on ``stream`` (stderr by default): ``warning: TEXT`` for WARNING and up from any logger,
    ``note: TEXT`` for the workbench's INFO (unless ``notes`` is False). :meth:`shown` tells whether a text was."""

    def __init__(self, stream=None, notes: bool = True):
        super().__init__(logging.INFO)
        self.stream = stream or sys.stderr  # the one at the start: a library's capture of stderr does not take it
        self.notes = notes
        self._shown: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.say("warning", message_text(record))
        elif self.notes and (record.name == ROOT or record.name.startswith(ROOT + ".")):
            self.say("note", message_text(record))

    def say(self, kind: str, text: str) -> None:
        """Print ``kind: text`` unless this text was shown already (as a note or a warning)."""
        if text and text not in self._shown:
            self._shown.add(text)
            tqdm = sys.modules.get("tqdm")
            if tqdm is not None:  # progress bars may be drawn: the line goes above them
                tqdm.tqdm.write(f"{kind}: {text}", file=self.stream)
            else:
                print(f"{kind}: {text}", file=self.stream, flush=True)

    def shown(self, text: str) -> bool:
        return " ".join(text.split()) in self._shown


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger("py.warnings").warning("%s", message)  # the text alone: no source line, no category


@contextlib.contextmanager
def console(stream=None, notes: bool = True) -> Iterator[Console]:
    """Show every message of the block once (:class:`Console` on the root logger); Python ``warnings`` (a
    library's) are messages too, each occurrence offered, so that the Console keeps the first of each text."""
    handler = Console(stream, notes)
    root = logging.getLogger()
    root.addHandler(handler)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        try:
            yield handler
        finally:
            root.removeHandler(handler)
