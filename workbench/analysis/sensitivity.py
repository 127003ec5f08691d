"""Which layers lose accuracy in low precision, and the fewest nodes to keep in higher precision (a plan).

Method (every figure below is measured: real ModelOpt variants run on ONNX Runtime, CPU):

1. **Groups.** The nodes the full low-precision variant changed (for INT8/FP8: the nodes ModelOpt fed through a
   DequantizeLinear; for FP16/BF16: the nodes AutoCast converted) are gathered into groups, by ``group_by``:
   ``"block"`` (default) fuses a Conv/Gemm/MatMul with the BatchNormalization, bias Add and activation after it
   (``conv+bn+act``, ``linear+act``), the MatMul -> [scale/mask] -> Softmax -> MatMul core of an attention
   (``attention``), a ``LayerNormalization`` (``layernorm``) and an Add of two computed tensors (``residual add``);
   ``"node"`` makes one group per changed node; ``"scope"`` groups by the first ``scope_depth`` parts of the node
   names (``/encoder/layer.0/attention/...``: one group per block of an exported transformer).
2. **Ranking.** Each group alone is put in low precision (everything else stays in the high precision) and the
   task metric is measured on the evaluation data: top-1 accuracy with labels, otherwise the lowest cosine
   similarity of an output to FP32. A group's ``loss`` is what it alone costs (points of top-1, or 1 - cosine).
   This isolates each group: the other way round (everything low except the group) masks a group whose damage
   only shows once another damaged group is fixed — two compounding culprits both look harmless.
3. **Plan.** Groups are kept in higher precision in ranking order; a bisection over the number kept finds the
   shortest prefix of the ranking that meets the budget, then each kept group is dropped again where the budget
   still holds (pruning). Every candidate plan is a real variant (``exclude_nodes`` / ``keep_fp32_nodes``) whose
   accuracy (ONNX Runtime, CPU) and latency (p50 on the best backend here: TensorRT where it builds, else ONNX
   Runtime) are measured; the candidates draw the accuracy/latency Pareto.

Budgets: ``"top1:0.5"`` (at most 0.5 points of top-1 below FP32; needs labels) or ``"cosine:0.999"`` (every
output's cosine to FP32 at least 0.999). A bare number is points of top-1 with labels, a cosine without.

:class:`Sensitivity` keeps everything (``to_dict()`` is what a Run's ``sensitivity`` field holds; see
:mod:`workbench.results.run`): ``scores`` (one dict per group: ``group, kind, nodes, loss, metric, label_accuracy,
cosine, rank``), ``candidates`` (``label, kept_groups, kept_nodes, metric, label_accuracy, cosine, latency_ms,
meets``; the first is the all-low-precision variant), ``plan`` (the chosen candidate), ``recipe`` (see
:mod:`workbench.precision.recipe`), ``notes``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from ..backends import choose_backend
from ..config import BuildConfig, check_number
from ..errors import WorkbenchError
from ..model.inputs import load_inputs
from ..model.onnx_model import load_model
from ..precision.accuracy import (
    _CannotRun,
    _label_accuracy,
    _run_onnxruntime,
    output_agreement,
)
from ..precision.recipe import exclusion_options, make_recipe
from ..precision.variant import make_variant
from ..progress import Progress, ensure

LOW_PRECISIONS = ("int8", "fp8", "fp16", "bf16")
GROUPINGS = ("block", "node", "scope")
PRUNE_LIMIT = 8  # prune plans of at most this many groups (one measured candidate per group)
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

    @property
    def all_low(self) -> dict:
        return self.candidates[0]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Sensitivity | None:
        if not d:
            return None
        d = dict(d)
        for key in ("scores", "candidates", "notes", "layer_error"):
            d[key] = tuple(d.get(key) or ())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def scores_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.scores))

    def candidates_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.candidates))

    def summary(self) -> str:
        low, plan = self.all_low, self.plan
        what = "top-1" if self.budget["kind"] == "top1" else "cosine"
        lines = [
            (
                f"{self.model.get('name')}: all-{self.precision} {what} {_fmt_metric(low, self.budget)}, "
                f"latency {low['latency_ms']:.4g} ms; budget: {Budget(**self.budget)}"
            )
        ]
        if plan is not None:
            lines.append(
                f"plan: keep {len(plan['kept_nodes'])} node(s) ({len(plan['kept_groups'])} group(s)) in "
                f"higher precision -> {what} {_fmt_metric(plan, self.budget)}, latency "
                f"{plan['latency_ms']:.4g} ms"
            )
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


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
    """Rank the groups of ``model`` by what ``precision`` costs each alone, and find the fewest to keep in higher
    precision to meet ``budget`` (see the module docstring). ``eval_data``: arrays / .npz of the model's inputs
    (with an optional ``labels`` array); ``variant_options`` go to every variant (``calibration=``...). Accuracy is
    measured on ONNX Runtime (CPU); latency on ``backend`` (``auto``: TensorRT where it builds, else ONNX Runtime).
    ``compile_arch`` (``"sm89"``, ``"auto"``...): also compile every timed candidate with TensorRT-RTX for that GPU
    architecture (no GPU needed) and keep its engine layer count and memory plan (``engine_layers``,
    ``engine_activation_bytes``, ``engine_weights_bytes``)."""
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
    samples = {v.shape[0] for v in data.values()}
    if len(samples) != 1:
        raise WorkbenchError(
            f"Evaluation inputs have different sample counts {sorted(samples)}: give every input "
            "the same number of samples along the first axis."
        )
    count = min(samples.pop(), max_samples)
    data = {k: v[:count] for k, v in data.items()}
    if labels is not None:
        labels = np.asarray(labels)[:count]
    the_budget = parse_budget(budget, labels is not None)
    chosen, why = choose_backend(backend)
    progress.step(f"Latency backend: {why}", 0, 0)
    compiler = _compiler(compile_arch)
    evaluator = _Evaluator(model, data, labels, the_budget, timing_iterations, chosen, progress, compiler)
    built = {"n": 0}

    def variant(keep: list[str], label: str):
        """The variant with the nodes ``keep`` in higher precision (exactly what a recipe keeping them builds)."""
        progress.check()  # a cached variant does not look at progress: cancel is honoured here too
        options = dict(variant_options, **exclusion_options(precision, keep, variant_options))
        progress.step(f"sensitivity: {label}", 0, 0)
        built["n"] += 1
        return make_variant(model, precision, progress=progress, **options)

    notes: list[str] = []
    full = variant([], f"all {precision}")
    changed = changed_nodes(full)
    if not changed:
        raise WorkbenchError(f"The {precision} variant of '{model.name}' changed no node: there is nothing to rank.")
    groups = find_groups(model, changed, group_by, scope_depth)
    low = evaluator.candidate(full, f"all {precision}", (), (), timed=True)
    candidates = [low]
    reference = {
        "label_accuracy": evaluator.reference_accuracy,
        "latency_ms": evaluator.latency(make_variant(model)),
        "backend": str(chosen.name),
    }

    scores = []
    for i, g in enumerate(groups):
        if not progress.step("sensitivity: ranking groups", i, len(groups)):
            progress.check()
        if deadline and time.monotonic() > deadline:
            notes.append(
                f"stopped ranking after {max_minutes:g} min: {i} of {len(groups)} groups scored; the "
                "others are ranked last"
            )
            break
        others = [n.name for n in model.proto.graph.node if n.name not in g.nodes]
        measured = evaluator.candidate(variant(others, f"only {g.name}"), g.name, (), (), timed=False)
        scores.append(
            {
                "group": g.name,
                "kind": g.kind,
                "nodes": list(g.nodes),
                "loss": _loss(measured, the_budget),
                "metric": measured["metric"],
                "label_accuracy": measured["label_accuracy"],
                "cosine": measured["cosine"],
            }
        )
    progress.step("sensitivity: ranking groups", len(groups), len(groups))
    scored = {s["group"] for s in scores}
    scores.sort(key=lambda s: -s["loss"])
    scores += [
        {
            "group": g.name,
            "kind": g.kind,
            "nodes": list(g.nodes),
            "loss": None,
            "metric": None,
            "label_accuracy": None,
            "cosine": None,
        }
        for g in groups
        if g.name not in scored
    ]
    for rank, s in enumerate(scores, 1):
        s["rank"] = rank
    by_name = {g.name: g for g in groups}
    ordered = [by_name[s["group"]] for s in scores]

    tried: dict[tuple, dict] = {}

    def keep(kept: list[Group], label: str) -> dict:
        key = tuple(sorted(g.name for g in kept))
        if key not in tried:
            nodes = [n for g in kept for n in g.nodes]
            tried[key] = evaluator.candidate(variant(nodes, label), label, [g.name for g in kept], nodes, timed=True)
            candidates.append(tried[key])
        return tried[key]

    plan = None
    if low["meets"]:
        notes.append(f"all-{precision} already meets the budget: nothing needs higher precision")
        plan = low
    else:
        upper = keep(ordered, f"keep all {len(ordered)} groups")
        if not upper["meets"]:
            raise WorkbenchError(
                f"No plan meets the budget ({the_budget}): even with all {len(ordered)} groups in higher precision "
                f"{_fmt_metric(upper, dataclasses.asdict(the_budget))}; loosen --budget, or use "
                "high_precision_dtype='fp32' for the kept nodes."
            )
        lo, hi = 0, len(ordered)
        while hi - lo > 1:
            if deadline and time.monotonic() > deadline:
                notes.append(
                    f"plan search stopped after {max_minutes:g} min: the plan keeps {hi} groups (the "
                    "smallest measured prefix that meets the budget)"
                )
                break
            mid = (lo + hi) // 2
            if keep(ordered[:mid], f"keep top {mid}")["meets"]:
                hi = mid
            else:
                lo = mid
        kept = ordered[:hi]
        if len(kept) <= PRUNE_LIMIT:
            for g in reversed(list(kept)):
                if len(kept) == 1 or (deadline and time.monotonic() > deadline):
                    break
                trial = [k for k in kept if k is not g]
                if keep(trial, f"keep top {hi} without {g.name}")["meets"]:
                    kept = trial
        plan = keep(kept, f"keep top {len(kept)}")
    recipe = make_recipe(
        model,
        precision,
        plan["kept_nodes"],
        variant_options,
        budget=dataclasses.asdict(the_budget),
        measured={k: plan[k] for k in ("metric", "label_accuracy", "cosine", "latency_ms")},
    )
    errors = ()
    if layer_errors:
        from .layer_error import layer_error

        table = layer_error(full, data, progress=progress)
        errors = tuple(table.replace({np.nan: None}).to_dict("records"))
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
        layer_error=errors,
    )


def _loss(candidate: dict, budget: Budget) -> float:
    return candidate["metric"] if budget.kind == "top1" else 1.0 - candidate["cosine"]


class _Evaluator:
    """Runs variants on the evaluation data against the FP32 outputs (computed once, ONNX Runtime CPU) and times
    them on the chosen backend (ONNX Runtime here; TensorRT where it builds)."""

    def __init__(
        self, model, data: dict, labels, budget: Budget, iterations: int, backend, progress: Progress, compiler=None
    ):
        self.model, self.data, self.labels, self.budget, self.progress = model, data, labels, budget, progress
        self.iterations, self.backend, self.compiler = iterations, backend, compiler
        self.reference = self._outputs(model, "FP32")
        self.reference_accuracy = _label_accuracy(self.reference, labels) if labels is not None else None
        self.feed = {k: v[:1] for k, v in data.items()}  # timing: one sample, the eval data's shapes

    def _outputs(self, model, what: str) -> dict:
        try:
            return _run_onnxruntime(model, self.data, 64, self.progress, what)
        except _CannotRun as e:
            raise WorkbenchError(
                f"ONNX Runtime (CPU) cannot run the {what} model ({e}): sensitivity measures on "
                "ONNX Runtime here (bf16 graphs run only on a GPU backend)."
            ) from None

    def candidate(self, variant, label: str, kept_groups, kept_nodes, *, timed: bool) -> dict:
        outputs = self._outputs(variant.model, f"{variant.precision} ({label})")
        cosines = [output_agreement(n, outputs[n], r).cosine for n, r in self.reference.items() if n in outputs]
        cosine = float(min(cosines)) if cosines else float("nan")
        accuracy = _label_accuracy(outputs, self.labels) if self.labels is not None else None
        metric = 100 * (self.reference_accuracy - accuracy) if self.budget.kind == "top1" else cosine
        measured = {
            "label": label,
            "kept_groups": list(kept_groups),
            "kept_nodes": list(kept_nodes),
            "metric": float(metric),
            "label_accuracy": accuracy,
            "cosine": cosine,
            "latency_ms": self.latency(variant) if timed else None,
            "meets": bool(self.budget.meets(metric)),
            "variant": str(variant.path or ""),
        }
        if timed and self.compiler is not None:
            measured.update(self.compiled(variant))
        return measured

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
        """p50 latency of ``variant`` on the chosen backend (one evaluation sample, ``iterations`` timed runs)."""
        config = BuildConfig(precision=variant.precision, iterations=self.iterations, warmup_ms=20, trials=1)
        with self.backend.build(variant, config, self.progress) as engine:
            run = self.backend.profile(engine, self.feed, config, self.progress)
        return float(run.latency.p50_ms)


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
