"""How many of the ONNX package's own test models that ONNX Runtime runs does ``load_model`` load?

The public edge-case suite is the model test data shipped inside the ``onnx`` package (``onnx/backend/test/data``):
``simple``, ``pytorch-operator``, ``pytorch-converted``, ``light`` and ``real`` by default, ``node`` too with
``--node``; plus ``crafted``: the exporter patterns of issue 10 (outputs without shape or type, declared shapes
inference disagrees with). For each model: does ONNX Runtime (CPU) create a session and run it on the test's own inputs; does
``workbench.load_model`` load it (and with how many checker warnings). Prints the counts and the models ONNX
Runtime runs that the workbench refuses.

    .venv/bin/python benchmarks/edge_models.py [--node] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import onnx
from onnx import numpy_helper


def _inputs(case: Path, session) -> dict | None:
    data = case / "test_data_set_0"
    files = sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1])) if data.is_dir() else []
    names = [i.name for i in session.get_inputs()]
    if len(files) != len(names):
        return None
    feed = {}
    for name, f in zip(names, files):
        t = onnx.TensorProto()
        t.ParseFromString(f.read_bytes())
        feed[name] = numpy_helper.to_array(t)
    return feed


def ort_runs(model_path: Path) -> bool:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        feed = _inputs(model_path.parent, session)
        if feed is not None:
            session.run(None, feed)
        return True
    except Exception:  # noqa: BLE001 - any refusal by ONNX Runtime counts as "does not run"
        return False


def crafted(folder: Path) -> list[Path]:
    """Exporter patterns the issue names, ONNX Runtime runs them all or refuses them on its own: graph outputs
    without a shape or a type, declared output shapes (rank, dims, symbols) inference disagrees with."""
    from onnx import TensorProto, helper

    outputs = {
        "no_shape": helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
        "no_type": onnx.ValueInfoProto(name="y"),
        "wrong_dims": helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5]),
        "wrong_rank": helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]),
        "wrong_batch": helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 4]),
        "symbolic": helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "features"]),
        "wrong_type": helper.make_tensor_value_info("y", TensorProto.INT64, [1, 4]),
    }
    paths = []
    for name, output in outputs.items():
        middle = helper.make_tensor_value_info("h", TensorProto.FLOAT, [3, 3])  # a wrong intermediate shape too
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["h"], name="r1"), helper.make_node("Relu", ["h"], ["y"], name="r2")],
            name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [output],
            value_info=[middle] if name == "wrong_dims" else [],
        )
        (folder / name).mkdir()
        path = folder / name / "model.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", action="store_true", help="also the ~1,700 single-operator models of 'node'")
    parser.add_argument("--verbose", action="store_true", help="print every model ONNX Runtime runs that is refused")
    args = parser.parse_args(argv)

    from workbench import WorkbenchError, load_model

    root = Path(onnx.__file__).parent / "backend" / "test" / "data"
    groups = ["simple", "pytorch-operator", "pytorch-converted", "light", "real"] + (["node"] if args.node else [])
    total = runs = loads = warned = 0
    refused = []
    tmp = Path(tempfile.mkdtemp(prefix="edge-models-"))
    for group in ["crafted"] + groups:
        models = crafted(tmp) if group == "crafted" else sorted((root / group).glob("**/*.onnx"))
        g_runs = g_loads = 0
        for path in models:
            total += 1
            if not ort_runs(path):
                continue
            runs += 1
            g_runs += 1
            try:
                model = load_model(path)
                loads += 1
                g_loads += 1
                warned += bool(getattr(model, "warnings", ()))
            except WorkbenchError as e:
                refused.append(
                    (f"{group}/{path.parent.name}" if group == "crafted" else path.relative_to(root), str(e))
                )
        print(f"{group:18s} models {len(models):5d}  ONNX Runtime runs {g_runs:5d}  workbench loads {g_loads:5d}")
    print(
        f"{'all':18s} models {total:5d}  ONNX Runtime runs {runs:5d}  workbench loads {loads:5d} "
        f"({warned} with checker warnings)"
    )
    for path, why in refused if args.verbose else refused[:10]:
        print(f"  refused: {path}: {why[:160]}")
    return 0 if loads == runs else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
