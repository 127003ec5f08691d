"""Where the workbench keeps things: the cache (variants, engines) and the workspace (runs, history).

``WORKBENCH_CACHE`` overrides the cache root (default ``~/.cache/trt-workbench``, or ``$XDG_CACHE_HOME/trt-workbench``);
``WORKBENCH_WORKSPACE`` overrides the workspace. Nothing is created until it is written.

**One workspace, one history.** The default workspace does not depend on the current folder (notebooks run in
``notebooks/``, the CLI wherever the shell is, and each used to get its own ``./workspace``): it is the
``workspace/`` folder of the source checkout the package runs from (git-ignored; inside the folder JupyterLab
serves, so run reports open there), or, for an installed package, ``$XDG_DATA_HOME/trt-workbench/workspace``
(``~/.local/share/trt-workbench/workspace``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
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
    """The workspace folder (run directories, the run history): ``$WORKBENCH_WORKSPACE``, else
    :func:`default_workspace`."""
    env = os.environ.get("WORKBENCH_WORKSPACE")
    return Path(env).expanduser() if env else default_workspace()


def default_workspace(package_dir: Path | None = None) -> Path:
    """``<checkout>/workspace`` when the package runs from a source checkout (``package_dir``'s parent holds the
    project's ``pyproject.toml``), else ``$XDG_DATA_HOME/trt-workbench/workspace``."""
    package_dir = Path(package_dir or Path(__file__).resolve().parent)
    project = package_dir.parent / "pyproject.toml"
    try:
        checkout = project.is_file() and 'name = "trt-workbench"' in project.read_text()
    except OSError:
        checkout = False
    if checkout:
        return package_dir.parent / "workspace"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "trt-workbench" / "workspace"


@contextlib.contextmanager
def atomic_directory(final):
    """Yield an empty temp folder beside ``final``; when the block ends it replaces ``final`` whole.

    On any error (a crash, Cancelled, Ctrl-C) the temp folder vanishes and ``final`` is left as it was: caches and
    run directories never hold half-written entries, and readers see the old folder or the new one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; these folders are shared like any other
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path, data: bytes | str) -> Path:
    """Write a file through a temp file and a rename: a reader never sees it half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
