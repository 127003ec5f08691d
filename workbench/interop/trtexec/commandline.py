"""The trtexec command line equivalent to a BuildConfig or a Run (TensorRT 10 and 11 syntax)."""

from __future__ import annotations

import shlex
from pathlib import Path

from ...config import GRAPH_PRECISIONS, BuildConfig, Precision, format_shape
from ...errors import WorkbenchError
from ...results.run import Run

#: Flags trtexec 11 rejects ("Unknown option"): the weakly-typed precision flags and INT8 calibration (removed in
#: 11.0, strongly typed networks are the only kind), and flags removed earlier (10.0: --workspace, --explicitBatch,
#: --maxBatch, --buildOnly, --nvtxMode...). Checked against samples/common/sampleOptions.cpp of TensorRT 8.6, 10.0,
#: 10.16 and 11.1.
REMOVED_IN_11 = tuple(
    (
        "--fp16 --bf16 --int8 --fp8 --int4 --best --calib --calibProfile --minShapesCalib --optShapesCalib "
        "--maxShapesCalib --precisionConstraints --layerPrecisions --layerOutputTypes --restricted --weightless "
        "--workspace --explicitBatch --maxBatch --batch --buildOnly --nvtxMode --explicitPrecision --heuristic "
        "--minTiming --deploy --model --output --uff --uffInput --uffNHWC"
    ).split()
)

#: Versions :func:`command` writes for.
COMMAND_VERSIONS = (10, 11)


def command(
    config: BuildConfig, onnx_path, *, engine_path=None, version: int = 11, exports: bool = True, timing_cache_path=None
) -> str:
    """The trtexec command that builds and profiles like ``config`` (TensorRT 11 syntax; ``version=10`` for 10.x).

    Precision lives in the ONNX graph (ModelOpt Q/DQ or AutoCast casts): 11.x networks are always strongly typed;
    10.x needs ``--stronglyTyped`` for such graphs. ``fp32`` adds ``--noTF32``. With ``exports`` the command also
    writes layer information, the per-layer profile and per-iteration times next to the engine, ready for
    ``workbench import``. The result never holds a flag of :data:`REMOVED_IN_11`.
    """
    if version not in COMMAND_VERSIONS:
        raise WorkbenchError(f"Cannot write a trtexec command for TensorRT {version}: choose 10 or 11.")
    onnx = Path(onnx_path)
    stem = onnx.stem.removesuffix(f".{config.precision}")  # model.fp16.onnx -> model.fp16.plan, not .fp16.fp16
    engine = Path(engine_path) if engine_path else onnx.with_name(f"{stem}.{config.precision}.plan")
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}"]
    if version == 10 and config.precision in GRAPH_PRECISIONS:
        args.append("--stronglyTyped")
    if config.precision == Precision.FP32:
        args.append("--noTF32")
    args += _build_flags(config, timing_cache_path)
    args += _shape_flags(config)
    args += _timing_flags(config, version)
    if exports:
        base = engine.with_suffix("")
        args += [
            "--profilingVerbosity=detailed",
            f"--exportLayerInfo={base}.layers.json",
            f"--exportProfile={base}.profile.json",
            f"--exportTimes={base}.times.json",
            "--dumpProfile",
        ]
        if version == 10:
            args.append("--separateProfileRun")  # always on (and deprecated) in 11
    return " ".join(shlex.quote(a) for a in args)


def _build_flags(config: BuildConfig, timing_cache_path) -> list[str]:
    args = []
    if config.workspace_bytes:
        args.append(f"--memPoolSize=workspace:{_mib_text(config.workspace_bytes)}")
    if config.optimization_level != 3:
        args.append(f"--builderOptimizationLevel={config.optimization_level}")
    if config.sparsity:
        args.append("--sparsity=enable")
    if config.timing_cache:
        args.append(f"--timingCacheFile={timing_cache_path or 'timing.cache'}")
    else:
        args.append("--noBuilderCache")
    return args


def _mib_text(n: int) -> str:
    """trtexec reads pool sizes in MiB unless suffixed; keep it exact with a K suffix when needed."""
    return f"{n // 2**20}M" if n % 2**20 == 0 else f"{n / 1024:g}K"


def _shape_flags(config: BuildConfig) -> list[str]:
    shapes = dict(config.shapes)
    args = []
    if config.profiles:
        ranged = {r.name for r in config.profiles}
        fixed = [(n, s) for n, s in config.shapes if n not in ranged]  # static inputs: min = opt = max
        for flag, attr in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
            spec = [(r.name, getattr(r, attr)) for r in config.profiles] + fixed
            args.append(f"{flag}={_spec(spec)}")
        for r in config.profiles:
            shapes.setdefault(r.name, r.opt)
    if shapes:
        args.append(f"--shapes={_spec(shapes.items())}")
    return args


def _spec(items) -> str:
    # trtexec splits specs at ',' and ':'; names holding those go in single quotes
    return ",".join(f"{_quoted(n)}:{format_shape(s)}" for n, s in items)


def _quoted(name: str) -> str:
    return f"'{name}'" if any(c in name for c in ",:") else name


def _timing_flags(config: BuildConfig, version: int) -> list[str]:
    least, _, seconds = config.timed_runs()  # no count given: trtexec's own "at least N runs for S seconds"
    args = [f"--warmUp={config.warmup_ms:g}", f"--iterations={least}", f"--duration={seconds:g}"]
    if version == 11:
        if not config.cuda_graph:
            args.append("--noCudaGraph")  # 11 captures a CUDA graph unless told not to
    else:
        if config.cuda_graph:
            args.append("--useCudaGraph")
        args.append("--noDataTransfers")  # time the engine alone, as 11 does by default
    return args


def command_for_run(run: Run, *, version: int = 11, in_run_folder: bool = False) -> str:
    """The trtexec command equivalent to a run (its config, ONNX file and engine when known); for an imported run
    whose log recorded its command line (``&&&& RUNNING TensorRT.trtexec ... # trtexec ...``), that command.

    The files it names exist: the ONNX precision variant kept in a saved run's folder (else the variant where it
    was made, or the user's model). The engine and the exports go to the run's folder (a run not saved yet: beside
    its ONNX file), never beside the user's model. ``in_run_folder`` names the run's own files by their names in its
    folder, for a command run there (the report, written in the folder before the folder gets its final name).

    An imported run whose engine got its precision from builder flags (``--fp16``, ``--int8``: weak typing) was
    built from an FP32 graph: for 10.x the command repeats that flag; 11.x has no such flag, so asking for an 11.x
    command raises with the way forward (write the precision into the graph first).
    """
    recorded = run.extra.get("trtexec_command") if run.source == "import" else None
    if recorded and not (version == 11 and weakly_typed(run)):
        return recorded if recorded.startswith("trtexec") else f"trtexec {recorded}"  # what was run, as it was run
    onnx = onnx_for_run(run, in_run_folder=in_run_folder)
    stem = Path(onnx).stem.removesuffix(f".{run.config.precision}")
    engine = _run_file(run, "engine", in_run_folder) or _in_run_folder(
        run, f"{stem}.{run.config.precision}.plan", in_run_folder
    )
    if not weakly_typed(run):
        return command(run.config, onnx, engine_path=engine, version=version)
    flag = f"--{run.config.precision}"
    if version == 11:
        raise WorkbenchError(
            f"This engine was built weakly typed ({run.precision_source}): TensorRT 11 has no {flag}. "
            f"Write the precision into the graph first (workbench profile MODEL --precision {run.config.precision}) "
            "and export that run, or ask for the TensorRT 10 command (--version 10)."
        )
    engine = engine or Path(onnx).with_name(f"{Path(onnx).stem}.{run.config.precision}.plan")
    fp32 = command(run.config.replace(precision="fp32"), onnx, engine_path=engine, version=10)
    return fp32.replace(" --noTF32", f" {flag}", 1)


def onnx_for_run(run: Run, *, in_run_folder: bool = False):
    """The ONNX file a run was built from: the precision variant kept with it (by its name in the run's folder with
    ``in_run_folder``), else the user's model; for an import that only knows its engine, that engine's ``.onnx``."""
    onnx = _run_file(run, "onnx", in_run_folder) or run.model.get("path") or f"{run.model.get('name') or 'model'}.onnx"
    if str(onnx).endswith((".plan", ".engine", ".trt")):  # an import that only knows the loaded engine
        onnx = Path(onnx).with_suffix(".onnx")
    return onnx


def _run_file(run: Run, key: str, in_run_folder: bool):
    """The run's artifact ``key``: its name in the run folder (``in_run_folder``), else its path; None without one."""
    if in_run_folder and run.directory is not None and key in run.artifacts:
        return run.artifacts[key]
    return run.artifact(key)


def _in_run_folder(run: Run, name: str, in_run_folder: bool):
    """Where a file the command writes goes: the run's folder (by name when the command runs there); None for a run
    not saved yet (then :func:`command` puts it beside the ONNX file)."""
    if run.directory is None:
        return None
    return name if in_run_folder else run.directory / name


def weakly_typed(run: Run) -> bool:
    """An imported engine whose reduced precision came from trtexec's builder flags, not from its ONNX graph
    (an engine with Q/DQ layers was explicitly quantized: its INT8 is in the graph, whatever flags were passed)."""
    source = run.precision_source
    quantized_graph = any("QuantizeLinear" in node for nodes in run.layers["onnx_nodes"] for node in nodes)
    return (
        run.source == "import"
        and run.config.precision in GRAPH_PRECISIONS
        and not quantized_graph
        and source.startswith(("trtexec flag", "build options"))
    )


def trtexec_command(what: BuildConfig | Run, onnx_path=None, **options) -> str:
    """The trtexec command for a BuildConfig (``onnx_path``, default ``model.onnx``; options of :func:`command`) or
    for a Run (its own ONNX file and engine; ``version=``; see :func:`command_for_run`)."""
    if isinstance(what, Run):
        if onnx_path is not None:
            raise WorkbenchError("A run's trtexec command uses the run's own ONNX file: drop onnx_path.")
        return command_for_run(what, **options)
    return command(what, onnx_path or "model.onnx", **options)
