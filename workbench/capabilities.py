"""What can run here: which precisions a backend can build on this machine (and why not), and the device memory
that bounds a TensorRT workspace. Read by the widgets (disabled choices show the reason) and by ``doctor``."""

from __future__ import annotations

from .config import GRAPH_PRECISIONS, PRECISIONS

#: Minimum CUDA compute capability TensorRT needs for a precision (others run on every GPU TensorRT 10+ supports).
_MIN_COMPUTE = {"tf32": (8, 0), "bf16": (8, 0), "fp8": (8, 9)}
#: ONNX Runtime's CPU provider has no BF16 kernels; FP8 Q/DQ it emulates (accuracy is measured, labelled emulated).
_ORT_CANNOT = ("bf16",)


def _compute(gpu: dict) -> tuple[int, int]:
    major, _, minor = str(gpu.get("compute_capability") or "0.0").partition(".")
    return int(major or 0), int(minor or 0)


def _ort_has_cuda() -> bool:
    """onnxruntime-gpu with its CUDA provider usable (NGC containers): it has kernels the CPU provider lacks."""
    from .backends import get_backend

    return "CUDAExecutionProvider" in get_backend("onnxruntime").providers()


def _modelopt_reason() -> str:
    """Empty when ModelOpt (and the torch it imports) is installed, else why graph precisions cannot be made."""
    from .env import package_version

    if package_version("modelopt") and package_version("torch"):
        return ""
    return "needs nvidia-modelopt and torch (see README)"


def precision_support(backend: str, gpu: dict | None = None) -> dict[str, tuple[bool, str]]:
    """Every precision -> (can build here, reason when not) for ``backend`` (``onnxruntime`` or ``tensorrt``).

    ``gpu`` is one entry of :func:`workbench.env.gpus` (default: the first GPU, if any).
    """
    if gpu is None and backend == "tensorrt":
        from .env import gpus

        found = gpus()
        gpu = found[0] if found else None
    modelopt = _modelopt_reason()
    ort_on_cpu = backend == "onnxruntime" and not _ort_has_cuda()
    support = {}
    for precision in PRECISIONS:
        reason = ""
        if precision in GRAPH_PRECISIONS and modelopt:
            reason = modelopt
        elif ort_on_cpu and precision in _ORT_CANNOT:
            reason = f"ONNX Runtime on a CPU has no {precision.upper()} kernels: build it with TensorRT on a GPU"
        elif backend == "tensorrt" and precision in _MIN_COMPUTE:
            need = _MIN_COMPUTE[precision]
            if gpu is None:
                reason = "no GPU found"
            elif _compute(gpu) < need:
                reason = (f"{gpu.get('name', 'this GPU')} (compute {gpu.get('compute_capability')}) lacks "
                          f"{precision.upper()}: it needs compute {need[0]}.{need[1]} or newer")
        support[precision] = (not reason, reason)
    return support


def device_memory_bytes() -> int | None:
    """Memory of the first GPU (the most a TensorRT workspace can use), or None where there is none."""
    from .env import gpus

    found = gpus()
    return int(found[0]["memory_bytes"]) if found else None
