"""Files someone sends (a run folder, a model, calibration images) never make the workbench write, delete or read
outside their folder, and never reveal anything about files outside it. One test per way in."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.interop.triton import export_triton
from workbench.model.onnx_model import load_model
from workbench.paths import inside
from workbench.results.run import LatencyStats, Run, TensorInfo, is_run_id, load_run
from workbench.results.store import Store


def _external_model(path: Path, location: str, *, write_data: bool = False) -> Path:
    """x[1,4] @ W[4,4] with W in an external-data file named ``location`` (written beside it only if asked)."""
    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        w.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    if write_data:
        (path.parent / location).write_bytes(np.ones((4, 4), np.float32).tobytes())
    return path


def _ort_run(model_file: Path, **changes) -> Run:
    spec = (TensorInfo("x", "float32", (1, 4)),)
    return Run(
        backend="onnxruntime",
        layers=[],
        model={"name": "m"},
        inputs=spec,
        outputs=(TensorInfo("y", "float32", (1, 4)),),
        artifacts={"onnx": str(model_file)},
        latency=LatencyStats.from_times([1.0, 1.1]),
        **changes,
    )


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---- 1. Triton export writes only inside the repository ---------------------------------------------------------


@pytest.mark.parametrize("location", ["../../x/evil.sh", "../../../evil.sh", "/tmp/evil.sh", "sub/../../evil.sh"])
def test_triton_export_refuses_external_data_that_leaves_the_model_folder(tmp_path, location):
    received = tmp_path / "received"
    model = _external_model(tmp_path / "src" / "model.onnx", "w.data", write_data=True)
    run = _ort_run(model).save(received / "run")
    # the sender rewrites the model in the run folder so that its weights "live" at a crafted location
    _external_model(received / "run" / "model.onnx", location)
    payload = (received / "run" / location) if not location.startswith("/") else Path(location)
    if not location.startswith("/"):
        payload.parent.mkdir(parents=True, exist_ok=True)
        payload.write_text("#!/bin/sh\necho owned\n")
    before = _tree(tmp_path)
    with pytest.raises(WorkbenchError, match="leaves its folder") as e:
        export_triton(load_run(run.directory), tmp_path / "repo")
    assert "\n" not in str(e.value)
    assert _tree(tmp_path) - before <= {"repo"}  # nothing written anywhere, not even the repository's entry
    assert [p.resolve() for p in tmp_path.rglob("evil.sh")] in ([], [payload.resolve()])  # only the planted one


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_triton_export_refuses_linked_external_data(tmp_path, link):
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"S" * 64)
    model = _external_model(tmp_path / "src" / "model.onnx", "w.data", write_data=True)
    run = _ort_run(model).save(tmp_path / "run")
    (tmp_path / "run" / "w.data").unlink(missing_ok=True)
    (os.symlink if link == "symlink" else os.link)(secret, tmp_path / "run" / "w.data")
    with pytest.raises(WorkbenchError, match="link"):
        export_triton(load_run(run.directory), tmp_path / "repo")
    assert not any(p.name == "w.data" for p in (tmp_path / "repo").rglob("*")) if (tmp_path / "repo").exists() else True


def test_triton_export_copies_external_data_inside_the_folder(tmp_path):
    model = _external_model(tmp_path / "src" / "model.onnx", "w.data", write_data=True)
    run = _ort_run(model)
    out = export_triton(run, tmp_path / "repo", kind="KIND_CPU")
    assert (out / "1" / "w.data").read_bytes() == (tmp_path / "src" / "w.data").read_bytes()


# ---- 2. run ids are generated, never trusted --------------------------------------------------------------------


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    (victim / ".git").mkdir(parents=True)
    (victim / ".env").write_text("TOKEN=1")
    return victim


def test_a_received_run_with_a_crafted_id_gets_a_new_id_and_stays_in_the_workspace(tmp_path):
    victim = _victim(tmp_path)
    received = _ort_run(tmp_path / "none.onnx").save(tmp_path / "received")
    meta = json.loads((received.directory / "run.json").read_text())
    meta["id"] = "../../victim"
    (received.directory / "run.json").write_text(json.dumps(meta))
    store = Store(tmp_path / "ws")
    stored = store.add(load_run(received.directory))
    assert is_run_id(stored.id) and stored.directory.parent == store.path / "runs"
    assert (victim / ".git").is_dir() and (victim / ".env").read_text() == "TOKEN=1"
    for bad in ("../../victim", "../victim", str(victim), "runs/../..", ""):
        with pytest.raises(WorkbenchError):
            store.delete(bad)
        with pytest.raises(WorkbenchError, match="not a run id|No run"):
            store.run_dir(bad) if bad else store.get(bad)
    assert (victim / ".git").is_dir() and len(store) == 1


def test_an_in_memory_run_with_a_crafted_id_gets_a_new_id(tmp_path):
    store = Store(tmp_path / "ws")
    stored = store.add(_ort_run(tmp_path / "m.onnx").replace(id="../../escape"))
    assert is_run_id(stored.id) and not (tmp_path / "escape").exists()


def test_reindex_never_moves_a_folder_outside_the_workspace(tmp_path):
    victim = _victim(tmp_path)
    store = Store(tmp_path / "ws")
    copied = _ort_run(tmp_path / "m.onnx").save(store.path / "runs" / "copied-by-hand")
    meta = json.loads((copied.directory / "run.json").read_text())
    meta["id"] = "../../victim"
    (copied.directory / "run.json").write_text(json.dumps(meta))
    os.symlink(victim, store.path / "runs" / "20260101-000000-aaaaaa")  # a link planted in runs/ is not a run
    assert store.reindex() == 1
    (listed,) = store.list()["run"]
    assert is_run_id(listed) and (store.path / "runs" / listed / "run.json").is_file()
    assert store.get(listed).id == listed  # run.json rewritten with the new id
    assert (victim / ".git").is_dir() and (victim / ".env").is_file() and not copied.directory.exists()


def test_a_forged_index_row_cannot_point_delete_outside(tmp_path):
    victim = _victim(tmp_path)
    store = Store(tmp_path / "ws")
    store.add(_ort_run(tmp_path / "m.onnx"))
    with sqlite3.connect(store.db_path) as db:
        db.execute("UPDATE runs SET run = '../../victim'")
    with pytest.raises(WorkbenchError, match="not a run id"):
        store.delete("../../victim")
    assert (victim / ".git").is_dir()


# ---- 3. every path from a file stays inside its folder ----------------------------------------------------------


@pytest.mark.parametrize("artifact", ["../../etc/passwd", "/etc/passwd", "..", "a/../../b"])
def test_artifact_paths_in_run_json_stay_inside_the_run_folder(tmp_path, artifact):
    run = _ort_run(tmp_path / "m.onnx").save(tmp_path / "run")
    meta = json.loads((run.directory / "run.json").read_text())
    meta["artifacts"] = {"onnx": artifact}
    (run.directory / "run.json").write_text(json.dumps(meta))
    with pytest.raises(WorkbenchError, match="leaves its folder"):
        load_run(run.directory)


def test_inside_refuses_every_escape(tmp_path):
    (tmp_path / "d").mkdir()
    os.symlink("/etc", tmp_path / "d" / "up")
    for bad in ("../x", "/abs", "C:\\x", "\\\\server\\share", "a/../../x", "up/passwd", "", "x\x00y", None, 3):
        with pytest.raises(WorkbenchError):
            inside(tmp_path / "d", bad)
    assert inside(tmp_path / "d", "sub/file.bin") == tmp_path / "d" / "sub" / "file.bin"


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/shadow", "sub/../../secret.bin", "link.bin", "hard.bin"])
def test_external_data_outside_the_model_folder_is_refused_without_disclosing_it(tmp_path, location):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"x" * 651)
    folder = tmp_path / "model"
    folder.mkdir()
    if location == "link.bin":
        os.symlink(secret, folder / location)
    if location == "hard.bin":
        os.link(secret, folder / location)
    path = _external_model(folder / "m.onnx", location)
    with pytest.raises(WorkbenchError) as e:
        load_model(path)
    text = str(e.value)
    assert "\n" not in text and "651" not in text and "shadow" not in text.replace(location, "")
    assert "link" in text or "leaves its folder" in text


def test_bad_external_data_fields_are_one_line(tmp_path):
    path = _external_model(tmp_path / "m.onnx", "w.data", write_data=True)
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "offset":
            entry.value = "twelve"
    onnx.save(proto, str(path))
    with pytest.raises(WorkbenchError, match="invalid external-data offset 'twelve'"):
        load_model(path)


# ---- 4. calibration inputs --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "img.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return load_model(path)


def _with_deadline(fn, seconds=20):
    result = {}

    def target():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked (a FIFO was opened)"
    return result.get("error")


def test_a_fifo_among_calibration_images_is_refused_before_opening(tmp_path, image_model):
    from workbench.precision.calibration import load_calibration

    folder = tmp_path / "calib"
    folder.mkdir()
    os.mkfifo(folder / "cat.png")
    error = _with_deadline(lambda: load_calibration(folder, image_model))
    assert isinstance(error, WorkbenchError) and "not a regular file" in str(error)
    os.mkfifo(tmp_path / "calib.npz")
    error = _with_deadline(lambda: load_calibration(tmp_path / "calib.npz", image_model))
    assert isinstance(error, WorkbenchError) and "not a regular file" in str(error)


def test_a_decompression_bomb_image_is_one_line(tmp_path, image_model):
    from PIL import Image

    from workbench.precision.calibration import load_calibration

    folder = tmp_path / "calib"
    folder.mkdir()
    side = int((Image.MAX_IMAGE_PIXELS or 89_478_485) ** 0.5) + 64  # just over Pillow's limit, about 90 MB decoded
    Image.new("1", (side, side)).save(folder / "bomb.png")  # a few hundred KB on disk
    with pytest.raises(WorkbenchError, match="too large to decode safely") as e:
        load_calibration(folder, image_model)
    assert "\n" not in str(e.value)


# ---- valid models load, with the checker's complaint as a warning -----------------------------------------------


def _relu(path: Path, output) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [output],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(
    "output",
    [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None),  # typed without a shape (common from exporters)
        onnx.ValueInfoProto(name="y"),  # no type at all
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5]),  # a declared shape inference disagrees with
    ],
    ids=["no-shape", "no-type", "wrong-shape"],
)
def test_models_the_runtimes_accept_load_with_the_checkers_complaint_as_a_warning(tmp_path, output):
    from workbench.cli import main
    from workbench.views.report import report_html

    model = load_model(_relu(tmp_path / "m.onnx", output))
    assert model.warnings and all(w.startswith("ONNX checker:") for w in model.warnings)
    assert "checker warning" in repr(model) and model.summary()["warnings"] == list(model.warnings)
    assert model.outputs[0].dtype == "float32" and model.outputs[0].shape in ((1, 4), (2, 5))  # inferred if undeclared
    run = wb.profile(model, backend="onnxruntime", config=wb.BuildConfig(iterations=2, warmup_ms=0))
    assert run.model["warnings"] == list(model.warnings)
    assert "ONNX checker:" in report_html(run)
    assert main(["info", str(tmp_path / "m.onnx")]) == 0


def test_a_model_neither_runtime_could_run_is_refused(tmp_path):
    path = _relu(tmp_path / "m.onnx", helper.make_tensor_value_info("y", TensorProto.INT64, [1, 4]))
    with pytest.raises(WorkbenchError, match="not a valid ONNX graph.*ONNX Runtime refuses it too"):
        load_model(path)


def test_info_does_not_read_external_weights(tmp_path, monkeypatch):
    import onnx.external_data_helper as helper_module

    path = _external_model(tmp_path / "m.onnx", "w.data", write_data=True)
    calls = []
    monkeypatch.setattr(helper_module, "load_external_data_for_model", lambda *a: calls.append(a))
    model = load_model(path)
    assert model.parameters == 16 and model.parameter_bytes == 64 and not calls
    digest = model.sha256
    (tmp_path / "w.data").write_bytes(np.zeros((4, 4), np.float32).tobytes())
    assert load_model(path).sha256 != digest  # the weights are in the identity: hashed by streaming
    monkeypatch.undo()
    assert np.array_equal(numpy_helper.to_array(load_model(path).proto.graph.initializer[0]), np.zeros((4, 4)))


def test_an_imported_folder_never_reads_through_links_out_of_it(tmp_path):
    import shutil

    from support import FIXTURES

    from workbench.interop.trtexec import import_trtexec

    folder = tmp_path / "received"
    shutil.copytree(FIXTURES / "trtexec-10.16" / "h100", folder)
    outside = tmp_path / "private.log"
    outside.write_text((folder / "inference-verbose.log").read_text())  # would be recognised as a second log
    os.symlink(outside, folder / "second.log")
    run = import_trtexec([folder])
    assert any("Left out (links" in n and "second.log" in n for n in run.notes)
    assert all(Path(p).name != "private.log" for p in run.artifacts.values())


def test_a_profile_leaves_nothing_in_tmpdir(tmp_path):
    import subprocess
    import sys

    from support import DATA, REPO

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "WORKBENCH_WORKSPACE": str(tmp_path / "ws"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "profile",
            str(DATA / "digits_cnn.onnx"),
            "--backend",
            "onnxruntime",
            "--iterations",
            "2",
            "--warmup",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert list(tmp.iterdir()) == []  # ONNX Runtime's profile was read (and summarised), then removed here
    (run_dir,) = (tmp_path / "ws" / "runs").iterdir()
    assert (run_dir / "report.html").is_file()


def test_an_unexpected_error_is_one_line_with_a_hint_and_the_traceback_on_request(monkeypatch, capsys):
    from workbench import cli

    def broken(args):
        raise TypeError("unsupported operand type(s)\nsecond line")

    monkeypatch.setattr(cli, "cmd_doctor", broken)
    assert cli.main(["doctor"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unexpected TypeError" in err and "--debug" in err and "Traceback" not in err
    assert cli.main(["--debug", "doctor"]) == 3
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setattr(cli, "cmd_doctor", lambda args: (_ for _ in ()).throw(OSError(28, "No space left", "/x/y")))
    assert cli.main(["doctor"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is full" in err and "WORKBENCH_WORKSPACE" in err


def test_only_old_temp_entries_of_the_workbench_are_removed_on_open(tmp_path):
    import time

    from workbench.paths import STALE_TEMP_S, TEMP_MARK, remove_stale_temps

    old, young, other = (tmp_path / f".entry{TEMP_MARK}old"), (tmp_path / f".entry{TEMP_MARK}young"), tmp_path / ".git"
    for folder in (old, young, other):
        (folder / "sub").mkdir(parents=True)
    long_ago = time.time() - STALE_TEMP_S - 60
    for folder in (old, other):
        os.utime(folder, (long_ago, long_ago))
    assert remove_stale_temps(tmp_path) == 1
    assert not old.exists() and young.is_dir() and other.is_dir()  # a live writer's and the user's own are kept
    (tmp_path / "runs").mkdir()
    stale = tmp_path / "runs" / f".20260101-000000-aaaaaa{TEMP_MARK}x"
    stale.mkdir()
    os.utime(stale, (long_ago, long_ago))
    Store(tmp_path)
    assert not stale.exists()
