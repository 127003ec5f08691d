"""Which TensorRT-family module a backend drives: ``tensorrt`` (TensorRT 10.x/11.x) or ``tensorrt_rtx`` (TensorRT
for RTX). Chosen once per backend, by name, here; every other module of the family takes the module it is given
and asks it with ``hasattr`` where the editions differ (never by version strings).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Edition:
    """One TensorRT edition: its Python module, how it is named to users and how it is installed."""

    module: str  # "tensorrt" or "tensorrt_rtx"
    title: str  # "TensorRT" or "TensorRT-RTX"
    install: str  # the one line that says how to get it


TENSORRT = Edition(
    "tensorrt",
    "TensorRT",
    "use an NGC TensorRT container (nvcr.io/nvidia/tensorrt) or pip install tensorrt-cu13 on a GPU machine",
)
TENSORRT_RTX = Edition("tensorrt_rtx", "TensorRT-RTX", "pip install 'trt-workbench[rtx]' (or pip install tensorrt-rtx)")


@functools.cache
def load(module: str = "tensorrt"):
    """The imported edition module (``ImportError`` when it is not installed)."""
    return importlib.import_module(module)
