"""Precision variants: a Model with the precision applied to its graph (ModelOpt), cached on disk.

fp32 and tf32 leave the graph as it is (tf32 is a build setting). fp16/bf16 go through ModelOpt AutoCast,
int8/fp8 through ModelOpt ONNX post-training quantization (explicit Q/DQ); TensorRT 10.x and 11.x both build
such graphs as strongly typed networks, and ONNX Runtime runs them on a CPU (except bf16).

Options of :func:`make_variant` (``None``, an empty list and ``random_calibration=False`` mean "not given"):

========================  ===========  =====================================================================
option                    precisions   meaning
========================  ===========  =====================================================================
calibration               all but      dict of arrays, .npz/.npy path or image folder (see
                          fp32/tf32    :mod:`workbench.precision.calibration`); required for int8/fp8; for fp16/bf16 it
                                       feeds AutoCast's ``data_max`` check (random inputs in [-1, 1] otherwise)
random_calibration        int8, fp8    True: calibrate on seeded random data (labelled ``random`` everywhere), drawn at
                                       the shapes of ``reference_inputs`` when given and in ``input_ranges``
image_normalization       any          ``"unit"`` (pixel/255, default) or ``"imagenet"``, for image folders
calibration_method        int8, fp8    ``"max"`` (default) or ``"entropy"``; see "Calibration method" below
calibration_batch         int8, fp8    samples per calibration step: the model's fixed batch, else 1 (ModelOpt's
                                       own default). Larger is faster, but ModelOpt's GEMV rule (leave
                                       Gemm/MatMul with M or N = 1 unquantized) then sees M = batch, and
                                       entropy calibration over few large batches comes out equal to max
high_precision_dtype      int8, fp8    dtype of what is not quantized: ``"fp16"`` (default), ``"bf16"``, ``"fp32"``
exclude_nodes             int8, fp8    regexes (re.match) of node names to leave unquantized
exclude_op_types          int8, fp8    op types to leave unquantized
keep_fp32_nodes           fp16, bf16   regexes (re.match) of node names to keep in FP32
keep_fp32_op_types        fp16..fp8    op types to keep in FP32
keep_io_types             fp16, bf16   keep float32 model inputs/outputs (default True)
layernorm_fp32            fp16..fp8    keep decomposed LayerNorm / RMSNorm patterns (ReduceMean, Sub, Pow, Add,
                                       Sqrt, Div) in FP32 (default True); see "LayerNorm" below
data_max                  fp16, bf16   keep a node in FP32 when its activations exceed this (default 512)
init_max                  fp16, bf16   keep a node in FP32 when its weights exceed this (default 65504)
cache_dir                 all          variant cache (default :func:`workbench.paths.cache_dir` ``/variants``)
progress                  all          a :class:`workbench.progress.Progress` (cancel stops calibration)
reference_inputs          all but      dict of arrays for AutoCast's reference run when no calibration is given
                          fp32/tf32    (the pipeline passes its seeded inputs at the profiled shapes, with the
                                       values :mod:`workbench.model.inputs` infers: an ``If`` on a sample rate
                                       then takes a branch the model runs); the shapes random calibration takes
input_ranges              int8, fp8    the value ranges random calibration draws from (see
                                       :func:`workbench.model.inputs.make_inputs`; default: what the graph says)
========================  ===========  =====================================================================

**Calibration method.** ``max`` (each activation's largest magnitude over all samples) is the default: it is
ModelOpt's own INT8 preset for CNNs (``INT8_DEFAULT_CFG``, ``algorithm: max``) and its FP8 ONNX default, its scales
do not depend on the order or batching of the samples, and on a CPU it is the cheaper one (INT8 of a torchvision
ResNet-50 on 128 samples: about 67 s of CPU against 107 s for entropy, ``docs/scale.md``). ``entropy`` is what
ModelOpt's ONNX PTQ defaults to: ONNX Runtime's histogram calibrator with 128 bins, whose KL search can clip only the
part of the range that samples after the first batch added (its bins are laid out from the first batch), at the
cost of a histogram of every activation of every sample. The run says which method its scales came from.

**LayerNorm.** A LayerNorm exported as primitive ops (PaddlePaddle's, older PyTorch exports: PP-OCRv4 rec) is
kept in FP32 whole, by default, for two reasons. Its variance (``Pow`` then ``ReduceMean``) is the classic FP16
overflow, and TensorRT's own guidance keeps normalization in FP32. And AutoCast splits the pattern (some nodes
FP16, some FP32); ONNX Runtime's CPU provider then wraps the FP16 nodes it has no kernel for in its own casts
("InsertedPrecisionFreeCast_..."), and its ``SimplifiedLayerNormFusion`` (graph optimization level "extended" and
up) matches the pattern across those casts and fails: "Attempting to get index by a name which does not exist:
InsertedPrecisionFreeCast_...". So the fix belongs to the variant: AutoCast gets the pattern's node names to keep
(fp16/bf16); ONNX PTQ, which only takes op types for its FP16 conversion, keeps ``ReduceMean``, ``Pow`` and
``Sqrt`` in FP32 when the model has such a pattern (int8/fp8 with a 16-bit ``high_precision_dtype``).
``layernorm_fp32=False`` restores the plain conversion (for TensorRT, whose LayerNorm fusion handles it).

**Control flow.** ModelOpt 0.47's AutoCast converts every If/Loop/Scan body itself and fails on some (a KeyError in
``_convert_subgraph_precision``: silero VAD, akiki VAD). The variant then retries with those nodes and their bodies
kept in FP32 and the rest of the graph converted (``changes["control_flow_fp32"]`` says which, and why; the pipeline
puts it on the run). When the retry fails too, or ONNX PTQ fails on such a model, the error is ModelOpt's, reported
as an upstream limitation in one line.

Variants are cached under ``cache_dir/<model>-<precision>-<key>/`` (``model.onnx``, ``variant.json``,
``modelopt.log``) keyed by (model sha256, precision, options, calibration-data sha256, ModelOpt version). A variant is
written to a temporary folder and renamed into place, so an error or a cancel leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import graphlib
import io
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import paths
from .._optional import optional_import
from .calibration import CalibrationData, calibration_batch, load_calibration, random_calibration
from .changes import describe_changes
from ..config import Precision, format_shapes
from ..errors import Cancelled, WorkbenchError, excerpt, first_line, shorten
from ..model.inputs import held_batch
from ..model.onnx_model import Model, load_model, subgraphs
from ..messages import ROOT
from ..progress import Progress, ensure

#: Bump when the cached files or ``changes`` change meaning, so old cache entries are not reused.
CACHE_FORMAT = 3
#: Samples per .npz file of AutoCast's reference run (it only keeps per-tensor range statistics).
AUTOCAST_REFERENCE_BATCH = 32

_AUTOCAST_DEFAULTS: dict = {
    "keep_io_types": True,
    "keep_fp32_nodes": [],
    "keep_fp32_op_types": [],
    "data_max": 512.0,
    "init_max": 65504.0,
    "layernorm_fp32": True,
}
_QUANTIZE_DEFAULTS: dict = {
    "calibration_method": "max",
    "calibration_batch": None,
    "high_precision_dtype": "fp16",
    "exclude_nodes": [],
    "exclude_op_types": [],
    "keep_fp32_op_types": [],
    "layernorm_fp32": True,
}
#: Op types of a decomposed LayerNorm that ONNX PTQ keeps in FP32 (it takes op types, not nodes, for FP16).
LAYERNORM_FP32_OP_TYPES = ("ReduceMean", "Pow", "Sqrt")
_CHOICES = {"calibration_method": ("entropy", "max"), "high_precision_dtype": ("fp16", "bf16", "fp32")}
_LIST_OPTIONS = ("keep_fp32_nodes", "keep_fp32_op_types", "exclude_nodes", "exclude_op_types")
_DATA_OPTIONS = ("calibration", "random_calibration", "image_normalization", "reference_inputs", "input_ranges")
_RUN_OPTIONS = ("cache_dir", "progress")
#: What fp16/bf16 variants record when no calibration data was given (AutoCast's own default).
_NO_CALIBRATION = {
    "source": "none: AutoCast checked data_max on random inputs in [-1, 1]",
    "samples": 0,
    "sha256": None,
    "random": False,
}
#: What fp16/bf16 variants record when AutoCast's reference run used the pipeline's seeded inputs.
_REFERENCE = {**_NO_CALIBRATION, "source": "none: AutoCast checked data_max on the seeded profiling inputs"}


@dataclass(frozen=True, eq=False)
class Variant:
    """A Model with a precision applied.

    ``model`` is what backends build (equal to ``source`` for fp32/tf32); ``changes`` says what the transform did
    (nodes per precision, Q/DQ pairs, nodes kept in FP32 and why; see :mod:`workbench.precision.changes`); ``calibration``
    describes the data used (``source``, ``samples``, ``sha256``, ``random``: True when the user asked for random
    calibration data).
    """

    model: Model
    source: Model
    precision: str = "fp32"
    options: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)

    @property
    def path(self) -> Path | None:
        """The variant's ONNX file (the cached one; the source file for fp32/tf32)."""
        return self.model.path

    @property
    def random_calibration(self) -> bool:
        return bool(self.calibration.get("random"))

    @property
    def calibration_method(self) -> str | None:
        """The method the scales came from (int8/fp8): the one asked for, or ``"max"`` where entropy calibration
        failed and the variant fell back on it (``changes["calibration_fallback"]`` says why); None unquantized."""
        if not Precision(self.precision).quantized:
            return None
        return "max" if self.changes.get("calibration_fallback") else self.options.get("calibration_method")

    @property
    def label(self) -> str:
        """How the variant is named wherever it is shown: ``int8 (RANDOM calibration)`` when it was."""
        return f"{self.precision} (RANDOM calibration)" if self.random_calibration else self.precision

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "label": self.label,
            "options": self.options,
            "changes": self.changes,
            "calibration": self.calibration,
            "path": str(self.path) if self.path else None,
            "sha256": self.model.sha256,
            "source_sha256": self.source.sha256,
        }


def make_variant(model, precision: str = "fp32", **options) -> Variant:
    """Apply ``precision`` to ``model`` (a Model, a path or bytes) and return the Variant (cached on disk).

    Options are listed in the module docstring; an option that does not apply to ``precision`` is an error.
    INT8/FP8 need ``calibration=`` unless ``random_calibration=True`` is passed explicitly.
    """
    model = load_model(model)
    precision = Precision.parse(precision)
    options = {k: v for k, v in options.items() if not _unset(k, v)}
    progress = ensure(options.pop("progress", None))
    cache_root = Path(options.pop("cache_dir", None) or paths.cache_dir("variants")).expanduser()
    if not precision.in_graph:
        if options:
            raise WorkbenchError(
                f"Precision {precision} takes no graph options or calibration data "
                f"(got {', '.join(options)}): drop them, or pick fp16/bf16/int8/fp8."
            )
        changes = {
            "tool": "none",
            "summary": "graph unchanged"
            + ("; TF32 is a TensorRT build setting (BuilderFlag.TF32)" if precision == "tf32" else ""),
        }
        return Variant(model=model, source=model, precision=precision, changes=changes)
    reference = options.pop("reference_inputs", None)
    ranges = options.pop("input_ranges", None)
    graph_options = _graph_options(model, precision, options)
    calibration = _calibration(model, precision, options, reference, ranges)
    if calibration is not None and precision.quantized:
        graph_options["calibration_batch"] = calibration_batch(model, calibration, graph_options["calibration_batch"])
    if calibration is not None or not precision.autocast:
        reference = None
    elif reference is not None:  # only the values matter to AutoCast, not where they came from
        reference = CalibrationData({k: np.asarray(v) for k, v in reference.items()}, _REFERENCE["source"])
    return _cached_or_built(model, precision, graph_options, calibration or reference, cache_root, progress)


# ---- options ------------------------------------------------------------------------------------------------


def _unset(key: str, value) -> bool:
    """None, an empty list and random_calibration=False mean "not given" (CLI defaults pass them for every precision)."""
    return (
        value is None
        or (isinstance(value, (list, tuple)) and not value)
        or (key == "random_calibration" and value is False)
    )


def _graph_options(model: Model, precision: str, given: dict) -> dict:
    defaults = _AUTOCAST_DEFAULTS if Precision(precision).autocast else _QUANTIZE_DEFAULTS
    unknown = sorted(set(given) - set(defaults) - set(_DATA_OPTIONS))
    if unknown:
        raise WorkbenchError(
            f"Option '{unknown[0]}' does not apply to {precision}: its options are "
            f"{', '.join([*defaults, *_DATA_OPTIONS, *_RUN_OPTIONS])}."
        )
    opts = {k: given.get(k, v) for k, v in defaults.items()}
    for key in _LIST_OPTIONS:
        if key in opts:
            value = opts[key]
            if not isinstance(value, (str, list, tuple)) or not all(isinstance(x, str) for x in value):
                raise WorkbenchError(
                    f"{key} must be a name or a list of names (text), got {type(value).__name__} {excerpt(value, 60)}: e.g. "
                    f"{key}=['{'Softmax' if key.endswith('op_types') else 'node_name'}']."
                )
            opts[key] = [value] if isinstance(value, str) else list(value)
    for key, choices in _CHOICES.items():
        if key in opts and opts[key] not in choices:
            raise WorkbenchError(f"{key}='{opts[key]}' is not valid: choose one of {', '.join(choices)}.")
    for key in ("data_max", "init_max"):
        value = opts.get(key, 1.0)
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0):
            raise WorkbenchError(f"{key} must be a positive number (got {type(value).__name__} {excerpt(value, 60)}).")
    for key in ("keep_io_types", "layernorm_fp32"):
        if key in opts and not isinstance(opts[key], (bool, np.bool_)):
            raise WorkbenchError(
                f"{key} must be true or false (got {type(opts[key]).__name__} {excerpt(opts[key], 60)})."
            )
        if key in opts:
            opts[key] = bool(opts[key])
    _check_names(model, opts)
    return opts


def _check_names(model: Model, opts: dict) -> None:
    """Node patterns and op types that match nothing are typos: say so instead of silently doing nothing."""
    names = [n.name for n in model.proto.graph.node]
    for key in ("keep_fp32_nodes", "exclude_nodes"):
        for pattern in opts.get(key, ()):
            try:
                regex = re.compile(pattern)
            except re.error as e:
                raise WorkbenchError(f"{key} pattern '{pattern}' is not a valid regular expression ({e}).") from None
            if not any(regex.match(n) for n in names):
                raise WorkbenchError(
                    f"{key} pattern '{pattern}' matches no node of '{model.name}' (re.match from "
                    f"the start of the name, e.g. '{names[0]}'): check the node name."
                )
    ops = set(model.op_histogram)
    for key in ("keep_fp32_op_types", "exclude_op_types"):
        for op in opts.get(key, ()):
            if op not in ops:
                raise WorkbenchError(
                    f"{key} names op type '{op}' that '{model.name}' does not use: "
                    f"its op types are {', '.join(sorted(ops))}."
                )


def _calibration(model: Model, precision: str, options: dict, reference, ranges) -> CalibrationData | None:
    random = bool(options.get("random_calibration", False))
    source = options.get("calibration")
    if random and Precision(precision).autocast:
        raise WorkbenchError(
            f"random_calibration applies to int8/fp8; {precision} needs no calibration "
            "(AutoCast checks data_max on random inputs unless you pass calibration=)."
        )
    if source is not None:
        if random:
            raise WorkbenchError("Both calibration data and random_calibration=True were given: choose one.")
        return load_calibration(source, model, image_normalization=options.get("image_normalization", "unit"))
    if random:
        shapes = {name: np.shape(value) for name, value in reference.items()} if reference is not None else None
        return random_calibration(model, shapes=shapes, ranges=ranges)
    if Precision(precision).quantized:
        raise WorkbenchError(
            f"{precision.upper()} needs calibration data: pass calibration= (or --calib) a .npz "
            "keyed by input name, a .npy or an image folder with 100-500 samples, or "
            "random_calibration=True (--random-calib) to calibrate on random data, labelled as such."
        )
    return None


# ---- cache --------------------------------------------------------------------------------------------------


def _cache_key(model: Model, precision: str, opts: dict, calibration: CalibrationData | None) -> str:
    return paths.key_digest(
        {
            "format": CACHE_FORMAT,
            "modelopt": _modelopt_version(),
            "model": model.sha256,
            "precision": precision,
            "options": opts,
            "calibration": calibration.sha256 if calibration else None,
        }
    )


def _cached_or_built(model, precision, opts, calibration, cache_root: Path, progress: Progress) -> Variant:
    key = _cache_key(model, precision, opts, calibration)
    name = f"{_safe(model.name)}-{precision}-{key[:16]}"
    cache = paths.FolderCache(cache_root)

    def read(folder: Path) -> Variant:
        record = json.loads((folder / "variant.json").read_text())
        return _variant(record, load_model(folder / "model.onnx", name=model.name), model)

    cached = cache.load(name, read)
    if cached is not None:
        return cached

    def write(tmp: Path) -> tuple[dict, Model]:
        record, built = _build(model, precision, opts, calibration, tmp, progress)
        record["key"] = key
        text = json.dumps(record, indent=1, default=_json_default)
        (tmp / "variant.json").write_text(text)
        progress.check()
        return json.loads(text), built

    final, (record, built) = cache.save(name, write)
    return _variant(record, built.moved_to(final / "model.onnx"), model)  # validated in the temporary folder


def _variant(record: dict, variant_model: Model, source: Model) -> Variant:
    return Variant(
        model=variant_model,
        source=source,
        precision=record["precision"],
        options=record["options"],
        changes=record["changes"],
        calibration=record["calibration"],
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "model"


# ---- building -----------------------------------------------------------------------------------------------


def _build(
    model: Model, precision: str, opts: dict, calibration, folder: Path, progress: Progress
) -> tuple[dict, Model]:
    """Run ModelOpt in ``folder`` (the temporary entry); return the variant record and the loaded ``model.onnx``."""
    import onnx

    phase = f"{precision} variant"
    progress.step(phase, 0, 3)
    progress.check()
    _refuse_ml_only(model, precision)
    work = folder / "work"
    work.mkdir()
    source_path = model.save(work / "source.onnx")
    repairs = _repaired_source(model, source_path, autocast=Precision(precision).autocast)
    progress.step(phase, 1, 3)
    out = folder / "model.onnx"
    autocast = Precision(precision).autocast
    tool = f"ModelOpt {'AutoCast' if autocast else 'ONNX PTQ'} {_modelopt_version()}"
    _import_modelopt(autocast)
    log = io.StringIO()
    feeds = _feeds(model, calibration, opts, autocast)

    fell_back: list[str] = []

    def convert(source: Path, converted: Path, feeds: list | None, work: Path) -> None:
        if autocast:
            _autocast(source, converted, precision, opts, feeds, work)
            return
        try:
            _quantize(source, converted, precision, opts, feeds, progress)
        except Exception as e:  # noqa: BLE001 - ModelOpt raises anything; only a histogram failure is retried
            if opts["calibration_method"] == "max" or not _histogram_failed(e):
                raise
            # entropy calibration's histograms fail on activations of huge or unbounded range ("Too many bins" on
            # GPT-2); the max method takes each tensor's largest magnitude and works there
            fell_back.append(f"{type(e).__name__}: {first_line(e, 120)}")
            _quantize(source, converted, precision, {**opts, "calibration_method": "max"}, feeds, progress)

    ml = _ml_nodes(model.proto.graph)
    try:
        with _captured_output(log):
            if ml:  # ModelOpt does not convert ai.onnx.ml operators: the graph is converted around them
                proto = onnx.load(str(source_path))
                kept = [n for n in proto.graph.node if n.name in {m.name for m in ml}]
                _convert_around(convert, proto, kept, out, feeds, work / "around_kept")
                flow_kept = ""
            else:
                flow_kept = _convert_or_keep_control_flow(convert, source_path, out, feeds, work, f"{tool} failed")
    except WorkbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - ModelOpt raises anything; the user gets one line and the cause
        raise WorkbenchError(
            f"{tool} failed on '{model.name}' ({type(e).__name__}: {_last_error(e, log.getvalue())}); "
            + _upstream_cause(model.proto.graph)
        ) from e
    finally:
        (folder / "modelopt.log").write_text(log.getvalue())
    progress.check()
    progress.step(phase, 2, 3)
    variant_model = load_model(_unique_node_names(out), name=model.name)
    shutil.rmtree(work)
    changes = describe_changes(model.proto, variant_model.proto, precision, opts, log.getvalue(), tool)
    nothing = changes.get("qdq_pairs") == 0
    if repairs:
        changes["repaired"] = "; ".join(repairs)
    if fell_back:
        changes["calibration_fallback"] = (
            f"entropy calibration failed ({fell_back[0]}): calibrated with the max method instead "
            "(calibration_method='max' / --calib-method max gives it directly)"
        )
    if ml:
        changes["ml_kept"] = (
            f"{_ml_names(ml)} kept in {'their' if len(ml) > 1 else 'its'} own precision: ai.onnx.ml operators, which "
            f"ModelOpt does not convert and TensorRT cannot run (ONNX Runtime runs them); the rest is {precision}"
        )
    elif flow_kept:
        changes["control_flow_fp32"] = flow_kept + (
            f"; nothing else was quantized either (no Q/DQ pair): the {precision} variant has no {precision} layer"
            if nothing
            else f"; the rest of the graph is {precision}"
        )
    elif nothing:
        inside = (
            " (its work is inside If/Loop/Scan bodies, which ModelOpt does not quantize)"
            if _control_flow_nodes(model.proto.graph)
            else ""
        )
        changes["nothing_quantized"] = (
            f"{tool} placed no Q/DQ pair in '{model.name}'{inside}: the {precision} variant has no {precision} "
            f"layer, so its accuracy and latency are not {precision}'s (modelopt.log in the variant says why)"
        )
    kept = layernorm_nodes(model.proto) if opts.get("layernorm_fp32") else []
    if kept and (autocast or opts["high_precision_dtype"] != "fp32"):
        changes["layernorm_fp32"] = (
            f"{len(kept)} nodes of decomposed LayerNorms kept in FP32 (FP16 variance overflows; ONNX Runtime's "
            "LayerNorm fusion fails on a split pattern)"
            + ("" if autocast else f": op types {', '.join(LAYERNORM_FP32_OP_TYPES)}")
        )
    progress.step(phase, 3, 3)
    record = {
        "precision": precision,
        "options": opts,
        "changes": changes,
        "calibration": _REFERENCE
        if calibration and calibration.source == _REFERENCE["source"]
        else calibration.describe()
        if calibration
        else _NO_CALIBRATION,
        "source_sha256": model.sha256,
        "modelopt": _modelopt_version(),
    }
    return record, variant_model


def _feeds(model: Model, calibration: CalibrationData | None, opts: dict, autocast: bool) -> list[dict] | None:
    """The calibration data as the feeds ModelOpt runs, one per step: batches of ``calibration_batch`` samples for
    PTQ; for AutoCast (which keeps range statistics only) batches of ``AUTOCAST_REFERENCE_BATCH``, or of the batch
    held inputs fix, and the pipeline's profiling inputs as they are (a scalar input has no sample axis)."""
    if calibration is None:
        return None
    if calibration.source == _REFERENCE["source"]:
        return [calibration.arrays]
    if not autocast:
        return calibration.batches(opts["calibration_batch"])
    held = held_batch(model, calibration.arrays) if calibration.held else None
    return calibration.batches(held or AUTOCAST_REFERENCE_BATCH)


def _autocast(source: Path, out: Path, precision: str, opts: dict, feeds: list | None, work: Path) -> None:
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    reference = None
    if feeds is not None:  # one .npz per batch: AutoCast aggregates range statistics batch by batch
        reference = work / "calibration"
        reference.mkdir()
        for i, feed in enumerate(feeds):
            np.savez(reference / f"{i:05d}.npz", **feed)
    keep = list(opts["keep_fp32_nodes"])
    if opts["layernorm_fp32"]:
        keep += [f"^{re.escape(name)}$" for name in layernorm_nodes(onnx.load(str(source), load_external_data=False))]
    converted = convert_to_mixed_precision(
        onnx_path=str(source),
        low_precision_type=precision,
        keep_io_types=opts["keep_io_types"],
        nodes_to_exclude=keep or None,
        op_types_to_exclude=opts["keep_fp32_op_types"] or None,
        data_max=opts["data_max"],
        init_max=opts["init_max"],
        calibration_data=str(reference) if reference else None,
        providers=["cpu"],
    )
    for value in converted.graph.value_info:  # dims AutoCast could not infer: ONNX Runtime would hold them to it
        if any(d.dim_param.startswith("unk__") for d in value.type.tensor_type.shape.dim):
            value.type.tensor_type.ClearField("shape")
    large = converted.ByteSize() > (1 << 30)
    onnx.save_model(converted, str(out), save_as_external_data=large, location=f"{out.name}.data" if large else None)


def _convert_or_keep_control_flow(convert, source: Path, out: Path, feeds, work: Path, failed: str) -> str:
    """``convert`` (AutoCast or PTQ: source, out, feeds, work folder); when it fails on a model with If/Loop/Scan,
    again with those nodes and their bodies kept in FP32.

    ModelOpt 0.47 converts every subgraph itself and fails on some (AutoCast: a KeyError in
    ``_convert_subgraph_precision``; PTQ: a KeyError on an If's body). The retry converts the graph around the
    control-flow nodes: they are taken out (their outputs become graph inputs, what they read graph outputs, both
    kept FP32), the rest is converted (calibrated on the values the nodes produce for each feed), and the nodes go
    back unchanged. Returns what was kept and why ("" when the first try worked); a second failure raises the first
    error (the upstream one). ``failed`` names the tool ("ModelOpt AutoCast 0.47.0 failed").
    """
    try:
        convert(source, out, feeds, work)
        return ""
    except Cancelled:
        raise
    except Exception as e:  # noqa: BLE001 - ModelOpt raises anything; decided below
        import onnx

        first = e
        proto = onnx.load(str(source))
        flow = _control_flow_nodes(proto.graph)
        if not flow:
            raise
        reason = f"{type(e).__name__}: {first_line(e, 120)}"
    try:
        _convert_around(convert, proto, flow, out, feeds, work / "around_control_flow")
    except Cancelled:
        raise
    except Exception:  # noqa: BLE001 - the retry failing too: the user gets the first (upstream) error
        raise first from None
    names = ", ".join(f"{n.op_type} '{n.name}'" for n in flow[:3]) + ("..." if len(flow) > 3 else "")
    return (
        f"{names} and {'their' if len(flow) > 1 else 'its'} subgraphs kept in FP32: {failed} on them ({reason}), "
        "an upstream limitation"
    )


def _histogram_failed(e: Exception) -> bool:
    """Whether ``e`` is entropy calibration's histogram failing (numpy: "Too many bins for data range")."""
    text = f"{type(e).__name__}: {e}".lower()
    return "bins" in text or "histogram" in text


def _repaired_source(model: Model, path: Path, autocast: bool) -> list[str]:
    """Repairs made to the copy ModelOpt converts (the user's file is untouched); the ones a reader must know, in a
    line each:

    - initializers also listed as graph inputs (overridable defaults, as old exporters wrote every weight: CenterFace
      lists 194) are taken out of the inputs: AutoCast otherwise refuses ("Cannot restore public graph input
      metadata because names changed") and TensorRT would ask for them as inputs;
    - before AutoCast, the exporter's shape annotations (``value_info``) are dropped: its own inference fills in
      what it needs, and stale ones (a GPT-2 export's) came out as hundreds of dimensions labelled ``unk``."""
    import onnx

    graph = model.proto.graph
    weights = {t.name for t in graph.initializer}
    listed = [i.name for i in graph.input if i.name in weights]
    stale = autocast and len(graph.value_info)
    if not listed and not stale:
        return []
    proto = onnx.load(str(path))
    inputs = [i for i in proto.graph.input if i.name not in weights]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    if stale:
        del proto.graph.value_info[:]
    onnx.save_model(proto, str(path), save_as_external_data=proto.ByteSize() > (1 << 30))
    shown = ", ".join(listed[:3]) + ("..." if len(listed) > 3 else "")
    return (
        [
            f"{len(listed)} initializers listed as graph inputs ({shown}) taken out of the inputs: they are weights, "
            "which ModelOpt and TensorRT would take for inputs"
        ]
        if listed
        else []
    )


#: Ops that only move or retype values: a graph with nothing else besides ai.onnx.ml operators has no work to convert.
_NO_WORK = {"Cast", "CastLike", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Constant"}
ML_DOMAIN = "ai.onnx.ml"


def _ml_nodes(graph) -> list:
    """Main-graph nodes of the ``ai.onnx.ml`` domain (TreeEnsemble, ZipMap, Scaler...: scikit-learn exports)."""
    return [n for n in graph.node if n.domain == ML_DOMAIN]


def _ml_names(nodes: list) -> str:
    types = [
        t + (" (its output a sequence of maps, not a tensor)" if t == "ZipMap" else "")
        for t in dict.fromkeys(n.op_type for n in nodes)
    ]
    return ", ".join(types[:4]) + ("..." if len(types) > 4 else "")


def _refuse_ml_only(model: Model, precision: str) -> None:
    """A model whose work is all ``ai.onnx.ml`` operators has nothing to convert: refused, naming them."""
    ml = _ml_nodes(model.proto.graph)
    rest = [n for n in model.proto.graph.node if n.domain != ML_DOMAIN and n.op_type not in _NO_WORK]
    if ml and not rest:
        raise WorkbenchError(
            f"{precision} of '{model.name}' changes nothing: its work is in ai.onnx.ml operators ({_ml_names(ml)}), "
            "which stay in their own precision (ModelOpt does not convert them) and which TensorRT cannot run: "
            "profile it at fp32 on ONNX Runtime (backend onnxruntime)."
        )


def _convert_around(convert, proto, kept: list, out: Path, feeds, around: Path) -> None:
    """``convert`` ``proto`` without its ``kept`` nodes (:func:`_cut_control_flow`), then put them back unchanged
    into ``out``; ``around`` is the work folder it makes. A failure is ModelOpt's, raised as it is."""
    import onnx

    around.mkdir()
    cut, restore = _cut_control_flow(proto, kept)
    cut_feeds = _cut_feeds(proto, cut, feeds) if feeds is not None else None
    onnx.save_model(cut, str(around / "cut.onnx"))
    convert(around / "cut.onnx", around / "converted.onnx", cut_feeds, around)
    onnx.save_model(restore(onnx.load(str(around / "converted.onnx"))), str(out))


def _upstream_cause(graph) -> str:
    """What in the model ModelOpt could not take, as the end of its one-line failure."""
    import onnx

    standard = {schema.name for schema in onnx.defs.get_all_schemas()}
    other = next((n for n in graph.node if n.op_type not in standard), None)
    if other is not None:  # ModelOpt takes any non-standard op for a TensorRT plugin and asks TensorRT about it
        return (
            f"node '{other.name}' ({other.domain or 'ai.onnx'}.{other.op_type}) is not a standard ONNX operator, "
            "which ModelOpt handles only as a TensorRT plugin: an upstream limitation of ModelOpt."
        )
    if _control_flow_nodes(graph):
        return "an upstream limitation of ModelOpt on control flow (If/Loop/Scan bodies): report it to ModelOpt."
    return "try keep_fp32_op_types / exclude_nodes for the failing node, or report it."


def _control_flow_nodes(graph) -> list:
    """Main-graph nodes with subgraphs (If, Loop, Scan)."""
    return [n for n in graph.node if subgraphs(n)]


def _captured(graph) -> set[str]:
    """Names a subgraph reads from enclosing scopes (recursively through nested subgraphs)."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    local |= {o for n in graph.node for o in n.output}
    return set().union(*map(_reads, graph.node)) - local


def _reads(node) -> set[str]:
    """What a node reads: its inputs and what its bodies read from enclosing scopes."""
    return {i for i in node.input if i}.union(*map(_captured, subgraphs(node)))


def _cut_control_flow(proto, flow: list):
    """The model without ``flow`` nodes, and a function putting them back into the converted model."""
    import onnx

    graph = proto.graph
    flow_ids = {id(n) for n in flow}
    kept = [n for n in graph.node if id(n) not in flow_ids]
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False).graph
    typed = {v.name: v for v in (*inferred.value_info, *inferred.output, *graph.output)}
    read_by_kept = set().union(*map(_reads, kept))
    # what the cut-out nodes produce for the rest of the graph becomes its inputs (a ZipMap's sequence of maps,
    # read by nothing, is not one)
    flow_outputs = [o for n in flow for o in n.output if o and o in read_by_kept]
    missing = [o for o in flow_outputs if o not in typed]
    if missing:
        raise ValueError(f"no type for {missing[0]}")
    read = set().union(*map(_reads, flow))
    produced = {o for n in kept for o in n.output}
    outputs = [o.name for o in graph.output]
    boundary_outputs = sorted(r for r in read if r in produced and r not in outputs)
    cut = onnx.ModelProto()
    cut.CopyFrom(proto)
    del cut.graph.node[:]
    cut.graph.node.extend(kept)
    cut.graph.input.extend(typed[o] for o in flow_outputs)
    # what the source said of those tensors would override the inputs' shapes; and ModelOpt's checker, once it has
    # fixed the input shapes, refuses a value described by a type without a shape
    described = [v for v in cut.graph.value_info if v.name not in flow_outputs and v.type.tensor_type.HasField("shape")]
    del cut.graph.value_info[:]
    cut.graph.value_info.extend(described)
    del cut.graph.output[:]
    all_flow_outputs = {o for n in flow for o in n.output}
    cut.graph.output.extend(
        [o for o in graph.output if o.name not in all_flow_outputs] + [typed[r] for r in boundary_outputs if r in typed]
    )
    original_initializers = {t.name: t for t in graph.initializer}
    flow_copies = [onnx.NodeProto() for _ in flow]
    for copy_, node in zip(flow_copies, flow):
        copy_.CopyFrom(node)

    def restore(converted):
        g = converted.graph
        keep_inputs = [i for i in g.input if i.name not in flow_outputs]
        del g.input[:]
        g.input.extend(keep_inputs)
        del g.output[:]
        g.output.extend(graph.output)
        present = {t.name for t in g.initializer}
        g.initializer.extend(t for name, t in original_initializers.items() if name in read and name not in present)
        nodes = list(g.node) + _in_opset(flow_copies, proto, _opset(converted))
        del g.node[:]
        g.node.extend(_topological(nodes))
        return converted

    return cut, restore


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)


def _in_opset(flow: list, proto, opset: int) -> list:
    """The control-flow nodes ``flow`` of ``proto`` with their bodies in ``opset`` (ModelOpt's PTQ raises the
    model's opset to 19; a body left in opset 16 would be invalid there: ReduceMean's ``axes`` attribute)."""
    from onnx import version_converter

    if opset <= _opset(proto) or not _control_flow_nodes(proto.graph):  # ai.onnx.ml nodes: a domain of their own
        return flow
    upgraded = _control_flow_nodes(version_converter.convert_version(proto, opset).graph)
    if [n.name for n in upgraded] != [n.name for n in flow]:
        raise ValueError("the opset upgrade changed the control-flow nodes")
    return upgraded


def _topological(nodes: list) -> list:
    """``nodes`` ordered so each comes after the producers of what it reads (its subgraphs' reads included)."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    needs = {i: {producer[r] for r in _reads(n) if r in producer} for i, n in enumerate(nodes)}
    try:
        return [nodes[i] for i in graphlib.TopologicalSorter(needs).static_order()]
    except graphlib.CycleError:
        raise ValueError("the graph has a cycle after conversion") from None


def _cut_feeds(proto, cut, feeds: list[dict]) -> list[dict]:
    """The feeds for the cut graph: each given feed plus the control-flow outputs it produces. The cut graph's new
    inputs, and its outputs without a shape, take the shapes of the values they hold (shape inference rarely knows
    an If output's; ModelOpt needs a shape on every input and output): a dimension all feeds agree on is fixed, one
    that differs is named."""
    import onnx

    ort = optional_import("onnxruntime", purpose="convert a model around its control flow", extra="cpu")
    new_inputs = [i for i in cut.graph.input if i.name not in feeds[0]]
    unshaped = [o for o in cut.graph.output if not o.type.tensor_type.HasField("shape")]
    wanted = [v.name for v in (*new_inputs, *unshaped)]
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(v for v in (*new_inputs, *unshaped) if v.name not in present)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    values = [dict(zip(wanted, session.run(wanted, {n: feed[n] for n in names}))) for feed in feeds]
    for described in (*new_inputs, *unshaped):
        shape = described.type.tensor_type.shape
        del shape.dim[:]
        shape.SetInParent()  # a scalar has a shape with no dimensions, not none
        for axis, sizes in enumerate(zip(*{np.shape(v[described.name]) for v in values})):
            dim = shape.dim.add()
            if len(set(sizes)) == 1:
                dim.dim_value = sizes[0]
            else:
                dim.dim_param = f"{described.name}.{axis}"
    return [{**feed, **{i.name: v[i.name] for i in new_inputs}} for feed, v in zip(feeds, values)]


def _quantize(source: Path, out: Path, precision: str, opts: dict, feeds: list[dict], progress: Progress) -> None:
    from modelopt.onnx.quantization import quantize

    import onnx

    keep_fp32_op_types = list(opts["keep_fp32_op_types"])
    if (
        opts["layernorm_fp32"]
        and opts["high_precision_dtype"] != "fp32"
        and layernorm_nodes(onnx.load(str(source), load_external_data=False))
    ):
        keep_fp32_op_types += [op for op in LAYERNORM_FP32_OP_TYPES if op not in keep_fp32_op_types]
    # one step's shapes (ModelOpt infers shapes with them); a scalar has none to give
    shapes = format_shapes({name: arr.shape for name, arr in feeds[0].items() if np.ndim(arr)}, sep=",")
    reader = _progress_reader(feeds, progress, f"{precision} calibration")
    quantize(
        onnx_path=str(source),
        quantize_mode=precision,
        calibration_data_reader=reader,
        calibration_shapes=shapes,
        calibration_method=opts["calibration_method"],
        calibration_eps=["cpu"],
        nodes_to_exclude=opts["exclude_nodes"] or None,
        op_types_to_exclude=opts["exclude_op_types"] or None,
        op_types_to_exclude_fp16=keep_fp32_op_types or None,
        high_precision_dtype=opts["high_precision_dtype"],
        output_path=str(out),
        log_level="DEBUG",
        use_external_data_format=source.stat().st_size > (1 << 30),
    )
    if not out.is_file():
        raise WorkbenchError(f"ModelOpt wrote no quantized model for '{source.name}': see the log in the message.")


def layernorm_nodes(proto) -> list[str]:
    """Names of the nodes of every decomposed LayerNorm / RMSNorm in ``proto``:
    ``[ReduceMean -> Sub ->] Pow -> ReduceMean -> Add(eps) -> Sqrt -> Div | Reciprocal``."""
    nodes = list(proto.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    readers: dict[str, list] = {}
    for n in nodes:
        for tensor in n.input:
            readers.setdefault(tensor, []).append(n)

    def next_op(node, op_types):
        return next((r for r in readers.get(node.output[0], ()) if r.op_type in op_types), None) if node else None

    found: list[str] = []
    for power in (n for n in nodes if n.op_type == "Pow" and n.output):
        mean = next_op(power, ("ReduceMean",))
        add = next_op(mean, ("Add",))
        sqrt = next_op(add, ("Sqrt",))
        scale = next_op(sqrt, ("Div", "Reciprocal"))
        if scale is None:
            continue
        chain = [power, mean, add, sqrt, scale]
        centre = producer.get(power.input[0])
        if centre is not None and centre.op_type == "Sub":
            chain.append(centre)
            first_mean = producer.get(centre.input[1]) if len(centre.input) > 1 else None
            if first_mean is not None and first_mean.op_type == "ReduceMean":
                chain.append(first_mean)
        found += [n.name for n in chain if n.name and n.name not in found]
    return found


def _progress_reader(feeds: list[dict], progress: Progress, phase: str):
    """ModelOpt's calibration reader over ``feeds`` (one per step: held inputs whole in each, which ModelOpt's own
    reader would split), reporting each step to ``progress`` and stopping when it is cancelled."""
    from modelopt.onnx.quantization.calib_utils import CalibrationDataProvider

    class ProgressReader(CalibrationDataProvider):
        def __init__(self):  # not ModelOpt's __init__: it splits every input along its first axis
            self.calibration_data_list = feeds
            self.rewind()
            self.done = 0

        def get_next(self):
            item = super().get_next()
            if item is not None:
                self.done += 1
                if not progress.step(phase, self.done, len(self.calibration_data_list)):
                    raise Cancelled("Calibration cancelled by the user: nothing was written to the variant cache.")
            return item

        def rewind(self):
            super().rewind()
            self.done = 0

    return ProgressReader()


def _unique_node_names(path: Path) -> Path:
    """ModelOpt may leave unnamed or clashing nodes; the workbench needs unique names for per-layer results."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    seen: set[str] = set()
    changed = False
    for i, node in enumerate(proto.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        changed |= name != node.name
        node.name = name
        seen.add(name)
    if changed:
        onnx.save_model(proto, str(path))
    return path


# ---- ModelOpt plumbing --------------------------------------------------------------------------------------


def _modelopt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nvidia-modelopt")
    except PackageNotFoundError:
        return "missing"


def _import_modelopt(autocast: bool) -> None:
    """Import ModelOpt before capturing output, so its import-time logging setup is restored afterwards."""
    purpose = "make fp16/bf16/int8/fp8 variants (ModelOpt AutoCast and PTQ)"
    optional_import("torch", purpose=purpose, extra="precision")
    optional_import(
        "modelopt.onnx.autocast" if autocast else "modelopt.onnx.quantization", purpose=purpose, extra="precision"
    )


@contextlib.contextmanager
def _captured_output(buffer: io.StringIO):
    """Send ModelOpt's logging (DEBUG and up), every other library's log records and warnings, prints and progress
    bars to ``buffer``; restore logging after. The workbench's own messages still go where the root logger's
    handlers (the CLI's console, the panel's log) would have sent them."""
    loggers = [logging.getLogger()] + [
        logging.getLogger(n)
        for n in list(logging.root.manager.loggerDict)
        if n.startswith(("modelopt", "polygraphy", "onnxscript", ROOT))
    ]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    listeners = logging.getLogger().handlers[:]
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(asctime)s - [modelopt][onnx] - %(levelname)s - %(message)s"))
    for lg in loggers:
        if lg.name != ROOT and not lg.name.startswith(ROOT + "."):
            lg.handlers = []
    modelopt_logger = logging.getLogger("modelopt.onnx")
    modelopt_logger.addHandler(handler)
    modelopt_logger.propagate = False
    for lg in loggers[1:]:
        if lg.name.startswith("modelopt"):
            lg.setLevel(logging.DEBUG)
    ours = logging.getLogger(ROOT)
    ours.handlers = ours.handlers + listeners  # the root's listeners hear the workbench alone meanwhile
    ours.propagate = False
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers = handlers
            lg.setLevel(level)
            lg.propagate = propagate


def _last_error(e: Exception, log: str) -> str:
    """The exception's first line, plus ModelOpt's last logged error when that says more."""
    errors = [
        re.split(r" - ERROR - |^ERROR:[\w.]+:", ln, maxsplit=1)[-1].strip()
        for ln in log.splitlines()
        if (" - ERROR - " in ln or ln.startswith("ERROR:")) and "NVML" not in ln
    ]
    text = (str(e).strip().splitlines() or [""])[0]
    if errors and errors[-1] not in text:
        text = f"{text}: {errors[-1]}" if text else errors[-1]
    return shorten(text, 400) or type(e).__name__


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
