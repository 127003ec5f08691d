"""The text layer dump in a trtexec log (``--dumpLayerInfo``) → layer information, as if ``--exportLayerInfo`` had
written it.

trtexec prints ``IEngineInspector``'s one-line format after ``Layer Information:``::

    [I] Layer Information:
    Layers:
    Name: conv1 + relu1, LayerType: CaskConvolution, Inputs: [ { Name: x, Location: Device, Dimensions: [1,3,8,8],
    Format/Datatype: Row major linear FP32 }], Outputs: [ ... ], ParameterType: Convolution, ..., TacticValue: 0x1,
    StreamId: 0, Metadata: [ONNX Layer: /conv1/Conv]
    ...
    Bindings:
    x
    y

(one line per layer; only the first line of the block carries the log prefix). An engine built without
``--profilingVerbosity=detailed`` prints only the layer names: those become rows with a name (and the ONNX nodes the
name spells) and the run says what is missing. Lines of the block that cannot be read are counted in ``notes``.
Each record is read by :func:`workbench.results.buildlog.parse_record` (the same format a TensorRT-RTX build logs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...results.buildlog import parse_record

#: The prefix of a trtexec log message: ``[07/07/2026-02:11:26] [I] ``.
LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*\[[A-Z]\]\s?")


@dataclass(frozen=True)
class LayerDump:
    """The layer block of a log: layer objects (``detailed``) or names, the binding names, what was not read."""

    layers: tuple  # dicts like --exportLayerInfo's "Layers" entries, or names (str) when names only
    bindings: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def detailed(self) -> bool:
        return bool(self.layers) and all(isinstance(layer, dict) for layer in self.layers)

    def as_layer_info(self) -> dict:
        """The ``--exportLayerInfo`` JSON value this dump stands for."""
        return {"Layers": list(self.layers), "Bindings": list(self.bindings)}


def parse_layer_dump(raw_lines: list[str]) -> LayerDump | None:
    """The layer dump of a trtexec log (its lines as written), or None when it has none."""
    start = next(
        (
            i
            for i, line in enumerate(raw_lines)
            if LOG_PREFIX.sub("", line).strip() == "Layers:" and _after_layer_information(raw_lines, i)
        ),
        None,
    )
    if start is None:
        return None
    layers, bindings, unread = [], [], []
    target = layers
    rest = raw_lines[start + 1 :]
    for i, line in enumerate(rest):
        text = line.strip()
        if not text and target is layers and i + 1 < len(rest) and rest[i + 1].strip() == "Bindings:":
            continue  # a blank line between the layers and the bindings
        if not text or LOG_PREFIX.match(line) or text.startswith(("&&&&", "===")):
            break  # the block ends at a blank line or at the next log message
        if text == "Bindings:":
            target = bindings
            continue
        if target is bindings:
            bindings.append(text)
            continue
        layer = _layer(text) if text.startswith("Name: ") else text  # a record, else a name (names only)
        if layer is None:
            unread.append(text)
        else:
            layers.append(layer)
    notes = []
    if unread:
        notes.append(
            f"{len(unread)} lines of the log's layer dump could not be read and were left out: "
            + "; ".join(repr(u[:80]) for u in unread[:3])
        )
    if len({isinstance(layer, dict) for layer in layers}) == 2:  # records and names mixed
        names = sum(isinstance(layer, str) for layer in layers)
        notes.append(f"{names} lines of the log's layer dump were neither layer records nor names: left out")
        layers = [layer for layer in layers if isinstance(layer, dict)]
    return LayerDump(tuple(layers), tuple(bindings), tuple(notes))


def _after_layer_information(raw_lines: list[str], index: int) -> bool:
    """``Layers:`` directly under ``Layer Information:`` (a few lines may sit between: a verbosity warning)."""
    before = [LOG_PREFIX.sub("", line).strip() for line in raw_lines[max(0, index - 4) : index]]
    return any(b.startswith("Layer Information") for b in before)


def _layer(text: str) -> dict | None:
    record = parse_record(text)
    return record if record.get("Name") and record.get("LayerType") else None
