"""A killed sweep leaves no process: SIGKILL, SIGTERM or SIGHUP of ``workbench sweep`` mid-point ends its worker
processes and multiprocessing's ``resource_tracker`` too (they used to live on, re-parented to PID 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from real_models import real_model


def _descendants(root: int) -> set[int]:
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


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_killed_sweep_leaves_no_worker_and_no_resource_tracker(sig, tmp_path):
    env = {**os.environ, "WORKBENCH_WORKSPACE": str(tmp_path / "ws"), "WORKBENCH_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "workbench.cli", "sweep", real_model("ppocr_cls"), "--precision", "fp32"]
    argv += ["--batch", "1,2,3,4", "--backend", "onnxruntime", "--iterations", "3", "--trials", "1"]
    argv += ["--warmup", "60000", "--workers", "2"]  # each point warms up for a minute: the kill lands mid-point
    sweep = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline and sweep.poll() is None:
        workers = _descendants(sweep.pid)
        if len(workers) >= 3:  # two workers and the resource tracker
            break
        time.sleep(0.1)
    assert sweep.poll() is None and len(workers) >= 3, sweep.stderr.read().decode()[-2000:] if sweep.poll() else ""
    time.sleep(1.0)  # the workers are inside their point now
    workers = _descendants(sweep.pid)
    sweep.send_signal(sig)
    sweep.wait(timeout=60)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for pid in left:  # a failing run must not leave them either
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} process(es) left behind after {sig.name}"
