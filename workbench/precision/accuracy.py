"""Accuracy of a Variant against its FP32 source on ONNX Runtime (CPU), and against labels when given.

Each output is first classified from its shape, dtype and FP32 values (:func:`output_kind`), since that decides
which figures can judge it:

=================  ==========================================================================================
``class scores``   float, last axis of 2+ classes holding probabilities (rows in [0, 1] summing to 1) or
                   log-probabilities, or a [batch, classes] output of at least :data:`LOGIT_MIN_CLASSES` classes
                   (logits) whose rows are not unit vectors, or the output labels were given for: top-1
                   agreement (argmax over the last axis), cosine, relative L2 error
``class ids``      integer or boolean values (class ids, a label map, token ids): agreement (share of equal values)
``mask``           float, rank >= 3, FP32 values all in [0, 1] (a probability map): mask IoU, cosine, relative L2
``embedding``      float [batch, dims] whose FP32 rows are unit vectors: cosine, relative L2 error
``regression``     any other float output (scores such as MOS values, boxes, features): cosine, relative L2
``constant``       FP32 values all equal (all zeros, as a random-weight model can give; a single value only when
                   it is zero): the comparison proves nothing, whatever the variant outputs; it never makes a
                   verdict "ok"
=================  ==========================================================================================

Per output, over all samples (in float64):

- ``max_abs_error`` = max |v - r|, with v the variant's output and r the FP32 reference;
- relative error = |v - r| / max(|r|, floor) with floor = 1e-3 x max|r| of that output, so reference values near
  zero do not blow the ratio up; ``max_rel_error`` and ``mean_rel_error`` are its max and mean;
- ``cosine`` similarity of the flattened outputs (1.0 when both are all zero);
- ``top1_agreement`` for ``class scores`` and ``class ids`` (see above); ``None`` for other outputs (a top-1 over
  three MOS scores is no classification: it flips on near ties);
- ``rel_l2_error`` = ||v - r|| / ||r|| over the whole output: 1.0 when the variant outputs all zeros, so a collapse
  cannot hide behind a small ``max_abs_error`` (an all-zero output of a probability map is "off by at most 0.0007");
- ``mask_iou`` for ``mask`` outputs: the intersection over union of the masks ``v > t`` and ``r > t``
  (``t`` = :attr:`Tolerance.mask_threshold`), when at least :data:`MASK_MIN_SHARE` of the FP32 output is above
  ``t`` (a mask of a few borderline pixels, as random inputs give, flips on rounding alone);
- ``collapsed``: the variant's output is constant where the FP32 output is not (a broken variant, always).

**Verdict.** Each output is judged by the figures of its kind against a :class:`Tolerance` (user-settable:
``profile(tolerance=...)``, ``--tolerance cosine_ok=0.995,...``): "broken" when it collapsed or a figure crosses a
``*_broken`` bound, else "degraded" when one crosses an ``*_ok`` bound, else "ok". The variant's verdict is its worst
output's (and the label accuracy's drop, when labels were given); ``verdict_reason`` names the check that decided it
and the outputs whose comparison proves nothing. When every compared output is ``constant`` (and no labels were
given) the verdict is "inconclusive": nothing was shown about the variant. Defaults: cosine >= 0.99 ok / < 0.9
broken; relative L2 error <= 0.15 ok / > 0.5 broken; top-1 agreement >= 0.99 ok / < 0.9 broken; mask IoU >= 0.9 ok /
< 0.5 broken; label accuracy drop <= 1 point ok / > 10 points broken. (A cosine of 0.99 is a relative L2 error of
about 0.14 for an unbiased error, hence the pairing.)

With ``labels``, ``label_accuracy`` (variant) and ``reference_label_accuracy`` (FP32) are top-1 accuracies on the
first classifier output. The variant runs on ONNX Runtime (CPU) or, given an engine's ``infer``, on that engine's
backend (TensorRT). A variant ONNX Runtime cannot run on a CPU (bf16 graphs) gets no agreement figures and the note
"accuracy checked only on the GPU backend" with the reason, never a silent skip.
"""

from __future__ import annotations

import numpy as np

import dataclasses
from dataclasses import dataclass

from ..config import format_shape
from .._optional import optional_import
from ..errors import WorkbenchError, first_line
from ..model.inputs import batch_inputs, chunk_size, load_inputs, sample_count
from ..model.session_probe import ort_session, probe_session
from ..progress import Progress, ensure
from ..results.run import Accuracy, OutputAgreement

RELATIVE_FLOOR = 1e-3
GPU_ONLY = "accuracy checked only on the GPU backend"
VERDICTS = ("ok", "degraded", "broken")
#: The verdict when every compared output is constant in FP32: the comparison showed nothing about the variant.
INCONCLUSIVE = "inconclusive"
#: A float [batch, classes] output with at least this many classes, not unit rows, is read as logits (class scores);
#: narrower ones are class scores only when their values are probabilities (three MOS scores are regression values).
LOGIT_MIN_CLASSES = 10
#: Agreement figures are computed in float64 slices of this many values (a large output is never copied whole).
AGREEMENT_CHUNK = 1 << 20
#: Mask IoU is measured when at least this share of the FP32 output is above the threshold.
MASK_MIN_SHARE = 0.005
#: What to try when a quantized (INT8/FP8) variant is broken or degraded (shown with the verdict and in the advice).
REMEDIES = (
    "calibrate with the other method (--calib-method max / entropy)",
    "calibrate on more, representative data (100-500 real samples, not random)",
    "leave the first and last layers or sensitive op types unquantized (--exclude-nodes, --exclude-op-types)",
    "use FP16 instead of INT8/FP8",
)
#: The same for FP16/BF16 variants (AutoCast).
AUTOCAST_REMEDIES = (
    "keep the overflowing or sensitive nodes in FP32 (--keep-fp32-nodes, --keep-fp32-op-types, or a lower data_max)",
    "use BF16 (FP32's range) or FP32 for this model",
)


def remedies(precision: str, options: dict | None = None) -> tuple[str, ...]:
    """What to try for a broken or degraded variant of ``precision`` made with graph ``options`` (a run's
    ``variant["options"]``). A quantized variant whose unquantized layers ran in a 16-bit type (ModelOpt's default,
    FP16) is told first to keep them in FP32: on PP-OCRv4 det INT8 collapses to a constant output without it."""
    if precision in ("fp16", "bf16"):
        return AUTOCAST_REMEDIES
    high = (options or {}).get("high_precision_dtype")
    if high and high != "fp32":
        return (
            f"keep the layers left unquantized in FP32, not {high.upper()}: --high-precision fp32 "
            "(Python: high_precision_dtype='fp32')",
            *REMEDIES,
        )
    return REMEDIES


@dataclass(frozen=True)
class Tolerance:
    """Bounds of the accuracy verdict (see the module docstring); ``*_ok`` for "ok", ``*_broken`` for "broken"."""

    cosine_ok: float = 0.99
    cosine_broken: float = 0.9
    rel_error_ok: float = 0.15
    rel_error_broken: float = 0.5
    agreement_ok: float = 0.99
    agreement_broken: float = 0.9
    mask_iou_ok: float = 0.9
    mask_iou_broken: float = 0.5
    mask_threshold: float = 0.5
    label_drop_ok: float = 0.01
    label_drop_broken: float = 0.1

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise WorkbenchError(f"Tolerance {f.name}={value!r} is not a number: give e.g. {f.name}={f.default}.")
        for name in ("cosine", "agreement", "mask_iou"):
            ok, broken = getattr(self, f"{name}_ok"), getattr(self, f"{name}_broken")
            if broken > ok:
                raise WorkbenchError(
                    f"Tolerance {name}_broken={broken} is above {name}_ok={ok}: a worse figure "
                    "must be needed to call a variant broken; lower it."
                )
        for name in ("rel_error", "label_drop"):
            ok, broken = getattr(self, f"{name}_ok"), getattr(self, f"{name}_broken")
            if broken < ok:
                raise WorkbenchError(f"Tolerance {name}_broken={broken} is below {name}_ok={ok}: raise it.")

    @classmethod
    def parse(cls, text: str | dict | Tolerance | None) -> Tolerance:
        """From ``"cosine_ok=0.995,rel_error_broken=0.3"`` (the CLI's ``--tolerance``), a dict, or a Tolerance."""
        if isinstance(text, Tolerance):
            return text
        if not text:
            return cls()
        if isinstance(text, str):
            items = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, sep, value = part.partition("=")
                try:
                    items[key.strip()] = float(value)
                except ValueError:
                    sep = ""
                if not sep:
                    raise WorkbenchError(f"Cannot read tolerance '{part}': write name=number, e.g. cosine_ok=0.995.")
            text = items
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(text) - set(known))
        if unknown:
            raise WorkbenchError(f"Unknown tolerance '{unknown[0]}': choose from {', '.join(known)}.")
        return cls(**text)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_PRECISION_NOTES = {
    "tf32": "TF32 is a TensorRT build setting: ONNX Runtime ran the unchanged graph in FP32",
    "fp16": "ONNX Runtime (CPU) runs FP16 ops without CPU kernels in FP32 between Casts: this measures FP16 "
    "rounding of weights and activations; TensorRT's FP16 kernels may differ slightly",
    "bf16": "ONNX Runtime (CPU) ran this BF16 graph; TensorRT's BF16 kernels may differ slightly",
    "fp8": "FP8 Q/DQ emulated by ONNX Runtime (CPU); TensorRT's FP8 kernels may differ slightly",
}


def measure_accuracy(
    variant,
    inputs,
    labels=None,
    *,
    infer=None,
    backend: str | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    tolerance=None,
    data: str = "",
    graph_optimization: str = "all",
) -> Accuracy:
    """Run ``variant`` and its FP32 source on ``inputs`` (dict of arrays, .npz or .npy; first axis = samples) and
    compare every output; ``labels`` (class ids, one per sample) adds the real accuracy of both. The result carries
    a verdict against ``tolerance`` (a :class:`Tolerance`, a dict or ``"name=value,..."``; default bounds
    otherwise) and ``data``, the description of what the samples are. ``graph_optimization`` is the ONNX Runtime
    level the runs here use (the profile's: a level that crashes ONNX Runtime on this graph is avoided here too);
    each session is tried in a child process first (:func:`workbench.model.session_probe.probe_session`).

    The FP32 reference always runs on ONNX Runtime (CPU). The variant runs there too, unless ``infer`` (an
    ``Engine.infer``: inputs by name -> outputs by name) runs it on the engine's backend, named by ``backend``.

    Only the inputs that carry the batch (:func:`workbench.model.inputs.batch_inputs`) are split into chunks of
    ``batch_size`` samples (default 64; the model's fixed batch when it has one); the others (recurrent state,
    a scalar) go whole with every chunk, and the note says which were held fixed. With inputs held fixed the
    default chunk is the size of a dimension they share by name with a batch input, else 1.
    """
    source = variant.source
    tolerance = Tolerance.parse(tolerance)
    inputs = load_inputs(inputs, source, batch_free=True)  # first axis = samples, any multiple of a fixed batch
    carried = batch_inputs(source)
    samples = sample_count(source, inputs, "Accuracy input")
    batch_size = chunk_size(source, inputs, batch_size or 64)
    labels = _labels(labels, samples)
    progress = ensure(progress)
    one_at_a_time = ""
    while True:
        try:
            reference = _run_onnxruntime(source, inputs, batch_size, progress, "FP32 reference", graph_optimization)
            break
        except _CannotRun as e:
            if batch_size == 1 or samples == 1:
                raise WorkbenchError(
                    f"ONNX Runtime (CPU) cannot run the FP32 model '{source.name}' ({e}): "
                    "check the model with 'workbench info'."
                ) from None
            # a batch dimension declared free that the graph fixes (a Reshape to [1, ...] in a batch-1 export): the
            # model runs one sample at a time, as it was profiled
            one_at_a_time = (
                f"the model refused {min(batch_size, samples)} samples at once ({first_line(e, 100)}): compared one "
                "sample at a time"
            )
            batch_size = 1
    reference_accuracy = top1_accuracy(reference, labels)
    notes = (
        ["calibrated on RANDOM data: INT8/FP8 accuracy does not reflect real calibration"]
        if variant.random_calibration
        else []
    ) + ([one_at_a_time] if one_at_a_time else [])
    held = [spec for spec in source.inputs if spec.name not in carried]
    if held:
        notes.append(
            f"outputs compared per sample of {', '.join(carried) or 'nothing'} (chunks of {batch_size}); held "
            "fixed across samples: "
            + ", ".join(f"{spec.name} [{format_shape(inputs[spec.name].shape, 'scalar')}]" for spec in held)
        )
    if infer is not None:
        backend = backend or "engine"
        variant_outputs = run_in_chunks(
            infer, variant.model, inputs, batch_size, progress, f"{variant.precision} {backend}"
        )
    else:
        backend = "onnxruntime"
        try:
            variant_outputs = _run_onnxruntime(
                variant.model, inputs, batch_size, progress, f"{variant.precision} variant", graph_optimization
            )
        except _CannotRun as e:
            notes.insert(0, f"{GPU_ONLY}: ONNX Runtime (CPU) cannot run this {variant.precision} variant ({e})")
            return Accuracy(
                samples=samples,
                reference_label_accuracy=reference_accuracy,
                note="; ".join(notes),
                data=data,
                tolerance=tolerance.to_dict(),
            )
        if variant.precision in _PRECISION_NOTES:
            notes.append(_PRECISION_NOTES[variant.precision])
    agreements = []
    for name, ref in reference.items():
        if name not in variant_outputs:
            notes.append(f"output '{name}' is not a tensor in the variant: not compared")
            continue
        # labels say which output is a classifier's, whatever its width (a 2-class head's logits)
        kind = "class scores" if labels is not None and name == labelled_output(reference) else None
        agreements.append(
            output_agreement(name, variant_outputs[name], ref, mask_threshold=tolerance.mask_threshold, kind=kind)
        )
    label_accuracy = top1_accuracy(variant_outputs, labels) if labels is not None else None
    verdict, reason = judge(agreements, tolerance, label_accuracy, reference_accuracy)
    return Accuracy(
        backend=backend,
        samples=samples,
        outputs=tuple(agreements),
        label_accuracy=label_accuracy,
        reference_label_accuracy=reference_accuracy,
        note="; ".join(notes),
        data=data,
        verdict=verdict,
        verdict_reason=reason,
        tolerance=tolerance.to_dict(),
    )


def judge(
    outputs,
    tolerance: Tolerance | None = None,
    label_accuracy: float | None = None,
    reference_label_accuracy: float | None = None,
) -> tuple[str, str]:
    """(verdict, reason) of a variant from its per-output agreement; ("", "") when nothing was compared;
    (:data:`INCONCLUSIVE`, why) when every output compared is constant in FP32 and no labels were given."""
    t = tolerance or Tolerance()
    checks = []  # (verdict, reason): one per output that is not ok, naming each figure out of bounds
    vacuous = [o for o in outputs if o.kind == "constant"]
    for o in outputs:
        if o.kind == "constant":
            continue
        found = [("broken", "collapsed to a constant where the FP32 output varies")] if o.collapsed else []
        for label, value, ok, broken, higher_is_better in (
            ("cosine", o.cosine, t.cosine_ok, t.cosine_broken, True),
            ("relative L2 error", o.rel_l2_error, t.rel_error_ok, t.rel_error_broken, False),
            ("top-1 agreement", o.top1_agreement, t.agreement_ok, t.agreement_broken, True),
            (f"mask IoU at {t.mask_threshold:g}", o.mask_iou, t.mask_iou_ok, t.mask_iou_broken, True),
        ):
            if value is None:
                continue
            sign = "<" if higher_is_better else ">"
            worse = (lambda v, b: v < b) if higher_is_better else (lambda v, b: v > b)
            if worse(value, broken):
                found.append(("broken", f"{label} {value:.4g} {sign} {broken:g}"))
            elif worse(value, ok):
                found.append(("degraded", f"{label} {value:.4g} {sign} {ok:g}"))
        if found:
            worst = max(found, key=lambda c: VERDICTS.index(c[0]))[0]
            kind = f" ({o.kind})" if o.kind else ""
            checks.append((worst, f"output '{o.name}'{kind}: " + ", ".join(r for v, r in found if v == worst)))
    if label_accuracy is not None and reference_label_accuracy is not None:
        drop = reference_label_accuracy - label_accuracy
        text = f"label accuracy {100 * label_accuracy:.2f}% vs FP32 {100 * reference_label_accuracy:.2f}%"
        if drop > t.label_drop_broken:
            checks.append(("broken", f"{text} (drop > {100 * t.label_drop_broken:g} points)"))
        elif drop > t.label_drop_ok:
            checks.append(("degraded", f"{text} (drop > {100 * t.label_drop_ok:g} points)"))
    if not outputs and label_accuracy is None:
        return "", ""
    proves_nothing = _vacuous_text(vacuous)
    if len(vacuous) == len(outputs) and label_accuracy is None:
        return INCONCLUSIVE, proves_nothing + "; measure on data where the model's outputs vary (--eval-data)"
    if not checks:
        return "ok", "every output within the tolerance" + (f"; {proves_nothing}" if vacuous else "")
    worst = max(checks, key=lambda c: VERDICTS.index(c[0]))[0]
    reasons = [r for v, r in checks if v == worst]
    return worst, "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")


def _vacuous_text(outputs) -> str:
    """Why comparing these constant FP32 outputs proves nothing, naming them and their value."""
    if not outputs:
        return ""
    named = ", ".join(
        f"'{o.name}' ({'all zeros' if o.constant_value == 0 else f'all {o.constant_value:.4g}'})" for o in outputs[:3]
    ) + (f" and {len(outputs) - 3} more" if len(outputs) > 3 else "")
    return (
        f"output{'s' if len(outputs) > 1 else ''} {named} {'are' if len(outputs) > 1 else 'is'} constant in FP32 on "
        "these samples: comparing a constant proves nothing about the variant"
    )


def output_kind(reference) -> str:
    """What an FP32 output holds, from its shape, dtype and values: ``class scores``, ``class ids``, ``mask``,
    ``embedding``, ``regression`` or ``constant`` (see the module docstring): which figures can judge it."""
    r = np.asarray(reference)
    # one value is a comparison of one sample, unless it is zero (as a dead output gives whatever the input)
    if r.size == 0 or r.min() == r.max() and (r.size > 1 or not r.any()):
        return "constant"
    if r.dtype.kind in "iub":
        return "class ids"
    if r.dtype.kind != "f":
        return "regression"
    low, high = float(r.min()), float(r.max())  # no float64 copy of the whole output: it may be GBs
    if r.ndim >= 2 and r.shape[-1] >= 2:
        if low >= -1e-6 and high <= 1 + 1e-6 and np.allclose(r.sum(axis=-1, dtype=np.float64), 1.0, atol=1e-3):
            return "class scores"  # probabilities
        if high <= 1e-6 and np.allclose(np.log(np.exp(r).sum(axis=-1, dtype=np.float64)), 0.0, atol=1e-3):
            return "class scores"  # log-probabilities
        if r.ndim == 2:
            if np.allclose(np.sqrt(np.einsum("ij,ij->i", r, r, dtype=np.float64)), 1.0, atol=1e-3):
                return "embedding"
            if r.shape[1] >= LOGIT_MIN_CLASSES:
                return "class scores"  # logits
    if r.ndim >= 3 and low >= 0 and high <= 1:
        return "mask"
    return "regression"


def output_agreement(
    name: str, values, reference, mask_threshold: float = 0.5, kind: str | None = None
) -> OutputAgreement:
    """How ``values`` agree with ``reference`` (same shape); the kind (:func:`output_kind` unless ``kind`` says,
    as labels do of a classifier's output) and metrics are described in the module docstring."""
    v = np.asarray(values)
    r = np.asarray(reference)
    if v.shape != r.shape:
        raise WorkbenchError(
            f"Output '{name}' has shape {v.shape} in the variant but {r.shape} in the FP32 model: "
            "the transform changed the model's interface; report it."
        )
    found = output_kind(r)
    kind = found if found == "constant" else kind or found
    vf, rf = v.ravel(), r.ravel()
    if vf.size == 0:
        return OutputAgreement(name, 0.0, 0.0, 0.0, 1.0, None, rel_l2_error=0.0, kind=kind)
    top1 = None
    if kind == "class ids":
        top1 = float(np.mean(v == r))
    elif kind == "class scores":
        top1 = float(np.mean(v.argmax(axis=-1) == r.argmax(axis=-1)))
    scale = float(np.abs(rf).max())
    floor = RELATIVE_FLOOR * scale
    # in float64 slices of AGREEMENT_CHUNK values: whole float64 copies of a large output cost GBs of host memory
    max_diff = max_rel = rel_sum = dot = v_sq = r_sq = d_sq = 0.0
    v_lo = v_hi = float(vf[0])
    above = {"union": 0, "r": 0, "both": 0}
    for start in range(0, vf.size, AGREEMENT_CHUNK):
        v64 = vf[start : start + AGREEMENT_CHUNK].astype(np.float64)
        r64 = rf[start : start + AGREEMENT_CHUNK].astype(np.float64)
        diff = np.abs(v64 - r64)
        rel = diff / np.maximum(np.abs(r64), floor) if scale > 0 else np.where(diff > 0, np.inf, 0.0)
        max_diff, max_rel, rel_sum = (
            max(max_diff, float(diff.max())),
            max(max_rel, float(rel.max())),
            rel_sum + float(rel.sum()),
        )
        dot, v_sq, r_sq, d_sq = (
            dot + float(v64 @ r64),
            v_sq + float(v64 @ v64),
            r_sq + float(r64 @ r64),
            d_sq + float(diff @ diff),
        )
        v_lo, v_hi = min(v_lo, float(v64.min())), max(v_hi, float(v64.max()))
        if kind == "mask":
            vm, rm = v64 > mask_threshold, r64 > mask_threshold
            above["union"] += int(np.count_nonzero(vm | rm))
            above["r"] += int(np.count_nonzero(rm))
            above["both"] += int(np.count_nonzero(vm & rm))
    ref_norm, norms = float(np.sqrt(r_sq)), float(np.sqrt(v_sq * r_sq))
    cosine = float(dot / norms) if norms > 0 else float(np.array_equal(vf, rf))
    diff_norm = float(np.sqrt(d_sq))
    rel_l2 = diff_norm / ref_norm if ref_norm > 0 else (0.0 if diff_norm == 0 else float("inf"))
    collapsed = bool(v_hi == v_lo and kind != "constant")
    mask_iou = None
    # a mask of a few borderline pixels (random inputs) flips on rounding alone: judged from 0.5% of the output
    if kind == "mask" and above["r"] >= MASK_MIN_SHARE * rf.size:
        mask_iou = float(above["both"] / above["union"])
    return OutputAgreement(
        name,
        max_diff,
        max_rel,
        rel_sum / vf.size,
        cosine,
        top1,
        rel_l2_error=rel_l2,
        mask_iou=mask_iou,
        collapsed=collapsed,
        kind=kind,
        constant_value=float(rf[0]) if kind == "constant" else None,
    )


# ---- running ------------------------------------------------------------------------------------------------


class _CannotRun(Exception):
    """ONNX Runtime on a CPU refused the variant (no kernel for a dtype, unsupported op)."""


def _run_onnxruntime(model, inputs: dict, batch_size: int, progress: Progress, phase: str, level: str) -> dict:
    """Outputs (name -> array, all samples) of ``model`` on ONNX Runtime CPU at graph optimization ``level``."""
    optional_import("onnxruntime", purpose="measure accuracy with ONNX Runtime", extra="cpu")
    graph = model.to_bytes()  # the graph in memory: what was loaded, whatever its file holds now
    carried = batch_inputs(model)
    first_chunk = {
        name: (min(batch_size, len(value)),) + value.shape[1:] if name in carried and value.ndim else value.shape
        for name, value in inputs.items()
    }
    probe_session(
        model,
        level=level,
        providers=["CPUExecutionProvider"],
        shapes=first_chunk,
        label=f"{model.name} ({phase})",
        progress=progress,
        source=graph,
    )
    try:
        session = ort_session(graph, level, log=3)  # constant-folding warnings about fp16 kernels are noise here
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types for unsupported graphs
        raise _CannotRun(first_line(e)) from None
    feeds = {i.name: inputs[i.name].astype(ort_input_dtype(i.type), copy=False) for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]

    def run(chunk: dict) -> dict:
        try:
            return dict(zip(names, session.run(names, chunk)))
        except Exception as e:  # noqa: BLE001 - a missing kernel shows up at run time too
            raise _CannotRun(first_line(e)) from None

    return _chunked(run, model, feeds, batch_size, progress, phase)


def run_in_chunks(infer, model, inputs: dict, batch_size: int, progress: Progress, phase: str) -> dict:
    """``infer`` (feed -> outputs) over ``inputs`` in chunks of ``batch_size`` samples of the batch-carrying inputs
    (a fixed batch: chunks of it; held inputs go whole with each), cast to the model's input dtypes; the tensor
    outputs concatenated."""
    feeds = {spec.name: inputs[spec.name].astype(spec.dtype, copy=False) for spec in model.inputs}
    return _chunked(infer, model, feeds, batch_size, progress, phase)


def _chunked(run, model, feeds: dict, batch_size: int, progress: Progress, phase: str) -> dict:
    """``run`` over consecutive chunks of the samples of the batch-carrying inputs (the others go whole with each;
    :func:`workbench.model.inputs.chunk_size`); tensor outputs concatenated (others dropped)."""
    carried = batch_inputs(model)
    chunk = chunk_size(model, feeds, batch_size)
    total = sample_count(model, feeds, "Accuracy input")
    parts: dict[str, list] = {}
    for start in range(0, total, chunk):
        feed = {k: v[start : start + chunk] if k in carried else v for k, v in feeds.items()}
        for name, out in run(feed).items():
            parts.setdefault(name, []).append(out)
        if not progress.step(f"accuracy: {phase}", min(start + chunk, total), total):
            progress.check()
    return {n: np.concatenate(p) for n, p in parts.items() if all(isinstance(x, np.ndarray) for x in p)}


def ort_input_dtype(ort_type: str):
    """The numpy dtype that feeds an ONNX Runtime input of type ``ort_type`` (``"tensor(float)"``); an input type
    numpy cannot feed raises (the accuracy check then says what it could not run)."""
    table = {
        "tensor(float)": np.float32,
        "tensor(float16)": np.float16,
        "tensor(double)": np.float64,
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(bool)": np.bool_,
        "tensor(int8)": np.int8,
        "tensor(uint8)": np.uint8,
    }
    if ort_type not in table:
        raise _CannotRun(f"input type {ort_type} cannot be fed from numpy")
    return table[ort_type]


# ---- labels -------------------------------------------------------------------------------------------------


def _labels(labels, samples: int):
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != samples or labels.dtype.kind not in "iub":
        raise WorkbenchError(
            f"Labels must be {samples} integer class ids (one per sample); got "
            f"{labels.dtype}[{format_shape(labels.shape)}]."
        )
    return labels


def labelled_output(outputs: dict) -> str | None:
    """The output labels are held against: the first [batch, classes] float output, else the first [batch] of
    integer class ids; None when there is none."""
    for name, out in outputs.items():
        if out.ndim == 2 and out.shape[1] >= 2 and out.dtype.kind == "f":
            return name
    return next((name for name, out in outputs.items() if out.ndim == 1 and out.dtype.kind in "iu"), None)


def top1_accuracy(outputs: dict, labels) -> float | None:
    if labels is None:
        return None
    name = labelled_output(outputs)
    if name is None:
        raise WorkbenchError(
            "Labels were given but the model has no classifier output ([batch, classes] scores or "
            "[batch] class ids): measure without labels."
        )
    out = outputs[name]
    return float(((out.argmax(axis=1) if out.ndim == 2 else out) == labels).mean())
