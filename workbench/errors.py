"""The one exception type the workbench raises for problems a user can fix."""

#: The longest a :class:`WorkbenchError` line gets (a longer one loses its middle, never its cause or fix).
MAX_MESSAGE = 2000
#: The most of a value the user gave (a name, a path, an option) an error line quotes: see :func:`excerpt`.
MAX_EXCERPT = 120


class WorkbenchError(Exception):
    """A problem with the user's input or environment, explained in one line: the cause, then the fix.

    The CLI prints ``str(error)`` and exits non-zero without a traceback; notebooks show the same line. Values the
    user gave are quoted with :func:`excerpt`; a line longer than :data:`MAX_MESSAGE` anyway is shortened.
    """

    def __init__(self, message: str):
        # One line, always: messages are shown in a terminal, a widget and a table cell.
        super().__init__(shorten(message, MAX_MESSAGE))


class Cancelled(WorkbenchError):
    """The user cancelled a long operation (a build, a calibration); nothing was written."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an error from another library (its cause), for a one-line message, shortened in
    the middle when longer than ``limit`` (:func:`shorten`)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return shorten(lines[0] if lines else type(error).__name__, limit)


def shorten(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters: a long one loses its middle ("…"), never its end, where
    libraries put the cause ("… Current official support for domain ai.onnx is till opset 22.")."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = max(1, limit // 3)
    tail = limit - head - 3
    return f"{text[:head]} … {text[-tail:]}" if tail > 0 else text[:limit]


def excerpt(value, limit: int = MAX_EXCERPT) -> str:
    """``value`` (a name, a path, an option the user gave, or anything read from a file) quoted for an error line:
    ``repr`` of its text, at most ``limit`` characters of it (a longer one loses its middle and says how long it
    was), so a 5 MB node name or a 100,000-character option never becomes a 5 MB line."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    head = max(1, limit // 2)
    return f"{text[:head]!r}…{text[-(limit - head) :]!r} ({len(text):,} characters)"
