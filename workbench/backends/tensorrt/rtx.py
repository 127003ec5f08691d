"""The TensorRT-RTX backend: TensorRT's build and profile path (:class:`~.backend.TensorRTBackend`) with TensorRT for
RTX's module and rules, plus :meth:`TensorRTRTXBackend.compile`, which needs no GPU.

What runs where (measured; see the README): the builder, the ONNX parser and the engine's layer report run on any
machine, CPU only, for a named target architecture (``sm86``, ``sm89``, ``sm120``...). The engines run only on
compute capability 8.0, 8.6, 8.9 and 12.x (Ampere, Ada, Blackwell RTX; Turing 7.5 as its own target). Hopper (H100,
H200, compute 9.0) and B200 (10.0) refuse them; there :meth:`available` says so in one line and ``compile`` still
works.

On a supported GPU, contexts are made from a runtime configuration (``create_runtime_config``): EAGER kernel
specialization for dynamic shapes (a new shape under the default LAZY strategy costs 10–100× while its kernel is
compiled, which a benchmark must not time), whole-graph CUDA graph capture when the config asks for CUDA graphs, and
the JIT runtime cache, kept in the engine cache keyed by TensorRT-RTX version, GPU and driver.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .. import cuda
from ...config import BuildConfig, Precision
from ...errors import WorkbenchError
from ...paths import atomic_write, process_temp_dir
from ...progress import Progress, ensure
from ...results.layerinfo import parse_layer_info
from ...results.layers import fusion_view
from ...results.run import NOT_TIMED, CompileReport, Memory, Run
from ..base import graph_precision_reason, model_info
from ..engine_cache import PlanKey
from .backend import TensorRTBackend, _cuda_ready, builder_status, compute_tuple
from .isolated import build_plan_isolated
from .io import TrtHandle
from .library import TENSORRT_RTX

if TYPE_CHECKING:
    import tensorrt as trt

#: Target architectures TensorRT-RTX builds for (``trt.ComputeCapability`` members) and their compute capability.
ARCHITECTURES = {"sm75": "7.5", "sm80": "8.0", "sm86": "8.6", "sm89": "8.9", "sm120": "12.0", "sm121": "12.1"}
#: The architecture ``compile`` builds for when none is named and no supported GPU is here (Ada: RTX 40xx, L4, L40S).
DEFAULT_ARCH = "sm89"
#: GPUs people try that TensorRT-RTX refuses (compute capability -> what they are).
UNSUPPORTED = {
    "7.0": "Volta (V100)",
    "7.2": "Xavier",
    "8.7": "Orin",
    "9.0": "Hopper (H100, H200)",
    "10.0": "Blackwell data-centre (B200)",
    "10.3": "Blackwell data-centre (B300)",
    "11.0": "Thor",
}
#: Oldest compute capability (major, minor) a precision needs in a TensorRT-RTX engine.
RTX_MIN_COMPUTE = {"tf32": (8, 0), "bf16": (8, 0), "fp8": (8, 9), "fp4": (12, 0)}
SUPPORTED_TEXT = "compute capability 8.0, 8.6, 8.9 or 12.x (Ampere, Ada or Blackwell RTX GPUs)"


def normalize_arch(arch: str | None) -> str:
    """``"sm89"``, ``"SM89"``, ``"8.9"`` or ``"89"`` → ``"sm89"``; refuses architectures TensorRT-RTX cannot target."""
    text = str(arch or "").strip().lower().replace("_", "")
    if "." in text:
        text = text.replace(".", "")
    if not text.startswith("sm"):
        text = "sm" + text
    if text in ARCHITECTURES:
        return text
    cc = f"{text[2:-1]}.{text[-1]}" if len(text) > 3 else "?"
    what = UNSUPPORTED.get(cc)
    why = f"{what} is not supported by TensorRT-RTX" if what else "TensorRT-RTX cannot build for it"
    raise WorkbenchError(
        f"Unknown or unsupported target architecture '{arch}' ({why}): choose one of {', '.join(ARCHITECTURES)}."
    )


@functools.cache
def _compile_availability() -> tuple[bool, str]:
    return builder_status(TENSORRT_RTX, "TensorRT-RTX is not installed")


@functools.cache
def _run_availability() -> tuple[bool, str]:
    ok, reason = _compile_availability()
    if not ok:
        return ok, reason
    ok, reason = _cuda_ready()
    if not ok:
        return False, (
            f"{reason}; TensorRT-RTX engines run only on {SUPPORTED_TEXT} — 'workbench compile' still "
            "builds and reports them here"
        )
    device = cuda.device_info(0)
    return gpu_supported(device.name, device.compute_capability)


def gpu_supported(name: str, compute_capability: str) -> tuple[bool, str]:
    """(True, "") when TensorRT-RTX engines run on this GPU, else the one-line reason."""
    cc = compute_tuple(compute_capability)
    if cc in ((8, 0), (8, 6), (8, 9)) or cc[0] == 12:
        return True, ""
    what = UNSUPPORTED.get(compute_capability, f"compute capability {compute_capability}")
    return False, (
        f"TensorRT-RTX does not run on {name} ({what}, compute {compute_capability}): its engines run "
        f"only on {SUPPORTED_TEXT}; 'workbench compile' still builds and reports them here"
    )


class TensorRTRTXBackend(TensorRTBackend):
    """TensorRT for RTX (:class:`workbench.backends.base.Backend`): profiles on a supported GPU, compiles anywhere."""

    name = "tensorrt-rtx"
    edition = TENSORRT_RTX

    def available(self) -> tuple[bool, str]:
        """Whether engines can be built AND run here (a supported GPU); :meth:`can_compile` for building only."""
        return _run_availability()

    #: How to compile with this backend (``workbench doctor``): for a named GPU architecture, without that GPU.
    compile_usage = "workbench compile MODEL --arch sm86|sm89|sm120 (no GPU needed)"

    def can_compile(self) -> tuple[bool, str]:
        """Whether engines can be built here without running them (any machine with the library)."""
        return _compile_availability()

    def precision_support(self, device=None) -> dict[str, tuple[bool, str]]:
        """Every precision -> (can run, reason when not) for ``device``: a target architecture (``"sm89"``), an
        entry of :func:`workbench.env.gpus`, or None (this machine's GPU where supported, else the default target)."""
        if isinstance(device, str):
            arch = normalize_arch(device)
            cc, name = ARCHITECTURES[arch], arch
        elif device is not None:
            cc, name = str(device.get("compute_capability")), str(device.get("name", "this GPU"))
        else:
            arch = self.local_arch() or DEFAULT_ARCH
            cc, name = ARCHITECTURES[arch], arch
        ok, unsupported = gpu_supported(name, cc) if cc != "7.5" else (True, "")
        modelopt = graph_precision_reason()
        support = {}
        for member in Precision:
            precision = member.value
            reason = unsupported
            if not reason and member.in_graph and modelopt:
                reason = modelopt
            elif not reason and precision in RTX_MIN_COMPUTE and compute_tuple(cc) < RTX_MIN_COMPUTE[precision]:
                need = RTX_MIN_COMPUTE[precision]
                reason = (
                    f"TensorRT-RTX has no {precision.upper()} on {name} (compute {cc}): it needs compute "
                    f"{need[0]}.{need[1]} or newer"
                )
            support[precision] = (not reason, reason)
        return support

    def local_arch(self) -> str | None:
        """The architecture of this machine's GPU when TensorRT-RTX runs on it, else None."""
        if not self.available()[0]:
            return None
        cc = cuda.device_info(0).compute_capability
        return next((a for a, c in ARCHITECTURES.items() if c == cc), None) or (
            "sm120" if cc.startswith("12.") else None
        )

    def plan_key(self, variant, config: BuildConfig, arch: str | None = None) -> PlanKey:
        """RTX plans depend on the architecture, not on the GPU model: key by version, target, model and config."""
        if arch is None:
            self._require()
            arch = self.local_arch()
        arch = normalize_arch(arch)
        return PlanKey(variant.model.sha256, config.key(), f"RTX {self.module.__version__}", arch, ARCHITECTURES[arch])

    def _build_plan(self, variant, config: BuildConfig, progress: Progress, arch: str | None = None):
        arch = normalize_arch(arch or self.local_arch())
        # TensorRT-RTX's timing cache is a deprecated no-op that queries the GPU: none is kept
        return build_plan_isolated(self.edition, variant, config, progress, targets=(arch.upper(),), report=True)

    def build(self, variant, config: BuildConfig, progress: Progress | None = None):
        self._require()
        return super().build(variant, config, progress)

    # ---- compile without a GPU ----------------------------------------------------------------------------------

    def compile(self, variant, config: BuildConfig, progress: Progress | None = None, arch: str | None = None) -> Run:
        """Build the real engine for ``arch`` (default: this GPU when supported, else :data:`DEFAULT_ARCH`) without
        running it; the Run is marked compiled, not run (``timed=False``), with the engine's layers and memory."""
        progress = ensure(progress)
        ok, reason = self.can_compile()
        if not ok:
            raise WorkbenchError(f"TensorRT-RTX cannot compile here: {reason}")
        arch = normalize_arch(arch or self.local_arch() or DEFAULT_ARCH)
        can, why = self.precision_support(arch)[config.precision]
        if not can:
            raise WorkbenchError(f"Precision {config.precision} cannot be compiled for {arch}: {why}.")
        key = self.plan_key(variant, config, arch)
        cached = self.cache.get(key)
        if cached is not None and "layer_info" in cached.meta:
            progress.step("Engine cache hit", 1, 1)
            plan_path, meta, hit = cached.path, cached.meta, True
        else:
            plan, facts = self._build_plan(variant, config, progress, arch)
            stored = self.cache.put(key, plan, facts)
            plan_path, meta, hit = stored.path, stored.meta, False
        return self._compiled_run(variant, config, arch, plan_path, meta, hit)

    def _compiled_run(self, variant, config: BuildConfig, arch: str, plan_path: Path, meta: dict, hit: bool) -> Run:
        from ...env import environment

        info = parse_layer_info(meta["layer_info"])
        layers = info.layers
        figures = meta.get("figures", {})
        fusion = fusion_view(layers, variant.model)
        folded = tuple(fusion.attrs.get("unmapped", ()))
        nodes = len(variant.model.proto.graph.node)
        report = CompileReport(
            target=arch,
            compute_capability=ARCHITECTURES[arch],
            compiler=f"TensorRT-RTX {self.module.__version__}",
            build_seconds=float(meta.get("build_seconds", 0.0)),
            phases=tuple(meta.get("build_phases", ())),
            engine_layers=len(layers),
            onnx_nodes=nodes,
            fused_layers=int((fusion["fused"] > 1).sum()),
            folded_nodes=folded,
            activation_memory_bytes=figures.get("activation_bytes"),
            weights_memory_bytes=figures.get("weights_bytes"),
            scratch_memory_bytes=figures.get("scratch_bytes"),
            host_persistent_bytes=figures.get("host_persistent_bytes"),
            device_persistent_bytes=figures.get("device_persistent_bytes"),
            builder_host_peak_bytes=figures.get("builder_host_peak_bytes"),
            cache_hit=hit,
        )
        env = environment()
        env.update({"tensorrt_rtx": self.module.__version__, "target": arch, "compute_capability": ARCHITECTURES[arch]})
        directory = process_temp_dir("rtx-compile-")  # copied into the run folder when it is stored
        info_path = directory / "layer_info.json"
        info_path.write_text(json.dumps(meta["layer_info"], indent=1))
        log_path = directory / "build.log"
        log_path.write_text(meta.get("log", ""))
        notes = [
            f"compiled, not run: TensorRT-RTX built this engine for {arch} (compute {ARCHITECTURES[arch]}) "
            f"without running it; {NOT_TIMED} — no latency is shown",
            *info.notes,
        ]
        if folded:
            notes.append(
                f"{len(folded)} of the model's {nodes} ONNX nodes {'is' if len(folded) == 1 else 'are'} in no engine layer: folded into "
                "constants at build time, removed as no-ops, or absorbed into a neighbouring kernel's "
                "memory layout"
            )
        return Run(
            backend=self.name,
            config=config,
            layers=layers,
            memory=Memory(
                weights_bytes=figures.get("weights_bytes"),
                activations_bytes=int(layers["activation_bytes"].sum()) if len(layers) else None,
                engine_device_bytes=figures.get("activation_bytes"),
                plan_bytes=int(plan_path.stat().st_size),
            ),
            model=model_info(variant.source),
            variant=variant.to_dict(),
            environment=env,
            inputs=info.inputs,
            outputs=info.outputs,
            artifacts={"engine": str(plan_path), "layer_info": str(info_path), "build_log": str(log_path)},
            notes=tuple(notes),
            source="compile",
            name=f"{variant.model.name} {config.precision} {self.name} {arch} (compiled, not run)",
            timed=False,
            compiled=report,
            build_seconds=report.build_seconds,
            cache_hit=hit,
        )

    # ---- running on a supported GPU ---------------------------------------------------------------------------

    def _runtime_cache_path(self) -> Path:
        device = cuda.device_info(0)
        return self.cache.runtime_cache_path(
            device.name,
            device.compute_capability,
            device.driver_version or device.cuda_driver_version,
            self.module.__version__,
        )

    def _runtime_config(self, engine: trt.ICudaEngine, config: BuildConfig, timed: bool, share=None):
        trt = self.module
        if hasattr(engine, "create_runtime_config"):
            runtime_config = engine.create_runtime_config()
            if (
                hasattr(runtime_config, "dynamic_shapes_kernel_specialization_strategy")
                and hasattr(trt, "DynamicShapesKernelSpecializationStrategy")
                and hasattr(trt.DynamicShapesKernelSpecializationStrategy, "EAGER")
            ):
                # every shape's kernels compiled before the first inference: no JIT compile inside a timed run
                runtime_config.dynamic_shapes_kernel_specialization_strategy = (
                    trt.DynamicShapesKernelSpecializationStrategy.EAGER
                )
            if (
                timed
                and config.cuda_graph
                and hasattr(runtime_config, "cuda_graph_strategy")
                and hasattr(trt, "CudaGraphStrategy")
                and hasattr(trt.CudaGraphStrategy, "WHOLE_GRAPH_CAPTURE")
            ):
                runtime_config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            if hasattr(runtime_config, "create_runtime_cache") and hasattr(runtime_config, "set_runtime_cache"):
                runtime_config.set_runtime_cache(self._runtime_cache(runtime_config, share))
            return runtime_config
        return None

    def _runtime_cache(self, runtime_config, share):
        """The JIT runtime cache: ``share``'s (one per engine), else read from the engine cache's file."""
        if share is not None and hasattr(share, "get_runtime_cache"):
            return share.get_runtime_cache()
        cache = runtime_config.create_runtime_cache()
        data = self.cache.read_timing_cache(self._runtime_cache_path())
        if data and hasattr(cache, "deserialize") and not cache.deserialize(data):
            cache = runtime_config.create_runtime_cache()  # a stale or damaged file: start empty
        return cache

    def _after_profile(self, handle: TrtHandle) -> None:
        runtime_config = handle.runtime_config
        if runtime_config is not None and hasattr(runtime_config, "get_runtime_cache"):
            cache = runtime_config.get_runtime_cache()
            data = bytes(cache.serialize()) if cache is not None else b""
            if data:
                atomic_write(self._runtime_cache_path(), data)
