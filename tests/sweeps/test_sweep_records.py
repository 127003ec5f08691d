"""Sweep ids and sweep records as an attacker or a careless user gives them: an id never leaves the workspace's
``sweeps/`` (``..``, absolute paths, symbolic links), a damaged or tampered record is one line naming the file and
the field, ``sweep --list`` skips it with a note and lists the others, and no pending point runs with settings out
of range."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
from real_models import real_model

from workbench.cli import main
from workbench.config import BuildConfig
from workbench.errors import WorkbenchError
from workbench.model.onnx_model import load_model
from workbench.sweeps import SweepRecord, list_sweeps, plan_points


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path / "ws"


def _record(workspace, **changes) -> SweepRecord:
    """A real sweep record (the plan of a real model), saved, not run."""
    model = load_model(real_model("ppocr_cls"))
    points = plan_points(model, precisions="fp32,fp16", base=BuildConfig(iterations=5, warmup_ms=0, trials=1))
    return SweepRecord.create(
        points,
        model={"path": str(model.path), "name": model.name, "sha256": model.sha256},
        request={"backend": "onnxruntime", "trials": 1, "base": points[0].config.to_dict(), **changes},
        workspace=workspace,
    )


def _cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _victim(tmp_path, workspace):
    """A folder outside the workspace holding a valid-looking sweep record (copied from a real one)."""
    record = _record(workspace)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "sweep.json").write_text((record.directory / "sweep.json").read_text())
    (victim / ".env").write_text("SECRET=1")
    return record, victim


def _untouched(victim) -> bool:
    return sorted(p.name for p in victim.iterdir()) == [".env", "sweep.json"]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "linked_out", "linked_in", "nested"])
def test_a_sweep_id_cannot_leave_the_sweeps_folder(tmp_path, workspace, kind):
    record, victim = _victim(tmp_path, workspace)
    sweeps = record.directory.parent
    if kind == "dotdot":
        sweep_id = os.path.relpath(victim, sweeps)  # ../../victim
    elif kind == "absolute":
        sweep_id = str(victim)
    elif kind == "nested":
        sweep_id = f"{record.id}/../../../victim"
    else:
        sweep_id = "sweep-20260101-000000-linked"
        target = victim if kind == "linked_out" else record.directory
        (sweeps / sweep_id).symlink_to(target, target_is_directory=True)
    before = (record.directory / "sweep.json").read_text()
    with pytest.raises(WorkbenchError) as e:
        SweepRecord.load(sweep_id, workspace)
    assert "\n" not in str(e.value) and "sweep id" in str(e.value)
    code, _, err = _cli("sweep", "--resume", sweep_id)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert _untouched(victim) and (record.directory / "sweep.json").read_text() == before
    assert not (victim / "report.html").exists()


BAD_RECORDS = {
    "not json": lambda d: "{",
    "not utf-8": lambda d: b"\xff\xfe{}",
    "a list": lambda d: [],
    "deep nesting": lambda d: "[" * 100_000,
    "id of another folder": lambda d: {**d, "id": "../../x"},
    "model path a number": lambda d: {**d, "model": {**d["model"], "path": 3}},
    "points a dict": lambda d: {**d, "points": {}},
    "state unknown": lambda d: {**d, "points": [{**d["points"][0], "state": "running"}]},
    "run id a path": lambda d: {**d, "points": [{**d["points"][0], "state": "done", "run": "../../victim"}]},
    "iterations 1e12": lambda d: {
        **d,
        "points": [{**d["points"][0], "config": {**d["points"][0]["config"], "iterations": 1e12}}],
    },
    "warm-up infinite": lambda d: {
        **d,
        "points": [{**d["points"][0], "config": {**d["points"][0]["config"], "warmup_ms": 1e400}}],
    },
    "shapes a list": lambda d: {
        **d,
        "points": [{**d["points"][0], "config": {**d["points"][0]["config"], "shapes": [1]}}],
    },
    "trials a string": lambda d: {**d, "request": {**d["request"], "trials": "3"}},
    "base trials 1e9": lambda d: {**d, "request": {**d["request"], "base": {**d["request"]["base"], "trials": 10**9}}},
}


@pytest.mark.parametrize("damage", list(BAD_RECORDS), ids=list(BAD_RECORDS))
def test_a_tampered_record_is_one_line_naming_the_file_and_skipped_by_list(workspace, damage):
    good = _record(workspace)
    bad = _record(workspace)
    path = bad.directory / "sweep.json"
    written = BAD_RECORDS[damage](json.loads(path.read_text()))
    if isinstance(written, bytes):
        path.write_bytes(written)
    else:
        path.write_text(written if isinstance(written, str) else json.dumps(written))
    with pytest.raises(WorkbenchError) as e:
        SweepRecord.load(bad.id, workspace)
    message = str(e.value)
    assert "\n" not in message and str(path) in message and len(message) < 600
    notes: list = []
    assert [r.id for r in list_sweeps(workspace, notes)] == [good.id]
    assert len(notes) == 1 and bad.id in notes[0]
    code, out, err = _cli("sweep", "--list")
    assert code == 0 and good.id in out and bad.id not in out and f"note: skipped '{bad.id}'" in err
    code, _, err = _cli("sweep", "--resume", bad.id)  # nothing runs: one line, exit 2
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_a_record_that_is_a_pipe_or_a_link_to_dev_zero_is_refused_without_reading(workspace):
    for make in (os.mkfifo, lambda p: p.symlink_to("/dev/zero")):
        record = _record(workspace)
        path = record.directory / "sweep.json"
        path.unlink()
        make(path)
        with pytest.raises(WorkbenchError, match="not a regular file"):
            SweepRecord.load(record.id, workspace)
