"""Shared fixtures: isolated caches, the recorded TensorRT outputs beside the repo, tiny models made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import FIXTURES, make_mlp


@pytest.fixture(autouse=True, scope="session")
def _isolated_workspace(tmp_path_factory):
    """Caches and the experiment store go to a temp folder, never the user's nor the repository's.

    Session-scoped and set in ``os.environ`` (not a function-scoped monkeypatch): module- and session-scoped
    fixtures, and the CLI subprocesses they start, run before any function-scoped fixture would."""
    root = tmp_path_factory.getbasetemp()
    saved = {k: os.environ.get(k) for k in ("WORKBENCH_WORKSPACE", "WORKBENCH_CACHE")}
    os.environ["WORKBENCH_WORKSPACE"] = str(root / "workspace")
    os.environ["WORKBENCH_CACHE"] = str(root / "cache")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
