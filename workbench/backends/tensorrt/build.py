"""Building a TensorRT-family engine: the one build path both editions share.

The ONNX parser fills a strongly typed network (precision comes from the graph, as TensorRT 11 and TensorRT-RTX
require); the builder config sets the workspace pool, the builder optimization level, TF32, sparsity, DETAILED
profiling verbosity, one optimization profile for dynamic inputs, the target compute capabilities where the edition
builds ahead of time for named GPUs (TensorRT-RTX, on any machine) and a per-GPU timing cache where the backend keeps
one; an ``IProgressMonitor`` feeds :class:`~workbench.progress.Progress` and cancels the build when asked. With
``report=True`` the logger keeps the DETAILED build report (the engine's layers after fusion, the memory plan; see
:mod:`workbench.results.buildlog`) and :func:`build_plan` returns it parsed.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from ...config import BuildConfig, format_shape
from ...errors import Cancelled, WorkbenchError
from ...progress import Progress
from ...results.buildlog import build_figures, layer_info_from_log
from .callbacks import make_logger, make_progress_monitor
from .library import Edition

if TYPE_CHECKING:
    import tensorrt as trt

#: ``trt.LayerType`` member -> the name shown in the network summary (layers before TensorRT fuses them).
LAYER_TYPES = {
    "CONVOLUTION": "Convolution",
    "GRID_SAMPLE": "GridSample",
    "NMS": "NMS",
    "ACTIVATION": "Activation",
    "POOLING": "Pooling",
    "LRN": "LRN",
    "SCALE": "Scale",
    "SOFTMAX": "Softmax",
    "DECONVOLUTION": "Deconvolution",
    "CONCATENATION": "Concatenation",
    "ELEMENTWISE": "ElementWise",
    "PLUGIN": "Plugin",
    "UNARY": "Unary",
    "PADDING": "Padding",
    "SHUFFLE": "Shuffle",
    "REDUCE": "Reduce",
    "TOPK": "TopK",
    "GATHER": "Gather",
    "MATRIX_MULTIPLY": "MatrixMultiply",
    "RAGGED_SOFTMAX": "RaggedSoftmax",
    "CONSTANT": "Constant",
    "IDENTITY": "Identity",
    "CAST": "Cast",
    "PLUGIN_V2": "PluginV2",
    "SLICE": "Slice",
    "SHAPE": "Shape",
    "PARAMETRIC_RELU": "ParametricReLU",
    "RESIZE": "Resize",
    "TRIP_LIMIT": "TripLimit",
    "RECURRENCE": "Recurrence",
    "ITERATOR": "Iterator",
    "LOOP_OUTPUT": "LoopOutput",
    "SELECT": "Select",
    "ASSERTION": "Assertion",
    "FILL": "Fill",
    "QUANTIZE": "Quantize",
    "DEQUANTIZE": "Dequantize",
    "CONDITION": "Condition",
    "CONDITIONAL_INPUT": "ConditionalInput",
    "CONDITIONAL_OUTPUT": "ConditionalOutput",
    "SCATTER": "Scatter",
    "EINSUM": "Einsum",
    "ONE_HOT": "OneHot",
    "NON_ZERO": "NonZero",
    "REVERSE_SEQUENCE": "ReverseSequence",
    "NORMALIZATION": "Normalization",
    "PLUGIN_V3": "PluginV3",
    "SQUEEZE": "Squeeze",
    "UNSQUEEZE": "Unsqueeze",
    "CUMULATIVE": "Cumulative",
    "DYNAMIC_QUANTIZE": "DynamicQuantize",
    "ATTENTION_INPUT": "AttentionInput",
    "ATTENTION_OUTPUT": "AttentionOutput",
    "ROTARY_EMBEDDING": "RotaryEmbedding",
    "KV_CACHE_UPDATE": "KVCacheUpdate",
    "MOE": "MoE",
    "DIST_COLLECTIVE": "DistCollective",
}


def shape_ranges(model, config: BuildConfig) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max of every dynamic model input: ``config.profiles`` where given, else min = opt = max = the shape
    profiled (``config.shapes`` or the workbench's default for that input)."""
    from ...model.inputs import resolve_shapes

    dynamic = {t.name: t for t in model.inputs if t.dynamic}
    names = {t.name for t in model.inputs}
    given = {r.name: r for r in config.profiles}
    for name in given:
        if name not in names:
            raise WorkbenchError(
                f"Shape range given for unknown input '{name}': the model's inputs are {', '.join(sorted(names))}."
            )
        if name not in dynamic:
            raise WorkbenchError(f"Shape range given for input '{name}', whose shape is fixed: drop the range.")
    profiled = resolve_shapes(model, config.shape_map)
    ranges = {}
    for name, spec in dynamic.items():
        r = given.get(name)
        lo, opt, hi = (r.min, r.opt, r.max) if r else (profiled[name],) * 3
        for shape in (lo, opt, hi):
            if len(shape) != len(spec.shape) or any(
                isinstance(d, int) and d >= 0 and d != s for d, s in zip(spec.shape, shape, strict=False)
            ):
                raise WorkbenchError(
                    f"Shape range {format_shape(shape)} for input '{name}' does not fit its declared "
                    f"shape [{format_shape(spec.shape)}]: only the named dims may vary."
                )
        ranges[name] = (tuple(lo), tuple(opt), tuple(hi))
    return ranges


def parse_error_text(parser: trt.OnnxParser, model_name: str, title: str = "TensorRT") -> str:
    """One line naming the nodes and ops the ONNX parser rejected (the first three) and the fix."""
    problems = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node, op = err.node_name(), err.node_operator()
        where = f"node '{node}' ({op})" if node or op else (f"node #{err.node()}" if err.node() >= 0 else "the model")
        problems.append(f"{where}: {err.desc()}")
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return (
        f"{title} cannot parse {model_name}: {'; '.join(problems[:3]) or 'no reason given'}{more}. "
        f"Replace that operator or re-export the model (see {title}'s ONNX operator support list)."
    )


def network_summary(network: trt.INetworkDefinition) -> dict[str, int]:
    counts = Counter(
        LAYER_TYPES.get(network.get_layer(i).type.name, network.get_layer(i).type.name)
        for i in range(network.num_layers)
    )
    return dict(counts.most_common())


def build_plan(
    module,
    edition: Edition,
    variant,
    config: BuildConfig,
    progress: Progress,
    *,
    targets: tuple[str, ...] = (),
    timing_cache=None,
    report: bool = False,
) -> tuple[bytes, dict]:
    """Parse and build ``variant`` with ``module`` (the edition's Python module); returns (plan, build facts).

    ``targets``: ``trt.ComputeCapability`` member names (``"SM89"``) to build for ahead of time (TensorRT-RTX);
    ``timing_cache``: (path, read, write) of the backend's timing cache, or None; ``report``: keep and parse the
    DETAILED build report (facts ``layer_info`` and ``figures``).
    """
    trt = module
    model = variant.model
    logger = make_logger(trt=trt, report=report)
    builder = trt.Builder(logger)
    flags = 0
    # TensorRT 10 needs the flag for strong typing; 11 and RTX are always strongly typed (the flag is deprecated).
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    progress.step("Parse ONNX", 0, 1)
    source = model.runtime_source
    parsed = parser.parse_from_file(source) if isinstance(source, str) else parser.parse(source)
    if not parsed:
        raise WorkbenchError(parse_error_text(parser, f"{model.name} ({variant.precision})", edition.title))
    progress.step("Parse ONNX", 1, 1)
    progress.check()

    builder_config = builder.create_builder_config()
    monitor = make_progress_monitor(progress, trt)
    configure(trt, edition, builder, network, builder_config, model, config, monitor, targets)
    timing = None
    if timing_cache is not None:
        timing_path, read, write = timing_cache
        timing = _attach_timing_cache(builder_config, read(timing_path))

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, builder_config)
    seconds = time.perf_counter() - start
    if monitor.failure:
        raise WorkbenchError(
            f"The build stopped because the progress callback failed ({monitor.failure}): "
            "fix the callback; no engine was cached."
        )
    if monitor.cancelled or progress.cancelled:
        raise Cancelled("Build cancelled by the user: no engine was cached.")
    if serialized is None:
        reasons = "; ".join(logger.errors()[-3:]) or "no error logged"
        raise WorkbenchError(
            f"{edition.title} could not build {model.name} ({variant.precision}): {reasons}. "
            "Try a larger workspace, another optimization level or check the model."
        )
    if timing is not None:
        write(timing_path, bytes(timing.serialize()))
    facts = {
        "build_seconds": seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "network_layers": network_summary(network),
        "build_phases": monitor.phases,
        "log": logger.text(),
    }
    if report:
        text = "\n".join(logger.report)
        facts["layer_info"] = layer_info_from_log(text)
        facts["figures"] = build_figures(text)
    return bytes(serialized), facts


def configure(
    module,
    edition: Edition,
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    builder_config: trt.IBuilderConfig,
    model,
    config: BuildConfig,
    monitor: trt.IProgressMonitor,
    targets: tuple[str, ...] = (),
) -> None:
    trt = module
    if config.workspace_bytes:
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
    builder_config.builder_optimization_level = config.optimization_level
    if config.tf32:
        builder_config.set_flag(trt.BuilderFlag.TF32)
    else:
        builder_config.clear_flag(trt.BuilderFlag.TF32)
    if config.sparsity:
        builder_config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    builder_config.progress_monitor = monitor
    if (
        targets
        and hasattr(trt, "ComputeCapability")
        and hasattr(builder_config, "num_compute_capabilities")
        and hasattr(builder_config, "set_compute_capability")
    ):
        builder_config.num_compute_capabilities = len(targets)
        for i, target in enumerate(targets):
            builder_config.set_compute_capability(getattr(trt.ComputeCapability, target), i)
    elif targets:
        raise WorkbenchError(
            f"{edition.title} builds only for the GPU it runs on: drop the target architecture, "
            "or compile with TensorRT-RTX (--backend tensorrt-rtx)."
        )
    dynamic = [
        network.get_input(i) for i in range(network.num_inputs) if any(d < 0 for d in network.get_input(i).shape)
    ]
    if dynamic:
        ranges = shape_ranges(model, config)
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            if tensor.name not in ranges:
                raise WorkbenchError(
                    f"{edition.title} sees input '{tensor.name}' as dynamic but the model declares "
                    "it fixed: re-export the model with consistent input shapes."
                )
            profile.set_shape(tensor.name, *ranges[tensor.name])
        builder_config.add_optimization_profile(profile)


def _attach_timing_cache(builder_config: trt.IBuilderConfig, data: bytes):
    timing = builder_config.create_timing_cache(data)
    if timing is None or not builder_config.set_timing_cache(timing, False):
        # an unreadable or mismatched cache file: start from an empty one, overwritten after the build
        timing = builder_config.create_timing_cache(b"")
        builder_config.set_timing_cache(timing, False)
    return builder_config.get_timing_cache()
