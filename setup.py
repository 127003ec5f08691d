# Packages: workbench* and the repository's data/ as workbench.sample_data (see [tool.setuptools.package-dir]).
# data/'s folders with importable names (recorded, recorded/trtexec, runs) are packages of their own too: setuptools
# warns, once per folder, that package data in a folder missing from `packages` "would be ignored" in the future.
from pathlib import Path

from setuptools import find_packages, setup

DATA = Path(__file__).resolve().parent / "data"
DATA_PACKAGES = [
    ".".join(("workbench.sample_data", *folder.relative_to(DATA).parts))
    for folder in sorted(DATA.rglob("*"))
    if folder.is_dir() and all(part.isidentifier() for part in folder.relative_to(DATA).parts)
]

setup(packages=[*find_packages(include=["workbench*"]), "workbench.sample_data", *DATA_PACKAGES])
