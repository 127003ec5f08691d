"""Backends behind one small interface (see :mod:`workbench.backends.base`); heavy imports happen lazily."""

from __future__ import annotations

from ..config import BackendName
from ..errors import WorkbenchError
from .base import Backend, Engine

NAMES = (BackendName.ONNXRUNTIME.value, BackendName.TENSORRT.value, BackendName.TENSORRT_RTX.value)
#: The backends that build without running (``compile``), the default first.
COMPILERS = (BackendName.TENSORRT_RTX.value, BackendName.ONNXRUNTIME.value)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``onnxruntime``, ``tensorrt`` or ``tensorrt-rtx``); it may still be unavailable
    here."""
    if name == BackendName.ONNXRUNTIME:
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend()
    if name == BackendName.TENSORRT:
        from .tensorrt import TensorRTBackend

        return TensorRTBackend()
    if name == BackendName.TENSORRT_RTX:
        from .tensorrt import TensorRTRTXBackend

        return TensorRTRTXBackend()
    raise WorkbenchError(f"Unknown backend '{name}': choose auto, {', '.join(NAMES)}.")


def choose_backend(name: str = "auto") -> tuple[Backend, str]:
    """Resolve ``auto`` to TensorRT when it can build here, else ONNX Runtime; returns (backend, why).

    A named backend that cannot run here raises with its reason (``--backend tensorrt`` never falls back).
    """
    if name != "auto":
        backend = get_backend(name)
        ok, reason = backend.available()
        if not ok:
            raise WorkbenchError(f"{backend.name} backend unavailable: {reason}")
        return backend, f"{backend.name} (requested)"
    trt = get_backend("tensorrt")
    ok, reason = trt.available()
    if ok:
        return trt, "tensorrt (TensorRT and a GPU are present)"
    ort = get_backend("onnxruntime")
    ok_ort, reason_ort = ort.available()
    if not ok_ort:
        raise WorkbenchError(f"No backend can run here: TensorRT: {reason}; ONNX Runtime: {reason_ort}")
    return ort, f"onnxruntime (TensorRT unavailable: {reason})"


def backend_status() -> dict[str, tuple[bool, str]]:
    """Every backend's (available, reason), for ``workbench doctor`` and the UI."""
    return {name: get_backend(name).available() for name in NAMES}


__all__ = ["COMPILERS", "Backend", "Engine", "NAMES", "backend_status", "choose_backend", "get_backend"]
