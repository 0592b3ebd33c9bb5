"""Pydantic validation errors as the one line a user reads: each problem with its key."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

# error types whose message gains ", got <input>" (bounds too: "less than or equal to 256")
_SHOW_INPUT = ("int_", "float_", "string_", "literal_", "dict_", "tuple_", "bool_")
_SHOW_INPUT_TOO = ("less_", "greater_")


def _key(part: int | str) -> str:
    """A key as written, or quoted when it has blanks or control characters (one line)."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def describe_errors(
    exc: ValidationError,
    *,
    unknown_key: Callable[[tuple[int | str, ...]], str] | None = None,
    limit: int = 5,
) -> str:
    """``key.path: message; ...`` for the first ``limit`` problems.

    Type errors quote what was received; ``unknown_key(loc)`` words the message for a key
    that is not in the schema (default: "unknown key")."""
    problems = []
    for error in exc.errors()[:limit]:
        loc = tuple(error["loc"])
        key = ".".join(_key(part) for part in loc)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = unknown_key(loc) if unknown_key else "unknown key"
        elif error["type"].startswith(_SHOW_INPUT + _SHOW_INPUT_TOO):
            message = f"{message}, got {error['input']!r}"
        problems.append(f"{key}: {message}" if key else message)
    more = len(exc.errors()) - limit
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)
