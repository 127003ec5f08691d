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
