"""``workbench doctor``: the environment, and what can run here with the reason when not (each backend says)."""

from __future__ import annotations

import sys

from .backends import backend_status, get_backend
from .env import environment


def doctor() -> list[tuple[str, str]]:
    """(item, finding) rows for ``workbench doctor``: the environment and what can run here, with reasons."""
    env = environment()
    rows = [
        ("Python", f"{env['python']} ({sys.executable})"),
        ("Platform", env["platform"]),
        ("CPU", f"{env['cpu']} ({env['cpu_cores']} cores)"),
    ]
    if env["gpus"]:
        for g in env["gpus"]:
            rows.append(
                (
                    f"GPU {g['index']}",
                    f"{g['name']}, compute {g['compute_capability']}, "
                    f"{g['memory_bytes'] / 2**30:.1f} GiB, driver {g['driver']}",
                )
            )
    else:
        rows.append(("GPU", "none found (no NVIDIA driver / NVML); everything runs on ONNX Runtime on the CPU"))
    for name in ("onnx", "onnxruntime", "tensorrt", "tensorrt-rtx", "cuda-bindings", "modelopt", "torch"):
        rows.append((name, env["versions"][name] or "not installed"))
    for name, (ok, reason) in backend_status().items():
        rows.append((f"backend {name}", "available" if ok else f"unavailable: {reason}"))
        backend = get_backend(name)
        if ok:
            support = backend.precision_support()
            can = [p for p, (yes, _) in support.items() if yes]
            cannot = "; ".join(f"{p}: {why}" for p, (yes, why) in support.items() if not yes)
            rows.append((f"  precisions on {name}", ", ".join(can) + (f" (not {cannot})" if cannot else "")))
        if backend.compile_usage:  # a backend that compiles without running
            yes, why = backend.can_compile()
            rows.append((f"  compile with {name}", f"yes: {backend.compile_usage}" if yes else f"no: {why}"))
    return rows
