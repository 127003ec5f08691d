"""The CLI as a user runs it: real subprocesses, one-line errors, non-zero exits, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from support import DATA


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_info_json():
    result = cli("info", DATA / "digits_cnn.onnx", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["inputs"][0] == {"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}
    assert summary["outputs"][0]["name"] == "logits"


def test_info_text():
    result = cli("info", DATA / "transformer_encoder.onnx")
    assert result.returncode == 0
    assert "input_ids: int64[batch, seq]" in result.stdout and "LayerNormalization" in result.stdout


def test_profile_writes_run_directory_and_report(tmp_path):
    out = tmp_path / "run"
    result = cli(
        "profile",
        DATA / "digits_cnn.onnx",
        "--backend",
        "onnxruntime",
        "--shapes",
        "input:4x1x8x8",
        "--iterations",
        "20",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "Latency mean (ms)" in result.stdout and "Slowest layers" in result.stdout
    assert (out / "run.json").is_file() and (out / "layers.csv").is_file()
    html = (out / "report.html").read_text()
    assert "Per-layer time" in html and "plotly" in html.lower()
    assert not re.search(r"<script[^>]+src=", html)  # self-contained: opens offline
    meta = json.loads((out / "run.json").read_text())
    assert meta["latency"]["samples"] >= 20 and meta["latency"]["batch"] == 4


def test_doctor_lists_backends():
    result = cli("doctor")
    assert result.returncode == 0
    assert "backend onnxruntime" in result.stdout and "backend tensorrt" in result.stdout


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "empty"),
        (b"definitely not a protobuf" * 4, "not an ONNX model"),
    ],
)
def test_bad_files_get_one_line_and_nonzero_exit(tmp_path, content, needle):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    for command in ("info", "profile"):
        result = cli(command, bad)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_bad_shapes_and_missing_file(tmp_path):
    result = cli("profile", DATA / "digits_cnn.onnx", "--shapes", "input:1x1x9x9", "--backend", "onnxruntime")
    assert result.returncode == 2 and "expected [batchx1x8x8]" in result.stderr
    result = cli("info", tmp_path / "missing.onnx")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_importing_workbench_loads_no_heavy_module():
    code = (
        "import sys, workbench, workbench.cli, workbench.views.charts, workbench.views.report, workbench.pipeline, "
        "workbench.doctor; from workbench import *; "
        "print([m for m in ('tensorrt', 'torch', 'modelopt', 'onnxruntime', 'ray') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_runs_are_kept_in_history_and_found_by_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path / "ws"))
    ids = []
    for precision in ("fp32", "fp16"):
        result = cli(
            "profile",
            DATA / "digits_cnn.onnx",
            "--backend",
            "onnxruntime",
            "--precision",
            precision,
            "--iterations",
            "5",
            "--warmup",
            "0",
        )
        assert result.returncode == 0, result.stderr
        ids.append(next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("Run ")))
    history = cli("history", "--model", "digits_cnn")
    assert history.returncode == 0 and all(i in history.stdout for i in ids)
    assert (tmp_path / "ws" / "runs" / ids[0] / "report.html").is_file()
    compared = cli("compare", ids[0], ids[1][:15], "--out", tmp_path / "cmp.html")
    assert compared.returncode == 0, compared.stderr
    assert (tmp_path / "cmp.html").is_file() and "fp16" in compared.stdout
    missing = cli("report", "no-such-run", "--out", tmp_path / "r.html")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_trials_give_an_interval_and_compare_states_significance(tmp_path):
    """`profile --trials 5` reports a median with its interval and a verdict; `compare` says "no significant
    difference" for the same samples and a ratio with its interval for FP32 against INT8."""
    runs = {}
    for label, extra in (("a", ()), ("int8", ("--precision", "int8", "--calib", DATA / "digits_calib.npz"))):
        result = cli(
            "profile",
            DATA / "digits_cnn.onnx",
            "--backend",
            "onnxruntime",
            "--shapes",
            "input:16x1x8x8",
            "--trials",
            "5",
            "--iterations",
            "40",
            "--warmup",
            "20",
            "--out",
            tmp_path / label,
            *extra,
        )
        assert result.returncode == 0, result.stderr
        runs[label] = tmp_path / label
    assert re.search(r"Latency median \(ms\)\s+[\d.]+\n", result.stdout)
    assert re.search(r"Latency median, 95% CI \(ms\)\s+[\d.]+–[\d.]+\n", result.stdout)
    assert re.search(r"Trials\s+5\n", result.stdout) and re.search(r"Coefficient of variation", result.stdout)
    assert re.search(r"Timing stability\s+(stable|unstable)", result.stdout)
    meta = json.loads((runs["int8"] / "run.json").read_text())
    assert len(meta["trials"]) == 5 and meta["timing"]["verdict"] in ("stable", "unstable")
    # the same samples on both sides: never a difference. (Two separate runs of one configuration also agree on an
    # idle machine, but a suite sharing its cores with other work may change speed between them, and then the
    # difference is real; tests/results/test_stats.py checks the 0% / 10% cases on synthetic samples.)
    same = cli("compare", runs["a"], runs["a"])
    assert same.returncode == 0, same.stderr
    assert "B vs A: no significant difference" in same.stdout
    quantized = cli("compare", runs["a"], runs["int8"])
    assert re.search(r"B vs A: [\d.]+× (faster|slower) \([\d.]+–[\d.]+\)", quantized.stdout), quantized.stdout
