"""JSON from outside (MQTT payloads, manifest.json, manifest.sig), its nesting bounded
before it is parsed: Python's json recurses once per level, so ``[[[[...`` ten thousand
deep raises RecursionError, which no caller expects from a parser."""

from __future__ import annotations

import json
import re
from typing import Any

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)  # a string, or a bracket


class TooDeepError(json.JSONDecodeError):
    """JSON nested deeper than allowed; a JSONDecodeError (a ValueError), so the callers'
    handling of bad JSON answers it."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, "", 0)

    def __str__(self) -> str:
        return self.msg


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets inside strings do
    not count); one regular-expression pass, no parsing."""
    depth = deepest = 0
    for match in _TOKENS.finditer(data):
        char = match.group()
        if char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def loads(data: bytes | str, *, max_depth: int, **options: Any) -> Any:
    """``json.loads(data, **options)`` once its nesting is at most ``max_depth``;
    TooDeepError when it is deeper."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    depth = json_depth(raw)
    if depth > max_depth:
        raise TooDeepError(f"JSON nested {depth} deep, more than the {max_depth} allowed")
    return json.loads(data, **options)
