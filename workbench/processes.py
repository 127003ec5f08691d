"""Child processes that die with their parent, and how a dead one is named.

A child the workbench starts (a sweep worker, a native build) calls :func:`die_with_parent` first: Linux then sends
it SIGKILL when the thread that started it ends (``prctl(PR_SET_PDEATHSIG)``), so a SIGKILL, SIGTERM or SIGHUP of
``workbench sweep`` (or a notebook kernel that dies) leaves no worker behind, and the ``resource_tracker`` of
multiprocessing, which waits for its last user, exits with them. Elsewhere (macOS) it does nothing: the parent's own
``finally`` blocks stop the children it knows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent ends; False where that cannot be asked (not Linux).

    ``parent_pid``: the parent as the parent saw itself; a child whose parent ended before the call exits at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent ended before the request: follow it
        os._exit(1)
    return True


def signal_name(returncode: int | None) -> str | None:
    """``SIGSEGV`` for a process that a signal ended (a negative return code), else None."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def parent_death_preexec():
    """A ``preexec_fn`` for ``subprocess.Popen`` of a program (a server binary): the child gets SIGKILL when the thread
    that started it ends; None where that cannot be asked (not Linux). libc is loaded here, in the parent, so the
    child between fork and exec makes only two system calls (no import, no ``find_library`` subprocess)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec():
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent ended before the request: follow it
            os._exit(1)

    return preexec
