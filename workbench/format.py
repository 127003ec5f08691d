"""Small plain-text formatting helpers for the CLI, widgets and reports (HTML is in :mod:`workbench.views`)."""

from __future__ import annotations

import re

_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\S*[/.:_]\S*\d\S*|\b\d+(?:\.\d+)?\b")


def human_bytes(n) -> str:
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_count(n) -> str:
    n = float(n)
    for unit in ("", "K", "M", "B"):
        if abs(n) < 1000 or unit == "B":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.2f}{unit}"
        n /= 1000
    return f"{n:.2f}B"


def model_rows(model) -> list[tuple[str, str]]:
    ops = ", ".join(f"{k} ×{v}" for k, v in list(model.op_histogram.items())[:8])
    if len(model.op_histogram) > 8:
        ops += ", …"
    return [
        ("Model", model.name),
        ("Inputs", "; ".join(str(t) for t in model.inputs)),
        ("Outputs", "; ".join(str(t) for t in model.outputs)),
        ("Opset", str(model.opset)),
        ("Producer", model.producer),
        ("Nodes", f"{model.node_count} ({ops})"),
        ("Parameters", f"{human_count(model.parameters)} ({human_bytes(model.parameter_bytes)})"),
        ("SHA-256", model.sha256[:16] + "…"),
    ] + [("Warning", w) for w in getattr(model, "warnings", ())]


def fold_messages(messages, similar: bool = True) -> list[str]:
    """Messages without empties, each once; with ``similar``, messages that differ only in names and numbers
    ("Expected bias of '/conv1/Conv' ...", "... of '/conv2/Conv' ...") become one with its count:
    ``"<first> (×70 like it)"``. Repeats of one message count once."""
    groups: dict[str, list[str]] = {}
    for message in messages:
        text = " ".join(str(message).split())
        if text:
            groups.setdefault(_VARIABLE.sub("…", text) if similar else text, []).append(text)
    out = []
    for same in groups.values():
        unique = list(dict.fromkeys(same))
        out.append(unique[0] if len(unique) == 1 else f"{unique[0]} (×{len(unique)} like it)")
    return out
