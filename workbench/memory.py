"""How much memory this process may still use, and the check made before a large allocation.

The figure is the tightest of: the cgroup's limit less its usage (cgroup v2 ``memory.max`` / ``memory.current``,
v1 ``memory.limit_in_bytes`` / ``memory.usage_in_bytes``: a container's limit, which the machine's RAM does not
show), the address-space and data limits (``ulimit -v`` / ``-d``: ``RLIMIT_AS``, ``RLIMIT_DATA``) less what this
process has of them, the memory the kernel says
is available (``MemAvailable``), and ``WORKBENCH_MAX_MEMORY`` (the CLI's ``--max-memory``: ``8G``, ``512M``) less
what this process holds. A large allocation (generated inputs, calibration and evaluation sets, decoded images) is
sized first and held against it by :func:`check_memory`: over it, one line naming the estimate, the limit and the
fix, instead of a process the kernel kills (exit 137) or a ``MemoryError`` half-way.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from .errors import WorkbenchError

#: The share of the memory left that one allocation may take (the rest: the runtimes, copies, Python itself).
SHARE = 0.8
_UNLIMITED = 1 << 60


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value < _UNLIMITED else None


def _reclaimable(folder: Path, field: str) -> int:
    """The inactive file cache charged to a cgroup (``memory.stat``): the kernel drops it before it kills, so it is
    not counted as used (reading a memory-mapped ``.npy`` fills it)."""
    try:
        for line in (folder / "memory.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == field:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_left() -> tuple[int, str] | None:
    """What the cgroup limits of this process leave (the tightest along the path to the root: a limit may sit on
    any ancestor), or None without a limit. Usage less the inactive file cache, as the kernel reclaims it first."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and not controllers:  # cgroup v2
            root, files, stat = Path("/sys/fs/cgroup"), ("memory.max", "memory.current"), "inactive_file"
        elif "memory" in controllers.split(","):  # cgroup v1
            root = Path("/sys/fs/cgroup/memory")
            files, stat = ("memory.limit_in_bytes", "memory.usage_in_bytes"), "total_inactive_file"
        else:
            continue
        here = root / path.lstrip("/")
        while True:
            limit = _read_int(here / files[0])
            if limit is not None:
                used = max(0, (_read_int(here / files[1]) or 0) - _reclaimable(here, stat))
                found.append((limit - used, f"the cgroup limit {_size(limit)} ({files[0]})"))
            if here == root or root not in here.parents:
                break
            here = here.parent
    return min(found) if found else None


def _process_bytes(field: str) -> int:
    """``VmSize`` (address space) or ``VmRSS`` (resident) of this process, from /proc/self/status."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _available() -> tuple[int, str] | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "the memory available on this machine"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "the memory free on this machine"
    except (ValueError, OSError, AttributeError):
        return None


def parse_max_memory(text) -> int:
    """``8G``, ``512M``, ``1073741824``: bytes (``WORKBENCH_MAX_MEMORY``, ``--max-memory``)."""
    s = str(text).strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        value = int(float(s[:-1]) * units[s[-1]]) if s and s[-1] in units else int(s)
    except (ValueError, KeyError):
        value = 0
    if value <= 0:
        raise WorkbenchError(f"Cannot read the memory limit {str(text)[:40]!r}: write bytes or a size like 8G or 512M.")
    return value


def memory_left() -> tuple[int, str]:
    """(bytes this process may still allocate, what that figure is), the tightest of the limits above."""
    found = []
    given = os.environ.get("WORKBENCH_MAX_MEMORY", "").strip()
    if given:
        limit = parse_max_memory(given)
        found.append((limit - _process_bytes("VmRSS"), f"--max-memory {_size(limit)}"))
    cgroup = _cgroup_left()
    if cgroup is not None:
        found.append(cgroup)
    for kind, field, what in (("RLIMIT_AS", "VmSize", "address-space"), ("RLIMIT_DATA", "VmData", "data-segment")):
        soft, _ = resource.getrlimit(getattr(resource, kind))
        if soft != resource.RLIM_INFINITY:
            flag = "-v" if kind == "RLIMIT_AS" else "-d"
            found.append((soft - _process_bytes(field), f"the {what} limit {_size(soft)} (ulimit {flag})"))
    available = _available()
    if available is not None:
        found.append(available)
    if not found:
        return _UNLIMITED, "no known limit"
    left, source = min(found)
    return max(0, left), source


def mappable_left() -> int:
    """What a memory-mapped file may still take: the address-space limit (``ulimit -v``) less this process's size;
    unlimited without one (a mapping's pages are the page cache's, which the cgroup and the kernel reclaim)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return _UNLIMITED if soft == resource.RLIM_INFINITY else max(0, soft - _process_bytes("VmSize"))


def check_memory(estimate: int, what: str, fix: str) -> None:
    """Raise a one-line :class:`WorkbenchError` when ``estimate`` bytes (``what`` needs them) exceed
    :data:`SHARE` of :func:`memory_left`: it names the estimate, the limit and ``fix`` (and ``--max-memory``)."""
    left, source = memory_left()
    if estimate > left * SHARE:
        raise WorkbenchError(
            f"{what} would take about {_size(estimate)}, more than this process may still use ({_size(int(left * SHARE))} of {_size(left)} left under {source}): {fix}, or raise the limit "
            "(--max-memory, WORKBENCH_MAX_MEMORY) where the machine has the memory."
        )


def memory_error(what: str, fix: str) -> WorkbenchError:
    """The one line for a ``MemoryError`` met anyway (an estimate cannot see every copy a library makes)."""
    left, source = memory_left()
    return WorkbenchError(
        f"{what} ran out of memory ({_size(left)} left under {source}): {fix}, or raise the limit (--max-memory, "
        "WORKBENCH_MAX_MEMORY) where the machine has the memory."
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"
