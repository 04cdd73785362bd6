"""The layout keeps its design: the worker stands alone, no import cycles, and each outside
library behind the one module (or package) that speaks to it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"worker": "jobkit_worker", "publisher": "jobkit_publisher"}  # folder: import name
# The library -> the only places that may import it.
BOUNDARIES = {
    "pika": ("worker/broker.py", "publisher/queue/publish.py"),
    "azure": ("worker/storage/azure.py",),
    "typer": ("publisher/cli/",),
    "rich": ("publisher/cli/",),
    "matplotlib": ("publisher/report/charts.py",),
}


def _modules() -> dict[str, Path]:
    """Every module of the kit by its dotted name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = (package, *path.relative_to(ROOT / folder).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _runtime_imports(path: Path, for_type_checkers: bool = False) -> list[str]:
    """The names `path` imports when it runs (and, `for_type_checkers`, those it imports only
    for type checkers)."""
    tree = ast.parse(path.read_text())
    skipped = (
        set()
        if for_type_checkers
        else {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
    )
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
    return names


MODULES = _modules()


def _kit_imports(path: Path, for_type_checkers: bool = False) -> set[str]:
    """The kit's modules `path` imports: `from a.b import c` is a.b.c if that is a module."""
    return {name for name in _runtime_imports(path, for_type_checkers) if name in MODULES}


def test_the_worker_never_imports_the_publisher() -> None:
    for name, path in MODULES.items():
        if name.startswith("jobkit_worker"):
            assert not any(i.startswith("jobkit_publisher") for i in _kit_imports(path)), path


@pytest.mark.parametrize("for_type_checkers", [False, True], ids=["at run time", "for types"])
def test_no_two_modules_import_each_other_directly_or_around_a_cycle(
    for_type_checkers: bool,
) -> None:
    graph = {name: _kit_imports(path, for_type_checkers) - {name} for name, path in MODULES.items()}
    # A package's __init__ importing its own modules is not a cycle of design.
    for name in graph:
        graph[name] = {target for target in graph[name] if not name.startswith(target + ".")}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


@pytest.mark.parametrize("library", sorted(BOUNDARIES))
def test_each_outside_library_is_imported_in_its_one_place(library: str) -> None:
    allowed = BOUNDARIES[library]
    offenders = [
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if any(name.split(".")[0] == library for name in _runtime_imports(path))
        and not str(path.relative_to(ROOT)).startswith(allowed)
    ]
    assert offenders == [], f"{library} imported outside {allowed}"
