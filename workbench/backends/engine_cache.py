"""The engine cache: serialized TensorRT plans keyed by what they depend on, and per-GPU timing caches.

A plan depends on the model's content, the build settings, the TensorRT version and the GPU (name and compute
capability); :class:`PlanKey` holds exactly these and names the cache entry. An entry is a folder holding
``engine.plan`` and ``plan.json`` (the key and build facts), kept by the workbench's one
:class:`~workbench.paths.FolderCache` (as precision variants are): an interrupted or failed build leaves no entry. A plan is never loaded on a TensorRT version or GPU other
than the one that built it: :func:`check_plan_matches` refuses it with a one-line reason.

Location: the ``engines`` folder of the workbench cache (:func:`workbench.paths.cache_dir`; ``WORKBENCH_CACHE``
moves it).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import WorkbenchError
from ..paths import FolderCache, atomic_write, cache_dir, key_digest

PLAN_FILE = "engine.plan"
META_FILE = "plan.json"


def default_cache_dir() -> Path:
    return cache_dir("engines")


@dataclass(frozen=True)
class PlanKey:
    """Everything a serialized plan depends on."""

    model_sha256: str
    config_key: str  # BuildConfig.key(): the settings that change the built engine
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"

    def digest(self) -> str:
        return key_digest(asdict(self))[:24]

    @property
    def target(self) -> str:
        """Where a plan runs, in words: ``TensorRT 10.16.1 on NVIDIA H100 (compute 9.0)``."""
        return f"TensorRT {self.tensorrt_version} on {self.gpu_name} (compute {self.compute_capability})"


@dataclass(frozen=True)
class CachedPlan:
    key: PlanKey
    path: Path  # the engine.plan file
    meta: dict  # plan.json: key, build facts (build seconds, log lines, created)

    def read(self) -> bytes:
        return self.path.read_bytes()


def _read_entry(folder: Path) -> tuple[dict, Path] | None:
    """(plan.json, the plan file) of a complete entry; None (a miss) for a damaged one."""
    meta, plan = json.loads((folder / META_FILE).read_text()), folder / PLAN_FILE
    return (meta, plan) if isinstance(meta, dict) and isinstance(meta.get("key"), dict) and plan.is_file() else None


def check_plan_matches(meta: dict, here: PlanKey, plan_path: Path) -> None:
    """Refuse a plan built by another TensorRT version or for another GPU than ``here`` (one clear line)."""
    built = meta.get("key") or {}
    for field, what in (
        ("tensorrt_version", "TensorRT version"),
        ("gpu_name", "GPU"),
        ("compute_capability", "compute capability"),
    ):
        if built.get(field) != getattr(here, field):
            raise WorkbenchError(
                f"Engine plan '{plan_path}' was built for TensorRT {built.get('tensorrt_version', '?')} on "
                f"{built.get('gpu_name', '?')} (compute {built.get('compute_capability', '?')}), but this is "
                f"{here.target}: its {what} differs, and TensorRT plans only run where they were built; "
                "rebuild the engine here (delete the plan or its cache entry)."
            )


class EngineCache(FolderCache):
    """Plans on disk under ``directory`` (default :func:`default_cache_dir`), one entry per :class:`PlanKey`."""

    def __init__(self, directory: str | os.PathLike | None = None):
        super().__init__(directory if directory is not None else default_cache_dir())

    def get(self, key: PlanKey) -> CachedPlan | None:
        """The cached plan for ``key``, or None. An entry whose recorded key differs is refused, not used."""
        found = self.load(key.digest(), _read_entry)
        if found is None:
            return None
        meta, plan = found
        check_plan_matches(meta, key, plan)
        if meta.get("key") != asdict(key) or meta.get("plan_bytes") != plan.stat().st_size:
            return None
        return CachedPlan(key, plan, meta)

    def put(self, key: PlanKey, plan: bytes, facts: dict | None = None) -> CachedPlan:
        """Store ``plan`` for ``key`` atomically (a concurrent or crashed writer never leaves a half entry)."""
        if not plan:
            raise WorkbenchError("Refusing to cache an empty engine plan: the build produced nothing; rebuild.")
        meta = {"key": asdict(key), "plan_bytes": len(plan), **(facts or {})}

        def write(tmp: Path) -> None:
            (tmp / PLAN_FILE).write_bytes(plan)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=str))

        final, _ = self.save(key.digest(), write)
        return CachedPlan(key, final / PLAN_FILE, meta)

    def entries(self) -> list[CachedPlan]:
        """Every complete entry (for listing and cleaning up)."""
        found = []
        for meta_path in sorted(self.directory.glob(f"*/{META_FILE}")):
            if meta_path.parent.name.startswith(".tmp-"):
                continue
            try:
                meta = json.loads(meta_path.read_text())
                key = PlanKey(**meta["key"])
            except (OSError, json.JSONDecodeError, KeyError, TypeError):
                continue
            if (meta_path.parent / PLAN_FILE).is_file():
                found.append(CachedPlan(key, meta_path.parent / PLAN_FILE, meta))
        return found

    # ---- timing caches ---------------------------------------------------------------------------------------

    def timing_cache_path(self, gpu_name: str, compute_capability: str, tensorrt_version: str) -> Path:
        """One timing cache per GPU model and TensorRT version, shared by every build there."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
        sm = compute_capability.replace(".", "")
        return self.directory / "timing" / f"{slug}-sm{sm}-trt{tensorrt_version}.cache"

    def runtime_cache_path(self, gpu_name: str, compute_capability: str, driver: str, version: str) -> Path:
        """TensorRT-RTX's JIT runtime cache: kernels compiled on one GPU model, under one driver and RTX version."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
        sm = compute_capability.replace(".", "")
        drv = re.sub(r"[^A-Za-z0-9.]+", "-", driver or "unknown")
        return self.directory / "runtime" / f"{slug}-sm{sm}-driver{drv}-rtx{version}.cache"

    def read_timing_cache(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return b""

    def write_timing_cache(self, path: Path, data: bytes) -> None:
        """Replace the timing cache atomically (two builds finishing together never mix their bytes)."""
        if not data:
            return
        atomic_write(path, data)
