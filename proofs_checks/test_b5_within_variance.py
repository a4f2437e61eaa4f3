"""Claim B5 (Paper B): at the optimum, for small tau and alpha > 1/n,
W* ~ ((n-1)/n) tau log((n-1) alpha/(1 - alpha)); at alpha = 1, W* = m(n-1)/(mn-1) for every tau.

Routes: exact — the alpha = 1 optimum symbolically (s_w = s_b there), and the numerical optimum of the
restricted loss against both formulas.
"""

import numpy as np
import sympy as sp

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from theory import ssem
from theory.ssem_symbolic import alpha, beta, derive, m, n

SIZES = [(m_, n_) for m_ in (2, 3, 10) for n_ in (2, 4, 16)]


@claim(
    "B5",
    source="Paper B: within-class variance of SSEM, derived by this suite",
    statement="For small tau and alpha > 1/n, W* ~ ((n-1)/n) tau log((n-1) alpha/(1-alpha)); at alpha = 1, "
    "W* = m(n-1)/(mn-1).",
    routes=("exact",),
)
def check() -> Result:
    at_one = sp.simplify(derive("instance").slope.subs({alpha: 1, beta: (m - 1) / (m * n - 1)}))
    worst_at_one, worst_ratio = 0.0, 0.0
    for m_, n_ in SIZES:
        taus = np.logspace(-3, 2, 30)
        within_at_one = ssem.optimal_variances(1.0, taus, m_, n_)[0]
        worst_at_one = max(worst_at_one, float(np.abs(within_at_one - m_ * (n_ - 1) / (m_ * n_ - 1)).max()))
        alphas = np.linspace(1 / n_, 1, 12)[1:-1]
        within = ssem.optimal_variances(alphas, 1e-3, m_, n_)[0]
        worst_ratio = max(worst_ratio, float(np.abs(within / ssem.small_tau_within(alphas, 1e-3, n_) - 1).max()))
    figures = {
        "dL/dbeta at alpha=1, beta=(m-1)/(mn-1)": str(at_one),
        "max |W*(alpha=1) - m(n-1)/(mn-1)|": worst_at_one,
        "max |W* / asymptote - 1| at tau = 1e-3": worst_ratio,
    }
    failures = []
    if at_one != 0 or worst_at_one > 1e-12:
        failures.append(f"alpha = 1 optimum differs (error {worst_at_one:.3g})")
    if worst_ratio > 0.05:
        failures.append(f"small-tau asymptote off by {worst_ratio:.3g} relative at tau = 1e-3")
    agreements = [
        Agreement(
            f"(m, n) = {(m_, n_)}, alpha = 1, tau = {t}: W*, numeric optimum vs m(n-1)/(mn-1)",
            float(ssem.optimal_variances(1.0, t, m_, n_)[0]),
            m_ * (n_ - 1) / (m_ * n_ - 1),
            1e-12,
        )
        for m_, n_ in ((2, 2), (10, 16))
        for t in (1e-2, 1e2)
    ]
    agreements += [
        Agreement(
            f"(m, n) = {(m_, n_)}, alpha = {a}, tau = 1e-3: W*, numeric optimum vs asymptote",
            float(ssem.optimal_variances(a, 1e-3, m_, n_)[0]),
            float(ssem.small_tau_within(a, 1e-3, n_)),
            1e-6 * float(ssem.small_tau_within(a, 1e-3, n_)),
        )
        for m_, n_, a in ((3, 4, 0.5), (10, 16, 0.3))
    ]
    return verdict(figures, failures, agreements=agreements)


def test_B5_within_variance_asymptote_and_alpha_one():
    assert_claim(check)
