"""Contract tests against the real TensorRT Python bindings (10.2, 10.16, 11.4) on a machine without TensorRT.

``scripts/trt_bindings.py`` downloads each version's bindings wheel from PyPI, builds stub libraries with gcc and
unpacks the bindings as an importable ``tensorrt`` (cached in ``.cache/trt-bindings``, or ``$TRT_BINDINGS_CACHE``).
Each version is then imported in its own subprocess (``_probe.py``), with ``LD_LIBRARY_PATH`` at its stubs and
``PYTHONPATH`` at its bindings. The tests skip only when PyPI cannot be reached.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from _contract import PROBE, REPO, trt_bindings


@pytest.fixture(scope="session")
def bindings() -> dict:
    """Every version prepared (downloaded once, then cached); skips the contract tests only when offline."""
    stubs = importlib.util.find_spec("pybind11_stubgen") is not None
    try:
        return trt_bindings.prepare_all(stubs=stubs)
    except trt_bindings.OfflineError as e:
        pytest.skip(f"TensorRT contract tests need PyPI to fetch the real bindings: {e}")


@pytest.fixture(scope="session")
def probes(bindings) -> dict[str, dict]:
    """What ``_probe.py`` saw under each version: the API surface and how the backend's pieces behaved."""
    reports = {}
    for version, b in bindings.items():
        proc = subprocess.run(
            [sys.executable, str(PROBE)], env=b.env(REPO), capture_output=True, text=True, timeout=300, cwd=REPO
        )
        assert proc.returncode == 0, f"probe under TensorRT {version} failed:\n{proc.stderr[-3000:]}"
        reports[version] = json.loads(proc.stdout)
    return reports


@pytest.fixture(scope="session")
def rtx_probe() -> dict:
    """What ``_probe.py`` saw under the real TensorRT-RTX library (installed by the test requirements; no stubs)."""
    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("TensorRT-RTX is not installed: pip install -r requirements/test.txt")
    env = {**os.environ, "PROBE_MODULE": "tensorrt_rtx", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, f"probe under TensorRT-RTX failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)
