"""The build report a TensorRT-family builder writes to its log → layer information and build figures.

A build with ``ProfilingVerbosity.DETAILED`` and a logger at VERBOSE logs the engine it made (TensorRT-RTX does so
on a CPU, without any GPU): one message that starts ``Layers:`` and holds one line per engine layer (after fusion)
in the layer-information fields of ``IEngineInspector``, in text form::

    Name: /stem/stem.0/Conv_myl0_1, LayerType: correlation, Inputs: [ { Name: x, Dimensions: [1,3,128,128],
    Strides: [...], StrideOrder: [...], Datatype: Float, Format: (NHWC) Channel major format }], Constants: [...],
    Outputs: [...], TacticName: ..., StreamId: 0, Metadata: [ONNX Layer: /stem/stem.0/Conv][ONNX Layer: ...]

followed by ``I/O Tensors:`` (one line per engine input and output, with ``ProfileInfo``) and ``Engine Metadata:``.
:func:`layer_info_from_log` turns that block into the same JSON value ``IEngineInspector`` writes (11.x layout:
``Layers``, ``I/O Tensors``), so :func:`workbench.results.layerinfo.parse_layer_info` reads it like trtexec files
and live inspector JSON. :func:`build_figures` reads the memory and time lines around it (``Total Activation
Memory: N bytes``, ``Total Weights Memory``, ``Max Scratch Memory``, ``Total Host/Device Persistent Memory``,
``Engine generation completed in S seconds``, ``[MemUsageStats] Peak memory usage ... CPU N MiB, GPU N MiB``).
"""

from __future__ import annotations

import contextlib
import json
import re

from ..errors import WorkbenchError

#: Log lines holding build figures: (key in build_figures, pattern, multiplier to bytes or seconds).
_FIGURES = (
    ("activation_bytes", re.compile(r"Total Activation Memory: (\d+) bytes"), 1),
    ("weights_bytes", re.compile(r"Total Weights Memory: (\d+) bytes"), 1),
    ("scratch_bytes", re.compile(r"Max Scratch Memory: (\d+) bytes"), 1),
    ("host_persistent_bytes", re.compile(r"Total Host Persistent Memory: (\d+) bytes"), 1),
    ("device_persistent_bytes", re.compile(r"Total Device Persistent Memory: (\d+) bytes"), 1),
    ("generation_seconds", re.compile(r"Engine generation completed in ([\d.]+) seconds"), 1),
    (
        "builder_host_peak_bytes",
        re.compile(r"Peak memory usage of TRT CPU/GPU memory allocators: CPU (\d+) MiB"),
        1 << 20,
    ),
)
_KEY = re.compile(r"([A-Za-z][A-Za-z0-9/ ]*):(?: |$)")
_SECTIONS = ("I/O Tensors:", "Engine Metadata:")


def is_report_message(message: str) -> bool:
    """True for a log message the build report is read from (the layer block or a figure line)."""
    return message.startswith("Layers:") or any(pattern.search(message) for _, pattern, _ in _FIGURES)


def build_figures(text: str) -> dict[str, float]:
    """Memory (bytes) and time (seconds) figures named in the build log; a figure the log lacks is absent."""
    found: dict[str, float] = {}
    for key, pattern, scale in _FIGURES:
        hits = pattern.findall(text)
        if hits:
            value = float(hits[-1]) * scale
            found[key] = int(value) if key.endswith("_bytes") else value
    return found


def layer_info_from_log(text: str) -> dict:
    """The ``Layers:`` block of a DETAILED build log as layer-information JSON (``{"Layers": [...], "I/O Tensors":
    [...]}``). Raises :class:`WorkbenchError` when the log has no layer block (not DETAILED, or not VERBOSE)."""
    start = text.find("Layers:\n")
    if start < 0:
        raise WorkbenchError(
            "The build log has no 'Layers:' block: build with ProfilingVerbosity.DETAILED and a "
            "logger that keeps VERBOSE messages."
        )
    layers, io, section = [], [], "layers"
    for line in text[start + len("Layers:\n") :].splitlines():
        stripped = line.strip()
        if stripped in _SECTIONS:
            section = stripped
            continue
        if stripped.startswith("["):
            break  # the next log message (when reading a whole log file)
        if not stripped.startswith("Name: ") or section == "Engine Metadata:":
            continue
        (layers if section == "layers" else io).append(_record(stripped))
    return {"Layers": layers, "I/O Tensors": io}


def _record(line: str) -> dict:
    """One ``Key: value, Key: value`` line; ``Metadata`` (last, and free text) is taken whole."""
    metadata = None
    cut = line.rfind(", Metadata: ")
    if cut >= 0:
        line, metadata = line[:cut], line[cut + len(", Metadata: ") :]
    record = parse_record(line)
    if metadata is not None:
        record["Metadata"] = metadata.strip()
    return record


def _split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets and braces."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_record(text: str) -> dict:
    """One record of ``IEngineInspector``'s one-line text format (a build log's layer, trtexec's ``--dumpLayerInfo``):
    ``Key: value, Key: value``, values being ``{ ... }`` records, ``[...]`` lists, integers, JSON objects or text
    (``Metadata: [ONNX Layer: a]...`` stays text, as the inspector's JSON has it)."""
    record: dict = {}
    key = None
    for part in _split_top(text):
        m = _KEY.match(part)
        if m:
            key = m.group(1).strip()
            record[key] = _value(part[m.end() :])
        elif key is not None and isinstance(record[key], str):  # a comma inside a free-text value
            record[key] += ", " + part
    return record


def _value(text: str):
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        if '"' in text:  # a JSON object: Weights: {"Type": "Half", "Count": 432}
            with contextlib.suppress(ValueError):
                return json.loads(text)
        return parse_record(text[1:-1])
    if text.startswith("[") and text.endswith("]") and not text.startswith("[ONNX"):
        items = _split_top(text[1:-1])
        return [_value(item) for item in items]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text
