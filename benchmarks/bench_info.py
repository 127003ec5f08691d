"""What a model summary (``workbench info``, ``load_model``) costs for a model with a large external-data file:
time and peak memory, in a fresh process. The weights are hashed by streaming, never held in memory.

    .venv/bin/python benchmarks/bench_info.py [--mb 1024]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_MEASURE = """
import resource, sys, time
import workbench as wb
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
model = wb.load_model(sys.argv[1])
model.summary()
print(time.perf_counter() - start, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def make_model(folder: Path, megabytes: float) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    side = max(16, int((megabytes * 2**20 / 4) ** 0.5))
    path = folder / "big.onnx"
    with open(folder / "big.data", "wb") as f:  # written in slices: the benchmark itself stays small
        row = np.ones((64, side), np.float32).tobytes()
        for _ in range(0, side, 64):
            f.write(row)
    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[side, side], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "big.data"), ("offset", "0"), ("length", str(side * side * 4))):
        w.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, side])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with open(folder / "big.data", "r+b") as f:  # exactly the length the tensor declares
        f.truncate(side * side * 4)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1024.0, help="size of the external-data file (default 1024)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-info-") as tmp:
        t = time.perf_counter()
        path = make_model(Path(tmp), args.mb)
        size = (Path(tmp) / "big.data").stat().st_size / 2**20
        print(f"model with {size:,.0f} MiB of external data (made in {time.perf_counter() - t:.1f} s)")
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True)
        seconds, mib = map(float, out.stdout.split())
        print(f"load_model + summary      {seconds:8.2f} s")
        print(f"peak memory growth        {mib:8.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
