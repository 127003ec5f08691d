"""One way to read a frozen dataclass back from the dict that ``dataclasses.asdict`` (and JSON) made of it.

:func:`from_dict` follows the fields' annotations: a nested dataclass is read the same way, a ``tuple[...]`` field
from a JSON list becomes a tuple (of dataclasses where it holds them), ``X | None`` takes None. Lenient or strict is
the caller's design decision, not the class's: what the workbench wrote itself (``run.json``, a sweep's record) is
read leniently — a key a later release added is ignored, a missing one takes the field's default — while
``strict=True`` refuses an unknown key in one line naming it (values a user wrote). A missing required field or a
value of the wrong kind is a ``TypeError``/``ValueError`` the caller turns into its one-line error (it knows the file).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing

from .errors import WorkbenchError


@functools.cache
def _fields(cls) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def from_dict(cls, data, *, strict: bool = False, what: str | None = None):
    """An instance of the dataclass ``cls`` from ``data`` (a dict as ``dataclasses.asdict`` writes it); None stays
    None. ``strict``: an unknown key is a :class:`WorkbenchError` naming it and ``what`` (default: the class)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} must be an object, not {type(data).__name__}")
    fields = _fields(cls)
    unknown = [key for key in data if key not in fields]
    if strict and unknown:
        raise WorkbenchError(
            f"Unknown key(s) {', '.join(map(repr, unknown))} in {what or cls.__name__}: use {', '.join(fields)}."
        )
    return cls(**{key: _value(fields[key], value) for key, value in data.items() if key in fields})


def _value(kind, value):
    """``value`` as the annotation ``kind`` wants it: dataclasses and tuples rebuilt (an instance of the dataclass
    stays as it is), everything else as it is."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return _value(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(kind):
        return value if isinstance(value, kind) else from_dict(kind, value)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(kind)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_value(item, v) if item is not None else v for v in value)
    return value
