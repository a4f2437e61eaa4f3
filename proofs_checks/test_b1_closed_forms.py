"""Claim B1 (Paper B): on SSEM the "instance" loss is
L(beta) = log p + log[e^{1/tau} + (n-1) e^{s_w/tau} + (m-1) n e^{s_b/tau}] - [alpha + (1-alpha) s_w]/tau,
convex in beta, with collapse threshold alpha* = [1 + (mn-1) r] / [n (1 + (m-1) r)]; for "supcon"
alpha* = [(p-1) + p(mn-1) r] / [(np-1) + (m-1) n p r]; r = exp(-m/((m-1) tau)).

Route: exact. The counted sympy derivation (theory.ssem_symbolic) is compared with the formulas as
docs/ssem.md states them, typed here independently.
"""

import sympy as sp

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from theory import ssem
from theory.ssem_symbolic import alpha, beta, derive, m, n, p, r, tau

S_W = (n * beta - 1) / (n - 1)
S_B = -beta / (m - 1)
STATED_LOSS = (
    sp.log(p)
    + sp.log(sp.exp(1 / tau) + (n - 1) * sp.exp(S_W / tau) + (m - 1) * n * sp.exp(S_B / tau))
    - (alpha + (1 - alpha) * S_W) / tau
)
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
    failures = ["derivation differs from docs/ssem.md in: " + "; ".join(wrong)] if wrong else []
    return verdict(figures, failures, agreements=_numeric_agreements())


#: (m, n, p, alpha, tau, beta) points where the numeric routes are compared with the stated formulas.
POINTS = ((3, 4, 2, 0.3, 0.7, 0.6), (2, 2, 1, 0.9, 0.05, 0.1), (10, 5, 3, 0.5, 2.0, 0.95), (5, 3, 4, 0.0, 0.2, 1.0))


def _numeric_agreements() -> list[Agreement]:
    """theory.ssem (numpy, from pair counts, log space) against the stated formulas evaluated by sympy."""
    agreements = []
    for m_, n_, p_, alpha_, tau_, beta_ in POINTS:
        values = {m: m_, n: n_, p: p_, alpha: alpha_, tau: tau_, beta: beta_, r: ssem.collapse_ratio(tau_, m_)}
        where = f"(m, n, p, alpha, tau, beta) = {(m_, n_, p_, alpha_, tau_, beta_)}"
        stated = float(STATED_LOSS.subs(values).evalf(30))
        agreements.append(
            Agreement(
                f"{where}: restricted loss, theory.ssem vs stated",
                float(ssem.restricted_loss(beta_, alpha_, tau_, m_, n_, p_)),
                stated,
                1e-12 * max(1.0, abs(stated)),
            )
        )
        for variant in ("instance", "supcon") if p_ >= 2 else ("instance",):
            threshold = float(STATED_ALPHA_STAR[variant].subs(values).evalf(30))
            agreements.append(
                Agreement(
                    f"{where}: alpha* {variant}, theory.ssem vs stated",
                    float(ssem.alpha_star(tau_, m_, n_, p_, variant)),
                    threshold,
                    1e-12,
                )
            )
    return agreements


def test_B1_closed_forms_follow_from_pair_counts():
    assert_claim(check)
