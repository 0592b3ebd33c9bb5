"""A package's names loaded on first use (PEP 562), so importing one light module of the
package does not import the heavy ones its ``__init__`` re-exports."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """The package's ``__getattr__``: ``homes`` maps each name to the module defining it;
    a name, once loaded, becomes a plain attribute in ``namespace`` (the package's
    globals())."""

    def load(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return load
