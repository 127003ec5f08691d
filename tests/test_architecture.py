"""The package imports only downward along the flow (docs/architecture.md): the import-linter layers contract in
pyproject.toml holds, no import cycle exists among workbench's modules (function-level imports included), and
both checks fail when an upward import is planted in a copy of the package."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (function-level imports too). Importing a
    submodule also imports its parent packages; those edges are left out (they are no cycle)."""
    base = package_dir.parent
    modules = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(base).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                stem = node.module or ""
                if node.level:
                    stem = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``workbench`` package under ``root`` with the contract of ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": str(root)}  # before the installed (editable) workbench
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """A copy of the package in which results/ (a low room) imports views/ (a high one) inside a function."""
    root = tmp_path_factory.mktemp("planted")
    shutil.copytree(REPO / "workbench", root / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    layers = root / "workbench" / "results" / "layers.py"
    layers.write_text(layers.read_text() + "\n\ndef _planted():\n    from ..views import report  # noqa: F401\n")
    return root


def test_no_import_cycles():
    assert cycles(import_graph(REPO / "workbench")) == []


def test_the_cycle_check_finds_a_planted_cycle(planted):
    found = cycles(import_graph(planted / "workbench"))
    assert found and any({"workbench.results.layers", "workbench.views.report"} <= set(c) for c in found)


def test_layers_contract_holds():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_layers_contract_fails_on_a_planted_upward_import(planted):
    result = lint_imports(planted)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "workbench.results.layers -> workbench.views.report" in result.stdout
