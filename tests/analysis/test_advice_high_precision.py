"""A broken INT8 variant of a real model whose unquantized layers ran in FP16 (ModelOpt's default): the advice, the
report and the CLI say to try ``--high-precision fp32``; exporting it to Triton warns once and still exports."""

from __future__ import annotations


import pytest
from support import cli
from real_models import real_model

import workbench as wb
from workbench.analysis.advice import advise
from workbench.precision.accuracy import remedies

CONFIG = wb.BuildConfig(iterations=3, warmup_ms=0, trials=1, shapes=(("x", (1, 3, 48, 192)),))
SUGGESTION = "--high-precision fp32"


@pytest.fixture(scope="module")
def broken_int8(tmp_path_factory):
    """PP-OCRv4's direction classifier in INT8 (random calibration, max method: the quick one): top-1 agreement
    with FP32 about 66%, BROKEN."""
    run = wb.profile(
        real_model("ppocr_cls"),
        "int8",
        backend="onnxruntime",
        config=CONFIG,
        random_calibration=True,
        calibration_method="max",
        out=tmp_path_factory.mktemp("int8") / "run",
    )
    assert run.variant["options"]["high_precision_dtype"] == "fp16"  # the default the user did not choose
    assert run.accuracy.verdict == "broken", run.accuracy.verdict_reason
    return run


def test_the_advice_on_a_broken_int8_run_names_high_precision_fp32(broken_int8):
    finding = next(f for f in advise(broken_int8) if "accuracy is BROKEN" in f.title)
    assert SUGGESTION in finding.fix and "high_precision_dtype='fp32'" in finding.fix
    assert finding.fix.index(SUGGESTION) < finding.fix.index("--calib-method")  # the likeliest cause first
    report = (broken_int8.directory / "report.html").read_text()
    assert SUGGESTION in report


def test_a_run_already_in_fp32_high_precision_is_not_told_to_use_it():
    assert not any(SUGGESTION in r for r in remedies("int8", {"high_precision_dtype": "fp32"}))
    assert any(SUGGESTION in r for r in remedies("fp8", {"high_precision_dtype": "bf16"}))
    assert not any(SUGGESTION in r for r in remedies("int8"))  # an import: how it was quantized is unknown


def test_exporting_a_broken_run_warns_once_and_still_exports(broken_int8):
    result = cli("export", "triton", broken_int8.directory, "--out", broken_int8.directory.parent / "triton")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "BROKEN" in warnings[0]
    assert len(list((broken_int8.directory.parent / "triton").glob("*/config.pbtxt"))) == 1  # exported all the same


def test_exporting_an_ok_run_prints_no_warning(tmp_path):
    run = wb.profile(real_model("ppocr_cls"), "fp32", backend="onnxruntime", config=CONFIG, out=tmp_path / "run")
    result = cli("export", "triton", run.directory, "--out", tmp_path / "triton")
    assert result.returncode == 0, result.stderr
    assert "warning:" not in result.stderr
