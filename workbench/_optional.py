"""The one way to import a heavy or optional third-party package: on first use, and when it is missing or broken,
one :class:`~workbench.errors.WorkbenchError` line that says what the workbench needs it for and how to install it,
with the original ImportError kept as the cause. ``import workbench`` itself never imports these."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import WorkbenchError


def install_hint(package: str, extra: str | None = None) -> str:
    """``pip install 'trt-workbench[extra]'`` where an extra of this package brings it, else ``pip install package``."""
    return f"pip install 'trt-workbench[{extra}]'" if extra else f"pip install {package}"


def optional_import(module: str, *, purpose: str, extra: str | None = None, package: str | None = None) -> ModuleType:
    """Import ``module`` (``"onnxruntime"``, ``"modelopt.onnx.quantization"``…) or raise one line naming ``purpose``
    and the fix: the ``extra`` of trt-workbench that installs it, or ``package`` (default: the top-level name)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = install_hint(package or module.partition(".")[0], extra)
        raise WorkbenchError(f"{module} is needed to {purpose} but cannot be imported ({e}): {hint}") from e
