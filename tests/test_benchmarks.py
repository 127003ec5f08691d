"""Every benchmark script still runs: it imports, its ``--help`` works, and every name it imports from the workbench
(also inside functions, which ``--help`` never reaches) exists. benchmarks/gpu_validation.py once stopped with an
ImportError after its last GPU case because a view it imported lazily had been removed; nothing had noticed."""

from __future__ import annotations

import ast
import importlib
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def test_there_are_benchmark_scripts_to_check():
    assert len(SCRIPTS) >= 10 and (ROOT / "benchmarks" / "gpu_validation.py") in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_workbench_name_a_benchmark_imports_exists(script):
    missing = []
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "workbench":
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "workbench":
                    importlib.import_module(alias.name)
    assert not missing, f"{script.name} imports names the workbench no longer has: {missing}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_answers_help(script, monkeypatch, capsys):
    """``python benchmarks/NAME.py --help`` as Python runs it (the script as ``__main__``, its folder first on
    ``sys.path``, from the repository root), in this process: a new Python per script only added its start-up."""
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    monkeypatch.setattr(sys, "path", [str(script.parent), *sys.path])  # what the script inserts goes with it
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    out, err = capsys.readouterr()
    assert done.value.code in (0, None), err[-2000:]
    assert out.startswith("usage:"), out[:500]
