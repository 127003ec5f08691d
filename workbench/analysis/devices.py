"""Hardware limits: peak dense throughput per precision and DRAM bandwidth of GPUs, and a measured CPU peak.

:data:`GPUS` holds NVIDIA's published figures, **dense** (the datasheets print Tensor Core figures "with sparsity";
those are halved here, as their footnotes say), one source per row. A blank (``None``) means the GPU has no Tensor
Core path for that precision (the FP32 CUDA-core peak is then the roof). FP32 is the CUDA-core (non-tensor) rate;
the other precisions are Tensor Core rates. GeForce cards: the FP16 and FP8 figures are those with FP16
accumulation (the highest the whitepapers print; kernels that accumulate in FP32 run at half that on GeForce),
BF16 and TF32 the FP32-accumulate ones — the roof is the hardware's limit, not a typical kernel's.

:func:`find_device` finds a row from a device name as drivers, NVML or trtexec write it ("NVIDIA A100-SXM4-40GB",
"NVIDIA A100 80GB PCIe", "NVIDIA H200", "Tesla T4", "NVIDIA GeForce RTX 4090"...). :func:`cpu_device` measures this
CPU once per machine (a float32 matrix product by numpy and by ONNX Runtime, and ONNX Runtime's 3×3 convolution, the
fastest counting, a large array copy, and the cache roof below: each the best of :data:`CPU_ROUNDS` uncontended
short rounds, :func:`_best_of`, about a second on a quiet machine, up to :data:`CPU_MEASURE_SECONDS` a figure on a
busy one) and caches the result in the workbench cache, keyed by the machine (:func:`machine_key`), with the load
each figure was measured under: labelled "measured on this CPU", never a published figure, and a stable figure: read
from the cache until ``refresh=True`` (``--remeasure``) or, for a roof measured under contention, the first quiet
moment measures again, keeping the best rate ever observed (a busy machine measures low, never high).

The cache roof (a hierarchical roofline, as Intel Advisor's cache-aware roofline and Nsight Compute's L2 roof
draw it): ``Device.cache_bytes`` is the last-level cache (:data:`L2_MIB` for GPUs, the CPU's largest cache from
Linux sysfs) and ``Device.cache_bandwidth`` the rate data that fits in it moves at (a CPU's: measured by
:func:`_measure_cpu_cache` on a working set that fits that cache, the same careful way as the DRAM figure; a GPU's:
:data:`L2_BANDWIDTH`, measured on the card with its source, None where none is: NVIDIA publishes L2 sizes, not
L2 bandwidth). :meth:`Device.memory_roof` picks the roof a layer is held against: the cache's when its bytes fit
in the cache, else DRAM's.
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
    cache_bandwidth: float | None = None  # bytes/s of data that fits in the cache; None when not known
    cache_source: str = ""  # where cache_bandwidth comes from (a measurement or a publication)
    cache_name: str = "cache"  # "L3 cache", "L2 cache"
    tolerance_pct: float = 5.0  # how far a layer may sit above a roof before it is a finding (the roof's own spread)
    contended: str = ""  # which measured figures other processes held the cores during ("" when none): maybe low

    def memory_roof(self, nbytes: float) -> tuple[float, str]:
        """(bytes/s, which roof) a layer moving ``nbytes`` is held against: the cache roof when its bytes fit in the
        cache and the cache's bandwidth is known (its data can stay there), else DRAM's."""
        if self.cache_bandwidth and self.cache_bytes and nbytes <= self.cache_bytes:
            return self.cache_bandwidth, self.cache_name
        return self.bandwidth, "DRAM"

    def in_unknown_cache(self, nbytes: float) -> bool:
        """Whether ``nbytes`` fit in a cache whose bandwidth is not known: DRAM is then not that layer's roof, and
        no roof is known for it."""
        return bool(self.cache_bytes and not self.cache_bandwidth and nbytes <= self.cache_bytes)

    def peak(self, precision: str, matrix: bool = True, tf32: bool = False) -> tuple[float, str]:
        """(FLOP/s, which peak: ``"fp16 tensor cores"``, ``"fp32 cuda cores"``, ``"fp32 measured"``) for a layer of
        ``precision``; ``matrix`` layers (Conv, Gemm, MatMul) use the Tensor Core peak of their precision, the
        others the FP32 CUDA-core peak (they are memory-bound anyway). FP32 matrix layers use the TF32 Tensor Core
        peak only when ``tf32`` (the build allowed TF32: TensorRT without ``--noTF32``), else the FP32 peak; uint8
        runs on the int8 Tensor Cores."""
        precision = (precision or "fp32").lower().replace("uint8", "int8")
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
        if self.cache_bytes:
            rows.append(
                (
                    f"{self.cache_name[0].upper()}{self.cache_name[1:]} roof",
                    f"{self.cache_bandwidth / GBS:g} GB/s for layers moving ≤ {self.cache_bytes / 2**20:g} MiB "
                    f"({self.cache_source})"
                    if self.cache_bandwidth
                    else f"{self.cache_bytes / 2**20:g} MiB, bandwidth not known ({self.cache_source or 'no source'})",
                )
            )
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


#: L2 bandwidth per GPU row: (GB/s, source). NVIDIA's datasheets and whitepapers give L2 sizes, not L2 bandwidth, so
#: a row has a figure only once it was measured on that card by ``benchmarks/gpu_memory_roofs.py`` (its source says
#: the card, the date and the script); without one, a layer whose bytes fit in the L2 has no known roof.
L2_BANDWIDTH: dict[str, tuple[float, str]] = {}


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
            l2_bandwidth, l2_source = L2_BANDWIDTH.get(
                label, (None, "size from the datasheet; NVIDIA publishes no L2 bandwidth")
            )
            return Device(
                label,
                peaks,
                bandwidth * GBS,
                source,
                "gpu",
                cache_bytes=cache * 2**20 if cache else None,
                cache_bandwidth=l2_bandwidth * GBS if l2_bandwidth else None,
                cache_source=l2_source,
                cache_name="L2 cache",
            )
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


def _runtime_kernels(a, b) -> list[tuple]:
    """ONNX Runtime's CPU kernels (MLAS: what the CPU runs are held against) as (run once, FLOPs) pairs: ``a @ b``
    and a 3×3 convolution of 256 channels at 14×14 (MLAS's convolution kernels outrun its matrix product on some
    CPUs: 224 against 208 GFLOP/s on this project's 2-core EPYC, where ResNet-50's convolutions ran at 110% of a
    matrix-product peak); none without ONNX Runtime."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return []

    def session(nodes, inputs, weights=()):
        spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(x.shape)) for name, x in inputs.items()]
        out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
        graph = helper.make_graph(nodes, "peak", spec, out, [numpy_helper.from_array(w, n) for n, w in weights])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        run = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run
        return lambda: run(None, inputs)

    n, (c, hw) = a.shape[0], (256, 14)
    x = np.random.default_rng(2).standard_normal((1, c, hw, hw), dtype=np.float32)
    w = np.random.default_rng(3).standard_normal((c, c, 3, 3), dtype=np.float32)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    return [
        (session([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}), 2.0 * n**3),
        (session([conv], {"x": x}, [("w", w)]), 2.0 * c * c * 9 * hw * hw),
    ]


#: The CPU roof is the best of this many uncontended short measurements (a moment of load elsewhere lowers one, not
#: all; the peak is a maximum, so the best round is the honest estimate).
CPU_ROUNDS = 5
#: A round in which this process's threads ran on less than this share of the cores' time (the scheduler's
#: accounting: other processes held them) is contended: it is measured, but rounds are added until
#: :data:`CPU_ROUNDS` uncontended ones ran, within :data:`CPU_MEASURE_SECONDS`.
UNCONTENDED_SHARE = 0.8
#: The most a measurement of one figure runs while it waits for uncontended rounds.
CPU_MEASURE_SECONDS = 4.0


@dataclass(frozen=True)
class Measured:
    """One measured rate: the best of its rounds, how many rounds ran, how many of them were uncontended, the spread
    (the best uncontended round's excess over the next, in %: how well the peak repeats, the roof's own tolerance) and
    the load it ran under (the 1-minute load average before it, the median share of the cores' time its threads
    got: less than all of it while other processes held them)."""

    rate: float
    rounds: int
    uncontended: int
    spread_pct: float
    load_1m: float | None
    cpu_share: float | None

    def describe(self, cores: int) -> str:
        load = f"load {self.load_1m:.2g} on {cores} cores, " if self.load_1m is not None else ""
        got = f"ran on {100 * self.cpu_share:.0f}% of the cores' time, " if self.cpu_share is not None else ""
        return (
            f"best of {self.rounds} rounds ({self.uncontended} uncontended; {load}{got}"
            f"the best {self.spread_pct:.1f}% above the next)"
        )


def _best_of(measure_once, rounds: int = CPU_ROUNDS, pause: float = 0.05) -> Measured:
    """The best of ``measure_once()`` (a rate) over ``rounds`` rounds whose threads were not contended (more rounds,
    within :data:`CPU_MEASURE_SECONDS`, while some were), rounds spread in time: a burst of load elsewhere spoils
    one round, not all."""
    import statistics

    from ..env import cpu_time_waited

    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    rates, shares = [], []
    uncontended = 0
    deadline = time.perf_counter() + CPU_MEASURE_SECONDS
    cores = _cores()
    while uncontended < rounds and (len(rates) < rounds or time.perf_counter() < deadline):
        before, t0 = cpu_time_waited(), time.perf_counter()
        rates.append(measure_once())
        after, wall = cpu_time_waited(), time.perf_counter() - t0
        share = min(1.0, (after[0] - before[0]) / 1e9 / (wall * cores)) if before and after and wall > 0 else None
        shares.append(share)
        uncontended += share is None or share >= UNCONTENDED_SHARE
        time.sleep(pause)
    calm = [r for r, share in zip(rates, shares) if share is None or share >= UNCONTENDED_SHARE]
    top = sorted(calm if len(calm) > 1 else rates)[-2:]  # the spread of the uncontended rounds where two ran
    best, spread = max(rates), 100.0 * (top[-1] / top[0] - 1.0)
    known = [s for s in shares if s is not None]
    share = round(statistics.median(known), 3) if known else None
    return Measured(best, len(rates), uncontended, round(spread, 1), load, share)


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _measure_cpu(rounds: int = CPU_ROUNDS, seconds: float = 0.08) -> tuple[Measured, Measured]:
    """(FLOP/s of the fastest of a float32 matrix product and ONNX Runtime's kernels, bytes/s of a large array
    copy), each :func:`_best_of` ``rounds`` uncontended rounds of about ``seconds`` (a busy machine measures low,
    never high)."""
    import numpy as np

    n = 2048  # large enough that the BLAS kernels, not the threading, set the rate
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    products = [(lambda: a @ b, 2.0 * n**3), *_runtime_kernels(a, b)]  # numpy's BLAS, ORT's kernels: (run, FLOPs)
    threads = _cores()
    src = np.ones(threads * 32 * 2**20 // 8)  # 32 MiB per core: far larger than the caches
    dst = np.empty_like(src)
    parts = list(zip(np.array_split(src, threads), np.array_split(dst, threads)))

    def copy():
        list(pool.map(lambda p: np.copyto(p[1], p[0]), parts))  # numpy releases the GIL while it copies

    def product_rate():
        best = 0.0
        for product, flops in products:
            deadline, runs = time.perf_counter() + seconds, 0
            while runs < 1 or time.perf_counter() < deadline:
                runs += 1
                t0 = time.perf_counter()
                product()
                best = max(best, flops / (time.perf_counter() - t0))
        return best

    def copy_rate():
        best, deadline = 0.0, time.perf_counter() + seconds / 2
        while True:
            t0 = time.perf_counter()
            copy()
            best = max(best, 2.0 * src.nbytes / (time.perf_counter() - t0))  # read + write
            if time.perf_counter() >= deadline:
                return best

    with ThreadPoolExecutor(threads) as pool:  # as many copies at once as cores: one core alone cannot fill DRAM
        for product, _ in products:
            product()  # warm-up: thread pool, caches
        copy()
        return _best_of(product_rate, rounds, seconds), _best_of(copy_rate, rounds, seconds)


def add_chain(elements: int, adds: int, threads: int, providers=("CPUExecutionProvider",)):
    """An ONNX Runtime session on ``providers`` running ``adds`` Adds one after another on a float32 vector of
    ``elements`` (each reads the last one's output and writes its own: the traffic a memory-bound layer's bytes
    count, input read once and output written once), and its feeds. The cache roof's measurement: this CPU's here,
    a GPU's L2 in ``benchmarks/gpu_memory_roofs.py``."""
    import numpy as np
    from onnx import TensorProto, helper

    from ..model.session_probe import ort_session

    vector = [elements]
    nodes = [helper.make_node("Add", ["x" if i == 0 else f"y{i}", "zero"], [f"y{i + 1}"]) for i in range(adds)]
    graph = helper.make_graph(
        nodes,
        "cache_roof",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, vector),
            helper.make_tensor_value_info("zero", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info(f"y{adds}", TensorProto.FLOAT, vector)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    session = ort_session(
        model.SerializeToString(), "disable", log=2, providers=providers, intra_op_num_threads=threads
    )
    feeds = {"x": np.ones(elements, dtype=np.float32), "zero": np.zeros(1, dtype=np.float32)}
    return session, feeds


#: The working sets the cache roof is measured on, as shares of the cache: small enough that input and output stay
#: in it, large enough that the next-smaller (per-core) cache does not hold them.
CACHE_WORKING_SETS = (0.25, 0.5)


def _measure_cpu_cache(cache_bytes: int, rounds: int = CPU_ROUNDS) -> Measured | None:
    """Bytes/s of data that fits in a cache of ``cache_bytes``: a chain of elementwise Adds by ONNX Runtime's CPU
    kernels (what CPU runs are held against) on vectors whose input and output together fill
    :data:`CACHE_WORKING_SETS` of the cache, bytes counted as a layer's are (its input read, its output written),
    :func:`_best_of` ``rounds`` uncontended rounds; None without ONNX Runtime."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    chains = []
    for share in CACHE_WORKING_SETS:
        elements = max(1024, int(share * cache_bytes) // 8)  # input + output, 4 bytes each
        adds = max(4, min(200, int(256 * 2**20 // (8 * elements))))  # about 256 MiB moved per run
        chains.append((*add_chain(elements, adds, _cores()), 8.0 * elements * adds))
    for session, feeds, _ in chains:
        session.run(None, feeds)  # warm-up: thread pool, the data into the cache

    def rate():
        best = 0.0
        for session, feeds, moved in chains:
            t0 = time.perf_counter()
            session.run(None, feeds)
            best = max(best, moved / (time.perf_counter() - t0))
        return best

    return _best_of(rate, rounds)


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


def _cpu_cache() -> tuple[int, str] | None:
    """(bytes, name) of this CPU's largest cache (Linux sysfs ``cpu0/cache/index*/size`` and ``level``: the last
    level, shared by the cores), or None where it is not told."""
    from pathlib import Path

    caches = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            size, level = (entry / "size").read_text().strip(), (entry / "level").read_text().strip()
        except OSError:
            continue
        match = re.fullmatch(r"(\d+)([KMG]?)", size)
        if match:
            caches.append((int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)], level))
    if not caches:
        return None
    size, level = max(caches)
    return size, f"L{level} cache" if level.isdigit() else "cache"


def _rounds(m: Measured) -> dict:
    return {k: getattr(m, k) for k in ("rounds", "uncontended", "spread_pct", "load_1m", "cpu_share")}


def _figures(flops: Measured, bandwidth: Measured, cache: Measured | None) -> dict:
    """The cached form of one measurement: each rate and how its rounds went."""
    named = (("fp32_flops", flops), ("bandwidth", bandwidth), ("cache_bandwidth", cache))
    return {
        **{key: m.rate for key, m in named if m is not None},
        "rounds": {key: _rounds(m) for key, m in named if m is not None},
    }


def cpu_device(refresh: bool = False) -> Device:
    """This CPU's roof: measured once per machine (:func:`machine_key`) and cached
    (``<cache>/roofline/cpu-<key>.json``), then read from the cache, so every roofline of this machine holds its
    layers against the same figure; ``refresh`` (``workbench roofline --remeasure``) measures again and keeps the
    best rate ever observed. Never remeasured unasked, with one exception: a figure measured while other processes
    held the cores (:func:`_contended`) is measured again the first time this machine is quiet (:func:`_quiet`),
    and only a higher rate replaces it (a roof that moved with the load would move every verdict held against it;
    this one only moves up, toward the hardware's). A cache from before the cache roof existed gains it (measured
    once, the rest kept).

    Each figure is the best of :data:`CPU_ROUNDS` uncontended rounds (:func:`_best_of`); the load it was measured
    under is in the cache and in ``source``; the spread of its rounds is the roof's tolerance (at least 5%)."""
    from ..paths import atomic_write, cache_dir

    key, machine = machine_key()
    cache = _cpu_cache()
    path = cache_dir("roofline") / f"cpu-{key}.json"
    data = None
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            data = None
    if data is not None and (data.get("machine") != key or not data.get("fp32_flops") or not data.get("bandwidth")):
        data = None
    if refresh or data is None or (_contended(data) and _quiet()):
        measured = _figures(*_measure_cpu(), _measure_cpu_cache(cache[0]) if cache else None)
        uncontended = all(r["uncontended"] >= CPU_ROUNDS for r in measured["rounds"].values())
        if data:  # a busy machine measures low: keep the best rate ever observed
            for figure in ("fp32_flops", "bandwidth", "cache_bandwidth"):
                if (data.get(figure) or 0) > (measured.get(figure) or 0):
                    measured[figure] = data[figure]
                    measured["rounds"][figure] = (data.get("rounds") or {}).get(figure, {})
        data = {
            "machine": key,
            "cpu": machine,
            **measured,
            "uncontended": uncontended,
            "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            "measurements": (data or {}).get("measurements", 0) + 1,
        }
        _save(path, data, atomic_write)
    elif cache and not data.get("cache_bandwidth"):  # cached before the cache roof: measure that figure alone
        found = _measure_cpu_cache(cache[0])
        if found is not None:
            data["cache_bandwidth"], data["cache_measured"] = found.rate, time.strftime("%Y-%m-%d %H:%M:%S")
            data["rounds"] = {**(data.get("rounds") or {}), "cache_bandwidth": _rounds(found)}
            _save(path, data, atomic_write)
    runs = data.get("measurements", 1)
    rounds = data.get("rounds") or {}
    cores = _cores()

    def how(figure: str) -> str:
        r = rounds.get(figure)
        return Measured(data[figure], **r).describe(cores) if r else f"best of {CPU_ROUNDS} short measurements"

    # the roof's tolerance: the spread of the uncontended rounds of each figure measured uncontended (a contended
    # figure's rounds spread with the load, not with the measurement)
    spreads = [
        float(r.get("spread_pct") or 0)
        for r in (rounds.get(f) or {} for f in ("fp32_flops", "bandwidth", "cache_bandwidth"))
        if r.get("uncontended", 0) >= CPU_ROUNDS
    ]
    source = (
        f"measured on this CPU ({machine}, {data['measured']}"
        f"{f', in each of {runs} sessions the best kept' if runs > 1 else ''}; cached, remeasured only with "
        f"--remeasure): the fastest of a float32 2048×2048 matrix product (numpy, ONNX Runtime) and ONNX Runtime's "
        f"3×3 convolution (256 channels, 14×14), {how('fp32_flops')}; "
        f"a 32 MiB-per-core array copy, {how('bandwidth')}"
    )
    labels = {"fp32_flops": "the peak", "bandwidth": "the DRAM bandwidth", "cache_bandwidth": "the cache bandwidth"}
    contended = "; ".join(
        f"{labels[f]} with {r['uncontended']} of {r['rounds']} rounds uncontended (load {r['load_1m']:g})"
        for f, r in rounds.items()
        if f in labels and r.get("rounds") and r.get("uncontended", 0) < CPU_ROUNDS
    )
    cache_bandwidth = data.get("cache_bandwidth") if cache else None
    cache_source = (
        f"measured on this CPU ({data.get('cache_measured') or data['measured']}): ONNX Runtime's elementwise Add "
        f"on working sets of {' and '.join(f'{s:g}' for s in CACHE_WORKING_SETS)} of the {cache[0] / 2**20:g} MiB "
        f"{cache[1]} (sysfs), {how('cache_bandwidth')}"
        if cache_bandwidth
        else ""
    )
    return Device(
        machine,
        {"fp32": data["fp32_flops"]},
        data["bandwidth"],
        source,
        "cpu",
        cache_bytes=cache[0] if cache else None,
        measured=data["measured"],
        cache_bandwidth=cache_bandwidth,
        cache_source=cache_source,
        cache_name=cache[1] if cache else "cache",
        tolerance_pct=max([5.0, *spreads]),
        contended=contended,
        notes=(
            (
                "Measured on this CPU: every precision is held against the float32 matrix-product peak "
                "(int8 and fp16 kernels may exceed it)."
            ),
        ),
    )


def _contended(data: dict) -> bool:
    """Whether a cached roof may be low: its last measurement ran a figure with fewer than :data:`CPU_ROUNDS`
    uncontended rounds, or it was cached before rounds were recorded."""
    return not data.get("uncontended")


def _quiet() -> bool:
    """Whether this machine is quiet enough now to measure its peak: a 1-minute load average below half its cores."""
    try:
        return os.getloadavg()[0] < 0.5 * _cores()
    except OSError:
        return False


def _save(path, data: dict, atomic_write) -> None:
    try:
        atomic_write(path, json.dumps(data))
    except OSError:
        pass  # a read-only cache: measure again next time
