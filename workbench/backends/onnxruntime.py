"""ONNX Runtime backend: build = an InferenceSession; profile = a timed run, then a separate profiled run whose
profiling JSON becomes the layer table."""

from __future__ import annotations

import collections
import json
import os
import re
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import BackendName, BuildConfig, Precision
from ..env import environment
from .._optional import optional_import
from ..errors import WorkbenchError
from ..results.layers import layer_table, shapes_text
from ..progress import Progress, ensure
from ..results.run import NOT_TIMED, CompileReport, LatencyStats, Memory, Run, TensorInfo
from .base import Backend, Engine, batch_size, model_info

#: Profiled inferences for the per-layer table: at least the first (a single slow call must not dominate a
#: layer's mean), at most the second (each writes one event per node to the profile JSON).
PROFILE_RUNS = (50, 200)

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}
# TensorRT's own provider is never used here: the tensorrt backend is the way to TensorRT.
_PROVIDER_PREFERENCE = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _ort():
    return optional_import("onnxruntime", purpose="run models with ONNX Runtime", extra="cpu")


#: ONNX Runtime's CPU provider has no BF16 kernels; FP8 Q/DQ it emulates (accuracy is measured, labelled emulated).
_CPU_CANNOT = (Precision.BF16,)


class OnnxRuntimeBackend(Backend):
    name = BackendName.ONNXRUNTIME

    def available(self) -> tuple[bool, str]:
        try:
            _ort()
        except WorkbenchError as e:
            return False, str(e)
        return True, ""

    def precision_support(self, device: dict | None = None) -> dict[str, tuple[bool, str]]:
        """The common rule, plus: the CPU provider lacks BF16 kernels (onnxruntime-gpu's CUDA provider has them)."""
        support = super().precision_support(device)
        if self.available()[0] and "CUDAExecutionProvider" not in self.providers():
            for precision in _CPU_CANNOT:
                if support[precision][0]:
                    support[precision] = (False, f"ONNX Runtime on a CPU has no {precision.value.upper()} kernels: "
                                                 "build it with TensorRT on a GPU")
        return support

    def providers(self) -> list[str]:
        ort = _ort()

        have = ort.get_available_providers()
        return [p for p in _PROVIDER_PREFERENCE if p in have]

    def _session(self, variant, config: BuildConfig, profile_prefix: str | None = None,
                 optimized_path: str | None = None):
        ort = _ort()

        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[config.ort_graph_optimization])
        opts.log_severity_level = 4  # failures reach the user as WorkbenchError lines, not as log noise
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        if optimized_path:
            opts.optimized_model_filepath = optimized_path
        model = variant.model
        source = str(model.path) if model.path and model.path.is_file() else model.to_bytes()
        try:
            return ort.InferenceSession(source, opts, providers=self.providers())
        except Exception as e:  # ORT raises its own exception types (Fail, NotImplemented, InvalidGraph...)
            raise WorkbenchError(
                f"ONNX Runtime cannot load {model.name} ({variant.precision}): {ort_message(e)}. "
                "If it uses an operator or type the CPU provider lacks (bf16, fp8), build it with TensorRT on a GPU."
            ) from None

    def _runner(self, session, name: str):
        """``session.run`` whose failures (shape mismatches inside the graph, bad values) become one-line errors."""
        output_names = [o.name for o in session.get_outputs()]

        def run(inputs):
            try:
                return dict(zip(output_names, session.run(None, inputs)))
            except Exception as e:
                shapes = ", ".join(f"{k} {'x'.join(map(str, np.shape(v)))}" for k, v in inputs.items())
                raise WorkbenchError(f"ONNX Runtime failed running {name} on inputs {shapes}: {ort_message(e)}. "
                                     "Check the input shapes against what the model can take.") from None

        return run

    def build(self, variant, config: BuildConfig, progress: Progress | None = None) -> Engine:
        progress = ensure(progress)
        progress.step("Create ONNX Runtime session", 0, 1)
        start = time.perf_counter()
        session = self._session(variant, config)
        seconds = time.perf_counter() - start
        progress.step("Create ONNX Runtime session", 1, 1)
        progress.check()
        ort = _ort()

        return Engine(
            backend=self.name,
            variant=variant,
            config=config,
            handle=session,
            build_seconds=seconds,
            info={"providers": session.get_providers(), "onnxruntime": ort.__version__},
            infer=self._runner(session, variant.model.name),
        )

    def profile(self, engine: Engine, inputs: dict[str, np.ndarray], config: BuildConfig,
                progress: Progress | None = None) -> Run:
        progress = ensure(progress)
        engine.check_open()
        infer = engine.infer
        infer(inputs)  # a failing model fails here, with the reason, before any timing
        session = engine.handle
        times_ms, wall_s = _timed_loop(lambda: session.run(None, inputs), config, progress)
        with tempfile.TemporaryDirectory() as tmp:
            optimized = os.path.join(tmp, "optimized.onnx")
            profiled = self._session(engine.variant, config, profile_prefix=os.path.join(tmp, "ort_profile"),
                                     optimized_path=optimized)
            runs = min(max(config.iterations, PROFILE_RUNS[0]), PROFILE_RUNS[1])
            # the same warm-up as the timed run: first-run allocations and weight reorders stay out of the table
            warmup_runs, deadline = 0, time.perf_counter() + config.warmup_ms / 1000
            while warmup_runs == 0 or time.perf_counter() < deadline:
                profiled.run(None, inputs)
                warmup_runs += 1
            for i in range(runs):
                profiled.run(None, inputs)
                if not progress.step("Per-layer profile", i + 1, runs):
                    progress.check()
            profile_path = Path(profiled.end_profiling())
            events = json.loads(profile_path.read_text())
            keep = Path(tempfile.mkdtemp(prefix="ort-profile-")) / "ort_profile.json"
            profile_path.replace(keep)
            origins = fused_origins(engine.variant.model.proto, optimized)
        layers = profile_layers(events, runs, origins, warmup_runs=warmup_runs)
        model = engine.variant.model
        batch = batch_size(inputs, model)
        return Run(
            backend=self.name,
            config=config,
            layers=layers,
            latency=LatencyStats.from_times(times_ms, batch=batch, wall_s=wall_s),
            latency_ms=times_ms,
            memory=Memory(
                weights_bytes=model.parameter_bytes,
                activations_bytes=int(layers["activation_bytes"].sum()),
                plan_bytes=len(model.to_bytes()),
                host_peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            ),
            model=model_info(engine.variant.source),
            variant=engine.variant.to_dict(),
            environment={**environment(), "providers": engine.info.get("providers", [])},
            inputs=tuple(TensorInfo(t.name, t.dtype, t.shape) for t in model.inputs),
            outputs=tuple(TensorInfo(t.name, t.dtype, t.shape) for t in model.outputs),
            artifacts={"ort_profile": str(keep)},  # the source model is referenced by run.model["path"], not copied
            build_seconds=engine.build_seconds,
            extra={"profile_runs": runs,
                   "shapes": {k: list(v.shape) for k, v in inputs.items()}},
        )


    # ---- compile view: the graph after ONNX Runtime's own fusions, without running it -------------------------

    def can_compile(self) -> tuple[bool, str]:
        return self.available()

    def compile(self, variant, config: BuildConfig, progress: Progress | None = None, arch: str | None = None) -> Run:
        """The graph ONNX Runtime would run (after its fusions at ``config.ort_graph_optimization``), not run: one
        layer per optimized node with the original ONNX nodes it computes; the Run is ``timed=False``."""
        if arch is not None:
            raise WorkbenchError(f"ONNX Runtime compiles for the CPU it runs on: drop --arch {arch} (target "
                                 "architectures are for --backend tensorrt-rtx).")
        import onnx

        progress = ensure(progress)
        progress.step("Optimize the graph (ONNX Runtime)", 0, 1)
        keep = Path(tempfile.mkdtemp(prefix="ort-compile-")) / "optimized.onnx"
        start = time.perf_counter()
        self._session(variant, config, optimized_path=str(keep))
        seconds = time.perf_counter() - start
        progress.step("Optimize the graph (ONNX Runtime)", 1, 1)
        origins = fused_origins(variant.model.proto, str(keep))
        graph = onnx.load(str(keep), load_external_data=False).graph
        sizes = {t.name: int(np.prod(t.dims, dtype=np.int64)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
                 for t in graph.initializer}
        layers = layer_table([{"name": n.name, "type": n.op_type, "onnx_nodes": origins.get(n.name, []),
                               "weight_bytes": sum(sizes.get(i, 0) for i in n.input),
                               "tactic": n.domain or "ai.onnx"} for n in graph.node])
        claimed = {name for names in origins.values() for name in names}
        folded = tuple(n.name for n in variant.model.proto.graph.node if n.name not in claimed)
        model = variant.model
        import onnxruntime as ort

        report = CompileReport(target="cpu", compute_capability="", compiler=f"ONNX Runtime {ort.__version__}",
                               build_seconds=seconds, engine_layers=len(layers), onnx_nodes=len(model.proto.graph.node),
                               fused_layers=sum(len(v) > 1 for v in origins.values()), folded_nodes=folded)
        notes = [f"compiled, not run: the graph after ONNX Runtime's {config.ort_graph_optimization} optimizations "
                 f"({len(graph.node)} nodes from {len(model.proto.graph.node)}); {NOT_TIMED}"]
        if folded:
            notes.append(f"{len(folded)} of the model's ONNX nodes are in no optimized node: folded into constants "
                         "or removed")
        return Run(
            backend=self.name, config=config, layers=layers,
            memory=Memory(weights_bytes=sum(sizes.values()), plan_bytes=keep.stat().st_size),
            model=model_info(variant.source), variant=variant.to_dict(), environment=environment(),
            inputs=tuple(TensorInfo(t.name, t.dtype, t.shape) for t in model.inputs),
            outputs=tuple(TensorInfo(t.name, t.dtype, t.shape) for t in model.outputs),
            artifacts={"optimized_onnx": str(keep)}, notes=tuple(notes), source="compile",
            name=f"{model.name} {config.precision} {self.name} (compiled, not run)", timed=False, compiled=report,
            build_seconds=seconds,
        )


def ort_message(error: Exception) -> str:
    """The cause in an ONNX Runtime exception, without its status prefix and C++ source location."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text)
    # "... /onnxruntime_src/onnxruntime/core/graph/model.cc:180 onnxruntime::Model::Model(...) Unsupported ..."
    # (some signatures start with a return type: "model_load_utils.h:46 void onnxruntime::...(...) ...")
    text = re.sub(r"\S+\.(?:cc|cpp|h):\d+\s+(?:(?:[\w:<>*&]+\s+)?[\w:~<>]+\([^)]*\)(?:\s*const)?\s*)?", "",
                  text)
    return text.strip().rstrip(".")[:400]  # callers end the sentence


def _timed_loop(infer, config: BuildConfig, progress: Progress) -> tuple[list[float], float]:
    """Warm up for ``warmup_ms`` (at least one run), then time at least ``iterations`` runs for at least
    ``duration_s`` seconds; returns per-run milliseconds and the wall time of the timed loop."""
    deadline = time.perf_counter() + config.warmup_ms / 1000
    infer()
    while time.perf_counter() < deadline:
        infer()
    times = []
    start = time.perf_counter()
    end = start + config.duration_s
    while len(times) < config.iterations or time.perf_counter() < end:
        t0 = time.perf_counter()
        infer()
        times.append((time.perf_counter() - t0) * 1000)
        if not progress.step("Timed run", len(times), config.iterations if not config.duration_s else 0):
            progress.check()
    return times, time.perf_counter() - start


def fused_origins(original, optimized_path: str) -> dict[str, list[str]]:
    """Optimized node name -> the original ONNX nodes it computes.

    ORT fuses and renames nodes (``Conv`` + ``Relu`` -> ``FusedConv``; NCHWc nodes are named after one original
    tensor and write renamed ones). Each optimized node claims the original nodes behind its outputs, back to
    tensors that still exist or that several nodes read (those must be materialised); original nodes left
    unclaimed (a residual ``Add`` + ``Relu`` fused as a convolution's epilogue) go to the node that computes
    their first input. Nodes ORT added (layout reorders) map to nothing.
    """
    import onnx

    if not os.path.exists(optimized_path):
        return {}
    nodes = list(original.graph.node)
    producers = {out: node for node in nodes for out in node.output}
    readers = collections.Counter(t for node in nodes for t in node.input)
    graph = onnx.load(optimized_path, load_external_data=False).graph
    # (an fp16 model run in fp32 names them after the cast ORT inserted first: InsertedPrecisionFreeCast_<tensor>_nchwc)
    alias = {out: n.name.removesuffix("_nchwc").removeprefix("InsertedPrecisionFreeCast_")
             for n in graph.node if n.name.endswith("_nchwc") for out in n.output}
    # casts ORT inserts where a provider lacks a type stand between a node and the tensor it computed
    # (a node that writes such a cast's input is named after it too: only the Cast itself is inserted)
    inserted = {n.name for n in graph.node if n.op_type in ("ReorderInput", "ReorderOutput")
                or (n.op_type == "Cast" and n.name.startswith("InsertedPrecisionFreeCast_"))}
    for n in graph.node:
        if n.op_type == "Cast" and n.name in inserted:
            alias[n.input[0]] = n.output[0]

    def resolve(tensor: str) -> str:
        for _ in range(8):  # chains are short: reorder -> cast
            if tensor not in alias:
                break
            tensor = alias[tensor]
        return tensor

    kept = {resolve(t) for n in graph.node for t in n.output}
    kept |= {i.name for i in graph.initializer} | {i.name for i in graph.input}
    by_name = {n.name: n for n in nodes}
    # a node that kept its name and operator is itself; fusions are found from what is left
    owner = {n.name: n.name for n in graph.node if n.name in by_name and by_name[n.name].op_type == n.op_type}
    # ORT names a fusion "fused <first node>"
    owner.update({n.name.removeprefix("fused "): n.name for n in graph.node
                  if n.name.startswith("fused ") and n.name.removeprefix("fused ") in by_name})
    for node in graph.node:
        if node.name in inserted:
            continue
        stack = [resolve(t) for t in node.output]
        while stack:
            producer = producers.get(stack.pop())
            if producer is None or (producer.name in owner and owner[producer.name] != node.name):
                continue
            owner[producer.name] = node.name
            stack.extend(t for t in producer.input if t not in kept and readers[t] == 1)
    for node in nodes:  # original order is topological: an epilogue follows the node it is fused into
        if node.name not in owner:
            first = next((producers[t] for t in node.input if t in producers), None)
            if first is not None and first.name in owner:
                owner[node.name] = owner[first.name]
    origins: dict[str, list[str]] = {n.name: [] for n in graph.node}
    for node in nodes:
        if node.name in owner:
            origins[owner[node.name]].append(node.name)
    return origins


def profile_layers(events: list[dict], runs: int, origins: dict[str, list[str]] | None = None,
                   warmup_runs: int = 0):
    """ONNX Runtime profiling events -> the shared layer table (one row per executed node, in execution order).

    The profile holds ``warmup_runs + runs`` inferences; the warm-up ones are dropped.
    """
    origins = origins or {}
    rows: dict[str, dict] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        args = ev.get("args", {})
        name = ev["name"][: -len("_kernel_time")]
        row = rows.setdefault(name, {
            "name": name,
            "type": args.get("op_name", ""),
            "durations": [],
            "input_shapes": _shapes(args.get("input_type_shape")),
            "output_shapes": _shapes(args.get("output_type_shape")),
            "precision": _precision(args.get("output_type_shape")),
            "activation_bytes": int(args.get("output_size", 0) or 0),
            "weight_bytes": int(args.get("parameter_size", 0) or 0),
            "tactic": args.get("provider", ""),
            "onnx_nodes": origins.get(name, []),
        })
        row["durations"].append(ev.get("dur", 0) / 1000.0)
    table = []
    for row in rows.values():
        per_run = np.array(row.pop("durations"), dtype=float)
        # a node inside a loop can run several times per inference: report time per inference
        calls_per_run = max(1, round(per_run.size / max(runs + warmup_runs, 1)))
        per_run = per_run[warmup_runs * calls_per_run:]
        per_inference = per_run[: (per_run.size // calls_per_run) * calls_per_run].reshape(-1, calls_per_run).sum(1)
        row.update(time_ms=float(per_inference.mean()), median_ms=float(np.median(per_inference)),
                   calls=int(per_inference.size))
        table.append(row)
    return layer_table(table)


_ORT_TYPES = {"float": "fp32", "float16": "fp16", "bfloat16": "bf16", "double": "fp64", "int8": "int8",
              "uint8": "uint8", "int32": "int32", "int64": "int64", "bool": "bool",
              "float8e4m3fn": "fp8", "int4": "int4"}


def _shapes(type_shapes) -> str:
    """ORT writes ``[{"float": [1, 3, 8, 8]}, ...]``."""
    return shapes_text([next(iter(d.values())) for d in type_shapes or [] if d])


def _precision(type_shapes) -> str:
    for d in type_shapes or []:
        for t in d:
            return _ORT_TYPES.get(t, t)
    return ""
