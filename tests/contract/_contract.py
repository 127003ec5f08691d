"""What the contract tests share: the repository root and ``scripts/trt_bindings.py`` loaded as a module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("_probe.py")


def _load_script():
    spec = importlib.util.spec_from_file_location("trt_bindings", REPO / "scripts" / "trt_bindings.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["trt_bindings"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


trt_bindings = sys.modules.get("trt_bindings") or _load_script()
VERSIONS = tuple(trt_bindings.VERSIONS)
