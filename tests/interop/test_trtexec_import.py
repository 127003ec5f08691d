"""Every real trtexec output in data/recorded/ imports as a Run whose numbers agree with the files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.results.layers import LAYER_COLUMNS
from workbench.results.run import load_run
from workbench.interop.trtexec import import_trtexec, recognize

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "recorded"


def _folders() -> list:
    if not FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"recorded TensorRT outputs not found at {FIXTURES}"))]
    folders = sorted(
        {
            p.parent
            for p in FIXTURES.rglob("*")
            if p.is_file()
            and p.suffix in (".json", ".log", ".txt")
            and p.parent != FIXTURES
            and "LICENSE" not in p.name
        }
    )
    return [pytest.param(f, id=str(f.relative_to(FIXTURES))) for f in folders]


FOLDERS = _folders()


def _files(folder: Path, kind: str) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if recognize(p)[0] == kind]


def _profile_json(folder: Path):
    files = _files(folder, "profile")
    return json.loads(files[0].read_text()) if files else None


def _log_profile_total(folder: Path):
    """(iterations, Total Time(ms)) of a log's === Profile === table, read straight from the text."""
    for log in _files(folder, "log"):
        text = log.read_text()
        iterations = re.search(r"=== Profile \((\d+) iterations \) ===", text)
        total = re.search(r"\]\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+100\.0\s+Total\s*$", text, re.M)
        if iterations and total:
            return int(iterations.group(1)), float(total.group(1)), text.count("\n")
    return None


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_fixture_folder_imports_as_a_tensorrt_run(folder):
    run = import_trtexec([folder])
    assert run.backend == "tensorrt" and run.source == "import"
    assert list(run.layers.columns[: len(LAYER_COLUMNS)]) == list(LAYER_COLUMNS)
    assert len(run.layers) > 0
    logs = " ".join(p.read_text() for p in _files(folder, "log"))
    if "e2e network timing is not reported" in logs:  # a --dumpProfile run: trtexec times no whole inference
        assert run.latency is None
    else:
        assert run.latency is not None and run.latency.mean_ms > 0 and run.latency.throughput_qps > 0
    assert run.config.precision == run.precision


@pytest.mark.parametrize("folder", FOLDERS)
def test_layer_times_add_up_to_the_profile_total(folder):
    run = import_trtexec([folder])
    profile = _profile_json(folder)
    table = _log_profile_total(folder)
    if profile is None and table is None:
        assert run.layers["time_ms"].isna().all()  # no profile: no invented times
        return
    times = run.layers["time_ms"]
    assert run.layers["time_pct"].sum() == pytest.approx(100.0)
    if profile is not None:
        count, records = profile[0]["count"], profile[1:]
        assert times.sum() * count == pytest.approx(sum(r["timeMs"] for r in records), rel=1e-9)
        assert times.notna().sum() == len(records)  # every profiled layer has its time
        by_name = dict(zip(run.layers["name"], run.layers["time_pct"]))
        for r in records:  # the file's own percentages (6 significant digits)
            assert by_name[r["name"]] == pytest.approx(r["percentage"], abs=1e-4)
    else:
        iterations, total_ms, _ = table
        rows = int(times.notna().sum())
        assert times.sum() * iterations == pytest.approx(total_ms, abs=0.005 * (rows + 1))  # 2-decimal rounding
        assert (run.layers["calls"][times.notna()] == iterations).all()


@pytest.mark.parametrize("folder", FOLDERS)
def test_latency_agrees_with_the_summary_trtexec_printed(folder):
    run = import_trtexec([folder])
    summary = None
    for meta in _files(folder, "profile_metadata"):
        s = json.loads(meta.read_text())["performance_summary"]
        summary = {
            "min": s["Latency"][0],
            "max": s["Latency"][1],
            "mean": s["Latency"][2],
            "median": s["Latency"][3],
            "qps": s["Throughput"],
        }
    for log in _files(folder, "log"):
        line = re.search(r"\] Latency: (.*)$", log.read_text(), re.M)
        if line is None:  # a --dumpProfile run prints no performance summary
            assert "e2e network timing is not reported" in log.read_text() and run.latency is None
            continue
        values = dict(re.findall(r"(min|max|mean|median) = ([\d.e-]+) ms", line.group(1)))
        qps = float(re.search(r"Throughput: ([\d.]+) qps", log.read_text()).group(1))
        summary = {k: float(v) for k, v in values.items()} | {"qps": qps}
    if run.latency is None:
        return
    assert summary is not None
    lat = run.latency
    # recomputed from a times file, statistics match trtexec's (which sums float32: the mean to ~1e-4)
    assert lat.mean_ms == pytest.approx(summary["mean"], rel=1e-4)
    assert lat.min_ms == pytest.approx(summary["min"], rel=1e-6)
    assert lat.max_ms == pytest.approx(summary["max"], rel=1e-6)
    assert lat.p50_ms == pytest.approx(summary["median"], rel=1e-6)
    assert lat.throughput_qps == pytest.approx(summary["qps"], rel=1e-4)
    if _files(folder, "times"):
        assert len(run.latency_ms) == lat.samples and np.isfinite(lat.std_ms)


def test_files_are_recognised_by_content_not_name(tmp_path):
    folder = FIXTURES / "trtexec" / "resnet18-a100-qat"
    for i, f in enumerate(sorted(folder.iterdir())):
        shutil.copy(f, tmp_path / f"file{i}.dat")
    (tmp_path / "README").write_text("notes about this run\n")
    renamed, original = import_trtexec([tmp_path]), import_trtexec([folder])
    assert renamed.layers.equals(original.layers)
    assert renamed.latency == original.latency
    assert any("README" in note and "Not recognised" in note for note in renamed.notes)


def test_single_files_import_too():
    folder = FIXTURES / "trtexec" / "mobilenet-qat-titanrtx"
    (profile,) = _files(folder, "profile")
    run = import_trtexec([profile])  # a profile alone: times by name, no layer information
    records = json.loads(profile.read_text())[1:]
    assert list(run.layers["name"]) == [r["name"] for r in records]
    assert run.latency is None and (run.layers["type"] == "").all()


def _two_files(tmp_path, folder: Path):
    layer_info = json.loads(_files(folder, "layer_info")[0].read_text())
    profile = json.loads(_files(folder, "profile")[0].read_text())
    return layer_info, profile


def _write(tmp_path, layer_info, profile):
    (tmp_path / "a.json").write_text(json.dumps(layer_info))
    (tmp_path / "b.json").write_text(json.dumps(profile))
    return import_trtexec([tmp_path])


def test_mismatched_layers_are_reported_and_kept(tmp_path):
    folder = FIXTURES / "trtexec" / "resnet18-a100-fp16"
    layer_info, profile = _two_files(tmp_path, folder)
    dropped = profile.pop(3)  # a layer the profile lacks
    profile.append({"name": "ExtraLayer_99", "timeMs": 0.5, "averageMs": 0.5, "medianMs": 0.5, "percentage": 1})
    run = _write(tmp_path, layer_info, profile)
    assert len(run.layers) == len(layer_info["Layers"]) + 1
    missing = run.layers.set_index("name").loc[dropped["name"]]
    assert np.isnan(missing["time_ms"])
    extra = run.layers.set_index("name").loc["ExtraLayer_99"]
    assert extra["time_ms"] == 0.5 and extra["type"] == ""
    assert any(dropped["name"] in n and "no time" in n for n in run.notes)
    assert any("ExtraLayer_99" in n and "not in the layer information" in n for n in run.notes)


def test_profile_suffixes_select_that_profiles_layers(tmp_path):
    folder = FIXTURES / "trtexec" / "resnet18-a100-fp16"
    layer_info, profile = _two_files(tmp_path, folder)
    second = json.loads(json.dumps(layer_info["Layers"]))
    for layer in second:
        layer["Name"] += " [profile 1]"
    layer_info["Layers"] += second
    for r in profile[1:]:
        r["name"] += " [profile 1]"
    run = _write(tmp_path, layer_info, profile)
    assert len(run.layers) == len(second) and run.layers["time_ms"].notna().all()
    assert all(name.endswith("[profile 1]") for name in run.layers["name"])
    # a profile named without suffixes against profile-1 names still joins (suffixes are ignored when matching)
    for r in profile[1:]:
        r["name"] = r["name"].replace(" [profile 1]", "")
    layer_info["Layers"] = second
    joined = _write(tmp_path, layer_info, profile)
    assert joined.layers["time_ms"].notna().all() and len(joined.layers) == len(second)


def test_names_only_layer_information_says_how_to_rebuild(tmp_path):
    (tmp_path / "layers.json").write_text(json.dumps({"Layers": ["conv1", "relu1"], "Bindings": ["x", "y"]}))
    with pytest.raises(WorkbenchError, match="--profilingVerbosity=detailed"):
        import_trtexec([tmp_path])


def test_nothing_to_import_and_ambiguous_folders_are_errors(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(WorkbenchError, match="Nothing to import"):
        import_trtexec([tmp_path])
    with pytest.raises(WorkbenchError, match=f"Nothing to import in {re.escape(str(tmp_path / 'a.txt'))}:"):
        import_trtexec(str(tmp_path / "a.txt"))  # one path as a string names that path, not its characters
    with pytest.raises(WorkbenchError, match="does not exist"):
        import_trtexec([tmp_path / "missing"])
    folder = FIXTURES / "trtexec" / "resnet18-a100-fp16"
    if folder.is_dir():
        with pytest.raises(WorkbenchError, match="Two .* files: .* Import one engine's files at a time"):
            import_trtexec([folder, FIXTURES / "trtexec" / "resnet18-a100-fp32"])


@pytest.mark.parametrize("folder", FOLDERS)
def test_imported_run_saves_and_loads_with_its_source_files(folder, tmp_path):
    run = import_trtexec([folder])
    saved = run.save(tmp_path / "run", files=dict(run.artifacts))
    loaded = load_run(tmp_path / "run")
    assert loaded.layers.drop(columns="onnx_nodes").equals(saved.layers.drop(columns="onnx_nodes"))
    assert list(loaded.layers["onnx_nodes"]) == list(run.layers["onnx_nodes"])
    assert loaded.source == "import" and loaded.notes == run.notes
    for key in run.artifacts:
        assert loaded.artifact(key).is_file() and loaded.artifact(key).parent == tmp_path / "run"
    again = import_trtexec([tmp_path / "run"])  # a saved run folder holds the files: it imports again
    assert np.allclose(again.layers["time_ms"].fillna(-1), run.layers["time_ms"].fillna(-1))


@pytest.mark.parametrize("folder", FOLDERS)
def test_imported_runs_render_the_live_charts(folder):
    from workbench import charts

    run = import_trtexec([folder])
    figures = charts.run_figures(run)
    assert figures and all(len(fig.data) > 0 or fig.layout.annotations for fig in figures.values())
    timing = charts.layer_timing(run)
    if run.layers["time_ms"].notna().any():
        shown = {str(n) for trace in timing.data for n in trace.y}
        slowest = run.layers.sort_values("time_ms", ascending=False)["name"].iloc[0]
        assert charts.layer_labels([slowest])[0] in shown  # a short label; the full name is on hover


def test_environment_and_config_come_from_the_files():
    folder = FIXTURES / "trtexec-10.16" / "h100"
    run = import_trtexec([folder])
    log = _files(folder, "log")[0].read_text()
    assert run.environment["gpu"] == re.search(r"Selected Device: (.+)", log).group(1).strip()
    assert run.environment["versions"]["tensorrt"] == re.search(r"TensorRT version: ([\d.]+)", log).group(1)
    shape = re.search(r"--shapes=x:([\dx]+)", log).group(1)
    assert run.config.shape_map["x"] == tuple(int(d) for d in shape.split("x"))
    assert run.config.cuda_graph is ("--useCudaGraph" in log)
    assert run.latency.samples == int(re.search(r"Timing trace has (\d+) queries", log).group(1))


def test_imports_bound_what_they_read(tmp_path):
    """A 2 GiB sparse model.profile.json beside real trtexec files is passed over after 4 KiB (it used to cost
    4.3 GB); a 2 GiB file that starts as text is refused by its size in one line; a pipe is never opened."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "run"
    shutil.copytree(FIXTURES / "trtexec-10.16" / "h100", folder)
    with open(folder / "model.profile.json", "wb") as f:
        f.truncate(2 << 30)  # sparse: no disk used
    os.mkfifo(folder / "times.json")
    text_headed = tmp_path / "huge.json"
    with open(text_headed, "wb") as f:
        f.write(b"[" + b" " * 8192)
        f.truncate(2 << 30)
    # VmHWM, not ru_maxrss: ru_maxrss keeps the high-water mark of the forking pytest process across exec
    script = (
        "import re, sys\n"
        "from workbench.interop.trtexec import import_trtexec\n"
        "from workbench.errors import WorkbenchError\n"
        "run = import_trtexec([sys.argv[1]])\n"
        "print(len(run.layers), any('model.profile.json' in n for n in run.notes))\n"
        "try:\n    import_trtexec([sys.argv[2]])\nexcept WorkbenchError as e:\n    print(e)\n"
        "print(int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(text_headed)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    layers, refused, peak_mib = done.stdout.strip().splitlines()
    assert int(layers.split()[0]) > 0 and layers.split()[1] == "True"
    assert "huge.json" in refused and "larger than 1,073,741,824 bytes" in refused
    assert int(peak_mib) < 400
