"""The one exception type the workbench raises for problems a user can fix."""


class WorkbenchError(Exception):
    """A problem with the user's input or environment, explained in one line: the cause, then the fix.

    The CLI prints ``str(error)`` and exits non-zero without a traceback; notebooks show the same line.
    """

    def __init__(self, message: str):
        # One line, always: messages are shown in a terminal, a widget and a table cell.
        super().__init__(" ".join(str(message).split()))


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
