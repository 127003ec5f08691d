#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the workbench with the given requirements file; fast when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements/cpu.txt}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# One stamp for every requirements file: its first line is the state of what an install reads (the requirement
# files, pyproject.toml, setup.py), the other lines the files installed in that state. A file covers the files it
# includes (-r), so lab.sh (cpu.txt) after test.sh (test.txt, which includes cpu.txt) installs nothing.
stamp=.venv/.installed
state="$(cat requirements/*.txt pyproject.toml setup.py | sha256sum | cut -c1-16)"
if [ "$(head -n 1 "$stamp" 2>/dev/null)" != "$state" ]; then
  echo "$state" >"$stamp"
fi
if ! grep -qxF "$req" "$stamp"; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, alone: a pinned CPU build, so nothing later pulls a multi-GB CUDA build
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -r "$req"
  if [ "$req" = requirements/test.txt ]; then
    # the serve extra's server: nvidia-pytriton pins numpy<2 for its own Python API, which is never imported
    .venv/bin/python -m pip install -q --no-deps -r requirements/serve.txt
  fi
  .venv/bin/python -m pip install -q --no-deps -e .
  { echo "$req"; sed -n "s|^-r  *\(.*\)|$(dirname "$req")/\1|p" "$req"; } >>"$stamp"
fi
