#!/usr/bin/env bash
# Install what the workbench needs (into .venv) and start JupyterLab on the quickstart notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh requirements/cpu.txt
exec .venv/bin/jupyter lab --notebook-dir=notebooks notebooks/00_quickstart.ipynb "$@"
