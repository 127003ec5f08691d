"""The one layer table: the same columns whichever backend or import produced it.

Columns (extra columns may follow; these are never renamed):

========================  =====================================================================================
``name``                  layer name as the backend reports it (TensorRT layer, ONNX Runtime node)
``type``                  layer or operator type (``CaskConvolution``, ``Conv``, ``Myelin``...)
``precision``             data type of the layer's outputs (``fp32``, ``fp16``, ``int8``...; ``""`` unknown)
``time_ms``               mean time per inference, milliseconds (NaN when not profiled)
``median_ms``             median time per inference, milliseconds: what layers are ranked by (:func:`typical_ms`)
``p90_ms``                90th percentile of the time per inference, milliseconds (NaN where the source has no
                          per-inference times, e.g. a trtexec profile)
``outlier``               the mean is pulled up by a few slow inferences (:func:`slow_outliers`): rank by the
                          median, read the mean with care
``time_pct``              share of the summed ``time_ms`` of all layers, percent (as trtexec's own percentages;
                          charts and the printed table share out the medians instead)
``calls``                 profiled inferences the times are over
``input_shapes``          input shapes, ``1x3x224x224; 64x3x7x7`` (``;`` between tensors)
``output_shapes``         output shapes, same form
``activation_bytes``      bytes of the layer's outputs (what it writes per inference)
``weight_bytes``          bytes of the layer's weights and constants (ONNX Runtime runs: the model's initializers
                          the layer reads, traced back through what ORT folds or pre-packs; a shared one counted
                          in the first layer that reads it)
``tactic``                kernel or tactic name (TensorRT), execution provider (ONNX Runtime)
``onnx_nodes``            list of the ONNX node names the layer came from (fusions list several)
========================  =====================================================================================

``time_ms`` is what :attr:`Run.time_source_label <workbench.results.run.Run.time_source_label>` says: GPU kernel time
(CUPTI), host time around launches, TensorRT's IProfiler or CPU time. Runs with CUPTI add ``host_ms`` (the
profiler's host time per inference), ``kernels`` (GPU activities per inference) and ``kernel_names`` (a list: the
distinct kernels, memcpys and memsets, most GPU time first).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from ..config import format_shape

#: The columns, in order, and the value a row without one takes: its type is the column's (text, float, int, bool;
#: ``onnx_nodes`` holds a list per row).
_DEFAULTS = {
    "name": "",
    "type": "",
    "precision": "",
    "time_ms": np.nan,
    "median_ms": np.nan,
    "p90_ms": np.nan,
    "outlier": False,
    "time_pct": np.nan,
    "calls": 0,
    "input_shapes": "",
    "output_shapes": "",
    "activation_bytes": 0,
    "weight_bytes": 0,
    "tactic": "",
    "onnx_nodes": None,
}
LAYER_COLUMNS = tuple(_DEFAULTS)
#: The columns a person reads in a layer table (tables in the panel and the report): all but the call count and the
#: input shapes, which the neighbouring layer's output shapes already show.
SHOWN_COLUMNS = tuple(c for c in LAYER_COLUMNS if c not in ("calls", "input_shapes"))
_LIST_COLUMNS = ("onnx_nodes",)
#: Extra columns that hold lists when present: the kernels CUPTI saw a layer launch (``kernel_names``).
_OPTIONAL_LIST_COLUMNS = ("kernel_names",)
_TEXT_COLUMNS = tuple(c for c, default in _DEFAULTS.items() if isinstance(default, str))


def layer_table(rows) -> pd.DataFrame:
    """Build the layer table from dict rows (or a DataFrame): fill missing columns, derive ``time_pct``."""
    df = pd.DataFrame(rows).copy() if not isinstance(rows, pd.DataFrame) else rows.copy()
    for col in LAYER_COLUMNS:
        if col not in df.columns:
            df[col] = [[] for _ in range(len(df))] if col in _LIST_COLUMNS else _DEFAULTS[col]
    df["onnx_nodes"] = [list(v) if isinstance(v, (list, tuple)) else [] for v in df["onnx_nodes"]]
    for col, default in _DEFAULTS.items():
        if isinstance(default, float):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        elif type(default) is int:
            df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype("int64")
        elif isinstance(default, str):
            df[col] = df[col].fillna("").astype(str)
    df["outlier"] = slow_outliers(df)
    total = df["time_ms"].sum(min_count=1)
    if df["time_pct"].isna().all() and total and not np.isnan(total):
        df["time_pct"] = 100.0 * df["time_ms"] / total
    extra = [c for c in df.columns if c not in LAYER_COLUMNS]
    return df[list(LAYER_COLUMNS) + extra].reset_index(drop=True)


def typical_ms(df: pd.DataFrame) -> pd.Series:
    """Each layer's typical time per inference: its median, its mean where it has no median. Layers are ranked and
    shared out by this, not the mean: one slow inference (a page fault, a thread woken late) in a cheap layer's few
    profiled calls made a Flatten 94% of a CNN's time by its mean, with a median of 0.002 ms."""
    return df["median_ms"].where(df["median_ms"].notna(), df["time_ms"])


def slow_outliers(df: pd.DataFrame) -> pd.Series:
    """True for the layers whose mean is pulled up by a few slow inferences: the mean above the 90th percentile
    (under a tenth of the calls make it) and 1.5× the median (a microsecond timer's rounding makes a cheap layer's
    mean exceed its p90 by a little), or, without a 90th percentile, above twice the median."""
    mean, median, p90 = (pd.to_numeric(df[c], errors="coerce") for c in ("time_ms", "median_ms", "p90_ms"))
    over = ((mean > p90) & (mean > 1.5 * median)).where(p90.notna(), mean > 2 * median)
    return over.fillna(False).astype(bool)


def to_csv(df: pd.DataFrame, path) -> None:
    out = df.copy()
    for col in _LIST_COLUMNS + tuple(c for c in _OPTIONAL_LIST_COLUMNS if c in out.columns):
        out[col] = [json.dumps(list(v) if isinstance(v, (list, tuple)) else []) for v in out[col]]
    out.to_csv(path, index=False)


def column_kinds(df: pd.DataFrame) -> dict[str, str]:
    """The kind (``bool``, ``int``, ``float``, ``text``) of each extra column (beyond :data:`LAYER_COLUMNS`): what
    :func:`read_csv` cannot tell from the CSV alone (an all-NaN float column, a text column of digits)."""
    kinds = {}
    for col in df.columns:
        if col in LAYER_COLUMNS:
            continue
        dtype = df[col].dtype
        kinds[col] = (
            "bool"
            if pd.api.types.is_bool_dtype(dtype)
            else "int"
            if pd.api.types.is_integer_dtype(dtype)
            else "float"
            if pd.api.types.is_float_dtype(dtype)
            else "text"
        )
    return kinds


def read_csv(path, kinds: dict[str, str] | None = None) -> pd.DataFrame:
    """The layer table written by :func:`to_csv`; ``kinds`` (from :func:`column_kinds`) types the extra columns,
    which are otherwise inferred from their cells."""
    # Names such as "NA" or "null" are real layer names: read every cell as text, then restore numbers.
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    kinds = kinds or {}
    for col in _LIST_COLUMNS + _OPTIONAL_LIST_COLUMNS:
        if col in df.columns:
            df[col] = [json.loads(v) if v.startswith("[") else [] for v in df[col]]
    for col in df.columns:
        if col in _LIST_COLUMNS + _OPTIONAL_LIST_COLUMNS or col in _TEXT_COLUMNS:
            continue
        kind = kinds.get(col) or _inferred_kind(df[col])
        if kind == "bool":
            df[col] = df[col] == "True"
        elif kind != "text":
            numbers = pd.to_numeric(df[col].replace("", np.nan), errors="coerce")
            if kind == "float":
                numbers = numbers.astype(float)
            elif kind == "int" and numbers.notna().all():
                numbers = numbers.astype("int64")
            df[col] = numbers
    return layer_table(df)


def _inferred_kind(cells: pd.Series) -> str:
    """``bool``, ``number`` (int or float as the cells read) or ``text``, for a CSV written without kinds."""
    filled = (cells != "").sum()
    if filled and cells.isin(("True", "False")).all():
        return "bool"
    numbers = pd.to_numeric(cells.replace("", np.nan), errors="coerce")
    return "number" if filled and numbers.notna().sum() == filled else "text"  # every non-empty cell a number


_SEPARATORS = re.compile(r"\s\+\s|\u001e|\u001f")
# a node name may hold brackets ("conv[0]"): an entry ends at the "]" before a separator, the next entry or the end
_ONNX_LAYER = re.compile(r"\[ONNX Layer: (.+?)\](?=\s*(?:[\u001e\u001f]|\[ONNX Layer: |$))", re.DOTALL)


def onnx_nodes_from(name: str, metadata: str | None = None) -> list[str]:
    """ONNX node names behind a TensorRT layer: from ``Metadata`` when present, else from a fused name.

    TensorRT 10+ writes ``[ONNX Layer: a]\\u001e[ONNX Layer: b]``; older engines only name layers
    ``Conv_0 + Relu_1`` (``PWN(...)`` and ``{ForeignNode[a...b]}`` wrappers are unwrapped).
    """
    if metadata:
        found = _ONNX_LAYER.findall(metadata)
        if found:
            return list(dict.fromkeys(n.strip() for n in found))
        parts = [p.strip() for p in _SEPARATORS.split(metadata) if p.strip()]
        if parts:
            return list(dict.fromkeys(parts))
    inner = name
    for wrapper in (r"^\{ForeignNode\[(.*)\]\}$", r"^PWN\((.*)\)$"):
        m = re.match(wrapper, inner.strip())
        if m:
            inner = m.group(1)
    parts = [p.strip() for p in re.split(r"\s\+\s|,\s|\.\.\.", inner) if p.strip()]
    return list(dict.fromkeys(p for p in parts if p))


def layer_shapes_text(shapes) -> str:
    """A layer's tensor shapes for its table cell: ``[[1, 3, 224, 224], [64], []]`` -> ``"1x3x224x224; 64; scalar"``."""
    return "; ".join(format_shape(s, "scalar") for s in shapes)


def nodes_text(nodes, shown: int = 4) -> str:
    """ONNX node names for a table cell or a tooltip: the first ``shown``, then how many more (``a, b … (+3)``)."""
    nodes = list(nodes)
    return ", ".join(nodes[:shown]) + (f" … (+{len(nodes) - shown})" if len(nodes) > shown else "")


def fusion_view(layers: pd.DataFrame, model=None) -> pd.DataFrame:
    """ONNX nodes → engine layers: every layer with the ONNX nodes it was built from, the largest fusions first.

    Columns: ``name``, ``type``, ``precision``, ``time_ms``, ``fused`` (how many ONNX nodes the layer covers; 0 for
    layers the backend added itself, such as reformats and casts), ``onnx_nodes``. ``attrs["summary"]`` says how many
    ONNX nodes became how many layers. With ``model`` (a :class:`~workbench.model.onnx_model.Model`), ``attrs["unmapped"]``
    lists the model's nodes that no layer names: folded into constants at build time, removed as no-ops, or
    inside a layer whose name does not list them (a Myelin region without ``Metadata``).
    """
    df = layers[["name", "type", "precision", "time_ms", "onnx_nodes"]].copy()
    df.insert(4, "fused", df["onnx_nodes"].map(len).astype("int64"))
    df = df.sort_values(["fused", "time_ms"], ascending=False, na_position="last").reset_index(drop=True)
    claimed = {n for nodes in df["onnx_nodes"] for n in nodes}
    fused = df["fused"] > 1
    alone = int((df["fused"] == 0).sum())
    summary = (
        f"{len(claimed)} ONNX nodes → {len(df)} layers: {_count(int(fused.sum()), 'layer')} fuse "
        f"{int(df.loc[fused, 'fused'].sum())} nodes, {_count(alone, 'layer')} "
        f"come{'s' if alone == 1 else ''} from no ONNX node"
    )
    if model is not None:
        unmapped = [n.name for n in model.proto.graph.node if n.name not in claimed]
        df.attrs["unmapped"] = unmapped
        summary += f"; {len(unmapped)} of the model's {len(model.proto.graph.node)} nodes are in no layer"
    df.attrs["summary"] = summary
    return df


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
