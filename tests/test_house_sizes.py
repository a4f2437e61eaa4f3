"""The house rules a newcomer relies on: small rooms, short functions, typed public functions.

No module of the four layers over 600 lines, no function there over 60 lines (tests excepted), and every
public module-level function of `theory` and `simulate` annotated in every parameter and its return.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("theory", "simulate", "empirical", "proofs_checks")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def library_files() -> list[Path]:
    """Every module of the four layers that is not a test file."""
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py") if not p.name.startswith("test_"))


def long_functions(tree: ast.AST, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in `tree` longer than `limit` lines."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit
    ]


def unannotated_public_functions(tree: ast.Module) -> list[str]:
    """Public module-level functions missing an annotation on a parameter or the return."""
    missing = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            a = node.args
            params = a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x is not None]
            if node.returns is None or any(p.annotation is None for p in params):
                missing.append(node.name)
    return missing


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_module_is_over_the_size_limit():
    big = {
        str(p.relative_to(ROOT)): n
        for p in library_files()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_no_function_is_over_the_length_limit():
    long = {
        str(p.relative_to(ROOT)): found
        for p in library_files()
        if (found := long_functions(parsed(p), MAX_FUNCTION_LINES))
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("layer", ["theory", "simulate"])
def test_public_functions_are_fully_annotated(layer):
    missing = {
        str(p.relative_to(ROOT)): names
        for p in library_files()
        if p.parts[-2] == layer and (names := unannotated_public_functions(parsed(p)))
    }
    assert not missing, f"public functions without full type hints: {missing}"


def test_the_checks_see_what_they_look_for():
    source = "def f(x, y: int) -> int:\n" + "    y += 1\n" * 61 + "    return y\n\ndef g(x: int):\n    return x\n"
    tree = ast.parse(source)
    assert long_functions(tree, MAX_FUNCTION_LINES) == [("f", 63)]
    assert unannotated_public_functions(tree) == ["f", "g"]
    assert unannotated_public_functions(ast.parse("def _h(x):\n    return x\n")) == []
