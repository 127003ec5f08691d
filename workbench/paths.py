"""Where the workbench keeps things: the cache (variants, engines) and the workspace (runs, history).

``WORKBENCH_CACHE`` overrides the cache root (default ``~/.cache/trt-workbench``, or ``$XDG_CACHE_HOME/trt-workbench``);
``WORKBENCH_WORKSPACE`` overrides the workspace (default ``./workspace``). Nothing is created until it is written.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str | None = None) -> Path:
    """The cache root, or its ``kind`` subfolder (``cache_dir("variants")``)."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base).expanduser() / "trt-workbench"
    return root / kind if kind else root


def workspace_dir() -> Path:
    """The workspace folder (run directories, the run history)."""
    return Path(os.environ.get("WORKBENCH_WORKSPACE") or Path.cwd() / "workspace").expanduser()
