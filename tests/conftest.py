"""Shared fixtures: isolated caches, the recorded TensorRT outputs beside the repo, tiny models made on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import FIXTURES, make_mlp


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path_factory, monkeypatch):
    """Caches and the experiment store go to a temp folder, never the user's."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(root / "workspace"))
    monkeypatch.setenv("WORKBENCH_CACHE", str(root / "cache"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"recorded TensorRT outputs not found at {FIXTURES} ")
    return FIXTURES


@pytest.fixture(scope="session")
def digits():
    """The trained digits sample, loaded once (a Model is immutable)."""
    from workbench.model.onnx_model import load_model
    from workbench.model.samples import sample_path

    return load_model(sample_path("digits_cnn"))


@pytest.fixture
def mlp_path(tmp_path) -> Path:
    return make_mlp(tmp_path / "mlp.onnx")
