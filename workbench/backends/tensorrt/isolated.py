"""Native builds in a child process: a crash of the builder fails the build with one line, never the caller.

TensorRT-RTX segfaults on a valid 10,000-node chain (its builder recurses once per layer and overflows an 8 MiB
stack); a crash inside a native library cannot be caught in the process it happens in, so a notebook kernel, the
panel's thread or the CLI would die with it. :func:`build_plan_isolated` runs :func:`~.build.build_plan` in a fresh
Python process on a thread with a :data:`BUILD_STACK_BYTES`
stack (enough for that chain), and hands back the plan and the build facts. If the child dies anyway, the caller gets
a :class:`~workbench.errors.WorkbenchError` naming the compiler, the model and the signal.

The child (:func:`workbench.processes.run_python_child`) dies with its caller; Cancel (the progress) and Ctrl-C kill
it. Progress steps travel back as they happen; the timing cache is read and written by the caller. The cost is the
child's start (Python, the edition's module, the model read again): ``benchmarks/bench_build_isolation.py`` measures
it on the bundled samples (docs/reliability.md).
"""

from __future__ import annotations

import threading
from pathlib import Path

from ...config import BuildConfig
from ...errors import Cancelled, WorkbenchError, excerpt, first_line
from ...processes import run_python_child, signal_name
from ...progress import Progress
from .library import Edition

#: The stack of the child's build thread (a 500-node chain overflows 1 MiB, a 10,000-node one 8 MiB; 1 GiB built the
#: 10,000-node chain); pages are only committed as used.
BUILD_STACK_BYTES = 1 << 30
CANCELLED = "Build cancelled by the user: no engine was cached."


def build_plan_isolated(
    edition: Edition,
    variant,
    config: BuildConfig,
    progress: Progress,
    *,
    targets: tuple[str, ...] = (),
    timing_cache=None,
    report: bool = False,
) -> tuple[bytes, dict]:
    """:func:`~.build.build_plan` of ``edition`` in a child process; same arguments (``timing_cache``: (path, read,
    write), read and written here), same result, same errors, and one line if the child dies."""
    model = variant.model
    path = model.path if model.path and Path(model.path).is_file() else None
    timing_path, read, write = timing_cache if timing_cache is not None else (None, None, None)
    request = {
        "module": edition.module,
        "path": str(path) if path else None,
        "onnx": None if path else model.to_bytes(),
        "name": model.name,
        "sha256": model.sha256,
        "precision": str(variant.precision),
        "config": config.to_dict(),
        "targets": tuple(targets),
        "timing": read(timing_path) if timing_cache is not None else None,
        "report": report,
    }
    reply, returncode, stderr = _run_child(request, progress)
    if reply is None:
        raise WorkbenchError(_death_line(edition, model.name, variant.precision, targets, returncode, stderr))
    kind = reply[0]
    if kind == "done":
        _, plan, facts, timing = reply
        if timing is not None and timing_cache is not None:
            write(timing_path, timing)
        return plan, facts
    if kind == "cancelled":
        raise Cancelled(reply[1])
    if kind == "error":
        raise WorkbenchError(reply[1])
    raise RuntimeError(reply[1])  # a bug in the child: the caller reports it as one


def _death_line(edition: Edition, name: str, precision, targets, returncode, stderr: str) -> str:
    what = f"{edition.title} crashed building {excerpt(name)} ({precision}"
    what += f", for {', '.join(t.lower() for t in targets)})" if targets else ")"
    signame = signal_name(returncode)
    if signame:
        return (
            f"{what}: its build process was killed by {signame} (a crash inside {edition.title}, e.g. a stack "
            "overflow on a very deep graph); this process is unharmed and no engine was cached: simplify the "
            "model (split very long chains) or report the crash to NVIDIA with the model."
        )
    detail = f" ({first_line(stderr.splitlines()[-1] if stderr.strip() else '', 200)})" if stderr.strip() else ""
    return (
        f"{what}: its build process exited with status {returncode}{detail}; this process is unharmed and no "
        "engine was cached: check the installation with 'workbench doctor'."
    )


def _run_child(request: dict, progress: Progress):
    """(the child's last message or None, its return code, the end of its stderr)."""
    replies = []

    def on_message(message) -> None:
        if message[0] != "step":
            replies.append(message)
        elif not progress.step(*message[1:]):
            raise Cancelled(CANCELLED)

    returncode, stderr = run_python_child(
        f"{__name__}:_child", request, progress, cancelled=CANCELLED, on_message=on_message
    )
    return (replies[-1] if replies else None), returncode, stderr


# ---- the child ---------------------------------------------------------------------------------------------------


def _child(request: dict, send) -> int:
    """The build in a thread with a :data:`BUILD_STACK_BYTES` stack; its reply is the last message."""
    result: list = []
    threading.stack_size(BUILD_STACK_BYTES)
    worker = threading.Thread(target=lambda: result.append(_build(request, send)), name="workbench-build")
    worker.start()
    worker.join()
    send(result[0])
    return 0


def _build(request: dict, send):
    """The build itself, in the child's big-stack thread: the reply message (never raises)."""
    try:
        import onnx

        from ...model.onnx_model import Model
        from .build import build_plan
        from .library import load

        if request["path"]:
            proto = onnx.load(request["path"], load_external_data=False)
        else:
            proto = onnx.load_from_string(request["onnx"])
        model = Model(proto, path=request["path"], name=request["name"], sha256=request["sha256"])
        variant = _Variant(model, request["precision"])
        timing = {}
        cache = None
        if request["timing"] is not None:
            cache = (None, lambda _: request["timing"], lambda _, data: timing.update(data=data))
        progress = Progress(lambda phase, step, total: send(("step", phase, step, total)))
        edition = next(e for e in _editions() if e.module == request["module"])
        plan, facts = build_plan(
            load(request["module"]),
            edition,
            variant,
            BuildConfig.from_dict(request["config"]),
            progress,
            targets=tuple(request["targets"]),
            timing_cache=cache,
            report=request["report"],
        )
        return ("done", plan, facts, timing.get("data"))
    except Cancelled as e:
        return ("cancelled", str(e))
    except WorkbenchError as e:
        return ("error", str(e))
    except Exception as e:  # noqa: BLE001 - handed to the caller, which reports it as a bug
        return ("bug", f"{type(e).__name__} in the build process: {first_line(e)}")


class _Variant:
    """What build_plan reads of a Variant: the model and the precision."""

    def __init__(self, model, precision: str):
        self.model, self.precision = model, precision


def _editions():
    from .library import TENSORRT, TENSORRT_RTX

    return (TENSORRT, TENSORRT_RTX)
