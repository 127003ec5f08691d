#!/usr/bin/env bash
# Install what the workbench needs (into .venv) and start JupyterLab on the quickstart notebook, on copies of the
# notebooks: outputs, checkpoints, jupytext's paired .py files and the runs land beside the copies, never in this
# clone (so its tests still pass after a lab session, and even during one).
#   WORKBENCH_LAB=DIR   where the copies live (default ~/workbench-lab); a copy already there is yours and kept
#   --system            use the jupyter on PATH (an NGC container with requirements/ngc.txt installed), not .venv
# Other arguments go to JupyterLab (e.g. --ip 0.0.0.0 --no-browser).
set -euo pipefail
cd "$(dirname "$0")/.."
jupyter=.venv/bin/jupyter
if [ "${1:-}" = --system ]; then
  shift
  jupyter=jupyter
else
  bash scripts/setup-venv.sh requirements/cpu.txt
fi
lab="${WORKBENCH_LAB:-$HOME/workbench-lab}"
case "$(realpath -m "$lab")/" in
  "$(pwd -P)"/*) echo "error: WORKBENCH_LAB ($lab) is inside this clone: pick a folder outside it" >&2; exit 2 ;;
esac
mkdir -p "$lab"
for notebook in notebooks/*.ipynb; do
  [ -e "$lab/${notebook##*/}" ] || cp "$notebook" "$lab/"
done
echo "Notebooks: copies in $lab (the originals in notebooks/ stay untouched; delete a copy to get it fresh)"
as_root=()
[ "$(id -u)" = 0 ] && as_root=(--allow-root)  # containers and workshop VMs often run as root
# default_url: the quickstart is what the printed link (and a browser it opens) shows first, not the Launcher
exec "$jupyter" lab "${as_root[@]}" --ServerApp.root_dir="$lab" --LabApp.default_url=/lab/tree/00_quickstart.ipynb "$@"
