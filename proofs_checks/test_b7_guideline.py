"""Claim B7 (a summary of Paper B): "alpha >= 1/n and tau <= 1/log m prevents collapse".

Route: exact. The guideline audit (theory.ssem.guideline_audit) searches a grid of (m, n) for points inside the
guideline's region that collapse. The suite's verdict is that the guideline is NOT sufficient; the exact
condition is alpha > alpha*(tau) (equivalently tau < tau*(alpha)).
"""

import numpy as np
import sympy as sp
from scipy.optimize import minimize_scalar

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from theory import ssem
from theory import ssem_symbolic as symbolic

STATED_POINT = (3, 4, 0.26, float(1 / np.log(3)))  # (m, n, alpha, tau): inside the guideline
STEP = 1e-6  # beta step below 1 where the restricted loss is compared with its value at 1


@claim(
    "B7",
    source="summary of Paper B",
    statement="alpha >= 1/n and tau <= 1/log m prevent class collapse.",
    routes=("exact",),
    expect="fails",
)
def check() -> Result:
    counterexamples = ssem.guideline_audit(range(2, 11), range(2, 11))
    m, n, alpha, tau = STATED_POINT
    beta = float(ssem.optimal_beta(alpha, tau, m, n))
    figures = {
        "grid": "m = 2..10, n = 2..10",
        "collapsing (m, n) pairs inside the guideline": len(counterexamples),
        "beta* at m=3, n=4, alpha=0.26, tau=1/log 3": beta,
        "alpha*(1/log 3) at m=3, n=4 (collapse iff alpha <= alpha*)": float(ssem.alpha_star(tau, m, n)),
    }
    agreements = _agreements(counterexamples, beta)
    failures = []
    if alpha >= 1 / n and tau <= 1 / np.log(m) and beta == 1.0:
        failures.append(f"m={m}, n={n}, alpha={alpha} (>= 1/{n}), tau=1/log {m} collapses (beta* = {beta})")
    if counterexamples:
        first = counterexamples[0]
        failures.append(
            f"e.g. also m={first.n_classes}, n={first.n_per_class}, alpha={first.alpha:.4f}, "
            f"tau={first.tau:.4f} with alpha*={first.alpha_star:.4f}; {len(counterexamples)} of the "
            f"grid's (m, n) collapse inside the guideline. Exact condition: alpha > alpha*(tau)"
        )
    return verdict(figures, failures, agreements=agreements)


def _agreements(counterexamples, beta: float) -> list[Agreement]:
    """The counterexample's numbers pinned by independent routes.

    * beta* at the design point against the restricted loss on both sides of 1: collapse (beta* = 1)
      exactly when L(1 - h) >= L(1) for small h, i.e. L does not fall towards 1 from below; a minimiser
      away from 1 is compared with a bounded scalar minimisation.
    * The number of collapsing (m, n) pairs found with `optimal_beta` against the count from the closed
      form (the audit's alpha is the midpoint of [1/n, alpha*(1/log m)], which collapses iff 1/n < alpha*).
    """
    m, n, alpha, tau = STATED_POINT
    one_side = ssem.restricted_loss(np.array([1.0 - STEP, 1.0]), alpha, tau, m, n)
    above = 0.5 * (float(ssem.alpha_star(tau, m, n)) + 1.0)  # the exact condition says: no collapse
    closed_form_count = sum(
        float(ssem.alpha_star(1 / np.log(m_), m_, n_)) > 1 / n_ for m_ in range(2, 11) for n_ in range(2, 11)
    )
    return [
        Agreement(
            "beta* at the design point: bisection vs the restricted loss on both sides of 1",
            beta,
            _beta_by_loss(alpha, tau, m, n),
            1e-6,
        ),
        Agreement(
            f"beta* at alpha = {above:.4f} > alpha*, same m, n, tau: bisection vs the restricted loss",
            float(ssem.optimal_beta(above, tau, m, n)),
            _beta_by_loss(above, tau, m, n),
            1e-6,
        ),
        Agreement(
            "L(1 - 1e-6) - L(1) at the design point (>= 0 at collapse) vs its first-order value -h L'(1)",
            float(one_side[0] - one_side[1]),
            -STEP * _slope_at_one(alpha, tau, m, n),
            1e-9,
        ),
        Agreement(
            "collapsing (m, n) pairs inside the guideline: audit (optimal_beta) vs closed form (alpha* > 1/n)",
            len(counterexamples),
            closed_form_count,
            0,
        ),
    ]


def _beta_by_loss(alpha: float, tau: float, m: int, n: int) -> float:
    """1 where the restricted loss does not fall towards beta = 1 from below, else its bounded scalar minimiser."""
    near_one = ssem.restricted_loss(np.array([1.0 - STEP, 1.0]), alpha, tau, m, n)
    if near_one[1] <= near_one[0]:
        return 1.0
    return float(
        minimize_scalar(
            lambda b: float(ssem.restricted_loss(b, alpha, tau, m, n)),
            bounds=(0.0, 1.0),
            method="bounded",
            options={"xatol": 1e-12},
        ).x
    )


def _slope_at_one(alpha: float, tau: float, m: int, n: int) -> float:
    """dL/dbeta at beta = 1 from the sympy derivation (`theory.ssem_symbolic`, p = 2: the slope has no p)."""
    slope = sp.lambdify(
        (symbolic.alpha, symbolic.beta, symbolic.tau, symbolic.m, symbolic.n),
        symbolic.derive("instance").slope.subs(symbolic.p, 2),
    )
    return float(slope(alpha, 1.0, tau, m, n))


def test_B7_summarised_guideline_is_not_sufficient():
    assert_claim(check)
