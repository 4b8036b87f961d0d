"""JSON text from clients parsed as JSON defines it, into values every encoder, tokenizer and upstream SDK takes.

Python's parser goes beyond JSON: it reads NaN and Infinity, makes a number too large for a double infinite, and
makes a string from an escaped UTF-16 surrogate without its other half. Each parses, then fails far from the request
(an upstream SDK's JSON encoder, a grammar's bounds, a tokenizer), where it can no longer name the field."""

from __future__ import annotations

import json
import math
import re
from typing import Any


class JsonNumberError(ValueError):
    """A number JSON text may not hold, or that no field could take."""


# Only text with such an escape can make an unpaired surrogate: valid UTF-8 holds none.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str) -> Any:
    """The value of JSON `text`; JsonNumberError for NaN, Infinity, a number beyond a double's range or an integer of
    more digits than Python converts (sys.get_int_max_str_digits); json.JSONDecodeError for text that is no JSON."""
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_finite)
    except JsonNumberError:
        raise
    except ValueError as error:
        if isinstance(error, json.JSONDecodeError):
            raise
        raise JsonNumberError("an integer of more digits than any field takes") from None


def unpaired_surrogate(text: str, value: object) -> str | None:
    """The path (`messages[0].content`) of the first string or object key in `value`, parsed from `text`, that holds
    an unpaired surrogate; "" for `value` itself; None when every string is valid Unicode."""
    if _SURROGATE_ESCAPE.search(text) is None:
        return None
    path: list[str | int] = []
    return _path_text(path) if _unpaired(value, path) else None


def _constant(name: str) -> float:
    raise JsonNumberError(f"{name}, which is no JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonNumberError(f"the number {text[:40]}, beyond a double's range")
    return value


def _unpaired(value: object, path: list[str | int]) -> bool:
    """Whether `value` holds an unpaired surrogate, `path` then leading to it: kept as parts, and spelled only once
    found, as a body's items may be millions under a long key."""
    if isinstance(value, str):
        return not _encodable(value)
    if isinstance(value, list):
        for index, item in enumerate(value):
            path.append(index)
            if _unpaired(item, path):
                return True
            path.pop()
    elif isinstance(value, dict):
        for key, item in value.items():
            path.append(key)
            if not _encodable(key) or _unpaired(item, path):
                return True
            path.pop()
    return False


def _path_text(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text = f"{text}[{part}]" if isinstance(part, int) else f"{text}.{part}" if text else part
    return text.encode("utf-8", "backslashreplace").decode()  # a key's own surrogate, escaped


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
