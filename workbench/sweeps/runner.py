"""``sweep()``: plan the points, build the distinct precision variants once, run the points on an executor, keep
each as a Run in the store and the sweep's record up to date; and :class:`Sweep`, what a sweep gives back."""

from __future__ import annotations

import shutil
import logging
import tempfile
from pathlib import Path

from ..config import GRAPH_PRECISIONS, BuildConfig, parse_shapes
from ..errors import Cancelled, WorkbenchError
from ..processes import process_identity
from ..progress import Progress, ensure
from ..results.store import Store
from .executors import make_executor
from .plan import plan_points
from .point import failure_reason, unpack, variant_options
from .record import SweepRecord

log = logging.getLogger(__name__)

PHASE = "Sweep"


def sweep(
    model=None,
    *,
    precisions="fp32",
    batches=None,
    workspaces=None,
    opt_levels=None,
    shapes=None,
    calibration=None,
    random_calibration: bool = False,
    eval_data=None,
    backend: str = "auto",
    trials: int | None = None,
    config: BuildConfig | None = None,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    shared_paths: bool = False,
    resume: str | None = None,
    store=None,
    progress: Progress | None = None,
    on_point=None,
    report: bool = True,
) -> Sweep:
    """Run every combination of the given settings on ``model`` and return the :class:`Sweep`.

    ``precisions``, ``batches``, ``workspaces`` (``"1G,4G"``), ``opt_levels``: lists or comma-separated text.
    ``shapes`` (``"x:1x3x224x224"``) and ``config`` set what the grid does not (iterations, warm-up...).
    ``calibration`` (a path) feeds int8/fp8 (and fp16/bf16 AutoCast); ``eval_data`` (.npz, optional ``labels``)
    is what accuracy is measured on. ``executor``: ``local`` or ``ray`` (``address``: an existing Ray cluster).
    ``resume``: a sweep id; its pending and failed points run again, done ones are kept. ``on_point(sweep, row)``
    is called after each point (the panel fills in live); ``progress.cancel()`` stops after the running points.
    ``report=False`` leaves the HTML report to :meth:`Sweep.write_report` (it needs plotly).
    """
    progress = ensure(progress)
    store = store if isinstance(store, Store) else Store(store)
    if resume:
        record = SweepRecord.load(resume, store.path)
        request = record.request
        model_path = Path(record.model["path"])
    else:
        if model is None:
            raise WorkbenchError("A sweep needs a model: pass an ONNX file (or resume=SWEEP_ID).")
        from ..model.onnx_model import load_model

        loaded = load_model(model)
        if loaded.path is None or not Path(loaded.path).is_file():
            raise WorkbenchError(
                "A sweep needs the model as a file (its workers load it): save it first with "
                "model.save('model.onnx') and pass the path."
            )
        base = config or BuildConfig()
        if trials is not None:
            base = base.replace(trials=trials)
        if shapes:
            base = base.replace(shapes=parse_shapes(shapes) if isinstance(shapes, str) else tuple(shapes))
        points = plan_points(
            loaded,
            precisions=precisions,
            batches=batches,
            workspaces=workspaces,
            opt_levels=opt_levels,
            base=base,
            backend=backend,
        )
        request = {
            "backend": backend,
            "trials": base.trials,
            "random_calibration": bool(random_calibration),
            "calibration": _absolute(calibration),
            "eval": _absolute(eval_data),
            "base": base.to_dict(),
            "precisions": _text(precisions),
            "batches": _text(batches),
            "workspaces": _text(workspaces),
            "opt_levels": _text(opt_levels),
        }
        record = SweepRecord.create(
            points,
            model={"path": str(Path(loaded.path).resolve()), "name": loaded.name, "sha256": loaded.sha256},
            request=request,
            workspace=store.path,
        )
        model_path = Path(loaded.path)
    result = Sweep(record, store)
    model = _check_model(model_path, record)
    _recover(record, store)
    todo = record.in_state("pending", "failed")
    runner = make_executor(executor, address=address, workers=workers, shared=shared_paths)
    record.status, record.owner, record.owner_gone = "running", process_identity(), False
    record.executor = runner.describe()
    record.save()
    total = len(record.points)
    log.info(f"{record.id}: {len(todo)} of {total} points to run; executor {runner.name}: {runner.why}")
    progress.step(PHASE, total - len(todo), total)
    try:
        variants = _prebuild(model, request, record, todo, store, progress, on_point, result)
        todo = record.in_state("pending", "failed")
        jobs = [_job(record, row, model_path, request) for row in todo]

        finished = [total - len(todo)]

        def on_result(job, outcome):
            row = _finish(record, store, job, outcome)
            record.save()
            finished[0] += 1
            progress.step(PHASE, finished[0], total)
            if on_point is not None:
                on_point(result, row)

        if runner.name == "ray":
            files = {"model": model_path, "calibration": request["calibration"], "eval": request["eval"]}
            runner.run(jobs, on_result, progress, files={**files, "variants": variants})
        else:
            runner.run(jobs, on_result, progress)
        record.executor = runner.describe()
        record.status = "cancelled" if progress.cancelled and record.in_state("pending") else "finished"
    except BaseException:
        record.status = "interrupted"
        raise
    finally:
        record.save()
        if report:
            result.write_report()
    return result


class Sweep:
    """A sweep: its record (points and their states) and the runs it made, with the Pareto front and a report."""

    def __init__(self, record: SweepRecord, store: Store):
        self.record = record
        self.store = store

    @property
    def id(self) -> str:
        return self.record.id

    def runs(self) -> list:
        """The done points' Runs, in plan order."""
        return [self.store.get(p["run"]) for p in self.record.points if p["state"] == "done" and p["run"]]

    def table(self):
        """One row per point (state, reason, latency, error, memory, on the front...); see
        :func:`workbench.analysis.frontier.sweep_table`."""
        from ..analysis.frontier import sweep_table

        return sweep_table(self.record.points, self.runs())

    def best(self) -> dict:
        from ..analysis.frontier import best_points

        return best_points(self.table())

    def write_report(self, path=None) -> Path:
        """Write the sweep report (Pareto front, best point per objective, every point's trtexec command)."""
        from ..views.sweep import write_sweep_report

        return write_sweep_report(self.record.to_json(), self.runs(), path or self.record.report_path)

    @property
    def report_path(self) -> Path:
        return self.record.report_path

    def __repr__(self) -> str:
        return f"<Sweep {self.record.summary()}>"

    def _repr_html_(self) -> str:
        from ..views.sweep import sweep_table_html

        return sweep_table_html(self.record.to_json(), self.table())


def load_sweep(sweep_id: str, store=None) -> Sweep:
    """A sweep from its record in the workspace (to read, report or resume it)."""
    store = store if isinstance(store, Store) else Store(store)
    return Sweep(SweepRecord.load(sweep_id, store.path), store)


# ---- steps -------------------------------------------------------------------------------------------------------


def _absolute(path) -> str | None:
    if path is None:
        return None
    if not isinstance(path, (str, Path)):
        raise WorkbenchError(
            "A sweep takes calibration and evaluation data as files (.npz/.npy or an image "
            "folder), so that its workers can read them: save the arrays with numpy.savez."
        )
    p = Path(path).expanduser()
    if not p.exists():
        raise WorkbenchError(f"'{path}' does not exist: give the calibration / evaluation file's path.")
    return str(p.resolve())


def _text(value) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else ",".join(str(v) for v in value)


def _check_model(path: Path, record: SweepRecord):
    from ..model.onnx_model import load_model

    if not path.is_file():
        raise WorkbenchError(f"The sweep's model '{path}' is gone: put it back there to resume {record.id}.")
    model = load_model(path)
    if model.sha256 != record.model["sha256"]:
        raise WorkbenchError(
            f"The model at '{path}' changed since sweep {record.id} started (SHA-256 differs): "
            "restore it, or start a new sweep."
        )
    return model


def _recover(record: SweepRecord, store: Store) -> None:
    """Points whose run reached the store before the sweep was stopped (the record not yet saying so) are done:
    runs created since the sweep started that carry its id and the point's key (read from their ``run.json``)."""
    import json

    pending = {row["key"] for row in record.in_state("pending", "failed")}
    if not pending:
        return
    runs = store.list()
    for run_id, created, directory in zip(runs["run"], runs["created"], runs["directory"]):
        if str(created) < record.created:
            continue
        try:
            meta = json.loads((store.path / directory / "run.json").read_text())
        except (OSError, ValueError):
            continue
        key = meta.get("sweep_point")
        if meta.get("sweep_id") == record.id and key in pending:
            record.mark(key, "done", run=run_id, reason=None, worker="recovered from the store")
            pending.discard(key)


def _prebuild(model, request, record, todo, store, progress, on_point, result) -> dict:
    """Build each distinct precision variant once, here, before the points run: workers then find it in the cache
    (local) or receive it (Ray). A variant that cannot be built fails its points with the reason."""
    from ..backends import choose_backend
    from ..precision.variant import make_variant

    precisions = sorted({row["config"]["precision"] for row in todo} & set(GRAPH_PRECISIONS))
    if not precisions:
        return {}
    try:
        chosen, _ = choose_backend(request["backend"])
        support = chosen.precision_support()
    except WorkbenchError:
        support = {}
    folders = {}
    for precision in precisions:
        progress.check()
        if not support.get(precision, (True, ""))[0]:
            continue  # the points fail where they run, with that machine's reason
        options = variant_options(precision, request)
        try:
            variant = make_variant(model, precision, progress=progress, **options)
        except Cancelled:
            raise
        except WorkbenchError as e:
            for row in todo:
                if row["config"]["precision"] == precision:
                    record.mark(row["key"], "failed", reason=f"{precision} variant: {failure_reason(e)}")
                    if on_point is not None:
                        on_point(result, row)
            record.save()
            continue
        folders[precision] = Path(variant.path).parent  # its cache entry: local workers find it there
    return folders


def _job(record: SweepRecord, row: dict, model_path: Path, request: dict) -> dict:
    return {
        "model": str(model_path),
        "calibration": request.get("calibration"),
        "eval": request.get("eval"),
        "random_calibration": request.get("random_calibration"),
        "backend": request["backend"],
        "point": {k: row[k] for k in ("index", "key", "batch", "config")},
        "sweep_id": record.id,
        "cache_dir": None,
    }


def _finish(record: SweepRecord, store: Store, job: dict, outcome: dict) -> dict:
    key = job["point"]["key"]
    for text in outcome.get("warnings", ()):  # said in the worker; said here, where the user looks
        log.warning(text)
    where = {"seconds": outcome.get("seconds"), "worker": outcome.get("worker")}
    if outcome["state"] != "done":
        return record.mark(key, "failed", reason=outcome["reason"], **where)
    try:
        run = outcome.get("run")
        stored = store.add(run) if run is not None else _store_packed(store, outcome["run_tar"], key, record.model)
    except WorkbenchError as e:
        return record.mark(key, "failed", reason=f"its run could not be stored: {e}", **where)
    return record.mark(key, "done", run=stored.id, **where)


def _store_packed(store: Store, data: bytes, key: str, model: dict):
    """A run directory that came back as bytes (from a Ray worker) into the local store.

    The worker ran the model from its own temporary copy; the stored run names the sweep's model file (the same
    bytes: the SHA-256 is checked), so its trtexec command and report point at a file that exists here.
    """
    from ..results.run import load_run

    with tempfile.TemporaryDirectory(prefix=".incoming-", dir=store.path) as tmp:
        folder = unpack(data, tmp)
        run = load_run(folder)
        if run.sweep_point != key:
            raise WorkbenchError(f"a worker returned a run of point '{run.sweep_point}' for point '{key}'")
        if run.model.get("sha256") == model["sha256"]:
            run = run.replace(model={**run.model, "path": model["path"]})
        stored = store.add(run)
    shutil.rmtree(Path(tmp), ignore_errors=True)
    return stored
