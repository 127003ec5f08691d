"""Child processes that die with their parent, how a dead one is named, and Python work run in a child where a
native crash cannot take the caller (:func:`run_python_child`: the ONNX Runtime session probe, native builds).

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
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
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


#: How often a parent looks at the cancel flag while its Python child is silent.
POLL_S = 0.1
_HEADER = struct.Struct("!Q")


def run_python_child(
    function: str, request, progress, *, cancelled: str, on_message=None, stderr_bytes: int = 4000
) -> tuple[int, str]:
    """Run ``function`` (``"package.module:name"``, called as ``name(request, send)``) in a fresh Python process of
    this workbench, where a crash of native code takes only the child; (its return code, the end of its stderr).
    The child imports the target's module without the package's ``__init__`` (the public API is not loaded there):
    a target imports what it uses from its own modules.

    ``request`` travels pickled on its stdin; each ``send(message)`` of the child reaches ``on_message(message)``
    here as it is sent. The child dies with this process (:func:`die_with_parent`) and ignores Ctrl-C, which is the
    caller's; Cancel (``progress``, raising :class:`~workbench.errors.Cancelled` with ``cancelled``), Ctrl-C or an
    error of ``on_message`` kills it. Its stdout is dropped (native libraries print)."""
    module, name = function.split(":")
    read_fd, write_fd = os.pipe()
    package_root = str(Path(__file__).resolve().parents[1])  # this workbench, wherever it is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
    # The package is registered without running its __init__ (which imports the whole public API, pandas included:
    # about 0.4 s of every child's start), so the child imports only the target's module and what that imports.
    # The target's import stays in the command line: what it runs is visible in ps.
    package = __name__.partition(".")[0]
    code = f"import sys, importlib.util as u; sys.modules[{package!r}] = u.module_from_spec(u.find_spec({package!r})); "
    code += f"from {module} import {name}; from {__name__} import _child_main; "
    code += f"sys.exit(_child_main({name}, {write_fd}, {os.getpid()}))"
    with tempfile.TemporaryFile() as errors:
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                pass_fds=(write_fd,),
                env=env,
            )
        finally:
            os.close(write_fd)
        try:
            try:
                child.stdin.write(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
                child.stdin.close()
            except BrokenPipeError:
                pass  # it died at start: its return code says how
            for message in _messages(read_fd, progress, cancelled):
                if on_message is not None:
                    on_message(message)
        except BaseException:
            child.kill()  # cancelled or interrupted: never leave it running
            raise
        finally:
            os.close(read_fd)
            returncode = child.wait()
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - stderr_bytes))
        return returncode, errors.read().decode("utf-8", "replace")


def _messages(fd: int, progress, cancelled: str):
    """The child's messages until it closes its end of the pipe (raising Cancelled once the user cancels)."""
    from .errors import Cancelled

    buffer = bytearray()  # appended in place: a plan of hundreds of MB arrives in 1 MiB chunks
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if progress.cancelled:
            raise Cancelled(cancelled)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            message = pickle.loads(memoryview(buffer)[_HEADER.size : _HEADER.size + size])
            del buffer[: _HEADER.size + size]
            yield message


def _child_main(function, write_fd: int, parent: int) -> int:
    """The child's side of :func:`run_python_child`: ``function(request, send)``'s return code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's: it kills this process
    request = pickle.loads(sys.stdin.buffer.read())
    die_with_parent(parent)
    lock = threading.Lock()
    with os.fdopen(write_fd, "wb") as out:

        def send(message) -> None:
            data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            with lock:
                out.write(_HEADER.pack(len(data)) + data)
                out.flush()

        return function(request, send)
