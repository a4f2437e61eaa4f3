"""The claims registry: verdicts (inconclusive included) and two-sided checks (docs/verdicts.md)."""

import math

import pytest

from proofs_checks import registry
from proofs_checks.registry import Agreement, Result, assert_claim, verdict

CLOSE = Agreement("route A vs route B", 1.0, 1.0 + 1e-9, 1e-6)
FAR = Agreement("route A vs route B", 1.0, 1.1, 1e-6)


def test_agreement_is_two_sided_and_nan_breaks_it():
    assert CLOSE.holds and not FAR.holds
    assert not Agreement("below", 0.9, 1.1, 1e-6).holds  # "more false" is caught as well as "less false"
    assert not Agreement("nan", math.nan, 1.0, 1.0).holds


@pytest.mark.parametrize(
    "failures, unsettled, agreements, expected",
    [
        ([], [], [CLOSE], "holds"),
        (["claim false here"], [], [CLOSE], "fails"),
        (["claim false here"], ["optimiser not converged at tau = 0.1"], [CLOSE], "inconclusive"),
        (["claim false here"], [], [FAR], "inconclusive"),
        ([], [], [FAR], "inconclusive"),
    ],
)
def test_verdict_order(failures, unsettled, agreements, expected):
    result = verdict({"x": 1}, failures, unsettled=unsettled, agreements=agreements)
    assert result.verdict == expected
    assert "agrees: route A vs route B" in result.figures
    if expected == "inconclusive":
        assert result.reason and (unsettled[0] in result.reason if unsettled else "routes disagree" in result.reason)


def test_inconclusive_and_not_run_need_a_reason():
    for name in ("inconclusive", "not run"):
        with pytest.raises(ValueError, match="needs its reason"):
            Result(name)
    with pytest.raises(ValueError, match="verdict must be one of"):
        Result("undecided")


def _register(claim_id, result, expect="holds"):
    def check():
        return result

    check.__module__ = f"tests.fake_{claim_id}"
    registry.claim(claim_id, source="test", statement="s", routes=("exact",), expect=expect)(check)
    return check


def test_assert_claim_refuses_a_verdict_alone_and_broken_pins():
    try:
        with pytest.raises(AssertionError, match="must not pass on a verdict alone"):
            assert_claim(_register("Z1", Result("holds", {"x": 1})))
        with pytest.raises(AssertionError, match="routes disagree"):
            assert_claim(_register("Z2", Result("fails", {}, counterexample="c", agreements=(FAR,)), "fails"))
        assert assert_claim(_register("Z3", verdict({}, ["c"], agreements=[CLOSE]), "fails")).verdict == "fails"
        with pytest.raises(AssertionError, match="expected 'holds'"):
            assert_claim(_register("Z4", verdict({}, [], unsettled=["not converged"], agreements=[CLOSE])))
    finally:
        for claim_id in ("Z1", "Z2", "Z3", "Z4"):
            registry.CLAIMS.pop(claim_id, None)
            registry.MEASURED.pop(claim_id, None)


def test_expect_must_be_a_verdict():
    with pytest.raises(ValueError, match="expect must be one of"):
        registry.claim("Z9", source="s", statement="s", routes=("exact",), expect="maybe")
