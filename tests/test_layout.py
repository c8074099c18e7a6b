"""The package's layers: no import cycle, no module importing another module's private name.

Read from the source with :mod:`ast` (module-level imports only: an import inside a function
runs at call time and cannot make a cycle at import). The layers of docs/design.md section 1.
"""

from __future__ import annotations

import ast
from pathlib import Path

import torchmeans

PACKAGE = Path(torchmeans.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports() -> dict[str, list[tuple[str, list[str]]]]:
    """Each module's module-level ``from torchmeans... import names`` (and plain imports)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports = []
        for node in tree.body:  # module level only
            if isinstance(node, ast.If):  # (TYPE_CHECKING blocks run no import)
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level
                                                     + 1] + ([base] if base else []))
                if base.split(".")[0] == "torchmeans":
                    imports.append((base, [alias.name for alias in node.names]))
            elif isinstance(node, ast.Import):
                imports += [(alias.name, []) for alias in node.names
                            if alias.name.split(".")[0] == "torchmeans"]
        found[name] = imports
    return found


def test_no_module_imports_a_private_name_of_another():
    offenders = [(module, source, name)
                 for module, imports in module_imports().items()
                 for source, names in imports for name in names
                 if name.startswith("_") and not name.startswith("__") and source != module]
    assert offenders == []


def test_no_import_cycle():
    """No module reaches itself through explicit imports (a package's ``__init__`` counts)."""
    imports = module_imports()
    modules = set(imports)
    graph = {}
    for module, entries in imports.items():
        targets = set()
        for source, names in entries:
            # `from package import module` imports that module (a package part-way through
            # its own __init__ serves its submodules: no edge to the package itself)
            submodules = {f"{source}.{name}" for name in names if f"{source}.{name}" in modules}
            targets |= submodules
            if source in modules and len(submodules) < max(1, len(names)):
                targets.add(source)
        graph[module] = targets - {module}
    assert find_cycles(graph) == []


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles a depth-first search meets (each as the path that closes it)."""
    cycles = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
