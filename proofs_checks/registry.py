"""One registry of claims, read by `pytest proofs_checks` and by `python -m proofs_checks`.

A claim module declares its check with the `claim` decorator. The check is a
function of no arguments returning a `Result`: the verdict the suite measured
(`holds`, `fails` with a counterexample, `inconclusive` with the reason a route did
not settle, or `not run` with a reason), the figures it measured and its
`Agreement`s. `expect` records the verdict the suite currently asserts: "holds" for
a claim confirmed, "fails" for a claim the suite has found false (the finding).

Two-sided checks (docs/verdicts.md#two-sided-checks). An `Agreement` pins a measured figure to an independent
route's value with a tolerance, whatever the verdict: a bug that makes a false claim
"more false" moves the figure off the other route's value. A test calls
`assert_claim(check)`, which prints the figures and fails if the check pinned no
figure, if any agreement is broken, or if the measured verdict differs from the
expected one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

VERDICTS = ("holds", "fails", "inconclusive", "not run")
ROUTES = ("exact", "free optimisation", "certificate", "empirical")
#: Claims whose modules are being reworked elsewhere and do not pin figures yet: their
#: tests still pass on the verdict alone. Remove an id as soon as its check returns agreements.
ONE_SIDED_PENDING = frozenset()


@dataclass(frozen=True)
class Agreement:
    """A measured figure against an independent route's value: |measured - reference| <= tolerance."""

    name: str
    measured: float
    reference: float
    tolerance: float

    @property
    def holds(self) -> bool:
        return bool(abs(float(self.measured) - float(self.reference)) <= self.tolerance)  # NaN: broken

    def values(self) -> str:
        gap = abs(float(self.measured) - float(self.reference))
        return (
            f"{float(self.measured):.10g} vs {float(self.reference):.10g} "
            f"(|diff| {gap:.3g} {'<=' if self.holds else '>'} {self.tolerance:.3g})"
        )

    def describe(self) -> str:
        return f"{self.name}: {self.values()}"


@dataclass(frozen=True)
class Result:
    verdict: str
    figures: dict = field(default_factory=dict)
    counterexample: str | None = None
    reason: str | None = None
    images: tuple = ()  # paths of figures written by the check, when asked to write any
    agreements: tuple = ()  # Agreement pins, checked whatever the verdict

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.verdict == "fails" and not self.counterexample:
            raise ValueError("a 'fails' verdict needs its counterexample")
        if self.verdict in ("not run", "inconclusive") and not self.reason:
            raise ValueError(f"a {self.verdict!r} verdict needs its reason")

    @property
    def broken(self) -> list[Agreement]:
        return [a for a in self.agreements if not a.holds]


def verdict(figures: dict, failures: list[str], *, unsettled=(), agreements=()) -> Result:
    """The verdict of a check from what its routes measured (docs/verdicts.md#verdict-vocabulary).

    `inconclusive` when a route did not settle (`unsettled`: reasons, e.g. an optimiser not
    converged) or two routes disagree (an agreement outside its tolerance): nothing is judged;
    else `fails` with the failures as the counterexample, or `holds`. Every agreement is also
    recorded in the figures ("agrees: <name>").
    """
    agreements = tuple(agreements)
    figures = {**figures, **{f"agrees: {a.name}": a.values() for a in agreements}}
    reasons = list(unsettled) + [f"routes disagree: {a.describe()}" for a in agreements if not a.holds]
    if reasons:
        return Result("inconclusive", figures, reason="; ".join(reasons), agreements=agreements)
    if failures:
        return Result("fails", figures, counterexample="; ".join(failures), agreements=agreements)
    return Result("holds", figures, agreements=agreements)


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
    if expect not in VERDICTS:
        raise ValueError(f"expect must be one of {VERDICTS}, got {expect!r}")
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
    """Run a registered check, print its figures, and assert it is two-sided and gives the expected verdict.

    Fails when the check pinned no figure to an independent route (unless the claim is in
    `ONE_SIDED_PENDING`), when any pin is broken, or when the verdict differs from `expect`.
    """
    entry = CLAIMS[check.claim_id]
    result = check()
    MEASURED[entry.id] = result
    print(f"[{entry.id}] {entry.statement}\n  -> {describe(result)}")
    assert result.agreements or entry.id in ONE_SIDED_PENDING, (
        f"[{entry.id}] pins no measured figure to an independent route: a claim test must not pass on a verdict alone"
    )
    assert not result.broken, f"[{entry.id}] routes disagree: " + "; ".join(a.describe() for a in result.broken)
    assert result.verdict == entry.expect, f"[{entry.id}] expected '{entry.expect}', measured {describe(result)}"
    return result
