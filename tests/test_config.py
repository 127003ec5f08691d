"""Precision and backend names: defined once, strings wherever strings were used."""

from __future__ import annotations

import json

import pytest

import workbench as wb
from workbench.config import BackendName, BuildConfig, Precision


def test_names_are_strings_that_json_and_fstrings_write_plainly():
    config = BuildConfig(precision="FP16")
    assert config.precision is Precision.FP16 and config.precision == "fp16" and f"{config.precision}" == "fp16"
    assert json.loads(json.dumps(config.to_dict()))["precision"] == "fp16"
    assert BuildConfig.from_dict(json.loads(json.dumps(config.to_dict()))).key() == config.key()
    assert [p for p in Precision if p.quantized] == ["int8", "fp8"]
    assert [p for p in Precision if p.in_graph] == ["fp16", "bf16", "int8", "fp8"]
    assert BackendName.parse("TensorRT-RTX") is BackendName.TENSORRT_RTX
    with pytest.raises(wb.WorkbenchError, match="Unknown precision 'fp64': choose one of fp32, tf32"):
        BuildConfig(precision="fp64")
