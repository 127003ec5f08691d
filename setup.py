# Packages: workbench* and the repository's data/ as workbench.sample_data (see [tool.setuptools.package-dir]).
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["workbench*"]), "workbench.sample_data"])
