"""The import graph follows the layers, and no module uses another module's private names (STYLE.md).

Dependencies flow theory -> simulate -> empirical -> proofs_checks: a layer imports nothing from a
layer after it, and `theory` (exact mathematics: numpy, scipy, sympy) imports no torch. A name with a
leading underscore is private to its module: no other module imports it (``from m import _x``), reads
it (``m._x``) or patches it (``setattr(m, "_x", ...)``). Every module of the project is parsed with
`ast`, imports inside functions included; the last tests show the checks catch what they forbid.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("theory", "simulate", "empirical", "proofs_checks")
#: Top-level names each layer must not import: the layers after it, the benchmarks, and for theory torch.
FORBIDDEN = {
    "theory": {"simulate", "empirical", "proofs_checks", "benchmarks", "torch", "torchvision"},
    "simulate": {"empirical", "proofs_checks", "benchmarks"},
    "empirical": {"proofs_checks", "benchmarks"},
    "proofs_checks": {"benchmarks"},
}
#: Private names a module still uses across modules, as (user, "module.name"), each with its reason.
ALLOWED_PRIVATE_USES: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    """The name a file is imported under: dotted for the packages, the bare stem for tests/ (on sys.path)."""
    relative = path.relative_to(ROOT).with_suffix("")
    if relative.parts[0] == "tests":
        return relative.name
    return ".".join(part for part in relative.parts if part != "__init__")


def project_modules() -> dict[str, Path]:
    """{module name: path} of every Python file of the layers, the tests and the benchmarks."""
    found = {}
    for folder in (*LAYERS, "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the tree; ``from a import b`` yields a and a.b."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def layer_violations(tree: ast.AST, layer: str) -> list[str]:
    """'line: name' for each import of a top-level package that ``layer`` must not import."""
    forbidden = FORBIDDEN.get(layer, set())
    return [f"{line}: {name}" for line, name in imported_modules(tree) if name.split(".")[0] in forbidden]


def _module_aliases(tree: ast.AST, modules: set[str]) -> dict[str, str]:
    """{local name: project module} for every name the tree binds to a project module by an import."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.AST) -> str | None:
    """'a.b.c' for a chain of attribute reads on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(tree: ast.AST, modules: set[str]) -> list[tuple[int, str]]:
    """(line, "module.name") for each private name of another project module that the tree uses."""
    aliases = _module_aliases(tree, modules)

    def target(expression: ast.AST) -> str | None:
        dotted = _dotted(expression)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        full = f"{aliases[head]}.{rest}".rstrip(".") if head in aliases else dotted
        return full if full in modules else None

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in modules and node.level == 0:
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if _is_private(a.name)]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr) and target(node.value):
            found.append((node.lineno, f"{target(node.value)}.{node.attr}"))
        elif (
            isinstance(node, ast.Call)
            and _dotted(node.func) in ("setattr", "getattr", "monkeypatch.setattr")
            and len(node.args) >= 2
            and target(node.args[0])
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            found.append((node.lineno, f"{target(node.args[0])}.{node.args[1].value}"))
    return found


MODULES = project_modules()


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_nothing_from_the_layers_after_it(layer):
    bad = []
    for name, path in MODULES.items():
        if name.split(".")[0] == layer:
            bad += [f"{path.relative_to(ROOT)}:{v}" for v in layer_violations(ast.parse(path.read_text()), layer)]
    assert not bad, f"{layer} must not import {sorted(FORBIDDEN[layer])}:\n" + "\n".join(bad)


def test_no_module_uses_another_modules_private_names():
    names = set(MODULES)
    bad, used = [], set()
    for name, path in MODULES.items():
        for line, private in private_uses(ast.parse(path.read_text()), names):
            if private.rpartition(".")[0] == name:
                continue  # its own name, reached through a self-import
            used.add((name, private))
            if (name, private) not in ALLOWED_PRIVATE_USES:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {private}")
    assert not bad, "private names used across modules (make them public or stop using them):\n" + "\n".join(bad)
    assert ALLOWED_PRIVATE_USES <= used, f"stale exceptions: {sorted(ALLOWED_PRIVATE_USES - used)}"


def test_importing_theory_loads_no_torch_and_no_other_layer():
    """The same rule at run time, transitive imports included, in a fresh interpreter."""
    theory = sorted(name for name in MODULES if name.split(".")[0] == "theory")
    code = (
        f"import sys\nfor name in {theory!r}:\n    __import__(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    top_level = set(ast.literal_eval(loaded.stdout.strip()))
    assert "theory" in top_level
    assert not top_level & FORBIDDEN["theory"], sorted(top_level & FORBIDDEN["theory"])


# ---------------------------------------------------------------------------
# The checks themselves catch what they forbid
# ---------------------------------------------------------------------------

BAD_SOURCE = """
import torch
from simulate import losses
import simulate.metrics as m
from theory.simplex import _hidden
import theory.ssem

def f(monkeypatch):
    from empirical import train
    losses._ids("x")
    m._private
    theory.ssem._steps
    monkeypatch.setattr(losses, "_embeddings", None)
    losses.public, losses.__doc__
"""


def test_layer_check_flags_torch_and_later_layers_in_theory():
    flagged = layer_violations(ast.parse(BAD_SOURCE), "theory")
    assert flagged == [
        "2: torch",
        "3: simulate",
        "3: simulate.losses",
        "4: simulate.metrics",
        "9: empirical",
        "9: empirical.train",
    ]
    assert layer_violations(ast.parse(BAD_SOURCE), "proofs_checks") == []
    assert layer_violations(ast.parse("from theory import ssem\nimport numpy"), "theory") == []


def test_private_check_flags_every_form_of_use():
    modules = {"simulate.losses", "simulate.metrics", "theory.simplex", "theory.ssem", "empirical.train"}
    flagged = {use for _, use in private_uses(ast.parse(BAD_SOURCE), modules)}
    assert flagged == {
        "theory.simplex._hidden",
        "simulate.losses._ids",
        "simulate.metrics._private",
        "theory.ssem._steps",
        "simulate.losses._embeddings",
    }
