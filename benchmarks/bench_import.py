"""What a large trtexec import costs: a synthetic ``--exportProfile`` JSON (and its ``--exportLayerInfo``) of about
``--mb`` megabytes, then import (parse + join), save into a store with its report, load back, and compare it with
itself. Prints the time and peak resident memory of each step, each measured in a fresh process.

    .venv/bin/python benchmarks/bench_import.py [--mb 200] [--keep DIR]

Measured here (2 cores shared with 7 other jobs, so wall times are high; issue 10): ``--mb 200`` = 1,333,333 layers,
a 204 MB profile JSON plus its 417 MB layer information: import 392 s (2.1 GiB peak), save with its report 83 s,
load 55 s, compare with itself 145 s (1.8 GiB peak); the table is in docs/reliability.md. The join that made this quadratic (a pandas ``.loc`` assignment per
layer) is gone: at 26,000 layers the import went from 61.7 s to 4.0 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

#: bytes of one profile record, about (names like "/block12/conv_0001234 + /block12/relu_0001234")
_RECORD = 150


def make_files(folder: Path, megabytes: float) -> int:
    layers = max(10, int(megabytes * 1e6 / _RECORD))
    names = [f"/block{i // 100}/conv_{i:07d} + /block{i // 100}/relu_{i:07d}" for i in range(layers)]
    profile = [{"count": 50}] + [
        {"name": n, "timeMs": 0.5 + (i % 7) * 0.01, "averageMs": 0.01, "medianMs": 0.01, "percentage": 100 / layers}
        for i, n in enumerate(names)
    ]
    (folder / "model.profile.json").write_text(json.dumps(profile))
    info = {
        "Layers": [
            {
                "Name": n,
                "LayerType": "CaskConvolution",
                "Inputs": [
                    {"Name": f"t{i}", "Format/Datatype": "Row major linear FP32", "Dimensions": [1, 64, 56, 56]}
                ],
                "Outputs": [
                    {"Name": f"t{i + 1}", "Format/Datatype": "Row major linear FP32", "Dimensions": [1, 64, 56, 56]}
                ],
            }
            for i, n in enumerate(names)
        ],
        "Bindings": ["t0", f"t{layers}"],
    }
    (folder / "model.layers.json").write_text(json.dumps(info))
    return layers


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _import(folder: str, workspace: str, queue) -> None:
    from workbench.interop.trtexec import import_trtexec
    from workbench.results.store import Store
    from workbench.views.report import write_report

    base = _peak_mib()
    t = time.perf_counter()
    run = import_trtexec([folder])
    parsed = time.perf_counter() - t
    t = time.perf_counter()
    stored = Store(workspace).add(run, finish=lambda saved: write_report(saved, saved.directory / "report.html"))
    queue.put(
        {
            "import (parse + join)": parsed,
            "save with report": time.perf_counter() - t,
            "peak MiB": _peak_mib() - base,
            "id": stored.id,
            "layers": len(run.layers),
        }
    )


def _compare(workspace: str, run_id: str, queue) -> None:
    from workbench.analysis.compare import compare
    from workbench.results.store import Store

    base = _peak_mib()
    t = time.perf_counter()
    run = Store(workspace).get(run_id)
    loaded = time.perf_counter() - t
    t = time.perf_counter()
    comparison = compare([run, run])
    comparison.to_text()
    queue.put({"load run": loaded, "compare with itself": time.perf_counter() - t, "peak MiB": _peak_mib() - base})


def _in_child(target, *args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of the profile JSON in MB (default 200)")
    parser.add_argument("--keep", help="write the files and the workspace here instead of a temp folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        root = Path(args.keep or tmp)
        (root / "files").mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        layers = make_files(root / "files", args.mb)
        size = sum(p.stat().st_size for p in (root / "files").iterdir()) / 1e6
        prof = (root / "files" / "model.profile.json").stat().st_size / 1e6
        print(
            f"synthetic files: {layers:,} layers, profile JSON {prof:.0f} MB, {size:.0f} MB in all "
            f"(made in {time.perf_counter() - t:.1f} s)"
        )
        imported = _in_child(_import, str(root / "files"), str(root / "ws"))
        for key in ("import (parse + join)", "save with report"):
            print(f"{key:24s} {imported[key]:8.1f} s")
        print(f"{'peak memory (import)':24s} {imported['peak MiB']:8.0f} MiB")
        compared = _in_child(_compare, str(root / "ws"), imported["id"])
        for key in ("load run", "compare with itself"):
            print(f"{key:24s} {compared[key]:8.1f} s")
        print(f"{'peak memory (compare)':24s} {compared['peak MiB']:8.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
