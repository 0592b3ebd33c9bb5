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


class LazyModule:
    """A module imported on its first attribute use; each attribute, once read, is kept
    on this object, so later reads cost what a module attribute costs. For OpenCV
    (edge.common.opencv): a daemon on sensors, or a process that only reads configs,
    never loads it (30 MB resident)."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attribute: str) -> Any:  # only for attributes not yet kept
        if attribute.startswith("__"):
            raise AttributeError(attribute)  # copy, pickle and repr probes: not a load
        value = getattr(importlib.import_module(self._lazy_name), attribute)
        setattr(self, attribute, value)
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"
