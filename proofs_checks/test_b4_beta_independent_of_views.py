"""Claim B4 (Paper B): for the "instance" variant the SSEM minimiser beta* does not depend
on the number of views p (for "supcon" it does).

Routes: exact — dL/dbeta has no p in it (sympy), and beta* computed numerically for p = 1..6 agrees.
"""

import numpy as np
import sympy as sp
from scipy.optimize import minimize_scalar

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from theory import ssem
from theory.ssem_symbolic import derive, p

ALPHAS, TAUS = np.meshgrid(np.linspace(0, 1, 41), np.logspace(-2, 1, 31))


@claim(
    "B4",
    source="Paper B: SSEM restricted loss, derived by this suite",
    statement='For the "instance" variant, beta* does not depend on the number of views p.',
    routes=("exact",),
)
def check() -> Result:
    slope_has_p = p in sp.simplify(sp.expand_log(derive("instance").slope, force=True)).free_symbols
    reference = ssem.optimal_beta(ALPHAS, TAUS, 4, 3, n_views=1)
    spread = max(float(np.abs(ssem.optimal_beta(ALPHAS, TAUS, 4, 3, n_views=k) - reference).max()) for k in range(2, 7))
    supcon_spread = float(
        np.abs(
            ssem.optimal_beta(ALPHAS, TAUS, 4, 3, 2, "supcon") - ssem.optimal_beta(ALPHAS, TAUS, 4, 3, 6, "supcon")
        ).max()
    )
    figures = {
        "p appears in dL/dbeta (instance)": slope_has_p,
        "max |beta*(p) - beta*(1)|, p = 2..6, instance": spread,
        "max |beta*(2) - beta*(6)|, supcon (for contrast)": supcon_spread,
    }
    failures = [f"beta* moves by {spread:.3g} with p (m=4, n=3)"] if slope_has_p or spread > 1e-12 else []
    agreements = [
        Agreement(
            f"alpha = {a}, tau = {t}, p = {k}: beta*, bisection vs bounded scalar minimisation",
            float(ssem.optimal_beta(a, t, 4, 3, k)),
            _brute_force_beta(a, t, k),
            1e-6,
        )
        for a, t in ((0.6, 0.5), (0.9, 0.2))
        for k in (1, 3, 6)
    ]
    return verdict(figures, failures, agreements=agreements)


def _brute_force_beta(alpha: float, tau: float, n_views: int) -> float:
    """argmin of the restricted loss (m=4, n=3) over [0, 1]: bounded Brent search."""
    return float(
        minimize_scalar(
            lambda b: float(ssem.restricted_loss(b, alpha, tau, 4, 3, n_views)),
            bounds=(0.0, 1.0),
            method="bounded",
            options={"xatol": 1e-12},
        ).x
    )


def test_B4_beta_star_independent_of_views():
    assert_claim(check)
