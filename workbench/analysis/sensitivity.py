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
5. **The answer.** FP32, the all-low-precision variant and the plan are timed alternately in one session
   (``ALTERNATE_ROUNDS`` rounds, each one trial of every variant in turn, on the best backend here: TensorRT where
   it builds, else ONNX Runtime), so that all three see the same machine; the plan's speed-up over FP32 is the
   paired ratio with its 95% interval (:func:`workbench.results.stats.paired_difference`). ``verdict`` says first
   whether the plan pays off there: only a significant speed-up is claimed, and a quantized plan that keeps every
   quantized node (no Q/DQ pair left) is named for what it runs in (``plan_precision``: fp16, or fp32 with
   ``high_precision_dtype='fp32'``), its recipe too, never as an INT8 plan. No TensorRT figure is given unless
   TensorRT measured it. ``max_minutes`` bounds the search from its start, the one calibration included (a
   calibration the limit ends is a one-line error naming the fix).

Budgets: ``"top1:0.5"`` (at most 0.5 points of top-1 below FP32; needs labels) or ``"cosine:0.999"`` (every
output's cosine to FP32 at least 0.999). A bare number is points of top-1 with labels, a cosine without.

:class:`Sensitivity` keeps everything (``to_dict()`` is what a Run's ``sensitivity`` field holds; see
:mod:`workbench.results.run`): ``scores`` (one dict per group: ``group, label`` (node name and op types), ``kind,
nodes, added_db, quant_snr_db, snr_db, loss, metric, label_accuracy, cosine, rank, tie, in_plan``; ``loss`` and the
metrics are measured only for the plan's groups), ``candidates`` (``label, kept_groups, kept_nodes, metric,
label_accuracy, cosine, latency_ms`` (None when not timed), ``meets, variant``; the first is the all-low-precision
variant), ``plan`` (the chosen candidate), ``recipe`` (see :mod:`workbench.precision.recipe`), ``verdict``,
``evaluations``, ``notes`` (the calibration warnings among them, once), ``plan_precision``.
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
from ..errors import Cancelled, WorkbenchError, first_line
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
MIN_TRIAL_RUNS = 3  # timed runs per trial of the alternate session, at least (a slow graph on a CPU)
ALTERNATE_ROUNDS = 5  # rounds of the session that times FP32, all-low and the plan alternately (the verdict)
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
    # {"pays_off": bool, "text": str, "plan_vs_fp32": {ratio, low, high, significant} | None, "plan_precision"}:
    # the plan against FP32, timed alternately in one session
    verdict: dict | None = None
    plan_precision: str = ""  # what the plan runs in: the searched precision, or fp16/fp32 when no Q/DQ pair is left

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
            named = self.plan_precision or self.precision
            lines.append(
                f"plan{'' if named == self.precision else f' ({named.upper()}: no {self.precision.upper()} node left)'}"
                f": keep {len(plan['kept_nodes'])} node(s) ({len(plan['kept_groups'])} group(s)) in "
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
    deadline: float | None = None,
    **variant_options,
) -> Sensitivity:
    """Rank the groups of ``model`` by the error ``precision`` adds in each, and find the fewest to keep in higher
    precision to meet ``budget`` (see the module docstring). ``eval_data``: arrays / .npz of the model's inputs
    (with an optional ``labels`` array); ``variant_options`` go to the calibrated variant (``calibration=``...).
    Accuracy is measured on ONNX Runtime (CPU); latency on ``backend`` (``auto``: TensorRT where it builds, else ONNX
    Runtime). ``layer_errors``: keep the layer-wise error table in the result (it is computed anyway: it is the
    first ranking). ``compile_arch`` (``"sm89"``, ``"auto"``...): also compile every timed candidate with
    TensorRT-RTX for that GPU architecture (no GPU needed) and keep its engine layer count and memory plan
    (``engine_layers``, ``engine_activation_bytes``, ``engine_weights_bytes``). ``max_minutes`` bounds the whole
    search, the calibration included (``deadline``: a ``time.monotonic()`` instant set by a caller that bounds
    more than the search; the earlier of the two holds)."""
    started = time.monotonic()
    if max_minutes is not None:
        max_minutes = check_number(max_minutes, 0.01, 10_080.0, "time limit (minutes)", integer=False)
    max_samples = check_number(max_samples, 1, 10_000_000, "number of evaluation samples", integer=True)
    scope_depth = check_number(scope_depth, 1, 1_000, "scope depth", integer=True)
    timing_iterations = check_number(timing_iterations, 1, 1_000_000, "timing iterations", integer=True)
    if max_minutes:
        deadline = min(deadline or float("inf"), started + 60 * max_minutes)
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
    search = PlanSearch(model, precision, evaluator, variant_options, deadline, progress)
    found = search.run(group_by, scope_depth)
    return dataclasses.replace(
        found,
        group_by=group_by,
        samples=count,
        seconds=round(time.monotonic() - started, 2),
        layer_error=found.layer_error if layer_errors else (),
    )


class PlanSearch:
    """One search for a plan (see the module docstring), its state named: the one calibrated variant (``full``),
    the groups ranked (``ordered``), every candidate measured (``candidates``, and ``tried`` by kept groups), the
    AutoCast variants of fp16/bf16 candidates (``autocast``), the screening evaluators (``screens``), the ModelOpt
    variants made (``variants_built``) and what the search has to say (``notes``). ``deadline`` (a
    ``time.monotonic()`` instant, or None) ends the bisection and the pruning early, with a note."""

    def __init__(self, model, precision: str, evaluator, variant_options: dict, deadline, progress: Progress):
        self.model, self.precision, self.evaluator = model, precision, evaluator
        self.variant_options, self.deadline, self.progress = variant_options, deadline, progress
        self.notes: list[str] = []
        self.variants_built = 0
        self.candidates: list[dict] = []
        self.tried: dict[tuple, dict] = {}
        self.autocast: dict[tuple, object] = {}
        self.screens: list[_Evaluator] = []
        self.full = None
        self.ordered: list[Group] = []
        self.measuring_s = 0.0  # wall time spent making and measuring candidates (what screening is estimated by)

    @property
    def late(self) -> bool:
        return _late(self.deadline)

    def variant(self, keep: list[str], label: str, *, bounded: bool = False):
        """The ModelOpt variant with the nodes ``keep`` in higher precision (what a recipe keeping them builds).
        ``bounded``: the deadline stops it (the one calibration, which can take longer than the whole limit): a
        one-line error naming the limit, instead of a search that ends long after it."""
        self.progress.check()  # a cached variant does not look at progress: cancel is honoured here too
        options = self.variant_options
        if keep:
            options = dict(options, **exclusion_options(self.precision, keep, options))
        self.progress.step(f"sensitivity: {label}", 0, 1)
        self.variants_built += 1
        progress = _Until(self.progress, self.deadline) if bounded and self.deadline else self.progress
        with collected(logging.WARNING) as said:
            try:
                made = make_variant(self.model, self.precision, progress=progress, **options)
            except Cancelled:
                if not self.late or self.progress.cancelled:
                    raise
                raise WorkbenchError(
                    f"The time limit ended during the {self.precision} calibration ({label}): give fewer "
                    "calibration samples, calibration_method='max' (--calib-method max, the default) rather than "
                    "entropy, or a longer --max-minutes."
                ) from None
        self.notes.extend(text for text in said if text not in self.notes)
        self.progress.step(f"sensitivity: {label}", 1, 1)
        return made

    def graph(self, kept: list[Group]):
        """The candidate keeping ``kept`` in higher precision: Q/DQ pairs edited out of the calibrated graph
        (int8/fp8), or an AutoCast variant (fp16/bf16 have no calibration to share)."""
        if Precision(self.precision).quantized:
            return keep_unquantized(self.full.model.proto, _nodes(kept))
        self.autocast[_key(kept)] = self.variant(_nodes(kept), f"keep {len(kept)} groups")
        return self.autocast[_key(kept)].model.proto

    def keep(self, kept_sets: list[tuple[list[Group], str]], timed: bool = False) -> list[dict]:
        """Measure each (kept groups, label) not measured yet (in parallel where cores allow); their results."""
        new = [(k, label) for k, label in kept_sets if _key(k) not in self.tried]
        started = time.monotonic()
        jobs = [(self.graph(kept), label, [g.name for g in kept], _nodes(kept)) for kept, label in new]
        for (kept, _), measured in zip(new, self.evaluator.many(jobs)):
            self.tried[_key(kept)] = measured
            self.candidates.append(measured)
        self.measuring_s += time.monotonic() - started
        results = [self.tried[_key(k)] for k, _ in kept_sets]
        if timed:
            for (kept, _), measured in zip(kept_sets, results):
                if measured["latency_ms"] is None:
                    self.evaluator.time(measured, self.timing_variant(kept))
        return results

    def timing_variant(self, kept: list[Group]):
        """The Variant the latency backend builds for the candidate keeping ``kept``."""
        return self.autocast.get(_key(kept)) or _timing_variant(
            self.model, self.full, self.graph(kept), len(_nodes(kept))
        )

    def bisect(self, ranked: list[Group], what: str) -> list[Group]:
        """The shortest prefix of ``ranked`` that meets the budget (all of it does): ceil(log2(len)) evaluations."""
        lo, hi = 0, len(ranked)
        while hi - lo > 1:
            if self.late:
                self.notes.append(
                    f"the bisection over the {what} groups stopped at the time limit at {hi} groups (the smallest "
                    "measured prefix that meets the budget)"
                )
                break
            mid = (lo + hi) // 2
            if self.keep([(ranked[:mid], f"keep {what} {mid}")])[0]["meets"]:
                hi = mid
            else:
                lo = mid
        return ranked[:hi]

    def run(self, group_by: str, scope_depth: int) -> Sensitivity:
        """Calibrate once, rank, find and prune the plan, then time FP32, the all-low variant and the plan
        alternately (the verdict)."""
        model, precision, evaluator, budget = self.model, self.precision, self.evaluator, self.evaluator.budget
        self.full = full = self.variant([], f"all {precision} (the one calibration)", bounded=True)
        changed = changed_nodes(full)
        if not changed:
            why = full.changes.get("nothing_quantized") or f"The {precision} variant of '{model.name}' changed no node"
            raise WorkbenchError(f"{why}: there is nothing to rank; profile it in FP32 or FP16 instead.")
        groups = find_groups(model, changed, group_by, scope_depth)
        low = evaluator.candidate(full.model.proto, f"all {precision}", (), ())
        self.candidates.append(low)
        from .layer_error import layer_error

        # one pass over the all-low-precision graph, every intermediate tensor exposed: the first ranking
        table = layer_error(full, evaluator.data, max_samples=LAYER_SAMPLES, progress=self.progress)
        if overflowed := table.attrs["not_finite"]:
            self.notes.append(
                f"FP32 itself gives inf/NaN in {len(overflowed)} tensor(s) on the evaluation data (first: "
                f"'{overflowed[0]}'): those are not scored; check that the evaluation data is what the model expects"
            )
        scores = _ranking(model, groups, table)
        by_name = {g.name: g for g in groups}
        self.ordered = ordered = [by_name[s["group"]] for s in scores]

        if low["meets"]:
            self.notes.append(f"all-{precision} already meets the budget: nothing needs higher precision")
            plan, kept = low, []
        else:
            (upper,) = self.keep([(ordered, f"keep all {len(ordered)} groups")], timed=True)
            if not upper["meets"]:
                raise WorkbenchError(
                    f"No plan meets the budget ({budget}): even with all {len(ordered)} groups in higher "
                    f"precision {_fmt_metric(upper, dataclasses.asdict(budget))}; loosen --budget, or use "
                    "high_precision_dtype='fp32' for the kept nodes."
                )
            kept = self.bisect(ordered, "top")
            if len(kept) > PRUNE_LIMIT and self.screening_fits(len(ordered)):  # too many to prune one by one
                subset = first_samples(model, evaluator.data, SCREEN_SAMPLES)
                screen = _Evaluator(
                    model, subset, None, Budget("cosine", 1.0), evaluator.iterations, evaluator.backend, self.progress
                )
                self.screens.append(screen)
                second = self.bisect(self.screened(ordered, screen, scores), "most costly")
                kept = min(kept, second, key=lambda k: len(_nodes(k)))
            kept = self.prune(kept, scores)
            label = f"keep top {len(kept)}" if kept == ordered[: len(kept)] else f"plan ({len(kept)} groups)"
            (plan,) = self.keep([(kept, label)])
        plan_groups = set(plan["kept_groups"])
        for s in scores:
            s["in_plan"] = s["group"] in plan_groups
        plan_precision, plan_note = self.plan_precision(kept)
        if plan_note:
            self.notes.append(plan_note)
        reference = {"label_accuracy": evaluator.reference_accuracy, "backend": str(evaluator.backend.name)}
        plan_variant = full if plan is low else self.timing_variant(kept)
        session = evaluator.time_alternately({"fp32": make_variant(model), "low": full, "plan": plan_variant})
        reference["latency_ms"] = session["fp32"]["latency_ms"]
        evaluator.time(low, full, session["low"])
        evaluator.time(plan, plan_variant, session["plan"])
        verdict = _verdict(precision, reference, low, plan, session, plan_precision)
        recipe = make_recipe(
            model,
            plan_precision,
            plan["kept_nodes"] if plan_precision == precision else [],
            self.variant_options if plan_precision == precision else {},
            budget=dataclasses.asdict(budget),
            measured={k: plan[k] for k in ("metric", "label_accuracy", "cosine", "latency_ms")},
        )
        return Sensitivity(
            model={"name": model.name, "sha256": model.sha256, "path": str(model.path or "")},
            precision=precision,
            budget=dataclasses.asdict(budget),
            reference=reference,
            group_by=group_by,
            samples=evaluator.samples,
            scores=tuple(scores),
            candidates=tuple(self.candidates),
            plan=plan,
            recipe=recipe,
            notes=tuple(self.notes),
            variants_built=self.variants_built,
            layer_error=tuple(table.replace({np.nan: None}).to_dict("records")),
            evaluations=len(self.candidates) + sum(e.evaluated for e in self.screens),
            verdict=verdict,
            plan_precision=plan_precision,
        )

    def screening_fits(self, groups: int) -> bool:
        """Whether measuring ``groups`` candidates on ``SCREEN_SAMPLES`` samples ends before the deadline, at the
        pace candidates were measured so far (a note says when it does not)."""
        if self.deadline is None:
            return True
        measured = len(self.candidates) - 1  # the all-low candidate was measured outside keep()
        pace = self.measuring_s / max(1, measured) * min(1.0, SCREEN_SAMPLES / max(1, self.evaluator.samples))
        if not self.late and time.monotonic() + groups * pace < self.deadline:
            return True
        self.notes.append(
            f"screening the {groups} groups one by one (about {groups * pace:.0f} s) does not fit the time limit: "
            "the plan is the bisection's"
        )
        return False

    def plan_precision(self, kept: list[Group]) -> tuple[str, str]:
        """The precision the plan really runs in, and a note when it is not the one searched: an int8/fp8 plan
        that keeps every quantized node leaves no Q/DQ pair, so it is an FP16 plan (ModelOpt's high-precision
        dtype) or an FP32 one, and is named and recorded so."""
        if not Precision(self.precision).quantized:
            return self.precision, ""
        floating = graph_precision(self.graph(kept), self.precision)
        if floating == self.precision:
            return self.precision, ""
        return floating, (
            f"no node stays in {self.precision.upper()} within the budget: the plan has no Q/DQ pair left, so it is "
            f"an {floating.upper()} plan (its recipe says {floating}); {self.precision.upper()} gives no speed-up here"
        )

    def prune(self, kept: list[Group], scores: list[dict]) -> list[Group]:
        """Drop the kept groups the budget does not need. One measurement per kept group (the plan without it, all
        in one parallel batch: the one-at-a-time measurements that can change the plan), then the droppable ones
        are dropped, the least costly first, each drop checked by one more measurement (their effects can add
        up)."""
        if len(kept) > PRUNE_LIMIT:
            self.notes.append(f"the plan keeps {len(kept)} groups, more than {PRUNE_LIMIT}: it was not pruned")
        if len(kept) <= 1 or len(kept) > PRUNE_LIMIT or self.late:
            return kept
        budget = self.evaluator.budget
        without = self.keep([([k for k in kept if k is not g], f"plan without {g.name}") for g in kept])
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
            if self.late:
                self.notes.append("pruning stopped at the time limit: the plan may keep a group it does not need")
                break
            trial = [k for k in kept if k is not g]
            label = f"plan without {', '.join(x.name for x in [*dropped, g])}"
            if self.keep([(trial, label)])[0]["meets"]:
                kept, dropped = trial, [*dropped, g]
        return kept

    def screened(self, kept: list[Group], screen, scores: list[dict]) -> list[Group]:
        """``kept`` ordered by what each group alone in low precision costs, most first (everything else kept),
        measured on the first ``SCREEN_SAMPLES`` evaluation samples (output cosine; one batch, in parallel where
        cores allow). These are the one-at-a-time measurements that change a long plan; the second bisection, over
        this order, runs on every sample, and the plan with fewer nodes wins."""
        without = screen.many(
            [(self.graph([k for k in kept if k is not g]), f"screen: plan without {g.name}", (), ()) for g in kept]
        )
        by_group = {s["group"]: s for s in scores}
        for g, measured in zip(kept, without):
            by_group[g.name]["screen_loss"] = 1.0 - measured["cosine"]
        self.notes.append(
            f"the layer-error ranking needed many groups: each of the {len(kept)} groups was measured alone in low "
            f"precision (on {screen.samples} samples) and the plan bisected again in that order"
        )
        return sorted(kept, key=lambda g: -by_group[g.name]["screen_loss"])


class _Until(Progress):
    """``inner``'s progress that also stops at ``deadline`` (a ``time.monotonic()`` instant): :meth:`step` returns
    False and :meth:`check` raises :class:`~workbench.errors.Cancelled` once it has passed."""

    def __init__(self, inner: Progress, deadline: float):
        super().__init__()
        self.inner, self.deadline = inner, deadline

    def step(self, phase: str, step: int, total: int = 0) -> bool:
        return self.inner.step(phase, step, total) and not _late(self.deadline)

    def check(self) -> None:
        self.inner.check()
        if _late(self.deadline):
            raise Cancelled("The time limit has passed.")

    @property
    def cancelled(self) -> bool:
        return self.inner.cancelled or _late(self.deadline)

    def shown(self, note: str) -> bool:
        return self.inner.shown(note)


def _key(kept: list[Group]) -> tuple:
    return tuple(sorted(g.name for g in kept))


def _nodes(kept: list[Group]) -> list[str]:
    return [n for g in kept for n in g.nodes]


def graph_precision(graph, quantized: str = "int8") -> str:
    """What a graph made by a ``quantized`` (int8/fp8) search runs in: ``quantized`` while a Q/DQ pair on a
    computed tensor is left, else ``fp16`` where float16 tensors remain (ModelOpt's high-precision dtype), else
    ``fp32``."""
    nodes = graph.graph.node
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") and _activation_qdq(n, graph) for n in nodes):
        return quantized
    return "fp16" if _has_float16(graph) else "fp32"


def _activation_qdq(node, graph) -> bool:
    """A Q/DQ node on a computed tensor (an activation), not one that only dequantizes a stored weight."""
    stored = {t.name for t in graph.graph.initializer}
    return node.input[0] not in stored if node.input else False


def _has_float16(graph) -> bool:
    """Whether any initializer, cast or declared value of ``graph`` is float16 (ONNX type 10)."""
    g = graph.graph
    if any(t.data_type == 10 for t in g.initializer):
        return True
    if any(n.op_type == "Cast" and any(a.name == "to" and a.i == 10 for a in n.attribute) for n in g.node):
        return True
    return any(v.type.tensor_type.elem_type == 10 for v in (*g.value_info, *g.input, *g.output))


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


def _verdict(precision: str, reference: dict, low: dict, plan: dict, session: dict, plan_precision: str) -> dict:
    """Does the plan pay off: significantly faster than FP32 on the backend that timed both, alternately in one
    session (:meth:`_Evaluator.time_alternately`)? A speed-up inside the noise is not claimed, and a plan that
    left no node in ``precision`` is named for the precision it runs in."""
    ref, ms, backend = reference["latency_ms"], plan["latency_ms"], reference["backend"]
    name, where = precision.upper(), _BACKEND_NAMES.get(backend, backend)
    against = session["plan"].get("against_fp32")
    low_against = session["low"].get("against_fp32")
    pays = plan_precision == precision and against is not None and against.significant and against.ratio < 1
    timed = f"timed alternately with FP32 in one session, {session['fp32']['rounds']} rounds"
    if pays:
        text = (
            f"{name} pays off here: the plan runs {ms:.3g} ms against FP32's {ref:.3g} ms on {where} "
            f"({against.text()}; {timed}) within the budget"
        )
    else:
        measured = (
            f"the plan runs {ms:.3g} ms against FP32's {ref:.3g} ms ({against.text() if against else 'not compared'}; "
            f"{timed})"
            if ms and ref
            else "the plan's latency was not measured"
        )
        low_ms = low["latency_ms"]
        if plan_precision != precision:
            why = (
                f"no node stays in {name} within the budget: the plan is {plan_precision.upper()} "
                f"(no Q/DQ pair left), and any speed-up it has is {plan_precision.upper()}'s, not {name}'s"
            )
        elif low_against is None or not (low_against.significant and low_against.ratio < 1):
            why = (
                f"even all-{precision} ({_ms(low_ms)}: {low_against.text() if low_against else 'not compared'}) "
                f"is not significantly faster: its {name} kernels here are no faster than FP32's"
            )
        else:
            why = (
                f"all-{precision} is faster ({_ms(low_ms)}: {low_against.text()}) but misses the budget, and "
                "the plan's mixed graph is not significantly faster"
            )
        text = f"{name} does not pay off here: {measured} on {where}; {why}"
        if backend == "onnxruntime":  # the GPU story, in words: nothing here was timed with TensorRT
            text += (
                f". On TensorRT, {name} runs on a GPU's {name} kernels and can be faster than FP32: the plan (and "
                "its recipe) carries over, but measure its accuracy and latency there before deploying it"
            )
    speedup = (
        {"ratio": against.ratio, "low": against.low, "high": against.high, "significant": against.significant}
        if against
        else None
    )
    return {"pays_off": bool(pays), "text": text, "plan_vs_fp32": speedup, "plan_precision": plan_precision}


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
        from ..model.session_probe import ort_session

        try:
            session = ort_session(proto.SerializeToString(), log=3, intra_op_num_threads=threads)
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

    def time(self, measured: dict, variant, timed: dict | None = None) -> None:
        """Add the latency (and engine facts, with a compiler) of ``measured``'s ``variant``; ``timed``: its entry
        of :meth:`time_alternately` (else it is timed alone)."""
        measured["latency_ms"] = timed["latency_ms"] if timed else self.latency(variant)
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

    def time_alternately(self, variants: dict, rounds: int = ALTERNATE_ROUNDS) -> dict:
        """``{name: {"latency_ms", "rounds", "against_fp32"}}``: every variant built once and timed in ``rounds``
        rounds, each round one trial of every variant in turn (:func:`workbench.backends.timing.alternate_trials`),
        so FP32 and the candidates see the same machine. A trial is ``iterations`` runs, or fewer (not under
        ``MIN_TRIAL_RUNS``) once it took ``TIMING_SECONDS`` / ``rounds``; ``against_fp32`` is the paired
        :class:`~workbench.results.stats.Difference` against ``variants["fp32"]``."""
        from ..backends.timing import alternate_trials
        from ..results.stats import paired_difference

        budget_s = TIMING_SECONDS / rounds
        engines, timers = [], []
        try:
            for variant in variants.values():
                config = BuildConfig(precision=variant.precision, iterations=self.iterations, trials=rounds)
                engine = self.backend.build(variant, config, self.progress)
                engines.append(engine)
                if engine.infer is None:
                    raise WorkbenchError(
                        f"The {self.backend.name} engine has no inference call to time alternately: "
                        "profile the plan and FP32 with 'workbench compare --interleave'."
                    )
                timers.append(
                    (_warm(engine.infer, self.feed), _trial(engine.infer, self.feed, self.iterations, budget_s))
                )
            timed = alternate_trials(timers, BuildConfig(trials=rounds), self.progress)
        finally:
            for engine in engines:
                engine.close()
        # each variant's samples, trial by trial
        samples = {
            name: np.split(t.times_ms, np.cumsum([r.samples for r in t.trials])[:-1])
            for name, t in zip(variants, timed)
        }
        return {
            name: {
                "latency_ms": float(t.timing().median_ms),
                "rounds": rounds,
                "against_fp32": None if name == "fp32" else paired_difference(samples["fp32"], samples[name]),
            }
            for name, t in zip(variants, timed)
        }


def _warm(infer, feed):
    """The warm-up before each trial: ``WARMUP_RUNS`` runs the first time (allocations, weight reorders), then one."""
    runs = WARMUP_RUNS

    def warm():
        nonlocal runs
        for _ in range(runs):
            infer(feed)
        runs = 1

    return warm


def _trial(infer, feed, iterations: int, budget_s: float):
    """One timed trial: ``iterations`` runs, or fewer (not under ``MIN_TRIAL_RUNS``) once they took ``budget_s``."""

    def trial(label):
        times: list[float] = []
        clock = time.perf_counter
        start = clock()
        while len(times) < iterations and (len(times) < MIN_TRIAL_RUNS or clock() - start < budget_s):
            t0 = clock()
            infer(feed)
            times.append((clock() - t0) * 1000)
        return times, clock() - start

    return trial


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
        if node.op_type == "MatMul" and (attention := _attention(node, single_next)):
            members, kind = attention, "attention"
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


def _attention(node, single_next):
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


__all__ = [
    "Budget",
    "Group",
    "PlanSearch",
    "Sensitivity",
    "changed_nodes",
    "find_groups",
    "graph_precision",
    "parse_budget",
    "search_plan",
]
