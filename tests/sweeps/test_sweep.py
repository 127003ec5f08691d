"""Sweeps: the plan, local and Ray executors (a real local Ray cluster with 2 CPUs), the record of done / failed /
pending points, resume after a kill, cancel, and the Pareto report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from support import make_mlp

from workbench.config import BuildConfig
from workbench.errors import WorkbenchError
from workbench.model.onnx_model import load_model
from workbench.progress import Progress
from workbench.results.store import Store
from workbench.sweeps import SweepRecord, load_sweep, plan_points, sweep
from workbench.sweeps.executors import LocalExecutor, make_executor

FAST = BuildConfig(iterations=3, warmup_ms=0, trials=1)
#: fp32 and fp16 run on ONNX Runtime's CPU provider; bf16 cannot (no kernels): that point fails with the reason.
GRID = {"precisions": "fp32,fp16,bf16", "batches": "1,2"}


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster with 2 CPUs for the whole session (starting Ray costs seconds)."""
    import ray

    for attempt in range(3):  # on a loaded machine Ray's agents can miss the raylet's 15 s start-up deadline
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return make_mlp(tmp_path_factory.mktemp("sweep") / "mlp.onnx")


def _states(result) -> dict:
    return {p["key"]: p["state"] for p in result.record.points}


def test_plan_is_every_combination_with_stable_keys(mlp):
    model = load_model(mlp)
    points = plan_points(model, precisions="fp32,fp16,int8", batches="1,8", workspaces="1G,4G", opt_levels="3,5")
    assert len(points) == 24 and len({p.key for p in points}) == 24
    assert [p.key for p in points] == [
        p.key
        for p in plan_points(
            model, precisions=["fp32", "fp16", "int8"], batches=[1, 8], workspaces=["1G", "4G"], opt_levels=[3, 5]
        )
    ]
    eight = next(p for p in points if p.batch == 8)
    assert eight.config.shape_map == {"x": (8, 4)} and eight.label.startswith(eight.config.precision + " b8")
    assert {p.config.workspace_bytes for p in points} == {1 << 30, 4 << 30}
    with pytest.raises(WorkbenchError, match="Unknown precision 'fp12'"):
        plan_points(model, precisions="fp32,fp12")
    with pytest.raises(WorkbenchError, match="optimization level 9"):
        plan_points(model, opt_levels="3,9")


@pytest.fixture(scope="module")
def local_sweep(mlp, tmp_path_factory):
    """The grid on two local worker processes, with evaluation data (7 samples), run once: the local test reads it
    and the Ray test compares Ray's points with it. (result, store, keys seen by on_point, the evaluation file)"""
    import numpy as np

    folder = tmp_path_factory.mktemp("local-sweep")
    evaluation = folder / "eval.npz"
    np.savez(evaluation, x=np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32))
    store = Store(folder / "ws")
    seen = []
    result = sweep(
        mlp,
        **GRID,
        config=FAST,
        backend="onnxruntime",
        eval_data=evaluation,
        workers=2,
        store=store,
        on_point=lambda s, row: seen.append(row["key"]),
    )
    return result, store, seen, evaluation


def test_local_sweep_records_each_point_and_a_failing_one_with_its_reason(local_sweep):
    result, store, seen, _ = local_sweep
    record = SweepRecord.load(result.id, store.path)  # what is on disk, not the object in memory
    assert record.status == "finished" and record.counts() == {"done": 4, "failed": 2, "pending": 0}
    assert sorted(seen) == sorted(p["key"] for p in record.points)
    for row in record.in_state("failed"):
        assert row["config"]["precision"] == "bf16" and "cannot run on onnxruntime" in row["reason"]
    for row in record.in_state("done"):
        run = store.get(row["run"])
        assert run.sweep_id == result.id and run.sweep_point == row["key"]
        assert run.config.shape_map["x"][0] == row["batch"] and run.precision == row["config"]["precision"]
    assert len(store) == 4
    table = result.table()
    assert table["front"].any() and not table[table["state"] == "failed"]["front"].any()
    report = result.report_path.read_text()
    assert "Pareto front" in report and "trtexec" in report and "no BF16 kernels" in report
    assert report.count("--onnx=") == 4  # one trtexec command per done point
    assert LocalExecutor(2, gpus=["0", "1"]).slots == [{"gpu": "0"}, {"gpu": "1"}]  # one worker per GPU


def test_ray_sweep_gives_the_same_points_as_local_and_ships_the_variant(ray_cluster, mlp, local_sweep, tmp_path):
    local, *_, evaluation = local_sweep  # 7 samples: the runs' accuracy must be measured on these, shipped to Ray
    store = Store(tmp_path / "ray")
    remote = sweep(
        mlp, **GRID, config=FAST, backend="onnxruntime", eval_data=evaluation, workers=2, executor="ray", store=store
    )
    assert remote.record.executor["name"] == "ray" and "object store" in remote.record.executor["why"]
    assert _states(remote) == _states(local)  # same keys (same plan), same outcome
    runs = {r.sweep_point: r for r in remote.runs()}
    assert len(runs) == 4 and all(r.directory.parent == store.path / "runs" for r in runs.values())
    local_runs = {r.sweep_point: r for r in local.runs()}
    for key, run in runs.items():  # the fp16 variant built once here, shipped to Ray: the same graph
        assert run.variant.get("sha256") == local_runs[key].variant.get("sha256")
        assert run.latency is not None and (run.directory / "run.json").is_file()
        assert run.accuracy.samples == 7 and run.model["path"] == str(mlp.resolve())
    pids = {p["worker"] for p in remote.record.in_state("done")}
    assert all(str(os.getpid()) not in w for w in pids)  # the points ran in Ray's worker processes


def test_ray_cancel_stops_cleanly_and_resume_finishes(ray_cluster, mlp, tmp_path):
    store = Store(tmp_path / "ws")
    progress = Progress()
    result = sweep(
        mlp,
        precisions="fp32",
        batches="1,2,3,4,5,6",
        config=FAST,
        backend="onnxruntime",
        executor="ray",
        workers=1,
        store=store,
        progress=progress,
        on_point=lambda s, row: progress.cancel(),
    )
    record = SweepRecord.load(result.id, store.path)
    assert record.status == "cancelled" and record.counts()["done"] >= 1 and record.counts()["pending"] >= 1
    first = {p["key"]: p["run"] for p in record.in_state("done")}
    resumed = sweep(resume=result.id, executor="ray", workers=2, store=store)
    assert resumed.record.counts() == {"done": 6, "failed": 0, "pending": 0}
    assert all(resumed.record.point(k)["run"] == run for k, run in first.items())
    assert len(store) == 6


def test_resume_after_a_planted_kill_redoes_no_finished_point(mlp, tmp_path):
    workspace = tmp_path / "ws"
    env = {**os.environ, "WORKBENCH_WORKSPACE": str(workspace)}
    # each point warms up for 0.5 s, so the kill lands while points remain
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "sweep",
            str(mlp),
            "--precision",
            "fp32",
            "--batch",
            "1,2,3,4",
            "--backend",
            "onnxruntime",
            "--iterations",
            "3",
            "--trials",
            "1",
            "--warmup",
            "500",
            "--workers",
            "1",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    record = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((workspace / "sweeps").glob("sweep-*/sweep.json")) if (workspace / "sweeps").is_dir() else []
        if found:
            record = json.loads(found[0].read_text())
            if sum(p["state"] == "done" for p in record["points"]) >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its worker, mid-point
    proc.wait()
    sweep_id = record["id"]
    killed = SweepRecord.load(sweep_id, workspace)
    # the last complete record survived, and its owner is gone: listed as interrupted, not as still running
    assert killed.status == "interrupted" and killed.counts()["pending"] >= 1
    store = Store(workspace)
    before = {r: store.get(r).created for r in (p["run"] for p in killed.in_state("done"))}
    resumed = sweep(resume=sweep_id, workers=1, store=store)
    assert resumed.record.counts() == {"done": 4, "failed": 0, "pending": 0}
    assert {r: store.get(r).created for r in before} == before  # finished points were not run again
    assert len(store) == 4 and not list(store.path.glob("runs/.*"))  # no half-written run directory left
    assert load_sweep(sweep_id, store).report_path.is_file()


def test_ray_missing_falls_back_to_local_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    executor = make_executor("ray", workers=1)
    assert executor.name == "local" and "ray is needed" in executor.why and "[ray]" in executor.why
    assert "Ran on the local executor instead" in executor.why
    with pytest.raises(WorkbenchError, match="cannot be imported"):
        make_executor("ray", address="ray://head:10001")


def test_importing_the_sweep_modules_loads_no_ray():
    code = (
        "import sys, workbench, workbench.sweeps, workbench.views.sweep, workbench.cli; "
        "print([m for m in ('ray', 'torch', 'onnxruntime') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_wb_sweep_stays_the_function_after_the_sweeps_package_is_imported():
    # The package was named `sweep`: importing any of its modules (the CLI does, `wb.load_sweep` does) bound
    # `workbench.sweep` to the package, and `wb.sweep(...)` then raised "'module' object is not callable".
    code = (
        "import workbench as wb, workbench.sweeps.record; "
        "print(wb.load_sweep.__module__, wb.sweep.__module__, callable(wb.sweep))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["workbench.sweeps.runner", "workbench.sweeps.runner", "True"], result.stderr


def test_panel_sweep_tab_fills_in_live(tmp_path):
    from workbench.ui import Workbench

    panel = Workbench("digits_cnn", store=Store(tmp_path / "ws"))
    titles = [panel.tabs.get_title(i) for i in range(len(panel.tabs.children))]
    assert "Sweep" in titles
    panel.iterations.value = 3
    panel.trials.value = 1
    tab = panel.sweeps
    tab.precisions.value, tab.batches.value, tab.workers.value = "fp32,bf16", "1,2", 1
    tables = []
    tab.table.observe(lambda change: tables.append(change["new"]), "value")
    result = tab.start(wait=True)
    assert result.record.counts() == {"done": 2, "failed": 2, "pending": 0}
    assert len(tables) >= 4  # one update per finished point, not one at the end
    assert tab.progress_bar.value == 4 and "no BF16 kernels" in tab.table.value
    assert str(result.report_path) in tab.status.value and not tab.start_button.disabled
    assert len(panel.history.runs()) == 2  # the History tab lists the sweep's runs


def test_a_worker_that_dies_fails_only_its_point(mlp, tmp_path):
    import multiprocessing

    def kill_the_worker(result, row):
        if row["index"] == 0:  # the worker process dies as a native crash or the OOM killer would end it
            for child in multiprocessing.active_children():
                if child.name == "workbench-sweep-worker":
                    os.kill(child.pid, signal.SIGKILL)

    result = sweep(
        mlp,
        precisions="fp32",
        batches="1,2,3",
        config=FAST,
        backend="onnxruntime",
        workers=1,
        store=Store(tmp_path / "ws"),
        on_point=kill_the_worker,
    )
    states = [p["state"] for p in result.record.points]
    assert states == ["done", "failed", "done"]  # the replacement worker ran the last point
    assert (
        "SIGKILL" in result.record.points[1]["reason"]
        and "the other points went on" in result.record.points[1]["reason"]
    )


def test_a_run_stored_before_the_record_said_so_is_not_made_again(mlp, tmp_path):
    store = Store(tmp_path / "ws")
    first = sweep(mlp, precisions="fp32", batches="1,2", config=FAST, backend="onnxruntime", workers=1, store=store)
    record = SweepRecord.load(first.id, store.path)
    kept = record.points[1]["run"]
    record.mark(record.points[1]["key"], "pending")  # as if killed between storing the run and saving the record
    record.save()
    resumed = sweep(resume=first.id, store=store, workers=1)
    row = resumed.record.points[1]
    assert row["state"] == "done" and row["run"] == kept and row["worker"] == "recovered from the store"
    assert len(store) == 2
