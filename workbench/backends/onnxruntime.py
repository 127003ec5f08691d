"""ONNX Runtime backend: build = an InferenceSession; profile = a timed run, then a separate profiled run whose
profiling JSON becomes the layer table."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import AUTO_TRIAL_S, BackendName, BuildConfig, Precision, format_shapes
from ..env import environment, host_peak_bytes
from .._optional import optional_import
from ..errors import WorkbenchError, shorten
from ..model.node_cost import layer_weights, unread_weights_note, unread_weights_summary
from ..paths import check_space, process_temp_dir
from ..results.layers import layer_table
from ..progress import Progress, ensure
from ..results.run import NOT_TIMED, CompileReport, Memory, Run, TensorInfo
from .base import Backend, Engine, batch_size, model_info
from . import cupti
from .onnxruntime_profile import executed_shapes, fused_origins, gpu_attribution, profile_layers, read_profile
from ..memory import check_memory
from ..model.footprint import peak_activation_bytes
from ..model.inputs import resolve_shapes
from ..model.onnx_model import tensor_bytes
from ..model.session_probe import ort_session, probe_session
from .timing import run_trials, timed_loop, timing_note, warm_up

#: Profiled inferences for the per-layer table with a given ``iterations``: that many, but at least the first (a
#: single slow call must not dominate a layer's mean), at most the second (each writes one event per node to the
#: profile JSON). Without one, as the timed loop does: the first at most, fewer (not under
#: :data:`PROFILE_AUTO_LEAST`) once the pass has run :data:`~workbench.config.AUTO_TRIAL_S` seconds.
PROFILE_RUNS = (50, 200)
#: The fewest profiled inferences of an adaptive per-layer pass: layers are ranked by their median.
PROFILE_AUTO_LEAST = 5
#: The most node events one per-layer profile records (one JSON object of ~300 bytes per node and profiled
#: inference, read whole: 50 runs of a 100,000-node graph were 5 GiB and minutes): a larger graph is profiled over
#: fewer runs, never fewer than :data:`PROFILE_MIN_RUNS`, and its run says so.
PROFILE_EVENTS = 300_000
PROFILE_MIN_RUNS = 3


def _profile_bounds(config: BuildConfig) -> tuple[int, int, float]:
    """(least, most, seconds) of the per-layer pass: see :data:`PROFILE_RUNS`."""
    if config.iterations is None:
        return PROFILE_AUTO_LEAST, PROFILE_RUNS[0], AUTO_TRIAL_S
    runs = min(max(config.iterations, PROFILE_RUNS[0]), PROFILE_RUNS[1])
    return runs, runs, 0.0


# TensorRT's own provider is never used here: the tensorrt backend is the way to TensorRT.
_PROVIDER_PREFERENCE = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _ort():
    return optional_import("onnxruntime", purpose="run models with ONNX Runtime", extra="cpu")


#: ONNX Runtime's CPU provider has no BF16 kernels; FP8 Q/DQ it emulates (accuracy is measured, labelled emulated).
_CPU_CANNOT = (Precision.BF16,)


def check_session_memory(model, precision: str, shapes: dict) -> None:
    """One line naming the estimate and the limit when profiling ``model`` at ``shapes`` cannot fit: two sessions
    hold their tensors while profiling (the timed one and the profiled one), besides the weights. A lower bound
    (ONNX Runtime's arena and workspaces come on top), so a refusal is certain, a pass is not."""
    check_memory(
        2 * peak_activation_bytes(model, shapes) + model.parameter_bytes,
        f"Running {model.name} ({precision}) at {format_shapes(shapes)} (its weights and the tensors its "
        "layers make, in the timed and the profiled session)",
        "pass smaller shapes (--shapes / config.shapes: a smaller batch)",
    )


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
                    support[precision] = (
                        False,
                        f"ONNX Runtime on a CPU has no {precision.value.upper()} kernels: "
                        "build it with TensorRT on a GPU",
                    )
        return support

    def providers(self) -> list[str]:
        """Execution providers to ask for, best first, from those this ONNX Runtime build has."""
        ort = _ort()

        have = ort.get_available_providers()
        if "CUDAExecutionProvider" in have:
            _preload_cuda_libraries()
        return [p for p in _PROVIDER_PREFERENCE if p in have]

    def _session(
        self,
        variant,
        config: BuildConfig,
        profile_prefix: str | None = None,
        optimized_path: str | None = None,
        level: str | None = None,
        shapes: dict | None = None,
        progress: Progress | None = None,
    ):
        """A session of the variant at ``level`` (default: the config's), tried first in a child process on the
        ``shapes`` that will run (:func:`~workbench.model.session_probe.probe_session`): a crash is one line."""
        _ort()  # one line naming the extra where ONNX Runtime is not installed
        level = level or config.ort_graph_optimization
        probe_session(
            variant.model,
            level=level,
            providers=self.providers(),
            shapes=shapes,
            label=f"{variant.model.name} ({variant.precision})",
            progress=progress,
        )
        settings = {"enable_profiling": True, "profile_file_prefix": profile_prefix} if profile_prefix else {}
        if optimized_path:
            settings["optimized_model_filepath"] = optimized_path
        try:  # failures reach the user as WorkbenchError lines, not as log noise
            return ort_session(variant.model.runtime_source, level, providers=self.providers(), **settings)
        except Exception as e:  # ORT raises its own exception types (Fail, NotImplemented, InvalidGraph...)
            if optimized_path or profile_prefix:  # a full TMPDIR fails as "cannot serialize": say it is the disk
                check_space(os.path.dirname(optimized_path or profile_prefix))
            message = ort_message(e)
            if _fusion_failure(message) and level in ("extended", "all"):
                raise _FusionFailed(message) from None
            raise WorkbenchError(
                f"ONNX Runtime cannot load {variant.model.name} ({variant.precision}): {message}. "
                f"{load_hint(message, variant.precision)}"
            ) from None

    def _session_with_fallback(self, variant, config: BuildConfig, **kwargs):
        """(session, level used, why it is not the configured one): a graph fusion that fails on a precision
        variant (see :func:`_fusion_failure`) is retried at level "basic", which runs no fusions; the run says so."""
        try:
            return self._session(variant, config, **kwargs), config.ort_graph_optimization, ""
        except _FusionFailed as e:
            why = (
                f"ONNX Runtime graph optimization '{config.ort_graph_optimization}' failed on this "
                f"{variant.precision} graph ({shorten(str(e), 160)}): ran at level 'basic' (no fusions) instead"
            )
            return self._session(variant, config, level="basic", **kwargs), "basic", why

    def _runner(self, session, name: str):
        """``session.run`` whose failures (shape mismatches inside the graph, bad values) become one-line errors."""
        output_names = [o.name for o in session.get_outputs()]

        def run(inputs):
            try:
                return dict(zip(output_names, session.run(None, inputs)))
            except Exception as e:
                shapes = format_shapes({k: np.shape(v) for k, v in inputs.items()})
                raise WorkbenchError(
                    f"ONNX Runtime failed running {name} on inputs {shapes}: {ort_message(e)}. "
                    "Check the input shapes against what the model can take."
                ) from None

        return run

    def build(self, variant, config: BuildConfig, progress: Progress | None = None) -> Engine:
        progress = ensure(progress)
        progress.step("Create ONNX Runtime session", 0, 1)
        start = time.perf_counter()
        try:
            shapes = resolve_shapes(variant.model, config.shapes)  # those profile() runs unless given inputs
        except WorkbenchError:
            shapes = None  # refused again, with its reason, where inputs are made
        if shapes is not None:
            check_session_memory(variant.model, variant.precision, shapes)
        session, level, fallback = self._session_with_fallback(variant, config, shapes=shapes, progress=progress)
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
            info={
                "providers": session.get_providers(),
                "onnxruntime": ort.__version__,
                "graph_optimization": level,
                "graph_optimization_fallback": fallback,
            },
            infer=self._runner(session, variant.model.name),
        )

    def profile(
        self, engine: Engine, inputs: dict[str, np.ndarray], config: BuildConfig, progress: Progress | None = None
    ) -> Run:
        progress = ensure(progress)
        engine.check_open()
        infer = engine.infer
        level = engine.info.get("graph_optimization") or config.ort_graph_optimization
        shapes = {k: np.shape(v) for k, v in inputs.items()}
        probe_session(  # run on these shapes in a child first (a no-op when build() probed the same ones)
            engine.variant.model,
            level=level,
            providers=self.providers(),
            shapes=shapes,
            label=f"{engine.variant.model.name} ({engine.variant.precision})",
            progress=progress,
        )
        infer(inputs)  # a failing model fails here, with the reason, before any timing
        session = engine.handle
        notes = []
        run_once, gpu_index = session_runner(session, inputs)
        if gpu_index is not None:
            notes.append(
                "timed with inputs and outputs on the GPU (ONNX Runtime I/O binding): host-device copies "
                "are not in the latency"
            )
        timed = run_trials(
            lambda: warm_up(run_once, config.warmup_ms),
            lambda label: timed_loop(run_once, config, progress, label),
            config,
            progress,
            gpu_index,
        )
        gpu_memory = _gpu_memory(gpu_index)
        with tempfile.TemporaryDirectory() as tmp:
            optimized = os.path.join(tmp, "optimized.onnx")
            profiled = self._session(
                engine.variant,
                config,
                profile_prefix=os.path.join(tmp, "ort_profile"),
                optimized_path=optimized,
                level=level,
                shapes=shapes,
            )
            least, most, seconds = _profile_bounds(config)
            nodes = max(1, len(engine.variant.model.proto.graph.node))
            budget = max(PROFILE_MIN_RUNS, PROFILE_EVENTS // nodes)
            if most > budget:
                notes.append(
                    f"per-layer times from at most {budget} profiled inferences, not {most}: the graph's {nodes:,} "
                    f"nodes write one profiler event each per inference (capped at {PROFILE_EVENTS:,} events)"
                )
            least, most = min(least, budget), min(most, budget)
            profiled_once, _ = session_runner(profiled, inputs)
            # the same warm-up as the timed run: first-run allocations and weight reorders stay out of the table
            # (at most what the event budget leaves, two at least: a warm-up run is profiled too)
            warmup_runs = warm_up(profiled_once, config.warmup_ms, max_runs=max(2, budget - most))
            with contextlib.ExitStack() as recording:
                recorder, no_cupti = None, ""
                if gpu_index is not None:  # the GPU's own record of every kernel the profiled inferences launch
                    try:
                        recorder = recording.enter_context(cupti.Recorder())
                    except cupti.CuptiUnavailable as e:
                        no_cupti = str(e)
                start = time.perf_counter()
                runs, until = 0, start + seconds
                while runs < least or (runs < most and time.perf_counter() < until):
                    profiled_once()
                    runs += 1
                    if not progress.step("Per-layer profile", runs, most if most == least else 0):
                        progress.check()
                profiled_ms = (time.perf_counter() - start) * 1000 / runs
            try:
                profile_path = Path(profiled.end_profiling())
                events = read_profile(profile_path.read_text())
            except (OSError, ValueError, RuntimeError):  # a profile cut short by a full TMPDIR
                check_space(tmp)
                raise
            artifacts = {}
            if config.keep_raw_profile:  # tens of MB per run: summarised into the layer table unless asked for
                # kept until the run is saved (it is copied into the run folder), removed when the process exits
                keep = process_temp_dir("ort-profile-") / "ort_profile.json"
                profile_path.replace(keep)
                artifacts["ort_profile"] = str(keep)
            origins = fused_origins(engine.variant.model.proto, optimized)
            tensor_shapes = executed_shapes(events, engine.variant.model.proto, optimized)
            profile_start_ns = profiled.get_profiling_start_time_ns()
        node_gpu, gpu_time, time_source = None, None, "cpu" if gpu_index is None else "host"
        no_cupti = no_cupti or (recorder.failed if recorder is not None else "")
        if recorder is not None and not recorder.failed:
            node_gpu, gpu_time = gpu_attribution(events, profile_start_ns, recorder.trace, runs)
            time_source = "cupti"
        elif no_cupti:
            notes.append(f"GPU kernel times not recorded — {no_cupti}: layer times are host time around launches")
        layers = profile_layers(events, runs, origins, warmup_runs=warmup_runs, gpu=node_gpu)
        model = engine.variant.model
        weights_note, unread = "", {}
        if origins:  # ONNX Runtime's parameter_size misses the weights it pre-packed or folded: trace them back
            # a Q/DQ graph's quantized weights at the size ONNX Runtime folds them to, as the memory total counts them
            layers["weight_bytes"], unread = layer_weights(
                model.proto, list(layers["onnx_nodes"]), model.quantized_weight_bytes
            )
            weights_note = unread_weights_note(unread)
        batch, batch_note = batch_size(inputs, engine.variant.source)  # its flow is known (and cached) already
        providers = engine.info.get("providers", [])
        env = {**environment(), "providers": providers, "provider": providers[0] if providers else None}
        # the version that ran, not the first distribution's metadata (onnxruntime and onnxruntime-gpu can coexist)
        env["versions"] = {**env.get("versions", {}), "onnxruntime": engine.info.get("onnxruntime")}
        if gpu_index is None:  # the run executed on the CPU: a GPU NVML sees is not the device it ran on
            env["gpu"] = None
        return Run(
            backend=self.name,
            config=config,
            layers=layers,
            latency=timed.latency(batch),
            latency_ms=timed.times_ms,
            trials=timed.trials,
            timing=timed.timing(profiled_ms, gpu_time),
            conditions=timed.conditions,
            memory=Memory(
                weights_bytes=model.stored_parameter_bytes,  # fake-quantized weights at their INT8/FP8 size
                activations_bytes=int(layers["activation_bytes"].sum()),
                plan_bytes=len(model.to_bytes()),
                gpu_used_bytes=gpu_memory,
                host_peak_bytes=host_peak_bytes(),  # so far: the pipeline reads it again after the last step
            ),
            model=model_info(engine.variant.source),
            variant=engine.variant.to_dict(),
            environment=env,
            inputs=tuple(TensorInfo(t.name, t.dtype, t.shape) for t in model.inputs),
            outputs=tuple(TensorInfo(t.name, t.dtype, t.shape) for t in model.outputs),
            artifacts=artifacts,  # the source model is referenced by run.model["path"], not copied
            notes=tuple(
                n
                for n in (
                    *notes,
                    timing_note(config, timed.trials, runs),
                    engine.info.get("graph_optimization_fallback"),
                    batch_note,
                    weights_note,
                )
                if n
            ),
            build_seconds=engine.build_seconds,
            extra={
                "profile_runs": runs,
                "tensor_shapes": tensor_shapes,
                **({"weights_in_no_layer": unread_weights_summary(unread)} if origins else {}),
            },
            profiled_shapes={k: tuple(v.shape) for k, v in inputs.items()},
            time_source=time_source,
            gpu_time=gpu_time,
        )

    # ---- compile view: the graph after ONNX Runtime's own fusions, without running it -------------------------

    #: How to compile with this backend (``workbench doctor``): no target architecture, the CPU it runs on.
    compile_usage = "workbench compile MODEL --backend onnxruntime (the graph after ONNX Runtime's fusions)"

    def can_compile(self) -> tuple[bool, str]:
        return self.available()

    def compile(self, variant, config: BuildConfig, progress: Progress | None = None, arch: str | None = None) -> Run:
        """The graph ONNX Runtime would run (after its fusions at ``config.ort_graph_optimization``), not run: one
        layer per optimized node with the original ONNX nodes it computes; the Run is ``timed=False``."""
        if arch is not None:
            raise WorkbenchError(
                f"ONNX Runtime compiles for the CPU it runs on: drop --arch {arch} (target "
                "architectures are for --backend tensorrt-rtx)."
            )
        import onnx

        progress = ensure(progress)
        progress.step("Optimize the graph (ONNX Runtime)", 0, 1)
        keep = process_temp_dir("ort-compile-") / "optimized.onnx"  # copied into the run folder when it is kept
        start = time.perf_counter()
        self._session(variant, config, optimized_path=str(keep), progress=progress)
        seconds = time.perf_counter() - start
        progress.step("Optimize the graph (ONNX Runtime)", 1, 1)
        origins = fused_origins(variant.model.proto, str(keep))
        graph = onnx.load(str(keep), load_external_data=False).graph
        sizes = {t.name: tensor_bytes(t) for t in graph.initializer}
        layers = layer_table(
            [
                {
                    "name": n.name,
                    "type": n.op_type,
                    "onnx_nodes": origins.get(n.name, []),
                    "weight_bytes": sum(sizes.get(i, 0) for i in n.input),
                    "tactic": n.domain or "ai.onnx",
                }
                for n in graph.node
            ]
        )
        claimed = {name for names in origins.values() for name in names}
        folded = tuple(n.name for n in variant.model.proto.graph.node if n.name not in claimed)
        model = variant.model
        import onnxruntime as ort

        report = CompileReport(
            target="cpu",
            compute_capability="",
            compiler=f"ONNX Runtime {ort.__version__}",
            build_seconds=seconds,
            engine_layers=len(layers),
            onnx_nodes=len(model.proto.graph.node),
            fused_layers=sum(len(v) > 1 for v in origins.values()),
            folded_nodes=folded,
        )
        notes = [
            f"compiled, not run: the graph after ONNX Runtime's {config.ort_graph_optimization} optimizations "
            f"({len(graph.node)} nodes from {len(model.proto.graph.node)}); {NOT_TIMED}"
        ]
        if folded:
            notes.append(
                f"{len(folded)} of the model's ONNX nodes are in no optimized node: folded into constants or removed"
            )
        return Run(
            backend=self.name,
            config=config,
            layers=layers,
            memory=Memory(weights_bytes=sum(sizes.values()), plan_bytes=keep.stat().st_size),
            model=model_info(variant.source),
            variant=variant.to_dict(),
            environment=environment(),
            inputs=tuple(TensorInfo(t.name, t.dtype, t.shape) for t in model.inputs),
            outputs=tuple(TensorInfo(t.name, t.dtype, t.shape) for t in model.outputs),
            artifacts={"optimized_onnx": str(keep)},
            notes=tuple(notes),
            source="compile",
            name=f"{model.name} {config.precision} {self.name} (compiled, not run)",
            timed=False,
            compiled=report,
            build_seconds=seconds,
        )


@functools.cache
def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu finds CUDA and cuDNN from the nvidia-* pip packages only once they are loaded
    (``preload_dlls``, ONNX Runtime 1.21+); without it the session silently falls back to the CPU."""
    ort = _ort()
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception:  # libraries already loaded from the system (NGC containers) need no preloading
            pass


def session_runner(session, inputs: dict[str, np.ndarray]):
    """``(run, gpu)``: one inference of ``session`` on ``inputs`` as the timing loop calls it, and the CUDA device
    it runs on (None on the CPU). On a GPU the inputs are copied there once and the outputs stay there, as
    TensorRT's timing does: the latency is the inference, not host-device copies."""
    gpu = _cuda_device(session)
    if gpu is None:
        return (lambda: session.run(None, inputs)), None
    return _device_runner(session, inputs, gpu), gpu


def _cuda_device(session) -> int | None:
    """The CUDA device the session runs on, or None when it runs on the CPU."""
    if "CUDAExecutionProvider" not in session.get_providers():
        return None
    options = session.get_provider_options().get("CUDAExecutionProvider", {})
    return int(options.get("device_id", 0))


def _device_runner(session, inputs: dict[str, np.ndarray], device: int):
    """One inference with inputs copied to GPU ``device`` once and outputs left there (``run_with_iobinding``
    waits for the GPU before returning, so a host clock around it times the whole inference)."""
    ort = _ort()
    binding = session.io_binding()
    values = {
        k: ort.OrtValue.ortvalue_from_numpy(np.require(v, requirements="C"), "cuda", device) for k, v in inputs.items()
    }
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", device)

    def run():
        session.run_with_iobinding(binding)

    run.values = values  # the device inputs live as long as the runner
    return run


def _gpu_memory(index: int | None) -> int | None:
    """Device memory in use on GPU ``index`` now (NVML), this process's share where NVML reports it."""
    if index is None:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == os.getpid() and proc.usedGpuMemory:
                        return int(proc.usedGpuMemory)
            except pynvml.NVMLError:
                pass
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML: the memory stays unknown rather than guessed
        return None


class _FusionFailed(Exception):
    """A graph fusion of ONNX Runtime failed while creating the session (retried without fusions)."""


def _fusion_failure(message: str) -> bool:
    """ONNX Runtime's graph transformers failing on a valid graph: a fusion ("…/SimplifiedLayerNormFusion/") that
    trips over casts ORT inserted itself ("InsertedPrecisionFreeCast_…")."""
    return "InsertedPrecisionFreeCast_" in message or bool(re.search(r"\w+Fusion\b", message))


def load_hint(message: str, precision: str) -> str:
    """The fix for a session that cannot be created, matched to the cause in ``message``."""
    lowered = message.lower()
    if precision in ("bf16", "fp8") or "bfloat16" in lowered or "float8" in lowered:
        return (
            "The CPU provider has no kernels for this type (bf16, fp8): build it with TensorRT on a GPU, or "
            "use fp16/int8."
        )
    if "could not find an implementation" in lowered or "not_implemented" in lowered:
        return (
            "An operator or type has no kernel in this provider: keep it in FP32 (keep_fp32_op_types) or use TensorRT."
        )
    if _fusion_failure(message):
        return "ONNX Runtime's graph optimizer failed on this graph: retry with --graph-optimization basic."
    return "Check the model with 'workbench info' and the ONNX checker."


def ort_message(error: Exception) -> str:
    """The cause in an ONNX Runtime exception, without its status prefix and C++ source location."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text)
    text = re.sub(r"^Load model from .*? failed:\s*", "", text)  # the caller names the model
    # "... /onnxruntime_src/onnxruntime/core/graph/model.cc:180 onnxruntime::Model::Model(...) Unsupported ..."
    # (some signatures start with a return type: "model_load_utils.h:46 void onnxruntime::...(...) ...")
    text = re.sub(r"\S+\.(?:cc|cpp|h):\d+\s+(?:(?:[\w:<>*&]+\s+)?[\w:~<>]+\([^)]*\)(?:\s*const)?\s*)?", "", text)
    return shorten(text.strip().rstrip("."), 500)  # callers end the sentence
