"""Typed records that cross a process boundary (Airflow's XCom) as plain JSON.

A pipeline's steps run in different processes, so what one step hands the next is stored as JSON
in between. The engine works with frozen dataclasses; ``Record`` gives each one a ``to_xcom()``
that writes plain JSON values and a ``from_xcom()`` that rebuilds the same record from them,
field by field from the type hints, so a step never reads another step's output by string key.

Supported field types: str, int, float, bool, None, datetime (ISO 8601, timezone kept), Path,
Enum (by value), nested records/dataclasses, ``X | None``, ``tuple[X, ...]``, ``list[X]``,
``dict[str, X]`` and ``Any`` (kept as the JSON value it is).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, Union

R = TypeVar("R", bound="Record")


class Record:
    """Mixin for frozen dataclasses handed between pipeline steps."""

    def to_xcom(self) -> dict[str, Any]:
        return {field.name: _to_json(getattr(self, field.name)) for field in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_xcom(cls: type[R], data: dict[str, Any]) -> R:
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_xcom needs the mapping to_xcom() wrote, got {type(data).__name__}")
        return _from_json(cls, data)  # type: ignore[no-any-return]


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _to_json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return _to_json(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _to_json(item) for key, item in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_json(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        kinds = [option for option in options if option is not type(None)]
        if len(kinds) != 1:
            raise TypeError(f"cannot rebuild a value of the union {hint!r}: name one type besides None")
        return _from_json(kinds[0], value)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], item) for item in value)
        return tuple(_from_json(arg, item) for arg, item in zip(args, value, strict=True))
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        return [_from_json(item_hint, item) for item in value]
    if origin is dict:
        _, item_hint = typing.get_args(hint)
        return {key: _from_json(item_hint, item) for key, item in value.items()}
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            hints = _hints(hint)
            fields = {field.name: field for field in dataclasses.fields(hint) if field.init}
            unknown = set(value) - set(fields)
            if unknown:
                raise TypeError(f"{hint.__name__} has no field(s) {sorted(unknown)}")
            return hint(**{name: _from_json(hints[name], item) for name, item in value.items()})
        if issubclass(hint, Enum):
            return hint(value)
        if issubclass(hint, datetime):
            return datetime.fromisoformat(value)
        if issubclass(hint, Path):
            return Path(value)
        if hint is float and isinstance(value, int):
            return float(value)
    return value
