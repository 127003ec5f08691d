"""The experiment store: every Run kept under a workspace folder, so history survives kernel restarts.

Layout::

    <workspace>/runs.sqlite         one row per run: key metrics, config, environment (WAL mode)
    <workspace>/runs/<run id>/      the run directory (Run.save: run.json, layers.csv, latency.csv, artifacts)

The run directory is the record; the SQLite row is its index (metrics to list, filter and sort without reading
every run). A run directory is written first (atomically, with its report), then its row is committed, so a crash
in between leaves at most a complete unlisted folder, which the next open lists; never a row without its run. SQLite runs in WAL mode with a busy timeout, so several
notebooks or processes can add runs at the same time. Keep the workspace on a local disk: WAL needs shared memory,
which network file systems do not provide.

Run ids are generated (:func:`workbench.results.run.new_run_id`), never trusted: a run that comes from elsewhere
(a folder someone sent, a run with an id that is not a plain generated one) gets a new id on :meth:`Store.add`, and
every id used as a folder name is checked to be a plain id inside ``runs/``. A run's folder is complete (report
included, through ``finish``) before its row is committed. A damaged, foreign or empty index is rebuilt from the run
folders with :meth:`Store.rebuild` (``workbench reindex --rebuild``); temp folders a killed writer left are removed
when the store is opened. A rebuild holds ``runs.sqlite.lock`` exclusively (``flock``) from moving the old index aside
to the last row of the new one, and every other use of the index holds it shared, so no reader or second rebuild sees
the index half-made; each old index is kept under its own name (``runs.sqlite.before-rebuild-<time>-<random>`` when
it was healthy, ``runs.sqlite.damaged-<time>-<random>`` when not). The index, its ``-wal``/``-shm`` files and the lock
are never followed through a symbolic link (a link is refused in one line).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import math
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import pandas as pd

from ..errors import WorkbenchError
from ..paths import remove_stale_temps, workspace_dir
from .run import Run, is_run_id, load_run, new_run_id

log = logging.getLogger(__name__)

DB_NAME = "runs.sqlite"
LOCK_NAME = "runs.sqlite.lock"
RUNS_DIR = "runs"
#: Seconds a writer waits for another writer's lock before giving up.
BUSY_TIMEOUT_S = 30.0
_SCHEMA_VERSION = 1


def _summary(key: str):
    return lambda r, s, d: s[key]


#: The index's one column table: (name, SQL type, its value of ``r`` a Run, ``s`` its ``summary()`` and ``d`` its
#: folder in the workspace, added later). :meth:`Store.list` shows every column but the two JSON ones; a column added
#: after the index's first release is added to an older index when it is opened (its rows read NULL there), and only
#: the first release's columns mark a file as a workbench index.
_COLUMNS = (
    ("run", "TEXT PRIMARY KEY", lambda r, s, d: r.id, False),
    ("created", "TEXT NOT NULL", lambda r, s, d: r.created, False),
    ("name", "TEXT NOT NULL", lambda r, s, d: r.name, False),
    ("model", "TEXT NOT NULL", _summary("model"), False),
    ("backend", "TEXT NOT NULL", lambda r, s, d: r.backend, False),
    ("precision", "TEXT NOT NULL", lambda r, s, d: r.precision, False),
    ("mean_ms", "REAL", _summary("mean_ms"), False),
    ("p50_ms", "REAL", _summary("p50_ms"), False),
    ("p99_ms", "REAL", _summary("p99_ms"), False),
    ("throughput_qps", "REAL", _summary("throughput_qps"), False),
    ("layers", "INTEGER", _summary("layers"), False),
    ("weights_bytes", "INTEGER", _summary("weights_bytes"), False),
    ("activations_bytes", "INTEGER", _summary("activations_bytes"), False),
    ("label_accuracy", "REAL", _summary("label_accuracy"), False),
    ("max_abs_error", "REAL", _summary("max_abs_error"), False),
    ("workspace_bytes", "INTEGER", lambda r, s, d: r.config.workspace_bytes, False),
    ("optimization_level", "INTEGER", lambda r, s, d: r.config.optimization_level, False),
    ("device", "TEXT", lambda r, s, d: r.environment.get("gpu") or r.environment.get("cpu") or "", False),
    ("source", "TEXT", lambda r, s, d: r.source, False),
    ("model_sha256", "TEXT", lambda r, s, d: r.model.get("sha256", ""), False),
    ("directory", "TEXT NOT NULL", lambda r, s, d: d, False),
    ("median_ms", "REAL", _summary("median_ms"), True),
    ("timing", "TEXT", _summary("timing"), True),
    ("shapes", "TEXT", _summary("shapes"), True),
    ("verdict", "TEXT", _summary("verdict"), True),
    ("min_cosine", "REAL", _summary("min_cosine"), True),
    ("checks", "TEXT", _summary("checks"), True),
    ("config", "TEXT NOT NULL", lambda r, s, d: json.dumps(r.config.to_dict()), False),
    ("environment", "TEXT NOT NULL", lambda r, s, d: json.dumps(r.environment, default=str), False),
)
#: Columns of :meth:`Store.list` (``config`` and ``environment`` stay JSON in SQLite).
LIST_COLUMNS = tuple(name for name, *_ in _COLUMNS if name not in ("config", "environment"))
_FIRST_COLUMNS = frozenset(name for name, _, _, added in _COLUMNS if not added)
_CREATE = (
    "CREATE TABLE IF NOT EXISTS runs ("
    + ", ".join(f"{name} {kind}" for name, kind, *_ in _COLUMNS)
    + ");\nCREATE INDEX IF NOT EXISTS runs_model ON runs (model);\n"
)


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
            raise WorkbenchError(
                f"Cannot create the workspace '{self.path}' ({e.strerror}): set WORKBENCH_WORKSPACE "
                "to a writable folder."
            ) from None
        self.db_path = self.path / DB_NAME
        #: Where :meth:`rebuild` kept the index it replaced (None: there was none, or this store was not rebuilt).
        self.previous_index: Path | None = None
        remove_stale_temps(self.path / RUNS_DIR)
        with self._db(write=True) as db:
            existed = _table_columns(db)
            if existed and not _FIRST_COLUMNS <= existed:
                raise WorkbenchError(
                    f"'{self.db_path}' is not a workbench run index (its 'runs' table has other "
                    "columns): rebuild it from the run folders with `workbench reindex --rebuild` "
                    "(Python: Store.rebuild(path)); the old file is kept aside."
                )
            db.executescript(_CREATE)
            have = _table_columns(db)
            for name, kind, _, _ in _COLUMNS:
                if name not in have:  # an index written by an older workbench: its rows read NULL there
                    try:
                        db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as e:  # another process added it at the same moment
                        if "duplicate column" not in str(e):
                            raise
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        # complete run folders the index lacks (a new or 0-byte index, a process killed between the folder's rename
        # and its row) are adopted: a folder appears only when complete, so listing it is always right
        known = set(self.list()["run"])
        if any(folder.name not in known for folder in _run_folders(self.path / RUNS_DIR)):
            self.reindex(warn=False)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @classmethod
    def rebuild(cls, path=None) -> Store:
        """Keep the old index aside and rebuild it from the run folders.

        A healthy index (SQLite's quick check passes, the workbench's columns are there) is copied whole to
        ``runs.sqlite.before-rebuild-<time>``, and each run keeps the checks its row named; a damaged or foreign
        one is moved to ``runs.sqlite.damaged-<time>``. The run folders are the record; nothing in them is changed
        except that a folder whose name is not its plain id is renamed to one. Returns the rebuilt store
        (:attr:`previous_index` names the copy kept). An index or lock that is a symbolic link is refused.
        """
        root = Path(path) if path is not None else default_workspace()
        db_path = root / DB_NAME
        kept: dict[str, str] = {}
        aside = None
        with _index_lock(root, exclusive=True):
            _refuse_links(root)
            if db_path.exists():
                stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # two in one second differ
                kept = _readable_checks(db_path)
                healthy = kept is not None
                aside = db_path.with_name(f"{DB_NAME}.{'before-rebuild' if healthy else 'damaged'}-{stamp}")
                try:
                    if healthy:  # a consistent copy, the write-ahead log's last commits included
                        with closing(sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S)) as old:
                            with closing(sqlite3.connect(aside)) as copy:
                                old.backup(copy)
                        db_path.unlink()
                    else:
                        os.replace(db_path, aside)
                    for suffix in ("-wal", "-shm"):
                        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
                except (OSError, sqlite3.Error) as e:
                    raise WorkbenchError(
                        f"Cannot move the index '{db_path}' aside ({getattr(e, 'strerror', None) or e}): make the "
                        "workspace writable, then run `workbench reindex --rebuild` again."
                    ) from None
            store = cls(root)
            store.reindex()
            store._keep_checks(kept or {})
        store.previous_index = aside
        return store

    def _keep_checks(self, kept: dict[str, str]) -> None:
        """Give each run the checks its old index row named (those a room above added when the run was recorded,
        the roofline's, are not in its folder) besides those its folder gives now."""
        with self._db(write=True) as db:
            for run_id, now in list(db.execute("SELECT run, checks FROM runs")):
                old = kept.get(run_id)
                if old:
                    names = [c for c in (old + ", " + (now or "")).split(", ") if c]
                    db.execute("UPDATE runs SET checks = ? WHERE run = ?", (", ".join(dict.fromkeys(names)), run_id))

    @contextlib.contextmanager
    def _db(self, *, write: bool = False):
        """A connection (committed on success when ``write``); SQLite's errors become one line with the fix."""
        try:
            with _index_lock(self.path, exclusive=False), closing(self._connect()) as db:
                if write:
                    with db:
                        yield db
                else:
                    yield db
        except sqlite3.Error as e:
            raise self._db_error(e) from None

    def _db_error(self, e: Exception) -> WorkbenchError:
        text = str(e)
        if "locked" in text:
            return WorkbenchError(
                f"The run index '{self.db_path}' stayed locked by another process for "
                f"{BUSY_TIMEOUT_S:.0f} s: close the other notebook or workbench command using "
                "this workspace, then try again."
            )
        if "full" in text:
            return WorkbenchError(
                f"The disk holding '{self.path}' is full (SQLite: {text}): free space there or "
                "set WORKBENCH_WORKSPACE to a folder on another disk."
            )
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return WorkbenchError(
                f"The run index '{self.db_path}' cannot be written ({text}): make it and its folder "
                "writable (chmod u+w), or set WORKBENCH_WORKSPACE to a writable folder."
            )
        return WorkbenchError(
            f"The run index '{self.db_path}' is damaged ({text}): rebuild it from the run folders "
            "with `workbench reindex --rebuild` (Python: Store.rebuild(path))."
        )

    def _connect(self) -> sqlite3.Connection:
        _refuse_links(self.path)
        db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _use_wal(db)
        except BaseException:
            db.close()
            raise
        db.row_factory = sqlite3.Row
        return db

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run: only a plain generated id is a folder name here (never a path from a file)."""
        if not is_run_id(run_id):
            raise WorkbenchError(
                f"{str(run_id)[:80]!r} is not a run id (like 20260101-120000-1a2b3c): refused as a "
                f"folder name in {self.path}; list the runs with `workbench history`."
            )
        return self.path / RUNS_DIR / run_id

    # ---- writing -------------------------------------------------------------------------------------------

    def add(self, run: Run, *, finish=None) -> Run:
        """Save ``run`` (its directory under the workspace, then its index row) and return the saved Run.

        Adding a run that is already stored (same id, from its own folder here) replaces it. A run from anywhere
        else gets a new id: ids are generated here, never taken from a file. ``finish(run)`` adds files (the report)
        before the run is indexed; if anything fails, a new run leaves neither its folder nor a row.
        """
        own = run.directory is not None and is_run_id(run.id) and _same(run.directory, self.path / RUNS_DIR / run.id)
        if not own and (run.directory is not None or not is_run_id(run.id)):
            run = run.replace(id=new_run_id())
        target = self.run_dir(run.id)
        row = _row(run, str(Path(RUNS_DIR) / run.id))  # before writing: a value SQLite cannot hold fails here
        created = not target.exists()
        try:
            if own:
                saved = run
                if finish is not None:
                    finish(saved)
            else:
                saved = run.save(target, finish=finish)
            self._index(row)
        except BaseException:
            if created:
                shutil.rmtree(target, ignore_errors=True)
            raise
        return saved

    def _index(self, row: dict) -> None:
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._db(write=True) as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", tuple(row.values()))

    def delete(self, run_id: str) -> None:
        """Remove a run: its index row, then its directory."""
        run_id = self.resolve(run_id)
        directory = self.run_dir(run_id)
        with self._db(write=True) as db:
            db.execute("DELETE FROM runs WHERE run = ?", (run_id,))
        if directory.is_dir() and not directory.is_symlink():
            shutil.rmtree(directory, ignore_errors=True)

    def reindex(self, *, warn: bool = True) -> int:
        """Index run directories that have no row (e.g. copied in by hand); returns how many were added.

        A folder whose name is not a plain run id moves to its run's id when that is a plain, unused one, else to
        a new id. A folder that is not a readable run is skipped with a warning (it stays where it is).
        """
        known = set(self.list()["run"])
        added = 0
        for directory in _run_folders(self.path / RUNS_DIR):
            if directory.name in known:
                continue
            try:
                run = load_run(directory)
            except WorkbenchError as e:
                if warn:
                    log.warning(f"Skipped a run folder: {e}")
                continue
            if directory.name != run.id or not is_run_id(run.id):  # the folder name is the id
                if is_run_id(directory.name):
                    run_id = directory.name
                elif is_run_id(run.id) and run.id not in known and not (self.path / RUNS_DIR / run.id).exists():
                    run_id = run.id
                else:
                    run_id = new_run_id()
                try:
                    if run_id == run.id:  # only the folder name differs
                        os.replace(directory, self.run_dir(run_id))
                        run = run.replace(directory=self.run_dir(run_id))
                    else:  # the id in run.json is rewritten: a new plain id
                        run = run.replace(id=run_id).save(self.run_dir(run_id))
                        if not _same(directory, self.run_dir(run_id)):
                            shutil.rmtree(directory, ignore_errors=True)
                except (OSError, WorkbenchError) as e:  # another process adopting the same folder, a full disk
                    if warn:
                        log.warning(f"Skipped a run folder: '{directory.name}' could not be renamed ({e})")
                    continue
            self._index(_row(run, str(Path(RUNS_DIR) / run.id)))
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
        with self._db() as db:
            rows = [tuple(r) for r in db.execute(query, params)]
        return pd.DataFrame(rows, columns=list(LIST_COLUMNS))

    def models(self) -> builtins.list[str]:  # "list" alone is the method above
        """Model names that have runs, alphabetically."""
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT model FROM runs ORDER BY model")]

    def resolve(self, run_id: str) -> str:
        """The full id of a stored run from its id or a unique prefix of it."""
        run_id = str(run_id).strip()
        if not run_id:  # an empty prefix would match every run
            raise WorkbenchError("No run id given: pass one from `workbench history` (or a unique prefix of it).")
        with self._db() as db:
            found = [
                r[0]
                for r in db.execute(
                    "SELECT run FROM runs WHERE run = ? OR run LIKE ? ESCAPE '\\' ORDER BY run LIMIT 3",
                    (run_id, _like_prefix(run_id)),
                )
            ]
        if run_id in found:
            return run_id
        if not found:
            raise WorkbenchError(
                f"No run '{run_id}' in {self.path}: list them with `workbench history` "
                "(Python: Store.list(); the panel: its History tab)."
            )
        if len(found) > 1:
            raise WorkbenchError(
                f"'{run_id}' matches several runs ({', '.join(found[:2])}{', …' if len(found) > 2 else ''}): an id "
                "starts with the second the run was made, so give more of it (the random part after the time)."
            )
        return found[0]

    def get(self, run_id: str) -> Run:
        """The stored Run (loaded from its run directory) by id or unique id prefix."""
        run_id = self.resolve(run_id)
        directory = self.run_dir(run_id)
        if directory.is_symlink() or not (directory / "run.json").is_file():
            raise WorkbenchError(
                f"Run '{run_id}' is indexed but its folder '{directory}' is gone: "
                f"delete it with Store.delete('{run_id}')."
            )
        return load_run(directory)

    def __len__(self) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def __contains__(self, run_id) -> bool:
        with self._db() as db:
            return db.execute("SELECT 1 FROM runs WHERE run = ?", (str(run_id),)).fetchone() is not None


_rebuilding = threading.local()  # set while this thread holds the exclusive lock: its own uses need no other


@contextlib.contextmanager
def _index_lock(root: Path, *, exclusive: bool):
    """Hold ``runs.sqlite.lock`` (shared, or exclusive for a rebuild), waiting up to :data:`BUSY_TIMEOUT_S`.
    Where the lock file cannot be made (a read-only workspace, no ``fcntl``), nothing is locked: nothing can rebuild
    there either."""
    try:
        import fcntl

        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(Path(root) / LOCK_NAME, flags, 0o644)
    except (ImportError, OSError) as e:
        if isinstance(e, OSError) and (e.errno == errno.ELOOP or os.path.islink(Path(root) / LOCK_NAME)):
            raise _link_error(Path(root) / LOCK_NAME) from None
        fd = None
    if fd is None or getattr(_rebuilding, "active", False):
        if fd is not None:
            os.close(fd)
        yield
        return
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WorkbenchError(
                        f"The run index in '{root}' is being rebuilt or used by another process for more than "
                        f"{BUSY_TIMEOUT_S:.0f} s: wait for it to finish, then try again."
                    ) from None
                time.sleep(0.05)
        _rebuilding.active = exclusive
        try:
            yield
        finally:
            _rebuilding.active = False
    finally:
        os.close(fd)


def _link_error(path: Path) -> WorkbenchError:
    return WorkbenchError(
        f"'{path}' is a symbolic link: refused (the run history is never written through a link, which could "
        "point anywhere); remove the link, or set WORKBENCH_WORKSPACE to the folder that holds the files."
    )


def _refuse_links(root: Path) -> None:
    """The index and its SQLite companions must be files of the workspace itself, never links (followed, a link
    would make SQLite write a foreign database or create a file elsewhere)."""
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", LOCK_NAME):
        if os.path.islink(root / name):
            raise _link_error(root / name)


def _readable_checks(db_path: Path) -> dict[str, str] | None:
    """run -> checks of a healthy index (SQLite's quick check passes, the workbench's columns are there), else
    None: a damaged or foreign file."""
    try:
        with closing(sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S)) as db:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                return None
            if not _FIRST_COLUMNS <= _table_columns(db):
                return None
            return {run: checks or "" for run, checks in db.execute("SELECT run, checks FROM runs")}
    except sqlite3.Error:
        return None


def _same(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _run_folders(runs: Path):
    """Run folders under ``runs/``: real folders (no symbolic links, no hidden or temp ones) holding a run.json."""
    try:
        entries = sorted(runs.iterdir())
    except OSError:
        return
    for entry in entries:
        if (
            not entry.name.startswith(".")
            and entry.is_dir()
            and not entry.is_symlink()
            and (entry / "run.json").is_file()
        ):
            yield entry


def _table_columns(db: sqlite3.Connection) -> set[str]:
    return {r[1] for r in db.execute("PRAGMA table_info(runs)")}


def _sqlite_value(value):
    """A value SQLite can hold: integers beyond 64 bits and non-finite floats become NULL (shown as unknown)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 63):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _row(run: Run, directory: str) -> dict:
    summary = run.summary()
    return {name: _sqlite_value(value(run, summary, directory)) for name, _, value, _ in _COLUMNS}
