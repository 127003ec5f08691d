"""Real TensorRT Python bindings, importable on a machine without TensorRT or a GPU (for the contract tests).

For each version in :data:`VERSIONS` this downloads the bindings wheel from PyPI (``pip download --no-deps
--only-binary=:all:``), builds three stub libraries with gcc (``libnvinfer.so.N``, ``libnvinfer_plugin.so.N``,
``libnvonnxparser.so.N``, sources in ``scripts/trt_stubs/``) whose entry points return null, and unpacks the wheel's
``tensorrt_bindings`` package as an importable ``tensorrt``. With ``LD_LIBRARY_PATH`` at the stubs and
``PYTHONPATH`` at the unpacked package, ``import tensorrt`` works and ``trt.Builder(logger)`` raises. Optionally
it writes typing stubs of each version (pybind11-stubgen) for mypy.

Everything lands in ``$TRT_BINDINGS_CACHE`` (default ``.cache/trt-bindings`` in the repository), one folder per
version, written to a temporary folder and renamed into place, so repeat runs take no time.

    python scripts/trt_bindings.py            # prepare all versions, print where they are
    python scripts/trt_bindings.py --no-stubs
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from workbench.paths import atomic_directory

REPO = Path(__file__).resolve().parent.parent
STUB_SOURCES = Path(__file__).resolve().parent / "trt_stubs"

#: TensorRT version -> the PyPI distribution of its standalone Python bindings.
VERSIONS = {
    "10.2.0.post1": "tensorrt-cu12-bindings",
    "10.16.1.11": "tensorrt-cu13-bindings",
    "11.4.0.106": "tensorrt-cu13-bindings",
}

#: stub library (SONAME without ``.so.N``) -> its C source in scripts/trt_stubs/
LIBRARIES = {"libnvinfer": "nvinfer.c", "libnvinfer_plugin": "nvinfer_plugin.c", "libnvonnxparser": "nvonnxparser.c"}

#: pip's words for "no network": only these make a download failure a reason to skip rather than to fail.
_OFFLINE_MARKERS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Max retries exceeded",
    "Could not fetch URL",
    "ConnectionError",
    "Connection refused",
    "timed out",
    "Name or service not known",
    "No route to host",
)


class OfflineError(RuntimeError):
    """PyPI could not be reached: the wheels cannot be downloaded here."""


@dataclass(frozen=True)
class Bindings:
    """One prepared version: ``lib`` holds the stub libraries, ``site`` the ``tensorrt`` package, ``stubs`` the
    typing stubs (None when they were not generated)."""

    version: str
    root: Path

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def stubs(self) -> Path | None:
        path = self.root / "stubs"
        return path if path.is_dir() else None

    def env(self, *extra_paths: os.PathLike | str) -> dict[str, str]:
        """The environment that makes ``import tensorrt`` load this version (and only it)."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(self.lib)] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), *map(str, extra_paths)])
        return env


def cache_root() -> Path:
    return Path(os.environ.get("TRT_BINDINGS_CACHE") or REPO / ".cache" / "trt-bindings")


def prepare(version: str, cache: Path | None = None, stubs: bool = True) -> Bindings:
    """Download, stub and unpack one version (once; later calls return the cached folder)."""
    cache = Path(cache or cache_root())
    root = cache / version
    if (root / "READY").is_file() and (not stubs or (root / "stubs").is_dir()):
        return Bindings(version, root)
    wheel = download(VERSIONS[version], version, cache / "wheels")
    with atomic_directory(root) as tmp:
        staged = Bindings(version, tmp)
        _unpack(wheel, staged.site)
        major = version.split(".")[0]
        _build_stub_libraries(staged.lib, major)
        _check_symbols(staged)
        if stubs:
            make_typing_stubs(staged, staged.root / "stubs")
        (tmp / "READY").write_text(f"{VERSIONS[version]}=={version}\n")
    return Bindings(version, root)


def prepare_all(cache: Path | None = None, stubs: bool = True) -> dict[str, Bindings]:
    return {version: prepare(version, cache, stubs) for version in VERSIONS}


def download(distribution: str, version: str, wheels: Path) -> Path:
    """The bindings wheel for this interpreter, from the cache or PyPI."""
    pattern = f"{distribution.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(wheels),
        f"{distribution}=={version}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise OfflineError(f"pip download {distribution}=={version} took over 5 minutes (is PyPI reachable?)") from None
    found = sorted(wheels.glob(pattern))
    if proc.returncode == 0 and found:
        return found[0]
    output = (proc.stderr + proc.stdout).strip()
    last = output.splitlines()[-1] if output else f"exit status {proc.returncode}"
    unreachable = _index_unreachable(distribution)
    if unreachable or any(marker in output for marker in _OFFLINE_MARKERS):
        raise OfflineError(f"cannot download {distribution}=={version} from PyPI (offline?): {unreachable or last}")
    raise RuntimeError(f"pip download {distribution}=={version} failed: {last}")


def _index_unreachable(distribution: str) -> str:
    """Why the package index cannot be reached ("" when it answers): tells "offline" from "no such wheel"."""
    import urllib.error
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    try:
        with urllib.request.urlopen(f"{index.rstrip('/')}/{distribution}/", timeout=15):
            return ""
    except urllib.error.HTTPError:
        return ""  # the index answered (a 404 is an answer): not a network problem
    except (urllib.error.URLError, OSError) as e:
        return f"{index} is unreachable ({getattr(e, 'reason', e)})"


def _unpack(wheel: Path, site: Path) -> None:
    """The wheel's ``tensorrt_bindings`` package, renamed ``tensorrt`` (what the full ``tensorrt`` wheel installs)."""
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith("tensorrt_bindings/")]
        if not members:
            raise RuntimeError(f"{wheel.name} holds no tensorrt_bindings package: the wheel layout changed")
        for member in members:
            target = site / "tensorrt" / member.removeprefix("tensorrt_bindings/")
            if member.endswith("/"):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(member))


def _build_stub_libraries(lib: Path, major: str) -> None:
    compiler = shutil.which(os.environ.get("CC", "gcc"))
    if compiler is None:
        raise RuntimeError("no C compiler found (gcc, or $CC): install gcc to build the TensorRT stub libraries")
    lib.mkdir(parents=True, exist_ok=True)
    for name, source in LIBRARIES.items():
        soname = f"{name}.so.{major}"
        subprocess.run(
            [
                compiler,
                "-shared",
                "-fPIC",
                "-O1",
                f"-Wl,-soname,{soname}",
                "-o",
                str(lib / soname),
                str(STUB_SOURCES / source),
            ],
            check=True,
            capture_output=True,
            text=True,
        )


def _dynamic_symbols(path: Path, defined: bool) -> set[str]:
    flag = "--defined-only" if defined else "--undefined-only"
    out = subprocess.run(["nm", "-D", flag, str(path)], check=True, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def _check_symbols(bindings: Bindings) -> None:
    """Every TensorRT symbol the extension module needs must come from a stub (a new version may need more)."""
    if shutil.which("nm") is None:
        return  # the import in the tests still proves the stubs suffice
    module = next((bindings.site / "tensorrt").glob("tensorrt*.so"))
    provided: set[str] = set()
    for lib in bindings.lib.iterdir():
        provided |= _dynamic_symbols(lib, defined=True)
    needed = {s.split("@")[0] for s in _dynamic_symbols(module, defined=False)}
    trt_like = {s for s in needed if re.search(r"_INTERNAL$|PluginRegistry|NvInferPlugins|NvOnnxParser", s)}
    missing = sorted(trt_like - provided)
    if missing:
        raise RuntimeError(
            f"TensorRT {bindings.version}'s bindings need symbols the stubs lack: {', '.join(missing)}; "
            "add them to scripts/trt_stubs/"
        )


def make_typing_stubs(bindings: Bindings, out: Path) -> None:
    """Typing stubs of this version (pybind11-stubgen), with the few signatures Python cannot parse loosened."""
    proc = subprocess.run(
        [sys.executable, "-m", "pybind11_stubgen", "tensorrt", "-o", str(out), "--ignore-all-errors"],
        env=bindings.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"pybind11-stubgen failed for TensorRT {bindings.version}: "
            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
        )
    for pyi in out.rglob("*.pyi"):
        pyi.write_text(fix_stubs(pyi.read_text()))


_DEF = re.compile(r"^(?P<head>\s*def \w+)\((?P<params>.*)\)(?P<ret>\s*->\s*.+)?:\s*$")
_DIMS_PARAM = re.compile(r"(\w+: )Dims\b(?=[,)=]|$)")

#: What the bindings do at run time but stubgen cannot see: ``Dims`` iterate like tuples, ``IHostMemory`` exposes
#: the buffer protocol (``bytes(plan)``).
_ADDED_MEMBERS = {
    "Dims": "    def __iter__(self) -> typing.Iterator[int]: ...",
    "IHostMemory": "    def __buffer__(self, flags: int, /) -> memoryview: ...",
}


def fix_stubs(text: str) -> str:
    """Make pybind11-stubgen's output valid and faithful to the bindings' run-time behaviour.

    - ``def`` lines Python cannot parse (a parameter named ``in``, required parameters after defaults) become
      ``(self, *args, **kwargs)`` with their return type kept;
    - a ``Dims`` parameter also takes a sequence of ints (the bindings convert tuples and lists implicitly);
    - :data:`_ADDED_MEMBERS` are added to their classes.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _DEF.match(line)
        if not m:
            continue
        try:
            ast.parse(line.strip() + "\n    pass")
        except SyntaxError:
            first = m.group("params").split(",")[0].split(":")[0].strip()
            params = (
                "self, *args: typing.Any, **kwargs: typing.Any"
                if first == "self"
                else "*args: typing.Any, **kwargs: typing.Any"
            )
            lines[i] = f"{m.group('head')}({params}){m.group('ret') or ''}:"
        else:
            head, _, rest = lines[i].partition("(")
            params, sep, ret = rest.rpartition(")")
            lines[i] = head + "(" + _DIMS_PARAM.sub(r"\1Dims | collections.abc.Sequence[int]", params) + sep + ret
    out = []
    for line in lines:
        out.append(line)
        cls = re.match(r"^class (\w+)\b", line)
        if cls and cls.group(1) in _ADDED_MEMBERS:
            pending = _ADDED_MEMBERS[cls.group(1)]
            out.append(pending)  # before the docstring is fine: a class body may start with any statement
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder for wheels and versions (default $TRT_BINDINGS_CACHE or .cache/trt-bindings)",
    )
    parser.add_argument("--no-stubs", action="store_true", help="skip the typing stubs")
    args = parser.parse_args(argv)
    for version, b in prepare_all(args.cache, stubs=not args.no_stubs).items():
        stubs = f" stubs={b.stubs}" if b.stubs else ""
        print(f"TensorRT {version}: LD_LIBRARY_PATH={b.lib} PYTHONPATH={b.site}{stubs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
