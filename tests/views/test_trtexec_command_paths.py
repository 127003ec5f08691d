"""The trtexec commands a user copies name files that exist, and write engines into the run's folder, never into
the folder of the user's model: the report of a real model's run, a loaded run's export, a sweep's report."""

from __future__ import annotations

import html
import re
import shlex
from pathlib import Path

import pytest
from real_models import real_model

import workbench as wb

FAST = wb.BuildConfig(iterations=3, warmup_ms=0, trials=1, shapes=(("x", (1, 3, 48, 192)),))


def _flags(command: str) -> dict[str, str]:
    return dict(a.split("=", 1) for a in shlex.split(command)[1:] if a.startswith("--") and "=" in a)


def _report_command(report: Path) -> str:
    page = report.read_text()
    section = page.split("Equivalent trtexec command", 1)[1]
    return html.unescape(re.search(r"<pre>(.*?)</pre>", section, re.S).group(1))


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory) -> Path:
    """ppocr_cls in a folder of its own, to see what a command would write beside it."""
    folder = tmp_path_factory.mktemp("user-model")
    path = folder / "cls.onnx"
    path.write_bytes(Path(real_model("ppocr_cls")).read_bytes())
    return path


@pytest.fixture(scope="module")
def profiled(model_copy, tmp_path_factory):
    """``profiled(precision)``: (the run, its folder) of ppocr_cls profiled with ``out=``, once per precision for
    the tests below (none of them writes into the run's folder)."""
    folder, made = tmp_path_factory.mktemp("runs"), {}

    def get(precision: str):
        if precision not in made:
            out = folder / f"run-{precision}"
            made[precision] = wb.profile(model_copy, precision, backend="onnxruntime", config=FAST, out=out), out
        return made[precision]

    return get


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_reports_command_names_files_that_exist(model_copy, profiled, precision):
    run, out = profiled(precision)
    flags = _flags(_report_command(out / "report.html"))
    onnx = out / flags["--onnx"]  # relative names are the run folder's files; an absolute one stays as it is
    assert onnx.is_file(), flags["--onnx"]
    if precision == "fp16":  # the variant kept with the run, not the (gone) folder it was saved from
        assert onnx.parent == out and onnx.read_bytes() == run.artifact("onnx").read_bytes()
    else:
        assert onnx == model_copy
    engine = out / flags["--saveEngine"]
    assert engine.parent == out  # the run's folder, not the model's
    assert not list(model_copy.parent.glob("*.plan")) and len(list(model_copy.parent.iterdir())) == 1


def test_a_loaded_runs_command_writes_its_engine_into_the_run_folder(model_copy, profiled):
    run, out = profiled("fp32")
    flags = _flags(wb.trtexec.trtexec_command(wb.load_run(out)))
    assert Path(flags["--onnx"]) == model_copy
    assert Path(flags["--saveEngine"]).parent == out == run.directory
    assert Path(flags["--exportLayerInfo"]).parent == out


def test_a_sweeps_commands_never_save_into_the_models_folder(model_copy, tmp_path):
    from workbench.sweeps import sweep

    result = sweep(model_copy, batches="1,2", backend="onnxruntime", config=FAST, store=tmp_path / "ws")
    page = result.report_path.read_text()
    commands = [html.unescape(c) for c in re.findall(r"<pre>(trtexec .*?)</pre>", page, re.S)]
    assert len(commands) == 2
    for command, run in zip(commands, result.runs()):
        flags = _flags(command)
        assert Path(flags["--onnx"]).is_file()
        assert Path(flags["--saveEngine"]).parent == run.directory != model_copy.parent


def test_a_report_written_elsewhere_names_the_run_folders_files_by_full_path(profiled, tmp_path):
    run, _ = profiled("fp16")
    page = wb.report.write_report(wb.load_run(run.directory), tmp_path / "shared" / "report.html")
    flags = _flags(_report_command(page))
    assert Path(flags["--onnx"]) == run.directory / "model.onnx" and Path(flags["--onnx"]).is_file()
    assert Path(flags["--saveEngine"]).parent == run.directory
    assert "Run it in this run's folder" not in page.read_text()


def test_a_compiled_runs_tensorrt_rtx_command_names_the_variant_it_compiled(model_copy, tmp_path):
    # 64x64: the ONNX names both free spatial dims '?', which TensorRT reads as one dimension (equal sizes)
    config = wb.BuildConfig(shapes=(("x", (1, 3, 64, 64)),))
    run = wb.compile(model_copy, "fp16", arch="sm89", config=config, out=tmp_path / "rtx")
    page = (run.directory / "report.html").read_text()
    command = html.unescape(re.search(r"<pre>(tensorrt_rtx .*?)</pre>", page, re.S).group(1))
    flags = _flags(command)
    onnx = run.directory / flags["--onnx"]
    assert onnx.is_file() and onnx.read_bytes() == run.artifact("onnx").read_bytes()  # fp16, not the FP32 source
    assert onnx.read_bytes() != model_copy.read_bytes()
    assert (run.directory / flags["--saveEngine"]).parent == run.directory
