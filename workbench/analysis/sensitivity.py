"""Which layers lose accuracy in low precision, and the fewest nodes to keep in higher precision (a plan).

Method (every figure below is measured: a real ModelOpt variant, edited, run on ONNX Runtime, CPU):

1. **Groups.** The nodes the full low-precision variant changed (for INT8/FP8: the nodes ModelOpt fed through a
   DequantizeLinear; for FP16/BF16: the nodes AutoCast converted) are gathered into groups, by ``group_by``:
   ``"block"`` (default) fuses a Conv/Gemm/MatMul with the BatchNormalization, bias Add and activation after it
   (``conv+bn+act``, ``linear+act``), the MatMul -> [scale/mask] -> Softmax -> MatMul core of an attention
   (``attention``), a ``LayerNormalization`` (``layernorm``) and an Add of two computed tensors (``residual add``);
   ``"node"`` makes one group per changed node; ``"scope"`` groups by the first ``scope_depth`` parts of the node
   names (``/encoder/layer.0/attention/...``: one group per block of an exported transformer).
2. **One calibration.** The all-low-precision variant is made once (ModelOpt, cached). For INT8/FP8 every
   candidate below is that calibrated graph with the Q/DQ pairs in front of the kept nodes edited out
   (:func:`workbench.precision.qdq.keep_unquantized`): no candidate calibrates again. FP16/BF16 candidates are
   AutoCast variants (there is no calibration to share).
3. **Ranking.** One layer-wise error pass over the all-low-precision graph with every intermediate tensor exposed
   (:mod:`workbench.analysis.layer_error`) scores each group: ``added_db``, the SNR its nodes lose, then (where
   that is tied: the compounded error saturates deep in a graph) ``quant_snr_db``, the SNR of the worst quantizer
   the group reads, applied alone to its FP32 tensor. Equal scores share a rank (``tie``); groups that add no
   measurable error are tied last, not ordered.
4. **Plan.** Every candidate runs on the evaluation data (one ONNX Runtime session each, batched; several at once
   where each gets ``THREADS_PER_CANDIDATE`` cores): the task metric is top-1 accuracy with labels, otherwise the
   lowest cosine similarity of an output to FP32. A bisection over the number of top-ranked groups kept finds the
   shortest prefix that meets the budget (``ceil(log2(groups))`` evaluations after the all-low and all-kept ones);
   then, for plans of at most ``PRUNE_LIMIT`` groups, the plan without each kept group is measured (one batch:
   the one-at-a-time measurements that can change the plan; a group's ``loss`` is what dropping it costs) and the
   droppable groups are dropped, each drop checked again. When the layer-error ranking needs more than
   ``PRUNE_LIMIT`` groups, each group is measured alone in low precision on ``SCREEN_SAMPLES`` samples (one
   batch) and a second bisection runs in that order; the plan with fewer nodes wins. ``evaluations`` counts every
   candidate run (screening included).
5. **The answer.** The all-low-precision variant, the all-kept candidate and the plan are timed (p50 on the best
   backend here: TensorRT where it builds, else ONNX Runtime) beside FP32; ``verdict`` says first whether the plan
   is faster than FP32 there, and when it is not, says so (INT8 does not pay off on this backend) instead of
   presenting the plan as the result. No TensorRT figure is given unless TensorRT measured it.

Budgets: ``"top1:0.5"`` (at most 0.5 points of top-1 below FP32; needs labels) or ``"cosine:0.999"`` (every
output's cosine to FP32 at least 0.999). A bare number is points of top-1 with labels, a cosine without.

:class:`Sensitivity` keeps everything (``to_dict()`` is what a Run's ``sensitivity`` field holds; see
:mod:`workbench.results.run`): ``scores`` (one dict per group: ``group, label`` (node name and op types), ``kind,
nodes, added_db, quant_snr_db, snr_db, loss, metric, label_accuracy, cosine, rank, tie, in_plan``; ``loss`` and the
metrics are measured only for the plan's groups), ``candidates`` (``label, kept_groups, kept_nodes, metric,
label_accuracy, cosine, latency_ms`` (None when not timed), ``meets, variant``; the first is the all-low-precision
variant), ``plan`` (the chosen candidate), ``recipe`` (see :mod:`workbench.precision.recipe`), ``verdict``,
``evaluations``, ``notes`` (the calibration warnings among them, once).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..backends import choose_backend
from ..config import BuildConfig, Precision, check_number
from ..errors import WorkbenchError, first_line
from ..records import from_dict
from ..model.inputs import chunk_size, first_samples, load_inputs, sample_count
from ..messages import collected
from ..model.onnx_model import Model, load_model
from ..precision.accuracy import output_agreement, run_in_chunks, top1_accuracy
from ..precision.qdq import keep_unquantized
from ..precision.recipe import exclusion_options, make_recipe
from ..precision.variant import make_variant
from ..progress import Progress, ensure

log = logging.getLogger(__name__)

LOW_PRECISIONS = ("int8", "fp8", "fp16", "bf16")
GROUPINGS = ("block", "node", "scope")
PRUNE_LIMIT = 12  # prune plans of at most this many groups (one measured candidate per group)
EXACT_SNR_DB = 100.0  # a quantizer above this SNR (dB) loses nothing measurable
TIE_DB = 0.1  # a group adding less SNR loss than this (dB) adds no measurable error: tied with the others
FASTER = 0.95  # a plan "pays off" below this fraction of FP32's latency (p50 differences under 5% are noise)
LAYER_SAMPLES = 8  # evaluation samples of the layer-wise error pass (every tensor exposed: the costly pass)
WARMUP_RUNS = 3  # untimed runs before a latency is measured (first-run allocations, weight reorders)
MIN_TIMED_RUNS = 5
TIMING_SECONDS = 1.0
SCREEN_SAMPLES = 32  # evaluation samples of the screening measurements of a long plan (see _screened)
EVAL_BATCH = 64  # evaluation samples per ONNX Runtime call
THREADS_PER_CANDIDATE = 4  # candidates are measured in parallel only where each gets this many cores
_LINEAR = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_ACTIVATIONS = {
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "Gelu",
    "Elu",
    "Selu",
    "Softplus",
    "PRelu",
    "Mish",
}
_ATTENTION_BETWEEN = {"Div", "Mul", "Add", "Where", "Cast", "Sub"}


@dataclass(frozen=True)
class Budget:
    """``kind`` "top1" (max points of top-1 lost) or "cosine" (min output cosine to FP32)."""

    kind: str
    value: float

    def meets(self, metric: float) -> bool:
        return metric <= self.value + 1e-9 if self.kind == "top1" else metric >= self.value - 1e-12

    def __str__(self) -> str:
        return f"top-1 within {self.value:g} pt of FP32" if self.kind == "top1" else f"output cosine >= {self.value:g}"


def parse_budget(budget, has_labels: bool) -> Budget:
    """``"top1:0.5"``, ``"cosine:0.999"``, a number, or None (0.5 pt with labels, cosine 0.999 without)."""
    if budget is None:
        return Budget("top1", 0.5) if has_labels else Budget("cosine", 0.999)
    if isinstance(budget, Budget):
        kind, value = budget.kind, budget.value
    elif isinstance(budget, (int, float)):
        kind, value = ("top1" if has_labels else "cosine"), float(budget)
    else:
        text = str(budget).strip().lower().replace(" ", "")
        kind, _, number = text.rpartition(":") if ":" in text else ("top1" if has_labels else "cosine", "", text)
        kind = {"top-1": "top1", "acc": "top1", "accuracy": "top1", "cos": "cosine"}.get(kind, kind)
        try:
            value = float(number)
        except ValueError:
            raise WorkbenchError(
                f"Budget '{budget}' is not understood: give top1:POINTS (e.g. top1:0.5) or "
                "cosine:MIN (e.g. cosine:0.999)."
            ) from None
    if kind not in ("top1", "cosine"):
        raise WorkbenchError(f"Budget kind '{kind}' is unknown: use top1:POINTS or cosine:MIN.")
    if kind == "top1" and not has_labels:
        raise WorkbenchError(
            "A top-1 budget needs labels: give evaluation data with a 'labels' array, or a "
            "cosine budget (e.g. --budget cosine:0.999)."
        )
    if kind == "top1" and not 0 <= value <= 100:
        raise WorkbenchError(f"A top-1 budget is points lost, 0 to 100 (got {value:g}).")
    if kind == "cosine" and not -1 <= value <= 1:
        raise WorkbenchError(f"A cosine budget is between -1 and 1 (got {value:g}).")
    return Budget(kind, value)


@dataclass(frozen=True)
class Group:
    name: str
    kind: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Sensitivity:
    """The result of :func:`search_plan` (see the module docstring for the fields)."""

    model: dict
    precision: str
    budget: dict
    reference: dict  # FP32 on the evaluation data: label_accuracy (or None), latency_ms
    group_by: str
    samples: int
    scores: tuple = ()
    candidates: tuple = ()
    plan: dict | None = None
    recipe: dict | None = None
    notes: tuple = ()
    seconds: float = 0.0
    variants_built: int = 0
    layer_error: tuple = ()  # rows of workbench.analysis.layer_error for the all-low-precision variant
    evaluations: int = 0  # candidate graphs run on the evaluation data (the all-low-precision one included)
    verdict: dict | None = None  # {"pays_off": bool, "text": str}: the plan against FP32's latency

    @property
    def all_low(self) -> dict:
        return self.candidates[0]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Sensitivity | None:
        return from_dict(cls, d) if d else None

    def scores_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.scores))

    def candidates_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.candidates))

    def summary(self) -> str:
        """The answer first (does the plan pay off against FP32 here), then the plan, the ties, the notes."""
        low, plan = self.all_low, self.plan
        what = "top-1" if self.budget["kind"] == "top1" else "cosine"
        lines = [self.verdict["text"]] if self.verdict else []
        ref = self.reference.get("latency_ms")
        lines.append(
            f"{self.model.get('name')}: FP32 latency {_ms(ref)}; all-{self.precision} {what} "
            f"{_fmt_metric(low, self.budget)}, latency {_ms(low['latency_ms'])}; budget: {Budget(**self.budget)}"
        )
        if plan is not None:
            lines.append(
                f"plan: keep {len(plan['kept_nodes'])} node(s) ({len(plan['kept_groups'])} group(s)) in "
                f"higher precision -> {what} {_fmt_metric(plan, self.budget)}, latency {_ms(plan['latency_ms'])}"
            )
        lines.append(
            f"search: {self.evaluations} candidate graphs evaluated, {self.variants_built} ModelOpt variant(s) made, "
            f"{self.seconds:.1f} s"
        )
        silent = [s for s in self.scores if s.get("tie") and not s.get("added_db")]
        if silent:
            lines.append(f"{len(silent)} group(s) add no measurable error in {self.precision}: tied, not ranked")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _ms(value) -> str:
    return "not timed" if value is None else f"{value:.4g} ms"


def _fmt_metric(candidate: dict, budget: dict) -> str:
    if budget["kind"] == "top1":
        return f"{100 * candidate['label_accuracy']:.2f}% ({candidate['metric']:+.2f} pt lost)"
    return f"{candidate['cosine']:.6f}"


# ---- the search ------------------------------------------------------------------------------------------------


def search_plan(
    model,
    precision: str = "int8",
    *,
    eval_data=None,
    labels=None,
    budget=None,
    group_by: str = "block",
    scope_depth: int = 3,
    max_minutes: float | None = None,
    max_samples: int = 512,
    timing_iterations: int = 20,
    layer_errors: bool = True,
    backend: str = "auto",
    compile_arch: str | None = None,
    progress: Progress | None = None,
    **variant_options,
) -> Sensitivity:
    """Rank the groups of ``model`` by the error ``precision`` adds in each, and find the fewest to keep in higher
    precision to meet ``budget`` (see the module docstring). ``eval_data``: arrays / .npz of the model's inputs
    (with an optional ``labels`` array); ``variant_options`` go to the calibrated variant (``calibration=``...).
    Accuracy is measured on ONNX Runtime (CPU); latency on ``backend`` (``auto``: TensorRT where it builds, else ONNX
    Runtime). ``layer_errors``: keep the layer-wise error table in the result (it is computed anyway: it is the
    first ranking). ``compile_arch`` (``"sm89"``, ``"auto"``...): also compile every timed candidate with
    TensorRT-RTX for that GPU architecture (no GPU needed) and keep its engine layer count and memory plan
    (``engine_layers``, ``engine_activation_bytes``, ``engine_weights_bytes``)."""
    started = time.monotonic()
    if max_minutes is not None:
        max_minutes = check_number(max_minutes, 0.01, 10_080.0, "time limit (minutes)", integer=False)
    max_samples = check_number(max_samples, 1, 10_000_000, "number of evaluation samples", integer=True)
    scope_depth = check_number(scope_depth, 1, 1_000, "scope depth", integer=True)
    timing_iterations = check_number(timing_iterations, 1, 1_000_000, "timing iterations", integer=True)
    deadline = started + 60 * max_minutes if max_minutes else None
    progress = ensure(progress)
    model = load_model(model)
    if precision not in LOW_PRECISIONS:
        raise WorkbenchError(
            f"Sensitivity compares a low precision with FP32: choose one of "
            f"{', '.join(LOW_PRECISIONS)} (got '{precision}')."
        )
    if group_by not in GROUPINGS:
        raise WorkbenchError(f"group_by='{group_by}' is unknown: choose one of {', '.join(GROUPINGS)}.")
    if eval_data is None:
        raise WorkbenchError(
            "Sensitivity needs evaluation data: pass eval_data= (--eval) a .npz with the model's "
            "inputs (first axis = samples) and, for a top-1 budget, a 'labels' array."
        )
    data = load_inputs(eval_data, model, what="Evaluation input", batch_free=True)
    labels = data.pop("labels", labels)
    count = min(sample_count(model, data, "Evaluation input"), max_samples)
    data = first_samples(model, data, count)
    if labels is not None:
        labels = np.asarray(labels)[:count]
    the_budget = parse_budget(budget, labels is not None)
    chosen, why = choose_backend(backend)
    log.info(f"Latency backend: {why}")
    compiler = _compiler(compile_arch)
    evaluator = _Evaluator(model, data, labels, the_budget, timing_iterations, chosen, progress, compiler)
    # AutoCast's reference run and random calibration at the evaluation data's shapes, not the model's defaults
    # (make_variant uses the reference only where one of them applies)
    variant_options = {"reference_inputs": evaluator.feed, **variant_options}
    screened: list = []  # the evaluator of the screening measurements, when a long plan needs them
    built = {"n": 0}
    notes: list[str] = []

    def variant(keep: list[str], label: str):
        """The ModelOpt variant with the nodes ``keep`` in higher precision (what a recipe keeping them builds)."""
        progress.check()  # a cached variant does not look at progress: cancel is honoured here too
        options = (
            dict(variant_options, **exclusion_options(precision, keep, variant_options)) if keep else variant_options
        )
        progress.step(f"sensitivity: {label}", 0, 1)
        built["n"] += 1
        with collected(logging.WARNING) as said:
            made = make_variant(model, precision, progress=progress, **options)
        notes.extend(text for text in said if text not in notes)
        progress.step(f"sensitivity: {label}", 1, 1)
        return made

    full = variant([], f"all {precision} (the one calibration)")
    changed = changed_nodes(full)
    if not changed:
        why = full.changes.get("nothing_quantized") or f"The {precision} variant of '{model.name}' changed no node"
        raise WorkbenchError(f"{why}: there is nothing to rank; profile it in FP32 or FP16 instead.")
    groups = find_groups(model, changed, group_by, scope_depth)
    low = evaluator.candidate(full.model.proto, f"all {precision}", (), (), timed=full)
    candidates = [low]
    reference = {
        "label_accuracy": evaluator.reference_accuracy,
        "latency_ms": evaluator.latency(make_variant(model)),
        "backend": str(chosen.name),
    }
    from .layer_error import layer_error

    # one pass over the all-low-precision graph, every intermediate tensor exposed: the first ranking
    table = layer_error(full, data, max_samples=LAYER_SAMPLES, progress=progress)
    if overflowed := table.attrs["not_finite"]:
        notes.append(
            f"FP32 itself gives inf/NaN in {len(overflowed)} tensor(s) on the evaluation data (first: "
            f"'{overflowed[0]}'): those are not scored; check that the evaluation data is what the model expects"
        )
    scores = _ranking(model, groups, table)
    by_name = {g.name: g for g in groups}
    ordered = [by_name[s["group"]] for s in scores]

    def graph(kept: list[Group]):
        """The candidate keeping ``kept`` in higher precision: Q/DQ pairs edited out of the calibrated graph
        (int8/fp8), or an AutoCast variant (fp16/bf16 have no calibration to share)."""
        if Precision(precision).quantized:
            return keep_unquantized(full.model.proto, _nodes(kept))
        made[_key(kept)] = variant(_nodes(kept), f"keep {len(kept)} groups")
        return made[_key(kept)].model.proto

    made: dict[tuple, object] = {}  # fp16/bf16: the AutoCast variant of each candidate (it is what gets timed)

    tried: dict[tuple, dict] = {}

    def keep(kept_sets: list[tuple[list[Group], str]], timed: bool = False) -> list[dict]:
        """Measure each (kept groups, label) not measured yet (in parallel where cores allow); their results."""
        new = [(k, label) for k, label in kept_sets if _key(k) not in tried]
        for (kept, _), measured in zip(
            new,
            evaluator.many([(graph(kept), label, [g.name for g in kept], _nodes(kept)) for kept, label in new]),
        ):
            tried[_key(kept)] = measured
            candidates.append(measured)
        results = [tried[_key(k)] for k, _ in kept_sets]
        if timed:
            for (kept, _), measured in zip(kept_sets, results):
                if measured["latency_ms"] is None:
                    timing = made.get(_key(kept)) or _timing_variant(model, full, graph(kept), len(_nodes(kept)))
                    evaluator.time(measured, timing)
        return results

    if low["meets"]:
        notes.append(f"all-{precision} already meets the budget: nothing needs higher precision")
        plan = low
    else:
        (upper,) = keep([(ordered, f"keep all {len(ordered)} groups")], timed=True)
        if not upper["meets"]:
            raise WorkbenchError(
                f"No plan meets the budget ({the_budget}): even with all {len(ordered)} groups in higher precision "
                f"{_fmt_metric(upper, dataclasses.asdict(the_budget))}; loosen --budget, or use "
                "high_precision_dtype='fp32' for the kept nodes."
            )

        def bisect(ranked: list[Group], what: str) -> list[Group]:
            """The shortest prefix of ``ranked`` that meets the budget (all of it does): ceil(log2(len)) evaluations."""
            lo, hi = 0, len(ranked)
            while hi - lo > 1:
                if _late(deadline):
                    notes.append(
                        f"plan search stopped after {max_minutes:g} min: the plan keeps {hi} groups (the "
                        "smallest measured prefix that meets the budget)"
                    )
                    break
                mid = (lo + hi) // 2
                if keep([(ranked[:mid], f"keep {what} {mid}")])[0]["meets"]:
                    hi = mid
                else:
                    lo = mid
            return ranked[:hi]

        kept = bisect(ordered, "top")
        if len(kept) > PRUNE_LIMIT and not _late(deadline):  # too many to prune one by one on every sample
            subset = first_samples(model, data, SCREEN_SAMPLES)
            screened.append(_Evaluator(model, subset, None, Budget("cosine", 1.0), timing_iterations, chosen, progress))
            second = bisect(_screened(ordered, screened[0], graph, scores, notes), "most costly")
            kept = min(kept, second, key=lambda k: len(_nodes(k)))
        kept = _prune(kept, keep, the_budget, scores, deadline, notes)
        (plan,) = keep(
            [(kept, f"keep top {len(kept)}" if kept == ordered[: len(kept)] else f"plan ({len(kept)} groups)")],
            timed=True,
        )
    plan_groups = set(plan["kept_groups"])
    for s in scores:
        s["in_plan"] = s["group"] in plan_groups
    verdict = _verdict(precision, reference, low, plan)
    recipe = make_recipe(
        model,
        precision,
        plan["kept_nodes"],
        variant_options,
        budget=dataclasses.asdict(the_budget),
        measured={k: plan[k] for k in ("metric", "label_accuracy", "cosine", "latency_ms")},
    )
    return Sensitivity(
        model={"name": model.name, "sha256": model.sha256, "path": str(model.path or "")},
        precision=precision,
        budget=dataclasses.asdict(the_budget),
        reference=reference,
        group_by=group_by,
        samples=count,
        scores=tuple(scores),
        candidates=tuple(candidates),
        plan=plan,
        recipe=recipe,
        notes=tuple(notes),
        seconds=round(time.monotonic() - started, 2),
        variants_built=built["n"],
        layer_error=tuple(table.replace({np.nan: None}).to_dict("records")) if layer_errors else (),
        evaluations=len(candidates) + sum(e.evaluated for e in screened),
        verdict=verdict,
    )


def _key(kept: list[Group]) -> tuple:
    return tuple(sorted(g.name for g in kept))


def _nodes(kept: list[Group]) -> list[str]:
    return [n for g in kept for n in g.nodes]


def _prune(kept: list[Group], keep, budget: Budget, scores: list[dict], deadline, notes: list[str]) -> list[Group]:
    """Drop the kept groups the budget does not need. One measurement per kept group (the plan without it, all in
    one parallel batch: the one-at-a-time measurements that can change the plan), then the droppable ones are
    dropped, the least costly first, each drop checked by one more measurement (their effects can add up)."""
    if len(kept) > PRUNE_LIMIT:
        notes.append(f"the plan keeps {len(kept)} groups, more than {PRUNE_LIMIT}: it was not pruned")
    if len(kept) <= 1 or len(kept) > PRUNE_LIMIT or _late(deadline):
        return kept
    without = keep([([k for k in kept if k is not g], f"plan without {g.name}") for g in kept])
    by_group = {s["group"]: s for s in scores}
    for g, measured in zip(kept, without):
        by_group[g.name].update(
            loss=_loss(measured, budget),
            metric=measured["metric"],
            label_accuracy=measured["label_accuracy"],
            cosine=measured["cosine"],
        )
    dropped: list[Group] = []
    for g in sorted((g for g, m in zip(kept, without) if m["meets"]), key=lambda g: by_group[g.name]["loss"]):
        if _late(deadline):
            notes.append("pruning stopped at the time limit: the plan may keep a group it does not need")
            break
        trial = [k for k in kept if k is not g]
        label = f"plan without {', '.join(x.name for x in [*dropped, g])}"
        if keep([(trial, label)])[0]["meets"]:
            kept, dropped = trial, [*dropped, g]
    return kept


def _screened(kept: list[Group], screen, graph, scores: list[dict], notes: list[str]) -> list[Group]:
    """``kept`` ordered by what each group alone in low precision costs, most first (everything else kept),
    measured on the first ``SCREEN_SAMPLES`` evaluation samples (output cosine; one batch, in parallel where cores
    allow). These are the one-at-a-time measurements that change a long plan; the second bisection, over this
    order, runs on every sample, and the plan with fewer nodes wins."""
    without = screen.many(
        [(graph([k for k in kept if k is not g]), f"screen: plan without {g.name}", (), ()) for g in kept]
    )
    by_group = {s["group"]: s for s in scores}
    for g, measured in zip(kept, without):
        by_group[g.name]["screen_loss"] = 1.0 - measured["cosine"]
    notes.append(
        f"the layer-error ranking needed many groups: each of the {len(kept)} groups was measured alone in low "
        f"precision (on {screen.samples} samples) and the plan bisected again in that order"
    )
    return sorted(kept, key=lambda g: -by_group[g.name]["screen_loss"])


def _late(deadline) -> bool:
    return bool(deadline) and time.monotonic() > deadline


def _loss(candidate: dict, budget: Budget) -> float:
    return candidate["metric"] if budget.kind == "top1" else 1.0 - candidate["cosine"]


def _ranking(model, groups: list[Group], table) -> list[dict]:
    """One score per group from the one layer-wise error pass over the all-low-precision graph, most sensitive
    first: ``added_db`` (what the group's nodes add to the compounded error, dB: an erased input shows here, where
    an energy SNR of its quantizer looks fine), then, where that is tied (deep in an all-INT8 graph the compounded
    error saturates and nothing adds more), ``quant_snr_db``: the lowest SNR of a quantizer the group's nodes read
    (each Q/DQ pair applied alone to its FP32 tensor; lower = more damage). Equal figures (to 0.1 dB) share a rank, and groups with
    no measurable error (no quantizer below ``EXACT_SNR_DB``, less than ``TIE_DB`` added) are tied last: a tie, not
    an order."""
    source = {n.name: n for n in model.proto.graph.node}
    compared = table[table["compared"].astype(bool)]
    added = compared.groupby("node")["added_db"].sum(min_count=1).to_dict()
    snr = compared.groupby("node")["snr_db"].min().to_dict()
    quantizers = table.attrs.get("quantizer_snr_db") or {}
    scores = []
    for g in groups:
        lost = [max(0.0, added[n]) for n in g.nodes if n in added and np.isfinite(added[n])]
        db = round(float(sum(lost)), 1)
        read = [
            quantizers[i]
            for n in g.nodes
            if n in source
            for i in source[n].input
            if i in quantizers and np.isfinite(quantizers[i])
        ]
        quant = round(float(min(read)), 1) if read else None
        scores.append(
            {
                "group": g.name,
                "label": f"{g.name} ({'+'.join(dict.fromkeys(source[n].op_type for n in g.nodes if n in source))})",
                "kind": g.kind,
                "nodes": list(g.nodes),
                "quant_snr_db": quant if quant is not None and quant < EXACT_SNR_DB else None,
                "added_db": db if db >= TIE_DB else 0.0,
                "snr_db": min((snr[n] for n in g.nodes if n in snr), default=None),
                "loss": None,  # measured where it can change the plan (see _prune)
                "metric": None,
                "label_accuracy": None,
                "cosine": None,
            }
        )

    def key(s):
        quant = s["quant_snr_db"]
        return (-s["added_db"], quant if quant is not None else EXACT_SNR_DB)

    scores.sort(key=key)
    for i, s in enumerate(scores):
        s["rank"] = scores[i - 1]["rank"] if i and key(s) == key(scores[i - 1]) else i + 1
    for s in scores:
        s["tie"] = sum(t["rank"] == s["rank"] for t in scores) > 1
    return scores


def _verdict(precision: str, reference: dict, low: dict, plan: dict) -> dict:
    """Does the plan pay off: faster than FP32 (by more than ``FASTER``) on the backend that timed both?"""
    ref, ms, backend = reference["latency_ms"], plan["latency_ms"], reference["backend"]
    name = precision.upper()
    pays = ms is not None and ref is not None and ms < FASTER * ref
    if pays:
        text = (
            f"{name} pays off here: the plan runs {ms:.3g} ms against FP32's {ref:.3g} ms on "
            f"{_BACKEND_NAMES.get(backend, backend)} "
            f"({ref / ms:.2f}x faster) within the budget"
        )
    else:
        slower = (
            f"the plan runs {ms:.3g} ms against FP32's {ref:.3g} ms ({ms / ref:.2f}x FP32's time)"
            if ms and ref
            else "the plan's latency was not measured"
        )
        low_ms = low["latency_ms"]
        if low_ms and ref and low_ms >= FASTER * ref:
            why = f"even all-{precision} takes {low_ms:.3g} ms: its {name} kernels here are no faster than FP32's"
        else:
            why = f"all-{precision} is faster ({_ms(low_ms)}) but misses the budget, and the plan's mixed graph is not"
        text = f"{name} does not pay off here: {slower} on {_BACKEND_NAMES.get(backend, backend)}; {why}"
        if backend == "onnxruntime":  # the GPU story, in words: nothing here was timed with TensorRT
            text += (
                f". On TensorRT, {name} runs on a GPU's {name} kernels and can be faster than FP32: the plan (and "
                "its recipe) carries over, but measure its accuracy and latency there before deploying it"
            )
    return {"pays_off": bool(pays), "text": text}


_BACKEND_NAMES = {"onnxruntime": "ONNX Runtime (CPU)"}


def _timing_variant(model, full, proto, kept: int):
    """A Variant of an edited graph, for the latency backend (its model held in memory, not cached)."""
    if proto is full.model.proto:
        return full
    changes = {**full.changes, "summary": f"{full.changes.get('summary', '')}; {kept} node(s) read unquantized inputs"}
    return dataclasses.replace(full, model=Model(proto, name=model.name), changes=changes)


class _Evaluator:
    """Runs candidate graphs on the evaluation data against the FP32 outputs (computed once, ONNX Runtime CPU, one
    session per candidate, batched) and times the chosen ones on the latency backend (ONNX Runtime here; TensorRT
    where it builds)."""

    def __init__(
        self, model, data: dict, labels, budget: Budget, iterations: int, backend, progress: Progress, compiler=None
    ):
        self.model, self.data, self.labels, self.budget, self.progress = model, data, labels, budget, progress
        self.iterations, self.backend, self.compiler = iterations, backend, compiler
        self.reference = self._outputs(model.proto, "FP32")
        self.reference_accuracy = top1_accuracy(self.reference, labels) if labels is not None else None
        # timing: one inference (a fixed batch, or the one held state fixes) at the eval data's shapes
        self.feed = first_samples(model, data, chunk_size(model, data, 1))
        self.samples = sample_count(model, data)
        self.evaluated = 0  # candidates run on the evaluation data
        cores = os.cpu_count() or 1
        self.workers = max(1, cores // THREADS_PER_CANDIDATE)  # candidates measured at once
        self.threads = max(1, cores // self.workers)

    def _outputs(self, proto, what: str, threads: int = 0) -> dict:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            return run_in_chunks(
                lambda feed: dict(zip(names, session.run(names, feed))),
                self.model,
                self.data,
                EVAL_BATCH,
                self.progress,
                what,
            )
        except WorkbenchError:
            raise
        except Exception as e:  # noqa: BLE001 - ORT raises its own types
            raise WorkbenchError(
                f"ONNX Runtime (CPU) cannot run the {what} model ({first_line(e)}): sensitivity measures on "
                "ONNX Runtime here (bf16 graphs run only on a GPU backend)."
            ) from None

    def candidate(self, proto, label: str, kept_groups, kept_nodes, *, timed=None) -> dict:
        """``proto`` measured on the evaluation data; ``timed``: its Variant, also timed on the latency backend."""
        outputs = self._outputs(proto, f"{label} candidate", self.threads)
        self.evaluated += 1
        cosines = [output_agreement(n, outputs[n], r).cosine for n, r in self.reference.items() if n in outputs]
        cosine = float(min(cosines)) if cosines else float("nan")
        accuracy = top1_accuracy(outputs, self.labels) if self.labels is not None else None
        metric = 100 * (self.reference_accuracy - accuracy) if self.budget.kind == "top1" else cosine
        measured = {
            "label": label,
            "kept_groups": list(kept_groups),
            "kept_nodes": list(kept_nodes),
            "metric": float(metric),
            "label_accuracy": accuracy,
            "cosine": cosine,
            "latency_ms": None,
            "meets": bool(self.budget.meets(metric)),
            "variant": "",
        }
        if timed is not None:
            self.time(measured, timed)
        return measured

    def many(self, jobs: list[tuple]) -> list[dict]:
        """:meth:`candidate` of each (proto, label, kept groups, kept nodes), ``workers`` at a time."""
        for i, job in enumerate(jobs):
            self.progress.step(f"sensitivity: {job[1]}", i, len(jobs))
        if self.workers == 1 or len(jobs) == 1:
            return [self.candidate(*job) for job in jobs]
        with ThreadPoolExecutor(self.workers) as pool:  # ONNX Runtime releases the GIL while it runs
            return list(pool.map(lambda job: self.candidate(*job), jobs))

    def time(self, measured: dict, variant) -> None:
        """Add the latency (and engine facts, with a compiler) of ``measured``'s ``variant``."""
        measured["latency_ms"] = self.latency(variant)
        measured["variant"] = str(variant.path or "")
        if self.compiler is not None:
            measured.update(self.compiled(variant))

    def compiled(self, variant) -> dict:
        """What TensorRT-RTX reports for ``variant``'s engine (built for the target architecture, not run)."""
        backend, arch = self.compiler
        shapes = tuple((k, tuple(v.shape)) for k, v in self.feed.items())
        report = backend.compile(
            variant, BuildConfig(precision=variant.precision, shapes=shapes), self.progress, arch=arch
        ).compiled
        return {
            "engine_target": report.target,
            "engine_layers": report.engine_layers,
            "engine_activation_bytes": report.activation_memory_bytes,
            "engine_weights_bytes": report.weights_memory_bytes,
        }

    def latency(self, variant) -> float:
        """p50 latency of ``variant`` on the chosen backend: one engine, one evaluation sample, a warm-up of
        ``WARMUP_RUNS`` runs then ``iterations`` timed runs, or fewer (not under ``MIN_TIMED_RUNS``) once they
        took ``TIMING_SECONDS`` (a slow Q/DQ graph on a CPU); no per-layer profile: the plan's run has one."""
        config = BuildConfig(precision=variant.precision, iterations=self.iterations, warmup_ms=20, trials=1)
        with self.backend.build(variant, config, self.progress) as engine:
            if engine.infer is None:  # no Python inference call on this backend: its own timed profile
                return float(self.backend.profile(engine, self.feed, config, self.progress).latency.p50_ms)
            for _ in range(WARMUP_RUNS):
                engine.infer(self.feed)
            times: list[float] = []
            while len(times) < self.iterations and (len(times) < MIN_TIMED_RUNS or sum(times) < TIMING_SECONDS):
                start = time.perf_counter()
                engine.infer(self.feed)
                times.append(time.perf_counter() - start)
        return float(1000 * np.median(times))


def _compiler(arch: str | None):
    """(TensorRT-RTX backend, arch) when engine facts were asked for (``arch``; ``"auto"``: its default target)."""
    if arch is None:
        return None
    from ..backends import get_backend

    backend = get_backend("tensorrt-rtx")
    ok, reason = backend.can_compile()
    if not ok:
        raise WorkbenchError(f"Engine layer counts and memory need the TensorRT-RTX compiler: {reason}")
    return backend, None if arch == "auto" else arch


# ---- what changed, and groups -------------------------------------------------------------------------------


def changed_nodes(variant) -> list[str]:
    """Source node names the low-precision transform changed, in graph order: Q/DQ-fed nodes (int8/fp8), or nodes
    whose output became float16/bfloat16 (fp16/bf16)."""
    source = [n.name for n in variant.source.proto.graph.node]
    graph = variant.model.proto.graph
    if variant.precision in ("int8", "fp8"):
        dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        fed = {n.name for n in graph.node if any(i in dq for i in n.input)}
        return [n for n in source if n in fed]
    from .layer_error import _typed

    typed = _typed(variant.model.proto)
    low = set()
    for n in graph.node:
        if n.op_type == "Cast" or not n.output:
            continue
        info = typed.get(n.output[0])
        if info is not None and info.type.tensor_type.elem_type in (10, 16):
            low.add(n.name)
    return [n for n in source if n in low]


def find_groups(model, changed: list[str], group_by: str = "block", scope_depth: int = 3) -> list[Group]:
    """Groups of the changed nodes (see the module docstring), in graph order."""
    if group_by == "node":
        kinds = {n.name: n.op_type for n in model.proto.graph.node}
        return [Group(n, kinds.get(n, "node"), (n,)) for n in changed]
    if group_by == "scope":
        scopes: dict[str, list[str]] = {}
        for n in changed:
            parts = [p for p in n.split("/") if p]
            scope = "/" + "/".join(parts[: max(1, min(scope_depth, len(parts) - 1))])
            scopes.setdefault(scope, []).append(n)
        return [Group(s, "scope", tuple(ns)) for s, ns in scopes.items()]
    return _blocks(model, changed)


def _blocks(model, changed: list[str]) -> list[Group]:
    graph = model.proto.graph
    nodes = {n.name: n for n in graph.node}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }

    def single_next(node):
        outs = consumers.get(node.output[0], []) if node.output else []
        return outs[0] if len(outs) == 1 else None

    taken: set[str] = set()
    groups = []
    for name in changed:
        if name in taken or name not in nodes:
            continue
        node = nodes[name]
        members, kind = [node], node.op_type
        if node.op_type == "MatMul" and _attention(node, single_next, consumers):
            members, kind = _attention(node, single_next, consumers), "attention"
        elif node.op_type in _LINEAR:
            nxt, tail = single_next(node), []
            while nxt is not None and (
                nxt.op_type in _ACTIVATIONS
                or nxt.op_type == "BatchNormalization"
                or (nxt.op_type in ("Add", "Mul") and any(i in constants for i in nxt.input))
            ):
                tail.append(nxt)
                nxt = single_next(nxt)
            members += tail
            base = "conv" if node.op_type.startswith("Conv") else "linear"
            kind = (
                base
                + ("+bn" if any(t.op_type == "BatchNormalization" for t in tail) else "")
                + ("+act" if any(t.op_type in _ACTIVATIONS for t in tail) else "")
            )
        elif node.op_type == "LayerNormalization":
            kind = "layernorm"
        elif node.op_type == "Add" and not any(i in constants for i in node.input):
            kind = "residual add"
        names = tuple(m.name for m in members if m.name not in taken)
        taken.update(names)
        groups.append(Group(name, kind, names))
    return groups


def _attention(node, single_next, consumers):
    """MatMul -> [Div/Mul/Add/Where/Cast]* -> Softmax -> MatMul: the nodes of that attention core, else None."""
    chain, nxt = [node], single_next(node)
    while nxt is not None and nxt.op_type in _ATTENTION_BETWEEN:
        chain.append(nxt)
        nxt = single_next(nxt)
    if nxt is None or nxt.op_type != "Softmax":
        return None
    chain.append(nxt)
    after = single_next(nxt)
    while after is not None and after.op_type == "Cast":
        chain.append(after)
        after = single_next(after)
    if after is None or after.op_type != "MatMul":
        return None
    return [*chain, after]


__all__ = ["Budget", "Group", "Sensitivity", "changed_nodes", "find_groups", "parse_budget", "search_plan"]
