"""quantization_scales reads what INT8 calibration decided from the Q/DQ nodes of a variant."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

import workbench as wb
from workbench.precision.changes import quantization_scales
from workbench.model.samples import digits_calibration, sample_path


@pytest.fixture(scope="module")
def calibration():
    return digits_calibration()


def _by_tensor(variant):
    return {row["tensor"]: row for row in quantization_scales(variant.model)}


def test_max_calibration_range_is_the_largest_value_seen(calibration, tmp_path):
    images = calibration["input"]
    variant = wb.make_variant(
        sample_path("digits_cnn"), "int8", calibration=calibration, calibration_method="max", cache_dir=tmp_path
    )
    rows = quantization_scales(variant.model)
    assert len(rows) == variant.changes["qdq_pairs"]
    activation = next(r for r in rows if r["kind"] == "activation" and r["tensor"].startswith("input"))
    # the scale is stored in FP16, so the range matches the data's max to FP16 precision
    assert activation["channels"] == 1
    assert activation["amax"] == pytest.approx(float(np.abs(images).max()), rel=2e-3)


def test_weights_get_one_scale_per_output_channel(calibration, tmp_path):
    variant = wb.make_variant(sample_path("digits_cnn"), "int8", calibration=calibration, cache_dir=tmp_path)
    weights = {r["tensor"]: r for r in quantization_scales(variant.model) if r["kind"] == "weight"}
    conv_weights = {
        i.name: numpy_helper.to_array(i) for i in variant.source.proto.graph.initializer if len(i.dims) == 4
    }
    assert weights and set(weights) <= set(conv_weights)
    for name, row in weights.items():
        assert row["channels"] == conv_weights[name].shape[0]
        # weights are quantized symmetrically per channel: the widest channel's range is the largest |weight|
        assert row["amax"] == pytest.approx(float(np.abs(conv_weights[name]).max()), rel=2e-3)


def test_a_model_without_qdq_has_no_scales():
    assert quantization_scales(wb.load_model(sample_path("digits_cnn"))) == []
