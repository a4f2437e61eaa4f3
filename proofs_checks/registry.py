"""One registry of claims, read by `pytest proofs_checks` and by `python -m proofs_checks`.

A claim module declares its check with the `claim` decorator. The check is a
function of no arguments returning a `Result`: the verdict the suite measured
(`holds`, `fails` with a counterexample, or `not run` with a reason) and the
figures it measured. `expect` records the verdict the suite currently asserts:
"holds" for a claim confirmed, "fails" for a claim the suite has found false (the
finding). A test calls `assert_claim(check)`, which prints the figures and fails
if the measured verdict differs from the expected one.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

VERDICTS = ("holds", "fails", "not run")
ROUTES = ("exact", "free optimisation", "certificate", "empirical")


@dataclass(frozen=True)
class Result:
    verdict: str
    figures: dict = field(default_factory=dict)
    counterexample: str | None = None
    reason: str | None = None
    images: tuple = ()  # paths of figures written by the check, when asked to write any

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.verdict == "fails" and not self.counterexample:
            raise ValueError("a 'fails' verdict needs its counterexample")
        if self.verdict == "not run" and not self.reason:
            raise ValueError("a 'not run' verdict needs its reason")


def verdict(figures: dict, failures: list[str]) -> Result:
    """`holds` when no failure was found, else `fails` with the failures as the counterexample."""
    if failures:
        return Result("fails", figures, counterexample="; ".join(failures))
    return Result("holds", figures)


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    statement: str
    routes: tuple
    check: Callable[[], Result]
    expect: str = "holds"


CLAIMS: dict[str, Claim] = {}
#: Results measured by `assert_claim` in this process, for pytest's closing summary.
MEASURED: dict[str, Result] = {}


def claim(id: str, *, source: str, statement: str, routes, expect: str = "holds"):
    """Register the decorated check function under the claim id."""
    unknown = set(routes) - set(ROUTES)
    if unknown:
        raise ValueError(f"routes must be among {ROUTES}, got {sorted(unknown)}")

    def register(check: Callable[[], Result]):
        if id in CLAIMS and CLAIMS[id].check.__module__ != check.__module__:
            raise ValueError(f"claim id {id} registered twice ({CLAIMS[id].check.__module__}, {check.__module__})")
        CLAIMS[id] = Claim(id, source, statement, tuple(routes), check, expect)
        check.claim_id = id
        return check

    return register


def describe(result: Result) -> str:
    figures = ", ".join(f"{k}={_short(v)}" for k, v in result.figures.items())
    extra = result.counterexample or result.reason or ""
    return f"{result.verdict}: {figures}" + (f" | {extra}" if extra else "")


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def assert_claim(check: Callable[[], Result]) -> Result:
    """Run a registered check, print its figures, and assert the expected verdict."""
    entry = CLAIMS[check.claim_id]
    result = check()
    MEASURED[entry.id] = result
    print(f"[{entry.id}] {entry.statement}\n  -> {describe(result)}")
    assert result.verdict == entry.expect, f"[{entry.id}] expected '{entry.expect}', measured {describe(result)}"
    return result


def load_all() -> dict[str, Claim]:
    """Import every claim module of this package so that all claims are registered."""
    import proofs_checks

    for module in pkgutil.iter_modules(proofs_checks.__path__):
        if module.name.startswith("test_"):
            importlib.import_module(f"proofs_checks.{module.name}")
    return dict(sorted(CLAIMS.items()))
