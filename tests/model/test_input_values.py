"""Inputs a real model can run on: value ranges from the graph, user overrides, per-input sampling for accuracy."""

from __future__ import annotations


import numpy as np
import pytest
from support import cli
from real_models import real_model

import workbench as wb
from workbench.model.inputs import (
    evaluation_inputs,
    input_value_ranges,
    make_inputs,
    parse_value_ranges,
    resolve_shapes,
)

QUICK = wb.BuildConfig(iterations=2, warmup_ms=0, trials=1)


def test_an_if_condition_gets_the_value_it_is_compared_with():
    """silero VAD selects its 16 kHz branch with If(sr == 16000); random 0/1 would run the 8 kHz one or none."""
    for key in ("silero_vad", "silero_vad_ifless"):  # TorchScript and dynamo exports compare differently
        model = wb.load_model(real_model(key))
        sr = input_value_ranges(model)["sr"]
        assert sr.values == (16000,) and "Equal" in sr.why
        assert make_inputs(model, {"input": (1, 512)}, seed=3)["sr"] == 16000


def test_byte_inputs_span_the_one_hot_table_and_a_given_range_wins():
    model = wb.load_model(real_model("magika"))  # tf2onnx: one-hot of the byte values by Equal against 0..256
    inferred = input_value_ranges(model)["bytes"]
    assert (inferred.low, inferred.high) == (0, 256)
    values = make_inputs(model, {"bytes": (4, 2048)}, seed=0)["bytes"]
    assert values.min() >= 0 and values.max() <= 256 and values.max() > 200  # the whole table, not 0/1
    given = make_inputs(model, {"bytes": (4, 2048)}, ranges=parse_value_ranges("bytes:10..12"))["bytes"]
    assert set(np.unique(given)) == {10, 11, 12}


def test_bad_ranges_are_one_line_errors():
    model = wb.load_model(real_model("magika"))
    for text, fragment in (("bytes:9..1", "is empty"), ("bytes:a..b", "not LO..HI"), ("0..5", "NAME:LO..HI")):
        with pytest.raises(wb.WorkbenchError, match=fragment) as err:
            input_value_ranges(model, parse_value_ranges(text))
        assert "\n" not in str(err.value)
    with pytest.raises(wb.WorkbenchError, match="unknown input 'ids'"):
        input_value_ranges(model, {"ids": (0, 5)})


def test_a_named_dimension_has_one_size_across_inputs():
    model = wb.load_model(real_model("silero_vad_ifless"))  # input [batch, sequence], state [2, batch, 128]
    shapes = resolve_shapes(model, {"input": (3, 512)})
    assert shapes["state"] == (2, 3, 128) and shapes["sr"] == ()


def test_recurrent_model_runs_in_fp16_with_state_and_rate_held_fixed():
    """The issue's three failures on one real model: If-selected branch, AutoCast on If bodies, sample counts."""
    run = wb.profile(
        real_model("silero_vad"),
        "fp16",
        backend="onnxruntime",
        config=QUICK.replace(shapes=(("input", (1, 512)), ("state", (2, 1, 128)))),
    )
    notes = " ".join(run.notes)
    assert "sr 16000" in notes  # which values each input got
    assert "If 'If_0'" in notes and "kept in FP32" in notes and "upstream" in notes
    accuracy = run.accuracy
    assert accuracy.verdict == "ok" and accuracy.samples == 32
    assert "held fixed across samples: state [2x1x128], sr [scalar]" in accuracy.note
    data = evaluation_inputs(wb.load_model(real_model("silero_vad")), dict(run.profiled_shapes), 32)
    assert data["input"].shape == (32, 512) and data["state"].shape == (2, 1, 128) and data["sr"].shape == ()


def test_cli_input_range_is_used_and_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    done = cli(
        *("profile", real_model("magika"), "--backend", "onnxruntime", "--input-range", "bytes:0..9"),
        *("--iterations", "2", "--trials", "1", "--warmup", "0"),
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert "note: input values: bytes 0..9 (given)" in done.stdout


def test_data_for_some_inputs_is_used_and_the_others_generated_to_fit(tmp_path):
    """A .npz with the audio only: the state and the sample rate are generated at the audio's batch."""
    audio = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    np.savez(tmp_path / "audio.npz", input=audio)
    run = wb.profile(
        real_model("silero_vad_ifless"), backend="onnxruntime", config=QUICK, inputs=tmp_path / "audio.npz"
    )
    assert run.profiled_shapes["state"] == (2, 1, 128)
    assert any("input from the given data" in n and "sr 16000" in n for n in run.notes)
