"""The reliability classes: bad inputs and bad moments replayed against the real code, each counted tried / clean.

A case is *clean* when the workbench either does the job or stops with one line (a :class:`WorkbenchError`, or the
CLI's ``error: ...`` line with a non-zero exit) — never a traceback, never the CLI's "unexpected ... bug" line — and
leaves the workspace whole: every indexed run has its folder with ``run.json`` and ``report.html``, every run folder
is indexed, and no temp folder outlives its writer (after the next open, for writers that were killed).

Each class is a function ``(root, count, seed) -> Tally``. ``tests/reliability/test_reliability.py`` runs them with
small counts (the default suite); ``python tests/reliability/run.py --scale N`` runs N times as many and prints the
table ``docs/reliability.md`` quotes.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from support import alive, descendants, signal_child

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
RECORDED = DATA / "recorded"
IMPORT_SOURCE = RECORDED / "trtexec-10.16" / "h100"  # a verbose log and its layer information: one engine


@dataclass
class Tally:
    """How many cases a class tried, how many were clean, and what the others did (first lines)."""

    name: str
    tried: int = 0
    clean: int = 0
    tracebacks: int = 0
    half_written: int = 0
    stray_temps: int = 0
    failures: list = field(default_factory=list)
    note: str = ""

    def add(self, label: str, *, traceback: str = "", half_written: int = 0, stray_temps: int = 0) -> None:
        self.tried += 1
        self.tracebacks += bool(traceback)
        self.half_written += half_written
        self.stray_temps += stray_temps
        if traceback or half_written or stray_temps:
            detail = traceback or f"{half_written} half-written run(s), {stray_temps} stray temp folder(s)"
            self.failures.append(f"{label}: {detail}"[:400])
        else:
            self.clean += 1

    def row(self) -> str:
        return (
            f"| {self.name} | {self.tried} | {self.clean} | {self.tracebacks} | {self.half_written} | "
            f"{self.stray_temps} |" + (f" {self.note}" if self.note else "")
        )


# ---- checks shared by the classes -------------------------------------------------------------------------------


def call(fn, *args, **kwargs) -> str:
    """Run ``fn``; "" when it returned or raised a one-line WorkbenchError, else what went wrong (one line)."""
    from workbench.errors import WorkbenchError

    try:
        fn(*args, **kwargs)
    except WorkbenchError as e:
        return "" if "\n" not in str(e) and str(e) else f"WorkbenchError not one line: {str(e)[:200]!r}"
    except Exception as e:  # noqa: BLE001 - this is what the suite counts
        return f"{type(e).__name__}: {str(e)[:200]}"
    return ""


def cli(argv: list[str], workspace: Path, *, usage_errors: bool = False) -> str:
    """Run the CLI in this process; "" when it succeeded or failed with one ``error:`` line and exit status 2.

    ``usage_errors``: argparse's own error for a value of the wrong type (``...: error: argument --x: invalid int
    value``) is clean too, and no stderr line may be longer than 2,100 characters (never the whole value given)."""
    from workbench.cli import main

    err, out = io.StringIO(), io.StringIO()
    old = os.environ.get("WORKBENCH_WORKSPACE")
    os.environ["WORKBENCH_WORKSPACE"] = str(workspace)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    except BaseException as e:  # noqa: BLE001 - escaping main is what the suite counts
        return f"escaped main: {type(e).__name__}: {str(e)[:200]}"
    finally:
        if old is None:
            os.environ.pop("WORKBENCH_WORKSPACE", None)
        else:
            os.environ["WORKBENCH_WORKSPACE"] = old
    text = err.getvalue().strip()
    if usage_errors and any(len(line) > 2100 for line in text.splitlines()):
        return f"a {max(map(len, text.splitlines()))}-character line"
    if rc == 0:
        return ""
    errors = [  # progress bars go to stderr too
        line
        for line in text.splitlines()
        if line.startswith("error: ") or (usage_errors and ": error: argument " in line)
    ]
    if rc == 2 and len(errors) == 1 and "Traceback" not in text and "workbench bug" not in errors[0]:
        return ""
    return f"exit {rc}: {' | '.join(errors or text.splitlines()[-3:])[:300]}"


def workspace_problems(workspace: Path) -> tuple[int, int]:
    """(half-written runs, stray temp entries) of a workspace no process is writing to."""
    from workbench import paths

    TEMP_MARK = getattr(paths, "TEMP_MARK", ".wb-tmp-")

    runs = workspace / "runs"
    if not runs.is_dir():
        return 0, 0
    stray = sum(1 for p in runs.iterdir() if TEMP_MARK in p.name or p.name.startswith(".")) + sum(
        1 for p in workspace.iterdir() if TEMP_MARK in p.name
    )
    indexed = set()
    db = workspace / "runs.sqlite"
    if db.is_file() and db.stat().st_size:
        try:
            with contextlib.closing(sqlite3.connect(db)) as con:
                indexed = {r[0] for r in con.execute("SELECT run FROM runs")}
        except sqlite3.Error:
            indexed = set()
    half = 0
    for run_id in indexed:  # an indexed run is complete
        folder = runs / run_id
        if not ((folder / "run.json").is_file() and (folder / "report.html").is_file()):
            half += 1
    for folder in runs.iterdir():  # a complete folder is indexed (or it is a half-done run nobody lists)
        if folder.is_dir() and not folder.name.startswith(".") and folder.name not in indexed:
            half += 1
    return half, stray


# ---- 1. fuzzed ONNX ---------------------------------------------------------------------------------------------


def _mutations(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(("flip", "flip", "truncate", "insert", "duplicate", "zero"))
    b = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind == "insert":
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "duplicate":
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        b[j:j] = b[i:j][:256]
    else:
        i = rng.randrange(len(b))
        b[i : i + rng.randint(1, 64)] = bytes(min(64, len(b) - i))
    return bytes(b)


def _small_models(root: Path) -> list[Path]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 8), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"], name="relu")],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 8])],
        [w],
    )
    mlp = root / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(mlp))
    ext = root / "ext" / "ext.onnx"
    ext.parent.mkdir()
    onnx.save_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
        str(ext),
        save_as_external_data=True,
        location="ext.data",
        size_threshold=0,
    )
    return [mlp, DATA / "digits_cnn.onnx", ext]


def fuzzed_onnx(root: Path, count: int, seed: int = 0) -> Tally:
    """Flipped, truncated, inserted, duplicated and zeroed bytes of real models, loaded as a file and as bytes."""
    from workbench.model.onnx_model import load_model

    tally = Tally("fuzzed ONNX (flipped bytes, truncation, insertion)")
    rng = random.Random(seed)
    models = _small_models(root)
    for i in range(count):
        source = models[i % len(models)]
        data = _mutations(source.read_bytes(), rng)
        path = source.parent / f"fuzz-{i}.onnx"
        path.write_bytes(data)
        problem = call(load_model, path) or call(load_model, data if "ext" not in source.name else path)
        path.unlink()
        tally.add(f"{source.name} #{i}", traceback=problem)
    return tally


def external_data_guards(root: Path, count: int, seed: int = 0) -> Tally:
    """External-data references a crafted model can hold: locations, offsets, lengths, links, pipes."""
    import onnx
    from onnx import TensorProto, helper

    from workbench.model.onnx_model import load_model

    tally = Tally("external-data guards (locations, offsets, links, pipes, sizes)")
    folder = root / "external"
    folder.mkdir()
    secret = root / "secret.bin"
    secret.write_bytes(b"s" * 651)
    (folder / "w.data").write_bytes(np.ones(16, np.float32).tobytes())
    os.symlink(secret, folder / "link.data")
    os.link(secret, folder / "hard.data")
    os.mkfifo(folder / "pipe.data")
    (folder / "dir.data").mkdir()
    locations = [
        "w.data",
        "../secret.bin",
        "/etc/shadow",
        "sub/../../secret.bin",
        "link.data",
        "hard.data",
        "pipe.data",
        "dir.data",
        "missing.data",
        "",
        "C:\\x.data",
        "w.data\x00x",
        "./w.data",
        "..",
        "%s" % ("a/" * 300 + "x"),
    ]
    fields = [
        ("0", "64"),
        ("abc", "64"),
        ("-8", "64"),
        ("0", "-1"),
        ("0", "1e3"),
        ("0", str(1 << 70)),
        ("99999999999999999999", "64"),
        ("0", ""),
        ("", ""),
    ]
    rng = random.Random(seed)
    combos = [(loc, f) for loc in locations for f in fields]
    rng.shuffle(combos)
    for location, (offset, length) in combos[:count]:
        w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
        for key, value in (("location", location), ("offset", offset), ("length", length)):
            if value != "":
                w.external_data.add(key=key, value=value)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
            [w],
        )
        path = folder / "m.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        problem = ""
        try:
            load_model(path).to_bytes()  # reading the weights too
        except Exception as e:  # noqa: BLE001
            from workbench.errors import WorkbenchError

            if not isinstance(e, WorkbenchError) or "\n" in str(e):
                problem = f"{type(e).__name__}: {str(e)[:200]}"
            elif "651" in str(e) or "shadow" in str(e).replace(location, ""):
                problem = f"discloses a file outside: {e}"
        tally.add(f"{location!r} offset={offset!r} length={length!r}", traceback=problem)
    return tally


def huge_inputs(root: Path, count: int, seed: int = 0) -> Tally:
    """Declared or requested input shapes far beyond memory (a 32 TiB allocation), through ``workbench profile``."""
    import onnx
    from onnx import TensorProto, helper

    tally = Tally("huge input allocations (declared and --shapes)")
    dims = [[1 << 20, 1 << 20, 8], [1 << 15] * 3, [1 << 31, 16], ["N", 4]]
    for i in range(count):
        shape = dims[i % len(dims)]
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"], name="r")],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        )
        path = root / f"huge-{i}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        argv = ["profile", str(path), "--backend", "onnxruntime", "--iterations", "1", "--warmup", "0"]
        if shape[0] == "N":
            argv += ["--shapes", f"x:{1 << 40}x4"]
        tally.add(f"{shape}", traceback=cli(argv, root / "ws"))
    return tally


# ---- 2. crafted trtexec imports ---------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _crafts(log: str, info: dict):
    """(label, {file name: text}) pairs: a trtexec log and layer information, each crafted one way."""
    info_text = json.dumps(info)
    yield "as recorded", {"run.log": log, "layers.json": info_text}
    yield "unbalanced quote", {"run.log": log.replace("--shapes=x:4x1x28x28", "--shapes='x:4x1x28x28", 1)}
    yield "unbalanced double quote", {"run.log": log.replace("trtexec --loadEngine", 'trtexec "--loadEngine', 1)}
    yield "deep JSON nesting", {"profile.json": _nested(100_000), "run.log": log}
    yield "deep JSON object", {"layers.json": '{"Layers":' * 50_000 + "1" + "}" * 50_000}
    mean_zero = "\n".join(
        line.replace("mean = ", "mean = 0 ms; was ") if "Latency:" in line else line for line in log.splitlines()
    )
    yield "zero mean latency", {"run.log": mean_zero.replace("Throughput:", "Throughput: 0 qps; was")}
    for tag in ("v1", "v", "v12", "vabc", "v99999999999999999999"):
        yield (
            f"version tag {tag}",
            {
                "run.log": log.replace("[TensorRT v101601]", f"[TensorRT {tag}]").replace(
                    "TensorRT version", "TensorRT ver"
                )
            },
        )
    for level in ("inf", "1e999", "-1", "nan", "99999999999999999999"):
        yield (
            f"opt level {level}",
            {"run.log": log.replace("--verbose", f"--verbose --builderOptimizationLevel={level}")},
        )
    profile = [{"count": 10}, {"name": "conv", "timeMs": 1.0, "averageMs": 0.1, "medianMs": 0.1, "percentage": 50}]
    for label, value in (
        ("count string", [{"count": "ten"}] + profile[1:]),
        ("count list", [{"count": [1]}] + profile[1:]),
        ("count huge", [{"count": 1 << 80}] + profile[1:]),
        ("name object", [profile[0], {**profile[1], "name": {"a": 1}}]),
        ("timeMs text", [profile[0], {**profile[1], "timeMs": "slow"}]),
        ("timeMs null", [profile[0], {**profile[1], "timeMs": None, "averageMs": None}]),
        ("timeMs huge", [profile[0], {**profile[1], "timeMs": 1e308 * 10}]),
        ("zero count", [{"count": 0}] + profile[1:]),
    ):
        yield f"profile {label}", {"profile.json": json.dumps(value), "layers.json": info_text}
    times = [{"startComputeMs": 300, "latencyMs": 1.0, "computeMs": 1.0, "startH2dMs": 299, "endD2hMs": 301}]
    for label, value in (
        ("times text", [{**times[0], "latencyMs": "x"}]),
        ("times null start", [{**times[0], "startComputeMs": None}]),
        ("times list", [[1, 2, 3]]),
        ("times huge", [{**times[0], "latencyMs": 1 << 80}]),
    ):
        yield label, {"times.json": json.dumps(value), "run.log": log}
    for label, value in (
        ("metadata list stats", {"performance_summary": {"Latency": "fast", "Throughput": [1]}}),
        ("metadata nested", {"performance_summary": {"Latency": [[1], [2], 3, 4, 5]}}),
        ("metadata null", {"performance_summary": None}),
        ("metadata short", {"performance_summary": {"Latency": []}}),
    ):
        yield label, {"x.profile.metadata.json": json.dumps(value)}
    for label, key, value in (
        ("layers not a list", "Layers", {"a": 1}),
        ("bindings text", "Bindings", "x"),
        ("layer fields wrong", "Layers", [{"Name": 3, "LayerType": [], "Inputs": "x"}]),
        ("layers null", "Layers", [None, 1, "x"]),
    ):
        yield label, {"layers.json": json.dumps({**info, key: value}), "run.log": log}
    yield "binary", {"run.log": "\x00\x01TensorRT.trtexec" * 100}
    yield "empty files", {"run.log": "", "layers.json": ""}
    yield (
        "value overflowing SQLite",
        {
            "run.log": log.replace("Selected Device", "Selected Device").replace(
                "device memory size: ", f"device memory size: {1 << 80} "
            )
        },
    )


def crafted_imports(root: Path, count: int, seed: int = 0, *, cli_every: int = 4) -> Tally:
    """Crafted trtexec files (unbalanced quotes, deep nesting, zero latency, short tags, odd opt levels, wrong types),
    parsed by ``import_trtexec``; every ``cli_every``-th also through ``workbench import`` into a workspace."""
    from workbench.interop.trtexec import import_trtexec

    tally = Tally("crafted trtexec imports")
    log = (IMPORT_SOURCE / "inference-verbose.log").read_text()
    info = json.loads((IMPORT_SOURCE / "model-trained.layerinfo.json").read_text())
    crafts = list(_crafts(log, info))
    rng = random.Random(seed)
    while len(crafts) < count:  # beyond the crafted ones: random byte damage to the recorded files
        data = bytearray(log.encode())
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        crafts.append(
            (
                f"damaged log #{len(crafts)}",
                {"run.log": data.decode("utf-8", "replace"), "layers.json": json.dumps(info)},
            )
        )
    workspace = root / "ws"
    for i, (label, files) in enumerate(crafts[:count]):
        folder = root / f"import-{i}"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        problem = call(import_trtexec, [folder])
        if not problem and i % cli_every == 0:
            problem = cli(["import", str(folder)], workspace)
        half, stray = workspace_problems(workspace)
        tally.add(label, traceback=problem, half_written=half, stray_temps=stray)
        if half or stray:
            shutil.rmtree(workspace)
        shutil.rmtree(folder)
    return tally


# ---- 3. traversal attempts --------------------------------------------------------------------------------------


def traversal(root: Path, count: int, seed: int = 0) -> Tally:
    """Crafted run ids, artifact paths and external-data locations in a received run: nothing outside is written,
    moved or deleted, and the workspace stays whole."""
    from workbench.interop.triton import export_triton
    from workbench.results.run import LatencyStats, Run, TensorInfo, load_run
    from workbench.results.store import Store

    tally = Tally("traversal attempts (ids, artifacts, external data, Triton)")
    victim = root / "victim"
    (victim / ".git").mkdir(parents=True)
    (victim / ".env").write_text("TOKEN=1")
    evil = [
        "../../victim",
        "../victim",
        str(victim),
        "/tmp/x",
        "..",
        "a/../../..",
        "runs/../../victim",
        "\\..\\x",
        "C:\\victim",
        "ok/../../victim",
        "x\x00y",
        "",
        " ",
        "../" * 20 + "etc/passwd",
    ]
    kinds = ("id", "artifact", "location", "delete", "reindex")
    store = Store(root / "ws")
    spec = (TensorInfo("x", "float32", (1, 4)),)
    for i in range(count):
        kind, bad = kinds[i % len(kinds)], evil[(i // len(kinds)) % len(evil)]
        before = sorted(p.name for p in victim.rglob("*"))
        run = Run(
            backend="onnxruntime",
            layers=[],
            model={"name": "m"},
            inputs=spec,
            outputs=spec,
            latency=LatencyStats.from_times([1.0]),
        )
        received = run.save(root / f"received-{i}")
        meta = json.loads((received.directory / "run.json").read_text())
        problem = ""
        if kind in ("id", "reindex"):
            meta["id"] = bad
            target = received.directory if kind == "id" else store.path / "runs" / f"copied-{i}"
            if kind == "reindex":
                shutil.copytree(received.directory, target)
            (target / "run.json").write_text(json.dumps(meta))
            problem = call(store.add, load_run(target)) if kind == "id" else call(store.reindex)
        elif kind == "artifact":
            meta["artifacts"] = {"onnx": bad}
            (received.directory / "run.json").write_text(json.dumps(meta))
            problem = call(lambda d=received.directory: export_triton(load_run(d), root / "repo", kind="KIND_CPU"))
        elif kind == "location":
            import onnx
            from onnx import TensorProto, helper

            w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
            w.external_data.add(key="location", value=bad)
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                "g",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                [w],
            )
            onnx.save(
                helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                str(received.directory / "model.onnx"),
            )
            meta["artifacts"] = {"onnx": "model.onnx"}
            (received.directory / "run.json").write_text(json.dumps(meta))
            problem = call(lambda d=received.directory: export_triton(load_run(d), root / "repo", kind="KIND_CPU"))
        else:
            problem = call(store.delete, bad)
        after = sorted(p.name for p in victim.rglob("*"))
        outside = [
            p for p in root.iterdir() if p.name not in ("victim", "ws", "repo") and not p.name.startswith("received-")
        ]
        escaped = (
            before != after or bool(outside) or any("victim" in str(p) for p in (root / "repo").rglob("*"))
            if (root / "repo").exists()
            else before != after or bool(outside)
        )
        if escaped:
            problem = problem or f"wrote outside: {outside or after}"
        half, stray = 0, workspace_problems(store.path)[1]
        tally.add(f"{kind} {bad!r}", traceback=problem, half_written=half, stray_temps=stray)
    return tally


# ---- 4. corrupted run folders, stores and cache entries ---------------------------------------------------------


def corrupted_state(root: Path, count: int, seed: int = 0) -> Tally:
    """Damaged run.json / layers.csv / latency.csv, damaged, foreign, empty or read-only runs.sqlite, damaged
    variant-cache entries: commands give one line, a damaged store is rebuilt with ``workbench reindex --rebuild``."""
    from workbench.cli import main  # noqa: F401 - imported once here so cli() below does not count it

    tally = Tally("corrupted run folders, stores and cache entries")
    workspace = root / "ws"
    source = root / "src"
    shutil.copytree(IMPORT_SOURCE, source)
    if cli(["import", str(source)], workspace):
        tally.note = "could not make the first run"
        return tally
    run_dir = next((workspace / "runs").iterdir())
    pristine = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    db_bytes = (workspace / "runs.sqlite").read_bytes()
    damages = [
        ("run.json", b"{}"),
        ("run.json", b"[]"),
        ("run.json", b'{"id": 3}'),
        ("run.json", b"\xff\xfe"),
        ("run.json", b""),
        ("run.json", b"[" * 100_000),
        ("run.json", b'{"id": "x", "created": 1, "backend": [], "latency": {"a": 1}}'),
        ("layers.csv", b""),
        ("layers.csv", b'name\n"unclosed'),
        ("latency.csv", b"nope\n1"),
        ("latency.csv", b""),
        ("run.json", json.dumps({**json.loads(pristine["run.json"]), "artifacts": {"x": "../../etc/passwd"}}).encode()),
        ("run.json", json.dumps({**json.loads(pristine["run.json"]), "memory": {"bogus": 1}}).encode()),
        ("runs.sqlite", b""),
        ("runs.sqlite", b"SQLite format 3\x00" + b"\x00" * 200),
        ("runs.sqlite", b"not a database" * 64),
        ("runs.sqlite", "foreign"),
        ("runs.sqlite", "readonly"),
        ("variant cache", b"{}"),
        ("variant cache", b"not json"),
        ("variant cache", "missing model"),
    ]
    for i in range(count):
        target, damage = damages[i % len(damages)]
        for name, data in pristine.items():
            (run_dir / name).write_bytes(data)
        (workspace / "runs.sqlite").write_bytes(db_bytes)
        for suffix in ("-wal", "-shm"):
            Path(f"{workspace / 'runs.sqlite'}{suffix}").unlink(missing_ok=True)
        problem = ""
        if target == "variant cache":
            problem = _damaged_variant_cache(root / f"cache-{i}", damage)
        elif target == "runs.sqlite":
            db = workspace / "runs.sqlite"
            if damage == "foreign":
                db.unlink()
                with contextlib.closing(sqlite3.connect(db)) as con:
                    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, blob BLOB)")
                    con.commit()
            elif damage == "readonly":
                os.chmod(db, 0o444)
            else:
                db.write_bytes(damage)
            problem = cli(["history"], workspace) or cli(
                ["report", run_dir.name, "--out", str(root / "r.html")], workspace
            )
            if not problem and damage != "readonly":  # the documented way back: rebuild from the run folders
                problem = cli(["reindex", "--rebuild"], workspace)
                if not problem:
                    listed = _listed(workspace)
                    problem = "" if run_dir.name in listed else f"rebuild lost the run: {listed}"
            os.chmod(db, 0o644)
            for aside in [*workspace.glob("runs.sqlite.damaged-*"), *workspace.glob("runs.sqlite.before-rebuild-*")]:
                aside.unlink()
        else:
            (run_dir / target).write_bytes(damage)
            problem = (
                cli(["report", run_dir.name, "--out", str(root / "r.html")], workspace)
                or cli(["compare", run_dir.name, run_dir.name], workspace)
                or cli(["export", "triton", str(run_dir), "--out", str(root / "repo")], workspace)
                or cli(["reindex"], workspace)
                or cli(["history"], workspace)
            )
        tally.add(f"{target} {str(damage)[:40]!r}", traceback=problem)
    return tally


def _listed(workspace: Path) -> set:
    with contextlib.closing(sqlite3.connect(workspace / "runs.sqlite")) as con:
        return {r[0] for r in con.execute("SELECT run FROM runs")}


def _damaged_variant_cache(cache: Path, damage) -> str:
    """Make a variant, damage its cache entry, make it again: the entry is rebuilt (and works the time after)."""
    import workbench as wb
    from workbench.precision.variant import make_variant

    old = os.environ.get("WORKBENCH_CACHE")
    os.environ["WORKBENCH_CACHE"] = str(cache)
    try:
        model = wb.load_model(DATA / "digits_cnn.onnx")
        first = make_variant(model, "fp16")  # ModelOpt AutoCast: a cached variant
        entry = first.path.parent
        if damage == "missing model":
            (entry / "model.onnx").unlink()
        else:
            (entry / "variant.json").write_bytes(damage)
        problem = call(make_variant, model, first.precision)
        return problem or call(make_variant, model, first.precision)
    finally:
        if old is None:
            os.environ.pop("WORKBENCH_CACHE", None)
        else:
            os.environ["WORKBENCH_CACHE"] = old


# ---- 5. kills at each write step --------------------------------------------------------------------------------


_WRITE_STEPS = (
    "os.replace",
    "shutil.copy2",
    "shutil.copyfile",
    "Path.write_text",
    "Path.write_bytes",
    "os.fdopen",
    "Store._index",
    "tempfile.mkdtemp",
    "tempfile.mkstemp",
)


def _killed_import(source: str, workspace: str, kill_at: int, counter) -> None:
    """In a forked child: ``workbench import`` with SIGKILL at the ``kill_at``-th write step."""
    import pathlib
    import tempfile as tf

    from workbench.results import store as store_module

    calls = {"n": 0}

    def planted(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls["n"] += 1
            counter.value = calls["n"]
            if calls["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        setattr(owner, name, wrapper)

    for owner, name in (
        (os, "replace"),
        (shutil, "copy2"),
        (shutil, "copyfile"),
        (pathlib.Path, "write_text"),
        (pathlib.Path, "write_bytes"),
        (os, "fdopen"),
        (store_module.Store, "_index"),
        (tf, "mkdtemp"),
        (tf, "mkstemp"),
    ):
        planted(owner, name)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child ends by exit or SIGKILL
    rc = 0
    try:
        from workbench.cli import main

        os.environ["WORKBENCH_WORKSPACE"] = workspace
        rc = main(["import", source])
    finally:
        os._exit(rc)


def kills(root: Path, count: int, seed: int = 0) -> Tally:
    """``workbench import`` killed (SIGKILL) at its 1st, 2nd, ... write step; then the next open of the workspace.

    After each kill: no indexed run lacks a file, no run folder is unlisted, and the temp folders the killed writer
    left are removed by the next open once they are old (their age is set back to make them so).
    """
    from workbench.paths import STALE_TEMP_S, TEMP_MARK
    from workbench.results.store import Store

    tally = Tally("kills at each write step (SIGKILL, then the next open)")
    ctx = multiprocessing.get_context("fork")
    steps = None
    k = 1
    while tally.tried < count:
        workspace = root / f"ws-{k}"
        counter = ctx.Value("i", 0)
        child = ctx.Process(target=_killed_import, args=(str(IMPORT_SOURCE), str(workspace), k, counter))
        child.start()
        child.join(120)
        killed = child.exitcode == -signal.SIGKILL
        if not killed:
            steps = counter.value  # the import finished: it has this many write steps
        # the next open, after the killed writer's temp folders have grown old
        old = time.time() - STALE_TEMP_S - 60
        for p in [*(workspace / "runs").glob(f"*{TEMP_MARK}*"), *workspace.glob(f"*{TEMP_MARK}*")]:
            os.utime(p, (old, old), follow_symlinks=False)
        problem = call(Store, workspace) if workspace.exists() else ""
        half, stray = workspace_problems(workspace)
        tally.add(
            f"kill at write step {k}" if killed else f"no kill (all {steps} steps done)",
            traceback=problem if killed or child.exitcode == 0 else f"exit {child.exitcode}",
            half_written=half,
            stray_temps=stray,
        )
        shutil.rmtree(workspace, ignore_errors=True)
        if not killed:
            k = 0  # every step was tried: start again (more cases replay the same steps)
        k += 1
    tally.note = f"{steps or '?'} write steps per import"
    return tally


# ---- 6. disk full -----------------------------------------------------------------------------------------------


_FULL_CHILD = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [{tests!r}, {tests_root!r}]  # cases.py, and the support module it imports
    from cases import cli, workspace_problems
    from pathlib import Path
    disk = Path(sys.argv[1])
    results = []
    for i, argv in enumerate(json.loads(sys.argv[2])):
        ws = disk / "ws"
        argv = [a.replace("DISK", str(disk)) for a in argv]
        problem = cli(argv, ws)
        half, stray = workspace_problems(ws)
        results.append([" ".join(argv[:2]), problem, half, stray])
    print(json.dumps(results))
""")


def _mount_and_run(size_kib: int, commands: list, env: dict) -> tuple[list | None, str]:
    """Run the commands on a fresh tmpfs of ``size_kib`` (a private mount namespace); (results, why not)."""
    disk = Path("/tmp") / f"wb-full-{os.getpid()}-{size_kib}"
    disk.mkdir(exist_ok=True)
    here = Path(__file__).parent
    child = _FULL_CHILD.format(tests=str(here), tests_root=str(here.parent))
    script = (
        f"mount -t tmpfs -o size={size_kib}k tmpfs {disk} && mkdir {disk}/tmp && "
        f'exec {sys.executable} -c "$0" {disk} "$1"'
    )
    wrappers = [["unshare", "-rm", "sh", "-c", script], ["unshare", "-m", "sh", "-c", script]]
    why = ""
    try:
        for wrapper in wrappers:
            try:
                done = subprocess.run(
                    [*wrapper, child, json.dumps(commands)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                    env={**env, "TMPDIR": f"{disk}/tmp", "WORKBENCH_CACHE": f"{disk}/cache"},
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                why = str(e)
                continue
            if done.returncode == 0 and done.stdout.strip():
                return json.loads(done.stdout.strip().splitlines()[-1]), ""
            why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            if "Traceback" in done.stderr:  # the tmpfs was there and the replay itself broke: a failure, not a skip
                raise RuntimeError(f"disk-full replay failed: {done.stderr[-1500:]}")
        return None, why
    finally:
        shutil.rmtree(disk, ignore_errors=True)


def disk_full(root: Path, count: int, seed: int = 0) -> Tally:
    """``workbench import``, ``report --out`` and ``profile`` on a small tmpfs filled at different points: one line
    naming the disk, no run indexed without its report, no temp folder left."""
    tally = Tally("disk full (a small tmpfs)")
    commands = [
        ["import", str(IMPORT_SOURCE)],
        ["import", str(IMPORT_SOURCE)],
        ["report", "DISK/none", "--out", "DISK/report.html"],
        ["profile", str(DATA / "digits_cnn.onnx"), "--backend", "onnxruntime", "--iterations", "2", "--warmup", "0"],
    ]
    sizes = [64, 256, 1024, 3 * 1024, 5 * 1024, 6 * 1024, 8 * 1024, 12 * 1024]  # KiB: full at different steps
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for size in sizes[: max(1, count // len(commands))]:
        results, why = _mount_and_run(size, commands, env)
        if results is None:
            tally.note = f"not run: no tmpfs could be mounted here ({why[:120]})"
            return tally
        for label, problem, half, stray in results:
            tally.add(f"{size} KiB: {label}", traceback=problem, half_written=half, stray_temps=stray)
    return tally


# ---- 7. concurrent writers --------------------------------------------------------------------------------------


def _write_entry(args) -> int:
    from workbench.paths import atomic_directory

    root, worker, repeats = args
    failures = 0
    for r in range(repeats):
        try:
            with atomic_directory(Path(root) / "entry") as tmp:
                (tmp / "payload.bin").write_bytes(bytes([worker]) * 4096)
                (tmp / "sub").mkdir()
                (tmp / "sub" / "meta.json").write_text(json.dumps({"worker": worker, "r": r}))
        except Exception:  # noqa: BLE001 - counted
            failures += 1
    return failures


def _store_run(model: str, r: int):
    from workbench.results.run import LatencyStats, Run

    return Run(backend="onnxruntime", layers=[], model={"name": model}, latency=LatencyStats.from_times([1.0 + r]))


def _with_report(saved) -> None:
    (saved.directory / "report.html").write_text("<html></html>")


def _add_runs(args) -> int:
    from workbench.results.store import Store

    root, worker, repeats = args
    failures = 0
    store = Store(root)
    for r in range(repeats):
        try:
            store.add(_store_run(f"m{worker}", r), finish=_with_report)
        except Exception:  # noqa: BLE001 - counted
            failures += 1
    return failures


def concurrent_writers(root: Path, count: int, seed: int = 0, *, workers: int = 8) -> Tally:
    """``workers`` processes replacing one ``atomic_directory`` entry ``count`` times in all, and adding runs to
    one store at the same time: no writer fails, the entry is always whole, no temp folder is left."""
    from workbench.paths import TEMP_MARK

    tally = Tally(f"concurrent writers ({workers} processes, one entry / one store)")
    ctx = multiprocessing.get_context("fork")
    repeats = max(1, count // workers)
    with ctx.Pool(workers) as pool:
        entry_failures = pool.map(_write_entry, [(str(root / "cache"), w, repeats) for w in range(workers)])
        store_failures = pool.map(_add_runs, [(str(root / "ws"), w, max(1, repeats // 4)) for w in range(workers)])
    entry = root / "cache" / "entry"
    whole = (
        (entry / "payload.bin").is_file()
        and len((entry / "payload.bin").read_bytes()) == 4096
        and (entry / "sub" / "meta.json").is_file()
    )
    leftovers = [p for p in (root / "cache").iterdir() if TEMP_MARK in p.name]
    for w, failed in enumerate(entry_failures):
        for r in range(repeats):
            tally.add(f"entry writer {w} #{r}", traceback="failed" if r < failed else "")
    if not whole:
        tally.failures.append("the entry is not whole")
        tally.half_written += 1
    tally.stray_temps += len(leftovers)
    half, stray = workspace_problems(root / "ws")
    for w, failed in enumerate(store_failures):
        for r in range(max(1, repeats // 4)):
            tally.add(f"store writer {w} #{r}", traceback="failed" if r < failed else "")
    tally.half_written += half
    tally.stray_temps += stray
    if half or stray or leftovers:
        tally.clean = max(0, tally.clean - 1)
    return tally


# ---- 10. the new surfaces (issue 23): sweep ids, records, recipes and files, numbers, names, crashes, kills ------


def _sweep_record(workspace: Path, model: Path):
    """A real sweep record (a plan of ``model``), saved, not run."""
    from workbench.config import BuildConfig
    from workbench.model.onnx_model import load_model
    from workbench.sweeps import SweepRecord, plan_points

    loaded = load_model(model)
    points = plan_points(loaded, precisions="fp32,fp16", base=BuildConfig(iterations=3, warmup_ms=0, trials=1))
    return SweepRecord.create(
        points,
        model={"path": str(model), "name": loaded.name, "sha256": loaded.sha256},
        request={"backend": "onnxruntime", "trials": 1, "base": points[0].config.to_dict()},
        workspace=workspace,
    )


def _victim(root: Path) -> Path:
    victim = root / "victim"
    victim.mkdir(exist_ok=True)
    (victim / ".env").write_text("SECRET=1")
    (victim / "sweep.json").write_text("{}")
    return victim


def _victim_problem(victim: Path) -> str:
    names = sorted(p.name for p in victim.iterdir())
    return "" if names == [".env", "sweep.json"] and (victim / "sweep.json").read_text() == "{}" else f"victim: {names}"


def sweep_ids(root: Path, count: int, seed: int = 0) -> Tally:
    """Sweep ids that try to leave ``sweeps/``: ``..``, absolute, nested, links out and in, NUL, Windows paths, long
    names; through ``SweepRecord.load`` and ``workbench sweep --resume``. The victim folder must stay untouched."""
    from workbench.sweeps import SweepRecord

    tally = Tally("sweep ids (traversal, links)")
    workspace = root / "ws"
    record = _sweep_record(workspace, DATA / "digits_cnn.onnx")
    sweeps = record.directory.parent
    victim = _victim(root)
    (victim / "sweep.json").write_text("{}")
    (sweeps / "sweep-linked-out").symlink_to(victim, target_is_directory=True)
    (sweeps / "sweep-linked-in").symlink_to(record.directory, target_is_directory=True)
    ids = [
        os.path.relpath(victim, sweeps),
        str(victim),
        f"{record.id}/../../../victim",
        "sweep-linked-out",
        "sweep-linked-in",
        "..",
        ".",
        "",
        "sweep-\x00x",
        "..\\..\\victim",
        "C:\\victim",
        "s" * 5000,
        f"{record.id}/",
        "~/victim",
    ]
    rng = random.Random(seed)
    for i in range(count):
        sweep_id = ids[i] if i < len(ids) else rng.choice(ids) + rng.choice(("", "/", "/.", "/sweep.json"))
        loaded: list = []
        problem = call(_compile_into, loaded, SweepRecord.load, sweep_id, workspace)
        problem = problem or (f"accepted as {loaded[0].directory}" if loaded else "")
        if not problem and i % 2 == 0:
            problem = cli(["sweep", "--resume", sweep_id], workspace)
        tally.add(f"id {sweep_id[:40]!r}", traceback=problem or _victim_problem(victim))
    return tally


def _damage_record(d: dict, rng: random.Random):
    point = dict(rng.choice(d["points"]))
    config = dict(point["config"])
    field_name = rng.choice(("iterations", "trials", "warmup_ms", "duration_s", "shapes", "precision", "seed"))
    config[field_name] = rng.choice((1e12, 10**30, -1, "3", None, [], {}, float("inf"), True, "x" * 10_000))
    choices = [
        lambda: {**d, "points": [{**point, "config": config}]},
        lambda: {**d, rng.choice(list(d)): rng.choice((None, 3, "x", [], {}, [[[]]]))},
        lambda: {**d, "points": [{**point, rng.choice(list(point)): rng.choice((None, 3.5, "x", [], {}, "../../x"))}]},
        lambda: {**d, "model": rng.choice((None, [], {"path": 3}, {**d["model"], "sha256": None}))},
        lambda: {
            **d,
            "request": {
                **d["request"],
                rng.choice(("backend", "trials", "base", "eval")): rng.choice((3, [], "x" * 10, {})),
            },
        },
        lambda: [d] * 3,
        lambda: {k: v for k, v in d.items() if k != rng.choice(list(d))},
    ]
    return rng.choice(choices)()


def tampered_records(root: Path, count: int, seed: int = 0) -> Tally:
    """Sweep records with wrong types, missing keys, huge numbers, invalid UTF-8, deep nesting, a pipe or a link to
    /dev/zero: one line naming the file on load and ``--resume``; ``sweep --list`` lists the good sweep."""
    from workbench.sweeps import SweepRecord, list_sweeps

    tally = Tally("tampered sweep records")
    workspace = root / "ws"
    missing_model = root / "gone.onnx"  # a record that still reads stops at its missing model: nothing runs
    shutil.copy(DATA / "digits_cnn.onnx", missing_model)
    good = _sweep_record(workspace, DATA / "digits_cnn.onnx")
    template = json.loads((_sweep_record(workspace, missing_model).directory / "sweep.json").read_text())
    missing_model.unlink()
    rng = random.Random(seed)
    raw = [b"\xff\xfe{", b"[" * 100_000, b"", b"{" + b" " * 10 + b"}", b'{"schema": 99}']
    for i in range(count):
        record = _sweep_record(workspace, DATA / "digits_cnn.onnx")
        path = record.directory / "sweep.json"
        d = {**template, "id": record.id}
        kind = i % 8
        if kind == 6:
            path.unlink()
            os.mkfifo(path) if i % 16 == 6 else path.symlink_to("/dev/zero")
        elif kind == 7:
            path.write_bytes(raw[i % len(raw)])
        else:
            path.write_text(json.dumps(_damage_record(d, rng)))
        problem = call(SweepRecord.load, record.id, workspace)
        notes: list = []
        listed = {r.id for r in list_sweeps(workspace, notes)}
        if good.id not in listed:
            problem = problem or "the good sweep is not listed"
        if not problem and i % 3 == 0:
            problem = cli(["sweep", "--resume", record.id], workspace)
        shutil.rmtree(record.directory)
        tally.add(f"record #{i} kind {kind}", traceback=problem)
    return tally


def _reset_peak_memory() -> None:
    """Start this process's peak-RSS count afresh (Linux: 5 to clear_refs), so what ran before does not count."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_memory_mib() -> int:
    """Peak RSS since the last reset (VmHWM), else the process's whole high-water mark."""
    try:
        return int(re.search(r"VmHWM:\s*(\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def bad_user_files(root: Path, count: int, seed: int = 0) -> Tally:
    """Recipes, imports and calibration files that are pipes, links to /dev/zero, folders, sparse 2 GiB files,
    non-UTF-8, deeply nested, missing or mistyped fields, 5 MB names, npz bombs: one short line or a clean skip,
    nothing hangs, and no read costs more than its bound (the process's peak memory is checked at the end)."""

    from workbench.interop.trtexec import import_trtexec
    from workbench.model.onnx_model import load_model
    from workbench.precision.calibration import load_calibration
    from workbench.precision.recipe import load_recipe, make_recipe

    tally = Tally("recipes, imports and calibration files")
    model = load_model(DATA / "digits_cnn.onnx")
    recipe = make_recipe(model, "int8", [model.proto.graph.node[0].name])
    rng = random.Random(seed)

    def special(path: Path, kind: str) -> Path:
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "zero":
            path.symlink_to("/dev/zero")
        elif kind == "folder":
            path.mkdir()
        elif kind == "sparse":
            with open(path, "wb") as f:
                f.write(b"[" + b" " * 8192)
                f.truncate(2 << 30)
        return path

    def damaged_recipe() -> bytes:
        choice = rng.randrange(8)
        if choice == 0:
            return b"\xff" + json.dumps(recipe).encode()
        if choice == 1:
            return b"[" * 100_000
        if choice == 2:
            return json.dumps({**recipe, "keep_nodes": ["n" * (5 << 20)]}).encode()
        key = rng.choice(list(recipe))
        if choice == 3:
            return json.dumps({k: v for k, v in recipe.items() if k != key}).encode()
        return json.dumps({**recipe, key: rng.choice((None, 3, "x", [], {}, [1], {"name": 3}))}).encode()

    kinds = ("fifo", "zero", "folder", "sparse", "damaged")
    _reset_peak_memory()
    for i in range(count):
        kind = kinds[i % len(kinds)]
        target = ("recipe", "import", "calibration")[(i // len(kinds)) % 3]
        folder = root / f"case-{i}"
        folder.mkdir()
        path = folder / (
            "recipe.json" if target == "recipe" else "model.profile.json" if target == "import" else "calib.npz"
        )
        if kind == "damaged":
            if target == "calibration":
                import numpy.lib.format as npy_format

                header = io.BytesIO()
                npy_format.write_array_header_1_0(
                    header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 22, 1 << 20)}
                )
                import zipfile

                with zipfile.ZipFile(path, "w") as archive:
                    archive.writestr("input.npy", header.getvalue())
            else:
                path.write_bytes(damaged_recipe())
        else:
            special(path, kind)
        if target == "recipe":
            problem = call(load_recipe, path)
            if not problem and i % 4 == 0:
                problem = cli(["profile", str(DATA / "digits_cnn.onnx"), "--recipe", str(path)], root / "ws")
        elif target == "import":
            shutil.copytree(IMPORT_SOURCE, folder / "run")
            shutil.move(str(path), str(folder / "run" / path.name)) if not path.is_symlink() else os.replace(
                path, folder / "run" / path.name
            )
            problem = call(import_trtexec, [folder / "run"]) or call(import_trtexec, [folder / "run" / path.name])
        else:
            problem = call(load_calibration, path, model)
        shutil.rmtree(folder, ignore_errors=True)
        tally.add(f"{target} {kind} #{i}", traceback=problem)
    peak_mib = _peak_memory_mib()
    if peak_mib > 3000:
        tally.failures.append(f"peak memory {peak_mib} MiB")
        tally.tracebacks += 1
        tally.clean = max(0, tally.clean - 1)
    return tally


def _in_range(name: str, value) -> bool:
    """Whether any sane bound admits ``value`` for the BuildConfig field ``name`` (finite, not negative, at most a
    billion; a whole number of at least 1 for counts; 0 to 5 for the optimization level)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if name in ("iterations", "trials", "optimization_level") and not float(value).is_integer():
        return False
    low = 1 if name in ("iterations", "trials") else 0
    high = 5 if name == "optimization_level" else 1e9
    return low <= value <= high


def out_of_range_options(root: Path, count: int, seed: int = 0) -> Tally:
    """Numbers (huge, infinite, NaN, negative, zero, text, 10**1000) for every numeric option, through the CLI and
    BuildConfig; 100,000-character and ambiguous ``--device`` names. Clean: one line of bounded length (never the
    whole value), and nothing runs with a value out of range."""
    from workbench.analysis.devices import device_for
    from workbench.config import BuildConfig

    tally = Tally("out-of-range numbers and long option values")
    rng = random.Random(seed)
    options = {
        "--iterations": "iterations",
        "--trials": "trials",
        "--duration": "duration_s",
        "--warmup": "warmup_ms",
        "--opt-level": "optimization_level",
    }
    values = ["1" + "0" * 12, "1e12", "inf", "-inf", "nan", "-1", "0", "1" * 1000, "1e400", "x", "1.5"]
    missing = str(root / "missing.onnx")  # a value that passes reaches the model, which is not there: one line

    def bounded(fn, *args):
        from workbench.errors import WorkbenchError

        try:
            fn(*args)
        except WorkbenchError as e:
            return "" if len(str(e)) < 2100 else f"{len(str(e))}-character line"
        except Exception as e:  # noqa: BLE001 - counted
            return f"{type(e).__name__}: {str(e)[:200]}"
        return ""

    for i in range(count):
        if i % 5 == 4:
            name = rng.choice(("A100", "H100", "NVIDIA A100", "A100 80GB", "x" * 100_000, "\x00" * 10, "A100 SXM 80GB"))
            problem = bounded(device_for, name)
            tally.add(f"device {name[:20]!r}", traceback=problem)
            continue
        option = rng.choice(list(options))
        value = values[i % len(values)] if i < len(values) * 2 else rng.choice(values)
        problem = cli(["profile", missing, option, value], root / "ws", usage_errors=True)
        if not problem:
            try:
                number = float(value)
                number = int(number) if number.is_integer() else number
            except (ValueError, OverflowError):
                number = value
            accepted: list = []
            problem = bounded(_compile_into, accepted, BuildConfig.from_dict, {options[option]: number})
            if accepted and not _in_range(options[option], number):
                problem = f"{options[option]}={value[:20]} accepted"
        tally.add(f"{option} {value[:20]}", traceback=problem)
    return tally


def profile_node_names(root: Path, count: int, seed: int = 0) -> Tally:
    """Node names with quotes, backslashes, line breaks, braces, the text ONNX Runtime writes around an event, and
    random Unicode, profiled on ONNX Runtime (its profiler writes them unescaped): the layer table names every node."""
    import onnx
    from onnx import TensorProto, helper

    import workbench as wb

    tally = Tally("node names in ONNX Runtime profiles")
    rng = random.Random(seed)
    pieces = ['"', "\\", "\n", "\t", "{", "}", '","args" : {', '"name" :"', "\u00e9", "\u2028", "\U0001f600", ",", "]"]
    config = wb.BuildConfig(iterations=2, warmup_ms=0, trials=1)
    for i in range(count):
        names = [
            "".join(rng.choice(pieces) + rng.choice("abc") for _ in range(rng.randint(1, 6))) + str(k) for k in range(3)
        ]
        graph = helper.make_graph(
            [
                helper.make_node("Relu", ["x"], ["a"], name=names[0]),
                helper.make_node("Neg", ["a"], ["b"], name=names[1]),
                helper.make_node("Sigmoid", ["b"], ["y"], name=names[2]),
            ],
            "names",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        )
        path = root / f"names-{i}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        outcome: list = []
        problem = call(_compile_into, outcome, wb.profile, path, backend="onnxruntime", config=config)
        if not problem:
            claimed = {n for nodes in outcome[0].layers["onnx_nodes"] for n in nodes}
            problem = "" if claimed == set(names) else f"names lost: {sorted(set(names) - claimed)!r}"[:300]
        tally.add(f"names #{i}", traceback=problem)
    return tally


def _chain(path: Path, nodes: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    body = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}"], name=f"relu{i}") for i in range(nodes)]
    graph = helper.make_graph(
        body,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info(f"t{nodes}", TensorProto.FLOAT, [1, 16])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _compile_into(outcome: list, fn, *args, **kwargs) -> None:
    outcome.append(fn(*args, **kwargs))


def _built_or_error(outcome: list, fn, *args, **kwargs) -> None:
    """``fn``'s result, or the error it raised, appended to ``outcome`` (for a thread)."""
    try:
        outcome.append(fn(*args, **kwargs))
    except Exception as e:  # noqa: BLE001 - the caller judges it
        outcome.append(e)


def native_crashes(root: Path, count: int, seed: int = 0) -> Tally:
    """The TensorRT-RTX build child killed by SIGSEGV, SIGABRT, SIGBUS or SIGKILL mid-build (how a crash in the
    native builder ends it), through the API and a thread: one line naming the compiler, the model and the signal,
    and this process goes on (the next build of the same model succeeds)."""
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        return Tally("native build crashes", note="not run: TensorRT-RTX is not installed")
    import workbench as wb

    tally = Tally("native build crashes (build child killed)")
    saved_cache = os.environ.get("WORKBENCH_CACHE")
    os.environ["WORKBENCH_CACHE"] = str(root / "cache")  # no engine cached elsewhere: every case builds
    try:
        return _native_crashes(tally, root, count, wb)
    finally:
        if saved_cache is None:
            os.environ.pop("WORKBENCH_CACHE", None)
        else:
            os.environ["WORKBENCH_CACHE"] = saved_cache


def _native_crashes(tally: Tally, root: Path, count: int, wb) -> Tally:
    import threading

    model = _chain(root / "chain.onnx", 200)
    signals = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGKILL)
    me = os.getpid()
    for i in range(count):
        sig = signals[i % len(signals)]
        killed: list = []
        killer = threading.Thread(
            target=signal_child, args=(me, "tensorrt.isolated import _child", sig, killed), daemon=True
        )
        killer.start()
        outcome: list = []
        args = (outcome, wb.compile, model)
        kwargs = {"backend": "tensorrt-rtx", "arch": "sm89"}
        builder = threading.Thread(target=_built_or_error, args=args, kwargs=kwargs) if i % 2 else None
        if builder:
            builder.start()
            builder.join(300)
        else:
            _built_or_error(*args, **kwargs)
        killer.join()
        text = str(outcome[0]) if outcome else "no outcome"
        ok = killed and "TensorRT-RTX crashed building" in text and sig.name in text and "\n" not in text
        tally.add(f"{sig.name} {'thread' if builder else 'api'}", traceback="" if ok else text[:300])
    done = call(wb.compile, model, backend="tensorrt-rtx", arch="sm89")
    if done:
        tally.failures.append(f"the build after the crashes: {done}")
        tally.tracebacks += 1
        tally.clean = max(0, tally.clean - 1)
    return tally


def killed_sweeps(root: Path, count: int, seed: int = 0) -> Tally:
    """``workbench sweep`` (2 local workers, mid-point) killed with SIGKILL, SIGTERM or SIGHUP: no worker and no
    resource tracker may outlive it."""
    tally = Tally("killed sweeps (orphan processes)")
    signals = (signal.SIGKILL, signal.SIGTERM, signal.SIGHUP)
    for i in range(count):
        sig = signals[i % len(signals)]
        env = {**os.environ, "WORKBENCH_WORKSPACE": str(root / f"ws{i}"), "WORKBENCH_CACHE": str(root / "cache")}
        argv = [sys.executable, "-m", "workbench.cli", "sweep", str(DATA / "digits_cnn.onnx"), "--batch", "1,2,3,4"]
        argv += [
            "--backend",
            "onnxruntime",
            "--iterations",
            "3",
            "--trials",
            "1",
            "--warmup",
            "60000",
            "--workers",
            "2",
        ]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        below: set = set()
        while time.monotonic() < deadline and proc.poll() is None and len(below) < 3:
            below = descendants(proc.pid)
            time.sleep(0.1)
        time.sleep(0.5)
        below = descendants(proc.pid)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and [p for p in below if alive(p)]:
            time.sleep(0.1)
        left = [p for p in below if alive(p)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        problem = "" if len(below) >= 3 and not left else f"{len(left)} of {len(below)} processes left"
        tally.add(f"{sig.name} #{i}", traceback=problem)
    return tally


def _rebuild_or_read(args) -> int:
    workspace, role, repeats, start_at = args
    from workbench.results.store import Store

    time.sleep(max(0.0, start_at - time.time()))
    failed = 0
    for _ in range(repeats):
        try:
            if role == "rebuild":
                Store.rebuild(workspace)
            elif len(Store(workspace).list()) != 4:
                failed += 1
        except Exception:  # noqa: BLE001 - counted
            failed += 1
    return failed


def concurrent_rebuilds(root: Path, count: int, seed: int = 0, *, workers: int = 6) -> Tally:
    """Half the processes run ``reindex --rebuild``, half list the history, at the same instant: nobody fails, no
    saved copy of an old index overwrites another, and the index lists every run after."""
    from workbench.results.store import DB_NAME, Store

    tally = Tally(f"concurrent rebuilds ({workers} processes)")
    workspace = root / "ws"
    store = Store(workspace)
    for i in range(4):
        store.add(_store_run("m", i), finish=_with_report)
    repeats = max(1, count // workers)
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    roles = ["rebuild" if w % 2 == 0 else "read" for w in range(workers)]
    with ctx.Pool(workers) as pool:
        failures = pool.map(_rebuild_or_read, [(str(workspace), r, repeats, start_at) for r in roles])
    for w, failed in enumerate(failures):
        for r in range(repeats):
            tally.add(f"{roles[w]} {w} #{r}", traceback="failed" if r < failed else "")
    kept = [p for p in workspace.iterdir() if p.name.startswith((f"{DB_NAME}.damaged-", f"{DB_NAME}.before-rebuild-"))]
    rebuilds = repeats * roles.count("rebuild")
    if len(kept) != rebuilds or len(Store(workspace).list()) != 4:
        tally.failures.append(f"{len(kept)} saved copies for {rebuilds} rebuilds")
        tally.half_written += 1
    half, stray = workspace_problems(workspace)
    tally.half_written += half
    tally.stray_temps += stray
    return tally


CLASSES = (
    fuzzed_onnx,
    external_data_guards,
    huge_inputs,
    crafted_imports,
    traversal,
    corrupted_state,
    kills,
    disk_full,
    concurrent_writers,
    sweep_ids,
    tampered_records,
    bad_user_files,
    out_of_range_options,
    profile_node_names,
    native_crashes,
    killed_sweeps,
    concurrent_rebuilds,
)
