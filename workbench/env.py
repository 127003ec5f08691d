"""The environment a run was made in (versions, CPU, GPUs). Versions are read from package metadata so that
asking never imports tensorrt, torch or modelopt."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform

#: Distribution names to look for, per component (the first one installed wins).
_DISTRIBUTIONS = {
    "workbench": ("trt-workbench",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings"),
    "tensorrt-rtx": ("tensorrt-rtx", "tensorrt_rtx_cu13", "tensorrt-rtx-cu13-bindings"),
    "modelopt": ("nvidia-modelopt",),
    "torch": ("torch",),
    "cuda-bindings": ("cuda-bindings", "cuda-python"),
    "nvidia-ml-py": ("nvidia-ml-py",),
}


def package_version(component: str) -> str | None:
    for dist in _DISTRIBUTIONS.get(component, (component,)):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    if component == "tensorrt" and importlib.util.find_spec("tensorrt") is not None:
        return "installed (version unknown)"  # NGC containers may ship TensorRT's Python package without metadata
    return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict]:
    """GPUs seen by NVML (name, driver, memory, compute capability); empty when there is no NVIDIA driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        result = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            result.append({
                "index": i,
                "name": name.decode() if isinstance(name, bytes) else name,
                "driver": driver,
                "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                "compute_capability": f"{major}.{minor}",
            })
        return result
    finally:
        pynvml.nvmlShutdown()


def environment() -> dict:
    """Facts recorded with every run."""
    gpu_list = gpus()
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "gpu": gpu_list[0]["name"] if gpu_list else None,
        "gpus": gpu_list,
        "driver": gpu_list[0]["driver"] if gpu_list else None,
        "versions": {name: package_version(name) for name in _DISTRIBUTIONS},
    }


def device_memory_bytes() -> int | None:
    """Memory of the first GPU (the most a TensorRT workspace can use), or None where there is none."""
    found = gpus()
    return int(found[0]["memory_bytes"]) if found else None
