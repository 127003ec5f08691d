"""A killed sweep leaves no process: SIGKILL or SIGHUP of ``workbench sweep`` mid-point ends its worker processes and
multiprocessing's ``resource_tracker`` too (they used to live on, re-parented to PID 1); SIGTERM is
tests/test_containment.py's sweep ended by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from real_models import real_model
from support import descendants, left_alive


def _default_hangup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


#: SIGTERM: tests/test_containment.py's sweep ended by SIGTERM checks the same (and what its record says).
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=lambda s: s.name)
def test_a_killed_sweep_leaves_no_worker_and_no_resource_tracker(sig, tmp_path):
    env = {**os.environ, "WORKBENCH_WORKSPACE": str(tmp_path / "ws"), "WORKBENCH_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "workbench.cli", "sweep", real_model("ppocr_cls"), "--precision", "fp32"]
    argv += ["--batch", "1,2,3,4", "--backend", "onnxruntime", "--iterations", "3", "--trials", "1"]
    argv += ["--warmup", "60000", "--workers", "2"]  # each point warms up for a minute: the kill lands mid-point
    sweep = subprocess.Popen(  # SIGHUP's default action, as in a terminal (a suite run under nohup ignores it)
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_default_hangup
    )
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline and sweep.poll() is None:
        workers = descendants(sweep.pid)
        if len(workers) >= 3:  # two workers and the resource tracker
            break
        time.sleep(0.1)
    assert sweep.poll() is None and len(workers) >= 3, sweep.stderr.read().decode()[-2000:] if sweep.poll() else ""
    time.sleep(1.0)  # the workers are inside their point now
    workers = descendants(sweep.pid)
    sweep.send_signal(sig)
    sweep.wait(timeout=60)
    left = left_alive(workers)
    assert not left, f"{len(left)} process(es) left behind after {sig.name}"
