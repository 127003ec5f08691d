#!/usr/bin/env bash
# Install what the workbench needs (into .venv) and start JupyterLab on the quickstart notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh requirements/cpu.txt
as_root=()
[ "$(id -u)" = 0 ] && as_root=(--allow-root)  # containers and workshop VMs often run as root
exec .venv/bin/jupyter lab "${as_root[@]}" --notebook-dir=notebooks notebooks/00_quickstart.ipynb "$@"
