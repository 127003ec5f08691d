"""Issue 34's leftovers, as a user meets them: a sweep whose process was killed outright lists as interrupted, a
command over a real memory limit ends in one line naming the estimate and the limit (a small model under a low
limit, not gigabytes), and Ctrl-C ends long steps in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
sys.path.insert(0, str(REPO / "benchmarks"))

from memory_limit_replay import Limit  # noqa: E402  (the replay's own limit: a cgroup where one can be made)


def _env(tmp_path: Path) -> dict:
    """The CLI's environment: a workspace and a cache of the test's own (``tmp_path / "cache"``, the folder the
    ``own_cache`` fixture seeds with the session's CPU roof)."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WORKBENCH_WORKSPACE": str(tmp_path / "ws"),
        "WORKBENCH_CACHE": str(tmp_path / "cache"),
    }


def _cli(tmp_path: Path, *argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *argv], env=_env(tmp_path), capture_output=True, text=True, **kw
    )


# ---- a sweep killed outright ---------------------------------------------------------------------------------------


def test_a_sweep_whose_process_was_killed_lists_as_interrupted_process_gone(tmp_path):
    """The record says "running" and nothing could change it (SIGKILL): the list reads the owner's pid and start
    time and says the process is gone; a live owner still lists as running; the file itself is left as written."""
    from workbench.config import BuildConfig
    from workbench.model.onnx_model import load_model
    from workbench.processes import process_identity
    from workbench.sweeps import SweepRecord, plan_points

    model = load_model(DATA / "digits_cnn.onnx")
    points = plan_points(model, precisions="fp32", base=BuildConfig(iterations=3, warmup_ms=0, trials=1))
    record = SweepRecord.create(
        points,
        model={"path": str(model.path), "name": model.name, "sha256": model.sha256},
        request={"backend": "onnxruntime", "trials": 1, "base": points[0].config.to_dict()},
        workspace=tmp_path / "ws",
    )
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        record.status, record.owner = "running", process_identity(owner.pid)
        record.save()
        listed = _cli(tmp_path, "sweep", "--list").stdout
        assert f"sweep {record.id}: 0 done, 0 failed, 1 pending of 1 (running)" in listed
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    listed = _cli(tmp_path, "sweep", "--list")
    assert f"sweep {record.id}: 0 done, 0 failed, 1 pending of 1 (interrupted: process gone)" in listed.stdout
    assert listed.returncode == 0 and listed.stderr == ""
    assert json.loads((record.directory / "sweep.json").read_text())["status"] == "running"  # read, not rewritten
    reused = {**record.owner, "started": record.owner["started"] + 1, "pid": os.getpid()}  # this pid, another start
    assert SweepRecord.load(record.id, tmp_path / "ws").status == "interrupted"
    record.owner = reused
    record.save()
    assert SweepRecord.load(record.id, tmp_path / "ws").summary().endswith("(interrupted: process gone)")
    record.owner = process_identity()  # this live process: running
    record.save()
    assert SweepRecord.load(record.id, tmp_path / "ws").status == "running"


# ---- a real memory limit -------------------------------------------------------------------------------------------


def _relu(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1024, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1024, 1024])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_session_too_big_for_the_memory_limit_is_one_line_before_its_inputs_are_drawn(tmp_path, own_cache):
    """``profile --shapes x:64x1024x1024`` (256 MiB in, 256 MiB out, two sessions: 1 GiB) in a 600 MiB cgroup (where
    one can be made; else ``--max-memory 600M``): exit 2, one line with the estimate and the limit, before the
    256 MiB of inputs are drawn (the cgroup's peak stays under them), and nothing in the history."""
    model = _relu(tmp_path / "relu.onnx")
    limit = Limit(600 << 20)
    argv = [sys.executable, "-m", "workbench.cli", "profile", str(model), "--shapes", "x:64x1024x1024"]
    if limit.kind == "rlimit":  # no cgroup here: the workbench's own limit (an address-space one trips on imports)
        argv[3:3] = ["--max-memory", "600M"]
        source = r"--max-memory 600\.0 MiB"
    else:
        source = r"the cgroup limit 600\.0 MiB \(memory\.(limit_in_bytes|max)\)"
    limit.open(f"test-{os.getpid()}")
    try:
        done = subprocess.run(
            argv,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=None if limit.kind == "rlimit" else limit.enter,
        )
        peak, kills = limit.peak_and_kills()
    finally:
        limit.close()
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert re.fullmatch(
        r"error: Running relu \(fp32\) at x:64x1024x1024 .* would take about 1\.0 GiB, more than this process may "
        rf"still use \([\d.]+ MiB of [\d.]+ MiB left under {source}\): pass smaller shapes .*--max-memory.*",
        lines[0],
    ), lines[0]
    assert kills in (None, 0) and (peak is None or peak < 256 << 20)
    assert not (tmp_path / "ws" / "runs").exists() or not any((tmp_path / "ws" / "runs").iterdir())
    ran = _cli(tmp_path, "profile", str(model), "--shapes", "x:1x1024x1024", "--iterations", "2", "--trials", "1")
    assert ran.returncode == 0, ran.stderr[-2000:]  # a batch that fits runs


# ---- a calibration folder larger than memory -----------------------------------------------------------------------


def test_a_calibration_folder_beyond_half_the_memory_left_is_decoded_into_a_mapped_file(tmp_path, monkeypatch):
    """48 MiB of decoded images with 80 MiB left (``--max-memory``: this process's size + 80 MiB): decoded one at a
    time into a memory-mapped file (unlinked: nothing stays on disk), with the same values, in the model's NCHW
    layout, as the in-memory array a roomy limit gives; ImageNet normalization applied to each image alike."""
    from PIL import Image

    from workbench.memory import _process_bytes
    from workbench.model.onnx_model import load_model
    from workbench.precision.calibration import load_calibration

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "img",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 256, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 256, 256])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "img.onnx"))
    model = load_model(tmp_path / "img.onnx")
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(64):
        Image.new("RGB", (32, 32), (i * 4, 255 - i * 4, 100)).save(folder / f"{i:03d}.png")
    roomy = load_calibration(folder, model, image_normalization="imagenet").arrays["x"]
    monkeypatch.setenv("WORKBENCH_MAX_MEMORY", str(_process_bytes("VmRSS") + (80 << 20)))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    mapped = load_calibration(folder, model, image_normalization="imagenet").arrays["x"]
    assert isinstance(mapped, np.memmap) and not isinstance(roomy, np.memmap)
    assert mapped.shape == roomy.shape == (64, 3, 256, 256) and mapped.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(mapped, roomy)
    assert roomy[5, :, 0, 0] == pytest.approx(
        ((np.array([20, 235, 100]) / 255) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], abs=1e-5
    )
    assert [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()] == []  # the mapping's file is already unlinked


# ---- a per-layer profile of a huge graph ---------------------------------------------------------------------------


def test_a_graph_too_big_for_the_profile_event_budget_is_profiled_over_fewer_runs_and_says_so(tmp_path, monkeypatch):
    """A 300-node chain under a budget of 900 events (a 100,000-node graph under the real 300,000): 3 profiled
    inferences, not 50, every layer still in the table, and the run's notes say why."""
    import workbench as wb
    from workbench.backends import onnxruntime as ort_backend
    from workbench.model.onnx_model import load_model

    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}") for i in range(300)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("t300", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "chain.onnx"))
    monkeypatch.setattr(ort_backend, "PROFILE_EVENTS", 900)
    config = wb.BuildConfig(iterations=50, warmup_ms=0, trials=1, ort_graph_optimization="disable")
    run = wb.profile(load_model(tmp_path / "chain.onnx"), backend="onnxruntime", config=config)
    assert len(run.layers) == 300
    assert (
        "per-layer times from at most 3 profiled inferences, not 50: the graph's 300 nodes write one profiler event "
        "each per inference (capped at 900 events)" in run.notes
    )
