"""A sweep's plan: the grid of settings (precision × batch × workspace × optimization level) as frozen points.

A :class:`SweepPoint` is one frozen :class:`~workbench.config.BuildConfig` (trials included) plus the backend; its
``key`` is a hash of both and of the model's SHA-256, so the same grid on
the same model gives the same keys on any machine and with any executor (that is how resume and the
"local and Ray give the same points" check recognise a point).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

from ..config import PRECISIONS, BuildConfig, parse_size
from ..errors import WorkbenchError
from ..format import human_bytes


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: where it sits in the plan, its config, and its stable key."""

    index: int
    key: str
    config: BuildConfig
    batch: int | None = None

    @property
    def label(self) -> str:
        """``fp16 b8 ws1 GiB O3``: the point as tables and charts name it."""
        c = self.config
        parts = [c.precision]
        if self.batch is not None:
            parts.append(f"b{self.batch}")
        parts.append(f"ws {human_bytes(c.workspace_bytes)}" if c.workspace_bytes else "ws default")
        parts.append(f"O{c.optimization_level}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "key": self.key,
            "label": self.label,
            "batch": self.batch,
            "config": self.config.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> SweepPoint:
        return cls(
            index=int(d["index"]), key=str(d["key"]), config=BuildConfig.from_dict(d["config"]), batch=d.get("batch")
        )


def split_list(value, convert=str) -> list:
    """``"fp32,fp16"`` or ``["fp32", "fp16"]`` or ``8`` → a list of converted, de-duplicated items (order kept)."""
    if value is None:
        return []
    items = (
        value.split(",") if isinstance(value, str) else (list(value) if isinstance(value, (list, tuple)) else [value])
    )
    stripped = (item.strip() if isinstance(item, str) else item for item in items)
    return list(dict.fromkeys(convert(item) for item in stripped if item not in ("", None)))


def _int(what: str):
    def convert(item) -> int:
        try:
            return int(item)
        except (TypeError, ValueError):
            raise WorkbenchError(
                f"Cannot read {what} '{item}': give whole numbers separated by commas, e.g. 1,8,32."
            ) from None

    return convert


def _workspace(item) -> int | None:
    return None if str(item).lower() in ("default", "none", "0") else parse_size(item)


def plan_points(
    model,
    *,
    precisions="fp32",
    batches=None,
    workspaces=None,
    opt_levels=None,
    base: BuildConfig | None = None,
    backend: str = "onnxruntime",
) -> list[SweepPoint]:
    """Every combination of the given settings as a :class:`SweepPoint`, in a stable order.

    ``batches`` set the first dimension of the inputs that carry the batch (on top of ``base.shapes``, the model's own
    shapes elsewhere): those whose first dimension is dynamic, and any dimension named as theirs (a recurrent state
    ``[2, batch, 128]``); a fixed first dimension or a scalar keeps its shape. In a model with no dynamic first
    dimension they set every input's, and one fixed to another size makes those points fail with the reason, not the
    plan. Each point's run records the batch it ran.
    Lists may be given as comma-separated text (``"fp32,fp16"``, ``"1G,4G"``).
    """
    from ..model.inputs import resolve_shapes

    base = base or BuildConfig()
    precisions = split_list(precisions) or [base.precision]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise WorkbenchError(f"Unknown precision '{unknown[0]}' in the sweep: choose from {', '.join(PRECISIONS)}.")
    batch_list = split_list(batches, _int("batch size")) or [None]
    if any(b is not None and b < 1 for b in batch_list):
        raise WorkbenchError("A batch size in the sweep is below 1: give sizes of 1 or more, e.g. 1,8,32.")
    workspace_list = split_list(workspaces, _workspace) or [base.workspace_bytes]
    level_list = split_list(opt_levels, _int("optimization level")) or [base.optimization_level]
    shapes = resolve_shapes(model, base.shape_map)
    batch_dims = _batch_dims(model, shapes)
    points = []
    for precision, batch, workspace, level in itertools.product(precisions, batch_list, workspace_list, level_list):
        point_shapes = {
            n: tuple(batch if batch is not None and i in batch_dims[n] else d for i, d in enumerate(s))
            for n, s in shapes.items()
        }
        config = base.replace(
            precision=precision, workspace_bytes=workspace, optimization_level=level, shapes=tuple(point_shapes.items())
        )
        identity = {"model": model.sha256, "backend": backend, "config": config.to_dict()}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        points.append(SweepPoint(index=len(points), key=key, config=config, batch=batch))
    return points


def _batch_dims(model, shapes: dict) -> dict[str, set[int]]:
    """Input name -> the axes a sweep's batch sets: the first axis of the inputs that carry the batch, and any axis
    named as one of their first axes (silero's state ``[2, batch, 128]``); every input's first axis in a model with
    no dynamic first dimension."""
    from ..model.inputs import batch_carriers

    carriers = {t.name: t.shape[0] for t in batch_carriers(model.inputs)}
    if not carriers:
        return {n: {0} if s else set() for n, s in shapes.items()}
    names = {d for d in carriers.values() if isinstance(d, str) and d != "?"}  # "?": unnamed, shared by nothing
    return {
        t.name: {
            i for i, d in enumerate(t.shape) if (i == 0 and t.name in carriers) or (isinstance(d, str) and d in names)
        }
        for t in model.inputs
    }
