"""The experiment store: every Run kept under a workspace folder, so history survives kernel restarts.

Layout::

    <workspace>/runs.sqlite         one row per run: key metrics, config, environment (WAL mode)
    <workspace>/runs/<run id>/      the run directory (Run.save: run.json, layers.csv, latency.csv, artifacts)

The run directory is the record; the SQLite row is its index (metrics to list, filter and sort without reading
every run). A run directory is written first (atomically), then its row is committed, so a crash in between leaves
at most an unlisted folder, never a row without its run. SQLite runs in WAL mode with a busy timeout, so several
notebooks or processes can add runs at the same time. Keep the workspace on a local disk: WAL needs shared memory,
which network file systems do not provide.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pandas as pd

from ..errors import WorkbenchError
from ..paths import workspace_dir
from .run import Run, load_run

DB_NAME = "runs.sqlite"
RUNS_DIR = "runs"
#: Seconds a writer waits for another writer's lock before giving up.
BUSY_TIMEOUT_S = 30.0
_SCHEMA_VERSION = 1

#: Columns of :meth:`Store.list` (besides these, ``config`` and ``environment`` are kept as JSON in SQLite).
LIST_COLUMNS = ("run", "created", "name", "model", "backend", "precision", "mean_ms", "p50_ms", "p99_ms",
                "throughput_qps", "layers", "weights_bytes", "activations_bytes", "label_accuracy",
                "max_abs_error", "workspace_bytes", "optimization_level", "device", "source", "model_sha256",
                "directory")

_CREATE = """
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    precision TEXT NOT NULL,
    mean_ms REAL, p50_ms REAL, p99_ms REAL, throughput_qps REAL,
    layers INTEGER,
    weights_bytes INTEGER, activations_bytes INTEGER,
    label_accuracy REAL, max_abs_error REAL,
    workspace_bytes INTEGER, optimization_level INTEGER,
    device TEXT, source TEXT, model_sha256 TEXT,
    directory TEXT NOT NULL,
    config TEXT NOT NULL,
    environment TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_model ON runs (model);
"""


def default_workspace() -> Path:
    """The workspace folder: ``$WORKBENCH_WORKSPACE`` or the default of :func:`workbench.paths.workspace_dir`."""
    return Path(workspace_dir())


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch ``db`` to WAL mode (a no-op once the file is in WAL mode).

    When several processes open a new workspace at the same moment, SQLite answers "database is locked" at once,
    without waiting on the busy timeout (waiting there could deadlock), so the switch is retried here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Store:
    """Runs saved under ``path`` (default: :func:`default_workspace`).

    Every method opens its own short-lived connection, so one Store may be used from several threads (the UI
    builds in a background thread) and several Stores on one folder may live in different processes.
    """

    def __init__(self, path=None):
        self.path = Path(path) if path is not None else default_workspace()
        try:
            (self.path / RUNS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WorkbenchError(f"Cannot create the workspace '{self.path}' ({e.strerror}): set WORKBENCH_WORKSPACE "
                                 "to a writable folder.") from None
        self.db_path = self.path / DB_NAME
        with closing(self._connect()) as db, db:
            db.executescript(_CREATE)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S)
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _use_wal(db)
        except sqlite3.DatabaseError as e:
            if "locked" in str(e):
                raise WorkbenchError(f"The run index '{self.db_path}' stayed locked by another process for "
                                     f"{BUSY_TIMEOUT_S:.0f} s: close the other notebook or workbench command using "
                                     "this workspace, then try again.") from None
            raise WorkbenchError(f"The run index '{self.db_path}' cannot be opened ({e}): move it aside; the run "
                                 "folders beside it are kept and Store.reindex() rebuilds the index.") from None
        db.row_factory = sqlite3.Row
        return db

    def run_dir(self, run_id: str) -> Path:
        return self.path / RUNS_DIR / run_id

    # ---- writing -------------------------------------------------------------------------------------------

    def add(self, run: Run) -> Run:
        """Save ``run`` (its directory under the workspace, then its index row) and return the saved Run.

        Adding a run that is already stored (same id) replaces it.
        """
        target = self.run_dir(run.id)
        saved = run if run.directory is not None and _same(run.directory, target) else run.save(target)
        self._index(saved)
        return saved

    def _index(self, run: Run) -> None:
        row = _row(run, str(Path(RUNS_DIR) / run.id))
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with closing(self._connect()) as db, db:
            db.execute(f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", tuple(row.values()))

    def delete(self, run_id: str) -> None:
        """Remove a run: its index row, then its directory."""
        run_id = self.resolve(run_id)
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM runs WHERE run = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def reindex(self) -> int:
        """Index run directories that have no row (e.g. copied in by hand); returns how many were added."""
        known = set(self.list()["run"])
        added = 0
        for directory in sorted((self.path / RUNS_DIR).iterdir()):
            if directory.name in known or not (directory / "run.json").is_file():
                continue
            run = load_run(directory)
            if run.id != directory.name:  # the folder name is the id: a renamed copy moves to its id
                if run.id in known or self.run_dir(run.id).exists():
                    continue  # a second copy of a run that is already there
                os.replace(directory, self.run_dir(run.id))
                run = load_run(self.run_dir(run.id))
            self._index(run)
            known.add(run.id)
            added += 1
        return added

    # ---- reading -------------------------------------------------------------------------------------------

    def list(self, model: str | None = None) -> pd.DataFrame:
        """Runs, newest first, one row each (:data:`LIST_COLUMNS`); ``model`` filters by model name or SHA-256."""
        query = f"SELECT {', '.join(LIST_COLUMNS)} FROM runs"
        params: tuple = ()
        if model:
            query += " WHERE model = ? OR model_sha256 = ?"
            params = (model, model)
        query += " ORDER BY created DESC, rowid DESC"  # runs of the same second: the last added first
        with closing(self._connect()) as db:
            rows = [tuple(r) for r in db.execute(query, params)]
        return pd.DataFrame(rows, columns=list(LIST_COLUMNS))

    def models(self) -> builtins.list[str]:  # "list" alone is the method above
        """Model names that have runs, alphabetically."""
        with closing(self._connect()) as db:
            return [r[0] for r in db.execute("SELECT DISTINCT model FROM runs ORDER BY model")]

    def resolve(self, run_id: str) -> str:
        """The full id of a stored run from its id or a unique prefix of it."""
        run_id = str(run_id).strip()
        with closing(self._connect()) as db:
            found = [r[0] for r in db.execute("SELECT run FROM runs WHERE run = ? OR run LIKE ? ESCAPE '\\' "
                                              "ORDER BY run LIMIT 3", (run_id, _like_prefix(run_id)))]
        if run_id in found:
            return run_id
        if not found:
            raise WorkbenchError(f"No run '{run_id}' in {self.path}: list them with `workbench history` "
                                 "(Python: Store.list(); the panel: its History tab).")
        if len(found) > 1:
            raise WorkbenchError(f"'{run_id}' matches several runs ({', '.join(found[:2])}, …): give more of the id.")
        return found[0]

    def get(self, run_id: str) -> Run:
        """The stored Run (loaded from its run directory) by id or unique id prefix."""
        run_id = self.resolve(run_id)
        directory = self.run_dir(run_id)
        if not (directory / "run.json").is_file():
            raise WorkbenchError(f"Run '{run_id}' is indexed but its folder '{directory}' is gone: "
                                 f"delete it with Store.delete('{run_id}').")
        return load_run(directory)

    def __len__(self) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def __contains__(self, run_id) -> bool:
        with closing(self._connect()) as db:
            return db.execute("SELECT 1 FROM runs WHERE run = ?", (str(run_id),)).fetchone() is not None


def _same(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _row(run: Run, directory: str) -> dict:
    summary = run.summary()
    env = run.environment
    return {
        "run": run.id,
        "created": run.created,
        "name": run.name,
        "model": summary["model"],
        "backend": run.backend,
        "precision": run.precision,
        **{k: summary[k] for k in ("mean_ms", "p50_ms", "p99_ms", "throughput_qps", "layers", "weights_bytes",
                                   "activations_bytes", "label_accuracy", "max_abs_error")},
        "workspace_bytes": run.config.workspace_bytes,
        "optimization_level": run.config.optimization_level,
        "device": env.get("gpu") or env.get("cpu") or "",
        "source": run.source,
        "model_sha256": run.model.get("sha256", ""),
        "directory": directory,
        "config": json.dumps(run.config.to_dict()),
        "environment": json.dumps(env, default=str),
    }
