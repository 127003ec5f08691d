"""Paths and tiny models shared by the tests (import as ``from support import ...``)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from workbench.config import BuildConfig
from workbench.results.run import Accuracy, LatencyStats, Memory, OutputAgreement, Run

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
FIXTURES = DATA / "recorded"  # real trtexec outputs (provenance: data/recorded/README.md)

#: What a test run may add to the checkout (all git-ignored): Python's and pytest's caches, the browser tests'
#: screenshots, downloads cached for the contract tests and the real-model corpus; a virtualenv in the checkout
#: (scripts/test.sh makes .venv there) and the user's own history (``workspace/``: the tests use their own, and a
#: lab session beside them adds runs there) are not looked into.
MAY_ADD = ("__pycache__", ".pytest_cache", ".ruff_cache", "test-artifacts", ".cache", ".venv", "workspace")


def added_files() -> set[str] | None:
    """Files in the checkout that git does not track (ignored ones too), less what a test run may add; None where
    this is not a git checkout (an unpacked sdist)."""
    skip = [f":(exclude,glob)**/{folder}/**" for folder in MAY_ADD]
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "-z", "--ignored", "--untracked-files=all", "--", ".", *skip],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {e[3:] for e in out.split("\0") if e[:3] in ("?? ", "!! ") and not e.endswith(".pyc")}


def make_mlp(path: Path, *, batch="N", hidden=8, opset=17, names=("mm", "relu")) -> Path:
    """A two-node model (MatMul -> Relu) with a dynamic batch, written to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, hidden)).astype(np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"], name=names[0]),
            helper.make_node("Relu", ["y"], ["z"], name=names[1]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, hidden])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    onnx.save(model, str(path))
    return path


def make_run(**changes) -> Run:
    """A small Run with latency, memory and accuracy (no backend needed); ``changes`` override its fields."""
    times = [1.0, 1.2, 1.1, 0.9]
    base = {
        "backend": "onnxruntime",
        "layers": [],
        "config": BuildConfig(precision="int8"),
        "variant": {"precision": "int8"},
        "model": {"name": "m"},
        "latency": LatencyStats.from_times(times, batch=4),
        "latency_ms": times,
        "memory": Memory(weights_bytes=2048),
        "environment": {"cpu": "Test CPU"},
        "accuracy": Accuracy(samples=10, outputs=(OutputAgreement("y", 0.5, 0.1, 0.01, 0.99, 0.9),)),
    }
    return Run(**{**base, **changes})


def descendants(root: int) -> set[int]:
    """Live processes below ``root`` (zombies count as gone: only their exit status is left)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(proc.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def signal_child(parent: int, marker: str, sig, killed: list, timeout: float = 120) -> None:
    """Send ``sig`` to the first child of ``parent`` whose command line holds ``marker`` (``"session_probe import
    _child"``: an ONNX Runtime probe; ``"tensorrt.isolated import _child"``: a TensorRT build) once it appears, and
    append its pid to ``killed`` (a real signal on the real child: how a crash in native code ends it)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not killed:
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "cmdline").read_text():
                    if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                        os.kill(int(proc.name), sig)
                        killed.append(proc.name)
                        return
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.005)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def left_alive(pids, within_s: float = 20.0) -> list[int]:
    """The processes of ``pids`` still alive after ``within_s`` seconds; each is then SIGKILLed (a failing test must
    not leave them behind either)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def warnings_logged(caplog) -> list[str]:
    """The texts the workbench's loggers said as warnings in the test (pytest's ``caplog``), in order."""
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("workbench.")]


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """``workbench ARGS`` run in this process, as Polygraphy's ``script_runner`` does: ``workbench.cli.main(argv)``
    with its stdout and stderr captured, its exit status as ``returncode`` (a usage error's too). No new Python
    starts, so a call costs what the command does; where the process itself is the point (a signal, output written
    by native code, a clean interpreter) use :func:`cli_process`."""
    from workbench.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, os.getcwd())
    environ = dict(os.environ)  # --max-memory sets WORKBENCH_MAX_MEMORY for the command's process
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: --help, a usage error
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        root.handlers[:], _, cwd_before = saved
        root.setLevel(saved[1])  # -v configures the root logger
        os.chdir(cwd_before)
        for name in set(os.environ) - set(environ):
            del os.environ[name]
        os.environ.update(environ)
    return subprocess.CompletedProcess(["workbench", *argv], code, out.getvalue(), err.getvalue())


def cli_process(*args, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``workbench ARGS`` in a new Python, as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
