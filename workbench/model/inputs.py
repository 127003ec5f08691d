"""Inputs for profiling: generated from the model's input specs (seeded), or given as arrays / .npy / .npz.

Dynamic dimensions take their size from ``shapes`` (``--shapes``); without it, the first dimension defaults to
``DEFAULT_BATCH`` (1), the height and width of an image input (rank 4 with 1 or 3 channels) to
``DEFAULT_IMAGE_SIDE`` (224) and any other dynamic dimension to ``DEFAULT_DYNAMIC_DIM`` (32).

Why defaults and not a refusal: the quickstart, the panel and teaching notebooks must run a model as it comes,
and most dynamic models are exported with a free batch only. But a default is not the size a user deploys (a
text detector at 224x224 runs ~8x faster than at 640x640), so :func:`defaulted_shapes_note` says which shape was
used and how to give another; the pipeline puts it on the run, and every summary shows the profiled shapes.
A named dynamic dimension has one size across inputs (``state [2, batch, 128]`` takes the batch of ``input``).

Values: generated inputs take the values the graph implies (:func:`inferred_value_ranges`: table indices of a
``Gather`` / ``OneHot``, the constants an input is compared with, e.g. the sample rate an ``If`` branches on, 0/1
for masks), else standard normal floats and 0/1 integers; ``ranges`` (``--input-range name:lo..hi``,
``profile(input_ranges=...)``) overrides them, and :func:`input_values_note` is the line a run shows.

Samples for accuracy: only the inputs whose first axis carries the batch (:func:`batch_inputs`: read from the graph,
the inputs whose first axis flows to an output's dimension) are stacked; recurrent state and scalars are held fixed
(:func:`evaluation_inputs`), on fixed-shape exports too.
"""

from __future__ import annotations

import errno
import logging
import math
import weakref
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import format_shape, format_shapes
from ..memory import check_memory, memory_error
from ..errors import WorkbenchError, first_line
from .onnx_model import _without_weights, subgraphs
from .symbolic import symbolic_shapes

DEFAULT_BATCH = 1
#: The most a .npz of inputs, calibration or evaluation data may hold once loaded (its headers are read first: a small
#: compressed .npz can declare arrays of terabytes); a .npy is memory-mapped, never loaded whole.
MAX_ARRAY_FILE_BYTES = 8 << 30
DEFAULT_DYNAMIC_DIM = 32
DEFAULT_IMAGE_SIDE = 224


def resolve_shapes(model, shapes=None) -> dict[str, tuple[int, ...]]:
    """Concrete shape of every model input: ``shapes`` where given (checked against fixed dims), defaults elsewhere."""
    given = _given(model, shapes, "Shape")
    result = {}
    named = _named_dims(model, given)
    for spec in model.inputs:
        if spec.name in given:
            shape = tuple(int(d) for d in given[spec.name])
            _check_shape(spec, shape, "--shapes")
            if 0 in shape and 0 not in spec.shape:  # an empty tensor: every layer does nothing in no time
                raise WorkbenchError(
                    f"--shapes '{spec.name}' has a 0 dimension ({format_shape(shape)}): an empty tensor "
                    "measures nothing; give every dimension 1 or more."
                )
        else:
            shape = tuple(
                d if _fixed(d) else named.get(d) or _default_dim(spec.shape, i) for i, d in enumerate(spec.shape)
            )
        result[spec.name] = shape
    if result and all(0 in shape for shape in result.values()):  # declared so: every inference is empty
        shown = ", ".join(f"{name} [{format_shape(shape)}]" for name, shape in result.items())
        raise WorkbenchError(
            f"Every input of the model is empty ({shown}): an inference on no data measures nothing (it would read "
            "as thousands of samples/s); export the model with non-empty input dimensions."
        )
    return result


def _given(model, per_input, what: str) -> dict:
    """``per_input`` as a dict, refused in one line when it names an input the model does not have."""
    given = dict(per_input or {})
    names = {t.name for t in model.inputs}
    unknown = sorted(set(given) - names)
    if unknown:
        raise WorkbenchError(
            f"{what} given for unknown input '{unknown[0]}': the model's inputs are {', '.join(sorted(names))}."
        )
    return given


def _named_dims(model, given: dict) -> dict[str, int]:
    """Size of each named dynamic dimension: from the given shapes, else the default where the name first appears.

    One name is one size across inputs (recurrent state ``[2, batch, 128]`` beside ``input [batch, sequence]``
    gets the input's batch, not the default of a middle dimension)."""
    sizes: dict[str, int] = {}
    for spec in sorted(model.inputs, key=lambda s: s.name not in given):
        for i, d in enumerate(spec.shape):
            if isinstance(d, str) and d != "?" and d not in sizes:
                shape = given.get(spec.name, ())
                sizes[d] = int(shape[i]) if i < len(shape) else _default_dim(spec.shape, i)
    return sizes


def _fixed(d) -> bool:
    return isinstance(d, int) and d >= 0


def profiled_batch(specs, shapes: Mapping, carriers=None) -> tuple[int, str]:
    """Samples per inference, and a note when that is a guess: the first dimension, as profiled, of the inputs that
    carry the batch.

    ``specs`` are the model's inputs (anything with ``name`` and ``shape``: dims named, ``?`` or -1 are dynamic);
    ``shapes`` the shapes fed (name -> shape). The batch-carrying inputs are those whose first dimension is dynamic
    (Paddle exports it as -1, others name it); a fixed first dimension (a recurrent state ``[2, ?, 128]``) or a
    scalar carries none. Without a dynamic first dimension, a fixed first dimension every input shares is the
    exported batch (as calibration and accuracy read it). When the carriers were fed different first dimensions, or
    the fixed ones differ, the batch cannot be known: 1, with a note saying so. ``carriers``: the batch-carrying
    input names where the graph told them (:func:`batch_inputs`); they replace the rule above.
    """
    dynamic = batch_carriers(specs)
    if carriers:
        carriers = {name: _first(shapes.get(name)) for name in carriers}
    else:
        carriers = {s.name: _first(shapes.get(s.name)) for s in dynamic} if dynamic else _fixed_firsts(specs)
    sizes = set(carriers.values())
    if len(sizes) > 1 or None in sizes:
        fed = ", ".join(f"'{n}' {'?' if b is None else b}" for n, b in carriers.items())
        return 1, (
            f"batch unknown: the inputs' first dimensions are not one size ({fed}); samples/s is counted at batch 1 "
            "(inferences/s)"
        )
    return sizes.pop() if sizes else 1, ""


def batch_carriers(specs) -> list:
    """The inputs that carry the batch: those whose first dimension is dynamic (named, ``?`` or -1)."""
    return [s for s in specs if s.shape and not _fixed(s.shape[0])]


def _first(shape) -> int | None:
    """The first dimension of a profiled shape, None when it is not a known size (no shape, a scalar, -1)."""
    return int(shape[0]) if shape is not None and len(shape) and _fixed(shape[0]) and shape[0] > 0 else None


def _fixed_firsts(specs) -> dict:
    """Input name -> its fixed first dimension, for the inputs that have one (a scalar has none)."""
    return {s.name: int(s.shape[0]) for s in specs if s.shape and _fixed(s.shape[0]) and s.shape[0] > 0}


def _default_dim(shape, i: int) -> int:
    return {"batch": DEFAULT_BATCH, "image side": DEFAULT_IMAGE_SIDE}.get(_default_name(shape, i), DEFAULT_DYNAMIC_DIM)


def _default_name(shape, i: int) -> str:
    """Which default a dynamic dimension takes: ``batch``, ``image side`` or ``other dims``."""
    if i == 0:
        return "batch"
    if len(shape) == 4 and i in (2, 3) and shape[1] in (1, 3):  # NCHW image: height, width
        return "image side"
    return "other dims"


def defaulted_shapes_note(model, shapes=None) -> str:
    """A warning naming each input whose dynamic dimensions were given default sizes, with the shape used and
    the ``--shapes`` to pass instead; "" when every dynamic dimension was given."""
    given = dict(shapes or {})
    resolved = resolve_shapes(model, given)
    defaulted = [spec for spec in model.inputs if spec.name not in given and not all(_fixed(d) for d in spec.shape)]
    if not defaulted:
        return ""
    parts = [
        f"'{spec.name}' [{format_shape(d if _fixed(d) else '?' for d in spec.shape)}] at {format_shape(resolved[spec.name])}"
        for spec in defaulted
    ]
    # only the defaults this model took: a fixed 128x128 image with a free batch took the batch default alone
    used = {
        _default_name(spec.shape, i): _default_dim(spec.shape, i)
        for spec in defaulted
        for i, d in enumerate(spec.shape)
        if not _fixed(d)
    }
    example = ",".join(f"{spec.name}:{format_shape(resolved[spec.name])}" for spec in model.inputs)
    return (
        f"dynamic input shapes not given: profiled {'; '.join(parts)} "
        f"(default {', '.join(f'{name} {size}' for name, size in used.items())}); pass the size you deploy with "
        f"--shapes (e.g. {example}) or shapes= in BuildConfig"
    )


def evaluation_inputs(model, shapes=None, samples: int = 32, seed: int = 0, ranges=None) -> dict[str, np.ndarray]:
    """``samples`` seeded random samples at the profiled shapes, stacked on the first axis (for accuracy).

    Only the inputs that carry the batch (:func:`batch_inputs`) are stacked; the others (recurrent state,
    a scalar sample rate) keep their profiled shape and are held fixed across samples. A model with a fixed
    batch b, or with inputs held fixed, gets ``samples`` rounded up to whole batches of the profiled batch."""
    resolved = resolve_shapes(model, shapes)
    carried = batch_inputs(model)
    batch = max((resolved[n][0] for n in carried), default=1) or 1
    count = -(-samples // batch) * batch
    held = [spec.name for spec in model.inputs if spec.name not in carried]
    if held or any(_fixed(spec.shape[0]) for spec in model.inputs if spec.name in carried):  # whole batches
        parts = [make_inputs(model, resolved, seed=seed + i, ranges=ranges) for i in range(count // batch)]
        return {n: np.concatenate([p[n] for p in parts]) if n in carried else parts[0][n] for n in resolved}
    return make_inputs(model, {n: (count, *s[1:]) if s else s for n, s in resolved.items()}, seed=seed, ranges=ranges)


def batch_inputs(model) -> tuple[str, ...]:
    """The names of the inputs whose first axis counts samples.

    From the graph (:func:`flowing_batch_inputs`): the inputs whose first axis reaches an output's dimension (audio
    ``input [1, 576]`` whose rows become ``output [1, 1]``), while recurrent state ``[2, 1, 128]``, whose first
    axis is the layers, and scalars are held whole, on fixed-shape exports too. Where the graph cannot say (shape
    inference fails, or a hard-coded reshape cuts every input's axis off the outputs): the batch carriers
    (:func:`batch_carriers`) when any input has a dynamic first dimension, else every input with a dimension."""
    flowing = flowing_batch_inputs(model)
    if flowing:
        return flowing
    carriers = tuple(spec.name for spec in batch_carriers(model.inputs))
    return carriers or tuple(spec.name for spec in model.inputs if spec.shape)


_FLOWING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def flowing_batch_inputs(model) -> tuple[str, ...]:
    """The inputs whose first axis flows to some output dimension, by ONNX Runtime's symbolic shape inference; ()
    when that cannot be told (no graph, inference fails, nothing flows). Computed once per model.

    Each input (with the inputs sharing its first dimension's name) gets a symbol for its first axis, every other
    dimension its profiled size (:func:`resolve_shapes`); the input carries the batch when the symbol comes out in
    an output's shape (``stateN [2, S, 128]`` counts: the audio's rows are the state's batch)."""
    proto = getattr(model, "proto", None)
    if proto is None:
        return ()
    try:
        return _FLOWING[model]
    except (KeyError, TypeError):
        pass
    try:
        found = _flowing(model, proto)
    except Exception as e:  # noqa: BLE001 - symbolic inference fails on graphs it does not cover: the fallback rule
        logging.getLogger("workbench.model.inputs").debug("batch flow not inferred: %s", first_line(e))
        found = ()
    try:
        _FLOWING[model] = found
    except TypeError:
        pass
    return found


def _flowing(model, proto) -> tuple[str, ...]:
    sizes = resolve_shapes(model)
    bare = _without_weights(proto)  # a 350 MB ViT is not copied: shape inference reads its weights' shapes
    for output in bare.graph.output:
        output.type.Clear()
    _clear_shapes(bare.graph)
    tried: dict[object, bool] = {}
    found = []
    for spec in model.inputs:
        if not spec.shape:
            continue
        key = spec.shape[0] if isinstance(spec.shape[0], str) else spec.name  # a named batch is one question
        if key not in tried:
            tried[key] = _first_axis_flows(bare, model.inputs, sizes, spec)
        if tried[key]:
            found.append(spec.name)
    return tuple(found)


def _first_axis_flows(bare, specs, sizes, tested) -> bool:
    """Whether ``tested``'s first axis (with the dimensions sharing its name) reaches an output's shape, every
    other dimension at its profiled size."""
    marked = {(s.name, i) for s in specs for i, d in enumerate(s.shape) if isinstance(d, str) and d == tested.shape[0]}
    return _symbol_reaches_an_output(bare, sizes, marked | {(tested.name, 0)})


def _symbol_reaches_an_output(bare, sizes, marked: set) -> bool:
    """Whether one symbol given to the ``marked`` input dimensions ((name, axis); every other at its size) comes
    out in an output's shape, by ONNX Runtime's symbolic shape inference."""
    import onnx

    symbol = "__workbench_batch"
    model = onnx.ModelProto()
    model.CopyFrom(bare)
    for value in model.graph.input:
        if value.name not in sizes:
            continue
        for i, d in enumerate(value.type.tensor_type.shape.dim):
            d.Clear()
            if (value.name, i) in marked:
                d.dim_param = symbol
            else:
                d.dim_value = sizes[value.name][i]
    inferred = symbolic_shapes(model)
    return any(d.dim_param == symbol for o in inferred.graph.output for d in o.type.tensor_type.shape.dim)


def _clear_shapes(graph) -> None:
    """Drop the shapes an exporter wrote inside the graph (value_info, subgraph outputs): inference recomputes them
    from the symbol, where a stale fixed or named dimension would stop it."""

    del graph.value_info[:]
    for node in graph.node:
        for body in subgraphs(node):
            for output in body.output:
                output.type.tensor_type.ClearField("shape")
            _clear_shapes(body)


def held_batch(model, arrays: Mapping) -> int | None:
    """The batch that inputs held whole (not batch-carrying: recurrent state, a scalar) fix, None without them:
    the size ``arrays`` give a held input's dimension named like a batch input's first (state ``[2, batch, 128]``
    beside ``input [batch, samples]``), else 1 (such a state is fed whole with one sample at a time)."""
    carried = batch_inputs(model)
    held = [spec for spec in model.inputs if spec.name not in carried]
    if not held:
        return None
    batch_names = {spec.shape[0] for spec in model.inputs if spec.name in carried and isinstance(spec.shape[0], str)}
    for spec in held:
        for i, d in enumerate(spec.shape):
            if d in batch_names and d != "?" and i < np.ndim(arrays[spec.name]):
                return int(np.shape(arrays[spec.name])[i])
    return 1


def sample_count(model, arrays: Mapping, what: str = "Input") -> int:
    """The samples in ``arrays``: the first axis of the inputs that carry the batch (:func:`batch_inputs`), one count
    for all of them; inputs held whole do not count."""
    carried = batch_inputs(model)
    counts = {int(np.shape(arrays[n])[0]) if np.ndim(arrays[n]) else 1 for n in carried if n in arrays} or {1}
    if len(counts) > 1:
        held = [spec.name for spec in model.inputs if spec.name not in carried]
        raise WorkbenchError(
            f"{what}s have different sample counts {sorted(counts)}: give every input that carries the batch the "
            "same number of samples along the first axis" + (f" ({', '.join(held)} are given whole)." if held else ".")
        )
    return counts.pop()


def first_samples(model, arrays: Mapping, count: int) -> dict:
    """The first ``count`` samples of ``arrays``: the batch-carrying inputs cut, the inputs held whole (recurrent
    state, a sample rate) kept as they are."""
    carried = batch_inputs(model)
    return {k: v[:count] if k in carried else v for k, v in arrays.items()}


def chunk_size(model, arrays: Mapping, wanted: int) -> int:
    """Samples per run over ``arrays``: the fixed first dimension of the batch-carrying inputs (``arrays`` must hold
    a multiple of it), else the batch that inputs held whole fix (:func:`held_batch`), else ``wanted``."""
    carried = batch_inputs(model)
    fixed = next((s.shape[0] for s in model.inputs if s.name in carried and _fixed(s.shape[0]) and s.shape[0] > 0), 0)
    if not fixed:
        return max(1, held_batch(model, arrays) or wanted)
    samples = sample_count(model, arrays)
    if samples % fixed:
        raise WorkbenchError(
            f"The model's batch is fixed at {fixed} but {samples} samples were given: give a multiple of {fixed}."
        )
    return int(fixed)


def make_inputs(model, shapes=None, seed: int = 0, ranges=None) -> dict[str, np.ndarray]:
    """Seeded random inputs matching the model's input specs, with values the model can run on.

    Each input takes its values from :func:`input_value_ranges` (what the graph says, overridden by ``ranges``:
    ``{name: "lo..hi"}``, ``(lo, hi)`` or a :class:`ValueRange`): integers uniform in the range or drawn from
    the named values; floats standard normal unless a range is given (then uniform in it); booleans random.
    """
    rng = np.random.default_rng(seed)
    values = input_value_ranges(model, ranges)
    resolved = resolve_shapes(model, shapes)
    arrays = {}
    _check_size(model, resolved)
    for spec in model.inputs:
        shape = resolved[spec.name]
        dtype = np.dtype(spec.dtype)
        if dtype.kind not in "fiub":
            raise WorkbenchError(f"Cannot generate data for input '{spec.name}' of type {spec.dtype}: pass --inputs.")
        arrays[spec.name] = values[spec.name].sample(rng, shape, dtype)
    return arrays


# ---- value ranges ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueRange:
    """The values an input gets: ``low..high`` (inclusive for integers), or one of ``values`` when the graph names
    them; ``why`` says where they come from (the node that decided them, "given", or the default)."""

    low: float
    high: float
    values: tuple = ()
    why: str = ""

    def sample(self, rng, shape, dtype: np.dtype) -> np.ndarray:
        """Values drawn directly in ``dtype`` (16-bit floats through float32): never a float64 or int64 copy of a
        large input first."""
        if self.values:
            index = rng.integers(0, len(self.values), size=shape, dtype=np.min_scalar_type(len(self.values)))
            return np.asarray(np.asarray(self.values).astype(dtype)[index])  # a 0-d array for a scalar input
        if dtype.kind == "b":
            return rng.integers(0, 2, size=shape, dtype=np.uint8).astype(bool)
        if dtype.kind == "f":
            drawn = np.float64 if dtype == np.float64 else np.float32
            if not self.bounded:
                return rng.standard_normal(shape, dtype=drawn).astype(dtype, copy=False)
            values = rng.random(shape, dtype=drawn)
            values *= self.high - self.low
            values += self.low
            return values.astype(dtype, copy=False)
        info = np.iinfo(dtype)
        low, high = max(int(self.low), info.min), min(int(self.high), info.max)
        return rng.integers(low, high, size=shape, endpoint=True, dtype=dtype)

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def __str__(self) -> str:
        if not self.bounded:
            return f"standard normal ({self.why})"
        what = (
            " or ".join(_number(v) for v in self.values)
            if self.values
            else f"{_number(self.low)}..{_number(self.high)}"
        )
        return f"{what} ({self.why})" if self.why else what


NO_RANGE = "no range in the graph"


def _number(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def parse_value_ranges(text: str | None) -> dict[str, ValueRange]:
    """``"ids:0..30521,sr:16000"`` (``--input-range``) -> ``{name: ValueRange}``; one value is ``lo..hi`` with lo = hi."""
    ranges = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, spec = part.rpartition(":")
        if not sep or not name:
            raise WorkbenchError(
                f"--input-range '{part}' is not NAME:LO..HI: write e.g. input_ids:0..30521 or sr:16000."
            )
        ranges[name] = _value_range(name, spec)
    return ranges


def _value_range(name: str, given) -> ValueRange:
    if isinstance(given, ValueRange):
        return given
    shown = given
    if isinstance(given, str):
        low, sep, high = given.partition("..")
        given = (low, high if sep else low)
    try:
        low, high = (float(v) for v in given)
    except (TypeError, ValueError):
        raise WorkbenchError(
            f"Input range {shown!r} for '{name}' is not LO..HI numbers: write e.g. '0..255' or (0, 255)."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise WorkbenchError(f"Input range {_number(low)}..{_number(high)} for '{name}' is empty: give LO <= HI.")
    return ValueRange(low, high, why="given")


def input_value_ranges(model, ranges=None) -> dict[str, ValueRange]:
    """The values each input gets: ``ranges`` where given (name -> ``"lo..hi"``, ``(lo, hi)`` or a
    :class:`ValueRange`), else what the graph says (:func:`inferred_value_ranges`), else the default (standard
    normal floats, integers 0..1)."""
    given = _given(model, ranges, "Input range")
    inferred = inferred_value_ranges(model)
    result = {}
    for spec in model.inputs:
        if spec.name in given:
            result[spec.name] = _value_range(spec.name, given[spec.name])
        elif spec.name in inferred:
            result[spec.name] = inferred[spec.name]
        elif spec.dtype == "bool":
            result[spec.name] = ValueRange(0, 1, why="boolean")
        elif spec.dtype == "unknown" or np.dtype(spec.dtype).kind == "f":
            result[spec.name] = ValueRange(-math.inf, math.inf, why=NO_RANGE)
        else:
            result[spec.name] = ValueRange(0, 1, why=NO_RANGE)
    return result


def input_values_note(model, ranges=None, given=()) -> str:
    """One line saying which values each input got (for a run's notes); ``given``: inputs the user's data set."""
    chosen = input_value_ranges(model, ranges)
    return "input values: " + "; ".join(
        f"{name} {'from the given data' if name in given else value}" for name, value in chosen.items()
    )


#: Ops that move, reshape or convert a tensor without computing new values from it (data at input 0).
_PASS_THROUGH = {
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Cast",
    "Expand",
    "Transpose",
    "Slice",
    "Gather",
    "Tile",
    "GatherElements",
    "GatherND",
    "CastLike",
}
_COMPARE = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}
#: A compared constant with more values than this is an index table (one-hot), read as its min..max.
_FEW_VALUES = 4


def inferred_value_ranges(model) -> dict[str, ValueRange]:
    """Value ranges the graph implies for its integer inputs (and for float inputs compared with constants).

    Followed from each input through ops that only move values (:data:`_PASS_THROUGH`) into: ``Gather`` /
    ``GatherElements`` indices into a constant table (0..rows-1); ``OneHot`` indices (0..depth-1); a comparison
    (``Equal``, ``Less``...) with a constant: its values when there are a few (an ``If`` condition such as a
    sample rate), its min..max otherwise (a one-hot built from ``Equal`` against 0..N). Integer or boolean inputs
    named ``*mask*`` get 0 or 1. Subgraphs (If/Loop/Scan bodies) are searched too.
    """
    from onnx import numpy_helper

    from .onnx_model import _all_nodes

    proto = model.proto
    nodes = list(_all_nodes(proto))
    consumers: dict[str, list] = {}
    producers = {}
    for node in nodes:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
        for name in node.output:
            producers[name] = node
    constants = {t.name: t for t in proto.graph.initializer}

    def constant(name: str, depth: int = 0):
        if name in constants:
            return numpy_helper.to_array(constants[name])
        node = producers.get(name)
        if node is None or depth > 8:
            return None
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_int", "value_float"):
                    return np.asarray(a.i if a.name == "value_int" else a.f)
                if a.name in ("value_ints", "value_floats"):
                    return np.asarray(list(a.ints) if a.name == "value_ints" else list(a.floats))
            return None
        if node.op_type == "Range" and len(node.input) == 3:
            parts = [constant(i, depth + 1) for i in node.input]
            return None if any(p is None for p in parts) else np.arange(*(p.item() for p in parts))
        if node.op_type in _PASS_THROUGH and node.input:
            return constant(node.input[0], depth + 1)
        return None

    result = {}
    for spec in model.inputs:
        found = _follow(spec.name, consumers, constant)
        if (
            found is None
            and spec.dtype != "unknown"
            and np.dtype(spec.dtype).kind in "iub"
            and "mask" in spec.name.lower()
        ):
            found = ValueRange(0, 1, (0, 1), "a mask, by its name")
        if found is not None:
            result[spec.name] = found
    return result


def _follow(start: str, consumers: dict, constant) -> ValueRange | None:
    seen, frontier = {start}, [start]
    for _ in range(12):  # a few pass-through ops deep: a decision is near the input or not made by the graph
        following = []
        for tensor in frontier:
            for node, index in consumers.get(tensor, ()):
                where = f"{node.op_type} '{node.name or node.output[0]}'"
                if node.op_type in ("Gather", "GatherElements") and index == 1:
                    table = constant(node.input[0])
                    if table is not None and table.ndim:
                        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                        rows = int(table.shape[axis])
                        return ValueRange(0, rows - 1, why=f"indices into the {rows}-row table of {where}")
                elif node.op_type == "OneHot" and index == 0:
                    depth = constant(node.input[1])
                    if depth is not None and depth.size == 1:
                        return ValueRange(
                            0, int(depth.item()) - 1, why=f"indices of {where}, depth {int(depth.item())}"
                        )
                elif node.op_type in _COMPARE and len(node.input) == 2:
                    other = constant(node.input[1 - index])
                    if other is not None and other.size:
                        return _compared(other, where)
                elif node.op_type in _PASS_THROUGH and index == 0:
                    for out in node.output:
                        if out not in seen:
                            seen.add(out)
                            following.append(out)
        frontier = following
    return None


def _compared(other: np.ndarray, where: str) -> ValueRange:
    values = sorted({v.item() for v in np.unique(other)})
    if len(values) <= _FEW_VALUES:
        return ValueRange(
            min(values),
            max(values),
            tuple(values),
            f"the value{'s' if len(values) > 1 else ''} {where} compares it with",
        )
    return ValueRange(values[0], values[-1], why=f"the values {where} compares it with")


def _check_size(model, resolved: dict) -> None:
    """Refuse inputs that do not fit in the memory this process may still use (:mod:`workbench.memory`: the cgroup
    limit, ``ulimit -v``, available memory, ``--max-memory``) before allocating them: one line with the estimate."""
    total = 0
    for spec in model.inputs:
        try:
            itemsize = np.dtype(spec.dtype).itemsize
        except TypeError:
            itemsize = 1
        count = math.prod(int(d) for d in resolved[spec.name])
        total += count * (itemsize + (4 if itemsize < 4 else 0))  # 16-bit floats are drawn as float32, then cast
    shapes = format_shapes(resolved)
    check_memory(total, f"The inputs ({shapes})", "pass smaller shapes (--shapes / config.shapes: a smaller batch)")


def load_inputs(source, model, *, what: str = "Input", batch_free: bool = False) -> dict[str, np.ndarray]:
    """Inputs from a dict of arrays, a .npz (keys = input names) or a .npy / array (single-input models), checked.

    ``batch_free``: the first axis counts samples, so it may differ from a fixed batch dimension.
    """
    arrays = read_arrays(source, model, what=what)
    check_inputs(arrays, model, what=what, batch_free=batch_free)
    return arrays


def read_arrays(source, model, *, what: str = "Input") -> dict[str, np.ndarray]:
    """Arrays by name, unchecked, from a dict, a .npz path, or a .npy path / ndarray for a single-input model.

    ``what`` starts the error messages: ``"Calibration"`` gives "Calibration file '...' does not exist: ...".
    """
    if isinstance(source, (str, Path)):
        source = _read_numpy_file(Path(source).expanduser(), model, what)
    elif isinstance(source, np.ndarray):
        source = _single(source, model, f"{what} data")
    elif not isinstance(source, Mapping):
        raise WorkbenchError(
            f"{what} data of type {type(source).__name__} is not supported: pass a dict of arrays "
            "keyed by input name or a .npz/.npy path."
        )
    return {k: np.asarray(v) for k, v in source.items()}


def _read_numpy_file(path: Path, model, what: str):
    if not path.is_file():
        if path.exists():  # a pipe or device would block the read or never end
            raise WorkbenchError(
                f"{what} file '{path}' is not a regular file (a pipe, device or folder): pass a "
                ".npz with one array per input name."
            )
        raise WorkbenchError(f"{what} file '{path}' does not exist: pass a .npz with one array per input name.")
    try:
        declared = _declared_bytes(path)
        if zipfile.is_zipfile(path):  # read whole: the arrays must fit
            if declared > MAX_ARRAY_FILE_BYTES:
                raise WorkbenchError(
                    f"{what} file '{path}' declares {declared:,} bytes of arrays, more than the "
                    f"{MAX_ARRAY_FILE_BYTES:,} read from a .npz: pass fewer samples, or a .npy (memory-mapped)."
                )
            check_memory(
                declared, f"{what} file '{path}'", "give fewer samples, or save them as a .npy (memory-mapped)"
            )
            with np.load(path, allow_pickle=False) as loaded:  # an NpzFile keeps the file open until closed
                return {k: loaded[k] for k in loaded.files}
        # a .npy is memory-mapped: read as its samples are used, in chunks, never held whole
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        return _single(loaded, model, f"{what} file '{path.name}'")
    except MemoryError:
        raise memory_error(f"Reading {what.lower()} file '{path}'", "give fewer samples") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, OSError) and e.errno == errno.ENOMEM:  # mmap beyond the address-space limit
            raise memory_error(f"Mapping {what.lower()} file '{path}'", "give fewer samples") from None
        raise WorkbenchError(
            f"{what} file '{path}' is not a .npy/.npz file ({first_line(e)}): "
            "save it with numpy.savez(path, **{input_name: array})."
        ) from None


def _declared_bytes(path: Path) -> int:
    """What the arrays of a .npy or .npz say they hold, from their headers alone (nothing is decompressed)."""

    def one(f) -> int:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        return math.prod(shape) * dtype.itemsize

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            total = 0
            for info in archive.infolist():  # every member numpy.load can open, whatever its name ends with
                with archive.open(info) as member:
                    total += one(member)
            return total
    with open(path, "rb") as f:
        return one(f)


def _single(array, model, what: str) -> dict:
    if len(model.inputs) != 1:
        raise WorkbenchError(
            f"{what} is one array but the model has {len(model.inputs)} inputs "
            f"({', '.join(s.name for s in model.inputs)}): use a .npz or dict keyed by input name."
        )
    return {model.inputs[0].name: array}


def check_inputs(arrays: dict, model, *, what: str = "Input", batch_free: bool = False) -> None:
    """One-line error naming the input and the expected shape when ``arrays`` do not fit the model."""
    for spec in model.inputs:
        if spec.name not in arrays:
            raise WorkbenchError(
                f"{what} '{spec.name}' is missing: expected {spec.dtype}[{format_shape(spec.shape)}]; "
                f"given: {', '.join(arrays) or 'nothing'}."
            )
        arr = arrays[spec.name]
        _check_shape(spec, arr.shape, what, skip_first=batch_free)
        expected = np.dtype(spec.dtype)
        if arr.dtype != expected and not np.can_cast(arr.dtype, expected, casting="same_kind"):
            raise WorkbenchError(
                f"{what} '{spec.name}' has dtype {arr.dtype}, expected {expected.name}: convert it with .astype."
            )


def _check_shape(spec, shape, what, skip_first=False):
    if len(shape) != len(spec.shape) or any(
        isinstance(d, int) and d >= 0 and d != s and not (skip_first and i == 0)
        for i, (d, s) in enumerate(zip(spec.shape, shape))
    ):
        raise WorkbenchError(
            f"{what} '{spec.name}' has shape {format_shape(shape)}, expected [{format_shape(spec.shape)}] "
            "(named dims are free): reshape it or pick the right input."
        )


def index_bounds(model) -> dict[str, int]:
    """Graph inputs used as table indices (Gather, OneHot): input name -> number of rows of the table."""
    return {
        name: int(found.high) + 1
        for name, found in inferred_value_ranges(model).items()
        if found.why.startswith("indices")
    }
