"""A real Triton Inference Server on 127.0.0.1, started and stopped by the workbench.

Which ``tritonserver`` (:func:`find_triton`): in an NGC Triton container, the one on PATH with its backends in
``/opt/tritonserver/backends`` (ONNX Runtime, TensorRT, Python); elsewhere the one the ``nvidia-pytriton`` wheel ships
(Python backend only), started directly — PyTriton's own ``Triton().bind()`` is not used. The wheel's server needs
its bundled libraries on ``LD_LIBRARY_PATH`` and the Python-backend stub of this Python version in its backend
folder; the stub runs model files with this interpreter's environment (its ``bin`` folder first on ``PATH``).

Lifetime: :class:`TritonServer` is a context manager; ``stop()`` sends SIGTERM (Triton unloads its models, whose
Python stubs exit), waits, then SIGKILLs what is left, stubs included, and frees the ports. The server is started
from one long-lived launcher thread with :func:`workbench.processes.parent_death_preexec`, so a SIGKILL of the
parent (a killed CLI, a restarted or crashed notebook kernel) SIGKILLs the server too — the kernel ties that signal
to the thread that forked, which must outlive the server; the Python stubs watch their server and exit after it.
A server still running at interpreter exit is stopped (``atexit``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from ..errors import WorkbenchError
from ..processes import parent_death_preexec

log = logging.getLogger(__name__)

#: Where NGC's Triton container keeps its backends.
NGC_BACKENDS = Path("/opt/tritonserver/backends")
#: The Python-backend stub's program name (a child of tritonserver, one per model instance).
STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstall:
    """A ``tritonserver`` binary and what it needs: its backend folder, extra libraries, the Python stub to copy."""

    binary: Path
    backends: Path
    libraries: Path | None = None
    stub: Path | None = None  # copied into <backends>/python/ (the wheel keeps one per Python version aside)
    source: str = ""  # "nvidia-pytriton wheel" | "PATH"


def find_triton(prefer: str = "auto") -> TritonInstall:
    """The ``tritonserver`` to start. ``prefer``: "auto" (PATH with NGC's backends when there, else the wheel's),
    "path" or "wheel". A WorkbenchError says how to get one when none is found."""
    if prefer not in ("auto", "path", "wheel"):
        raise WorkbenchError(f"Unknown tritonserver source '{prefer}': choose auto, path or wheel.")
    on_path = shutil.which("tritonserver")
    if prefer in ("auto", "path") and on_path and NGC_BACKENDS.is_dir():
        return TritonInstall(Path(on_path), NGC_BACKENDS, source="PATH")
    if prefer == "path":
        raise WorkbenchError(
            "No tritonserver with backends in /opt/tritonserver/backends: run in NGC's Triton container "
            "(nvcr.io/nvidia/tritonserver), or use the nvidia-pytriton wheel's server (prefer='wheel')."
        )
    spec = importlib.util.find_spec("pytriton")  # finds the package without importing it
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver" if spec else None
    binary = root / "bin" / "tritonserver" if root else None
    if binary is None or not binary.is_file():
        raise WorkbenchError(
            "No Triton Inference Server found: pip install 'trt-workbench[serve]' (the nvidia-pytriton wheel ships "
            "tritonserver with the Python backend), or run in NGC's Triton container."
        )
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = root / "python_backend_stubs" / version / STUB
    if not stub.is_file():
        raise WorkbenchError(
            f"The nvidia-pytriton wheel has no Python-backend stub for Python {version}: use Python 3.8–3.13."
        )
    return TritonInstall(
        binary, root / "backends", root.parent.parent / "nvidia_pytriton.libs", stub, source="nvidia-pytriton wheel"
    )


#: Temporary folders of a server (its log, backends) and of a served run's repository: ``<prefix><pid>-<random>``.
WORKSPACE_PREFIX = "workbench-triton-"
REPOSITORY_PREFIX = "workbench-repo-"


def remove_orphan_folders() -> int:
    """Remove the temporary folders of processes that are gone (a parent killed with -9 cannot clean up after
    itself); returns how many were removed. A folder whose process still runs is left alone."""
    removed = 0
    for prefix in (WORKSPACE_PREFIX, REPOSITORY_PREFIX):
        for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
            pid = folder.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists() and folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (the server may still lose it to a race: start retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Launcher:
    """One long-lived daemon thread that starts every server. The parent-death signal follows the thread that
    forked, so a server started from a short-lived thread (a widget's worker) would die when that thread returns; a
    daemon thread is not joined at interpreter exit, so the ``atexit`` stop below still ends servers gracefully."""

    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn, *args, **kwargs) -> Future:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="workbench-triton-launcher", daemon=True)
                self._thread.start()
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def _serve(self) -> None:
        while True:
            future, fn, args, kwargs = self._jobs.get()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the caller waiting on the future
                future.set_exception(e)


_LAUNCHER = _Launcher()
_LIVE: weakref.WeakSet = weakref.WeakSet()


class TritonServer:
    """``tritonserver`` serving ``repository`` on 127.0.0.1 (free HTTP, gRPC and metrics ports).

    ``with TritonServer(repo) as server: server.wait_ready(["model"])`` — or :meth:`start` / :meth:`stop`. The log
    is kept in a temporary folder (``log_path``) and removed on stop; a failure to start quotes its last lines.
    """

    def __init__(self, repository, *, install: TritonInstall | None = None, exit_timeout_s: int = 10):
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise WorkbenchError(f"Model repository '{repository}' does not exist: export a run into it first.")
        self.install = install or find_triton()
        self.exit_timeout_s = exit_timeout_s
        self.process: subprocess.Popen | None = None
        self.http_port = self.grpc_port = self.metrics_port = 0
        self._workspace: Path | None = None
        self._stubs: set[int] = set()
        self._lock = threading.Lock()

    # ---- addresses ------------------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def url(self, protocol: str) -> str:
        return self.grpc_url if protocol == "grpc" else self.http_url

    @property
    def log_path(self) -> Path | None:
        return self._workspace / "tritonserver.log" if self._workspace else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __repr__(self) -> str:
        state = (
            f"running, pid {self.process.pid}, http {self.http_url}, grpc {self.grpc_url}"
            if self.running
            else "stopped"
        )
        return f"TritonServer({self.repository.name}: {state})"

    # ---- start / stop ---------------------------------------------------------------------------------------

    def start(self, models=(), timeout_s: float = 120.0) -> TritonServer:
        """Start the server and wait until it and ``models`` are READY; a port lost to a race is retried."""
        if self.running:
            return self
        for attempt in range(3):
            self._launch()
            try:
                self.wait_ready(models, timeout_s)
                return self
            except _PortTaken:
                self.stop()
                if attempt == 2:
                    raise WorkbenchError(
                        "tritonserver could not bind a free port on 127.0.0.1 three times: free some ports and retry."
                    ) from None
            except BaseException:  # Ctrl-C while it starts: the server goes now, not at interpreter exit
                self.stop()
                raise
        return self

    def _launch(self) -> None:
        remove_orphan_folders()
        self._workspace = Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{os.getpid()}-"))
        backends = self._backend_folder()
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        command = [
            str(self.install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--metrics-address=127.0.0.1",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout_s}",
        ]
        env = dict(os.environ)
        # the Python stub runs model.py with this interpreter's packages (numpy, onnxruntime): its bin first
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if self.install.libraries is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (env.get("LD_LIBRARY_PATH"), str(self.install.libraries)) if p
            )
        log_file = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child; closed right after the start
        try:
            self.process = _LAUNCHER.submit(
                subprocess.Popen,
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._workspace,
                start_new_session=True,  # Ctrl-C in a terminal reaches the workbench, which stops the server
                preexec_fn=parent_death_preexec(),
            ).result()
        except OSError as e:
            shutil.rmtree(self._workspace, ignore_errors=True)
            raise WorkbenchError(f"tritonserver cannot start ({e.strerror or e}): reinstall nvidia-pytriton.") from None
        finally:
            log_file.close()
        _LIVE.add(self)
        log.debug(
            "tritonserver pid %d: http %s, grpc %s, metrics %s",
            self.process.pid,
            self.http_url,
            self.grpc_url,
            self.metrics_url,
        )

    def _backend_folder(self) -> Path:
        """The wheel's backends with the stub of this Python beside the Python backend (links, one copy)."""
        if self.install.stub is None:
            return self.install.backends
        folder = self._workspace / "backends"
        for backend in self.install.backends.iterdir():
            if backend.is_dir():
                (folder / backend.name).mkdir(parents=True)
                for f in backend.iterdir():
                    if f.is_file():
                        (folder / backend.name / f.name).symlink_to(f)
        shutil.copy2(self.install.stub, folder / "python" / STUB)
        return folder

    def wait_ready(self, models=(), timeout_s: float = 120.0) -> None:
        """Wait until the server and each of ``models`` is READY; a server that exits or stays unready past
        ``timeout_s`` is stopped and raises one WorkbenchError with the log's cause."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                tail = self.log_tail()
                self.stop()
                if "Address already in use" in tail or "address already in use" in tail.lower():
                    raise _PortTaken()
                raise WorkbenchError(f"tritonserver exited before its models were ready: {_cause(tail)}")
            if self._get("/v2/health/ready") and all(self._get(f"/v2/models/{m}/ready") for m in models):
                self._stubs = set(self._children())
                return
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise WorkbenchError(
                    f"tritonserver did not become ready in {timeout_s:g} s ({_cause(tail)}): raise the timeout, or "
                    "check the model loads with 'workbench profile'."
                )
            time.sleep(0.2)

    def _get(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the server and its stubs (SIGTERM, then SIGKILL after ``timeout_s``); safe to call twice."""
        with self._lock:
            process, self.process = self.process, None
            if process is not None:
                self._stubs |= set(_children_of(process.pid))
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout_s if timeout_s is not None else self.exit_timeout_s + 5)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                for pid in self._stubs:  # a stub outliving its server (it polls the server's health) is ended now
                    if _is_stub(pid):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGKILL)
                self._stubs = set()
            _LIVE.discard(self)
            if self._workspace is not None:
                shutil.rmtree(self._workspace, ignore_errors=True)
                self._workspace = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what it says ---------------------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) if self.log_path else ""
        except OSError:
            return ""

    def version(self) -> str:
        """``tritonserver 2.51.0`` (from the server's metadata endpoint)."""
        import json

        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2", timeout=2) as response:
                meta = json.loads(response.read())
            return f"tritonserver {meta.get('version', '?')}"
        except (urllib.error.URLError, OSError, ValueError):
            return "tritonserver"

    def metrics(self) -> str:
        """The Prometheus metrics text ('' when the endpoint does not answer)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                return response.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError):
            return ""

    def _children(self) -> list[int]:
        return _children_of(self.process.pid) if self.process else []


class _PortTaken(Exception):
    """The server lost a port picked as free to another process: start again with new ports."""


def _cause(tail: str) -> str:
    """The most telling line of a server log: the first error line, else the last line."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E") or "failed" in ln.lower() or "error" in ln.lower()]
    chosen = (errors or lines or ["no output"])[0]
    return chosen[:400]


def _children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc; empty elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def _is_stub(pid: int) -> bool:
    try:
        return STUB in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop(timeout_s=5)
