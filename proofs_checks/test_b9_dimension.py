"""Claim B9 (Paper B): SSEM(beta) needs d >= mn - 1, and in d = mn - 2 the minimum of the
"instance" combined loss stays strictly above the SSEM minimum min_beta L(beta) — when beta* < 1.

The caveat is part of the finding: at collapse (beta* = 1) every view of class i sits on the simplex
vertex c_i, a configuration of rank m - 1 <= mn - 2, so the SSEM minimum is attained in d = mn - 2 and
the unconditional form "for d < mn - 1 the minimum is strictly above" holds only without collapse.

Route: free optimisation (`simulate.optimise`), several random starts per point, every point of one size
in one batch, in d = mn - 2 and, as a control of the optimiser's accuracy, in d = mn - 1 (where B8 shows
the minimum is the SSEM minimum). Free optimisation only bounds the low-dimensional minimum from above,
so a margin is evidence, not proof: it counts as clear when it exceeds 1000 times the control's largest
deviation from the closed form (and 1e-9).
"""

import time

import numpy as np
import torch

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import losses, optimise
from simulate.optimise import single_thread
from theory import ssem

SIZES = [(2, 2, 2), (3, 2, 2), (2, 3, 1)]
ALPHAS = (0.1, 0.6, 0.9, 1.0)  # alpha = 0.1 collapses at every tau here: the caveat's points
TAUS = (0.2, 0.5, 1.0)
FREE = dict(restarts=4, seed=1, max_iter=500, grad_tol=1e-7)
CLEAR_FACTOR = 1000.0  # a margin is clear when it exceeds this many times the control's error
CLEAR_FLOOR = 1e-9
CONTROL_RELATIVE = 1e-6  # free minimum in d = mn - 1 against the closed form (docs/verdicts.md#routes)
ATTAINED = 1e-9  # at collapse, the low-dimensional minimum must reach the SSEM minimum to this (relative)


def _relative_excess(m: int, n: int, p: int, dim: int, alphas: np.ndarray, taus: np.ndarray) -> tuple:
    """(free minimum - SSEM minimum) / |SSEM minimum| at every (alpha, tau), free embeddings in R^dim,
    and the free minima, the SSEM minima and the convergence flags."""
    labels, instances = losses.balanced_layout(m, n, p)
    alpha, tau = torch.from_numpy(alphas), torch.from_numpy(taus)

    def loss_fn(z, index):
        return losses.combined_loss(z, labels, instances, alpha[index], tau[index])

    with single_thread():
        result = optimise.minimise_with_restarts(loss_fn, (len(alphas),), m * n * p, dim, indexed=True, **FREE)
    closed = ssem.restricted_loss(ssem.optimal_beta(alphas, taus, m, n, p), alphas, taus, m, n, p)
    free = result.loss.numpy()
    return (free - closed) / np.abs(closed), free, closed, result.converged.numpy()


def _point(row) -> str:
    return f"{row[0]}, alpha = {row[1]:g}, tau = {row[2]:g}, beta* = {row[3]:.4f}"


def _measure(alphas: np.ndarray, taus: np.ndarray) -> tuple[list, dict, list]:
    """Per size and (alpha, tau): rows (size, alpha, tau, beta*, margin in d = mn - 2, control error in d = mn - 1),
    minima {(size, alpha, tau): (free in mn - 2, free in mn - 1, SSEM minimum)} and the unsettled messages."""
    rows = []  # (size, alpha, tau, beta*, margin in d = mn - 2, control error in d = mn - 1)
    minima, unsettled = {}, []  # (size, alpha, tau) -> (free in mn - 2, free in mn - 1, SSEM minimum)
    for m, n, p in SIZES:
        beta = ssem.optimal_beta(alphas, taus, m, n, p)
        low, low_free, closed, low_converged = _relative_excess(m, n, p, m * n - 2, alphas, taus)
        control, control_free, _, control_converged = _relative_excess(m, n, p, m * n - 1, alphas, taus)
        rows += [((m, n, p), *map(float, values)) for values in zip(alphas, taus, beta, low, control)]
        minima.update(
            {
                ((m, n, p), float(a), float(t)): (float(x), float(y), float(c))
                for a, t, x, y, c in zip(alphas, taus, low_free, control_free, closed)
            }
        )
        if not (low_converged.all() and control_converged.all()):
            unsettled.append(f"(m, n, p) = {(m, n, p)}: free minimisation not converged at some (alpha, tau)")
    return rows, minima, unsettled


@claim(
    "B9",
    source="Paper B: optimal embeddings lie in SSEM, which needs d >= mn - 1",
    statement='Variant "instance", d = mn - 2: without collapse (beta* < 1) the best free minimum stays above the '
    "SSEM minimum by a clear margin; at collapse (beta* = 1) the SSEM minimum is attained (rank m - 1).",
    routes=("exact", "free optimisation"),
)
def check() -> Result:
    start = time.perf_counter()
    alphas, taus = (a.ravel() for a in np.meshgrid(ALPHAS, TAUS, indexing="ij"))
    rows, minima, unsettled = _measure(alphas, taus)
    spread = [r for r in rows if r[3] < 1.0]
    collapsed = [r for r in rows if r[3] == 1.0]
    control_error = max(abs(r[5]) for r in rows)
    threshold = max(CLEAR_FACTOR * control_error, CLEAR_FLOOR)
    smallest = min(spread, key=lambda r: r[4])
    largest_at_collapse = max(collapsed, key=lambda r: abs(r[4]))
    figures = {
        "points with beta* < 1": len(spread),
        "points with beta* = 1": len(collapsed),
        "control: max rel |free - SSEM min|, d = mn - 1": control_error,
        "clear-margin threshold": threshold,
        "min rel margin, d = mn - 2, beta* < 1": smallest[4],
        "smallest margin at (m, n, p), alpha, tau, beta*": _point(smallest),
        "median rel margin, beta* < 1": float(np.median([r[4] for r in spread])),
        "max rel margin, beta* < 1": max(r[4] for r in spread),
        "max rel |margin| at beta* = 1": abs(largest_at_collapse[4]),
        "seconds": round(time.perf_counter() - start, 1),
    }
    failures = []
    if smallest[4] <= threshold:
        failures.append(f"margin {smallest[4]:.3g} not clear (threshold {threshold:.3g}) at {_point(smallest)}")
    if abs(largest_at_collapse[4]) > ATTAINED:
        failures.append(
            f"at collapse the minimum in d = mn - 2 misses the SSEM minimum by "
            f"{largest_at_collapse[4]:.3g} at {_point(largest_at_collapse)}"
        )
    # Two-sided: the control (d = mn - 1, where B8 certifies the SSEM minimum) at its worst point, and the
    # low-dimensional minimum at collapse, both against the closed form.
    worst_control = max(rows, key=lambda r: abs(r[5]))
    _, control_free, control_closed = minima[worst_control[:3]]
    low_free, _, collapse_closed = minima[largest_at_collapse[:3]]
    agreements = [
        Agreement(
            f"control d = mn - 1, free vs SSEM minimum at {_point(worst_control)}",
            control_free,
            control_closed,
            CONTROL_RELATIVE * abs(control_closed),
        ),
        Agreement(
            f"d = mn - 2 at collapse, free vs SSEM minimum at {_point(largest_at_collapse)}",
            low_free,
            collapse_closed,
            ATTAINED * abs(collapse_closed),
        ),
    ]
    return verdict(figures, failures, unsettled=unsettled, agreements=agreements)


def test_B9_below_mn_minus_1_dimensions_the_minimum_is_higher():
    assert_claim(check)
