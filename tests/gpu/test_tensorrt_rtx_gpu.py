"""TensorRT-RTX on a GPU: on a supported one (compute capability 8.0, 8.6, 8.9, 12.x) build and profile every sample
like the TensorRT backend (runtime configuration, EAGER specialization, JIT runtime cache kept in the engine cache,
per-layer times, inspector JSON) and check the outputs against ONNX Runtime; on any other GPU (Hopper, B200) the
backend says why in one line while ``compile`` still works.

Marked ``gpu``; skipped where there is no NVIDIA GPU or TensorRT-RTX is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends import get_backend
from workbench.backends.tensorrt import TensorRTRTXBackend
from workbench.config import BuildConfig
from workbench.model.inputs import make_inputs
from workbench.model.onnx_model import load_model
from workbench.model.samples import sample_path
from workbench.precision.variant import make_variant

pytest.importorskip("tensorrt_rtx")
RTX = get_backend("tensorrt-rtx")
RUNS, RUN_REASON = RTX.available()
HAS_GPU = RUNS or "compute capability" in RUN_REASON and "does not run on" in RUN_REASON
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason=f"no NVIDIA GPU: {RUN_REASON}")]

SHAPES = {
    "digits_cnn": {"input": (8, 1, 8, 8)},
    "resnet_mini": {"input": (2, 3, 128, 128)},
    "transformer_encoder": {"input_ids": (2, 64)},
}


@pytest.mark.skipif(RUNS, reason="this GPU runs TensorRT-RTX engines")
def test_an_unsupported_gpu_is_named_in_one_line_and_compile_still_works(tmp_path):
    assert "\n" not in RUN_REASON and "8.0, 8.6, 8.9 or 12.x" in RUN_REASON
    run = TensorRTRTXBackend(tmp_path).compile(make_variant(load_model(sample_path("digits_cnn"))), BuildConfig())
    assert run.timed is False and run.compiled.target == "sm89" and len(run.layers)


@pytest.mark.skipif(not RUNS, reason=f"TensorRT-RTX cannot run here: {RUN_REASON}")
@pytest.mark.parametrize("sample", sorted(SHAPES))
def test_profile_on_a_supported_gpu_matches_onnxruntime(sample, tmp_path):
    import onnxruntime as ort

    backend = TensorRTRTXBackend(tmp_path / "engines")
    model = load_model(sample_path(sample))
    config = BuildConfig(shapes=tuple(SHAPES[sample].items()), iterations=50, cuda_graph=True)
    feed = make_inputs(model, config.shape_map, 0)
    with backend.build(make_variant(model), config) as engine:
        run = backend.profile(engine, feed, config)
        outputs = engine.infer(feed)
    assert run.timed and run.latency.samples >= 50 and run.layers["time_ms"].notna().any()
    assert run.artifact("layer_info") is not None
    assert list((tmp_path / "engines" / "runtime").glob("*.cache"))  # the JIT cache kept for the next run
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    for name, expected in zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True):
        error = np.linalg.norm(outputs[name] - expected) / max(np.linalg.norm(expected), 1e-12)
        assert error < 1e-3, (name, error)
