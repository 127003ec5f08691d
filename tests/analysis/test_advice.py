"""Advice on real runs: every finding rests on numbers that the run's own files contain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench.analysis.advice import SEVERITIES, advise
from workbench.config import BuildConfig
from workbench.results.run import Run
from workbench.interop.trtexec import import_trtexec

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "recorded"


def _folder(*parts) -> Path:
    folder = FIXTURES.joinpath(*parts)
    if not folder.is_dir():
        pytest.skip(f"recorded TensorRT outputs not found at {FIXTURES}")
    return folder


def _json(folder: Path, suffix: str):
    return json.loads(next(folder.glob(f"*{suffix}")).read_text())


def _finding(findings, word: str):
    matches = [f for f in findings if word in f.title]
    assert len(matches) <= 1
    return matches[0] if matches else None


def _times(folder: Path) -> dict[str, float]:
    profile = _json(folder, ".profile.json")
    return {r["name"]: r["timeMs"] / profile[0]["count"] for r in profile[1:]}


def _ms_in(text: str) -> float:
    return float(re.search(r"([\d.]+) ms per inference", text).group(1))


def test_unfused_qdq_layers_are_the_standalone_qdq_layers_of_the_engine():
    folder = _folder("trtexec", "resnet18-a100-qat")
    graph, times = _json(folder, ".graph.json"), _times(folder)
    standalone = [layer["Name"] for layer in graph["Layers"] if layer.get("Origin") == "QDQ"]
    finding = _finding(advise(import_trtexec([folder])), "quantize/dequantize")
    assert finding.title.startswith(f"{len(standalone)} ")
    assert _ms_in(finding.detail) == pytest.approx(sum(times[n] for n in standalone), abs=5e-5)
    shown = [e.split(" (")[0] for e in finding.evidence if not e.startswith("...")]
    assert shown == sorted(standalone, key=lambda n: -times[n])[: len(shown)]


def test_reformat_cost_is_the_time_of_the_reformat_layers():
    folder = _folder("trtexec", "resnet18-a100-fp16")
    graph, times = _json(folder, ".graph.json"), _times(folder)
    copies = [layer["Name"] for layer in graph["Layers"] if layer["LayerType"] == "Reformat"]
    noops = [
        layer["Name"]
        for layer in graph["Layers"]
        if layer["LayerType"] == "NoOp" and layer["Name"].startswith("Reformatting CopyNode")
    ]
    finding = _finding(advise(import_trtexec([folder])), "reformat")
    ms = sum(times[n] for n in copies)
    pct = 100 * ms / sum(times.values())
    assert finding.title.startswith(f"{len(copies)} reformat")
    assert _ms_in(finding.detail) == pytest.approx(ms, abs=5e-5)
    assert f"{pct:.1f}%" in finding.detail and f"{len(noops)} more are no-ops" in finding.detail
    assert finding.severity == ("high" if pct >= 10 else "medium" if pct >= 3 else "low")


def test_fp32_layers_are_flagged_only_in_lower_precision_engines():
    fp32 = advise(import_trtexec([_folder("trtexec", "resnet18-a100-fp32")]))
    assert _finding(fp32, "FP32") is None  # an FP32 engine has no FP32 fallbacks
    folder = _folder("trtexec", "resnet18-a100-qat")
    graph, times = _json(folder, ".graph.json"), _times(folder)
    fp32_layers = [
        layer["Name"]
        for layer in graph["Layers"]
        if layer["LayerType"] not in ("Reformat", "NoOp") and "FP32" in layer["Outputs"][0]["Format/Datatype"]
    ]
    finding = _finding(advise(import_trtexec([folder])), "FP32")
    assert finding.title.startswith(f"{len(fp32_layers)} layers run in FP32") and "INT8" in finding.title
    assert _ms_in(finding.detail) == pytest.approx(sum(times[n] for n in fp32_layers), abs=5e-5)
    assert all("ONNX" in e for e in finding.evidence)  # each names the ONNX nodes to look at


def test_myelin_layers_list_the_onnx_nodes_they_span():
    folder = _folder("trtexec-10.16", "h100")
    raw = _json(folder, ".layerinfo.json")
    myelin = [layer for layer in raw["Layers"] if layer["LayerType"] in ("gemm", "kgen")]
    nodes = {n for layer in myelin for n in re.findall(r"\[ONNX Layer: ([^\]]+)\]", layer["Metadata"])}
    finding = _finding(advise(import_trtexec([folder])), "Myelin")
    assert finding.title == f"{len(myelin)} Myelin layers compile {len(nodes)} ONNX nodes as whole subgraphs"
    gemm = next(e for e in finding.evidence if e.startswith(myelin[0]["Name"]))
    assert all(n in gemm for n in re.findall(r"\[ONNX Layer: ([^\]]+)\]", myelin[0]["Metadata"]))
    assert "not profiled" in finding.detail  # no profile in this folder: bytes, not invented times


def test_top_layers_are_the_slowest_in_the_profile():
    folder = _folder("trtexec", "mobilenet-qat-titanrtx")
    times = _times(folder)
    finding = _finding(advise(import_trtexec([folder])), "slowest")
    top = sorted(times, key=times.get, reverse=True)[:5]
    assert [e.split(" (")[0] for e in finding.evidence] == top
    share = 100 * sum(times[n] for n in top) / sum(times.values())
    assert f"{share:.1f}%" in finding.title


@pytest.mark.parametrize(
    "parts",
    [
        ("trtexec", "resnet18-a100-fp32"),
        ("trtexec", "mobilenet-qat-titanrtx"),
        ("trtexec-10.16", "h100"),
        ("trtexec-11.1", "h100"),
    ],
)
def test_every_fixture_gets_ordered_findings_with_evidence(parts):
    findings = advise(import_trtexec([_folder(*parts)]))
    assert findings
    assert [SEVERITIES.index(f.severity) for f in findings] == sorted(SEVERITIES.index(f.severity) for f in findings)
    assert all(f.evidence and f.fix and re.search(r"\d", f.detail) for f in findings)


def _ort_run(rows, providers) -> Run:
    return Run(backend="onnxruntime", layers=rows, config=BuildConfig(), environment={"providers": providers})


def test_onnxruntime_nodes_on_a_slower_provider_are_found():
    rows = [
        {"name": "conv", "type": "Conv", "tactic": "CUDAExecutionProvider", "time_ms": 0.5, "precision": "fp32"},
        {"name": "nms", "type": "NonMaxSuppression", "tactic": "CPUExecutionProvider", "time_ms": 1.5},
        {"name": "topk", "type": "TopK", "tactic": "CPUExecutionProvider", "time_ms": 0.5},
    ]
    finding = _finding(advise(_ort_run(rows, ["CUDAExecutionProvider", "CPUExecutionProvider"])), "fell back")
    assert finding.title == "2 nodes fell back from CUDAExecutionProvider to CPUExecutionProvider"
    assert "2.0000 ms per inference (80.0% of layer time)" in finding.detail
    assert finding.severity == "high"
    assert [e.split(" (")[0] for e in finding.evidence] == ["nms", "topk"]


def test_a_cpu_only_onnxruntime_run_has_no_provider_finding(mlp_path):
    import workbench

    run = workbench.profile(
        workbench.load_model(mlp_path), "fp32", backend="onnxruntime", config=BuildConfig(iterations=2, warmup_ms=0)
    )
    assert set(run.layers["tactic"]) <= {"CPUExecutionProvider", ""}
    assert _finding(advise(run), "fell back") is None
