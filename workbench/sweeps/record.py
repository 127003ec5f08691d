"""The sweep's own record: what was asked, and which points are done, failed (with the reason) or pending.

Layout, under the workspace (:func:`workbench.paths.workspace_dir`)::

    <workspace>/sweeps/<sweep id>/sweep.json     this record (schema below), rewritten atomically after every point
    <workspace>/sweeps/<sweep id>/report.html    the sweep report (Pareto front, best points, trtexec commands)
    <workspace>/runs/<run id>/                   each done point's run (``run.json``: ``sweep_id``, ``sweep_point``)

``sweep.json`` (schema 1)::

    {"schema": 1, "id", "created", "updated", "status": "running" | "finished" | "cancelled" | "interrupted",
     "owner": {"host", "pid", "started", "boot"} (the process that runs it: see below),
     "model": {"path", "name", "sha256"},
     "request": {"backend", "trials", "calibration", "random_calibration", "eval", "base": BuildConfig.to_dict(),
                 "precisions", "batches", "workspaces", "opt_levels"},
     "executor": {"name", "workers", "why", ...},
     "points": [{"index", "key", "label", "batch", "config", "state": "pending" | "done" | "failed",
                 "run": run id | null, "reason": str | null, "seconds": float | null, "worker": str | null}]}

Only the process that runs the sweep writes the record (workers hand their results back to it), and every write
replaces the whole file through :func:`workbench.paths.atomic_write`: a kill at any moment leaves the previous
complete record. A sweep id (``--resume``, :meth:`SweepRecord.load`) is a plain name inside ``sweeps/``
(:func:`workbench.paths.plain_id`: no path, no link out); the record is read as a file from the user
(:func:`workbench.paths.read_user_json`) and every field is checked before use (:func:`check_record`), so a damaged
or tampered record is one line naming the file and the field, and :func:`list_sweeps` skips it with that note.
A record left "running" by a process that is gone (SIGKILL, the OOM killer, a power cut: nothing could write
"interrupted") is read as interrupted, "process gone": the owner's pid, start time and boot id
(:func:`workbench.processes.process_identity`) no longer name a live process on this host.
Each run carries its sweep's id and its point's key, so a run that reached the store just before a
kill (before the record said so) is found there on resume and not made again.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BuildConfig
from ..errors import WorkbenchError, excerpt
from ..paths import PLAIN_ID, atomic_write, plain_id, read_user_json, workspace_dir
from ..processes import process_gone
from .plan import SweepPoint

SCHEMA_VERSION = 1
SWEEPS_DIR = "sweeps"
RECORD_NAME = "sweep.json"
STATES = ("pending", "done", "failed")
#: The largest sweep record read (a 10,000-point sweep writes about 10 MB).
MAX_RECORD_BYTES = 64 << 20
_ID_FIX = "give the id that 'workbench sweep' printed ('workbench sweep --list' shows them)"


def new_sweep_id() -> str:
    return "sweep-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def sweeps_dir(workspace=None) -> Path:
    return Path(workspace or workspace_dir()) / SWEEPS_DIR


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class SweepRecord:
    """The record of one sweep (mutable: the coordinating process updates it point by point and saves it)."""

    id: str
    directory: Path
    model: dict
    request: dict
    points: list[dict]
    executor: dict = field(default_factory=dict)
    status: str = "running"
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    owner: dict = field(default_factory=dict)
    #: Read "running" but its owner is gone: shown interrupted (the file is left as it was).
    owner_gone: bool = False

    @classmethod
    def create(
        cls, points: list[SweepPoint], *, model: dict, request: dict, workspace=None, sweep_id: str | None = None
    ) -> SweepRecord:
        sweep_id = sweep_id or new_sweep_id()
        plain_id(sweep_id, "sweep id", sweeps_dir(workspace), fix="leave the id out: the sweep makes one")
        rows = [
            {**p.to_dict(), "state": "pending", "run": None, "reason": None, "seconds": None, "worker": None}
            for p in points
        ]
        record = cls(id=sweep_id, directory=sweeps_dir(workspace) / sweep_id, model=model, request=request, points=rows)
        record.save()
        return record

    @classmethod
    def load(cls, sweep_id: str, workspace=None) -> SweepRecord:
        """The record of sweep ``sweep_id`` (a plain id inside the workspace's ``sweeps/``), every field checked."""
        folder = plain_id(sweep_id, "sweep id", sweeps_dir(workspace), fix=_ID_FIX)
        path = folder / RECORD_NAME
        if not folder.is_dir() or not path.exists():
            known = sorted(p.name for p in sweeps_dir(workspace).glob("sweep-*") if (p / RECORD_NAME).is_file())
            hint = f" Sweeps here: {', '.join(known[-3:])}." if known else ""
            raise WorkbenchError(
                f"No sweep {excerpt(sweep_id)} in {sweeps_dir(workspace)}: give the id that 'workbench sweep' "
                f"printed.{hint}"
            )
        fix = "start the sweep again (or restore the file)"
        d = read_user_json(path, "sweep record", limit=MAX_RECORD_BYTES, fix=fix)
        check_record(d, sweep_id, f"The sweep record '{path}'")
        return cls(
            id=d["id"],
            directory=folder,
            model=d["model"],
            request=d["request"],
            points=d["points"],
            executor=d.get("executor") or {},
            status=d.get("status", "interrupted"),
            created=d["created"],
            updated=d.get("updated", d["created"]),
            owner=d.get("owner") or {},
        ).with_owner_checked()

    def with_owner_checked(self) -> SweepRecord:
        """This record, read "interrupted" when it says "running" but the process that ran it is gone."""
        if self.status == "running" and process_gone(self.owner):
            self.status, self.owner_gone = "interrupted", True
        return self

    def to_json(self) -> dict:
        fields = ("id", "created", "updated", "status", "owner", "model", "request", "executor", "points")
        return {"schema": SCHEMA_VERSION, **{name: getattr(self, name) for name in fields}}

    def save(self) -> Path:
        self.updated = _now()
        return atomic_write(self.directory / RECORD_NAME, json.dumps(self.to_json(), indent=1))

    # ---- points --------------------------------------------------------------------------------------------

    def point(self, key: str) -> dict:
        return next(p for p in self.points if p["key"] == key)

    def mark(
        self,
        key: str,
        state: str,
        *,
        run: str | None = None,
        reason: str | None = None,
        seconds: float | None = None,
        worker: str | None = None,
    ) -> dict:
        if state not in STATES:
            raise ValueError(state)
        row = self.point(key)
        row.update(state=state, run=run, reason=reason, seconds=seconds, worker=worker)
        return row

    def in_state(self, *states: str) -> list[dict]:
        return [p for p in self.points if p["state"] in states]

    def counts(self) -> dict[str, int]:
        return {s: sum(p["state"] == s for p in self.points) for s in STATES}

    @property
    def report_path(self) -> Path:
        return self.directory / "report.html"

    def summary(self) -> str:
        c = self.counts()
        return (
            f"sweep {self.id}: {c['done']} done, {c['failed']} failed, {c['pending']} pending "
            f"of {len(self.points)} ({self.status}{': process gone' if self.owner_gone else ''})"
        )


def check_record(d, sweep_id: str, where: str) -> None:
    """Raise a one-line WorkbenchError naming ``where`` and the field unless ``d`` is a sweep record as
    :meth:`SweepRecord.save` writes it: its id the folder's, each point's settings a valid BuildConfig."""

    def bad(key: str, need: str):
        raise WorkbenchError(f"{where} has a bad '{key}': {need}; start the sweep again (or restore the file).")

    if not isinstance(d, dict):
        bad("(top level)", "a JSON object")
    if not isinstance(d.get("schema", 0), int) or d.get("schema", 0) > SCHEMA_VERSION:
        raise WorkbenchError(
            f"{where} was written by a newer workbench (schema {excerpt(d.get('schema'), 20)}): upgrade."
        )
    if d.get("id") != sweep_id:
        bad("id", f"the sweep's folder name {excerpt(sweep_id)}")
    for key in ("created", "updated", "status"):
        if not isinstance(d.get(key, ""), str) or (key == "created" and key not in d):
            bad(key, "text")
    model = d.get("model")
    if not isinstance(model, dict) or not all(isinstance(model.get(k), str) for k in ("path", "name", "sha256")):
        bad("model", "an object with the model's path, name and sha256 as text")
    request = d.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("backend"), str):
        bad("request", "an object naming the backend")
    for key, kind in (("calibration", str), ("eval", str), ("random_calibration", bool), ("trials", int)):
        value = request.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            bad(f"request.{key}", f"{kind.__name__} or null")
    if request.get("base") is not None:
        try:
            BuildConfig.from_dict(request["base"])
        except WorkbenchError as e:
            raise WorkbenchError(f"{where} has a bad 'request.base': {e}") from None
    if not isinstance(d.get("executor", {}), (dict, type(None))):
        bad("executor", "an object")
    if not isinstance(d.get("owner", {}), (dict, type(None))):
        bad("owner", "an object")
    points = d.get("points")
    if not isinstance(points, list):
        bad("points", "a list")
    seen = set()
    for i, row in enumerate(points):
        key = f"points[{i}]"
        if not isinstance(row, dict):
            bad(key, "an object")
        if not isinstance(row.get("key"), str) or row["key"] in seen:
            bad(f"{key}.key", "a text key no other point has")
        seen.add(row["key"])
        if not isinstance(row.get("index"), int) or not isinstance(row.get("label", ""), str):
            bad(f"{key}.index", "an integer (and the label text)")
        if row.get("batch") is not None and (not isinstance(row["batch"], int) or isinstance(row["batch"], bool)):
            bad(f"{key}.batch", "an integer or null")
        if row.get("state") not in STATES:
            bad(f"{key}.state", " or ".join(STATES))
        run = row.get("run")
        if run is not None and not (isinstance(run, str) and PLAIN_ID.fullmatch(run)):
            bad(f"{key}.run", "a run id or null")
        for entry, kinds in (("reason", str), ("worker", str), ("seconds", (int, float))):
            if row.get(entry) is not None and not isinstance(row[entry], kinds):
                bad(f"{key}.{entry}", "a value of its type or null")
        try:
            BuildConfig.from_dict(row.get("config"))
        except WorkbenchError as e:
            raise WorkbenchError(f"{where} has a bad '{key}.config': {e}") from None


def list_sweeps(workspace=None, notes: list | None = None) -> list[SweepRecord]:
    """Every sweep in the workspace, newest first. A record that cannot be read is skipped; with ``notes``, the
    one-line reason is appended there."""
    folder = sweeps_dir(workspace)
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.iterdir(), reverse=True):
        if (p / RECORD_NAME).exists() or p.is_symlink():
            try:
                found.append(SweepRecord.load(p.name, workspace))
            except WorkbenchError as e:
                if notes is not None:
                    notes.append(f"skipped {excerpt(p.name)}: {e}")
    return found
