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
from pathlib import Path

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


def process_identity(pid: int | None = None) -> dict:
    """Who a process is, for a record that outlives it: ``{"host", "pid", "started", "boot"}`` (its start time in
    clock ticks since boot, and the boot's id: a pid is reused, the pair is not). Empty fields where /proc has none."""
    import socket

    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "started": _start_ticks(pid), "boot": _boot_id()}


def process_gone(identity: dict) -> bool:
    """True when the process ``identity`` (:func:`process_identity`) names has certainly ended: on this host, this
    boot, no process with its pid and start time. False where that cannot be told (another host, no /proc)."""
    import socket

    if not isinstance(identity, dict) or identity.get("host") != socket.gethostname():
        return False
    pid, started, boot = identity.get("pid"), identity.get("started"), identity.get("boot")
    here = _boot_id()
    if not boot or here is None or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if boot != here:  # the machine rebooted since
        return True
    now = _start_ticks(pid)
    return now is None or (started is not None and now != started)


def _start_ticks(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text[text.rindex(")") + 2 :].split()[19])  # field 22: starttime (the name may hold spaces)
    except (OSError, ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None
