"""Running one sweep point, wherever it runs (a local worker process, a Ray task), and moving run directories.

A *job* is a small picklable dict: ``model`` (path of the ONNX file where the point runs), ``calibration`` /
``eval`` (paths or None), ``random_calibration``, ``backend``, ``point`` (:meth:`SweepPoint.to_dict`),
``sweep_id``, ``cache_dir`` (the variant cache, or None for the default one).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import tarfile
import warnings
from pathlib import Path

from ..config import GRAPH_PRECISIONS
from ..errors import WorkbenchError, first_line
from ..messages import collected
from .plan import SweepPoint


def variant_options(precision: str, job: dict) -> dict:
    """The make_variant options of a point: calibration data for graph precisions, random calibration for int8/fp8."""
    options = {}
    if precision in GRAPH_PRECISIONS and job.get("calibration"):
        options["calibration"] = job["calibration"]
    if precision in ("int8", "fp8") and job.get("random_calibration") and not job.get("calibration"):
        options["random_calibration"] = True
    if job.get("cache_dir"):
        options["cache_dir"] = job["cache_dir"]
    return options


def reporting_warnings(point):
    """Decorate a worker's point function (returning its outcome dict): the texts of the warnings it logged or
    raised go back in the outcome's ``warnings``, for the driver to show once (a worker's own stderr would repeat
    each one per point, with its Python source line)."""

    @functools.wraps(point)
    def wrapped(*args, **kwargs) -> dict:
        with warnings.catch_warnings(record=True) as caught, collected(logging.WARNING) as said:
            warnings.simplefilter("always")
            outcome = point(*args, **kwargs)
        return {**outcome, "warnings": list(dict.fromkeys([*said, *(str(w.message) for w in caught)]))}

    return wrapped


def run_point(job: dict, progress=None):
    """Build and profile one point (its config's trials included); return the Run tagged with the sweep, not saved."""
    from ..pipeline import profile

    point = SweepPoint.from_dict(job["point"])
    options = variant_options(point.config.precision, job)
    run = profile(
        job["model"],
        backend=job["backend"],
        config=point.config,
        eval_data=job.get("eval"),
        progress=progress,
        **options,
    )
    model_name = run.model.get("name") or "model"
    return run.replace(
        sweep_id=job["sweep_id"],
        sweep_point=point.key,
        name=f"{model_name} {point.label} {run.backend}"
        + (" (random calibration)" if "(random calibration)" in run.name else ""),
    )


def failure_reason(error: BaseException) -> str:
    """One line for the record: a WorkbenchError's own message, or the type and first line of anything else."""
    if isinstance(error, WorkbenchError):
        return str(error)
    return f"{type(error).__name__}: {first_line(error)}"


# ---- moving files between machines ------------------------------------------------------------------------------


def pack(path) -> bytes:
    """A file or a folder as tar bytes (its name at the top), to travel through Ray's object store."""
    path = Path(path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buffer.getvalue()


def unpack(data: bytes, destination) -> Path:
    """Extract :func:`pack` bytes under ``destination`` and return the path of what was packed.

    Extraction uses tarfile's ``data`` filter: no absolute paths, no ``..``, no links out, no devices.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        names = {Path(m.name).parts[0] for m in tar.getmembers() if m.name not in ("", ".")}
        if len(names) != 1:
            raise WorkbenchError(
                "A packed result holds no single top-level entry: the worker's workbench differs "
                "from this one; install the same version on every node."
            )
        tar.extractall(destination, filter="data")
    return destination / names.pop()


def worker_name() -> str:
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"pid {os.getpid()}" + (f" GPU {gpu}" if gpu else "")
