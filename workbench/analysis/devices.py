"""Hardware limits: peak dense throughput per precision and DRAM bandwidth of GPUs, and a measured CPU peak.

:data:`GPUS` holds NVIDIA's published figures, **dense** (the datasheets print Tensor Core figures "with sparsity";
those are halved here, as their footnotes say), one source per row. A blank (``None``) means the GPU has no Tensor
Core path for that precision (the FP32 CUDA-core peak is then the roof). FP32 is the CUDA-core (non-tensor) rate;
the other precisions are Tensor Core rates. GeForce cards: the FP16 and FP8 figures are those with FP16
accumulation (the highest the whitepapers print; kernels that accumulate in FP32 run at half that on GeForce),
BF16 and TF32 the FP32-accumulate ones — the roof is the hardware's limit, not a typical kernel's.

:func:`find_device` finds a row from a device name as drivers, NVML or trtexec write it ("NVIDIA A100-SXM4-40GB",
"NVIDIA A100 80GB PCIe", "NVIDIA H200", "Tesla T4", "NVIDIA GeForce RTX 4090"...). :func:`cpu_device` measures
this CPU once per machine (a float32 matrix product by numpy and by ONNX Runtime's own kernels, the faster
counting, and a large array copy: the best of :data:`CPU_ROUNDS` short measurements, about a second) and caches
the result in the workbench cache, keyed by the machine (:func:`machine_key`): labelled "measured on this CPU",
never a published figure, and a stable figure: read from the cache until ``refresh=True`` (``--remeasure``)
measures again and keeps the best rate ever observed (a busy machine measures low, never high).

``Device.cache_bytes`` is the last-level cache (:data:`L2_MIB` for GPUs, the CPU's largest cache from Linux sysfs),
None where unknown: a layer above the DRAM roof is explained by the cache only when its bytes fit in it.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import WorkbenchError, excerpt

TFLOPS = 1e12
GBS = 1e9

#: Precisions a device row gives peaks for, in the table's column order.
PEAK_PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")


@dataclass(frozen=True)
class Device:
    """A device's roof: ``peaks`` precision -> FLOP/s (or OP/s for int8), ``bandwidth`` bytes/s."""

    name: str
    peaks: dict
    bandwidth: float
    source: str  # where the numbers come from: a datasheet title and URL, or "measured on this CPU ..."
    kind: str = "gpu"  # "gpu" or "cpu"
    notes: tuple = field(default_factory=tuple)
    cache_bytes: int | None = None  # the last-level cache (a GPU's L2, a CPU's largest cache); None when not known
    measured: str = ""  # when a measured roof (a CPU's) was measured; "" for published figures

    def peak(self, precision: str, matrix: bool = True, tf32: bool = False) -> tuple[float, str]:
        """(FLOP/s, which peak: ``"fp16 tensor cores"``, ``"fp32 cuda cores"``, ``"fp32 measured"``) for a layer of
        ``precision``; ``matrix`` layers (Conv, Gemm, MatMul) use the Tensor Core peak of their precision, the
        others the FP32 CUDA-core peak (they are memory-bound anyway). FP32 matrix layers use the TF32 Tensor Core
        peak only when ``tf32`` (the build allowed TF32: TensorRT without ``--noTF32``), else the FP32 peak."""
        precision = (precision or "fp32").lower()
        if self.kind == "cpu":
            return self.peaks["fp32"], "fp32 measured"
        if matrix and precision == "fp32":
            if tf32 and self.peaks.get("tf32"):
                return self.peaks["tf32"], "tf32 tensor cores"
            return self.peaks["fp32"], "fp32 cuda cores"
        if matrix and self.peaks.get(precision):
            return self.peaks[precision], f"{precision} tensor cores"
        return self.peaks["fp32"], "fp32 cuda cores"

    def table(self) -> list[tuple[str, str]]:
        rows = [
            (f"{p.upper()} peak", f"{v / TFLOPS:g} {'TOPS' if p == 'int8' else 'TFLOPS'}")
            for p, v in self.peaks.items()
            if v
        ]
        rows.append(("DRAM bandwidth", f"{self.bandwidth / GBS:g} GB/s"))
        rows.append(("Source", self.source))
        return rows


_A100 = (
    "NVIDIA A100 Tensor Core GPU datasheet (dense = half the sparsity figures), "
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
    "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
)
_H100 = (
    "NVIDIA H100 Tensor Core GPU datasheet (dense = half the sparsity figures), "
    "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
)
_H200 = (
    "NVIDIA H200 Tensor Core GPU product page, specifications (H200 SXM; dense = half the sparsity figures), "
    "https://www.nvidia.com/en-us/data-center/h200/"
)
_B200 = (
    "NVIDIA HGX platform page, HGX B200 individual Blackwell GPU specifications (dense = half the sparsity "
    "figures), https://www.nvidia.com/en-us/data-center/hgx/"
)
_L4 = (
    "NVIDIA L4 Tensor Core GPU datasheet (dense = half the sparsity figures), "
    "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet"
)
_L40S = (
    "NVIDIA L40S GPU datasheet (dense = half the sparsity figures), "
    "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"
)
_T4 = (
    "NVIDIA T4 Tensor Core GPU datasheet, "
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf"
)
_A10 = (
    "NVIDIA A10 Tensor Core GPU datasheet (dense = half the sparsity figures), "
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf"
)
_GA102 = (
    "NVIDIA Ampere GA102 GPU Architecture whitepaper, GeForce RTX 3090 column (dense figures), "
    "https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf"
)
_ADA = (
    "NVIDIA Ada GPU Architecture whitepaper, GeForce RTX 4090 column (dense figures), "
    "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
)
_RTXB = (
    "NVIDIA RTX Blackwell GPU Architecture whitepaper, GeForce RTX 5090 column (dense = half the sparsity "
    "figures; TF32 and BF16 left blank, not confirmed), https://images.nvidia.com/aem-dam/Solutions/geforce/"
    "blackwell/nvidia-rtx-blackwell-gpu-architecture.pdf"
)

#: (name, name pattern, fp32, tf32, fp16, bf16, int8, fp8 in TFLOPS/TOPS dense, DRAM GB/s, source).
#: Patterns are searched in the lower-cased name with '-' and '_' read as spaces; the first match wins, so the
#: more specific rows come first.
GPUS: tuple = (
    ("A100 PCIe 80GB", r"\ba100\b.*(80 ?gb.*pcie|pcie.*80 ?gb)", 19.5, 156, 312, 312, 624, None, 1935, _A100),
    ("A100 PCIe 40GB", r"\ba100\b.*pcie", 19.5, 156, 312, 312, 624, None, 1555, _A100),
    ("A100 SXM 80GB", r"\ba100\b.*80 ?gb", 19.5, 156, 312, 312, 624, None, 2039, _A100),
    ("A100 SXM 40GB", r"\ba100\b", 19.5, 156, 312, 312, 624, None, 1555, _A100),
    ("H100 PCIe", r"\bh100\b.*pcie", 51, 378, 756.5, 756.5, 1513, 1513, 2000, _H100),
    ("H100 SXM", r"\bh100\b(?!.*\bnvl\b)", 67, 494.5, 989.5, 989.5, 1979, 1979, 3350, _H100),
    ("H200 SXM", r"\bh200\b(?!.*\bnvl\b)", 67, 494.5, 989.5, 989.5, 1979, 1979, 4800, _H200),
    ("B200", r"\bb200\b", 75, 1100, 2250, 2250, 4500, 4500, 7700, _B200),
    ("L40S", r"\bl40s\b", 91.6, 183, 362.05, 362.05, 733, 733, 864, _L40S),
    ("L4", r"\bl4\b", 30.3, 60, 121, 121, 242.5, 242.5, 300, _L4),
    ("T4", r"\bt4\b", 8.1, None, 65, None, 130, None, 320, _T4),
    ("A10", r"\ba10\b", 31.2, 62.5, 125, 125, 250, None, 600, _A10),
    ("GeForce RTX 3090", r"\brtx 3090\b(?! ti)", 35.6, 35.6, 142, 71, 284, None, 936, _GA102),
    ("GeForce RTX 4090", r"\brtx 4090\b", 82.6, 82.6, 330.3, 165.2, 660.6, 660.6, 1008, _ADA),
    ("GeForce RTX 5090", r"\brtx 5090\b", 104.8, None, 419, None, 838, 838, 1792, _RTXB),
)


#: L2 cache per GPU row (MiB), from the same architecture whitepapers and datasheets as the peaks: what a layer's
#: data must fit in before the cache, not DRAM, can explain a layer above the DRAM roof.
L2_MIB = {
    "A100 PCIe 80GB": 40,
    "A100 PCIe 40GB": 40,
    "A100 SXM 80GB": 40,
    "A100 SXM 40GB": 40,
    "H100 PCIe": 50,
    "H100 SXM": 50,
    "H200 SXM": 50,
    "L40S": 96,
    "L4": 48,
    "T4": 4,
    "A10": 6,
    "GeForce RTX 3090": 6,
    "GeForce RTX 4090": 72,
    "GeForce RTX 5090": 96,
}


def _normal(name: str) -> str:
    return " ".join(re.sub(r"[-_/]", " ", name.lower()).split())


def gpu_table():
    """The device table as a DataFrame (one row per GPU; peaks in TFLOPS/TOPS dense, bandwidth in GB/s)."""
    import pandas as pd

    cols = ["device", "pattern", *PEAK_PRECISIONS, "bandwidth_gbs", "source"]
    return pd.DataFrame(list(GPUS), columns=cols).drop(columns="pattern")


def find_device(name: str) -> Device | None:
    """The GPU row whose pattern matches ``name`` (case and separators ignored), or None."""
    text = _normal(name or "")
    for row in GPUS:
        label, pattern, *values, bandwidth, source = row
        if re.search(pattern, text):
            peaks = {p: (v * TFLOPS if v else None) for p, v in zip(PEAK_PRECISIONS, values)}
            cache = L2_MIB.get(label)
            return Device(label, peaks, bandwidth * GBS, source, "gpu", cache_bytes=cache * 2**20 if cache else None)
    return None


def device_for(name: str, *, typed: bool = True) -> Device:
    """:func:`find_device`, or a one-line error listing the known GPUs (the name quoted bounded).

    ``typed``: the name was typed by a user (``--device``), not written by a driver: one that names several rows
    (``A100``: four A100s) is refused with the matches, since their peaks differ; the exact row name is one row.
    """
    text = str(name)
    if typed:
        words = set(_normal(text).split()) - {"nvidia"}
        exact = [r for r in GPUS if _normal(r[0]) == _normal(text)]
        matches = exact or [r for r in GPUS if words and words <= set(_normal(r[0]).split())]
        if len(matches) > 1:
            raise WorkbenchError(
                f"Device {excerpt(text)} names several GPUs ({', '.join(r[0] for r in matches)}): pass --device "
                "with one of them, in quotes."
            )
        if matches:
            text = matches[0][0]
    found = find_device(text)
    if found is None:
        known = ", ".join(r[0] for r in GPUS)
        raise WorkbenchError(
            f"No peak figures for device {excerpt(text)}: pass --device with one of {known} (or "
            "'cpu' for this machine's measured peak)."
        )
    return found


# ---- the CPU: measured ---------------------------------------------------------------------------------------


def _runtime_matmul(a, b):
    """``a @ b`` by ONNX Runtime's CPU kernels (MLAS: what the CPU runs are held against), or None without it."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(a.shape)) for name in ("a", "b", "y")]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "peak", spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a, "b": b})


#: The CPU roof is the best of this many short measurements (a moment of load elsewhere lowers one, not all).
CPU_ROUNDS = 5


def _measure_cpu(rounds: int = CPU_ROUNDS, seconds: float = 0.08) -> tuple[float, float]:
    """(FLOP/s of a float32 matrix product, bytes/s of a large array copy): the best of ``rounds`` short
    measurements of each, spread over about a second (a busy machine measures low, never high)."""
    import numpy as np

    n = 2048  # large enough that the BLAS kernels, not the threading, set the rate
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    products = [p for p in (lambda: a @ b, _runtime_matmul(a, b)) if p is not None]  # numpy's BLAS, ORT's kernels
    threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    src = np.ones(threads * 32 * 2**20 // 8)  # 32 MiB per core: far larger than the caches
    dst = np.empty_like(src)
    parts = list(zip(np.array_split(src, threads), np.array_split(dst, threads)))

    def copy():
        list(pool.map(lambda p: np.copyto(p[1], p[0]), parts))  # numpy releases the GIL while it copies

    best_flops = best_bw = 0.0
    with ThreadPoolExecutor(threads) as pool:  # as many copies at once as cores: one core alone cannot fill DRAM
        for product in products:
            product()  # warm-up: thread pool, caches
        copy()
        for _ in range(rounds):
            for product in products:
                deadline, runs = time.perf_counter() + seconds, 0
                while runs < 1 or time.perf_counter() < deadline:
                    runs += 1
                    t0 = time.perf_counter()
                    product()
                    best_flops = max(best_flops, 2.0 * n**3 / (time.perf_counter() - t0))
            deadline = time.perf_counter() + seconds / 2
            while True:
                t0 = time.perf_counter()
                copy()
                best_bw = max(best_bw, 2.0 * src.nbytes / (time.perf_counter() - t0))  # read + write
                if time.perf_counter() >= deadline:
                    break
            time.sleep(seconds)  # rounds apart in time: a burst of load elsewhere spoils one round, not all
    return best_flops, best_bw


def machine_key() -> tuple[str, str]:
    """(key, description) of this machine for the CPU roof's cache: the CPU model, the cores this process may use
    and the machine's identity (``/etc/machine-id``, else the host name): a roof measured on 2 cores of one host
    is not another's with 16."""
    import hashlib
    import socket
    from pathlib import Path

    from ..env import cpu_name

    model = cpu_name() or "unknown CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        identity = Path("/etc/machine-id").read_text().strip()
    except OSError:
        identity = ""
    identity = identity or socket.gethostname()
    digest = hashlib.sha256(f"{model}|{cores}|{identity}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:60] or "cpu"
    return f"{slug}-{cores}c-{digest}", f"{model}, {cores} cores"


def _cpu_cache_bytes() -> int | None:
    """This CPU's largest cache (Linux sysfs: the last level, shared by the cores), or None where it is not told."""
    from pathlib import Path

    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        match = re.fullmatch(r"(\d+)([KMG]?)", entry.read_text().strip())
        if match:
            sizes.append(int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)])
    return max(sizes, default=None)


def cpu_device(refresh: bool = False) -> Device:
    """This CPU's roof: measured once per machine (:func:`machine_key`) and cached
    (``<cache>/roofline/cpu-<key>.json``), then read from the cache, so every roofline of this machine holds its
    layers against the same figure; ``refresh`` (``workbench roofline --remeasure``) measures again and keeps the
    best rate ever observed. Never remeasured unasked: a roof that moved with the load would move every verdict
    held against it."""
    from ..paths import atomic_write, cache_dir

    key, machine = machine_key()
    path = cache_dir("roofline") / f"cpu-{key}.json"
    data = None
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            data = None
    if data is not None and (data.get("machine") != key or not data.get("fp32_flops") or not data.get("bandwidth")):
        data = None
    if refresh or data is None:
        flops, bandwidth = _measure_cpu()
        if data:  # a busy machine measures low: keep the best rate ever observed
            flops, bandwidth = max(flops, data["fp32_flops"]), max(bandwidth, data["bandwidth"])
        data = {
            "machine": key,
            "cpu": machine,
            "fp32_flops": flops,
            "bandwidth": bandwidth,
            "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            "measurements": (data or {}).get("measurements", 0) + 1,
        }
        try:
            atomic_write(path, json.dumps(data))
        except OSError:
            pass  # a read-only cache: measure again next time
    runs = data.get("measurements", 1)
    source = (
        f"measured on this CPU ({machine}, {data['measured']}, best of {CPU_ROUNDS} short measurements"
        f"{f' in each of {runs} sessions' if runs > 1 else ''}; cached, remeasured only with --remeasure): "
        "float32 2048×2048 matrix product (the faster of numpy and ONNX Runtime) and a 32 MiB-per-core array copy"
    )
    return Device(
        machine,
        {"fp32": data["fp32_flops"]},
        data["bandwidth"],
        source,
        "cpu",
        cache_bytes=_cpu_cache_bytes(),
        measured=data["measured"],
        notes=(
            (
                "Measured on this CPU: every precision is held against the float32 matrix-product peak "
                "(int8 and fp16 kernels may exceed it)."
            ),
        ),
    )
