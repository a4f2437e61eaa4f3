"""Claim B1 (Paper B): on SSEM the "instance" loss is
L(beta) = log p + log[e^{1/tau} + (n-1) e^{s_w/tau} + (m-1) n e^{s_b/tau}] - [alpha + (1-alpha) s_w]/tau,
convex in beta, with collapse threshold alpha* = [1 + (mn-1) r] / [n (1 + (m-1) r)]; for "supcon"
alpha* = [(p-1) + p(mn-1) r] / [(np-1) + (m-1) n p r]; r = exp(-m/((m-1) tau)).

Route: exact. The counted sympy derivation (theory.ssem_symbolic) is compared with the formulas as
docs/ssem.md states them, typed here independently.
"""

import sympy as sp

from proofs_checks.registry import Result, assert_claim, claim
from theory.ssem_symbolic import alpha, beta, derive, m, n, p, r, tau

S_W = (n * beta - 1) / (n - 1)
S_B = -beta / (m - 1)
STATED_LOSS = sp.log(p) + sp.log(sp.exp(1 / tau) + (n - 1) * sp.exp(S_W / tau) + (m - 1) * n * sp.exp(S_B / tau)) - (
    alpha + (1 - alpha) * S_W
) / tau
STATED_ALPHA_STAR = {
    "instance": (1 + (m * n - 1) * r) / (n * (1 + (m - 1) * r)),
    "supcon": ((p - 1) + p * (m * n - 1) * r) / ((n * p - 1) + (m - 1) * n * p * r),
}


def _is_zero(expr) -> bool:
    return sp.simplify(sp.expand_log(expr, force=True)) == 0


@claim(
    "B1",
    source="Paper B: SSEM; closed forms derived by this suite",
    statement="The SSEM restricted loss, its convexity in beta and the collapse thresholds alpha*(tau) of both "
    "variants follow from counting the pairs each anchor sees.",
    routes=("exact",),
)
def check() -> Result:
    instance, supcon = derive("instance"), derive("supcon")
    figures = {
        "instance loss == stated formula": _is_zero(instance.loss - STATED_LOSS),
        "L'' == variance form (>= 0), instance": _is_zero(instance.curvature - instance.curvature_as_variance),
        "L'' == variance form (>= 0), supcon": _is_zero(supcon.curvature - supcon.curvature_as_variance),
        "alpha* instance": str(instance.alpha_star),
        "alpha* supcon": str(supcon.alpha_star),
        "alpha* instance == stated": _is_zero(instance.alpha_star - STATED_ALPHA_STAR["instance"]),
        "alpha* supcon == stated": _is_zero(supcon.alpha_star - STATED_ALPHA_STAR["supcon"]),
    }
    wrong = [name for name, value in figures.items() if value is False]
    if wrong:
        return Result("fails", figures, counterexample="derivation differs from docs/ssem.md in: " + "; ".join(wrong))
    return Result("holds", figures)


def test_B1_closed_forms_follow_from_pair_counts():
    assert_claim(check)
