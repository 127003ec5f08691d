"""Measure a GPU's L2 and DRAM bandwidth the way the CPU's cache roof is measured (docs/roofline.md).

NVIDIA publishes its GPUs' L2 sizes, not their L2 bandwidth, so the device table (``workbench.analysis.devices``)
has no cache roof for a GPU until one is measured on the card. This script measures it: ONNX Runtime's CUDA
provider runs a chain of elementwise ``Add`` kernels (:func:`workbench.analysis.devices.add_chain`, the same
graph the CPU's cache roof uses), inputs and outputs resident on the GPU (I/O binding), on vectors whose input and
output together fill 1/4 and 1/2 of the L2 (the cache roof) and 4 GiB (DRAM); CUPTI records every kernel, and each
kernel's bandwidth is its bytes (input read once, output written once, as a layer's are counted) over its own GPU
duration, so launch gaps do not count. The figure is the best kernel of every round (the peak is a maximum), with
the median beside it.

Without CUPTI (or on ``--provider CPUExecutionProvider``, which the test suite uses) each round is timed by the host
clock around the whole chain and the output says so.

Prints a Markdown table and, with ``--out FILE``, writes JSON: the card, its L2 size, both figures, how they were
measured and when, for the device table's row (its source must say "measured on <card>, <date>, by
benchmarks/gpu_memory_roofs.py")::

    python benchmarks/gpu_memory_roofs.py --out /tmp/h100-roofs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

GIB = 2**30
MIB = 2**20


def _bound_run(session, feeds: dict, device: str, index: int):
    """One run with the inputs copied to ``device`` once and the output left there."""
    import onnxruntime as ort

    binding = session.io_binding()
    values = {k: ort.OrtValue.ortvalue_from_numpy(v, device, index) for k, v in feeds.items()}
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, device, index)

    def run():
        session.run_with_iobinding(binding)

    run.values = values
    return run


def measure(working_set: int, provider: str, index: int, rounds: int, adds: int) -> dict:
    """Bandwidth (bytes/s) of ``adds`` chained Adds whose input and output together take ``working_set`` bytes."""
    from workbench.analysis.devices import add_chain
    from workbench.backends.cupti import Recorder, unavailable

    elements = max(1024, working_set // 8)
    session, feeds = add_chain(elements, adds, 1, providers=[provider])
    device = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
    run = _bound_run(session, feeds, device, index)
    run()  # warm-up: allocations, the data into the cache
    moved = 8.0 * elements  # per Add: the input read, the output written
    why_not = unavailable() if device == "cuda" else "not a GPU provider"
    rates, method = [], "CUPTI kernel durations"
    for _ in range(rounds):
        if why_not:
            t0 = time.perf_counter()
            run()
            rates.append(moved * adds / (time.perf_counter() - t0))
            continue
        with Recorder() as recorder:
            run()
        kernels = [a for a in recorder.trace.activities if a.kind == "kernel" and a.duration_ns > 0]
        if recorder.failed or len(kernels) < adds:
            why_not = recorder.failed or f"CUPTI recorded {len(kernels)} kernels for {adds} Adds"
            continue
        rates += [moved / (a.duration_ns * 1e-9) for a in kernels]
    if why_not:
        method = f"host clock around {adds} Adds ({why_not})"
    return {
        "working_set_bytes": 8 * elements,
        "best": max(rates),
        "median": statistics.median(rates),
        "samples": len(rates),
        "method": method,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="CUDAExecutionProvider", help="ONNX Runtime provider to measure")
    parser.add_argument("--device", type=int, default=0, help="GPU index")
    parser.add_argument("--l2-mib", type=float, help="L2 size (MiB); default: the device table's row for the card")
    parser.add_argument("--dram-gib", type=float, default=4.0, help="DRAM working set (GiB)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per working set")
    parser.add_argument("--adds", type=int, default=50, help="Adds per round")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from workbench.analysis.devices import find_device
    from workbench.env import gpus

    cards = gpus()
    card = cards[args.device]["name"] if len(cards) > args.device else "no NVIDIA GPU"
    row = find_device(card)
    l2 = args.l2_mib * MIB if args.l2_mib else (row.cache_bytes if row and row.cache_bytes else 50 * MIB)
    sets = [("L2 1/4", int(l2 / 4)), ("L2 1/2", int(l2 / 2)), ("DRAM", int(args.dram_gib * GIB))]
    results = {name: measure(size, args.provider, args.device, args.rounds, args.adds) for name, size in sets}
    print(f"| {card} ({args.provider}) | working set | best GB/s | median GB/s | samples | method |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['working_set_bytes'] / MIB:.1f} MiB | {r['best'] / 1e9:.0f} | {r['median'] / 1e9:.0f} | "
            f"{r['samples']} | {r['method']} |"
        )
    if args.out:
        figures = {
            "card": card,
            "table_row": row.name if row else None,
            "l2_bytes": int(l2),
            "cache_bandwidth": max(results["L2 1/4"]["best"], results["L2 1/2"]["best"]),
            "dram_bandwidth": results["DRAM"]["best"],
            "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            "by": "benchmarks/gpu_memory_roofs.py",
            "results": results,
        }
        args.out.write_text(json.dumps(figures, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
