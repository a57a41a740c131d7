"""The package's layout: imports point one way, and no module reaches into another's privates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "botperf"


def module_name(path: Path) -> str:
    parts = ["botperf", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """The botperf modules ``name`` imports anywhere, under ``TYPE_CHECKING`` included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from . import x` may import a module x, or a name of the package.
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(c for c in candidates if c in MODULES and c != name)
    return found


def test_no_import_cycle_between_modules() -> None:
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    # A package's __init__ re-exports its modules; an import of the package from one of
    # its own modules (botperf._cli reads botperf.__version__) is not a cycle of concerns.
    for name in graph:
        graph[name] -= {p for p in graph[name] if name.startswith(p + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def private_names_defined(tree: ast.Module) -> set[str]:
    """Private attribute names the module itself defines: methods, slots, ``self._x = ...``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)  # dataclass and class-level fields
    return names


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_touches_no_other_modules_private_attributes(name: str) -> None:
    """``x._attr`` only on ``self``/``cls`` or where this module defines ``_attr``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    own = private_names_defined(tree)
    offenders = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and node.attr not in own
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    ]
    assert offenders == []
