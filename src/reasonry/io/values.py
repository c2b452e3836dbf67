"""The one conversion of any cell value (numpy, pandas, Decimal, dates, lists...) to a plain scalar."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal
from typing import Any

Scalar = str | int | float | bool | None

INT_TEXT = re.compile(r"-?(?:0|[1-9]\d{0,17})")  # an integer as text, without leading zeros or sign +


def to_scalar(value: Any) -> Scalar:
    """`value` as str, int, float, bool or None; lists, dicts and other objects as text (JSON where possible).

    Floats are returned as they are, NaN and infinities included (`finite` drops those). A Decimal becomes an
    int when it is integral and a float otherwise.
    """
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind.__name__ in ("NAType", "NaTType"):
        return None
    for base in (bool, int, float, str):  # subclasses: numpy float64, IntEnum, StrEnum...
        if isinstance(value, base):
            return base(value)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return to_scalar(value.item())  # numpy scalar
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if hasattr(value, "tolist"):
        value = value.tolist()  # numpy array
    if isinstance(value, list | tuple | dict | set | frozenset):
        return json.dumps(json_safe(value), ensure_ascii=False, default=json_default)
    return str(value)


def finite(value: Scalar) -> Scalar:
    """None instead of NaN or an infinity."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def json_default(value: Any) -> Any:
    """`default=` for json.dumps: what the JSON encoder does not know, as JSON-able data."""
    if hasattr(value, "tolist"):
        return value.tolist()  # numpy scalars and arrays
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, Decimal):
        return _decimal(value)
    scalar = to_scalar(value)
    return scalar


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as None, so that the JSON written from it is valid."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [json_safe(item) for item in items]
    if isinstance(value, float):
        return finite(value)
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    return value


def _decimal(value: Decimal) -> int | float:
    if value.is_finite() and value == value.to_integral_value():
        return int(value)
    return float(value)




def id_value(text: str | None) -> str | int | None:
    """A row id as written to an output: a number when the text is an integer (`7`, not `07` or `7.0`)."""
    if isinstance(text, str) and INT_TEXT.fullmatch(text):
        return int(text)
    return text


def plain(value: Any) -> Scalar:
    """Any cell value as a JSON-safe scalar: NaN is an empty cell, an infinity stays as text."""
    value = to_scalar(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def cell_text(value: Any) -> str | None:
    """A cell as text; integral floats lose their '.0' (an id 1.0 reads '1')."""
    value = plain(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def a_kind(value: Any) -> str:
    """What a JSON-ish value is, for messages: 'an object', 'a list', 'a number'..."""
    names = {dict: "an object", list: "a list", tuple: "a list", str: "a string", bool: "a boolean",
             type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else f"a {type(value).__name__}")
