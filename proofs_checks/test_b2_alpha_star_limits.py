"""Claim B2 (Paper B): alpha*(tau) increases with tau, tends to 1/n as tau -> 0 and to 1 as
tau -> inf; and it is the collapse boundary of the numerically minimised restricted loss
(beta* = 1 exactly when alpha <= alpha*).

Routes: exact (closed form) against a numerical minimisation of the restricted loss (theory.ssem.optimal_beta).
"""

import numpy as np

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from theory import ssem

SIZES = [(m, n) for m in (2, 3, 5, 10) for n in (2, 4, 8)]
TAUS = np.logspace(-3, 3, 601)


def _bisected_boundary(tau: float, m: int, n: int) -> float:
    """The largest alpha with beta* = 1, by bisection on the numeric minimiser of the restricted loss."""
    low, high = 0.0, 1.0  # beta*(0) = 1 and beta*(1) < 1 at every finite tau
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if ssem.optimal_beta(middle, tau, m, n) == 1.0 else (low, middle)
    return low


def _boundary_mismatches(m, n):
    """Grid points (alpha, tau) away from alpha* by 1e-9 where the numeric optimum disagrees about collapse."""
    threshold = ssem.alpha_star(TAUS, m, n)
    mismatches = []
    for offset in (-1e-6, 1e-6):
        alphas = np.clip(threshold + offset, 0, 1)
        beta = ssem.optimal_beta(alphas, TAUS, m, n)
        predicted = alphas <= threshold
        wrong = (beta == 1.0) != predicted
        mismatches += [(float(a), float(t)) for a, t in zip(alphas[wrong], TAUS[wrong])]
    return mismatches


@claim(
    "B2",
    source="Paper B: alpha and tau decide collapse; threshold derived by this suite",
    statement="alpha*(tau) increases with tau from 1/n (tau -> 0) to 1 (tau -> inf), and separates collapse "
    "(beta* = 1) from no collapse.",
    routes=("exact",),
)
def check() -> Result:
    worst_small = max(abs(ssem.alpha_star(1e-3, m, n) - 1 / n) for m, n in SIZES)
    worst_large = max(abs(ssem.alpha_star(1e6, m, n) - 1) for m, n in SIZES)
    steps = [np.diff(ssem.alpha_star(TAUS, m, n)) for m, n in SIZES]
    # Below tau ~ 0.1, r = exp(-m/((m-1) tau)) < 1e-9 and the change of alpha* over one grid step falls
    # below float64 resolution (alpha* = 1/n to 16 digits near tau = 0.02): there the
    # grid can only show it does not decrease; above, it must rise strictly.
    resolvable = TAUS[1:] >= 0.1
    min_step = min(float(step[resolvable].min()) for step in steps)
    never_decreases = all((step >= 0).all() for step in steps)
    mismatches = {(m, n): _boundary_mismatches(m, n) for m, n in SIZES}
    figures = {
        "max |alpha*(1e-3) - 1/n|": float(worst_small),
        "max |alpha*(1e6) - 1|": float(worst_large),
        "min increment over a log tau grid, tau >= 0.1": min_step,
        "non-decreasing over tau in [1e-3, 1e3]": never_decreases,
        "boundary mismatches (alpha* +- 1e-6)": sum(map(len, mismatches.values())),
    }
    failures = []
    if worst_small > 1e-12:
        failures.append("alpha*(tau) does not reach 1/n at small tau")
    if worst_large > 1e-5:
        failures.append("alpha*(tau) does not reach 1 at large tau")
    if min_step <= 0 or not never_decreases:
        failures.append("alpha* is not increasing in tau")
    for size, points in mismatches.items():
        if points:
            failures.append(f"(m, n) = {size}: optimum disagrees with alpha* at (alpha, tau) = {points[0]}")
    agreements = [
        Agreement(
            f"(m, n) = {(m, n)}, tau = {tau}: collapse boundary, bisected optimum vs alpha*",
            _bisected_boundary(tau, m, n),
            float(ssem.alpha_star(tau, m, n)),
            1e-9,
        )
        for m, n in ((2, 2), (3, 4), (10, 8))
        for tau in (0.1, 1.0, 10.0)
    ]
    return verdict(figures, failures, agreements=agreements)


def test_B2_alpha_star_limits_monotone_and_boundary():
    assert_claim(check)
