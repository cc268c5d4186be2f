"""The dependency rule, read from the source: the core imports no transport and no shell, no
module imports another package's private module, and module-level imports form no cycle.

The core is ``dockgate.gateway`` less the wiring packages (``cli``, ``daemon``, ``demo``), which
join the core to the drivers, the API and the simulators.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {
    "dockgate.gateway": ROOT / "gateway",
    "dockgate.drivers": ROOT / "drivers",
    "dockgate.api": ROOT / "api",
    "dockgate.sim": ROOT / "firmware-sim" / "firmware_sim",
}
WIRING = ("dockgate.gateway.cli", "dockgate.gateway.daemon", "dockgate.gateway.demo")
SHELL = ("dockgate.drivers", "dockgate.api", "dockgate.sim")
TRANSPORTS = ("paho", "aiomqtt", "smartcard", "nfc", "serial", "serial_asyncio", "fastapi")
TRANSPORTS += ("uvicorn", "starlette")


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (or module.name for ``from x import name``)
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


def module_files() -> Iterator[tuple[str, Path]]:
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((package, *parts)), path


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    type_only_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            type_only_nodes.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        type_only = id(node) in type_only_nodes
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, type_only)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            for alias in node.names:
                yield Import(module, f"{target}.{alias.name}", node.lineno, type_only)


def all_imports() -> list[Import]:
    return [imp for module, path in module_files() for imp in imports_of(module, path)]


def _in(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_every_package_folder_is_installed() -> None:
    """pyproject lists packages by hand (the folders map to ``dockgate.*``): none forgotten."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join((package, *init.parent.relative_to(folder).parts))
        for package, folder in PACKAGE_DIRS.items()
        for init in folder.rglob("__init__.py")
    }
    assert found == listed


def test_the_core_imports_no_transport_and_no_shell() -> None:
    core_imports = [
        imp
        for imp in all_imports()
        if imp.module.startswith("dockgate.gateway") and not _in(imp.module, WIRING)
    ]
    bad = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in core_imports
        if _in(imp.target, SHELL + WIRING) or imp.target.split(".")[0] in TRANSPORTS
    ]
    assert bad == []


def test_drivers_and_api_do_not_import_the_wiring() -> None:
    bad = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if _in(imp.module, ("dockgate.drivers", "dockgate.api")) and _in(imp.target, WIRING)
    ]
    assert bad == []


def _private_parent(target: str) -> str | None:
    """The package owning the first ``_private`` part of a dotted name, if there is one."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    bad = []
    for imp in all_imports():
        owner = _private_parent(imp.target)
        if owner is None:
            continue
        inside_owner = imp.module == owner or imp.module.startswith(owner + ".")
        if not inside_owner:
            bad.append(f"{imp.module}:{imp.line} imports {imp.target}")
    assert bad == []


def _module_graph() -> dict[str, set[str]]:
    modules = {module for module, _ in module_files()}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in all_imports():
        target = imp.target
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != imp.module:
            graph[imp.module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_modules() -> None:
    """Type-only imports count too: a cycle hidden under ``TYPE_CHECKING`` is still a knot."""
    assert _cycles(_module_graph()) == []


def test_no_test_module_imports_another_test_module() -> None:
    """Shared fixtures live in conftest and plugins, plain helpers in ``tests.support``."""
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for imp in imports_of(module, path):
            if _in(imp.target.rpartition(".")[0] or imp.target, ("tests",)) and any(
                part.startswith("test_") for part in imp.target.split(".")[1:]
            ):
                bad.append(f"{module}:{imp.line} imports {imp.target}")
    assert bad == []
