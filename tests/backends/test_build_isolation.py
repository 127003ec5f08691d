"""Native builds run in a child process: a crash of the builder is one line naming the compiler, the model and the
signal — from the API, the CLI and a thread (how the panel builds) — and the caller lives on; the child's build
thread has a stack deep graphs need.

The crash is real: the build child is killed by SIGSEGV while it works (a segfault in TensorRT-RTX ends a process
the same way). A deep chain that overflows a 1 MiB stack in the caller's own thread builds in the child."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import onnx.helper as helper
import pytest

import workbench as wb
from workbench.errors import WorkbenchError

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is installed by requirements/test.txt")

CHILD_MARK = "tensorrt.isolated import _child"


def chain(path: Path, nodes: int) -> Path:
    """A valid chain of ``nodes`` Relu nodes (the shape of graph that overflows TensorRT-RTX's builder stack)."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info(f"t{nodes}", onnx.TensorProto.FLOAT, [1, 16])
    body = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}"], name=f"relu{i}") for i in range(nodes)]
    graph = helper.make_graph(body, "chain", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _build_children(ancestor: int) -> list[int]:
    """Build processes below ``ancestor`` (its children and grandchildren)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if CHILD_MARK in cmdline and (ppid == ancestor or _parent(ppid) == ancestor):
            found.append(int(proc.name))
    return found


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _segfault_the_build(ancestor: int, killed: list, timeout: float = 120) -> None:
    """Send SIGSEGV to the first build child that appears below ``ancestor``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not killed:
        for pid in _build_children(ancestor):
            os.kill(pid, signal.SIGSEGV)
            killed.append(pid)
            return
        time.sleep(0.01)


def _killer(ancestor: int) -> tuple[threading.Thread, list]:
    killed: list = []
    thread = threading.Thread(target=_segfault_the_build, args=(ancestor, killed), daemon=True)
    thread.start()
    return thread, killed


def _crash_line(text: str) -> bool:
    return (
        "TensorRT-RTX crashed building 'chain' (fp32, for sm89)" in text
        and "killed by SIGSEGV" in text
        and "\n" not in text.strip()
    )


def test_a_crashing_build_is_one_line_from_the_api_and_the_caller_lives(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    model = chain(tmp_path / "chain.onnx", 300)
    killer, killed = _killer(os.getpid())
    with pytest.raises(WorkbenchError) as e:
        wb.compile(model, backend="tensorrt-rtx", arch="sm89")
    killer.join()
    assert killed and _crash_line(str(e.value)), str(e.value)
    assert not _build_children(os.getpid())  # nothing left behind
    run = wb.compile(model, backend="tensorrt-rtx", arch="sm89")  # the same process builds it next time
    assert run.compiled.engine_layers >= 1


def test_a_crashing_build_in_a_thread_fails_that_build_only(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    model = chain(tmp_path / "chain.onnx", 300)
    outcome: list = []

    def build():  # the panel builds on a worker thread
        try:
            outcome.append(wb.compile(model, backend="tensorrt-rtx", arch="sm89"))
        except WorkbenchError as e:
            outcome.append(e)

    killer, killed = _killer(os.getpid())
    worker = threading.Thread(target=build)
    worker.start()
    worker.join(300)
    killer.join()
    assert killed and len(outcome) == 1 and _crash_line(str(outcome[0])), outcome


def test_a_crashing_build_is_one_line_from_the_cli(tmp_path):
    model = chain(tmp_path / "chain.onnx", 300)
    env = {"WORKBENCH_CACHE": str(tmp_path / "cache"), "WORKBENCH_WORKSPACE": str(tmp_path / "ws")}
    cli = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "compile", str(model), "--arch", "sm89"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    killer, killed = _killer(cli.pid)
    out, err = cli.communicate(timeout=300)
    killer.join()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert killed and cli.returncode == 2 and len(errors) == 1 and _crash_line(errors[0]), err[-2000:]
    assert "Traceback" not in err


def _small_stack():
    resource.setrlimit(resource.RLIMIT_STACK, (1 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))


def test_a_deep_chain_that_overflows_a_small_stack_builds_in_the_child(tmp_path):
    """With a 1 MiB stack, building a 500-node chain in the caller's thread segfaults (as a 10,000-node chain does
    with the usual 8 MiB); the build child's thread has its own large stack and builds it."""
    model = chain(tmp_path / "chain.onnx", 500)
    env = {**os.environ, "WORKBENCH_CACHE": str(tmp_path / "cache")}
    direct = (
        "import sys, onnx, workbench as wb;"
        "from workbench.backends.tensorrt.build import build_plan;"
        "from workbench.backends.tensorrt.library import TENSORRT_RTX, load;"
        "from workbench.progress import Progress;"
        "v = wb.make_variant(sys.argv[1]);"
        "build_plan(load('tensorrt_rtx'), TENSORRT_RTX, v, wb.BuildConfig(), Progress(), targets=('SM89',))"
    )
    in_caller = subprocess.run(
        [sys.executable, "-c", direct, str(model)], preexec_fn=_small_stack, env=env, capture_output=True, timeout=300
    )
    assert in_caller.returncode == -signal.SIGSEGV
    isolated = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "compile", str(model), "--arch", "sm89"],
        preexec_fn=_small_stack,
        env={**env, "WORKBENCH_WORKSPACE": str(tmp_path / "ws")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert isolated.returncode == 0, isolated.stderr[-2000:]
    assert "compiled, not run" in isolated.stdout
