"""How many of the ONNX package's own test models that ONNX Runtime runs does ``load_model`` load?

The public edge-case suite is the model test data shipped inside the ``onnx`` package (``onnx/backend/test/data``):
``simple``, ``pytorch-operator``, ``pytorch-converted``, ``light`` and ``real`` by default, ``node`` too with
``--node``. For each model: does ONNX Runtime (CPU) create a session and run it on the test's own inputs; does
``workbench.load_model`` load it (and with how many checker warnings). Prints the counts and the models ONNX
Runtime runs that the workbench refuses.

    .venv/bin/python benchmarks/edge_models.py [--node] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import sys
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
    for group in groups:
        models = sorted((root / group).glob("**/*.onnx"))
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
                refused.append((path.relative_to(root), str(e)))
        print(f"{group:18s} models {len(models):5d}  ONNX Runtime runs {g_runs:5d}  workbench loads {g_loads:5d}")
    print(f"{'all':18s} models {total:5d}  ONNX Runtime runs {runs:5d}  workbench loads {loads:5d} "
          f"({warned} with checker warnings)")
    for path, why in refused if args.verbose else refused[:10]:
        print(f"  refused: {path}: {why[:160]}")
    return 0 if loads == runs else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
