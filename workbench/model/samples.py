"""The sample models and data shipped with the workbench (made by ``scripts/make_samples.py``), and the recorded
trtexec outputs of real GPUs (``data/recorded/``, with their provenance and NVIDIA's license).

They live in the repository's ``data/`` folder; an installed package carries the same files as
``workbench/sample_data`` (see ``pyproject.toml``). ``WORKBENCH_DATA`` names another folder of the same layout.
See ``data/README.md`` for their provenance, shapes and preprocessing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError


def _data_dir() -> Path:
    """``WORKBENCH_DATA``, else the checkout's ``data/``, else the copy inside an installed package."""
    if os.environ.get("WORKBENCH_DATA"):
        return Path(os.environ["WORKBENCH_DATA"]).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "data"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parents[1] / "sample_data"


DATA_DIR = _data_dir()

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
        raise WorkbenchError(
            f"Sample file '{path}' is missing: run 'python scripts/make_samples.py' to recreate it, "
            "or set WORKBENCH_DATA to a folder holding the repository's data/."
        )
    return path


def recorded_path(*parts: str) -> Path:
    """A file or folder of the recorded trtexec outputs, e.g. ``recorded_path("trtexec", "resnet18-a100-fp16")``."""
    return _shipped("Recorded trtexec output", "recorded", *parts)


def measured_run_path(*parts: str) -> Path:
    """A run directory measured on a real GPU and shipped with the workbench, e.g.
    ``measured_run_path("h200-ort-cuda", "resnet_mini-b256-fp16")`` (``data/runs/``; see its README)."""
    return _shipped("Measured run", "runs", *parts)


def _shipped(what: str, folder: str, *parts: str) -> Path:
    path = DATA_DIR.joinpath(folder, *parts)
    if not path.exists():
        raise WorkbenchError(
            f"{what} '{path}' is missing: it ships in the repository's data/{folder}/ (set WORKBENCH_DATA to the "
            "data/ folder of a checkout)."
        )
    return path


def digits_test_set() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The digits model's held-out test split: ``({"input": float32 (N,1,8,8)}, labels int64 (N,))``."""
    with np.load(sample_path("digits_test")) as data:
        return {"input": data["input"]}, data["labels"]


def digits_calibration() -> dict[str, np.ndarray]:
    """256 training-split digits for INT8 calibration: ``{"input": float32 (256,1,8,8)}``."""
    with np.load(sample_path("digits_calib")) as data:
        return {"input": data["input"]}
