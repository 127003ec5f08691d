"""The TensorRT backend: build a strongly typed engine from the precision variant on this machine's GPU, then
profile it like trtexec (:mod:`.build`, run in a child process by :mod:`.isolated`; :mod:`.profiling`). Plans are
cached by :mod:`workbench.backends.engine_cache`.

Works unchanged on TensorRT 10.x and 11.x: nothing TensorRT 11 removed is used, and where the versions differ the
code asks with ``hasattr`` (never by comparing version strings). The contract tests check this against the real
Python bindings of 10.2, 10.16 and 11.4. :class:`~.rtx.TensorRTRTXBackend` is this class with TensorRT-RTX's module
and rules.
"""

from __future__ import annotations

import contextlib
import functools
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import cuda, cupti
from ...config import BuildConfig
from ...errors import WorkbenchError
from ...progress import Progress, ensure
from ...results.layerinfo import parse_layer_info
from ...results.run import LatencyStats, Memory, Run
from ..base import Backend, Engine, batch_size, model_info
from ..engine_cache import META_FILE, EngineCache, PlanKey, check_plan_matches
from .isolated import build_plan_isolated
from .callbacks import make_logger
from .io import Bindings, TrtHandle, new_context, tensor_infos
from .library import TENSORRT, Edition, load
from ..timing import run_trials, timing_note
from ..cupti import cross_check_note
from .profiling import _gpu_memory_now, _inspect, _join_layer_times, _per_layer_run, _timed_run, _warm_up

if TYPE_CHECKING:
    import tensorrt as trt

#: Minimum CUDA compute capability TensorRT needs for a precision (others run on every GPU TensorRT 10+ supports).
MIN_COMPUTE = {"tf32": (8, 0), "bf16": (8, 0), "fp8": (8, 9)}


def compute_tuple(compute_capability: str | None) -> tuple[int, int]:
    """``"8.9"`` → (8, 9); unknown → (0, 0)."""
    major, _, minor = str(compute_capability or "0.0").partition(".")
    return int(major or 0), int(minor or 0)


def builder_status(edition: Edition, not_installed: str, needs: str = "") -> tuple[bool, str]:
    """(True, "") when the edition imports and makes a builder here, else the one-line reason (``needs``: what a
    failing builder says it needs)."""
    try:
        trt = load(edition.module)
    except ImportError as e:
        return False, f"{not_installed} ({e}); {edition.install}"
    logger = make_logger(trt=trt)
    try:
        builder = trt.Builder(logger)
    except Exception as e:  # no GPU or driver: TensorRT logs why and the factory returns null
        detail = "; ".join(logger.errors()[-2:]) or f"{type(e).__name__}: {e}"
        return False, f"{edition.title} {trt.__version__} could not create a builder ({detail}){needs}"
    del builder
    return True, ""


@functools.cache
def _availability() -> tuple[bool, str]:
    ok, reason = builder_status(
        TENSORRT, "TensorRT's Python package is not installed", ": it needs an NVIDIA GPU and driver"
    )
    return _cuda_ready() if ok else (ok, reason)


def _cuda_ready() -> tuple[bool, str]:
    try:
        from cuda.bindings import runtime  # noqa: F401
    except ImportError as e:
        return False, f"cuda-python is not installed ({e}): pip install cuda-bindings"
    return cuda.cuda_status()


def _device_memory(engine: trt.ICudaEngine) -> int:
    """Device memory an execution context of ``engine`` needs (activations and scratch)."""
    return int(engine.device_memory_size_v2)


class TensorRTBackend(Backend):
    """The TensorRT backend (:class:`workbench.backends.base.Backend`). ``cache_dir``: where plans are kept."""

    name = "tensorrt"
    edition: Edition = TENSORRT

    def __init__(self, cache_dir=None):
        self.cache = EngineCache(cache_dir)

    @property
    def module(self):
        """The edition's Python module (imported on first use)."""
        return load(self.edition.module)

    def available(self) -> tuple[bool, str]:
        return _availability()

    def _require(self) -> None:
        ok, reason = self.available()
        if not ok:
            raise WorkbenchError(f"{self.edition.title} unavailable: {reason}")

    def precision_support(self, device: dict | None = None) -> dict[str, tuple[bool, str]]:
        """The common rule, plus the compute capability a precision needs (``device``: default the first GPU)."""
        if device is None:
            from ...env import gpus

            found = gpus()
            device = found[0] if found else None
        support = super().precision_support(device)
        for precision, need in MIN_COMPUTE.items():
            if not support[precision][0]:
                continue
            if device is None:
                support[precision] = (False, "no GPU found")
            elif compute_tuple(device.get("compute_capability")) < need:
                support[precision] = (
                    False,
                    f"{device.get('name', 'this GPU')} (compute "
                    f"{device.get('compute_capability')}) lacks {precision.upper()}: it "
                    f"needs compute {need[0]}.{need[1]} or newer",
                )
        return support

    def plan_key(self, variant, config: BuildConfig) -> PlanKey:
        self._require()
        device = cuda.device_info(0)
        return PlanKey(
            variant.model.sha256, config.key(), self.module.__version__, device.name, device.compute_capability
        )

    def build(self, variant, config: BuildConfig, progress: Progress | None = None) -> Engine:
        progress = ensure(progress)
        key = self.plan_key(variant, config)
        cached = self.cache.get(key)
        if cached is not None:
            progress.step("Engine cache hit", 1, 1)
            return self._engine(cached.read(), variant, config, cached.path, cached.meta, cache_hit=True)
        plan, facts = self._build_plan(variant, config, progress)
        stored = self.cache.put(key, plan, facts)
        return self._engine(plan, variant, config, stored.path, stored.meta, cache_hit=False)

    def load(self, plan_path, variant, config: BuildConfig) -> Engine:
        """An Engine from a plan file written by this backend (its ``plan.json`` beside it says where it was built);
        a plan from another TensorRT version or GPU is refused with the reason."""
        plan_path = Path(plan_path)
        if not plan_path.is_file():
            raise WorkbenchError(f"Engine plan '{plan_path}' does not exist: check the path or build the engine.")
        meta_path = plan_path.with_name(META_FILE)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta:
            key = self.plan_key(variant, config)
            check_plan_matches(meta, key, plan_path)
        else:
            self._require()
        return self._engine(plan_path.read_bytes(), variant, config, plan_path, meta, cache_hit=True)

    def _build_plan(self, variant, config: BuildConfig, progress: Progress) -> tuple[bytes, dict]:
        self._require()
        timing = None
        if config.timing_cache:
            device = cuda.device_info(0)
            path = self.cache.timing_cache_path(device.name, device.compute_capability, self.module.__version__)
            timing = (path, self.cache.read_timing_cache, self.cache.write_timing_cache)
        return build_plan_isolated(self.edition, variant, config, progress, timing_cache=timing)

    def _runtime_config(self, engine: trt.ICudaEngine, config: BuildConfig, timed: bool, share=None):
        """The runtime configuration contexts are made with (``share``: one whose caches to reuse); None for an
        edition without one (TensorRT)."""
        return None

    def _engine(
        self, plan: bytes, variant, config: BuildConfig, plan_path: Path, meta: dict, cache_hit: bool
    ) -> Engine:
        self._require()
        trt = self.module
        logger = make_logger(trt=trt)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            reasons = "; ".join(logger.errors()[-2:]) or "no error logged"
            raise WorkbenchError(
                f"{self.edition.title} {trt.__version__} cannot load engine plan '{plan_path}' "
                f"({reasons}): plans only load on the version and GPU that built them; rebuild it "
                "here."
            )
        handle = TrtHandle(
            runtime=runtime,
            engine=engine,
            logger=logger,
            plan_bytes=len(plan),
            runtime_config=self._runtime_config(engine, config, timed=False),
        )
        device = cuda.device_info(0)
        return Engine(
            backend=self.name,
            variant=variant,
            config=config,
            handle=handle,
            build_seconds=float(meta.get("build_seconds", 0.0)),
            cache_hit=cache_hit,
            plan_path=Path(plan_path),
            log=meta.get("log", ""),
            info={
                "tensorrt": trt.__version__,
                "device": device.to_dict(),
                "plan_bytes": len(plan),
                "network_layers": meta.get("network_layers", {}),
                "build_phases": meta.get("build_phases", []),
                "engine_layers": engine.num_layers,
            },
            infer=handle.infer,
        )

    # ---- profiling --------------------------------------------------------------------------------------------

    def profile(
        self, engine: Engine, inputs: dict[str, np.ndarray], config: BuildConfig, progress: Progress | None = None
    ) -> Run:
        progress = ensure(progress)
        self._require()
        engine.check_open()
        handle: TrtHandle = engine.handle
        notes: list[str] = []
        timed_config = self._runtime_config(handle.engine, config, timed=True, share=handle.runtime_config)
        if timed_config is not None and config.cuda_graph and hasattr(timed_config, "cuda_graph_strategy"):
            # the edition captures whole-graph CUDA graphs itself (TensorRT-RTX): no capture of our own on top
            config_for_timing = config.replace(cuda_graph=False)
            notes.append(f"CUDA graph: {self.edition.title}'s whole-graph capture")
        else:
            config_for_timing = config
        context = new_context(handle.engine, timed_config)
        with Bindings(handle.engine, context, inputs) as io, cuda.Stream() as stream:
            io.upload(stream)
            graphs: list[bool] = []

            def trial(label: str) -> tuple[list[float], float]:
                # the trial's warm-up ran in run_trials; _timed_run's single launch precedes a graph capture
                times, wall, graph = _timed_run(
                    context, stream, config_for_timing.replace(warmup_ms=0), progress, notes
                )
                graphs.append(graph)
                return times, wall

            timed = run_trials(lambda: _warm_up(context, stream, config.warmup_ms), trial, config, progress, 0)
            times_ms, wall_s, used_graph = list(timed.times_ms), timed.wall_s, any(graphs)
            gpu_memory = _gpu_memory_now(notes)
        context = new_context(handle.engine, handle.runtime_config)  # no graph capture under the profiler
        with Bindings(handle.engine, context, inputs) as io, cuda.Stream() as stream:
            io.upload(stream)
            with contextlib.ExitStack() as recording:
                try:  # CUPTI's kernel records beside IProfiler's layer times: a cross-check of their sum
                    recorder = recording.enter_context(cupti.Recorder())
                except cupti.CuptiUnavailable as e:
                    recorder = None
                    notes.append(f"CUPTI's kernel sum not recorded beside IProfiler's layer times — {e}")
                profile_start = time.perf_counter()
                layer_stats, runs = _per_layer_run(context, stream, config, progress, self.module)
                profiled_ms = (time.perf_counter() - profile_start) * 1000 / max(runs, 1)
            info_json = _inspect(handle.engine, context, self.module)
        self._after_profile(handle)
        info = parse_layer_info(info_json)
        notes += [n for n in (timing_note(config, timed.trials, runs), *info.notes) if n]
        layers, join_notes = _join_layer_times(info.layers, layer_stats, runs)
        notes += join_notes
        if recorder is not None and recorder.failed:
            notes.append(f"CUPTI's kernel sum not recorded beside IProfiler's layer times — {recorder.failed}")
        gpu = cupti.gpu_time(recorder.trace.activities, runs) if recorder is not None and not recorder.failed else None
        if gpu is not None:
            notes.append(cross_check_note(gpu, float(layers["time_ms"].sum()) if len(layers) else 0.0))
        layer_info_path = Path(tempfile.mkdtemp(prefix="trt-layer-info-")) / "layer_info.json"
        layer_info_path.write_text(info_json)
        run = self._run(
            engine,
            inputs,
            config,
            layers,
            times_ms,
            wall_s,
            gpu_memory,
            notes,
            extra={
                "profile_runs": runs,
                "cuda_graph": used_graph or config_for_timing is not config,
                "layer_info_schema": info.schema,
            },
        )
        return run.replace(
            artifacts={**run.artifacts, "layer_info": str(layer_info_path)},
            trials=timed.trials,
            timing=timed.timing(profiled_ms, gpu),
            conditions=timed.conditions,
            time_source="tensorrt",
            gpu_time=gpu,
        )

    def _after_profile(self, handle: TrtHandle) -> None:
        """Keep what the runs learnt (TensorRT-RTX: its JIT runtime cache)."""

    def _run(self, engine: Engine, inputs, config, layers, times_ms, wall_s, gpu_memory, notes, extra) -> Run:
        from ...env import environment

        handle: TrtHandle = engine.handle
        device = cuda.device_info(0)
        variant = engine.variant
        env = environment()
        env.update(
            {
                "gpu": device.name,
                "compute_capability": device.compute_capability,
                "driver": device.driver_version or env.get("driver"),
                "cuda_driver": device.cuda_driver_version,
                "cuda_runtime": device.cuda_runtime_version,
                self.edition.module: self.module.__version__,
            }
        )
        weights = int(layers["weight_bytes"].sum()) if len(layers) else None
        batch, batch_note = batch_size(inputs, variant.source)
        return Run(
            backend=self.name,
            config=config,
            layers=layers,
            latency=LatencyStats.from_times(times_ms, batch=batch, wall_s=wall_s),
            latency_ms=times_ms,
            memory=Memory(
                weights_bytes=weights,
                activations_bytes=int(layers["activation_bytes"].sum()) if len(layers) else None,
                engine_device_bytes=_device_memory(handle.engine),
                plan_bytes=handle.plan_bytes,
                gpu_used_bytes=gpu_memory,
            ),
            model=model_info(variant.source),
            variant=variant.to_dict(),
            environment=env,
            inputs=tensor_infos(handle.engine, inputs=True),
            outputs=tensor_infos(handle.engine, inputs=False),
            artifacts={"engine": str(engine.plan_path)} if engine.plan_path else {},
            notes=tuple(n for n in (*notes, batch_note) if n),
            build_seconds=engine.build_seconds,
            cache_hit=engine.cache_hit,
            extra={
                **extra,
                "shapes": {k: list(np.shape(v)) for k, v in inputs.items()},
                "engine_layers": engine.info.get("engine_layers"),
                "network_layers": engine.info.get("network_layers", {}),
            },
        )
