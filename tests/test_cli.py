"""The CLI as a user runs it: one-line errors, non-zero exits, no tracebacks. Commands run in this process
(``support.cli``); a real subprocess where the process is the point (a log file of native output)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import re
import subprocess
import sys

import numpy as np
import pytest
from support import DATA, cli, cli_process

import workbench as wb
from workbench.config import BuildConfig
from workbench.model.samples import sample_path
from workbench.precision.recipe import make_recipe, save_recipe


#: A timed loop as short as can be: these tests check what is printed and written, not the figures.
QUICK_TIMING = ("--iterations", "5", "--warmup", "0", "--trials", "1")


def _few_samples(sample: str, folder) -> str:
    """10 samples of a bundled calibration set: below the documented range, so calibrating warns."""
    with np.load(sample_path(sample)) as data:
        np.savez(folder / "few.npz", input=data["input"][:10])
    return folder / "few.npz"


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
        "workbench.doctor, workbench.serving.search; from workbench import *; "
        "print([m for m in ('tensorrt', 'torch', 'modelopt', 'onnxruntime', 'ray', 'tritonclient') if m in sys.modules])"
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
            *QUICK_TIMING,
        )
        assert result.returncode == 0, result.stderr
        ids.append(next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("Run ")))
    # fp16 has accuracy rows: each figure with its value, none this classifier lacks (mask IoU) printed empty
    rows = [line for line in result.stdout.splitlines() if line.startswith("  output: ")]
    assert rows and all(re.fullmatch(r"  (\S[^:,]*: [^,\s][^,]*)(, \S[^:,]*: [^,\s][^,]*)*", r) for r in rows), rows
    assert "mask IoU" not in result.stdout and "collapsed" not in result.stdout
    monkeypatch.setenv("COLUMNS", "100")  # a terminal 100 characters wide: the tables fit it
    history = cli("history", "--model", "digits_cnn")
    assert history.returncode == 0 and all(i in history.stdout for i in ids)
    table = history.stdout.split("\n(left out to fit the terminal: ")[0].splitlines()
    assert max(map(len, table)) <= 100 and {"run", "name", "mean_ms"} <= set(table[0].split())  # the first kept
    assert "--wide shows every column" in history.stdout
    header = cli("history", "--wide").stdout.splitlines()[0].split()
    assert header == ["run", "created", "name", "shapes", "device", "backend", "precision", "mean_ms", "p99_ms"] + [
        "label_accuracy",
        "min_cosine",
        "verdict",
        "timing",
        "checks",
    ]
    assert (tmp_path / "ws" / "runs" / ids[0] / "report.html").is_file()
    # a prefix of the second id that the first does not share (both may be made in the same second, and an id
    # starts with its time): the shortest one, as a user who types just enough of an id
    prefix = next(ids[1][:n] for n in range(1, len(ids[1]) + 1) if not ids[0].startswith(ids[1][:n]))
    compared = cli("compare", ids[0], prefix, "--out", tmp_path / "cmp.html")
    assert compared.returncode == 0, compared.stderr
    assert (tmp_path / "cmp.html").is_file() and "fp16" in compared.stdout
    assert max(map(len, compared.stdout.splitlines())) <= 100  # both runs, cells cut, prose wrapped
    assert re.search(r"^Precision +fp32 +fp16$", compared.stdout, flags=re.M), compared.stdout
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
    assert re.search(r"Latency median, 95% rerun interval \(ms\)\s+[\d.]+–[\d.]+\n", result.stdout)
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
    # a fair A/B: both variants timed again, alternately in one session, and compared round by round
    fair = cli("compare", runs["a"], runs["int8"], "--interleave", "--rounds", "3", "-q")
    assert fair.returncode == 0, fair.stderr
    assert re.search(r"B vs A: ([\d.]+× (faster|slower) \(|no significant difference)", fair.stdout), fair.stdout
    assert "were timed under other conditions" not in fair.stdout and "not claimed:" not in fair.stdout
    assert cli("compare", runs["a"], runs["int8"], "--interleave", "--rounds", "1").returncode == 2


def _commands(parser, path=()):
    """Every (sub)command path of the parser, found by walking its subparsers: ("profile",), ("export", "triton")."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name)
                yield from _commands(sub, (*path, name))


def test_every_command_has_working_help(capsys):
    from workbench.cli import build_parser, main

    commands = list(_commands(build_parser()))
    assert ("export", "triton") in commands and ("sweep",) in commands and len(commands) >= 15
    for path in [(), *commands]:
        with pytest.raises(SystemExit) as exited:
            main([*path, "--help"])
        out = capsys.readouterr().out
        assert exited.value.code == 0, path
        assert out.startswith(f"usage: {' '.join(('workbench', *path))}"), out[:200]
    # the user's first command, as they type it
    top = cli("--help")
    assert top.returncode == 0 and "% of the roofline" in " ".join(top.stdout.split()), top.stderr


def test_output_flags_work_before_and_after_the_subcommand(tmp_path, monkeypatch, capsys):
    from workbench.cli import build_parser, main

    parser = build_parser()
    for argv in (["history", "--debug", "-q"], ["--debug", "-q", "history"]):
        args = parser.parse_args(argv)
        assert args.debug and args.quiet and not args.verbose
    assert not parser.parse_args(["history"]).debug
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    assert main(["history", "--debug"]) == 0 and "No runs" in capsys.readouterr().out


def test_a_wrong_or_shortened_option_is_refused_with_the_subcommand_usage():
    result = cli("profile", "digits_cnn", "--iteration", "10")  # a prefix of --iterations: never guessed
    assert result.returncode == 2
    assert result.stderr.startswith("usage: workbench profile") and "unrecognized arguments: --iteration" in (
        result.stderr
    )
    result = cli("export", "triton", "RUN", "--out", "x", "--instance", "2")
    assert "usage: workbench export triton" in result.stderr and "--instance" in result.stderr


def test_shared_options_read_the_same_everywhere_and_backends_come_from_the_registry():
    from workbench.backends import COMPILERS, NAMES
    from workbench.cli import build_parser

    subs = {p: dict(_options(build_parser(), p)) for p in ("profile", "sensitivity", "compile", "sweep")}
    for option in ("--calib", "--random-calib", "--shapes", "--iterations", "--warmup", "--trials", "--debug"):
        helps = {name: options[option].help for name, options in subs.items() if option in options}
        assert len(helps) >= 2 and len(set(helps.values())) == 1, (option, helps)
    assert subs["profile"]["--backend"].choices == ("auto", *NAMES) == subs["sweep"]["--backend"].choices
    assert subs["compile"]["--backend"].choices == COMPILERS
    assert "--recipe" in subs["compile"] and "--out" in subs["sweep"]


def _options(parser, command):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return ((string, action) for action in sub._actions for string in action.option_strings)


def test_the_cli_times_with_buildconfigs_defaults():
    """`workbench profile` and `wb.profile` time the same thing: the CLI's defaults are BuildConfig's."""
    from workbench.cli import _config, build_parser

    parser = build_parser()
    args = parser.parse_args(["profile", "digits_cnn"])
    args.precision = "fp32"
    assert _config(args) == BuildConfig()
    sweep = parser.parse_args(["sweep", "digits_cnn", "--precision", "fp32,int8"])
    assert _config(sweep, precision="fp32") == BuildConfig()
    timed = _config(parser.parse_args(["profile", "digits_cnn", "--duration", "2", "--precision", "fp16"]))
    assert (timed.duration_s, timed.iterations, timed.precision) == (2.0, 1, "fp16")
    spread = _config(parser.parse_args(["profile", "digits_cnn", "--trial-gap", "20", "--precision", "fp32"]))
    assert spread.trial_gap_s == 20.0 and spread.key() == BuildConfig().key()  # the same engine, trials apart


def test_samples_are_reached_by_name(tmp_path):
    result = cli("info", "resnet_mini", cwd=tmp_path)  # no data/ folder here, as for an installed package
    assert result.returncode == 0, result.stderr
    assert "resnet_mini" in result.stdout and "Conv" in result.stdout
    listed = cli("samples")
    assert listed.returncode == 0 and "digits_calib" in listed.stdout
    unknown = cli("info", "resnet", cwd=tmp_path)
    assert unknown.returncode == 2 and "no file or bundled sample 'resnet'" in unknown.stderr
    assert "resnet_mini" in unknown.stderr  # the names there are
    misspelt = cli("profile", "--iteration", "10", "digits_cnn", cwd=tmp_path)  # the value lands on the model
    assert misspelt.returncode == 2 and "'10' is a number, not a model" in misspelt.stderr


def test_a_piped_int8_profile_log_is_plain_and_says_each_thing_once(tmp_path):
    """What a log file of `workbench profile ... --precision int8` holds: no bars (carriage returns, cursor
    escapes), no Python source lines, and each warning and note once, with the size the model really ran at."""
    result = cli_process(
        "profile",
        "outlier_digits",
        "--precision",
        "int8",
        "--calib",
        _few_samples("outlier_digits_calib", tmp_path),
        "--eval",
        "outlier_digits_test",
        "--backend",
        "onnxruntime",
        *QUICK_TIMING,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    assert "\r" not in log and "\x1b" not in log
    assert "warnings.warn" not in log and "Warning:" not in log and "Traceback" not in log
    lines = [line for line in log.splitlines() if line.startswith(("note:", "warning:"))]
    assert len(lines) == len(set(lines)), lines
    assert log.count("calibration samples is outside the documented range") == 1
    assert log.count("backend chosen: onnxruntime") == 1
    # the bundled lossy model loses accuracy in INT8 (its purpose): the verdict once, with what to try
    assert len(re.findall(r"accuracy (BROKEN|DEGRADED)", log, flags=re.IGNORECASE)) == 1
    shapes = [line for line in lines if "dynamic input shapes not given" in line]
    assert len(shapes) == 1 and "at 1x2x8x8 (default batch 1)" in shapes[0] and "image side" not in shapes[0]


def test_sweep_writes_its_report_where_out_says_and_each_warning_once(tmp_path, monkeypatch):
    """`sweep --out DIR` writes its report there; a warning raised at every int8 point (in the driver and in the
    workers) is one `warning:` line, without Python source lines."""
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path / "ws"))
    result = cli(
        "sweep",
        "digits_cnn",
        "--backend",
        "onnxruntime",
        "--precision",
        "fp32,int8",
        "--batch",
        "1,2",
        "--calib",
        _few_samples("digits_calib", tmp_path),
        *QUICK_TIMING,
        "--workers",
        "1",
        "--out",
        tmp_path / "sweep",
    )
    assert result.returncode == 0, result.stderr
    report = tmp_path / "sweep" / "report.html"
    assert report.is_file() and f"Report: {report}" in result.stdout
    assert "int8 b2" in report.read_text()
    log = result.stdout + result.stderr
    assert log.count("calibration samples is outside the documented range") == 1
    assert "UserWarning" not in log and "load_calibration(" not in log
    table = result.stdout[: result.stdout.index("Report: ")]
    assert re.search(r"^\s*point\s+state\s+latency_ms\s+samples_per_s\s+error\s+memory\s+front$", table, flags=re.M)
    assert not re.search(r"\de[+-]\d", table), table  # plain decimals, not e-notation
    assert re.search(r" \d+\.\d KiB ", table), table


def test_compile_takes_a_recipe_and_doctor_gives_each_backend_its_own_hint(tmp_path):
    model = wb.load_model(sample_path("digits_cnn"))
    first = model.proto.graph.node[0].name
    save_recipe(make_recipe(model, "int8", [first]), tmp_path / "recipe.json")
    result = cli(
        "compile",
        "digits_cnn",
        "--backend",
        "onnxruntime",
        "--recipe",
        tmp_path / "recipe.json",
        "--calib",
        "digits_calib",
        "--out",
        tmp_path / "compiled",
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "compiled" / "run.json").read_text())
    assert meta["config"]["precision"] == "int8"  # the recipe's, as no --precision was given
    kept = [n for n in meta["variant"]["changes"]["not_quantized"] if "exclude_nodes" in n["reason"]]
    assert [n["node"] for n in kept] == [first]
    doctor = cli("doctor")
    ort = next(line for line in doctor.stdout.splitlines() if "compile with onnxruntime" in line)
    assert "--arch" not in ort and "--backend onnxruntime" in ort


def test_the_readmes_commands_are_ones_the_cli_takes():
    """Every `workbench ...` line of the README parses (its options exist, its sample names resolve)."""
    import shlex

    from workbench.cli import build_parser

    text = (DATA.parent / "README.md").read_text().replace("\\\n", " ")
    lines = [line.split("  #")[0] for line in text.splitlines() if line.startswith("workbench ")]
    assert len(lines) >= 20
    parser = build_parser()
    for line in lines:
        args = shlex.split(line.replace("[", "").replace("]", ""))[1:]
        assert parser.parse_args(args).func, line


#: The README's commands this test runs as written (RUN: the run the profile line made); the others (a sweep, a
#: sensitivity search, a Triton server, TensorRT-RTX builds, an import of files the user has) are run by their own
#: tests and only parsed above.
_README_RUNS = ("doctor", "samples", "info", "profile digits_cnn", "history", "compare", "export", "report")


def test_the_readmes_quick_commands_run_as_written(tmp_path, monkeypatch):
    import shlex

    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path / "ws"))
    text = (DATA.parent / "README.md").read_text().replace("\\\n", " ")
    lines = [line.split("  #")[0].strip() for line in text.splitlines() if line.startswith("workbench ")]
    chosen = [line for line in lines if line.removeprefix("workbench ").startswith(_README_RUNS)]
    assert [line.split()[1] for line in chosen][:5] == ["doctor", "samples", "info", "profile", "history"]
    run_id = None
    for line in chosen:
        args = shlex.split(line)[1:]
        if "RUN" in args:
            args = [run_id if a == "RUN" else a for a in args]
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 0, (line, result.stderr[-1000:])
        if args[0] == "profile":
            run_id = next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("Run directory"))
            run_id = Path(run_id).name
    assert (tmp_path / "compare.html").is_file() and (tmp_path / "report.html").is_file()
    assert (tmp_path / "model_repository").is_dir()


def test_progress_is_drawn_only_where_it_can_be(monkeypatch, capsys):
    """Bars (tqdm) on a terminal; plain lines, without carriage returns, on a pipe or in a log file."""
    from workbench.progress import LineProgress, TqdmProgress, console_progress

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert isinstance(console_progress(), TqdmProgress)
    monkeypatch.undo()
    assert isinstance(console_progress(), LineProgress)  # pytest's captured stderr is not a terminal
    import ipykernel  # as jupyter_client does to find a kernel (the serve tests start one): imported, not a kernel

    assert ipykernel and isinstance(console_progress(), LineProgress)
    progress = LineProgress(min_s=0)  # every phase, however quick
    for step in range(4):
        progress.step("Calibration", step, 3)
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("Calibration: done (3 steps") == 1
