"""Write a notebook from a compact Python description (used to author notebooks/*.ipynb without outputs).

Usage: python scripts/nb.py SPEC.py OUT.ipynb — SPEC.py defines CELLS = [("md"|"code", source), ...].
"""

import runpy
import sys

import nbformat


def write(cells, path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src.strip()) if kind == "md" else nbformat.v4.new_code_cell(src.strip())
                for kind, src in cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.write(nb, path)


if __name__ == "__main__":
    write(runpy.run_path(sys.argv[1])["CELLS"], sys.argv[2])
