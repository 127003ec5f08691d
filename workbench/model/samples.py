"""The sample models and data shipped in the repository's ``data/`` folder (made by ``scripts/make_samples.py``).

See ``data/README.md`` for their provenance, shapes and preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import WorkbenchError

DATA_DIR = Path(__file__).resolve().parents[2] / "data"

#: Sample name -> file in ``data/``.
SAMPLES: dict[str, Path] = {
    "digits_cnn": DATA_DIR / "digits_cnn.onnx",
    "resnet_mini": DATA_DIR / "resnet_mini.onnx",
    "transformer_encoder": DATA_DIR / "transformer_encoder.onnx",
    "digits_test": DATA_DIR / "digits_test.npz",
    "digits_calib": DATA_DIR / "digits_calib.npz",
    "outlier_digits": DATA_DIR / "outlier_digits.onnx",
    "outlier_digits_test": DATA_DIR / "outlier_digits_test.npz",
    "outlier_digits_calib": DATA_DIR / "outlier_digits_calib.npz",
}


def sample_path(name: str) -> Path:
    """Path of a sample by name (``"digits_cnn"``; a trailing ``.onnx``/``.npz`` is accepted)."""
    key = name.removesuffix(".onnx").removesuffix(".npz")
    if key not in SAMPLES:
        raise WorkbenchError(f"Unknown sample '{name}': choose one of {', '.join(SAMPLES)}.")
    path = SAMPLES[key]
    if not path.is_file():
        raise WorkbenchError(f"Sample file '{path}' is missing: run 'python scripts/make_samples.py' to recreate it.")
    return path


def digits_test_set() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The digits model's held-out test split: ``({"input": float32 (N,1,8,8)}, labels int64 (N,))``."""
    with np.load(sample_path("digits_test")) as data:
        return {"input": data["input"]}, data["labels"]


def digits_calibration() -> dict[str, np.ndarray]:
    """256 training-split digits for INT8 calibration: ``{"input": float32 (256,1,8,8)}``."""
    with np.load(sample_path("digits_calib")) as data:
        return {"input": data["input"]}
