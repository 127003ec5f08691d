#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the workbench with the given requirements file; fast when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements/cpu.txt}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat "$req" requirements/cpu.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, alone: a pinned CPU build, so nothing later pulls a multi-GB CUDA build
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -r "$req"
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
