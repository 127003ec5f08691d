"""The experiment store: runs saved under a workspace, listed, loaded, deleted; several processes at once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from support import DATA, REPO, warnings_logged

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.results.run import LatencyStats, Memory, Run, load_run
from workbench.results.store import DB_NAME, Store

DIGITS = DATA / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def profiled_runs():
    """Two real ONNX Runtime runs of the digits model (graph optimizations on and off)."""
    fast = wb.BuildConfig(iterations=20, warmup_ms=0)
    return (
        wb.profile(DIGITS, backend="onnxruntime", config=fast),
        wb.profile(DIGITS, backend="onnxruntime", config=fast.replace(ort_graph_optimization="disable")),
    )


def synthetic_run(model: str, seed: int) -> Run:
    times = [1.0 + 0.01 * ((seed * 7 + i) % 13) for i in range(30)]
    return Run(
        backend="onnxruntime",
        model={"name": model, "sha256": f"sha-{model}"},
        layers=[
            {"name": f"layer{i}", "type": "Conv", "time_ms": 0.1 * (i + 1), "onnx_nodes": [f"n{i}"]} for i in range(3)
        ],
        latency=LatencyStats.from_times(times),
        latency_ms=times,
    )


def test_add_list_get_round_trip(tmp_path, profiled_runs):
    store = Store(tmp_path / "ws")
    a, b = (store.add(r) for r in profiled_runs)
    assert a.directory == tmp_path / "ws" / "runs" / a.id and (a.directory / "run.json").is_file()

    listed = store.list()
    assert set(listed["run"]) == {a.id, b.id} and len(store) == 2
    row = listed.set_index("run").loc[a.id]
    assert row["mean_ms"] == pytest.approx(a.latency.mean_ms)
    assert row["layers"] == len(a.layers) and row["precision"] == "fp32" and row["model"] == "digits_cnn"

    loaded = store.get(a.id)
    assert loaded.config == a.config and loaded.latency == a.latency and loaded.environment == a.environment
    pd.testing.assert_frame_equal(loaded.layers, profiled_runs[0].layers, check_dtype=False)
    assert store.get(b.id).config.ort_graph_optimization == "disable"


def test_extra_layer_columns_keep_their_types_through_a_run_directory(tmp_path):
    # what the CSV alone cannot tell: an unmeasured float column, text made of digits, a bool and an int column
    layers = [
        {
            "name": "NA",
            "type": "Conv",
            "time_ms": 0.5,
            "onnx_nodes": ["conv[0]"],
            "bandwidth": float("nan"),
            "stream": "7",
            "fused": True,
            "slot": 3,
        },
        {
            "name": "null",
            "type": "Relu",
            "time_ms": float("nan"),
            "onnx_nodes": [],
            "bandwidth": float("nan"),
            "stream": "12",
            "fused": False,
            "slot": -1,
        },
    ]
    run = Run(backend="tensorrt", layers=layers)
    loaded = load_run(run.save(tmp_path / "run").directory)
    pd.testing.assert_frame_equal(loaded.layers, run.layers)


def test_config_environment_and_metrics_are_in_sqlite(tmp_path, profiled_runs):
    store = Store(tmp_path)
    run = store.add(profiled_runs[0])
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        config, env, mode = db.execute(
            "SELECT config, environment, (SELECT journal_mode FROM pragma_journal_mode) FROM runs WHERE run = ?",
            (run.id,),
        ).fetchone()
    assert json.loads(config) == run.config.to_dict()
    assert json.loads(env)["cpu"] == run.environment["cpu"]
    assert mode == "wal"


def test_history_survives_a_new_process(tmp_path, profiled_runs):
    """What a kernel restart looks like: a fresh interpreter opens the same workspace and finds the runs."""
    store = Store(tmp_path)
    ids = sorted(store.add(r).id for r in profiled_runs)
    code = textwrap.dedent(f"""
        import json
        from workbench.results.store import Store
        store = Store({str(tmp_path)!r})
        print(json.dumps(sorted(store.list(model="digits_cnn")["run"])), len(store.get({ids[0]!r}).layers))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    listed, layers = out.stdout.rsplit(" ", 1)
    assert json.loads(listed) == ids and int(layers) == len(store.get(ids[0]).layers)


def test_two_processes_add_at_once(tmp_path):
    """Two notebooks saving runs at the same moment: every run is listed and loadable, nothing is lost."""
    per_process = 15
    start_at = time.time() + 2.0  # both processes start writing at the same instant
    code = textwrap.dedent("""
        import sys, time
        sys.path[:0] = [{tests!r}, {support!r}]
        from test_store import synthetic_run
        from workbench.results.store import Store
        store = Store({ws!r})
        time.sleep(max(0.0, {start} - time.time()))
        for i in range({n}):
            store.add(synthetic_run("model-" + sys.argv[1], i))
    """).format(
        tests=str(Path(__file__).parent),
        support=str(Path(__file__).parents[1]),
        ws=str(tmp_path),
        start=start_at,
        n=per_process,
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, tag], cwd=REPO, stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors

    store = Store(tmp_path)
    listed = store.list()
    assert len(listed) == 2 * per_process and listed["run"].is_unique
    assert len(store.list(model="model-a")) == per_process == len(store.list(model="model-b"))
    assert all(store.get(r).latency.samples == 30 for r in listed["run"])
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")], "no half-written run folders"


def test_several_processes_open_new_workspaces_at_the_same_moment(tmp_path):
    """Notebooks started together on a fresh workspace: none fails while another switches the index to WAL."""
    folders = [str(tmp_path / f"ws{i}") for i in range(60)]
    start_at = time.time() + 2.0
    code = textwrap.dedent("""
        import sys, time
        from workbench.results.store import Store
        time.sleep(max(0.0, {start} - time.time()))
        for folder in {folders!r}:
            Store(folder)
    """).format(start=start_at, folders=folders)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    for folder in folders:
        with sqlite3.connect(Path(folder) / DB_NAME) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_is_newest_first_and_filters_by_model_name_or_hash(tmp_path):
    store = Store(tmp_path)
    older = store.add(synthetic_run("alpha", 1).replace(created="2026-01-01T00:00:00+00:00"))
    newer = store.add(synthetic_run("alpha", 2).replace(created="2026-02-01T00:00:00+00:00"))
    other = store.add(synthetic_run("beta", 3))
    assert list(store.list(model="alpha")["run"]) == [newer.id, older.id]
    assert list(store.list(model="sha-beta")["run"]) == [other.id]
    assert store.models() == ["alpha", "beta"]
    assert store.list(model="gamma").empty


def test_get_by_unique_prefix_and_clear_errors(tmp_path):
    store = Store(tmp_path)
    a = store.add(synthetic_run("m", 1).replace(id="20260101-000000-aaaaaa"))
    store.add(synthetic_run("m", 2).replace(id="20260101-000000-abbbbb"))
    assert store.get("20260101-000000-aa").id == a.id
    with pytest.raises(WorkbenchError, match="matches several runs"):
        store.get("20260101-000000-a")
    with pytest.raises(WorkbenchError, match="No run 'nope'.*workbench history"):
        store.get("nope")
    with pytest.raises(WorkbenchError, match="No run '20260101_%'"):  # LIKE wildcards are taken literally
        store.get("20260101_%")


def test_delete_removes_row_and_folder(tmp_path):
    store = Store(tmp_path)
    keep, gone = store.add(synthetic_run("m", 1)), store.add(synthetic_run("m", 2))
    store.delete(gone.id)
    assert list(store.list()["run"]) == [keep.id] and gone.id not in store and keep.id in store
    assert not gone.directory.exists() and keep.directory.exists()


def test_a_run_whose_folder_vanished_says_how_to_fix_it(tmp_path):
    store = Store(tmp_path)
    run = store.add(synthetic_run("m", 1))
    for p in run.directory.iterdir():
        p.unlink()
    run.directory.rmdir()
    with pytest.raises(WorkbenchError, match=r"folder .* is gone: delete it with Store.delete"):
        store.get(run.id)


def test_adding_a_run_saved_elsewhere_copies_it_in(tmp_path):
    run = wb.profile(
        DIGITS, backend="onnxruntime", config=wb.BuildConfig(iterations=5, warmup_ms=0), out=tmp_path / "elsewhere"
    )
    stored = Store(tmp_path / "ws").add(run)
    assert stored.id != run.id  # a run from elsewhere gets a new id: ids are generated, never taken from a file
    assert stored.directory == tmp_path / "ws" / "runs" / stored.id
    assert set(stored.artifacts) == set(run.artifacts)
    assert all(stored.artifact(k).is_file() and stored.artifact(k).parent == stored.directory for k in stored.artifacts)
    assert load_run(stored.directory).latency == run.latency


def test_reindex_lists_run_folders_copied_in(tmp_path):
    store = Store(tmp_path / "ws")
    copied = synthetic_run("m", 1).save(tmp_path / "ws" / "runs" / "copied-by-hand")
    assert store.reindex() == 1
    assert list(store.list()["run"]) == [copied.id] and store.get(copied.id).latency == copied.latency
    assert store.get(copied.id).directory.name == copied.id and not copied.directory.exists()
    assert store.reindex() == 0


def test_default_workspace_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path / "from-env"))
    store = Store()
    assert store.path == tmp_path / "from-env" and (tmp_path / "from-env" / DB_NAME).is_file()


def test_a_damaged_index_is_a_one_line_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(WorkbenchError, match="is damaged.*workbench reindex --rebuild") as e:
        Store(tmp_path)
    assert "\n" not in str(e.value)


def test_an_unwritable_workspace_is_a_one_line_error(tmp_path):
    """A workspace that cannot be made is one line naming the way to choose another; under a file, so that it
    cannot be made as root either (CI runs as root: a read-only folder would not stop it)."""
    (tmp_path / "a-file").write_text("")
    with pytest.raises(WorkbenchError, match="WORKBENCH_WORKSPACE") as e:
        Store(tmp_path / "a-file" / "ws")
    assert "\n" not in str(e.value) and str(tmp_path / "a-file" / "ws") in str(e.value)


def test_a_damaged_or_foreign_index_is_rebuilt_from_the_run_folders(tmp_path, monkeypatch):
    from workbench.cli import main

    store = Store(tmp_path)
    ids = {store.add(synthetic_run("m", i)).id for i in range(3)}
    for damage in (b"this is not a database" * 100, "foreign"):
        if damage == "foreign":
            (tmp_path / DB_NAME).unlink()
            with sqlite3.connect(tmp_path / DB_NAME) as db:
                db.execute("CREATE TABLE runs (id INTEGER, payload BLOB)")
        else:
            (tmp_path / DB_NAME).write_bytes(damage)
        with pytest.raises(WorkbenchError, match="workbench reindex --rebuild"):
            Store(tmp_path)
        rebuilt = Store.rebuild(tmp_path)
        assert set(rebuilt.list()["run"]) == ids
        assert any(p.name.startswith(f"{DB_NAME}.damaged-") for p in tmp_path.iterdir())  # kept aside, not deleted
    (tmp_path / DB_NAME).write_bytes(b"garbage" * 100)
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    assert main(["reindex", "--rebuild"]) == 0 and set(Store(tmp_path).list()["run"]) == ids


def test_an_empty_index_beside_run_folders_lists_them(tmp_path):
    store = Store(tmp_path)
    run = store.add(synthetic_run("m", 1))
    for suffix in ("", "-wal", "-shm"):
        path = tmp_path / f"{DB_NAME}{suffix}"
        if path.exists():
            path.unlink()
    (tmp_path / DB_NAME).write_bytes(b"")  # a 0-byte runs.sqlite
    assert list(Store(tmp_path).list()["run"]) == [run.id]


def test_a_damaged_run_folder_is_skipped_with_a_warning(tmp_path, caplog):
    store = Store(tmp_path)
    good = store.add(synthetic_run("m", 1))
    for name, text in (("empty-json", "{}"), ("bad-csv", None)):
        bad = synthetic_run("m", 2).save(tmp_path / "runs" / name)
        if text is not None:
            (bad.directory / "run.json").write_text(text)
        else:
            (bad.directory / "layers.csv").write_text("")
        with pytest.raises(WorkbenchError, match="damaged") as e:
            load_run(bad.directory)
        assert "\n" not in str(e.value)
    assert store.reindex() == 0
    skipped = warnings_logged(caplog)
    assert len(skipped) == 2 and all(t.startswith("Skipped a run folder: ") for t in skipped)
    assert any("empty-json" in t for t in skipped) and any("bad-csv" in t for t in skipped)
    assert list(store.list()["run"]) == [good.id]


def test_a_value_sqlite_cannot_hold_leaves_no_unlisted_folder(tmp_path):
    store = Store(tmp_path)
    run = synthetic_run("m", 1).replace(memory=Memory(weights_bytes=1 << 70))
    stored = store.add(run)
    assert pd.isna(store.list().set_index("run").loc[stored.id, "weights_bytes"])  # unknown in the list
    assert load_run(stored.directory).memory.weights_bytes == 1 << 70  # the folder keeps the exact value


def test_a_failing_finish_leaves_neither_folder_nor_row(tmp_path):
    store = Store(tmp_path)

    def fail(_run):
        raise OSError(28, "No space left on device")

    with pytest.raises(WorkbenchError, match=r"The disk holding .* is full: free space there"):
        store.add(synthetic_run("m", 1), finish=fail)
    assert len(store) == 0 and not list((tmp_path / "runs").iterdir())


def test_concurrent_rebuilds_and_readers_see_a_whole_index(tmp_path):
    """`reindex --rebuild` run by several processes at once while others list the history: nobody sees the index
    half-made ("no such table: runs" before), and every old index is kept under its own name (two rebuilds in the
    same second used to overwrite each other's saved copy)."""
    store = Store(tmp_path)
    ids = {store.add(synthetic_run("m", i)).id for i in range(4)}
    start_at = time.time() + 2.0
    code = textwrap.dedent("""
        import sys, time
        from workbench.results.store import Store
        time.sleep(max(0.0, {start} - time.time()))
        for _ in range(3):
            if sys.argv[1] == "rebuild":
                Store.rebuild({ws!r})
            else:
                assert len(Store({ws!r}).list()) == 4
    """).format(ws=str(tmp_path), start=start_at)
    roles = ["rebuild"] * 3 + ["read"] * 3
    procs = [
        subprocess.Popen([sys.executable, "-c", code, r], cwd=REPO, stderr=subprocess.PIPE, text=True) for r in roles
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(roles), [e[-500:] for e in errors if e]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(f"{DB_NAME}.before-rebuild-")]
    assert len(kept) == 9  # 3 processes x 3 rebuilds of a healthy index, none overwritten
    assert set(Store(tmp_path).list()["run"]) == ids


def test_an_index_of_the_first_release_opens_and_gains_the_later_columns(tmp_path):
    """An index written before median_ms, timing, shapes, verdict, min_cosine and checks existed is the workbench's:
    opened, it gains those columns (NULL for its rows) and lists its runs; a new run fills them."""
    first = (
        "run TEXT PRIMARY KEY, created TEXT NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL, "
        "precision TEXT NOT NULL, mean_ms REAL, p50_ms REAL, p99_ms REAL, throughput_qps REAL, layers INTEGER, "
        "weights_bytes INTEGER, activations_bytes INTEGER, label_accuracy REAL, max_abs_error REAL, "
        "workspace_bytes INTEGER, optimization_level INTEGER, device TEXT, source TEXT, model_sha256 TEXT, "
        "directory TEXT NOT NULL, config TEXT NOT NULL, environment TEXT NOT NULL"
    )
    (tmp_path / "runs").mkdir()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute(f"CREATE TABLE runs ({first})")
    store = Store(tmp_path)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    assert {"median_ms", "timing", "shapes", "verdict", "min_cosine", "checks"} <= columns
    run = store.add(synthetic_run("alpha", 1))
    row = store.list().iloc[0]
    assert (row["run"], row["model"], row["mean_ms"]) == (run.id, "alpha", pytest.approx(run.latency.mean_ms))
    summary = run.summary()
    added = ("median_ms", "timing", "shapes", "verdict", "min_cosine", "checks")
    assert [row[c] for c in added] == [summary[c] for c in added]
