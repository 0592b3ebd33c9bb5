"""The import graph of edge/ and packager/: no circles, and the device side never reaches
for the packager (the runtime check that edge never loads TensorFlow is in tests/cli)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.footprint import loaded_after

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge", "packager")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, list[str]]]:
    """(imported module, names) for every import outside ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [alias.name for alias in node.names]
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets: set[str] = set()
        for imported, names in _imports(tree, name, path.name == "__init__.py"):
            submodules = [f"{imported}.{n}" for n in names if f"{imported}.{n}" in modules]
            if submodules:
                targets.update(submodules)
            if (imported in modules and len(submodules) < len(names)) or not names:
                targets.add(imported)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_finder_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_edge_never_imports_the_packager() -> None:
    graph = import_graph()
    leaks = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("edge")
        for target in targets
        if target.startswith("packager")
    )
    assert not leaks


@pytest.mark.parametrize("package", PACKAGES)
def test_top_levels_hold_only_subpackages(package: str) -> None:
    loose = sorted(
        p.name
        for p in (ROOT / package).glob("*.py")
        if p.name not in {"__init__.py", "__main__.py", "errors.py"}
    )
    assert not loose
    crowded = sorted(
        f"{folder.relative_to(ROOT)} ({count})"
        for folder in (ROOT / package).rglob("*")
        if folder.is_dir()
        and folder.name != "__pycache__"
        and (count := len([p for p in folder.glob("*.py") if p.name != "__init__.py"])) > 12
    )
    assert not crowded


def test_opencv_loads_on_first_use_only() -> None:
    """edge.common.opencv: importing the modules that use OpenCV loads none of it; the
    first attribute read does, and the value is the module's own."""
    watched = ("cv2",)
    imports = (
        "import copy\nimport edge.daemon.daemon, edge.sources.video, edge.postprocess.overlay\n"
        "from edge.common.opencv import cv2\nrepr(cv2)\ncopy.copy(cv2)"
    )
    assert loaded_after(imports, watched) == []
    statement = (
        "import sys\nfrom edge.common.opencv import cv2\n"
        "assert cv2.INTER_AREA == sys.modules['cv2'].INTER_AREA\n"
        "assert cv2.resize is sys.modules['cv2'].resize"
    )
    assert loaded_after(statement, watched) == ["cv2"]
