"""Precision and backend names: defined once, strings wherever strings were used."""

from __future__ import annotations

import json

import pytest

import workbench as wb
from workbench.config import BackendName, BuildConfig, Precision
from workbench.errors import WorkbenchError


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


def test_one_size_parser_reads_the_cli_and_trtexec_forms():
    from workbench.config import parse_size

    assert parse_size("512M") == 512 << 20 and parse_size("2GiB") == 2 << 30 and parse_size("1.5 MiB") == 3 << 19
    assert parse_size("1073741824") == 1 << 30 and parse_size(4096) == 4096
    assert parse_size("64", unit="M") == 64 << 20 and parse_size("512K", unit="M") == 512 << 10  # trtexec pools
    with pytest.raises(WorkbenchError, match="Cannot read size 'lots': write bytes"):
        parse_size("lots")


def test_shapes_are_written_one_way_and_read_back():
    from workbench.config import format_shape, format_shapes, parse_shapes

    assert format_shape((1, 3, 224, 224)) == "1x3x224x224" and format_shape((-1, "seq")) == "-1xseq"
    assert format_shape((), "scalar") == "scalar" and format_shape(()) == ""
    shapes = {"input": (8, 3, 128, 128), "mask": (8, 16)}
    assert format_shapes(shapes) == "input:8x3x128x128, mask:8x16"
    assert parse_shapes(format_shapes(shapes, sep=",")) == tuple(shapes.items())


def test_numbers_print_in_plain_decimals():
    from workbench.format import plain_number

    assert [plain_number(v) for v in (1.234e-05, 0.51234, 3.0, 12345.678, 2.5e9)] == [
        "0.00001234",
        "0.5123",
        "3",
        "12346",
        "2500000000",
    ]
    assert plain_number(float("nan")) == plain_number(None) == ""


def test_the_builders_peak_host_memory_of_0_mib_reads_under_1_mib():
    from workbench.results.run import CompileReport

    report = CompileReport("sm89", "8.9", "TensorRT-RTX", builder_host_peak_bytes=0)
    assert report.builder_host_peak_text == "under 1 MiB (the builder logs whole MiB)"
    assert CompileReport("sm89", "8.9", "x", builder_host_peak_bytes=3 << 20).builder_host_peak_text == "3.0 MiB"
    assert CompileReport("sm89", "8.9", "x").builder_host_peak_text is None
