"""The Pareto chart places real trtexec imports (a latency, no accuracy) on the latency axis beside runs profiled
here, and says why a run is not on the front or a chart shows one point."""

from __future__ import annotations

import pytest
from real_models import real_model
from support import FIXTURES

import workbench as wb
from workbench.analysis.compare import compare

FAST = wb.BuildConfig(iterations=5, warmup_ms=0, trials=1, shapes=(("x", (1, 3, 48, 192)),))


@pytest.fixture(scope="module")
def runs():
    fp16_import = wb.import_trtexec(FIXTURES / "trtexec" / "resnet18-a100-fp16")  # RTX/A100 trtexec outputs
    assert fp16_import.latency is not None and fp16_import.accuracy is None
    profiled = wb.profile(real_model("ppocr_cls"), "fp32", backend="onnxruntime", config=FAST)
    return [profiled, fp16_import]


def _x(fig) -> list[float]:
    return sorted(x for trace in fig.data if trace.name != "Pareto front" for x in trace.x)


def test_an_import_without_accuracy_is_on_the_latency_axis(runs):
    fig = wb.charts.pareto(runs)
    assert _x(fig) == pytest.approx(sorted(r.latency.mean_ms for r in runs))  # both runs plotted
    axis_only = next(t for t in fig.data if t.name == "accuracy not measured")
    assert list(axis_only.x) == pytest.approx([runs[1].latency.mean_ms])
    assert axis_only.yaxis == "y2" and list(axis_only.text) == ["B (fp16)"]
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "accuracy not measured" in notes and "B" in notes
    assert "not plotted" not in notes
    assert "only A has both a latency and an accuracy" in notes  # the one dot with an error says why it is alone


def test_the_text_comparison_names_the_run_without_accuracy(runs):
    text = compare(runs).to_text()
    assert "Not on the Pareto front, accuracy not measured: B" in text


def test_imports_alone_still_give_a_chart_of_latencies():
    imports = [wb.import_trtexec(FIXTURES / "trtexec" / f"resnet18-a100-{p}") for p in ("fp16", "qat")]
    fig = wb.charts.pareto(imports)
    assert _x(fig) == pytest.approx(sorted(r.latency.mean_ms for r in imports))
    assert "no run has an accuracy measurement" in " ".join(a.text for a in fig.layout.annotations)
