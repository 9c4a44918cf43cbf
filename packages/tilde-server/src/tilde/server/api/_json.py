"""Decoding JSON from clients: every malformed, too deep or non-standard document is a 400, never a 500.

Python's decoder recurses once per nested array or object, so a body of 100,000 ``[`` raises
`RecursionError`; it also accepts ``NaN`` and ``Infinity``, which no JSON standard allows and which turn into
`OverflowError` / `ValueError` as soon as a handler converts them to an integer (so does ``1e400``, which
overflows to infinity). `loads` refuses all of them
with the contract's error body, and bounds nesting at `MAX_JSON_DEPTH` levels (no request of the contract
nests deeper than a handful), so nothing downstream (``json.dumps`` of metadata, policy documents) can recurse
out of stack either.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from tilde.server.errors import ApiError

__all__ = ["MAX_JSON_DEPTH", "json_depth", "loads"]

#: Deepest nesting of arrays and objects accepted in a request document.
MAX_JSON_DEPTH = 64


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to infinity
        raise ValueError(f"{text} is out of range")
    return value


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Return the nesting depth of a decoded document (a scalar is 0), stopping once it exceeds ``limit``.

    Iterative, so it cannot itself run out of stack.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def loads(raw: bytes | str, *, what: str = "the request body") -> Any:
    """Decode a client's JSON document (400 ``invalid_json`` when it is not standard JSON or nests too deep).

    Args:
        raw: The UTF-8 (or already decoded) document.
        what: How the error message names the document.

    """
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise _too_deep(what) from None
    except (ValueError, UnicodeDecodeError):
        # ValueError covers JSONDecodeError and integers longer than Python's digit limit.
        raise ApiError(400, "invalid_json", f"{what} is not valid JSON") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise _too_deep(what)
    return value


def _too_deep(what: str) -> ApiError:
    return ApiError(
        400, "invalid_json", f"{what} nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"
    )
