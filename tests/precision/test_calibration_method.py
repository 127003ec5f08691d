"""Which method an INT8 variant's scales came from is said in the run, and the default is max calibration; accuracy
on ONNX Runtime runs the variant at the shapes its profile ran (no second crash probe of a larger chunk)."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.model import session_probe
from workbench.model.samples import digits_calibration
from workbench.paths import cache_dir

FAST = wb.BuildConfig(iterations=3, warmup_ms=0, trials=1, shapes=(("input", (1, 1, 8, 8)),))


@pytest.fixture()
def own_cache(own_cache, monkeypatch):
    monkeypatch.setattr(session_probe, "_PASSED", set())  # the probes of this test only, not earlier ones
    return own_cache


@pytest.mark.parametrize("method", [None, "entropy"])
def test_the_run_says_which_calibration_method_made_its_scales(own_cache, method):
    options = {"calibration_method": method} if method else {}
    run = wb.profile(
        wb.sample_path("digits_cnn"),
        "int8",
        backend="onnxruntime",
        config=FAST,
        calibration=digits_calibration(),
        **options,
    )
    used = method or "max"  # the default: ModelOpt's INT8 preset for CNNs
    assert run.variant["options"]["calibration_method"] == used
    assert f"int8 scales: {used} calibration on 256 samples, 1 per step (ModelOpt ONNX PTQ)" in run.notes
    log = next((own_cache / "variants").glob("*/modelopt.log")).read_text()
    assert f"INT8 quantization with method: {used}" in log  # what ModelOpt itself ran
    # accuracy ran the variant at the profiled batch (1 sample a chunk): the FP32 source got its probe at that
    # shape, and the variant's probe from the build served accuracy too: two probes, not a third at 32 samples
    assert run.accuracy.samples == 32
    assert len(list(cache_dir("probes").iterdir())) == 2
    # the layers' weights (quantized ones at their INT8 size, as ONNX Runtime folds them) sum to the run's total
    unread = run.extra["weights_in_no_layer"]["bytes"]
    assert int(run.layers["weight_bytes"].sum()) + unread == run.memory.weights_bytes
    assert not [f for f in run.findings if f.check == "memory_sums"]
