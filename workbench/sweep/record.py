"""The sweep's own record: what was asked, and which points are done, failed (with the reason) or pending.

Layout, under the workspace (:func:`workbench.paths.workspace_dir`)::

    <workspace>/sweeps/<sweep id>/sweep.json     this record (schema below), rewritten atomically after every point
    <workspace>/sweeps/<sweep id>/report.html    the sweep report (Pareto front, best points, trtexec commands)
    <workspace>/runs/<run id>/                   each done point's run (``run.json``: ``sweep_id``, ``sweep_point``)

``sweep.json`` (schema 1)::

    {"schema": 1, "id", "created", "updated", "status": "running" | "finished" | "cancelled" | "interrupted",
     "model": {"path", "name", "sha256"},
     "request": {"backend", "trials", "calibration", "random_calibration", "eval", "base": BuildConfig.to_dict(),
                 "precisions", "batches", "workspaces", "opt_levels"},
     "executor": {"name", "workers", "why", ...},
     "points": [{"index", "key", "label", "batch", "config", "state": "pending" | "done" | "failed",
                 "run": run id | null, "reason": str | null, "seconds": float | null, "worker": str | null}]}

Only the process that runs the sweep writes the record (workers hand their results back to it), and every write
replaces the whole file through :func:`workbench.paths.atomic_write`: a kill at any moment leaves the previous
complete record. Each run carries its sweep's id and its point's key, so a run that reached the store just before a
kill (before the record said so) is found there on resume and not made again.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WorkbenchError
from ..paths import atomic_write, workspace_dir
from .plan import SweepPoint

SCHEMA_VERSION = 1
SWEEPS_DIR = "sweeps"
RECORD_NAME = "sweep.json"
STATES = ("pending", "done", "failed")


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

    @classmethod
    def create(
        cls, points: list[SweepPoint], *, model: dict, request: dict, workspace=None, sweep_id: str | None = None
    ) -> SweepRecord:
        sweep_id = sweep_id or new_sweep_id()
        rows = [
            {**p.to_dict(), "state": "pending", "run": None, "reason": None, "seconds": None, "worker": None}
            for p in points
        ]
        record = cls(id=sweep_id, directory=sweeps_dir(workspace) / sweep_id, model=model, request=request, points=rows)
        record.save()
        return record

    @classmethod
    def load(cls, sweep_id: str, workspace=None) -> SweepRecord:
        folder = sweeps_dir(workspace) / str(sweep_id)
        path = folder / RECORD_NAME
        if not path.is_file():
            known = sorted(p.name for p in sweeps_dir(workspace).glob("sweep-*") if (p / RECORD_NAME).is_file())
            hint = f" Sweeps here: {', '.join(known[-3:])}." if known else ""
            raise WorkbenchError(
                f"No sweep '{sweep_id}' in {sweeps_dir(workspace)}: give the id that 'workbench sweep' printed.{hint}"
            )
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise WorkbenchError(f"The sweep record '{path}' is damaged ({e.msg}): start the sweep again.") from None
        if d.get("schema", 0) > SCHEMA_VERSION:
            raise WorkbenchError(f"'{path}' was written by a newer workbench (schema {d['schema']}): upgrade.")
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
        )

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "id": self.id,
            "created": self.created,
            "updated": self.updated,
            "status": self.status,
            "model": self.model,
            "request": self.request,
            "executor": self.executor,
            "points": self.points,
        }

    def save(self) -> Path:
        self.updated = _now()
        return atomic_write(self.directory / RECORD_NAME, json.dumps(self.to_json(), indent=1))

    # ---- points --------------------------------------------------------------------------------------------

    def sweep_points(self) -> list[SweepPoint]:
        return [SweepPoint.from_dict(p) for p in self.points]

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
            f"of {len(self.points)} ({self.status})"
        )


def list_sweeps(workspace=None) -> list[SweepRecord]:
    """Every sweep in the workspace, newest first."""
    folder = sweeps_dir(workspace)
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.iterdir(), reverse=True):
        if (p / RECORD_NAME).is_file():
            try:
                found.append(SweepRecord.load(p.name, workspace))
            except WorkbenchError:
                continue
    return found
