"""Advice: findings about a run, each with the evidence (layer names, times, counts) taken from that run.

Works on any Run: live TensorRT or ONNX Runtime runs and imported trtexec results. Where a run has no per-layer
times (layer information only), findings cite counts and bytes instead of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import BackendName, Precision
from ..format import human_bytes
from ..results.layerinfo import REFORMAT_PREFIXES
from ..results.run import Run

SEVERITIES = ("high", "medium", "low", "info")

#: ONNX Runtime execution providers, fastest class first (what a node "should" run on when it is available).
PROVIDER_RANK = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "XnnpackExecutionProvider",
    "CPUExecutionProvider",
)

_QDQ_TYPES = {"quantize", "dequantize", "quantizelinear", "dequantizelinear", "dynamicquantizelinear"}
_MYELIN_TYPES = {"myelin", "gemm", "kgen"}
TOP_LAYERS = 5


@dataclass(frozen=True)
class Finding:
    """One piece of advice. ``evidence`` holds the layer names and numbers it rests on."""

    severity: str  # one of SEVERITIES
    title: str
    detail: str
    evidence: tuple[str, ...]
    fix: str


def advise(run: Run) -> list[Finding]:
    """Findings for ``run``, most severe first."""
    layers = run.layers
    engine = run.backend != BackendName.ONNXRUNTIME  # findings about how TensorRT fused and formatted its engine
    findings = [
        f
        for f in (
            _accuracy(run),
            _reformats(layers) if engine else None,
            _fp32_fallbacks(run),
            _unfused_qdq(layers) if engine else None,  # ONNX Runtime on a CPU runs Q/DQ as ops by design
            _myelin(layers) if engine else None,  # ORT's Gemm op is no Myelin "gemm" layer
            _slow_providers(run),
            _launch_bound(run),
            _top_layers(layers),
        )
        if f is not None
    ]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


# ---- helpers ---------------------------------------------------------------------------------------------------


def _timed(layers: pd.DataFrame) -> bool:
    return bool(layers["time_ms"].notna().any()) and float(layers["time_ms"].sum()) > 0


def _share(layers: pd.DataFrame, mask) -> tuple[float, float]:
    """(ms per inference, percent of all layer time) of the rows in ``mask``."""
    total = float(layers["time_ms"].sum())
    part = float(layers.loc[mask, "time_ms"].sum())
    return part, (100.0 * part / total if total else 0.0)


def _cost(layers: pd.DataFrame, mask) -> str:
    """What a group of layers costs, in the units the run has: time if profiled, else bytes written."""
    if _timed(layers):
        ms, pct = _share(layers, mask)
        return f"{ms:.4f} ms per inference ({pct:.1f}% of layer time)"
    return f"{human_bytes(int(layers.loc[mask, 'activation_bytes'].sum()))} written per inference (not profiled)"


def _evidence(layers: pd.DataFrame, mask, limit: int = TOP_LAYERS, describe=None) -> tuple[str, ...]:
    rows = layers[mask]
    rows = (
        rows.sort_values("time_ms", ascending=False)
        if _timed(layers)
        else rows.sort_values("activation_bytes", ascending=False)
    )
    out = []
    for row in rows.head(limit).itertuples():
        cost = f"{row.time_ms:.4f} ms" if not np.isnan(row.time_ms) else human_bytes(row.activation_bytes)
        out.append(
            f"{row.name} ({row.type or 'type unknown'}, {row.precision or '?'}, {cost})"
            + (f": {describe(row)}" if describe else "")
        )
    if len(rows) > limit:
        out.append(f"... and {len(rows) - limit} more")
    return tuple(out)


def _severity(layers: pd.DataFrame, mask, high: float, medium: float, untimed: str) -> str:
    """By the share of layer time the rows in ``mask`` take (percent): "high" from ``high``, "medium" from
    ``medium``; ``untimed`` where the layers have no times."""
    if not _timed(layers):
        return untimed
    pct = _share(layers, mask)[1]
    return "high" if pct >= high else "medium" if pct >= medium else "low"


def _column(layers: pd.DataFrame, name: str) -> pd.Series:
    return layers[name] if name in layers.columns else pd.Series([""] * len(layers), index=layers.index)


# ---- findings --------------------------------------------------------------------------------------------------


def _accuracy(run: Run) -> Finding | None:
    from ..precision.accuracy import INCONCLUSIVE, remedies

    acc = run.accuracy
    if acc is not None and acc.verdict == INCONCLUSIVE:
        return Finding(
            severity="medium",
            title=f"The {run.precision.upper()} variant's accuracy is not known: the comparison proves nothing",
            detail=f"{acc.verdict_reason} (on {acc.data or f'{acc.samples} samples'}).",
            evidence=tuple(
                f"{o.name}: constant {o.constant_value:.4g} in FP32"
                for o in acc.outputs
                if o.constant_value is not None
            ),
            fix="Measure on inputs where the model's outputs vary: real data (--eval-data), or a model with trained "
            "weights.",
        )
    if acc is None or acc.verdict not in ("broken", "degraded"):
        return None
    evidence = tuple(
        f"{o.name}: cosine {o.cosine:.4f}"
        + (f", relative L2 error {o.rel_l2_error:.3g}" if o.rel_l2_error is not None else "")
        + (f", top-1 agreement {100 * o.top1_agreement:.1f}%" if o.top1_agreement is not None else "")
        + (f", mask IoU {o.mask_iou:.3f}" if o.mask_iou is not None else "")
        + (", constant output (collapsed)" if o.collapsed else "")
        for o in acc.outputs
    )
    return Finding(
        severity="high" if acc.verdict == "broken" else "medium",
        title=f"The {run.precision.upper()} variant's accuracy is {acc.verdict.upper()}",
        detail=f"{acc.verdict_reason} (on {acc.data or f'{acc.samples} samples'}). Its speed is not worth "
        "having until its outputs are right."
        if acc.verdict == "broken"
        else f"{acc.verdict_reason} (on {acc.data or f'{acc.samples} samples'}).",
        evidence=evidence,
        fix="Try: " + "; ".join(remedies(run.precision, run.variant.get("options"))) + ".",
    )


def _reformats(layers: pd.DataFrame) -> Finding | None:
    origin = _column(layers, "origin").astype(str).str.upper()
    named = layers["name"].str.startswith(REFORMAT_PREFIXES)
    reformat = ((layers["type"] == "Reformat") | named) & (origin != "QDQ")
    noop = reformat & (layers["type"] == "NoOp")
    copies = reformat & ~noop
    if not copies.any():
        return None
    extra = f" ({int(noop.sum())} more are no-ops that copy nothing)" if noop.any() else ""
    return Finding(
        severity=_severity(layers, copies, 10, 3, "low"),
        title=f"{int(copies.sum())} reformat layers copy tensors between layouts or precisions",
        detail=f"{int(copies.sum())} of {len(layers)} layers only change a tensor's layout or data type: "
        f"{_cost(layers, copies)}{extra}. TensorRT inserts them where neighbouring layers want different "
        "formats, usually at a precision boundary or at the network inputs and outputs.",
        evidence=_evidence(layers, copies),
        fix="Remove the precision boundaries behind them (the FP32 layers between FP16/INT8 layers, see the other "
        "findings); for reformats at the inputs/outputs, feed the layout the first layer wants "
        "(trtexec --inputIOFormats/--outputIOFormats) or keep the I/O in the engine's precision.",
    )


def _fp32_fallbacks(run: Run) -> Finding | None:
    if not Precision(run.precision).in_graph:
        return None
    layers = run.layers
    kind = layers["type"].str.lower()
    fp32 = (layers["precision"] == "fp32") & ~kind.isin({"reformat", "noop", "shuffle", "constant"})
    fp32 &= ~layers["name"].str.startswith(REFORMAT_PREFIXES)
    if not fp32.any():
        return None
    lower = run.precision.upper()
    if run.backend == "onnxruntime":  # no engine, no reformats: ONNX Runtime runs the variant's graph
        what, detail_end = (
            f"a {lower} variant on ONNX Runtime",
            f"ONNX Runtime runs ops without a {lower} kernel "
            "for its provider (most on a CPU) in FP32 between Casts; TensorRT would run them in "
            f"{lower}: profile with TensorRT for the engine's picture.",
        )
    else:
        what, detail_end = f"an engine built for {lower}", f"Each boundary with {lower} layers also costs a reformat."
    return Finding(
        severity=_severity(layers, fp32, 20, 5, "medium"),
        title=f"{int(fp32.sum())} layers run in FP32 in {what}",
        detail=f"{int(fp32.sum())} of {len(layers)} layers write FP32 outputs in {what}: "
        f"{_cost(layers, fp32)}. {detail_end}",
        evidence=_evidence(
            layers,
            fp32,
            describe=lambda r: "ONNX " + ", ".join(r.onnx_nodes[:4]) if r.onnx_nodes else "no ONNX node recorded",
        ),
        fix=(
            "Find the ONNX nodes listed above: AutoCast keeps nodes in FP32 when they are on its block list or "
            "would overflow, and TensorRT keeps ops without a low-precision kernel in FP32. Lower them with "
            "precision options (AutoCast op/node lists) if accuracy allows."
            if Precision(run.precision).autocast
            else "Quantize these ops too (ModelOpt: include their op types, or check why Q/DQ were not placed on their "
            "inputs); FP32 layers between INT8/FP8 layers also split fusions."
        ),
    )


def _unfused_qdq(layers: pd.DataFrame) -> Finding | None:
    kind = layers["type"].str.lower()
    origin = _column(layers, "origin").astype(str).str.upper()
    alone = ~layers["name"].str.contains(r" \+ ", regex=True)
    named = layers["name"].str.match(r"^(Quantize|Dequantize)Linear[\w.:/-]*$")
    qdq = (kind.isin(_QDQ_TYPES) | (origin == "QDQ") | named) & alone
    if not qdq.any():
        return None
    return Finding(
        severity=_severity(layers, qdq, 10, 3, "low"),
        title=f"{int(qdq.sum())} quantize/dequantize layers run on their own",
        detail=f"{int(qdq.sum())} Q/DQ layers were not fused into a neighbouring compute layer: "
        f"{_cost(layers, qdq)}. One Quantize on an FP32 network input is expected; the others are Q/DQ "
        "pairs placed where TensorRT cannot fold them (before an op without an INT8/FP8 kernel, or on only "
        "one input of a residual Add).",
        evidence=_evidence(layers, qdq),
        fix="Place Q/DQ only on the inputs of quantizable ops (Conv, MatMul/Gemm, and both inputs of residual "
        "Adds), as ModelOpt's default placement does; remove Q/DQ around ops that stay in higher precision.",
    )


def _myelin(layers: pd.DataFrame) -> Finding | None:
    kind = layers["type"].str.lower()
    myelin = kind.isin(_MYELIN_TYPES) | layers["name"].str.contains(r"ForeignNode|_myl\d", regex=True)
    if not myelin.any():
        return None
    spanned = sorted({n for nodes in layers.loc[myelin, "onnx_nodes"] for n in nodes})
    return Finding(
        severity="info",
        title=f"{int(myelin.sum())} Myelin layers compile {len(spanned)} ONNX nodes as whole subgraphs",
        detail=f"TensorRT's Myelin compiler generated {int(myelin.sum())} layers ({_cost(layers, myelin)}) from "
        f"{len(spanned)} ONNX nodes; inside them, the per-node cost is not reported.",
        evidence=_evidence(layers, myelin, limit=8, describe=_span),
        fix="To see inside a Myelin layer, run Nsight Systems (nsys) on the engine; to change how a span is "
        "compiled, rewrite the ONNX nodes listed for it (for example, attention into a fused pattern).",
    )


def _span(row) -> str:
    nodes = list(row.onnx_nodes)
    if not nodes:
        return "no ONNX nodes recorded"
    shown = ", ".join(nodes[:4]) + (
        f" ... {nodes[-1]}" if len(nodes) > 5 else f", {nodes[4]}" if len(nodes) == 5 else ""
    )
    return f"ONNX {shown} ({len(nodes)} nodes)"


def _slow_providers(run: Run) -> Finding | None:
    if run.backend != BackendName.ONNXRUNTIME:
        return None
    layers = run.layers
    providers = [p for p in layers["tactic"].unique() if p]
    available = list(run.environment.get("providers") or []) + providers
    best = next((p for p in PROVIDER_RANK if p in available), None)
    if best is None:
        return None
    slower = (layers["tactic"] != best) & (layers["tactic"] != "")
    if not slower.any():
        return None
    fell_to = ", ".join(sorted(set(layers.loc[slower, "tactic"])))
    ops = layers.loc[slower, "type"].value_counts()
    op_text = ", ".join(f"{op} ×{n}" for op, n in ops.head(6).items())
    return Finding(
        severity=_severity(layers, slower, 20, 5, "medium"),
        title=f"{int(slower.sum())} nodes fell back from {best} to {fell_to}",
        detail=f"{int(slower.sum())} of {len(layers)} nodes ran on {fell_to} although {best} was available: "
        f"{_cost(layers, slower)}. Ops: {op_text}. Each switch between providers also copies tensors.",
        evidence=_evidence(layers, slower, describe=lambda r: r.tactic),
        fix=f"Check which of these ops {best} supports at this opset and data type (ONNX Runtime logs the "
        "assignment at verbose level); replace unsupported ops or keep them out of the precision variant.",
    )


#: The GPU idle for this share of an inference or more: kernel launches, not GPU work, set the pace.
LAUNCH_BOUND_SHARE = 0.30


def _launch_bound(run: Run) -> Finding | None:
    """The GPU sits idle between kernels for much of each inference (CUPTI's busy time against the timed median):
    the host launching kernels sets the pace, so faster kernels would not help."""
    g = run.gpu_time
    median = run.timing.median_ms if run.timing else (run.latency.p50_ms if run.latency else None)
    idle = g.idle_share(median) if g else None
    if idle is None or idle < LAUNCH_BOUND_SHARE:
        return None
    return Finding(
        "high" if idle >= 0.6 else "medium",
        f"Launch-bound: the GPU is idle {100 * idle:.0f}% of each inference",
        f"The GPU was busy {g.busy_ms:.4g} ms of the {median:.4g} ms median inference (CUPTI, over "
        f"{g.inferences} profiled inferences), running {g.kernels:.0f} kernels per inference: kernel launches "
        "set the pace, not the GPU's work; faster kernels or lower precision would barely move the latency.",
        (
            f"GPU busy {g.busy_ms:.4g} ms per inference",
            f"timed median {median:.4g} ms",
            f"{g.kernels:.0f} kernels per inference",
        ),
        "CUDA graphs (fewer launches), TensorRT's fusion (fewer, larger kernels) or a larger batch (more work per "
        "launch) would help",
    )


def _top_layers(layers: pd.DataFrame) -> Finding | None:
    if not _timed(layers):
        return None
    top = layers.sort_values("time_ms", ascending=False).head(TOP_LAYERS)
    mask = layers.index.isin(top.index)
    ms, pct = _share(layers, mask)
    types = top["type"].replace("", "unknown").value_counts()
    return Finding(
        severity="info",
        title=f"The {len(top)} slowest layers take {pct:.1f}% of layer time",
        detail=f"{len(top)} of {len(layers)} layers take {ms:.4f} ms per inference ({pct:.1f}%); by type: "
        + ", ".join(f"{t} ×{n}" for t, n in types.items())
        + ".",
        evidence=tuple(
            f"{r.name} ({r.type or 'type unknown'}, {r.precision or '?'}): {r.time_ms:.4f} ms, "
            f"{r.time_pct:.1f}%" + (f", {_tactic(r.tactic)}" if r.tactic else "")
            for r in top.itertuples()
        ),
        fix="Start here: compare these layers across precision variants (workbench compare) and check their "
        "kernels (tactic column); a lower precision or a fused pattern usually helps the top convolutions "
        "and matmuls most.",
    )


def _tactic(tactic: str) -> str:
    return tactic if len(tactic) <= 60 else tactic[:57] + "..."
