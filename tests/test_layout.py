"""The layout rules, for every package: no import cycles; own-module
imports at the top of a module, except of modules that need an optional
extra (the exporter and the torch-backed model), which a command imports
when it runs so that its --help and the torch-free install stay light."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = {"mdhr": "mdhr", "mdhr_export": "export", "mdhr_runtime": "runtime", "mdhr_bench": "benchmarks",
            "mdhr_demo": "demo"}
NEEDS_AN_EXTRA = re.compile(r"^(mdhr_export(\..+)?|mdhr_bench\.torch_runner|mdhr\.(model|loading|stages|backbones))$")


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            found[".".join((package,) + (parts[:-1] if parts[-1] == "__init__" else parts))] = path
    return found


def own_imports(node: ast.AST, known: dict[str, Path]) -> list[ast.ImportFrom]:
    return [n for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and n.module
            and n.module.split(".")[0] in PACKAGES]


def imported_modules(node: ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """``from a.b import c`` imports a.b, and a.b.c where c is a module."""
    names = {f"{node.module}.{alias.name}" for alias in node.names} & set(known)
    return ({node.module} & set(known)) | names


@pytest.fixture(scope="module")
def trees():
    return {name: ast.parse(path.read_text()) for name, path in modules().items()}


def test_own_imports_inside_functions_only_of_modules_that_need_an_extra(trees):
    known = modules()
    misplaced = []
    for name, tree in trees.items():
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                misplaced += [f"{name}.{function.name}: {n.module}" for n in own_imports(function, known)
                              if not NEEDS_AN_EXTRA.match(n.module)]
    assert misplaced == []


def test_no_import_cycles_in_any_package(trees):
    """Imports inside functions count too: they run as soon as the function does."""
    known = modules()
    graph = {name: set().union(*(imported_modules(n, known) for n in own_imports(tree, known))) - {name}
             for name, tree in trees.items()}
    visiting, done = [], set()

    def visit(module):
        assert module not in visiting, "import cycle: " + " -> ".join(visiting[visiting.index(module):] + [module])
        if module in done:
            return
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_library_never_imports_its_commands(trees):
    """Commands call the library; a library module that imports a command
    module would make the library depend on click and on exit codes."""
    known = modules()
    commands = {name for name in known if name.endswith(".cli") or ".cli." in name}
    wrong = [f"{name} imports {module}" for name, tree in trees.items() if name not in commands
             for n in own_imports(tree, known) for module in imported_modules(n, known) if module in commands]
    assert wrong == []


def test_the_runtime_never_imports_torch(trees):
    heavy = re.compile(r"^(torch|mdhr_export|mdhr\.(model|loading|stages|backbones))(\.|$)")
    wrong = [f"{name}: {n.module if isinstance(n, ast.ImportFrom) else n.names[0].name}"
             for name, tree in trees.items() if name.startswith("mdhr_runtime")
             for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             and any(heavy.match(m or "") for m in ([n.module] if isinstance(n, ast.ImportFrom)
                                                    else [a.name for a in n.names]))]
    assert wrong == []


MAX_FUNCTION_LINES = 60


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the signature to the end, less the docstring (a command's
    docstring is its --help)."""
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_function_is_long(trees):
    long = [f"{name}.{f.name}: {body_lines(f)} lines" for name, tree in trees.items() for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and body_lines(f) > MAX_FUNCTION_LINES]
    assert long == []
