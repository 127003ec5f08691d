"""Replay issue 34's memory cases as the commands a user types, each under a real memory limit.

Every case must end in a result (exit 0) or one ``error:`` line naming the estimate and the limit; never a process
the kernel kills (exit 137), a traceback or a hang. The limit is, in order of preference:

- a cgroup v1 memory group (``/sys/fs/cgroup/memory/<new group>/memory.limit_in_bytes``) or a cgroup v2 one
  (``memory.max``), made for each case and removed after it: the kernel's own OOM killer, as in a container;
- else ``RLIMIT_AS`` set in the child (``ulimit -v``): allocations fail instead of the process being killed.

Big files are made on the fly in a temporary folder (sparse or deflated where the case allows) and deleted.
For each case: the exit code, the wall time, the peak RSS of the command (and of the cgroup: page cache included),
the OOM kills the cgroup saw, and the ``error:`` line. Prints a Markdown table.

    .venv/bin/python benchmarks/memory_limit_replay.py [--limit 5G] [--timeout 600] [--only NAME ...]

Needs about 10 GiB of free disk for the allocated ``.npy`` (the rest is sparse or compressed) and, for a cgroup,
root. The suite's cheap counterpart (a low limit on small models) is ``tests/test_memory_limits.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30


# --------------------------------------------------------------------------- the limit


class Limit:
    """One memory limit around one child process: a fresh cgroup per case, or ``RLIMIT_AS``."""

    def __init__(self, size: int):
        self.size = size
        self.kind, self.reason = self._pick()
        self.group: Path | None = None

    def _pick(self) -> tuple[str, str]:
        v1 = Path("/sys/fs/cgroup/memory")
        probe = v1 / f"workbench-replay-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
            return "cgroup-v1", "cgroup v1 memory.limit_in_bytes (a group made for each case)"
        except OSError as e:
            v1_error = f"{v1}: {e.strerror}"
        v2 = Path("/sys/fs/cgroup")
        try:
            if "memory" in (v2 / "cgroup.controllers").read_text().split():
                probe = v2 / f"workbench-replay-probe-{os.getpid()}"
                probe.mkdir()
                ok = (probe / "memory.max").exists()
                probe.rmdir()
                if ok:
                    return "cgroup-v2", "cgroup v2 memory.max (a group made for each case)"
        except OSError:
            pass
        return "rlimit", f"RLIMIT_AS in the child (no memory cgroup could be made: {v1_error})"

    def open(self, name: str) -> None:
        if self.kind == "rlimit":
            return
        base = Path("/sys/fs/cgroup/memory") if self.kind == "cgroup-v1" else Path("/sys/fs/cgroup")
        self.group = base / f"workbench-replay-{os.getpid()}-{name}"
        self.group.mkdir()
        if self.kind == "cgroup-v1":
            (self.group / "memory.limit_in_bytes").write_text(str(self.size))
            swap = self.group / "memory.memsw.limit_in_bytes"
            if swap.exists():  # no swapping out of the limit
                swap.write_text(str(self.size))
        else:
            (self.group / "memory.max").write_text(str(self.size))
            (self.group / "memory.swap.max").write_text("0")

    def enter(self) -> None:
        """In the child, before exec."""
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(os.getpid()))
        else:
            resource.setrlimit(resource.RLIMIT_AS, (self.size, self.size))

    def peak_and_kills(self) -> tuple[int | None, int | None]:
        if self.group is None:
            return None, None
        peak_file = "memory.max_usage_in_bytes" if self.kind == "cgroup-v1" else "memory.peak"
        try:
            peak = int((self.group / peak_file).read_text())
        except (OSError, ValueError):
            peak = None
        events = self.group / ("memory.oom_control" if self.kind == "cgroup-v1" else "memory.events")
        kills = None
        for line in events.read_text().splitlines():
            if line.startswith("oom_kill "):
                kills = int(line.split()[1])
        return peak, kills

    def close(self) -> None:
        if self.group is None:
            return
        for _ in range(50):  # a straggler of the case (its own group: only what this script started)
            pids = [int(p) for p in (self.group / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        self.group.rmdir()
        self.group = None


# --------------------------------------------------------------------------- the files


def _save(graph, path: Path) -> str:
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path.name


def outer_model(folder: Path) -> str:
    """x [1, n] -> the outer product [1, n, n] -> a sum: 4n bytes in, 4n^2 in one intermediate."""
    graph = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["x", "a2"], ["col"], name="col"),
            helper.make_node("Unsqueeze", ["x", "a1"], ["row"], name="row"),
            helper.make_node("Mul", ["col", "row"], ["outer"], name="outer"),
            helper.make_node("ReduceSum", ["outer"], ["y"], keepdims=0, name="sum"),
        ],
        "outer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [helper.make_tensor("a2", TensorProto.INT64, [1], [2]), helper.make_tensor("a1", TensorProto.INT64, [1], [1])],
    )
    return _save(graph, folder / "outer.onnx")


def relu_model(folder: Path) -> str:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1024, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1024, 1024])],
    )
    return _save(graph, folder / "relu.onnx")


WIDE = (256, 1024)  # one sample of the wide model: 1 MiB of float32


def wide_model(folder: Path) -> str:
    """x [batch, 256, 1024] -> MatMul [1024, 8] -> mean over 256: cheap per byte, so a 7 GiB set runs in seconds."""
    weight = np.random.default_rng(0).standard_normal((WIDE[1], 8)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
            helper.make_node("ReduceMean", ["h"], ["y"], axes=[1], keepdims=0, name="mean"),
        ],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *WIDE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    return _save(graph, folder / "wide.onnx")


SET_SAMPLES = 7 * 1024  # 7 GiB of wide-model samples


def _npy_header(samples: int) -> dict:
    return {"descr": "<f4", "fortran_order": False, "shape": (samples, *WIDE)}


def npy_file(folder: Path, sparse: bool) -> str:
    path = folder / ("sparse.npy" if sparse else "dense.npy")
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, _npy_header(SET_SAMPLES))
        start, size = f.tell(), SET_SAMPLES * WIDE[0] * WIDE[1] * 4
        if sparse:
            f.truncate(start + size)
        else:  # allocated on disk (reads as zeros, as a written file would)
            os.posix_fallocate(f.fileno(), start, size)
    return path.name


def npz_file(folder: Path, member: str) -> str:
    """A deflated .npz of 7 GiB of samples (the file itself is small) with one member named ``member``."""
    path = folder / f"set-{member.replace('.', '-')}.npz"
    chunk = np.zeros((64, *WIDE), np.float32).tobytes()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(member, "w", force_zip64=True) as out:
            np.lib.format.write_array_header_1_0(out, _npy_header(SET_SAMPLES))
            for _ in range(SET_SAMPLES // 64):
                out.write(chunk)
    return path.name


def photos(folder: Path) -> str:
    """Eight 9000x9000 JPEG photos (noise over a gradient: about 30 MB each)."""
    from PIL import Image

    out = folder / "photos"
    out.mkdir()
    gradient = Image.linear_gradient("L").resize((9000, 9000))
    for i in range(8):
        noise = Image.effect_noise((9000, 9000), 40 + i)
        Image.merge("RGB", (gradient, noise, gradient.rotate(90))).save(out / f"photo{i}.jpg", quality=85)
    return out.name


def tiny_pngs(folder: Path) -> str:
    from PIL import Image

    out = folder / "pngs"
    out.mkdir()
    for i in range(10_000):
        Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 128)).save(out / f"{i:05d}.png")
    return out.name


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # the words
    argv: tuple[str, ...]  # after 'workbench'; {name} fields are filled from `files`
    files: tuple[tuple[str, object], ...] = ()
    limit: int | None = None  # else --limit


CASES = (
    Case(  # the default 3 x 100 iterations at this batch take about 15 min on 2 loaded cores: fewer, same memory
        "shapes-2048",
        "resnet_mini at 2048x3x128x128 (`--iterations 5 --trials 1`)",
        ("profile", "resnet_mini", "--shapes", "input:2048x3x128x128", "--iterations", "5", "--trials", "1"),
    ),
    Case(
        "shapes-40000", "resnet_mini, a 40,000 batch", ("profile", "resnet_mini", "--shapes", "input:40000x3x128x128")
    ),
    Case(
        "intermediate",
        "a 7.9 GB intermediate from dynamic dims (64 KiB input)",
        ("profile", "{m}", "--shapes", "x:1x44500"),
        (("m", outer_model),),
    ),
    Case(
        "input-1000x1024x1024",
        "a 1000x1024x1024 input",
        ("profile", "{m}", "--shapes", "x:1000x1024x1024"),
        (("m", relu_model),),
    ),
    *(
        Case(
            f"{use}-{kind}",
            f"7 GiB {purpose} .{kind[:3]}{which}",
            ("profile", "{m}", "--precision", precision, option, "{d}"),
            (("m", wide_model), ("d", data)),
        )
        for use, purpose, precision, option in (
            ("calib", "calibration", "int8", "--calib"),
            ("eval", "evaluation", "fp16", "--eval"),
        )
        for kind, which, data in (
            ("npy", "", lambda f: npy_file(f, sparse=False)),
            ("npy-sparse", ", sparse", lambda f: npy_file(f, sparse=True)),
            ("npz", "", lambda f: npz_file(f, "x.npy")),
            ("npz-member", ", member without .npy", lambda f: npz_file(f, "x")),
        )
    ),
    Case(
        "photos",
        "eight 9000x9000 photos as calibration",
        ("profile", "resnet_mini", "--precision", "int8", "--calib", "{d}"),
        (("d", photos),),
    ),
    Case(
        "pngs",
        "10,000 tiny PNGs as calibration, 3 GiB limit",
        ("profile", "resnet_mini", "--precision", "int8", "--calib", "{d}"),
        (("d", tiny_pngs),),
        limit=3 * GIB,
    ),
)

ESTIMATE = re.compile(r"would take about [\d.,]+ [KMGT]iB, more than this process may still use .* left under (.+?)\)")
RAN_OUT = re.compile(r"ran out of memory \([\d.,]+ [KMGT]?i?B left under (.+?)\)")


def outcome(rc: int | None, error: str, lines: int) -> str:
    if rc is None:
        return "hang (timed out)"
    if rc == 0:
        return "result"
    if rc in (-signal.SIGKILL, 137):
        return "killed (137)"
    if rc < 0:
        return f"killed by signal {-rc}"
    if "Traceback" in error or lines != 1:
        return "traceback / several lines"
    if ESTIMATE.search(error):
        return "one line: estimate + limit"
    if RAN_OUT.search(error):
        return "one line: ran out (limit named)"
    return "one line, other"


def run_case(case: Case, limit: Limit, folder: Path, timeout: float, made: dict) -> dict:
    values = {}
    for key, make in case.files:
        if make not in made:
            made[make] = make(folder)
        values[key] = made[make]
    argv = [sys.executable, "-m", "workbench.cli", *(a.format(**values) for a in case.argv)]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WORKBENCH_WORKSPACE": str(folder / "workspace"),
        "WORKBENCH_CACHE": str(folder / "cache"),
    }
    env.pop("WORKBENCH_MAX_MEMORY", None)
    saved = limit.size
    limit.size = case.limit or saved
    limit.open(case.name)
    stderr = folder / f"{case.name}.stderr"
    start = time.monotonic()
    try:
        with open(stderr, "wb") as err:
            child = subprocess.Popen(
                argv,
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=limit.enter,
                start_new_session=True,
            )
            rc, usage = None, None
            while time.monotonic() - start < timeout:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    rc = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.2)
            else:
                os.killpg(child.pid, signal.SIGKILL)
                _, _, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - start
        peak, kills = limit.peak_and_kills()
    finally:
        limit.close()
        limit.size = saved
    text = stderr.read_text(errors="replace").strip().splitlines()
    errors = [line for line in text if line.startswith("error:")]
    error = errors[-1] if errors else (text[-1] if text else "")
    return {
        "case": case,
        "limit": case.limit or saved,
        "rc": rc,
        "wall": wall,
        "rss": usage.ru_maxrss * 1024 if usage else None,
        "peak": peak,
        "kills": kills,
        "error": error,
        "outcome": outcome(rc, "\n".join(text) if rc else error, len(errors) if errors else len(text)),
    }


def _gib(n: int | None) -> str:
    return "—" if n is None else f"{n / GIB:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", default="5G", help="the memory limit (default 5G)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a case counts as a hang")
    parser.add_argument("--only", nargs="*", help="case names to run (default all)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    from workbench.memory import parse_max_memory

    limit = Limit(parse_max_memory(args.limit))
    cases = [c for c in CASES if not args.only or c.name in args.only]
    print(f"limit: {args.limit} by {limit.reason}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="wb-memory-replay-"))
    rows, made = [], {}
    try:
        for case in cases:
            row = run_case(case, limit, folder, args.timeout, made)
            rows.append(row)
            print(
                f"{case.name}: {row['outcome']} rc={row['rc']} {row['wall']:.1f}s rss={_gib(row['rss'])}GiB "
                f"cgroup peak={_gib(row['peak'])}GiB oom_kills={row['kills']} | {row['error'][:400]}",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        "\n| case | limit (GiB) | outcome | exit | wall (s) | peak RSS (GiB) | cgroup peak (GiB) | OOM kills | the line |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        line = r["error"].replace("|", "\\|") if r["rc"] != 0 else ""
        print(
            f"| {r['case'].what} | {_gib(r['limit'])} | {r['outcome']} | {r['rc']} | {r['wall']:.0f} | {_gib(r['rss'])} "
            f"| {_gib(r['peak'])} | {r['kills'] if r['kills'] is not None else '—'} | {line} |"
        )
    bad = [r for r in rows if not r["outcome"].startswith(("result", "one line: "))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
