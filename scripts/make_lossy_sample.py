"""Create the bundled model that INT8 really hurts: ``data/outlier_digits.onnx`` and its labelled data.

    .venv/bin/python scripts/make_lossy_sample.py [--out data]

Writes:
  outlier_digits.onnx        CNN trained on scikit-learn's digits with two wide-dynamic-range tensors (see below)
  outlier_digits_test.npz    held-out test split (input, labels), preprocessed exactly as the model expects
  outlier_digits_calib.npz   256 training-split samples for INT8 calibration (input)

Deterministic (seed 0, one CPU thread, < 1 min). Why INT8 loses accuracy, by construction (data/README.md):

1. The input has a second channel of raw sensor counts (integers in [-255, 255]) next to the digit's pixels
   (0..1). The first Conv's weights on that channel are held at zero (pruned), so FP32 ignores it, but INT8
   quantizes the Conv's input with ONE per-tensor scale (255/127 = 2.0): the pixels all round to 0 or 2.
2. The second Conv has one extra output channel with zero weights and a bias of 300 (an "outlier feature", like the
   massive activations of large transformers); the third Conv's weights on it are zero, so FP32 is unchanged,
   but that Conv's per-tensor input scale (300/127) rounds the real features (0..~10) to a few levels.

Keeping those two nodes (the first and the third Conv) out of INT8 recovers the FP32 accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_samples import SEED, digits_split, export, ort_run, seed_everything

SENSOR_RANGE = 255  # raw counts in [-255, 255] on input channel 1
OUTLIER_BIAS = 300.0  # the constant outlier feature after the last Conv
CALIB_SAMPLES = 128
EPOCHS = 30
BATCH = 64
LR = 2e-3


class OutlierDigits(nn.Module):
    """conv(2->16) ReLU, conv(16->16[+1]) ReLU, conv(16[+1]->32) ReLU, maxpool, conv(32->32) ReLU, maxpool,
    flatten, FC 64, ReLU, FC 10. ``outlier=True`` adds the constant outlier channel after the second Conv."""

    def __init__(self, outlier: bool = False):
        super().__init__()
        extra = 1 if outlier else 0
        self.conv1 = nn.Conv2d(2, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16 + extra, 3, padding=1)
        self.conv3 = nn.Conv2d(16 + extra, 32, 3, padding=1)
        self.conv4 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.pool(self.act(self.conv3(x)))
        x = self.pool(self.act(self.conv4(x)))
        return self.fc2(self.act(self.fc1(torch.flatten(x, 1))))


def with_sensor_channel(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,1,8,8) pixels -> (N,2,8,8): channel 1 = raw sensor counts, integers in [-SENSOR_RANGE, SENSOR_RANGE]."""
    sensor = rng.integers(-SENSOR_RANGE, SENSOR_RANGE + 1, size=x.shape).astype(np.float32)
    return np.concatenate([x, sensor], axis=1)


def train(x_train: np.ndarray, y_train: np.ndarray) -> OutlierDigits:
    seed_everything()
    model = OutlierDigits()
    with torch.no_grad():
        model.conv1.weight[:, 1] = 0.0
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), BATCH):
            idx = order[start : start + BATCH]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            model.conv1.weight.grad[:, 1] = 0.0  # the sensor channel stays pruned
            optimizer.step()
    return model


def add_outlier_channel(trained: OutlierDigits) -> OutlierDigits:
    """The same function plus one constant channel (OUTLIER_BIAS) after conv2 that conv3 ignores (zero weights)."""
    model = OutlierDigits(outlier=True)
    source = trained.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not name.startswith(("conv2", "conv3.weight")):
                value.copy_(source[name])
        model.conv2.weight.zero_()
        model.conv2.weight[:16] = source["conv2.weight"]
        model.conv2.bias[:16] = source["conv2.bias"]
        model.conv2.bias[16] = OUTLIER_BIAS
        model.conv3.weight.zero_()
        model.conv3.weight[:, :16] = source["conv3.weight"]
    return model.eval()


def make_outlier_digits(out: Path) -> float:
    x_train, x_test, y_train, y_test = digits_split()
    rng = np.random.default_rng(SEED)
    x_train, x_test = with_sensor_channel(x_train, rng), with_sensor_channel(x_test, rng)
    trained = train(x_train, y_train).eval()
    model = add_outlier_channel(trained)
    with torch.no_grad():
        before, after = trained(torch.from_numpy(x_test)), model(torch.from_numpy(x_test))
    assert torch.allclose(before, after, atol=1e-4), "the outlier channel must not change the FP32 function"
    path = out / "outlier_digits.onnx"
    export(
        model,
        torch.zeros(1, 2, 8, 8),
        path,
        "input",
        "logits",
        {0: "batch"},
        "Digits CNN with a pruned raw-sensor input channel and a constant outlier feature: INT8 (per-tensor "
        "activation scales) loses accuracy. See data/README.md.",
    )
    np.savez_compressed(out / "outlier_digits_test.npz", input=x_test, labels=y_test)
    calib = np.random.default_rng(SEED).choice(len(x_train), CALIB_SAMPLES, replace=False)
    np.savez_compressed(out / "outlier_digits_calib.npz", input=x_train[np.sort(calib)])
    (logits,) = ort_run(path, {"input": x_test})
    return float((logits.argmax(1) == y_test).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    accuracy = make_outlier_digits(args.out)
    print(f"outlier_digits.onnx: FP32 test accuracy {accuracy:.4f} (ONNX Runtime CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
