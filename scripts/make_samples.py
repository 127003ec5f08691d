"""Create the sample models in data/ (deterministic: fixed seeds, single-threaded CPU training).

    .venv/bin/python scripts/make_samples.py [--out data]

Writes:
  digits_cnn.onnx           small CNN trained on scikit-learn's digits (8x8), input = pixels / 16
  digits_test.npz           held-out test split (input, labels) preprocessed exactly as the model expects
  digits_calib.npz          256 training-split samples for INT8 calibration (input)
  resnet_mini.onnx          ResNet-style CNN, seeded random weights, input [batch,3,128,128]
  transformer_encoder.onnx  2-layer transformer encoder, seeded random weights, input_ids [batch,seq]

All models: opset 17, dynamic batch (and seq for the transformer), every node uniquely named.
Provenance and shapes are documented in data/README.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

OPSET = 17
SEED = 0
DIGITS_TEST_FRACTION = 0.25
DIGITS_CALIB_SAMPLES = 256
DIGITS_EPOCHS = 40
DIGITS_BATCH = 64
DIGITS_LR = 2e-3


# ---- models -------------------------------------------------------------------------------------------------


class DigitsCNN(nn.Module):
    """conv3x3(16) ReLU, conv3x3(32) ReLU, maxpool 2 -> 32x4x4, FC 64, ReLU, FC 10."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetMini(nn.Module):
    """ResNet-18 layout at a quarter of the width: stem conv7x7/2 + BN + ReLU, maxpool, 4 stages x 2 basic
    blocks (16, 32, 64, 128 channels), global average pool, FC to 1000 classes."""

    def __init__(self, widths=(16, 32, 64, 128), blocks=2, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(*[BasicBlock(cin if b == 0 else w, w, stride if b == 0 else 1) for b in range(blocks)])
            )
            cin = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class SelfAttention(nn.Module):
    """Multi-head self-attention written with plain matmuls, so the ONNX graph shows each step."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).reshape(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.proj(context.transpose(1, 2).reshape(b, s, d))


class EncoderLayer(nn.Module):
    """Pre-LayerNorm encoder layer: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, d_model: int, heads: int, ff: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TransformerEncoder(nn.Module):
    def __init__(self, vocab=1000, d_model=128, heads=4, ff=512, layers=2, max_len=512):
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model)
        self.layers = nn.Sequential(*[EncoderLayer(d_model, heads, ff) for _ in range(layers)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        return self.norm(self.layers(self.tokens(input_ids) + self.positions(positions)))


# ---- helpers ------------------------------------------------------------------------------------------------


def seed_everything(seed: int = SEED) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)  # bitwise-stable training on any CPU
    torch.use_deterministic_algorithms(True)


def randomize_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial eval statistics, so the random model is not a plain identity-scaled net."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)


def export(module: nn.Module, example, path: Path, input_name: str, output_name: str, dynamic: dict, doc: str) -> None:
    """``dynamic`` names the dynamic axes shared by input and output (batch, and seq for the transformer)."""
    # The TorchScript exporter gives stable scope-based node names (/stages/stages.0/...) and opset 17 directly.
    module.eval()
    tmp = path.with_name(f".{path.name}.tmp")
    torch.onnx.export(
        module,
        (example,),
        str(tmp),
        dynamo=False,
        opset_version=OPSET,
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: dynamic, output_name: dynamic},
        do_constant_folding=True,
    )
    proto = onnx.load(str(tmp))
    tmp.unlink()
    name_nodes(proto)
    proto.graph.name = path.stem
    proto.doc_string = doc
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def name_nodes(proto) -> None:
    """Unique, non-empty node names (the exporter's scope names where it gave them, op type + index otherwise)."""
    seen: set[str] = set()
    for i, node in enumerate(proto.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def ort_run(path: Path, feeds: dict) -> list:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# ---- the samples -------------------------------------------------------------------------------------------


def digits_split():
    """scikit-learn digits, pixels / 16 (0..1 floats), stratified 75/25 split with seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, random_state=SEED, stratify=y)


def make_digits(out: Path) -> float:
    x_train, x_test, y_train, y_test = digits_split()
    seed_everything()
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=DIGITS_LR)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(DIGITS_EPOCHS):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), DIGITS_BATCH):
            idx = order[start : start + DIGITS_BATCH]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            optimizer.step()
    path = out / "digits_cnn.onnx"
    export(
        model,
        torch.zeros(1, 1, 8, 8),
        path,
        "input",
        "logits",
        {0: "batch"},
        "Digits CNN (scikit-learn digits, 8x8, input = pixels/16). See data/README.md.",
    )
    np.savez_compressed(out / "digits_test.npz", input=x_test, labels=y_test)
    calib = np.random.default_rng(SEED).choice(len(x_train), DIGITS_CALIB_SAMPLES, replace=False)
    np.savez_compressed(out / "digits_calib.npz", input=x_train[np.sort(calib)])
    (logits,) = ort_run(path, {"input": x_test})
    return float((logits.argmax(1) == y_test).mean())


def make_resnet(out: Path) -> int:
    seed_everything()
    model = ResNetMini()
    randomize_batchnorm(model, torch.Generator().manual_seed(SEED))
    path = out / "resnet_mini.onnx"
    export(
        model,
        torch.zeros(1, 3, 128, 128),
        path,
        "input",
        "logits",
        {0: "batch"},
        "ResNet-style CNN with seeded random weights (seed 0). See data/README.md.",
    )
    (logits,) = ort_run(path, {"input": np.random.default_rng(SEED).standard_normal((2, 3, 128, 128), np.float32)})
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()
    return sum(p.numel() for p in model.parameters())


def make_transformer(out: Path) -> int:
    seed_everything()
    model = TransformerEncoder()
    path = out / "transformer_encoder.onnx"
    export(
        model,
        torch.zeros(1, 16, dtype=torch.int64),
        path,
        "input_ids",
        "hidden",
        {0: "batch", 1: "seq"},
        "Transformer encoder with seeded random weights (seed 0). See data/README.md.",
    )
    ids = np.random.default_rng(SEED).integers(0, 1000, (3, 37), dtype=np.int64)
    (hidden,) = ort_run(path, {"input_ids": ids})
    expected = model(torch.from_numpy(ids)).detach().numpy()
    assert hidden.shape == (3, 37, 128) and np.allclose(hidden, expected, atol=1e-4)
    return sum(p.numel() for p in model.parameters())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    accuracy = make_digits(args.out)
    print(f"digits_cnn.onnx: FP32 test accuracy {accuracy:.4f} (ONNX Runtime CPU)")
    print(f"resnet_mini.onnx: {make_resnet(args.out):,} parameters")
    print(f"transformer_encoder.onnx: {make_transformer(args.out):,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
