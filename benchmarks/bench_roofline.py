"""Time the roofline's work counts on a large graph: per-node counts (shape inference included) and the mapping of
fused layers onto them, against the ONNX shape inference alone (the floor: every count needs it).

    .venv/bin/python benchmarks/bench_roofline.py [--blocks 2000] [--repeats 3]

The model is a chain of ``--blocks`` MatMul + Add + ReLU blocks (3 nodes each); the fused layers are one per block,
as TensorRT would fuse them. Prints the median of ``--repeats`` runs of each step and the ratio to shape inference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onnx import TensorProto, helper, numpy_helper, shape_inference  # noqa: E402

from workbench.model.onnx_model import Model  # noqa: E402
from workbench.model.node_cost import model_work  # noqa: E402


def chain(blocks: int, width: int = 64) -> Model:
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        inits += [
            numpy_helper.from_array(np.ones((width, width), np.float32), f"w{i}"),
            numpy_helper.from_array(np.ones((width,), np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"mm{i}"),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        x = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", width])],
        inits,
    )
    return Model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), name="chain")


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = chain(args.blocks)
    shapes = {"x": (8, 64)}
    infer = median_seconds(lambda: shape_inference.infer_shapes(model.proto, data_prop=True), args.repeats)
    work = model_work(model, shapes)
    count = median_seconds(lambda: model_work(model, shapes), args.repeats)
    groups = [[f"mm{i}", f"add{i}", f"relu{i}"] for i in range(args.blocks)]
    fuse = median_seconds(lambda: [work.group(g) for g in groups], args.repeats)
    print(f"{3 * args.blocks} nodes, {work.total_flops / 1e6:.1f} MFLOP")
    print(f"shape inference alone      {infer:8.3f} s")
    print(f"model_work (per node)      {count:8.3f} s  ({count / infer:.1f}x shape inference)")
    print(f"{args.blocks} fused layers mapped {fuse:8.3f} s")


if __name__ == "__main__":
    main()
