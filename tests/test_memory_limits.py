"""Memory is sized before it is spent: under a real limit (``RLIMIT_AS`` set in a child process, as ``ulimit -v``
or ``prlimit --as`` do) every large input, calibration or evaluation set ends in a result or one line naming the
estimate, the limit and the fix; never a killed process or a MemoryError read as something else. Sizes stay small:
the limit is scaled down (the child's current size plus 600 MiB), not the data up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]
HEADROOM = 600 << 20


def _under_limit(tmp_path: Path, body: str, limit: str = "AS") -> dict:
    """Run ``body`` (which sets ``result``) in a child whose address space (``limit`` "AS"; "DATA": its private
    memory, as ``ulimit -d``) may grow ``HEADROOM`` past its size once workbench, numpy and ONNX Runtime are
    imported; its result as JSON (``error``: the one line it raised)."""
    script = textwrap.dedent(
        """
        import json, resource, sys
        import numpy as np
        import onnxruntime
        import workbench as wb
        from workbench.errors import WorkbenchError
        from workbench.model.onnx_model import load_model
        from workbench.memory import _process_bytes
        limit = _process_bytes("Vm{field}") + {headroom}
        resource.setrlimit(resource.RLIMIT_{limit}, (limit, limit))
        result = {{}}
        try:
        {body}
        except WorkbenchError as e:
            result["error"] = str(e)
        print(json.dumps(result))
        """
    ).format(
        headroom=HEADROOM,
        field="Size" if limit == "AS" else "Data",
        limit=limit,
        body=textwrap.indent(textwrap.dedent(body), "    "),
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _model(path: Path, shape, reduce: bool = False) -> Path:
    """y = ReduceMean(x) over all but the first axis when ``reduce`` (a small output), else Relu(x)."""
    if reduce:
        node = helper.make_node("ReduceMean", ["x"], ["y"], axes=list(range(1, len(shape))), keepdims=0, name="m")
        out = [shape[0]]
    else:
        node = helper.make_node("Relu", ["x"], ["y"], name="r")
        out = shape
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _one_line_with_the_estimate(result: dict) -> str:
    error = result.get("error", "")
    assert error and "\n" not in error, result
    assert re.search(
        r"would take about [\d.,]+ [MG]iB, more than this process may still use \([\d.,]+ [MG]iB of", error
    )
    assert "left under the address-space limit" in error and "--max-memory" in error
    return error


def test_generated_inputs_too_big_for_the_limit_are_refused_before_allocation(tmp_path):
    _model(tmp_path / "m.onnx", ["batch", 3, 128, 128])
    result = _under_limit(
        tmp_path,
        """
        config = wb.BuildConfig(iterations=2, warmup_ms=0, trials=1, shapes=(("x", (8192, 3, 128, 128)),))
        wb.profile(load_model("m.onnx"), config=config)
        """,
    )
    error = _one_line_with_the_estimate(result)
    assert "x:8192x3x128x128" in error and "smaller batch" in error


def test_generated_inputs_are_drawn_in_their_dtype(tmp_path):
    """A float32 input of 400 MiB is made under a 600 MiB headroom (drawn as float64 first, it needed 1.2 GiB)."""
    _model(tmp_path / "m.onnx", ["batch", 1024, 1024])
    result = _under_limit(
        tmp_path,
        """
        from workbench.model.inputs import make_inputs
        arrays = make_inputs(load_model("m.onnx"), {"x": (100, 1024, 1024)})
        result["dtype"], result["shape"] = str(arrays["x"].dtype), list(arrays["x"].shape)
        result["std"] = float(arrays["x"][0].std())
        """,
    )
    assert result == {"dtype": "float32", "shape": [100, 1024, 1024], "std": pytest.approx(1.0, abs=0.01)}


def test_a_calibration_folder_too_big_once_decoded_is_refused_before_decoding_it_all(tmp_path):
    from PIL import Image

    _model(tmp_path / "m.onnx", [1, 3, 1024, 1024])
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(64):  # 64 x 12 MiB once resized to 1024x1024 float32: 768 MiB
        Image.new("RGB", (4, 4), (i, i, i)).save(folder / f"{i:03d}.png")
    result = _under_limit(
        tmp_path,
        """
        from workbench.precision.calibration import load_calibration
        load_calibration("calib", load_model("m.onnx"))
        """,
    )
    error = _one_line_with_the_estimate(result)
    assert "64 calibration images" in error and "fewer images" in error


def test_a_npy_larger_than_the_limit_is_used_memory_mapped_for_accuracy(tmp_path):
    """900 MiB of evaluation samples (a sparse file) under a 600 MiB headroom: read a chunk at a time."""
    _model(tmp_path / "m.onnx", ["batch", 256, 1024], reduce=True)
    samples = 900
    with open(tmp_path / "eval.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (samples, 256, 1024)})
        f.truncate(f.tell() + samples * 256 * 1024 * 4)
    result = _under_limit(
        tmp_path,
        """
        from workbench.precision.accuracy import measure_accuracy
        from workbench.precision.variant import make_variant
        model = load_model("m.onnx")
        accuracy = measure_accuracy(make_variant(model, "fp32"), "eval.npy", batch_size=16)
        result["samples"] = accuracy.samples
        result["max_abs"] = max(a.max_abs_error for a in accuracy.outputs)
        """,
        limit="DATA",  # the file's pages are the page cache's, not the process's own memory
    )
    assert result == {"samples": samples, "max_abs": 0.0}
    result = _under_limit(  # mapped beyond the address space the process may have: one line, not "not a .npy"
        tmp_path,
        """
        from workbench.model.inputs import load_inputs
        load_inputs("eval.npy", load_model("m.onnx"))
        """,
    )
    assert "ran out of memory" in result["error"] and "not a .npy" not in result["error"]


def test_a_npz_member_named_without_npy_gets_the_header_check(tmp_path):
    from workbench.errors import WorkbenchError
    from workbench.model.inputs import MAX_ARRAY_FILE_BYTES, load_inputs
    from workbench.model.onnx_model import load_model

    model = load_model(_model(tmp_path / "m.onnx", ["batch", 4]))
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as archive:
        with archive.open("x", "w") as member:  # no .npy in the name; numpy.load still opens it as 'x'
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40, 4)}
            )
    with pytest.raises(WorkbenchError, match=f"more than the {MAX_ARRAY_FILE_BYTES:,}") as e:
        load_inputs(tmp_path / "big.npz", model)
    assert "\n" not in str(e.value)


def test_the_limit_is_the_tightest_one_this_process_has(monkeypatch):
    from workbench.memory import memory_left, parse_max_memory

    monkeypatch.setenv("WORKBENCH_MAX_MEMORY", "64M")
    left, source = memory_left()
    assert source == "--max-memory 64.0 MiB" and left < 64 << 20
    assert parse_max_memory("2G") == 2 << 30 and parse_max_memory("512MiB") == 512 << 20


def test_an_intermediate_too_big_for_the_limit_is_refused_before_the_session_is_made(tmp_path):
    """x [1, n] -> the outer product [1, n, n]: 64 KiB of input, 1 GiB in one intermediate at n = 16,384."""
    graph = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["x", "a2"], ["col"], name="col"),
            helper.make_node("Unsqueeze", ["x", "a1"], ["row"], name="row"),
            helper.make_node("Mul", ["col", "row"], ["outer"], name="outer"),
            helper.make_node("ReduceSum", ["outer"], ["y"], keepdims=0, name="sum"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [helper.make_tensor("a2", TensorProto.INT64, [1], [2]), helper.make_tensor("a1", TensorProto.INT64, [1], [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "outer.onnx"))
    result = _under_limit(
        tmp_path,
        """
        model = load_model("outer.onnx")
        config = wb.BuildConfig(iterations=2, warmup_ms=0, trials=1, shapes=(("x", (1, 16384)),))
        wb.profile(model, config=config)
        """,
    )
    error = _one_line_with_the_estimate(result)
    assert error.startswith("Running outer (fp32) at x:1x16384") and "smaller batch" in error
    import workbench as wb
    from workbench.model.onnx_model import load_model

    config = wb.BuildConfig(iterations=2, warmup_ms=0, trials=1, shapes=(("x", (1, 64)),))
    assert wb.profile(load_model(tmp_path / "outer.onnx"), config=config).latency.samples == 2  # a small one runs
