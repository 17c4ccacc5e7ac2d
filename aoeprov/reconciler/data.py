"""Plain data in and out of typed records: facts to JSON, YAML test cases to facts.

``to_data`` turns dataclasses, enums, paths, tuples, sets and bytes (file
content, as text with ``\\xNN`` for bytes that are not UTF-8) into JSON-able
builtins; ``from_data`` builds a dataclass back from such builtins using its type
hints (nested dataclasses, ``tuple[X, ...]``, ``dict[str, X]``, ``X | None``,
enums, ``frozenset``). Facts records stay plain dataclasses of builtins, so no
record needs its own (de)serialiser.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def to_data(obj: object) -> Any:
    """JSON-able builtins for ``obj`` (dataclass fields in declaration order)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.repr}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, bytes):   # file content: text, undecodable bytes as \xNN escapes
        return obj.decode("utf-8", "backslashreplace")
    if isinstance(obj, (set, frozenset)):
        return sorted(to_data(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    return obj


def from_data(tp: Any, data: Any) -> Any:
    """A value of type ``tp`` built from builtins; ``TypeError``/``ValueError`` on mismatch."""
    if tp is Any or tp is object:
        return data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_from(tp, args, data)
    if origin is tuple:
        _require(data, (list, tuple), tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_data(args[0], v) for v in data)
        return tuple(from_data(a, v) for a, v in zip(args, data, strict=True))
    if origin in (list, set, frozenset):
        _require(data, (list, tuple, set, frozenset), tp)
        return origin(from_data(args[0], v) for v in data)
    if origin in (dict, Mapping) or origin is getattr(typing, "Mapping", None):
        _require(data, (dict,), tp)
        return {from_data(args[0], k): from_data(args[1], v) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_from(tp, data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    return _scalar_from(tp, data)


def _union_from(tp: Any, args: tuple[Any, ...], data: Any) -> Any:
    """The first member of ``X | Y | None`` that ``data`` builds."""
    if data is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return from_data(arg, data)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    raise TypeError(f"{data!r} matches none of {tp}: {'; '.join(errors)}")


def _scalar_from(tp: Any, data: Any) -> Any:
    if tp is bytes and isinstance(data, str):   # file content written as text in YAML cases
        return data.encode("utf-8", "surrogateescape")
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if isinstance(tp, type):
        if tp is int and isinstance(data, bool):
            raise TypeError(f"expected int, got {data!r}")
        _require(data, (tp,), tp)
        return data
    return data


def _dataclass_from(cls: type, data: Any) -> Any:
    from_dict = getattr(cls, "from_dict", None)
    if callable(from_dict):
        return from_dict(data)
    _require(data, (dict,), cls)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    kwargs = {k: from_data(hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


def _require(data: Any, kinds: tuple[type, ...], tp: Any) -> None:
    if not isinstance(data, kinds):
        raise TypeError(f"expected {tp}, got {data!r}")
