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
            result.append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "driver": driver,
                    "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                    "compute_capability": f"{major}.{minor}",
                }
            )
        return result
    finally:
        pynvml.nvmlShutdown()


#: NVML clock-event (throttle) reasons that slow a GPU down; idle and application-clock settings are not listed.
_THROTTLE_REASONS = {
    0x4: "power cap (software)",
    0x8: "hardware slowdown",
    0x20: "thermal (software)",
    0x40: "thermal (hardware)",
    0x80: "power brake (hardware)",
    0x10: "sync boost",
}
#: A clock or load change between the readings before and after the trials larger than this is reported.
_CONDITION_CHANGE = 0.10


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":", 1)[1]) for line in f if line.startswith("cpu MHz")]
    except (OSError, ValueError):
        return None
    return round(sum(mhz) / len(mhz), 1) if mhz else None


def _gpu_conditions(index: int) -> dict:
    """NVML's clocks, power, temperature and throttle reasons of GPU ``index``; empty without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no bindings, no driver: a CPU machine
        return {}
    out: dict = {}
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        for key, read in (
            ("gpu_sm_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
            ("gpu_memory_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)),
            ("gpu_power_w", lambda: round(pynvml.nvmlDeviceGetPowerUsage(h) / 1000, 1)),
            ("gpu_temperature_c", lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
        ):
            try:
                out[key] = read()
            except pynvml.NVMLError:
                pass  # some readings are not supported on every board or in every container
        reasons = (
            getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        try:
            mask = int(reasons(h))
            out["gpu_throttle"] = tuple(name for bit, name in _THROTTLE_REASONS.items() if mask & bit)
        except pynvml.NVMLError:
            pass
    except pynvml.NVMLError:
        return out
    finally:
        pynvml.nvmlShutdown()
    return out


def gpu_clocks(index: int | None) -> tuple[int | None, int | None]:
    """NVML's SM and memory clocks (MHz) of GPU ``index`` now; ``(None, None)`` without a GPU or NVML."""
    if index is None:
        return None, None
    readings = _gpu_conditions(index)
    return readings.get("gpu_sm_mhz"), readings.get("gpu_memory_mhz")


def cpu_time_waited() -> tuple[int, int] | None:
    """Nanoseconds this process's threads have run on a CPU and waited, runnable, for one (the scheduler's own
    accounting, ``/proc/self/task/*/schedstat``), summed over threads; None where the kernel does not keep it.
    The waited share between two readings is how much of the time other processes held the cores."""
    ran = waited = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        fields = (_read(f"/proc/self/task/{task}/schedstat") or "").split()
        if len(fields) >= 2:
            ran, waited = ran + int(fields[0]), waited + int(fields[1])
    return (ran, waited) if ran else None


def waited_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of runnable time spent waiting for a CPU between two :func:`cpu_time_waited` readings."""
    if before is None or after is None:
        return None
    ran, waited = max(0, after[0] - before[0]), max(0, after[1] - before[1])
    return round(waited / (ran + waited), 4) if ran + waited else None


def conditions(gpu_index: int | None = None) -> dict:
    """This machine's conditions now, as the fields of :class:`~workbench.results.run.ConditionsSnapshot` (GPU
    readings when ``gpu_index`` is given and NVML answers)."""
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    gpu = _gpu_conditions(gpu_index) if gpu_index is not None else {}
    return {"cpu_model": cpu_name(), "governor": governor, "cpu_mhz": _cpu_mhz(), "load_1m": load, **gpu}


def condition_warnings(before, after, cpu_cores: int | None = None) -> tuple[str, ...]:
    """What in two ``ConditionsSnapshot`` readings makes timings less trustworthy: throttling, clocks or temperature that moved, a
    busy machine, a power-saving governor."""
    warnings = []
    throttle = tuple(dict.fromkeys(before.gpu_throttle + after.gpu_throttle))
    if throttle:
        warnings.append(f"the GPU was throttled ({', '.join(throttle)}): its clocks were held down while timing")
    for label, key, unit in (
        ("GPU SM clock", "gpu_sm_mhz", "MHz"),
        ("GPU memory clock", "gpu_memory_mhz", "MHz"),
        ("CPU clock", "cpu_mhz", "MHz"),
    ):
        a, b = getattr(before, key), getattr(after, key)
        if a and b and abs(b - a) / a > _CONDITION_CHANGE:
            warnings.append(f"{label} changed from {a:g} to {b:g} {unit} during the trials")
    a, b = before.gpu_temperature_c, after.gpu_temperature_c
    if a is not None and b is not None and b - a >= 10:
        warnings.append(f"GPU temperature rose from {a} to {b} °C during the trials")
    cores = cpu_cores or os.cpu_count() or 1
    busy = max(x for x in (before.load_1m, after.load_1m, 0) if x is not None)
    if busy > cores:
        warnings.append(f"the machine was busy (load average {busy:.1f} on {cores} cores): other work shared it")
    if before.governor and before.governor not in ("performance",):
        warnings.append(
            f"CPU frequency governor '{before.governor}' lets clocks vary (set 'performance' for steadier timings)"
        )
    return tuple(warnings)


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


def host_peak_bytes() -> int | None:
    """The peak resident memory of this process or of its largest finished child (a probe or build process),
    whichever is larger: the most host memory any one process of the run held; None where the OS does not say."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    unit = 1 if platform.system() == "Darwin" else 1024  # macOS reports bytes, Linux KiB
    peaks = (resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return max(peaks) * unit


def device_memory_bytes() -> int | None:
    """Memory of the first GPU (the most a TensorRT workspace can use), or None where there is none."""
    found = gpus()
    return int(found[0]["memory_bytes"]) if found else None
