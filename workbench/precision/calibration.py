"""Calibration data for INT8/FP8 post-training quantization (and for AutoCast's ``data_max`` range check).

Sources (``load_calibration(source, model)``):

- a dict of arrays in memory, keys = model input names, first axis = samples (inputs held whole: see below);
- a ``.npz`` file (keys = input names) or a ``.npy`` file (single-input models);
- a folder of images (``.png .jpg .jpeg .bmp .gif .tif .tiff .webp``, read in file-name order) for a model with one
  float image input. **Preprocessing recipe**: each image is opened with Pillow, converted to greyscale (``L``) when
  the input has 1 channel or to ``RGB`` when it has 3, resized to the input's H x W (bilinear; images must all have
  one size when H or W is dynamic), scaled to [0, 1] (``pixel / 255``), then, with
  ``image_normalization="imagenet"``, normalised with the ImageNet mean (0.485, 0.456, 0.406) and std
  (0.229, 0.224, 0.225); laid out NCHW, or NHWC when the input's last dimension is 1 or 3 and its second is not.
  Preprocess your own way and pass arrays when your model expects something else.

**Inputs held whole.** Only the inputs that carry the batch (:func:`workbench.model.inputs.batch_inputs`: a dynamic
first dimension) have a sample axis. The others (recurrent state ``[2, batch, 128]`` beside ``input [batch, 512]``,
a scalar sample rate) are given as the model takes them, once, and go whole with every calibration batch; the batch
is then the size they give a dimension named like the batch (:func:`workbench.model.inputs.held_batch`), else 1.
``CalibrationData.held`` names them and the variant records them.

The documented range is **100–500 samples**: fewer gives noisy activation ranges, more rarely helps and costs time
and memory (a warning says so; the data is still used). Shapes and dtypes are checked against the model's inputs,
with a one-line error naming the input and the expected shape. Random data is only made on explicit request
(``random_calibration(model)``) and is labelled ``random`` wherever the variant is shown.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..config import format_shape
from .._optional import optional_import
from ..errors import WorkbenchError, first_line
from ..memory import SHARE, check_memory, mappable_left, memory_left
from ..paths import LOW_SPACE_BYTES, process_temp_dir
from ..model.inputs import (
    batch_inputs,
    check_inputs,
    held_batch,
    index_bounds,
    make_inputs,
    read_arrays,
    resolve_shapes,
)

log = logging.getLogger(__name__)

MIN_SAMPLES = 100
MAX_SAMPLES = 500
DEFAULT_RANDOM_SAMPLES = 128
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IMAGE_NORMALIZATIONS = ("unit", "imagenet")
#: Values hashed or checked at a time (8 MiB of float64): big arrays are walked in slices, never copied whole.
_CHUNK_VALUES = 1 << 20
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class CalibrationData:
    """Checked calibration arrays (input name -> array, in the model's dtypes): first axis = samples, except for
    the inputs named in ``held``, given whole (the same value with every batch)."""

    arrays: dict
    source: str
    random: bool = False
    preprocessing: str = ""
    notes: tuple = field(default=())
    held: tuple = ()

    @property
    def samples(self) -> int:
        return int(next(v for k, v in self.arrays.items() if k not in self.held).shape[0])

    @cached_property
    def sha256(self) -> str:
        """Content hash: names, dtypes, shapes and bytes of every array."""
        h = hashlib.sha256()
        for name in sorted(self.arrays):
            arr = np.require(self.arrays[name], requirements="C")
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            flat = arr.reshape(-1)  # a view: a memory-mapped .npy is read in slices, never copied whole
            for start in range(0, flat.size, _CHUNK_VALUES):
                h.update(np.ascontiguousarray(flat[start : start + _CHUNK_VALUES]).view(np.uint8))
        return h.hexdigest()

    def describe(self) -> dict:
        """What ``Variant.calibration`` records (and reports show)."""
        d = {
            "source": self.source,
            "samples": self.samples,
            "sha256": self.sha256,
            "random": self.random,
            "shapes": {k: list(v.shape) for k, v in self.arrays.items()},
        }
        if self.preprocessing:
            d["preprocessing"] = self.preprocessing
        if self.notes:
            d["notes"] = list(self.notes)
        if self.held:
            d["held"] = list(self.held)
        return d

    def batches(self, batch: int) -> list[dict]:
        """The samples split into consecutive batches of at most ``batch`` (held inputs whole in each)."""
        return [
            {k: v if k in self.held else v[i : i + batch] for k, v in self.arrays.items()}
            for i in range(0, self.samples, batch)
        ]


def load_calibration(source, model, *, image_normalization: str = "unit") -> CalibrationData:
    """Calibration data from arrays, a .npy/.npz path or an image folder, checked against ``model``'s inputs."""
    if isinstance(source, CalibrationData):
        return source
    preprocessing = ""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        label = str(path)
        if path.is_dir():
            arrays, preprocessing = _images(path, model, image_normalization)
        elif path.is_file():
            arrays = read_arrays(path, model, what="Calibration")
        elif path.exists():  # a pipe or device: reading it could block forever
            raise WorkbenchError(
                f"Calibration data '{path}' is not a regular file (a pipe, device or socket): pass a "
                ".npz (one array per input name), a .npy or a folder of images."
            )
        else:
            raise WorkbenchError(
                f"Calibration data '{path}' does not exist: pass a .npz (one array per input name), "
                "a .npy or a folder of images."
            )
    elif isinstance(source, (dict, np.ndarray)):
        arrays = read_arrays(source, model, what="Calibration")
        label = "arrays in memory" if isinstance(source, dict) else "array in memory"
    else:
        raise WorkbenchError(
            f"Calibration data of type {type(source).__name__} is not supported: pass a dict of "
            "arrays, a .npz/.npy path or a folder of images."
        )
    arrays = _checked(arrays, model)
    held = _held(model)
    return CalibrationData(arrays, label, preprocessing=preprocessing, notes=_sample_notes(arrays, held), held=held)


def random_calibration(
    model, samples: int = DEFAULT_RANDOM_SAMPLES, seed: int = 0, *, shapes=None, ranges=None
) -> CalibrationData:
    """Seeded random calibration data, only when the user asks for it: values as
    :func:`workbench.model.inputs.make_inputs` draws them (in ``ranges``, else what the graph says: in-range indices,
    0/1 masks, a sample rate it compares with; standard normal floats). ``shapes`` (name -> shape of one step, as
    profiled): ``samples`` drawn in steps of that shape, the inputs held whole once; else at the default shapes."""
    batch, held = fixed_batch(model), _held(model)
    if shapes is not None:
        step = resolve_shapes(model, shapes)
        steps = math.ceil(samples / max(1, held_batch(model, step) or _first_dim(step, held)))
        parts = [make_inputs(model, step, seed=seed + i, ranges=ranges) for i in range(steps)]
        arrays = {n: parts[0][n] if n in held else np.concatenate([p[n] for p in parts]) for n in parts[0]}
    elif batch is None:
        base = resolve_shapes(model)
        step = {n: s if n in held else (samples,) + s[1:] for n, s in base.items()}
        arrays = make_inputs(model, step, seed=seed, ranges=ranges)
    else:
        parts = [make_inputs(model, seed=seed + i, ranges=ranges) for i in range(math.ceil(samples / batch))]
        arrays = {n: parts[0][n] if n in held else np.concatenate([p[n] for p in parts]) for n in parts[0]}
    return CalibrationData(
        arrays,
        f"random (seed {seed})",
        random=True,
        notes=("RANDOM calibration data: activation ranges do not reflect real inputs",),
        held=held,
    )


def held_calibration_note(described: dict) -> str:
    """The run note for a calibration (``CalibrationData.describe()``) with inputs held whole."""
    shapes = described.get("shapes", {})
    held = ", ".join(f"{n} [{format_shape(shapes.get(n, ()), 'scalar')}]" for n in described["held"])
    return f"calibration: {held} held whole with each of the {described['samples']} samples (not per sample)"


def fixed_batch(model) -> int | None:
    """The fixed first dimension of the batch-carrying inputs, or None when it is dynamic (inputs held whole
    beside them, like recurrent state or a scalar, do not count: :func:`workbench.model.inputs.batch_inputs`)."""
    carried = batch_inputs(model)
    if not carried:
        raise WorkbenchError(
            "Every input of the model is a scalar: calibration needs samples along the first axis of an input."
        )
    firsts = {
        spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] >= 0 else None
        for spec in model.inputs
        if spec.name in carried
    }
    if len(firsts) > 1:
        shown = ", ".join(f"'{s.name}' {s.shape[0]}" for s in model.inputs if s.name in carried)
        raise WorkbenchError(
            f"The model's inputs have different fixed first dimensions ({shown}): calibration needs one batch axis "
            "shared by the inputs that carry samples; export the model with a common (or dynamic) batch dimension."
        )
    return firsts.pop()


def calibration_batch(model, calibration: CalibrationData, requested: int | None = None) -> int:
    """Samples per calibration step: the model's fixed batch, or the batch its held inputs fix, else ``requested``
    (default 1); a ``requested`` batch that contradicts the model is a one-line error."""
    fixed = fixed_batch(model)
    held = held_batch(model, calibration.arrays) if calibration.held else None
    forced = fixed or held
    if forced is not None:
        if requested not in (None, forced):
            why = (
                f"the model's batch is fixed at {fixed}"
                if fixed
                else f"the inputs held whole ({', '.join(calibration.held)}) fix it at {held}"
            )
            raise WorkbenchError(f"calibration_batch={requested} but {why}: drop calibration_batch.")
        if calibration.samples % forced:
            raise WorkbenchError(
                f"Calibration data has {calibration.samples} samples but the batch is {forced} (fixed by the "
                f"model's inputs): give a multiple of {forced} samples."
            )
        return forced
    if requested is None:
        return 1
    if not isinstance(requested, int) or not 1 <= requested <= calibration.samples:
        raise WorkbenchError(
            f"calibration_batch must be an integer in 1..{calibration.samples} (the number of "
            f"calibration samples); got {requested!r}."
        )
    return requested


def _first_dim(shapes: dict, held: tuple) -> int:
    """The first dimension of the batch-carrying inputs' ``shapes``."""
    return next(int(shape[0]) for name, shape in shapes.items() if name not in held and len(shape))


def _held(model) -> tuple:
    """The inputs given whole, not per sample (see the module docstring)."""
    carried = batch_inputs(model)
    return tuple(spec.name for spec in model.inputs if spec.name not in carried)


# ---- sources ------------------------------------------------------------------------------------------------


def _images(folder: Path, model, normalization: str) -> tuple[dict, str]:
    if normalization not in IMAGE_NORMALIZATIONS:
        raise WorkbenchError(
            f"Unknown image_normalization '{normalization}': choose one of {', '.join(IMAGE_NORMALIZATIONS)}."
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    real_folder = os.path.realpath(folder)
    for p in files:  # a pipe or device named like an image would block the read forever: refused before opening
        if p.is_symlink() and os.path.commonpath([real_folder, os.path.realpath(p)]) != real_folder:
            raise WorkbenchError(
                f"Calibration image '{p}' is a symbolic link out of the folder: refused (only the folder's own "
                "images calibrate); copy the image into the folder, or remove the link."
            )
        if not p.is_file():
            raise WorkbenchError(
                f"Calibration image '{p}' is not a regular file (a pipe, device, socket or folder): "
                "remove it from the folder."
            )
    if not files:
        raise WorkbenchError(
            f"Calibration folder '{folder}' has no images ({' '.join(IMAGE_SUFFIXES)}): "
            "point --calib at a folder of images or pass a .npz."
        )
    if len(model.inputs) != 1 or np.dtype(model.inputs[0].dtype).kind != "f" or len(model.inputs[0].shape) != 4:
        specs = ", ".join(str(s) for s in model.inputs)
        raise WorkbenchError(
            f"An image folder calibrates a model with one float image input [N,C,H,W] or [N,H,W,C]; "
            f"this model has {specs}: pass a .npz with one array per input instead."
        )
    spec = model.inputs[0]
    nhwc = _is_nhwc(spec.shape)
    channels, height, width = (spec.shape[3], spec.shape[1], spec.shape[2]) if nhwc else spec.shape[1:]
    if channels not in (1, 3):
        raise WorkbenchError(
            f"Input '{spec.name}' has {channels} channels; image calibration supports 1 (greyscale) "
            "or 3 (RGB): pass a .npz with preprocessed arrays instead."
        )
    if normalization == "imagenet" and channels != 3:
        raise WorkbenchError(
            f"image_normalization 'imagenet' needs 3-channel input but '{spec.name}' has 1: use 'unit'."
        )
    size = (width, height) if isinstance(width, int) and isinstance(height, int) else None
    images, first = None, None
    for i, p in enumerate(files):  # decoded and resized one at a time, into one array (the model's layout) sized first
        image = _read_image(p, channels, size)  # H, W, C
        if normalization == "imagenet":
            image = (image - _IMAGENET_MEAN) / _IMAGENET_STD
        if images is None:
            first = image.shape
            images = _decoded_array((len(files), *(first if nhwc else (first[2], first[0], first[1]))), len(files))
        elif image.shape != first:
            raise WorkbenchError(
                f"Calibration image '{p}' is {image.shape[1]}x{image.shape[0]}, the first was "
                f"{first[1]}x{first[0]}: with a dynamic height or width every image needs one size; "
                "resize them, or export the model with a fixed input size."
            )
        images[i] = image if nhwc else image.transpose(2, 0, 1)
    recipe = (
        f"{'greyscale' if channels == 1 else 'RGB'}, resized to {height}x{width} bilinear, pixel/255"
        + (", ImageNet mean/std" if normalization == "imagenet" else "")
        + (", NHWC" if nhwc else ", NCHW")
    )
    return {spec.name: images}, recipe


def _decoded_array(shape: tuple, count: int) -> np.ndarray:
    """The float32 array the decoded images go into: in memory when it fits beside the copies calibration makes;
    else a memory-mapped file in a private temp folder, unlinked at once (the page cache holds it and the kernel
    writes it out under pressure, as with a ``.npy`` given), so a folder larger than memory calibrates, slower.
    The disk must hold it: else one line naming the estimate and the limit."""
    nbytes = math.prod(shape) * 4
    left, source = memory_left()
    if nbytes <= left * SHARE / 2:
        return np.empty(shape, np.float32)
    what = f"{count:,} calibration images at {format_shape(shape[1:])} float32"
    fix = f"give fewer images (the documented range is {MIN_SAMPLES}-{MAX_SAMPLES})"
    if nbytes > mappable_left() * SHARE:  # an address-space limit counts a mapping too: no way around it
        check_memory(nbytes, what, fix)
        return np.empty(shape, np.float32)
    folder = process_temp_dir("calibration-")
    free = shutil.disk_usage(folder).free
    if nbytes + LOW_SPACE_BYTES > free:  # neither memory nor disk: the memory line, with the disk in the fix
        check_memory(nbytes, what, f"{fix}, or free {nbytes + LOW_SPACE_BYTES - free:,} bytes in {folder.parent}")
        return np.empty(shape, np.float32)
    log.info(
        f"{count:,} calibration images take {nbytes / 2**20:,.0f} MiB decoded, more than half of the "
        f"{left / 2**20:,.0f} MiB left under {source}: decoded into a memory-mapped file in {folder}"
    )
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.float32, shape=shape)
    try:
        (folder / "images.npy").unlink()  # the mapping stays; the disk space goes with the array
    except OSError:
        pass
    return images


def _is_nhwc(shape) -> bool:
    return shape[3] in (1, 3) and shape[1] not in (1, 3)


def _read_image(path: Path, channels: int, size) -> np.ndarray:
    Image = optional_import("PIL.Image", purpose="read calibration images (or pass a .npz)", package="pillow")
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that: a decompression bomb is refused
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                img = opened.convert("L" if channels == 1 else "RGB")
                if size is not None and img.size != size:
                    img = img.resize(size, Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise WorkbenchError(
            f"Calibration image '{path}' is too large to decode safely ({first_line(e, 200)}): "
            "resize it to the model's input size, or remove it."
        ) from None
    except (OSError, ValueError, SyntaxError, MemoryError) as e:  # Pillow raises these for damaged files
        raise WorkbenchError(
            f"Calibration image '{path}' could not be read ({first_line(e)}): remove it or convert it to PNG."
        ) from None
    return arr[:, :, None] if arr.ndim == 2 else arr


# ---- checks -------------------------------------------------------------------------------------------------


def _checked(arrays: dict, model) -> dict:
    names = [s.name for s in model.inputs]
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise WorkbenchError(
            f"Calibration data has array '{extra[0]}' that is not a model input: "
            f"name the arrays after the inputs ({', '.join(names)})."
        )
    for name, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise WorkbenchError(f"Calibration input '{name}' has dtype {arr.dtype}, not numbers: pass numeric arrays.")
    batch = fixed_batch(model)
    carried = batch_inputs(model)
    for spec in model.inputs:
        given = arrays.get(spec.name)
        if spec.name not in carried and given is not None and given.ndim == len(spec.shape) + 1:
            raise WorkbenchError(
                f"Calibration input '{spec.name}' has shape {format_shape(given.shape)}, one per sample, but only "
                f"{', '.join(repr(n) for n in carried)} {'carries' if len(carried) == 1 else 'carry'} the batch: give '{spec.name}' once, whole "
                f"({'shape ' + format_shape(spec.shape) if spec.shape else 'a scalar'})."
            )
    check_inputs(arrays, model, what="Calibration input", batch_free=True)
    counts = {name: arr.shape[0] for name, arr in arrays.items() if name in carried}
    if len(set(counts.values())) > 1:
        held = [s.name for s in model.inputs if s.name not in carried]
        raise WorkbenchError(
            f"Calibration inputs have different sample counts ({counts}): give every input that carries the batch "
            "the same number of samples along the first axis"
            + (f" ({', '.join(held)} are given whole)." if held else ".")
        )
    samples = next(iter(counts.values()))
    if samples == 0:
        raise WorkbenchError(f"Calibration data has 0 samples: give {MIN_SAMPLES}-{MAX_SAMPLES} samples.")
    if batch and samples % batch:
        raise WorkbenchError(
            f"Calibration data has {samples} samples but the model's batch is fixed at {batch}: "
            f"give a multiple of {batch} samples."
        )
    result = {}
    for spec in model.inputs:
        given = arrays[spec.name]
        if given.dtype != np.dtype(spec.dtype):  # converted whole (ModelOpt reads every batch): it must fit
            check_memory(
                given.size * np.dtype(spec.dtype).itemsize,
                f"Calibration input '{spec.name}' as {spec.dtype} ({format_shape(given.shape)})",
                f"give fewer samples, or store them as {spec.dtype}",
            )
        arr = given.astype(spec.dtype, copy=False)
        if arr.dtype.kind == "f" and not _finite(arr):
            raise WorkbenchError(f"Calibration input '{spec.name}' contains NaN or infinite values: clean the data.")
        result[spec.name] = np.require(arr, requirements="C")
    _check_indices(result, model)
    return result


def _finite(arr: np.ndarray) -> bool:
    """No NaN or infinity in ``arr``, checked a slice at a time (no temporary of its size)."""
    flat = arr.reshape(-1)
    return all(np.isfinite(flat[i : i + _CHUNK_VALUES]).all() for i in range(0, flat.size, _CHUNK_VALUES))


def _check_indices(arrays: dict, model) -> None:
    for name, rows in index_bounds(model).items():
        arr = arrays[name]
        if arr.size and (arr.min() < -rows or arr.max() >= rows):
            raise WorkbenchError(
                f"Calibration input '{name}' has values {arr.min()}..{arr.max()} but indexes a table "
                f"of {rows} rows: use ids in [0, {rows})."
            )


def _sample_notes(arrays: dict, held: tuple) -> tuple:
    samples = next(v for k, v in arrays.items() if k not in held).shape[0]
    if MIN_SAMPLES <= samples <= MAX_SAMPLES:
        return ()
    note = f"{samples} calibration samples is outside the documented range {MIN_SAMPLES}-{MAX_SAMPLES}" + (
        ": activation ranges may be noisy" if samples < MIN_SAMPLES else ": calibration is slower"
    )
    log.warning(note)
    return (note,)
