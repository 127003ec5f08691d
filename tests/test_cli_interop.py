"""workbench import / export / report / compare, run as a user runs them, on the recorded trtexec outputs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from support import cli

from workbench.interop.trtexec import REMOVED_IN_11

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "recorded"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Two fixture engines imported through the CLI (module-scoped: each import writes a report)."""
    root = tmp_path_factory.mktemp("imports")
    runs = {}
    for name in ("resnet18-a100-fp16", "resnet18-a100-qat"):
        out = root / name
        result = cli("import", FIXTURES / "trtexec" / name, "--out", out)
        assert result.returncode == 0, result.stderr
        runs[name] = (out, result)
    return runs


def test_import_writes_a_run_directory_with_its_sources_and_report(imported):
    out, result = imported["resnet18-a100-qat"]
    assert "Latency mean (ms)" in result.stdout and f"Run directory: {out}" in result.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["backend"] == "tensorrt" and meta["source"] == "import"
    for rel in meta["artifacts"].values():  # the trtexec files were copied in
        assert (out / rel).is_file()
    sources = sorted(p.name for p in (FIXTURES / "trtexec" / "resnet18-a100-qat").iterdir())
    assert sorted(meta["artifacts"].values()) == sources
    html = (out / "report.html").read_text()
    assert "<script" in html and "Advice" in html and "trtexec" in html
    assert re.search(r"note: Left out \d+ warm-up iterations", result.stdout)


def test_export_trtexec_prints_a_command_without_removed_flags(imported):
    out, _ = imported["resnet18-a100-qat"]
    for version in ("11", "10"):
        result = cli("export", "trtexec", out, "--version", version)
        assert result.returncode == 0, result.stderr
        args = shlex.split(result.stdout.strip())
        assert args[0] == "trtexec" and any(a.startswith("--onnx=") for a in args)
        assert not {a.partition("=")[0] for a in args} & set(REMOVED_IN_11)
        assert ("--stronglyTyped" in args) is (version == "10")  # an int8 (Q/DQ) graph needs it on 10.x only


def test_export_triton_needs_a_plan_then_writes_a_repository(imported, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    out, _ = imported["resnet18-a100-fp16"]
    missing = cli("export", "triton", out, "--out", tmp_path / "repo")
    assert missing.returncode == 2 and "--plan" in missing.stderr and "Traceback" not in missing.stderr
    plan = tmp_path / "resnet.plan"
    plan.write_bytes(b"placeholder bytes standing for a serialized engine")
    result = cli(
        "export", "triton", out, "--out", tmp_path / "repo", "--name", "resnet18", "--plan", plan, "--instances", "2"
    )
    assert result.returncode == 0, result.stderr
    model = tmp_path / "repo" / "resnet18"
    cfg = text_format.Parse((model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cfg.platform == "tensorrt_plan" and cfg.instance_group[0].count == 2
    assert (model / "1" / "model.plan").read_bytes() == plan.read_bytes()
    fixed = cli("export", "triton", out, "--out", tmp_path / "repo", "--plan", plan, "--max-batch-size", "4")
    assert fixed.returncode == 2 and "batch dimension is fixed" in fixed.stderr


def test_report_and_compare_write_self_contained_html(imported, tmp_path):
    a, _ = imported["resnet18-a100-fp16"]
    b, _ = imported["resnet18-a100-qat"]
    result = cli("report", b, "--out", tmp_path / "one.html")
    assert result.returncode == 0, result.stderr
    one = (tmp_path / "one.html").read_text()
    assert "plotly" in one and "<script src=" not in one  # plotly embedded: opens offline
    result = cli("compare", a, b, "--out", tmp_path / "two.html")
    assert result.returncode == 0, result.stderr
    assert "A = resnet fp16 tensorrt" in result.stdout and "B = resnet-qat int8 tensorrt" in result.stdout
    two = (tmp_path / "two.html").read_text()
    assert "Comparison of 2 runs" in two and "<script src=" not in two and two.count("<div id=") >= 3


def test_bad_paths_are_one_line_errors(tmp_path):
    result = cli("import", tmp_path / "nothing-here")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    result = cli("report", tmp_path, "--out", tmp_path / "r.html")
    assert result.returncode == 2 and "not a run directory" in result.stderr
