"""Nothing escapes through sparse data, linked files or a file changed under the workbench, and a rebuilt history
keeps what it had: each way in gets one line (never a traceback) and nothing outside is read or written."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from support import signal_child

import workbench as wb
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.model.onnx_model import load_model
from workbench.results.store import DB_NAME, LOCK_NAME, Store

QUICK = wb.BuildConfig(iterations=2, warmup_ms=0, trials=1)
SECRET = b"SECRET-OUTSIDE-" * 8  # 120 bytes: long enough for any tensor below


def _sparse_model(folder: Path, location: str, *, write_data: bool = False) -> Path:
    """y = x @ W, W a 4x4 sparse initializer whose 4 values are external data at ``location``."""
    values = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        values.external_data.add(key=key, value=value)
    indices = helper.make_tensor("W_idx", TensorProto.INT64, [4], [0, 5, 10, 15])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, [4, 4])],
    )
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "m.onnx"))
    if write_data:
        (folder / location).write_bytes(np.arange(1, 5, dtype=np.float32).tobytes())
    return folder / "m.onnx"


def _secret(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(SECRET)
    return secret


# ---- sparse initializers get the containment of dense ones ------------------------------------------------------


@pytest.mark.parametrize("way", ["symlink", "hardlink", "linked folder", "absolute", "dotdot"])
def test_sparse_external_data_out_of_the_model_folder_is_refused_by_every_command(tmp_path, way, capsys):
    secret = _secret(tmp_path)
    folder = tmp_path / "model"
    location = {"absolute": str(secret), "dotdot": "../outside/secret.bin", "linked folder": "d/secret.bin"}.get(
        way, "w.bin"
    )
    model = _sparse_model(folder, location)
    if way == "symlink":
        os.symlink(secret, folder / "w.bin")
    elif way == "hardlink":
        os.link(secret, folder / "w.bin")
    elif way == "linked folder":
        os.symlink(secret.parent, folder / "d")
    with pytest.raises(WorkbenchError, match="leaves its folder|link") as e:
        load_model(model)
    assert "\n" not in str(e.value) and "SECRET" not in str(e.value)
    for command in (
        ["info"],
        ["profile", "--iterations", "3", "--trials", "1"],
        ["compile", "--backend", "onnxruntime"],
    ):
        out = tmp_path / "out.onnx"
        extra = ["--out", str(out)] if command[0] == "compile" else []
        assert main([*command, str(model), *extra]) == 2, command
        assert not out.exists()
    captured = capsys.readouterr()
    assert "SECRET" not in captured.out + captured.err
    assert len(captured.err.strip().splitlines()) == 3  # one line per command


def test_sparse_external_data_inside_the_folder_loads_and_runs(tmp_path):
    model = load_model(_sparse_model(tmp_path / "model", "w.bin", write_data=True))
    run = wb.profile(model, config=QUICK)
    x = np.ones((1, 4), np.float32)
    (y,) = run.engine.infer({"x": x}).values() if getattr(run, "engine", None) else (None,)
    assert run.latency.mean_ms > 0
    assert y is None or np.allclose(y, [[1, 2, 3, 4]])


# ---- the history is never written through a link ----------------------------------------------------------------


@pytest.mark.parametrize("name", [DB_NAME, f"{DB_NAME}-wal", LOCK_NAME])
@pytest.mark.parametrize("dangling", [False, True])
def test_a_linked_index_or_lock_is_refused_and_its_target_untouched(tmp_path, name, dangling):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    target = tmp_path / "elsewhere" / "foreign.sqlite"
    target.parent.mkdir()
    if not dangling:
        with sqlite3.connect(target) as con:
            con.execute("CREATE TABLE mine (x)")
        con.close()
    before = target.read_bytes() if target.exists() else None
    os.symlink(target, workspace / name)
    for action in (lambda: Store(workspace), lambda: Store.rebuild(workspace)):
        with pytest.raises(WorkbenchError, match="symbolic link") as e:
            action()
        assert "\n" not in str(e.value) and name in str(e.value)
    assert (target.read_bytes() if target.exists() else None) == before  # neither created nor changed
    assert sorted(p.name for p in target.parent.iterdir()) == (["foreign.sqlite"] if not dangling else [])


def test_the_cli_says_one_line_for_a_linked_index(tmp_path, monkeypatch, capsys):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.symlink(tmp_path / "nowhere.sqlite", workspace / DB_NAME)
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(workspace))
    assert main(["history"]) == 2
    err = capsys.readouterr().err.strip()
    assert "symbolic link" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "nowhere.sqlite").exists()


# ---- calibration folders ----------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*calibration samples is outside")
def test_a_calibration_image_linked_from_outside_the_folder_is_refused(tmp_path):
    from PIL import Image

    from workbench.precision.calibration import load_calibration

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "img.onnx"))
    model = load_model(tmp_path / "img.onnx")
    folder = tmp_path / "calib"
    folder.mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / "a.png")
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "private.png")
    assert load_calibration(folder, model).samples == 1
    os.symlink(folder / "a.png", folder / "b.png")  # a link inside the folder is one of its images
    assert load_calibration(folder, model).samples == 2
    os.symlink(tmp_path / "private.png", folder / "c.png")
    with pytest.raises(WorkbenchError, match="symbolic link out of the folder") as e:
        load_calibration(folder, model)
    assert "c.png" in str(e.value) and "\n" not in str(e.value)


# ---- recipe options are checked by type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("keep_fp32_op_types", 7, "keep_fp32_op_types"),
        ("keep_fp32_op_types", [7], "keep_fp32_op_types"),
        ("data_max", "big", "data_max"),
        ("keep_io_types", "no", "keep_io_types"),
        ("calibration_batch", -3, "calibration_batch"),
    ],
)
def test_recipe_options_of_the_wrong_type_are_one_line(tmp_path, mlp_path, option, value, says):
    model = load_model(mlp_path)
    recipe = {
        "recipe": 1,
        "model": {"name": model.name, "sha256": model.sha256},
        "precision": "fp16",
        "keep_nodes": [],
        "options": {option: value},
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    with pytest.raises(WorkbenchError, match=says) as e:
        wb.profile(model, recipe=str(path), config=QUICK)
    assert "\n" not in str(e.value) and "recipe.json" in str(e.value)


@pytest.mark.parametrize(
    "options", [{"keep_fp32_op_types": 7}, {"data_max": True}, {"keep_io_types": "no"}, {"exclude_nodes": {"a": 1}}]
)
def test_variant_options_of_the_wrong_type_are_one_line(mlp_path, options):
    model = load_model(mlp_path)
    precision = "int8" if "exclude_nodes" in options else "fp16"
    with pytest.raises(WorkbenchError, match=next(iter(options))) as e:
        wb.make_variant(model, precision, **options)
    assert "\n" not in str(e.value)


# ---- a file changed after it was loaded -------------------------------------------------------------------------


def test_external_data_swapped_for_a_link_after_loading_is_one_line(tmp_path):
    model_path = _sparse_model(tmp_path / "m", "w.bin", write_data=True)
    from test_safety import _external_model

    dense = load_model(_external_model(tmp_path / "d" / "model.onnx", "w.data", write_data=True))
    sparse = load_model(model_path)
    secret = _secret(tmp_path)
    for model, data in ((dense, tmp_path / "d" / "w.data"), (sparse, tmp_path / "m" / "w.bin")):
        data.unlink()
        os.symlink(secret, data)
        for use in (lambda m=model: m.proto, lambda m=model: wb.profile(m, config=QUICK)):
            with pytest.raises(WorkbenchError, match="changed while reading") as e:
                use()
            assert "\n" not in str(e.value)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_model_replaced_between_load_and_profile_is_one_line(tmp_path, mlp_path, precision):
    path = tmp_path / "model.onnx"
    path.write_bytes(mlp_path.read_bytes())
    model = load_model(path)
    other = onnx.load(str(mlp_path))
    other.graph.name = "replaced"
    tmp = tmp_path / "new.onnx"
    onnx.save(other, str(tmp))
    os.replace(tmp, path)
    if precision == "fp32":
        with pytest.raises(WorkbenchError, match="changed while reading") as e:
            wb.profile(model, config=QUICK)
        assert "\n" not in str(e.value)
    else:  # the variant is made from the graph in memory, which is the model that was loaded: it runs
        run = wb.profile(model, precision=precision, config=QUICK)
        assert run.model["sha256"] == model.sha256


def test_the_same_bytes_written_again_are_the_same_model(tmp_path, mlp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(mlp_path.read_bytes())
    model = load_model(path)
    tmp = tmp_path / "again.onnx"
    tmp.write_bytes(mlp_path.read_bytes())
    os.replace(tmp, path)  # another writer of a cache entry: a new file, the same content
    model.check_unchanged()
    assert model.runtime_source == str(path)


# ---- a rebuilt history keeps what it had ------------------------------------------------------------------------


def test_rebuilding_a_healthy_index_keeps_its_checks_and_a_backup_named_for_what_it_is(tmp_path):
    workspace = tmp_path / "ws"
    store = Store(workspace)
    from test_safety import _ort_run

    a = store.add(_ort_run(Path("m.onnx")))
    b = store.add(_ort_run(Path("m.onnx")))
    with sqlite3.connect(workspace / DB_NAME) as con:  # a check a room above added when it was recorded
        con.execute("UPDATE runs SET checks = ? WHERE run = ?", ("roofline_bound", a.id))
    con.close()
    before = Store(workspace).list().set_index("run")["checks"].to_dict()
    rebuilt = Store.rebuild(workspace)
    after = rebuilt.list().set_index("run")["checks"].to_dict()
    assert after == before and after[a.id].startswith("roofline_bound")
    assert rebuilt.previous_index.name.startswith(f"{DB_NAME}.before-rebuild-")
    assert not list(workspace.glob(f"{DB_NAME}.damaged-*"))
    with sqlite3.connect(rebuilt.previous_index) as con:  # the copy is the whole old index
        assert {r[0] for r in con.execute("SELECT run FROM runs")} == {a.id, b.id}
    con.close()


def test_rebuilding_a_damaged_index_says_damaged(tmp_path, capsys, monkeypatch):
    workspace = tmp_path / "ws"
    Store(workspace)
    (workspace / DB_NAME).write_bytes(b"not a database" * 64)
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(workspace))
    assert main(["reindex", "--rebuild"]) == 0
    out = capsys.readouterr().out
    kept = list(workspace.glob(f"{DB_NAME}.damaged-*"))
    assert len(kept) == 1 and kept[0].name in out


# ---- a crash inside ONNX Runtime takes only a child -------------------------------------------------------------


@pytest.fixture
def fresh_probes(own_cache, monkeypatch):
    """No probe remembered: in this process or in the cache."""
    from workbench.model import session_probe

    monkeypatch.setattr(session_probe, "_PASSED", set())
    return session_probe


@pytest.mark.parametrize("sig", ["SIGSEGV", "SIGABRT", "SIGKILL"])
def test_onnx_runtime_crashing_in_the_probe_is_one_line_and_the_caller_goes_on(mlp_path, fresh_probes, sig):
    import signal
    import threading

    import onnxruntime as ort

    model = load_model(mlp_path)
    killed: list = []
    killer = threading.Thread(
        target=signal_child,
        args=(os.getpid(), "session_probe import _child", getattr(signal, sig), killed),
        daemon=True,
    )
    killer.start()
    with pytest.raises(WorkbenchError) as e:
        wb.profile(model, config=QUICK)
    killer.join()
    text = str(e.value)
    assert killed and "\n" not in text
    assert f"ONNX Runtime {ort.__version__} crashed ({sig})" in text and model.name in text
    assert ("--graph-optimization extended" in text) if sig != "SIGKILL" else ("memory" in text)
    assert not list((fresh_probes.cache_dir("probes")).glob("*"))  # a crash is never remembered as passed
    run = wb.profile(model, config=QUICK)  # this process is unharmed: the next try runs (and is remembered)
    assert run.latency.mean_ms > 0 and len(list(fresh_probes.cache_dir("probes").glob("*"))) == 1


def test_a_probe_that_passed_is_paid_once_and_the_accuracy_step_runs_at_the_profiles_level(
    mlp_path, fresh_probes, monkeypatch
):
    tried = []
    real = fresh_probes.run_python_child
    monkeypatch.setattr(
        fresh_probes,
        "run_python_child",
        lambda target, request, *a, **k: tried.append(request) or real(target, request, *a, **k),
    )
    model = load_model(mlp_path)
    config = wb.BuildConfig(iterations=2, warmup_ms=0, trials=1, ort_graph_optimization="basic")
    run = wb.profile(model, precision="fp16", config=config)
    assert run.accuracy is not None and run.accuracy.samples > 0
    assert {r["level"] for r in tried} == {"ORT_ENABLE_BASIC"}  # the variant, its profile and the FP32 reference
    first = len(tried)
    assert first >= 2
    wb.profile(model, precision="fp16", config=config)
    assert len(tried) == first  # remembered: no child the second time
    fresh_probes._PASSED.clear()
    wb.profile(model, precision="fp16", config=config)
    assert len(tried) == first  # remembered in the cache too


def test_the_probe_child_loads_onnx_runtime_not_the_public_api(mlp_path, tmp_path, monkeypatch):
    """The probe's child imports its own module and ONNX Runtime, not ``workbench/__init__`` (the public API, pandas
    and the rest: most of the child's start-up), which every first profile of a graph would pay."""
    from workbench.processes import run_python_child
    from workbench.progress import Progress

    (tmp_path / "probe_target.py").write_text(
        "import sys\n"
        "from workbench.model.session_probe import _child\n"
        "def probe(request, send):\n"
        "    code = _child(request, send)\n"
        "    send(sorted(sys.modules))\n"
        "    return code\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(tmp_path), os.environ.get("PYTHONPATH")))))
    model = load_model(mlp_path)
    request = {
        "source": model.runtime_source,
        "level": "ORT_ENABLE_ALL",
        "providers": ["CPUExecutionProvider"],
        "inputs": {s.name: ((1, *s.shape[1:]), s.dtype) for s in model.inputs},
    }
    said: list = []
    returncode, stderr = run_python_child(
        "probe_target:probe", request, Progress(), cancelled="", on_message=said.append
    )
    assert returncode == 0, stderr  # the session was made and ran
    loaded = set(said[-1])
    assert {"onnxruntime", "numpy", "workbench.model.session_probe", "workbench.processes"} <= loaded
    assert not loaded & {"pandas", "workbench.results.run", "workbench.config", "workbench.model.onnx_model"}


#: ModelOpt AutoCast's FP16 variant of a 2-layer torchvision VisionTransformer (image 16, patch 16, hidden 8, 1 head,
#: 10 classes; random weights, seed 0; TorchScript export at opset 17 with a dynamic batch): ONNX Runtime 1.24
#: segfaults creating a session for it at graph optimization 'all', as it does for ViT-B/16's (a real crash).
CRASHING_GRAPH = Path(__file__).parent / "reliability" / "vit_tiny_fp16_autocast.onnx"


def test_a_graph_that_crashes_onnx_runtime_is_one_line_and_runs_at_a_lower_level(fresh_probes, capsys):
    import onnxruntime as ort

    model = load_model(CRASHING_GRAPH)
    with pytest.raises(WorkbenchError) as e:
        wb.profile(model, config=QUICK)
    text = str(e.value)
    assert f"ONNX Runtime {ort.__version__} crashed (SIGSEGV)" in text and "vit_tiny_fp16_autocast" in text
    assert "--graph-optimization extended" in text and "\n" not in text
    run = wb.profile(model, config=QUICK.replace(ort_graph_optimization="extended"))  # the advice works
    assert run.latency.mean_ms > 0
    assert main(["profile", str(CRASHING_GRAPH), "--iterations", "2", "--trials", "1"]) == 2  # the CLI lives too
    assert "crashed (SIGSEGV)" in capsys.readouterr().err


# ---- bounded graph work -----------------------------------------------------------------------------------------


def _nested_if(depth: int):
    """``depth`` If nodes, each the then-branch of the one above (4 KB at 30 deep)."""

    def leaf(name):
        return helper.make_graph(
            [helper.make_node("Identity", ["x"], [name])],
            f"{name}g",
            [],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1])],
        )

    body = leaf("y0")
    for d in range(1, depth + 1):
        node = helper.make_node("If", ["c"], [f"y{d}"], then_branch=body, else_branch=leaf(f"e{d}"), name=f"if{d}")
        body = helper.make_graph([node], f"b{d}", [], [helper.make_tensor_value_info(f"y{d}", TensorProto.FLOAT, [1])])
    graph = helper.make_graph(
        list(body.node),
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info(f"y{depth}", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _chain(nodes: int):
    graph = helper.make_graph(
        [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}") for i in range(nodes)],
        "g",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(f"t{nodes}", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_deep_subgraph_nests_and_huge_graphs_are_refused_at_once_naming_the_limit(tmp_path):
    import time

    from workbench.model.onnx_model import MAX_NODES, MAX_SUBGRAPH_DEPTH

    cases = {
        "if30.onnx": (_nested_if(30), f"more than {MAX_SUBGRAPH_DEPTH} deep"),
        "chain.onnx": (_chain(MAX_NODES + 1), f"more than {MAX_NODES:,} nodes"),
    }
    for name, (proto, says) in cases.items():
        onnx.save(proto, str(tmp_path / name))
        start = time.monotonic()
        with pytest.raises(WorkbenchError, match=says) as e:
            load_model(tmp_path / name)
        assert time.monotonic() - start < 60 and "\n" not in str(e.value)
    onnx.save(_nested_if(MAX_SUBGRAPH_DEPTH), str(tmp_path / "ok.onnx"))
    run = wb.profile(load_model(tmp_path / "ok.onnx"), config=QUICK)  # the deepest nest allowed runs
    assert run.latency.mean_ms > 0


def test_timing_that_would_keep_a_billion_times_is_refused():
    from workbench.config import MAX_TIMED_INFERENCES

    with pytest.raises(WorkbenchError, match=f"more than the {MAX_TIMED_INFERENCES:,}") as e:
        wb.BuildConfig(iterations=1_000_000, trials=1_000)
    assert "1,000,000,000 timed" in str(e.value)
    assert wb.BuildConfig(iterations=1_000_000, trials=1).iterations == 1_000_000


def test_a_model_whose_every_input_is_empty_is_refused_not_timed_at_thousands_of_samples(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "z.onnx"))
    with pytest.raises(WorkbenchError, match="Every input of the model is empty") as e:
        wb.profile(load_model(tmp_path / "z.onnx"), config=QUICK)
    assert "x [0x4]" in str(e.value)


# ---- a sweep ended by SIGTERM --------------------------------------------------------------------------------------


def test_a_sweep_ended_by_sigterm_is_recorded_interrupted_and_leaks_nothing(tmp_path):
    """Also the SIGTERM case of tests/sweeps/test_sweep_orphans.py: its workers and multiprocessing's
    resource_tracker end with it."""
    import signal
    import subprocess
    import sys
    import time

    from support import descendants, left_alive

    env = {**os.environ, "WORKBENCH_WORKSPACE": str(tmp_path / "ws"), "WORKBENCH_CACHE": str(tmp_path / "cache")}
    data = Path(__file__).resolve().parents[1] / "data" / "digits_cnn.onnx"
    argv = [sys.executable, "-m", "workbench.cli", "sweep", str(data), "--batch", "1,2", "--backend", "onnxruntime"]
    argv += ["--iterations", "3", "--trials", "1", "--warmup", "60000", "--workers", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    records = tmp_path / "ws" / "sweeps"
    while time.monotonic() < deadline and not any(
        json.loads(p.read_text()).get("status") == "running" for p in records.glob("*/sweep.json")
    ):
        time.sleep(0.2)
    while time.monotonic() < deadline and len(descendants(proc.pid)) < 3:  # two workers, the resource tracker
        time.sleep(0.1)
    time.sleep(5)  # the workers are in their minute of warm-up
    family = descendants(proc.pid)
    assert len(family) >= 3, f"expected two workers and the resource tracker, found {len(family)} processes"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-1000:]
    left = left_alive(family)
    assert not left, f"{len(left)} process(es) left behind after SIGTERM"
    assert "leaked" not in err and "Traceback" not in err
    assert "terminated; finished points are kept" in err
    listed = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "sweep", "--list"], env=env, capture_output=True, text=True
    ).stdout
    assert "(interrupted)" in listed and "(running)" not in listed
