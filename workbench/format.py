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


def fit_table(frame, width: int | None = None, priority=None, cell: int = 32, **to_string) -> tuple[str, list[str]]:
    """``frame`` as plain text no wider than ``width`` characters (default: the terminal's; 120 in a pipe): text
    cells longer than ``cell`` are cut with "…", and the columns are taken in ``priority`` order (default: left to
    right; the first always) while the table still fits, in the frame's order. Returns the text and the columns
    left out. ``to_string`` goes to ``DataFrame.to_string`` (``index=False`` unless given)."""
    import shutil

    width = width or shutil.get_terminal_size((120, 24)).columns
    to_string.setdefault("index", False)
    shown = frame.copy()
    for col in shown.columns:
        if any(isinstance(v, str) and len(v) > cell for v in shown[col]):
            shown[col] = [v[: cell - 1] + "…" if isinstance(v, str) and len(v) > cell else v for v in shown[col]]
    order = [c for c in (priority or []) if c in shown.columns]
    order += [c for c in shown.columns if c not in order]
    taken: list = []
    for col in order:
        columns = [c for c in shown.columns if c in taken or c == col]
        text = shown[columns].to_string(**to_string)
        if not taken or max(map(len, text.splitlines()), default=0) <= width:
            taken.append(col)
    columns = [c for c in shown.columns if c in taken]
    return shown[columns].to_string(**to_string), [c for c in shown.columns if c not in taken]


def plain_number(value, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits (its whole integer part when longer) in plain decimals, never
    e-notation: ``0.00001234``, ``0.5123``, ``12346``; "" for None or NaN."""
    import numpy as np

    if value is None or value != value:
        return ""
    if abs(value) >= 10**digits:  # its integer part whole: 12346, not 12350
        return f"{value:.0f}"
    return np.format_float_positional(float(value), precision=digits, unique=False, fractional=False, trim="-")
