"""Where the workbench keeps things: the cache (variants, engines: one :class:`FolderCache`) and the workspace (runs,
history).

``WORKBENCH_CACHE`` overrides the cache root (default ``~/.cache/trt-workbench``, or ``$XDG_CACHE_HOME/trt-workbench``);
``WORKBENCH_WORKSPACE`` overrides the workspace. Nothing is created until it is written.

**One workspace, one history.** The default workspace does not depend on the current folder (notebooks run in
``notebooks/``, the CLI wherever the shell is, and each used to get its own ``./workspace``): it is the
``workspace/`` folder of the source checkout the package runs from (git-ignored; inside the folder JupyterLab
serves, so run reports open there), or, for an installed package, ``$XDG_DATA_HOME/trt-workbench/workspace``
(``~/.local/share/trt-workbench/workspace``).

Paths read from files (artifact paths in ``run.json``, external-data locations in an ONNX model, names in an
imported folder) go through :func:`inside`: a name that would leave its folder is refused before anything is opened.
Ids typed by the user (a sweep id) go through :func:`plain_id` and then :func:`inside`. Small files read from the
user (recipes, sweep records, JSON of imports) go through :func:`read_user_file` / :func:`read_user_json`: a
regular file (a FIFO, a device or a link to ``/dev/zero`` is refused before it is read), read up to a bound, then
decoded and parsed with one-line errors naming the file. Temporary entries of :func:`atomic_directory` and
:func:`atomic_write` carry :data:`TEMP_MARK` in their name, so
those a killed process left behind are recognised and removed by :func:`remove_stale_temps`.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import WorkbenchError, excerpt

#: Part of the name of every temporary file or folder written beside its final place.
TEMP_MARK = ".wb-tmp-"
#: Temporary entries older than this (seconds) belong to no live writer and are removed on the next open.
STALE_TEMP_S = 3600.0


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


def inside(folder, name, what: str = "path", *, fix: str = "") -> Path:
    """``folder / name`` for a ``name`` read from a file, refused unless it stays inside ``folder``.

    Refused: an empty or non-text name, an absolute path (POSIX or Windows), a ``..`` part, a NUL byte, a path that
    resolves outside ``folder`` through a symbolic link, and an existing file that is itself a symbolic link or has
    more than one hard link (either could be a name for a file outside). The error quotes ``name`` only: it never
    tells whether anything outside exists, nor its size or content.
    """
    fix = fix or "keep the files inside the folder and refer to them by relative names"
    text = name if isinstance(name, str) else None
    bad = (
        text is None
        or not text.strip()
        or "\x00" in text
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or bool(PureWindowsPath(text).drive)
        or ".." in PurePosixPath(text.replace("\\", "/")).parts
    )
    if bad:
        raise WorkbenchError(
            f"The {what} {str(name)[:200]!r} leaves its folder (absolute, '..' or not a name): refused; {fix}."
        )
    folder = Path(folder)
    path = folder / text
    try:
        real_folder = os.path.realpath(folder)
        real = os.path.realpath(path)
        escapes = os.path.commonpath([real_folder, real]) != real_folder
        linked = not escapes and (path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1))
    except (OSError, ValueError):
        escapes, linked = True, False
    if escapes or linked:
        how = "a symbolic link out of" if escapes else "a symbolic or hard link, possibly to a file outside"
        raise WorkbenchError(f"The {what} {text[:200]!r} is {how} its folder: refused; {fix}.")
    return path


#: What a plain id (a sweep id, a run id typed by the user) may look like: a name, never a path.
PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def plain_id(value, what: str, folder, *, fix: str) -> Path:
    """``folder / value`` for an id the user typed, refused unless it is a plain name (letters, digits, ``._-``, at
    most 128 characters) that stays inside ``folder`` (no symbolic link out of it: :func:`inside`)."""
    if not isinstance(value, str) or not PLAIN_ID.fullmatch(value):
        raise WorkbenchError(f"The {what} {excerpt(value)} is not a plain id (a name, never a path): {fix}.")
    path = inside(folder, value, what, fix=fix)
    if path.is_symlink():  # a linked folder is another place under this name
        raise WorkbenchError(f"The {what} {excerpt(value)} is a symbolic link: refused; {fix}.")
    return path


#: The largest small file (a recipe, a sweep record, an import's JSON) read whole.
MAX_USER_FILE = 64 << 20


def read_user_file(path, what: str, *, limit: int = MAX_USER_FILE, fix: str = "") -> bytes:
    """The bytes of ``path``, a file the user gave (a ``what``: "recipe", "sweep record"...).

    Refused with one line naming the file: anything but a regular file once links are followed (a FIFO would hang
    the read, ``/dev/zero`` never ends; the file is opened without blocking and checked before a byte is read) and
    a file larger than ``limit`` bytes (read in chunks, never more than ``limit`` + 1 bytes).
    """
    fix = fix or f"give the {what} file itself"
    shown = excerpt(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not a path"
        raise WorkbenchError(f"The {what} {shown} cannot be read ({reason}): {fix}.") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = {stat.S_IFIFO: "a pipe", stat.S_IFCHR: "a device", stat.S_IFDIR: "a folder"}.get(
            stat.S_IFMT(info.st_mode), "not a regular file"
        )
        raise WorkbenchError(f"The {what} {shown} is {kind}, not a regular file: {fix}.")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise WorkbenchError(f"The {what} {shown} is larger than {limit:,} bytes ({info.st_size:,}): {fix}.")
        chunks, size = [], 0
        while size <= limit:
            chunk = f.read(min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > limit:  # it grew while being read
        raise WorkbenchError(f"The {what} {shown} is larger than {limit:,} bytes: {fix}.")
    return b"".join(chunks)


def read_user_json(path, what: str, *, limit: int = MAX_USER_FILE, fix: str = ""):
    """The JSON value in ``path`` (read by :func:`read_user_file`): invalid UTF-8, invalid JSON and nesting too deep
    for the parser are one line naming the file."""
    fix = fix or f"give the {what} file itself"
    data = read_user_file(path, what, limit=limit, fix=fix)
    shown = excerpt(str(path))
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise WorkbenchError(f"The {what} {shown} is not UTF-8 text (byte {e.start}): {fix}.") from None
    except json.JSONDecodeError as e:
        raise WorkbenchError(f"The {what} {shown} is not JSON ({e.msg} at line {e.lineno}): {fix}.") from None
    except RecursionError:
        raise WorkbenchError(f"The {what} {shown} is nested too deeply to read: {fix}.") from None


_PROCESS_TEMPS: list[Path] = []


def process_temp_dir(prefix: str) -> Path:
    """A private temp folder removed when this process exits (and, if it is killed, by the next process that makes
    one, once it is :data:`STALE_TEMP_S` old): for files a run refers to until it is saved."""
    if not _PROCESS_TEMPS:
        atexit.register(_remove_process_temps)
        remove_stale_temps(tempfile.gettempdir())  # those of processes killed long ago
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{TEMP_MARK}"))
    _PROCESS_TEMPS.append(folder)
    return folder


def _remove_process_temps() -> None:
    for folder in _PROCESS_TEMPS:
        shutil.rmtree(folder, ignore_errors=True)


def mount_point(path) -> Path:
    """The mount point (disk) holding ``path``, or its nearest existing parent."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def disk_full_error(error: OSError, path=None) -> WorkbenchError:
    """One line for ``ENOSPC``: which disk is full and how to go on (nothing half-written was kept)."""
    where = Path(path or error.filename or tempfile.gettempdir())
    while TEMP_MARK in where.name and where != where.parent:  # name the folder the user knows, not a temp entry
        where = where.parent
    disk = mount_point(where)
    return WorkbenchError(
        f"The disk holding '{where}' (mounted at {disk}) is full: free space there, or point "
        "WORKBENCH_WORKSPACE, WORKBENCH_CACHE or TMPDIR at a folder on another disk; nothing "
        "half-written was kept."
    )


#: Free space below which a write that failed for an unclear reason is reported as a full disk.
LOW_SPACE_BYTES = 16 << 20


def check_space(folder) -> None:
    """Raise :func:`disk_full_error` when ``folder``'s disk is (nearly) full: for libraries that report a failed
    write as something else (ONNX Runtime: "cannot serialize")."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < LOW_SPACE_BYTES:
        raise disk_full_error(OSError(errno.ENOSPC, "No space left on device", str(folder)))


def is_stale_temp(path: Path, now: float | None = None, age_s: float = STALE_TEMP_S) -> bool:
    if TEMP_MARK not in path.name:
        return False
    try:
        return (now or time.time()) - path.lstat().st_mtime > age_s
    except OSError:
        return False


def remove_stale_temps(folder, age_s: float = STALE_TEMP_S) -> int:
    """Remove temporary entries (:data:`TEMP_MARK`) older than ``age_s`` directly in ``folder``; how many."""
    removed = 0
    now = time.time()
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for entry in entries:
        if is_stale_temp(entry, now, age_s):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            removed += 1
    return removed


def key_digest(identity) -> str:
    """The hex SHA-256 of ``identity`` written as sorted JSON: the name of what a cache entry depends on."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class FolderCache:
    """The workbench's one on-disk cache (precision variants, TensorRT plans): a folder per entry under
    ``directory``, named by what its content depends on (:func:`key_digest`), written whole or not at all.

    :meth:`load` reads an entry; absent, damaged or unreadable (``read`` raises an OSError, ValueError, KeyError,
    TypeError or WorkbenchError, or returns None) it is a miss, and the next :meth:`save` replaces it."""

    MISSES = (OSError, ValueError, KeyError, TypeError, AttributeError, WorkbenchError)

    def __init__(self, directory):
        self.directory = Path(directory)

    def entry_dir(self, name: str) -> Path:
        return self.directory / name

    def load(self, name: str, read):
        """``read(folder)``, or None for a miss."""
        folder = self.entry_dir(name)
        if not folder.is_dir():
            return None
        try:
            return read(folder)
        except self.MISSES:
            return None

    def save(self, name: str, write) -> tuple[Path, object]:
        """(the entry's folder, what ``write(folder)`` returned) after ``write`` filled a temporary folder that then
        replaced the entry whole (:func:`atomic_directory`: a failed, cancelled or killed writer leaves the entry as
        it was)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.directory)  # temp folders of writers killed long ago
        final = self.entry_dir(name)
        with atomic_directory(final) as tmp:
            written = write(tmp)
        return final, written


@contextlib.contextmanager
def atomic_directory(final):
    """Yield an empty temp folder beside ``final``; when the block ends it replaces ``final`` whole.

    On any error (a crash, Cancelled, Ctrl-C) the temp folder vanishes and ``final`` is left as it was: caches and
    run directories never hold half-written entries, and readers see the old folder or the new one. Several
    writers of one entry never fail: when another writer's rename wins the race, this one's folder is discarded
    and the winner's entry stands (both wrote the same content: an entry is named by what it holds).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:80]}{TEMP_MARK}", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; these folders are shared like any other
    try:
        yield tmp
        _swap_in(tmp, final)
    except OSError as e:
        if e.errno == errno.ENOSPC:  # one line naming the disk, wherever the write failed
            raise disk_full_error(e, final.parent) from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``, replacing an existing ``final`` (moved aside, then removed)."""
    for _ in range(5):
        try:
            os.replace(tmp, final)  # works when final is absent (or an empty folder)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        old = Path(tempfile.mkdtemp(prefix=f".{final.name[:80]}{TEMP_MARK}old-", dir=final.parent))
        try:
            try:
                os.replace(final, old / "entry")
            except FileNotFoundError:
                continue  # another writer moved it aside at the same moment: try again
            try:
                os.replace(tmp, final)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # another writer's entry went in between: it stands, this one is discarded
            return
        finally:
            shutil.rmtree(old, ignore_errors=True)
    # lost the race five times in a row: entries written by the others meanwhile stand


def atomic_write(path, data: bytes | str) -> Path:
    """Write a file through a temp file and a rename: a reader never sees it half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:80]}{TEMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise disk_full_error(e, path.parent) from None
        raise
    return path
