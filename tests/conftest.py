"""Shared fixtures: isolated caches, the recorded TensorRT outputs beside the repo, tiny models made on the fly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support import FIXTURES, added_files, make_mlp

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _checkout_stays_clean():
    """No test leaves files in the checkout (reports, notebook outputs, runs): they belong in a temp folder.

    Compares the files git does not track before and after the session, so files that were there already (a
    developer's own, an earlier run's) do not count; one created by hand during the run would."""
    before = added_files()
    yield
    after = added_files()
    if before is not None and after is not None:
        left = sorted(after - before)
        assert not left, f"the tests left {len(left)} files in the checkout: {', '.join(left[:10])}"


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
def cpu_roof(_isolated_workspace) -> Path:
    """The session cache's ``roofline`` folder, holding this machine's CPU roof: measured once a session (3 to 14 s on
    2 cores, with the load), by the workbench itself (:func:`~workbench.analysis.devices.cpu_device`)."""
    from workbench.analysis.devices import cpu_device
    from workbench.paths import cache_dir

    cpu_device()
    return cache_dir("roofline")


@pytest.fixture
def own_cache(tmp_path, monkeypatch, cpu_roof) -> Path:
    """A workbench cache of this test's own (``$WORKBENCH_CACHE``: no variant, engine or probe of earlier tests),
    holding only the session's CPU roof, copied as it is now: every profile holds its layers against the roof, and
    measuring it again in each fresh cache costs seconds that no test using this is about (the roof's measurement
    has its own tests, ``tests/analysis/test_cache_roof.py``, with caches of their own)."""
    cache = tmp_path / "cache"
    shutil.copytree(cpu_roof, cache / "roofline")
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The recorded TensorRT outputs: committed, so a checkout without them is broken (a failure, not a skip)."""
    assert FIXTURES.is_dir(), f"recorded TensorRT outputs not found at {FIXTURES}: they are part of the repository"
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
