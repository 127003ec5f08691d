"""Where sweep points run: :class:`LocalExecutor` (worker processes on this machine) or :class:`RayExecutor`.

Both take the same jobs (see :mod:`workbench.sweeps.point`) and hand each result back to the coordinating process
through ``on_result(job, result)``, where ``result`` is ``{"state": "done" | "failed", "run": Run | None,
"reason": str | None, "seconds": float, "worker": str}``; only that process writes the sweep record and the store
index. A point that fails is a result like any other: it never stops the others.

Cancel (``progress.cancel()``) starts no new point; points already running finish and are recorded, the rest stay
pending for a resume.

Local workers die with the coordinating process (:func:`workbench.processes.die_with_parent`): a SIGKILL, SIGTERM or
SIGHUP of ``workbench sweep`` leaves no worker (and so no ``resource_tracker``, which exits with its last user).
Ray's tasks run in Ray's own workers: a local cluster started here is shut down when the sweep ends; after a SIGKILL
of the driver, their cleanup is Ray's (not replayed by the tests here).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_module
import tempfile
import time
from pathlib import Path

from ..config import check_number
from ..errors import WorkbenchError
from ..processes import die_with_parent, signal_name
from ..progress import Progress
from .point import failure_reason, pack, reporting_warnings, run_point, unpack, worker_name

log = logging.getLogger(__name__)

#: CPU cores each CPU worker gets when there is no GPU (its own affinity set; ONNX Runtime threads stay inside).
CORES_PER_CPU_WORKER = 2
#: The most workers (local processes, or Ray tasks at a time) a sweep asks for.
MAX_WORKERS = 1024
#: How often a waiting coordinator looks at the cancel flag.
POLL_S = 0.2


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else every GPU NVML sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    from ..env import gpus

    return [str(g.get("index", i)) for i, g in enumerate(gpus())]


# ---- local -----------------------------------------------------------------------------------------------------


def _pin(slot: dict) -> None:
    """In a worker, before anything touches CUDA: take the slot's GPU, or its CPU cores."""
    if "gpu" in slot:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot["gpu"]
    elif slot.get("cores") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, slot["cores"])
    logging.getLogger().handlers = [logging.NullHandler()]  # no stderr of its own: messages go to the driver


def _failed(reason: str, worker: str = "?", seconds: float | None = None) -> dict:
    """The result of a point that failed (``worker`` "?": it died with its worker)."""
    return {"state": "failed", "run": None, "reason": reason, "worker": worker, "seconds": seconds}


@reporting_warnings
def _local_point(job: dict) -> dict:
    worker = worker_name()
    start = time.perf_counter()
    try:
        run = run_point(job)
    except Exception as e:  # noqa: BLE001 - a failing point is recorded with its reason, never raised
        return _failed(failure_reason(e), worker, time.perf_counter() - start)
    return {"state": "done", "run": run, "reason": None, "worker": worker, "seconds": time.perf_counter() - start}


def _worker_main(slot: dict, tasks, results, parent: int) -> None:
    """A local worker process: pinned to its slot, it runs one point at a time until it is sent None (or its
    coordinator ``parent`` ends: then the kernel ends it too)."""
    die_with_parent(parent)
    _pin(slot)
    while True:
        job = tasks.get()
        if job is None:
            return
        results.put((job["point"]["key"], _local_point(job)))


def died_reason(exitcode) -> str:
    """Why a worker process that ran a point is gone (a native crash is not a Python exception)."""
    name = signal_name(exitcode)
    if name:
        what = {
            "SIGSEGV": "a crash in a native library",
            "SIGKILL": "killed, often for lack of memory",
            "SIGABRT": "an abort in a native library",
        }.get(name, "stopped by a signal")
        return f"the worker process died running this point ({name}: {what}); the other points went on"
    return f"the worker process exited running this point (exit code {exitcode}); the other points went on"


class _Worker:
    """One local worker process and the point it is running (so a crash fails that point, and only that one)."""

    def __init__(self, context, slot: dict, results):
        self.context, self.slot, self.results = context, slot, results
        self.job: dict | None = None
        self.start()

    def start(self) -> None:
        self.tasks = self.context.Queue()
        self.process = self.context.Process(
            target=_worker_main,
            args=(self.slot, self.tasks, self.results, os.getpid()),
            daemon=True,
            name="workbench-sweep-worker",
        )
        self.process.start()

    def assign(self, job: dict) -> None:
        self.job = job
        self.tasks.put(job)

    def stop(self) -> None:
        if self.process.is_alive():
            self.tasks.put(None)


class LocalExecutor:
    """One worker process per GPU (pinned with ``CUDA_VISIBLE_DEVICES``), or per :data:`CORES_PER_CPU_WORKER`
    CPU cores (pinned with CPU affinity) where there is no GPU. ``workers`` caps (or, on a CPU, sets) how many.

    A worker that dies (a segfault in a native library, the out-of-memory killer) fails the point it was running,
    with the signal in the reason, and is replaced; the other points go on.
    """

    name = "local"

    def __init__(self, workers: int | None = None, gpus: list | None = None):
        found = [str(g) for g in gpus] if gpus is not None else visible_gpus()
        if workers is not None:
            workers = check_number(workers, 1, MAX_WORKERS, "number of workers", integer=True)
        if found:
            found = found[: workers or len(found)]
            self.slots = [{"gpu": g} for g in found]
            self.why = f"{len(found)} worker(s), one per GPU ({', '.join(found)})"
        else:
            cores = (
                sorted(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else list(range(os.cpu_count() or 1))
            )
            n = workers or max(1, len(cores) // CORES_PER_CPU_WORKER)
            share = max(1, len(cores) // n)
            self.slots = [{"cores": cores[(i * share) % len(cores) :][:share]} for i in range(n)]
            self.why = f"{n} CPU worker(s), {share} core(s) each (no GPU found)" + (
                "; workers share cores: latencies include their contention" if n * share > len(cores) else ""
            )
        self.workers = len(self.slots)

    def describe(self) -> dict:
        return {"name": self.name, "workers": self.workers, "why": self.why}

    def run(self, jobs: list[dict], on_result, progress: Progress) -> None:
        if not jobs:
            return
        context = multiprocessing.get_context("spawn")  # a fork would copy CUDA state and threads into the workers
        results = context.Queue()
        queue = list(jobs)
        workers = [_Worker(context, slot, results) for slot in self.slots[: len(jobs)]]
        try:
            while True:
                if progress.cancelled:
                    queue.clear()
                for worker in workers:
                    if worker.job is None and queue:
                        worker.assign(queue.pop(0))
                busy = [w for w in workers if w.job is not None]
                if not busy:
                    return
                self._collect(results, busy, on_result, timeout=POLL_S)
                for worker in busy:
                    if worker.job is not None and not worker.process.is_alive():
                        self._collect(results, busy, on_result, timeout=0.5)  # a result sent just before it ended
                        if worker.job is not None:
                            job, worker.job = worker.job, None
                            on_result(job, _failed(died_reason(worker.process.exitcode)))
                        worker.start()
        finally:
            for worker in workers:
                if worker.job is not None and worker.process.is_alive():
                    # left mid-point (Ctrl-C, SIGTERM, an error): the point stays pending for --resume; waiting for
                    # it held the command for up to 10 s per busy worker
                    worker.process.terminate()
                else:
                    worker.stop()
            for worker in workers:
                worker.process.join(timeout=10)
                if worker.process.is_alive():
                    worker.process.terminate()

    @staticmethod
    def _collect(results, busy, on_result, timeout: float) -> None:
        try:
            key, outcome = results.get(timeout=timeout)
        except queue_module.Empty:
            return
        for worker in busy:
            if worker.job is not None and worker.job["point"]["key"] == key:
                job, worker.job = worker.job, None
                on_result(job, outcome)
                return


# ---- Ray -------------------------------------------------------------------------------------------------------


def import_ray():
    """Ray, or a WorkbenchError that says how to get it (it is an optional extra)."""
    from .._optional import optional_import

    return optional_import("ray", purpose="run sweep points as Ray tasks", extra="ray")


@reporting_warnings
def _ray_point(job: dict, model_tar, calibration_tar, eval_tar, variant_tar) -> dict:
    """A Ray task: unpack what the driver shipped, run the point, return its run directory as tar bytes."""
    worker = worker_name()
    start = time.perf_counter()
    logging.getLogger().handlers = [logging.NullHandler()]  # no stderr of its own: messages go to the driver
    with tempfile.TemporaryDirectory(prefix="workbench-sweep-") as tmp:
        tmp = Path(tmp)
        job = dict(job)
        try:
            if model_tar is not None:
                job["model"] = str(unpack(model_tar, tmp / "model"))
            if calibration_tar is not None:
                job["calibration"] = str(unpack(calibration_tar, tmp / "calibration"))
            if eval_tar is not None:
                job["eval"] = str(unpack(eval_tar, tmp / "eval"))
            if variant_tar is not None:
                unpack(variant_tar, tmp / "variants")
                job["cache_dir"] = str(tmp / "variants")
            run = run_point(job)
            run_tar = pack(run.save(tmp / "run" / run.id).directory)
            seconds = time.perf_counter() - start
            return {"state": "done", "run_tar": run_tar, "reason": None, "worker": worker, "seconds": seconds}
        except Exception as e:  # noqa: BLE001 - recorded with its reason
            return {**_failed(failure_reason(e), worker, time.perf_counter() - start), "run_tar": None}


class RayExecutor:
    """One Ray task per point (``num_gpus=1`` where the cluster has GPUs, else ``cpus_per_point`` CPUs), at most
    ``workers`` at a time (default: as many as the cluster's GPUs, or CPUs / ``cpus_per_point``).

    The model, the calibration and evaluation data and the prebuilt precision variants travel through Ray's
    object store (put once, shared by every task), unless ``shared=True`` says the paths are the same on every
    node. Each task returns its run directory as bytes, unpacked into the local store: no shared file system.
    ``address``: an existing cluster (``ray://host:10001``, ``auto``); without it a local cluster is started
    (and stopped at the end). A Ray already initialised in this process (a notebook, a test) is used as it is.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, workers: int | None = None, cpus_per_point: float = 1, shared: bool = False
    ):
        if workers is not None:
            workers = check_number(workers, 1, MAX_WORKERS, "number of workers", integer=True)
        self.ray = import_ray()
        self.address = address
        self.cpus_per_point = cpus_per_point
        self.shared = shared
        self.requested_workers = workers
        self.workers = workers or 0
        self.why = ""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "workers": self.workers,
            "why": self.why,
            "address": self.address,
            "shared_paths": self.shared,
        }

    def run(self, jobs: list[dict], on_result, progress: Progress, files: dict | None = None) -> None:
        if not jobs:
            return
        ray = self.ray
        started = not ray.is_initialized()
        if started:
            self._init(ray)
        try:
            self._run(ray, jobs, on_result, progress, files or {})
        finally:
            if started:
                ray.shutdown()

    def _init(self, ray) -> None:
        try:
            ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
        except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError... one line
            ray.shutdown()
            # A local start fails on a loaded machine when Ray's agents miss the raylet's fixed 15 s start-up
            # deadline (ray-project/ray#65983); a cluster started once outside the sweep avoids that and its cost.
            fix = (
                "check the address"
                if self.address
                else "start a cluster once with `ray start --head` and pass --address auto (a busy machine can miss "
                "Ray's start-up deadline)"
            )
            raise WorkbenchError(
                f"Cannot start or reach the Ray cluster {self.address or '(local)'} ({failure_reason(e)}): {fix}."
            ) from None

    def _run(self, ray, jobs, on_result, progress, files) -> None:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus:
            options = {"num_gpus": 1, "num_cpus": 1}
            capacity = gpus
        else:
            options = {"num_cpus": self.cpus_per_point}
            capacity = max(1, int(resources.get("CPU", 1) // self.cpus_per_point))
        self.workers = self.requested_workers or capacity
        self.why = (
            f"{self.workers} task(s) at a time on a Ray cluster with {int(resources.get('CPU', 0))} CPUs and "
            f"{gpus} GPUs; {'num_gpus=1' if gpus else f'num_cpus={self.cpus_per_point}'} per point; "
            + ("paths shared by the cluster" if self.shared else "model and data through the object store")
        )
        log.info(f"executor ray: {self.why}")
        task = ray.remote(_ray_point).options(max_retries=0, **options)
        shipped = self._ship(ray, files)
        queue = list(jobs)
        running: dict = {}
        while queue or running:
            while queue and len(running) < self.workers and not progress.cancelled:
                job = queue.pop(0)
                variant = shipped["variants"].get(job["point"]["config"]["precision"])
                ref = task.remote(job, shipped["model"], shipped["calibration"], shipped["eval"], variant)
                running[ref] = job
            if progress.cancelled:
                queue.clear()
            if not running:
                break
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                job = running.pop(ref)
                on_result(job, self._result(ray, ref))

    def _ship(self, ray, files: dict) -> dict:
        if self.shared:
            return {"model": None, "calibration": None, "eval": None, "variants": {}}

        def put(path):
            return None if not path else ray.put(pack(path))

        return {
            "model": put(files.get("model")),
            "calibration": put(files.get("calibration")),
            "eval": put(files.get("eval")),
            "variants": {precision: put(folder) for precision, folder in (files.get("variants") or {}).items()},
        }

    @staticmethod
    def _result(ray, ref) -> dict:
        try:
            result = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - a task whose worker died fails its point only
            died = type(e).__name__ == "WorkerCrashedError"
            reason = (
                "the Ray worker process died running this point (a crash in a native library, or killed "
                "for lack of memory; its log is in the Ray session's logs); the other points went on"
                if died
                else f"the Ray task failed ({failure_reason(e)})"
            )
            return _failed(reason)
        return result


def make_executor(name: str = "local", *, address: str | None = None, workers: int | None = None, shared: bool = False):
    """The executor called ``name``; ``ray`` without Ray installed falls back to the local one, saying why."""
    if name == "local":
        if address:
            raise WorkbenchError("--address names a Ray cluster: use it with --executor ray.")
        return LocalExecutor(workers)
    if name == "ray":
        try:
            return RayExecutor(address, workers, shared=shared)
        except WorkbenchError as e:
            if address:  # a named cluster cannot be replaced by this machine
                raise
            local = LocalExecutor(workers)
            local.why = f"{e} Ran on the local executor instead: {local.why}"
            return local
    raise WorkbenchError(f"Unknown executor '{name}': choose local or ray.")
