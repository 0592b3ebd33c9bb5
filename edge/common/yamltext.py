"""YAML that a person wrote, read strictly: UTF-8 text, no key given twice, bounded.

:func:`load_yaml` is what edge.yaml and a model's sidecar are read with. Every way the
bytes can be wrong ends in one :class:`~edge.errors.ConfigError` that names the file,
what was wrong (with the line where YAML knows it) and what to do:

- not UTF-8 (UTF-16 or UTF-32 with their byte-order mark, latin-1, a binary file);
- not YAML, or a YAML tag the safe loader does not build (``!!python/object``);
- a mapping key given twice (PyYAML keeps the last one silently): the key and both lines;
- aliases that expand to more than :data:`MAX_NODES` values ("billion laughs"), or
  nesting deeper than :data:`MAX_DEPTH` (the parser recurses);
- a file larger than :data:`MAX_BYTES`.
"""

from __future__ import annotations

import codecs
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from edge.errors import ConfigError

MAX_BYTES = 1024 * 1024  # a config is a few KB
MAX_NODES = 100_000  # values after alias expansion
MAX_DEPTH = 100  # nested mappings and lists
MERGE_TAG = "tag:yaml.org,2002:merge"
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
SAVE_AS_UTF8 = "save it as UTF-8 (e.g. iconv -t UTF-8)"


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping key given twice (merge keys ``<<`` may be
    overridden: that is what they are for)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue
            key = self.construct_object(key_node, deep=False)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # unhashable: the base class says so with its position
                continue
            if first is not None:
                raise ConstructorError(
                    None,
                    None,
                    f"the key {key!r} is given twice (lines {first} and {line}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _text(data: bytes, origin: str) -> str:
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"{origin}: {len(data)} bytes is too large for a config (at most {MAX_BYTES}); "
            "check that it is the right file"
        )
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise ConfigError(f"{origin}: the file is {name} text; {SAVE_AS_UTF8}")
    if b"\x00" in data:
        raise ConfigError(
            f"{origin}: contains NUL bytes, so it is a binary file (or UTF-16 without a "
            f"byte-order mark), not a YAML config; {SAVE_AS_UTF8}"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{origin}: not UTF-8: byte 0x{data[exc.start]:02x} at line {line} "
            f"(latin-1 or another 8-bit encoding?); {SAVE_AS_UTF8}"
        ) from exc


def _check_size(root: Node, origin: str) -> None:
    """ConfigError when the node graph, aliases expanded, is too deep or too big."""
    sizes: dict[int, int] = {}
    # iterative post-order walk: (node, depth, children done)
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"{origin}: nested more than {MAX_DEPTH} levels deep at line "
                f"{node.start_mark.line + 1}; a config is a few levels deep"
            )
        if id(node) in sizes:
            continue
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            sizes[id(node)] = 1
            continue
        if done:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_NODES:
                raise ConfigError(
                    f"{origin}: the aliases (*name) expand to more than {MAX_NODES} values "
                    f"at line {node.start_mark.line + 1}; write the values out, or alias less"
                )
            continue
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children if id(child) not in sizes)


def load_yaml(data: bytes, *, origin: str) -> Any:
    """The one YAML document in ``data``; ConfigError (naming ``origin``) for anything wrong."""
    text = _text(data, origin)
    try:
        loader = _StrictLoader(text)  # checks the characters: ReaderError
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_size(node, origin)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            f"{origin}: the control character U+{exc.character:04X} at line {line} is not "
            "allowed in YAML; remove it (is this the right file?)"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{origin}: not valid YAML{where}: {problem}") from exc
    except RecursionError as exc:
        raise ConfigError(
            f"{origin}: nested too deeply to read; a config is a few levels deep"
        ) from exc
