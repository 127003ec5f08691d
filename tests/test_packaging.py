"""Packaging tells the truth: pyproject.toml's dependencies and extras are what the workbench needs, the pinned
requirements/*.txt install exactly those sets, and the samples and recorded outputs ship inside the package."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement line (``onnx~=1.21.0`` -> ``onnx``)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def requirements(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= requirements(path.parent / line[3:].strip())
        elif line:
            names.add(_name(line))
    return names


def extras(*names: str) -> set[str]:
    project = PYPROJECT["project"]
    found = {_name(r) for r in project["dependencies"]}
    for extra in names:
        found |= {_name(r) for r in project["optional-dependencies"][extra]}
    return found


@pytest.mark.parametrize(
    ("file", "sets"),
    [
        ("cpu.txt", ("cpu", "precision", "lab")),
        ("ngc.txt", ("gpu", "precision", "lab")),
        ("test.txt", ("cpu", "precision", "lab", "test")),
    ],
)
def test_pinned_requirements_are_the_extras(file, sets):
    pinned = requirements(REPO / "requirements" / file)
    if file == "ngc.txt":  # the container's set also runs the GPU tests; torch comes with the container (or with
        pinned -= extras("test") - extras(*sets)  # ModelOpt), so it is not pinned over the container's own
        pinned.add("torch")
    assert pinned == extras(*sets), (
        f"only in {file}: {pinned - extras(*sets)}; only in the extras: {extras(*sets) - pinned}"
    )


def test_the_tests_install_the_serve_extra_without_its_numpy_pin():
    """test.txt plus serve.txt (installed with --no-deps after it) are the serve extra: the tests serve through the
    real tritonserver, and nvidia-pytriton's numpy<2 requirement (for its Python API, never imported) cannot
    downgrade numpy."""
    pinned = requirements(REPO / "requirements" / "test.txt") | requirements(REPO / "requirements" / "serve.txt")
    assert extras("serve") <= pinned, f"missing: {extras('serve') - pinned}"
    assert requirements(REPO / "requirements" / "serve.txt") == extras("serve") - extras("test")
    setup = (REPO / "scripts" / "setup-venv.sh").read_text()
    assert "--no-deps -r requirements/serve.txt" in setup


def test_exactly_one_onnxruntime_per_set():
    assert "onnxruntime-gpu" not in extras("cpu", "precision", "lab", "test")
    assert "onnxruntime" not in extras("gpu", "precision", "lab")


def test_the_samples_and_recorded_outputs_ship_in_the_package():
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"]["workbench.sample_data"] == "data"
    patterns = setuptools["package-data"]["workbench.sample_data"]
    files = [p.relative_to(REPO / "data").as_posix() for p in (REPO / "data").rglob("*") if p.is_file()]
    assert "recorded/trtexec/LICENSE-TensorRT.txt" in files
    missing = [f for f in files if not any(fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"not shipped by [tool.setuptools.package-data]: {missing}"
    assert '"workbench.sample_data"' in (REPO / "setup.py").read_text()


def test_one_install_stamp_serves_both_readme_commands(tmp_path):
    """`bash scripts/lab.sh` after `bash scripts/test.sh` installs nothing (test.txt includes cpu.txt), and a changed
    requirement installs again. pip is replaced by a recorder: the stamp logic is what is tested, not pip."""
    import shutil
    import subprocess

    for name in ("scripts", "requirements"):
        shutil.copytree(REPO / name, tmp_path / name)
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(REPO / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$*" >>"$(dirname "$0")/../pip-calls"\n')
    python.chmod(0o755)
    calls = tmp_path / ".venv" / "pip-calls"

    def install(requirements: str) -> list[str]:
        before = calls.read_text().splitlines() if calls.exists() else []
        done = subprocess.run(["bash", "scripts/setup-venv.sh", requirements], cwd=tmp_path, capture_output=True)
        assert done.returncode == 0, done.stderr
        return (calls.read_text().splitlines() if calls.exists() else [])[len(before) :]

    first = install("requirements/test.txt")
    assert any("-r requirements/test.txt" in c for c in first)
    assert any("--no-deps -r requirements/serve.txt" in c for c in first)
    assert install("requirements/cpu.txt") == []  # lab.sh after test.sh
    assert install("requirements/test.txt") == []
    with (tmp_path / "requirements" / "cpu.txt").open("a") as f:
        f.write("# changed\n")
    assert any("-r requirements/cpu.txt" in c for c in install("requirements/cpu.txt"))
