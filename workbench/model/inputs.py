"""Inputs for profiling: generated from the model's input specs (seeded), or given as arrays / .npy / .npz.

Dynamic dimensions take their size from ``shapes`` (``--shapes``); without it, the first dimension defaults to
``DEFAULT_BATCH`` (1), the height and width of an image input (rank 4 with 1 or 3 channels) to
``DEFAULT_IMAGE_SIDE`` (224) and any other dynamic dimension to ``DEFAULT_DYNAMIC_DIM`` (32).

Why defaults and not a refusal: the quickstart, the panel and teaching notebooks must run a model as it comes,
and most dynamic models are exported with a free batch only. But a default is not the size a user deploys (a
text detector at 224x224 runs ~8x faster than at 640x640), so :func:`defaulted_shapes_note` says which shape was
used and how to give another; the pipeline puts it on the run, and every summary shows the profiled shapes.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError, first_line

DEFAULT_BATCH = 1
#: The most a .npy/.npz of inputs, calibration or evaluation data may hold once loaded (its headers are read first:
#: a small compressed .npz can declare arrays of terabytes).
MAX_ARRAY_FILE_BYTES = 8 << 30
DEFAULT_DYNAMIC_DIM = 32
DEFAULT_IMAGE_SIDE = 224


def resolve_shapes(model, shapes=None) -> dict[str, tuple[int, ...]]:
    """Concrete shape of every model input: ``shapes`` where given (checked against fixed dims), defaults elsewhere."""
    given = dict(shapes or {})
    names = {t.name for t in model.inputs}
    unknown = sorted(set(given) - names)
    if unknown:
        raise WorkbenchError(
            f"Shape given for unknown input '{unknown[0]}': the model's inputs are {', '.join(sorted(names))}."
        )
    result = {}
    for spec in model.inputs:
        if spec.name in given:
            shape = tuple(int(d) for d in given[spec.name])
            _check_shape(spec, shape, "--shapes")
            if 0 in shape and 0 not in spec.shape:  # an empty tensor: every layer does nothing in no time
                raise WorkbenchError(
                    f"--shapes '{spec.name}' has a 0 dimension ({_fmt(shape)}): an empty tensor "
                    "measures nothing; give every dimension 1 or more."
                )
        else:
            shape = tuple(d if _fixed(d) else _default_dim(spec.shape, i) for i, d in enumerate(spec.shape))
        result[spec.name] = shape
    return result


def _fixed(d) -> bool:
    return isinstance(d, int) and d >= 0


def profiled_batch(specs, shapes: Mapping) -> tuple[int, str]:
    """Samples per inference, and a note when that is a guess: the first dimension, as profiled, of the inputs that
    carry the batch.

    ``specs`` are the model's inputs (anything with ``name`` and ``shape``: dims named, ``?`` or -1 are dynamic);
    ``shapes`` the shapes fed (name -> shape). The batch-carrying inputs are those whose first dimension is dynamic
    (Paddle exports it as -1, others name it); a fixed first dimension (a recurrent state ``[2, ?, 128]``) or a
    scalar carries none. Without a dynamic first dimension, a fixed first dimension every input shares is the
    exported batch (as calibration and accuracy read it). When the carriers were fed different first dimensions, or
    the fixed ones differ, the batch cannot be known: 1, with a note saying so.
    """
    dynamic = batch_carriers(specs)
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
        f"'{spec.name}' [{_fmt(d if _fixed(d) else '?' for d in spec.shape)}] at {_fmt(resolved[spec.name])}"
        for spec in defaulted
    ]
    # only the defaults this model took: a fixed 128x128 image with a free batch took the batch default alone
    used = {
        _default_name(spec.shape, i): _default_dim(spec.shape, i)
        for spec in defaulted
        for i, d in enumerate(spec.shape)
        if not _fixed(d)
    }
    example = ",".join(f"{spec.name}:{_fmt(resolved[spec.name])}" for spec in model.inputs)
    return (
        f"dynamic input shapes not given: profiled {'; '.join(parts)} "
        f"(default {', '.join(f'{name} {size}' for name, size in used.items())}); pass the size you deploy with "
        f"--shapes (e.g. {example}) or shapes= in BuildConfig"
    )


def evaluation_inputs(model, shapes=None, samples: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """``samples`` seeded random samples at the profiled shapes, stacked on the first axis (for accuracy).

    A model with a fixed batch b gets ``samples`` rounded up to whole batches of b."""
    resolved = resolve_shapes(model, shapes)
    batch = max((s[0] for s in resolved.values() if s), default=1) or 1
    count = -(-samples // batch) * batch
    if any(spec.shape and _fixed(spec.shape[0]) for spec in model.inputs):  # fixed batch: whole batches
        return _concat([make_inputs(model, resolved, seed=seed + i) for i in range(count // batch)])
    return make_inputs(model, {n: (count, *s[1:]) if s else s for n, s in resolved.items()}, seed=seed)


def _concat(parts: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def make_inputs(model, shapes=None, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs matching the model's input specs.

    Floats are standard normal; integer inputs that index an embedding (``Gather`` data) stay below its size,
    other integers are in [0, 2); booleans are random.
    """
    rng = np.random.default_rng(seed)
    bounds = index_bounds(model)
    resolved = resolve_shapes(model, shapes)
    arrays = {}
    _check_size(model, resolved)
    for spec in model.inputs:
        shape = resolved[spec.name]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            arrays[spec.name] = rng.integers(0, bounds.get(spec.name, 2), size=shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise WorkbenchError(f"Cannot generate data for input '{spec.name}' of type {spec.dtype}: pass --inputs.")
    return arrays


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def _check_size(model, resolved: dict) -> None:
    """Refuse inputs larger than half this machine's memory before allocating them (one line, not MemoryError)."""
    total = 0
    for spec in model.inputs:
        try:
            itemsize = np.dtype(spec.dtype).itemsize
        except TypeError:
            itemsize = 1
        total += math.prod(int(d) for d in resolved[spec.name]) * itemsize
    limit = _memory_bytes() // 2
    if total > limit:
        shapes = ", ".join(f"{n}:{'x'.join(map(str, s))}" for n, s in resolved.items())
        raise WorkbenchError(
            f"The inputs ({shapes}) need {total / 2**30:,.1f} GiB, more than half this machine's "
            f"memory ({limit / 2**30:,.1f} GiB): pass smaller shapes (--shapes / config.shapes)."
        )


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
        if declared > MAX_ARRAY_FILE_BYTES:
            raise WorkbenchError(
                f"{what} file '{path}' declares {declared:,} bytes of arrays, more than the "
                f"{MAX_ARRAY_FILE_BYTES:,} read: pass fewer samples."
            )
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return _single(loaded, model, f"{what} file '{path.name}'")
        with loaded:  # an NpzFile keeps the file open until closed
            return {k: loaded[k] for k in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, MemoryError) as e:
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
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
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
                f"{what} '{spec.name}' is missing: expected {spec.dtype}[{_fmt(spec.shape)}]; "
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
            f"{what} '{spec.name}' has shape {_fmt(shape)}, expected [{_fmt(spec.shape)}] "
            "(named dims are free): reshape it or pick the right input."
        )


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)


def index_bounds(model) -> dict[str, int]:
    """Graph inputs used as Gather indices into an initializer: input name -> size of the gathered axis."""
    inits = {t.name: t for t in model.proto.graph.initializer}
    names = {t.name for t in model.inputs}
    bounds = {}
    for node in model.proto.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] in names and node.input[0] in inits:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            bounds[node.input[1]] = int(inits[node.input[0]].dims[axis])
    return bounds
