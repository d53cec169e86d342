"""The paper exchange's own small protocol: our report dataclasses as JSON objects and back.

Money travels as strings (Decimal, never float), times as ISO-8601 UTC, enums as their values.
One generic codec for every flat dataclass the exchange speaks, driven by its type hints."""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any, TypeVar

from engine.domain.reports import (
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StreamStatus,
    VenueEvent,
)

T = TypeVar("T")


def encode(obj: Any) -> Any:
    """A dataclass (or a value inside one) as plain JSON types."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, tuple | list):
        return [encode(item) for item in obj]
    if isinstance(obj, dict):
        return {str(key): encode(value) for key, value in obj.items()}
    if is_dataclass(obj):
        return {f.name: encode(getattr(obj, f.name)) for f in fields(obj)}
    raise TypeError(f"cannot encode {type(obj).__name__}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(cls: type[T], data: dict[str, Any]) -> T:
    """The dataclass `cls` from what `encode` made of it; a missing or bad field raises
    ValueError naming it."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is not MISSING or f.default_factory is not MISSING:  # a default
                continue
            raise ValueError(f"{cls.__name__}: missing field {f.name!r}")
        try:
            values[f.name] = _value(hints[f.name], data[f.name])
        except (ValueError, ArithmeticError, TypeError) as exc:
            raise ValueError(f"{cls.__name__}.{f.name}: {exc}") from None
    return cls(**values)


def _value(hint: Any, raw: Any) -> Any:
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, raw)
    if typing.get_origin(hint) is tuple:
        return tuple(_value(args[0], item) for item in raw)
    if hint is Decimal:
        return parse_decimal(raw)
    if hint is datetime:
        return parse_time(raw)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(raw)
    if is_dataclass(hint):
        return decode(hint, raw)  # type: ignore[arg-type]
    if hint in (str, int, bool) and not isinstance(raw, hint):
        raise ValueError(f"expected {hint.__name__}, got {raw!r}")
    return raw


def parse_decimal(raw: Any) -> Decimal:
    """Money from the wire: a string or an integer, finite (a float would lose digits)."""
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise ValueError(f"expected a decimal string, got {raw!r}")
    try:
        value = Decimal(str(raw))
    except ArithmeticError:
        raise ValueError(f"not a number: {raw!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite number: {raw!r}")
    return value


def parse_time(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(f"expected an ISO-8601 time, got {raw!r}")
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {raw!r}")
    return moment


# --- stream events --------------------------------------------------------------------------
_EVENT_TYPES: dict[str, type] = {"position": PositionUpdate, "order": OrderUpdate,
                                 "fill": FillUpdate, "status": StreamStatus}
_EVENT_NAMES = {cls: name for name, cls in _EVENT_TYPES.items()}


def encode_event(event: VenueEvent) -> dict[str, Any]:
    return {"type": _EVENT_NAMES[type(event)], **encode(event)}


def decode_event(data: dict[str, Any]) -> VenueEvent:
    cls = _EVENT_TYPES.get(data.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    return decode(cls, {k: v for k, v in data.items() if k != "type"})  # type: ignore[return-value]
