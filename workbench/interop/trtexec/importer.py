"""Importing trtexec outputs as a Run: the files of one engine (see :mod:`workbench.interop.trtexec.files`) joined into
one layer table, latency statistics, a BuildConfig as far as the files tell, memory and environment."""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from pathlib import Path

import pandas as pd

from ...config import BuildConfig, ShapeRange, parse_size
from ...errors import WorkbenchError
from ...model.inputs import profiled_batch
from ...results.layerinfo import LayerInfo, guess_precision, parse_layer_info, profile_of
from ...results.layers import layer_table
from ...results.run import LatencyStats, Memory, Run, TensorInfo
from ...results.profile import LayerProfile, join_profile, layer_onnx_nodes, quoted_names
from .files import TrtexecLog, first_number, log_from_metadata, parse_log, parse_profile_json, parse_times, recognize

# trtexec's default warm-up (ms); older trtexec (< 8.5) wrote warm-up iterations into --exportTimes files.
DEFAULT_WARMUP_MS = 200.0
#: What reading a damaged or unexpected file can raise.
_DAMAGED = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    OverflowError,
    ZeroDivisionError,
    RecursionError,
)


def import_trtexec(paths, *, plan=None, name: str | None = None) -> Run:
    """Turn trtexec outputs (files or folders, recognised by content) into a Run (backend ``tensorrt``, source
    ``import``). ``plan`` is an optional engine file, kept as the run's ``engine`` artifact (Triton export)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if plan is not None and not Path(plan).is_file():
        raise WorkbenchError(f"Engine plan '{plan}' does not exist: pass the file trtexec --saveEngine wrote.")
    notes: list[str] = []
    files = _collect(paths, notes)
    found: dict[str, tuple[Path, object]] = {}
    unrecognised = []
    for path in files:
        kind, value = recognize(path)
        if kind is None:
            unrecognised.append(path)
        elif kind in found:
            raise WorkbenchError(
                f"Two {kind.replace('_', ' ')} files: '{found[kind][0]}' and '{path}'. Import one "
                "engine's files at a time (one folder or one set of files per engine)."
            )
        else:
            found[kind] = (path, value)
    if unrecognised:
        hint = " (an engine plan goes in with plan= / --plan)" if any(_binary(p) for p in unrecognised) else ""
        notes.append(f"Not recognised as trtexec output (left out){hint}: {', '.join(p.name for p in unrecognised)}.")
    if not set(found) & {"layer_info", "profile", "times", "log", "profile_metadata"}:
        raise WorkbenchError(
            f"Nothing to import in {', '.join(str(p) for p in paths)}: no layer information, "
            "profile, times or trtexec log. Pass files written by trtexec --exportLayerInfo, "
            "--exportProfile, --exportTimes, or its console log."
        )
    try:
        return _build_run(found, notes, plan=plan, name=name)
    except WorkbenchError:
        raise
    except _DAMAGED as e:  # a field of an unexpected type or value in a file someone sent
        kinds = ", ".join(f"{kind.replace('_', ' ')} '{path.name}'" for kind, (path, _) in found.items())
        raise WorkbenchError(
            f"The trtexec files ({kinds}) hold a value of an unexpected type or range "
            f"({type(e).__name__}: {str(e)[:120]}): pass the files as trtexec wrote them, or leave "
            "the damaged one out."
        ) from None


def _from_layer_dump(dump, profile: LayerProfile | None) -> tuple[LayerInfo | None, list[str]]:
    """Layer information from a log's text layer dump; names only give no LayerInfo (the rows are made from the
    names, or from the profile when there is one) and a note saying what is missing."""
    notes = list(dump.notes)
    if dump.detailed:
        value = dump.as_layer_info()
        info = parse_layer_info(value, profile=_profile_index(profile, value))
        notes.append(
            f"Layer information ({len(info.layers)} layers) read from the log's text layer dump (--dumpLayerInfo)."
        )
        return info, notes + list(info.notes)
    if dump.layers:
        notes.append(
            f"The log's layer dump names {len(dump.layers)} layers but not their types, tensors or "
            "tactics (built without --profilingVerbosity=detailed): layer names only."
        )
    return None, notes


def _binary(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return b"\x00" in f.read(4096)
    except OSError:
        return False


def _collect(paths: list, notes: list[str]) -> list[Path]:
    from ...paths import inside

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            # hidden folders (.venv, .git) and caches hold no trtexec outputs, only files that could be mistaken
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and not any(
                    part.startswith(".") or part in ("__pycache__", "node_modules") for part in f.relative_to(p).parts
                )
            )
            linked = []
            for f in found:  # a name in a folder someone sent never reads a file outside it (a symbolic or hard link)
                try:
                    inside(p, str(f.relative_to(p)), "file")
                    files.append(f)
                except WorkbenchError:
                    linked.append(f.name)
            if linked:
                notes.append(f"Left out (links that may point outside '{p.name}'): {quoted_names(linked)}.")
        elif p.is_file():
            files.append(p)
        else:
            raise WorkbenchError(f"'{p}' does not exist: pass trtexec output files or folders that hold them.")
    return files


def _build_run(found: dict, notes: list[str], *, plan, name) -> Run:
    log = _merged_log(found, notes)
    profile = _pick_profile(found, log, notes)
    info = None
    if "layer_info" in found:
        info = parse_layer_info(found["layer_info"][1], profile=_profile_index(profile, found["layer_info"][1]))
        notes += info.notes
    elif log.layer_dump is not None:  # the log's --dumpLayerInfo text stands in for --exportLayerInfo
        info, dump_notes = _from_layer_dump(log.layer_dump, profile)
        notes += dump_notes
    layers, join_notes = _layers(info, profile)
    notes += join_notes
    if info is None and profile is None and log.layer_dump is not None and log.layer_dump.layers:
        layers = layer_table([{"name": n, "onnx_nodes": layer_onnx_nodes(n)} for n in log.layer_dump.layers])
    if not len(layers):
        notes.append(
            "No layers in these files: pass trtexec --exportLayerInfo/--exportProfile output, or a log "
            "of a run with --dumpLayerInfo or --dumpProfile."
        )
    latency, latency_ms, times_note = _latency(found, log)
    notes += times_note
    precision, precision_source = _precision(log, info)
    config, known = _config(log, precision, info)
    model_path = _model_path(log)
    inputs, outputs = _io(info, log)
    batch, batch_note = _batch(inputs, config)
    notes += [batch_note] if batch_note else []
    if latency is not None and batch != latency.batch:
        latency = dataclasses.replace(latency, batch=batch)
    if plan is None and log.sizes.get("engine_bytes") is not None:
        notes.append(
            "Plan size from the log's engine size line (trtexec rounds it to MiB); pass --plan for the exact size."
        )
    artifacts = {kind: str(path.resolve()) for kind, (path, _) in found.items()}
    if plan is not None:
        artifacts["engine"] = str(Path(plan).resolve())
    return Run(
        backend="tensorrt",
        source="import",
        name=name or "",
        layers=layers,
        config=config,
        latency=latency,
        latency_ms=latency_ms,
        memory=_memory(layers, log, plan),
        model={"name": _model_name(model_path, found), "path": model_path},
        variant={"precision": precision},
        environment=_environment(found, log),
        inputs=inputs,
        outputs=outputs,
        artifacts=artifacts,
        notes=tuple(notes),
        extra={**_extra(found, log, info, profile), "config_from_files": known},
        precision_source=precision_source,
        build_seconds=log.sizes.get("build_seconds"),  # "Engine built in 12.5 sec." of a build log
    )


def _batch(inputs: tuple[TensorInfo, ...], config: BuildConfig) -> tuple[int, str]:
    """Samples per inference (trtexec's qps counts inferences): the first dimension the inputs share in the shapes
    trtexec ran (``--shapes``, else the engine's; layer information may be exported at another shape than the
    inference ran at, so its dims do not say which are dynamic); see ``profiled_batch``."""
    ran = [dataclasses.replace(t, shape=tuple(config.shape_map.get(t.name) or t.shape)) for t in inputs]
    return profiled_batch(ran, {t.name: t.shape for t in ran})


def _merged_log(found: dict, notes: list[str]) -> TrtexecLog:
    """The log when there is one, else TREx metadata; the log wins where both say something."""
    meta = None
    if "build_metadata" in found or "profile_metadata" in found:
        meta = log_from_metadata(
            found.get("build_metadata", (None, None))[1], found.get("profile_metadata", (None, None))[1]
        )
    if "log" not in found:
        return meta or TrtexecLog()
    log = parse_log(found["log"][1])
    if meta is None:
        return log
    sections = {**meta.sections, **{k: {**meta.sections.get(k, {}), **v} for k, v in log.sections.items()}}
    notes.append("Both a trtexec log and TREx metadata were given; where both have a value the log's is used.")
    return dataclasses.replace(
        log,
        sections=sections,
        stats=log.stats or meta.stats,
        throughput_qps=log.throughput_qps or meta.throughput_qps,
        host_walltime_s=log.host_walltime_s or meta.host_walltime_s,
        gpu_compute_total_s=log.gpu_compute_total_s or meta.gpu_compute_total_s,
        queries=log.queries or meta.queries,
    )


def _pick_profile(found: dict, log: TrtexecLog, notes: list[str]) -> LayerProfile | None:
    if "profile" in found:
        if log.profile is not None:
            notes.append(
                "Per-layer times come from the profile JSON; the log's === Profile === table (rounded) was not used."
            )
        return parse_profile_json(found["profile"][1])
    return log.profile


def _profile_index(profile: LayerProfile | None, layer_info) -> int:
    """The optimization profile a per-layer profile timed: names of profile k > 0 end in `` [profile k]``."""
    available = {
        profile_of(str(layer.get("Name", ""))) for layer in layer_info.get("Layers", []) if isinstance(layer, dict)
    }
    wanted = profile_of(profile.table["name"].iloc[0]) if profile is not None and len(profile.table) else 0
    return wanted if wanted in available or not available else min(available)


def _layers(info: LayerInfo | None, profile: LayerProfile | None) -> tuple[pd.DataFrame, list[str]]:
    if profile is None:
        return (info.layers if info else layer_table([])), []
    return join_profile(info.layers if info else None, profile)


def _warmup_ms(log: TrtexecLog) -> tuple[float, bool]:
    """The run's warm-up in ms from ``Duration: 3s (+ 200ms warm up)``, or trtexec's default (known=False)."""
    duration = log.sections.get("Inference Options", {}).get("Duration", "")
    m = re.search(r"\(\+\s*([\d.]+)\s*ms warm ?up\)", duration)
    return (float(m.group(1)), True) if m else (DEFAULT_WARMUP_MS, False)


def _latency(found: dict, log: TrtexecLog) -> tuple[LatencyStats | None, tuple, list[str]]:
    if "times" in found:
        warmup, known = _warmup_ms(log)
        times = parse_times(found["times"][1], warmup)
        notes = []
        if times.warmup_dropped:
            notes.append(
                f"Left out {times.warmup_dropped} warm-up iterations of the times file (compute started "
                f"before {warmup:g} ms{'' if known else ', trtexec default warm-up'}), as trtexec's "
                "summary does."
            )
        stats = LatencyStats.from_times(times.latency_ms, wall_s=times.wall_s or None)
        return stats, times.latency_ms, notes
    lat = log.stats.get("Latency")
    if not lat:
        return None, (), []
    nan = float("nan")
    stats = LatencyStats(
        mean_ms=lat.get("mean", nan),
        p50_ms=lat.get("median", nan),
        p90_ms=lat.get("p90", nan),
        p99_ms=lat.get("p99", nan),
        min_ms=lat.get("min", nan),
        max_ms=lat.get("max", nan),
        std_ms=nan,
        throughput_qps=log.throughput_qps if log.throughput_qps else (1000.0 / lat["mean"] if lat.get("mean") else nan),
        samples=int(log.queries or round((log.throughput_qps or 0) * (log.host_walltime_s or 0))),
    )
    note = (
        "Latency statistics come from trtexec's performance summary (no per-iteration times file): no standard "
        "deviation or histogram."
    )
    return stats, (), [note]


#: trtexec's precision flags, the most reduced first: the precision a flag gives.
_PRECISION_FLAGS = {
    "--best": "int8",
    "--fp8": "fp8",
    "--int8": "int8",
    "--fp16": "fp16",
    "--bf16": "bf16",
    "--noTF32": "fp32",
}


def _precision(log: TrtexecLog, info: LayerInfo | None) -> tuple[str, str]:
    """(precision, where it came from): command-line flags, then the build options, then the layers' types."""
    args = _split(log.command)
    for flag, precision in _PRECISION_FLAGS.items():
        if flag in args:
            return precision, f"trtexec flag {flag}"
    text = log.sections.get("Build Options", {}).get("Precision", "")
    if text and "strongly" not in text.lower():
        for token, precision in (("FP8", "fp8"), ("INT8", "int8"), ("FP16", "fp16"), ("BF16", "bf16")):
            if token in text.upper():
                return precision, f"build options Precision: {text}"
        return "fp32", f"build options Precision: {text}"
    if info is not None and len(info.layers):
        return guess_precision(info.layers), "the layers' output types"
    return "fp32", "unknown (assumed fp32)"


def _config(log: TrtexecLog, precision: str, info: LayerInfo | None = None) -> tuple[BuildConfig, list[str]]:
    """The BuildConfig as far as the files tell, and the names of the fields they told (the rest are defaults)."""
    inf = log.sections.get("Inference Options", {})
    build = log.sections.get("Build Options", {})
    args = _flags(log.command)
    kwargs: dict = {"precision": precision}
    shapes = args.get("--shapes") or inf.get("Input inference shape") or inf.get("Input inference shapes")
    if shapes and shapes != "model":
        kwargs["shapes"] = _shape_spec(shapes)
    ranges = [dict(_shape_spec(args[k])) for k in ("--minShapes", "--optShapes", "--maxShapes") if k in args]
    if len(ranges) == 3 and ranges[0].keys() == ranges[1].keys() == ranges[2].keys():
        # an input with min = opt = max is static: its shape stays in ``shapes``, not in a range
        kwargs["profiles"] = tuple(
            ShapeRange(n, mn, ranges[1][n], ranges[2][n])
            for n, mn in ranges[0].items()
            if not mn == ranges[1][n] == ranges[2][n]
        )
    elif info is not None:  # 11.x layer information records each input's profile range
        kwargs["profiles"] = tuple(
            ShapeRange(t.name, t.min_shape, t.opt_shape, t.max_shape)
            for t in info.io_tensors
            if t.min_shape and t.opt_shape and t.max_shape and t.min_shape != t.max_shape
        )
    duration = re.match(r"\s*([\d.]+)\s*s", inf.get("Duration", ""))
    warmup, known = _warmup_ms(log)
    if duration:
        kwargs["duration_s"] = float(duration.group(1))
    if known:
        kwargs["warmup_ms"] = warmup
    iterations = first_number(inf.get("Iterations"))
    if iterations:
        kwargs["iterations"] = max(1, int(iterations))
    if "CUDA Graph" in inf:
        kwargs["cuda_graph"] = inf["CUDA Graph"].lower().startswith("enabled")
    elif log.cuda_graph is not None:
        kwargs["cuda_graph"] = log.cuda_graph
    level = first_number(build.get("BuilderOptimizationLevel") or args.get("--builderOptimizationLevel"))
    if level is not None and math.isfinite(level):
        kwargs["optimization_level"] = int(level)
    if build.get("Sparsity", "").lower().startswith("enabled") or args.get("--sparsity") in ("enable", "force"):
        kwargs["sparsity"] = True
    workspace = re.search(r"workspace:\s*(\d+(?:\.\d+)?\s*MiB)", build.get("Memory Pools", ""))
    flag = re.search(r"workspace:(\d+(?:\.\d+)?[KMG]?)", args.get("--memPoolSize", ""))
    if workspace:
        kwargs["workspace_bytes"] = parse_size(workspace.group(1))
    elif flag:
        kwargs["workspace_bytes"] = parse_size(flag.group(1), unit="M")  # trtexec reads MiB unless suffixed
    try:
        return BuildConfig(**kwargs), sorted(kwargs)
    except WorkbenchError:
        return BuildConfig(precision=precision), ["precision"]  # odd values in a log must not stop an import


def _flags(command: str) -> dict[str, str]:
    return {key: value for key, _, value in (arg.partition("=") for arg in _split(command) if arg.startswith("--"))}


def _split(command: str) -> list[str]:
    """A logged command line as arguments; one with unbalanced quotes is split at spaces."""
    try:
        return shlex.split(command) if command else []
    except ValueError:
        return command.split()


def _shape_spec(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``x:4x1x28x28`` (command line) or ``input.1=32x3x224x224`` (log) → ((name, shape), ...)."""
    result = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, dims = item.rpartition(":") if ":" in item else item.rpartition("=")
        try:
            result.append((name.strip().strip("'"), tuple(int(d) for d in dims.split("x") if d)))
        except ValueError:
            continue
    return tuple(result)


def _model_path(log: TrtexecLog) -> str:
    args = _flags(log.command)
    return args.get("--onnx") or log.sections.get("Model Options", {}).get("Model") or args.get("--loadEngine") or ""


_NAME_END = re.compile(
    r"\.(onnx|engine|plan|trt|layerinfo|layers|graph|profile|timing|times|metadata|json|log|txt)"
    r"\b.*$",
    re.IGNORECASE,
)


def _model_name(model_path: str, found: dict) -> str:
    """``resnet.onnx`` → resnet; without a model path, the first file's name up to its trtexec suffixes."""
    name = Path(model_path).name if model_path else next(iter(found.values()))[0].name
    return _NAME_END.sub("", name) or "model"


def _io(info: LayerInfo | None, log: TrtexecLog) -> tuple[tuple, tuple]:
    if info is not None and info.io_tensors:
        return info.inputs, info.outputs
    ins = tuple(t for t, m in zip(log.bindings, log.binding_modes) if m == "input")
    outs = tuple(t for t, m in zip(log.bindings, log.binding_modes) if m == "output")
    return ins, outs


def _memory(layers: pd.DataFrame, log: TrtexecLog, plan) -> Memory:
    """Memory from what the log states (``Total Weights Memory``, the engine size), else from the layer table.

    The log's weight total wins: TensorRT 10+ layer information lists the weights of classic layers only (a Myelin
    region's constants are not in it), so the layer table's sum can be a small part of the engine's weights."""
    has_info = len(layers) and (layers["activation_bytes"].sum() or layers["weight_bytes"].sum())
    sizes = log.sizes
    weights = sizes.get("weights_bytes")
    return Memory(
        weights_bytes=weights if weights is not None else int(layers["weight_bytes"].sum()) if has_info else None,
        activations_bytes=int(layers["activation_bytes"].sum()) if has_info else None,
        engine_device_bytes=log.device_memory_bytes
        if log.device_memory_bytes is not None
        else sizes.get("activation_bytes"),
        plan_bytes=Path(plan).stat().st_size if plan else sizes.get("engine_bytes"),
    )


def _environment(found: dict, log: TrtexecLog) -> dict:
    dev = log.sections.get("Device Information", {})
    gpu = {
        "name": dev.get("Selected Device"),
        "compute_capability": dev.get("Compute Capability"),
        "memory_bytes": _mib(dev.get("Device Global Memory")),
    }
    cuda = None
    if "device_metadata" in found:
        d = found["device_metadata"][1][0]
        gpu = {
            "name": d.get("Name") or gpu["name"],
            "compute_capability": ".".join(map(str, d.get("ComputeCapability", []))) or gpu["compute_capability"],
            "memory_bytes": d.get("TotalMemory") or gpu["memory_bytes"],
        }
        cuda = ".".join(map(str, d.get("CUDA_VERSION", []))) or None
    if gpu["compute_capability"] is not None:
        gpu["compute_capability"] = str(gpu["compute_capability"])
    return {
        "source": "trtexec import",
        "gpu": gpu["name"],
        "gpus": [{"index": 0, **gpu}] if gpu["name"] else [],
        "versions": {"tensorrt": log.version or None, "cuda": cuda},
    }


def _mib(text) -> int | None:
    size = re.search(r"\d+(?:\.\d+)?\s*MiB", str(text))
    return parse_size(size.group()) if size else None


_OPTION_SECTIONS = (
    "Model Options",
    "Build Options",
    "System Options",
    "Inference Options",
    "Reporting Options",
    "Device Information",
)


def _extra(found: dict, log: TrtexecLog, info: LayerInfo | None, profile: LayerProfile | None) -> dict:
    extra: dict = {"import": {kind: path.name for kind, (path, _) in found.items()}}
    if log.stats or log.throughput_qps:
        extra["trtexec_summary"] = {
            "throughput_qps": log.throughput_qps,
            "host_walltime_s": log.host_walltime_s,
            "gpu_compute_total_s": log.gpu_compute_total_s,
            "queries": log.queries,
            **log.stats,
        }
    if log.command:
        extra["trtexec_command"] = log.command
    options = {k: v for k, v in log.sections.items() if k in _OPTION_SECTIONS}
    if options:
        extra["trtexec_options"] = options
    if info is not None:
        extra["layer_info"] = {
            "schema": info.schema,
            "profiles": info.profiles,
            "profile": info.profile,
            "engine_metadata": info.engine_metadata,
        }
    if profile is not None:
        extra["profile"] = {"source": profile.source, "iterations": profile.iterations, "total_ms": profile.total_ms}
    return extra
