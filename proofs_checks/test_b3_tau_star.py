"""Claim B3 (Paper B): no collapse iff alpha > 1/n and tau < tau*(alpha) =
m / ((m-1) log[(mn - 1 - n(m-1) alpha) / (n alpha - 1)]); tau* inverts alpha*.

Route: exact (closed forms checked against each other and against the numerical optimum of the restricted loss).
"""

import numpy as np
from scipy.optimize import brentq

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from theory import ssem

SIZES = [(m, n) for m in (2, 3, 10) for n in (2, 4, 16)]


@claim(
    "B3",
    source="Paper B: alpha and tau decide collapse; tau* derived by this suite",
    statement="tau*(alpha) inverts alpha*(tau): collapse is avoided exactly when alpha > 1/n and tau < tau*(alpha); "
    "tau* = inf at alpha = 1 and no temperature avoids collapse when alpha <= 1/n.",
    routes=("exact",),
)
def check() -> Result:
    worst_inverse, failures = 0.0, []
    for m, n in SIZES:
        alphas = np.linspace(1 / n, 1, 402)[1:-1]
        taus = ssem.tau_star(alphas, m, n)
        worst_inverse = max(worst_inverse, float(np.max(np.abs(ssem.alpha_star(taus, m, n) - alphas) / alphas)))
        for factor, collapses in ((0.99, False), (1.01, True)):
            beta = ssem.optimal_beta(alphas, taus * factor, m, n)
            wrong = (beta == 1.0) != collapses
            if wrong.any():
                failures.append(
                    f"(m, n, alpha, tau) = ({m}, {n}, {alphas[wrong][0]:.6g}, {taus[wrong][0] * factor:.6g})"
                )
        if ssem.tau_star(1.0, m, n) != np.inf or ssem.tau_star(1.0 / n, m, n) != 0.0:
            failures.append(f"(m, n) = ({m}, {n}): wrong answer at alpha = 1 or alpha = 1/n")
        if (ssem.optimal_beta(1.0 / n, np.logspace(-3, 3, 50), m, n) != 1.0).any():
            failures.append(f"(m, n) = ({m}, {n}): alpha = 1/n avoids collapse at some tau")
    figures = {
        "max relative |alpha*(tau*(alpha)) - alpha|": worst_inverse,
        "disagreements at tau* x (0.99, 1.01)": len(failures),
    }
    if worst_inverse > 1e-10:
        failures.append(f"tau* does not invert alpha* (relative error {worst_inverse:.3g})")
    return verdict(figures, failures, agreements=_agreements())


def _agreements() -> list[Agreement]:
    """tau*(alpha) against the root of alpha*(tau) = alpha (brentq in log tau) at interior points."""
    agreements = []
    for m, n, alpha in ((2, 2, 0.7), (3, 4, 0.5), (10, 16, 0.2)):
        root = np.exp(
            brentq(
                lambda log_tau, m=m, n=n, alpha=alpha: ssem.alpha_star(np.exp(log_tau), m, n) - alpha,
                np.log(1e-3),
                np.log(1e3),
                xtol=1e-14,
                rtol=1e-14,
            )
        )
        agreements.append(
            Agreement(
                f"(m, n, alpha) = {(m, n, alpha)}: tau*, closed form vs brentq root",
                float(ssem.tau_star(alpha, m, n)),
                float(root),
                1e-9 * root,
            )
        )
    return agreements


def test_B3_tau_star_inverts_alpha_star():
    assert_claim(check)
