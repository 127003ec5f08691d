"""Every notebook runs top to bottom on this machine (ONNX Runtime on a CPU here) and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    # run in a temp folder: what a notebook writes beside itself (reports, exports) stays out of the checkout
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_notebook_is_in_sync_with_its_jupytext_source(path):
    """``notebooks/NN.py`` is the source; the ``.ipynb`` beside it must hold the same cells (regenerate it with
    ``jupytext --to ipynb notebooks/NN.py`` after editing the ``.py``)."""
    import jupytext

    source = path.with_suffix(".py")
    assert source.is_file(), f"{path.name} has no jupytext source {source.name}"
    cells = [(c.cell_type, c.source.strip()) for c in jupytext.read(source).cells]
    committed = [(c.cell_type, c.source.strip()) for c in nbformat.read(path, as_version=4).cells]
    differ = next((i for i, (a, b) in enumerate(zip(cells, committed)) if a != b), min(len(cells), len(committed)))
    assert cells == committed, (
        f"{path.name} is out of sync with {source.name} from cell {differ}: run jupytext --to ipynb {source}"
    )


def test_there_are_notebooks():
    assert any(p.name.startswith("00_quickstart") for p in NOTEBOOKS)


def test_notebooks_use_only_the_public_api():
    """Notebooks import `workbench` and `workbench.ui`, never a room inside the package (whose paths may move)."""
    import ast

    for source in sorted(NOTEBOOKS[0].parent.glob("[0-9]*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            inner = [n for n in names if n.startswith("workbench.") and n != "workbench.ui"]
            assert not inner, f"{source.name} imports {inner}: use the public API (import workbench as wb)"
