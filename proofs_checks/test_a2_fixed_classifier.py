"""Claim A2 (Paper A): for an ETF classifier W and unit h, CE is minimised exactly at h_i = w_{y_i},
whatever the class sizes; for non-ETF W the minimiser is in general not w_y.

Why (theory.prototypes, result 4): by Jensen and Cauchy-Schwarz CE(h) >= log(1 + (m-1)
exp(-|w_y - wbar_y|/tau)), with equality iff h is the unit direction of w_y - wbar_y
and the other logits are equal; for an ETF that direction is w_y and the bound is
log(1 + (m-1) exp(-m/((m-1) tau))). Samples do not interact in mean CE, so class sizes
do not matter. For an orthonormal frame the minimiser is the centred direction
(<h, w_y> = sqrt((m-1)/m)); for the minority-spread family no closed form (numerical).

Routes: exact (sympy: the Jensen bound decreases in t = <h, w_y> and is attained at h = w_y;
the orthogonal minimiser by Lagrange) and free optimisation (`simulate.optimise` on
`simulate.losses.fixed_classifier_ce` for imbalanced class sizes, against the closed forms
and against `theory.prototypes.limit_minimisers`).
"""

import math

import numpy as np
import sympy as sp
import torch

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import optimise
from simulate.losses import fixed_classifier_ce
from simulate.optimise import single_thread
from theory import prototypes, prototypes_symbolic, simplex

TAUS = (0.2, 0.5, 2.0)


def _free_minimiser(sizes, W, taus):
    """Minimise mean CE over free unit h for each tau (one batch); returns z (B, N, d), loss (B,), labels."""
    labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    classifier, tau = torch.tensor(W), torch.tensor(taus, dtype=torch.float64)
    x0 = optimise.random_start((len(taus),), len(labels), W.shape[1], seed=0)
    with single_thread():
        result = optimise.minimise_on_sphere(
            lambda z: fixed_classifier_ce(z, labels, classifier, tau), x0, grad_tol=1e-11
        )
    return result, labels


def _symbolic() -> tuple[list[str], dict]:
    failures = []
    etf = prototypes_symbolic.derive_etf_fixed_classifier()
    symbols = {s.name: s for s in etf.bound.free_symbols}
    slope = sp.lambdify((symbols["m"], symbols["tau"], symbols["t"]), etf.slope)
    # A grid where the exponentials neither overflow nor underflow (the sign is what is checked).
    grid = [slope(m_, tau_, t_) for m_ in (2, 3, 10) for tau_ in (0.2, 1.0, 20.0) for t_ in np.linspace(-1, 1, 21)]
    if etf.at_prototype_residual != 0:
        failures.append("CE(w_y) for the ETF is not the Jensen bound at t = 1")
    if max(grid) >= 0:
        failures.append(f"the Jensen bound is not decreasing in t (max slope {max(grid):.3g})")
    orthogonal = prototypes_symbolic.derive_orthogonal_minimiser()
    return failures, {
        "sympy: d bound/dt max over grid (< 0)": float(max(grid)),
        "sympy: orthogonal minimiser <h, w_y>": str(orthogonal.label_cosine),
    }


def _etf_case(m, sizes, figures, failures, settled) -> list:
    """ETF prototypes in R^(m+2): the free minimiser against w_y and its CE against the closed form, over TAUS.
    Adds to `figures` and `failures`; returns the agreements."""
    W = simplex.etf(m, m + 2, seed=m)
    result, labels = _free_minimiser(sizes, W, TAUS)
    settled(result, f"ETF m={m}")
    distance = float((result.z - torch.tensor(W)[labels]).norm(dim=-1).max())
    closed = np.array([prototypes.etf_ce_minimum(m, tau) for tau in TAUS])
    relative = float(np.max(np.abs(result.loss.numpy() - closed) / closed))
    figures[f"ETF m={m} sizes {sizes[0]}:{sizes[-1]}: max |h_i - w_y| "] = distance
    figures[f"ETF m={m}: max rel |min CE - closed form|"] = relative
    if distance > 1e-5 or relative > 1e-9 or not bool(result.converged.all()):
        failures.append(
            f"ETF m={m}: free minimiser at distance {distance:.3g} from w_y, "
            f"loss rel. error {relative:.3g}, "
            f"converged {result.converged.tolist()}"
        )
    return [
        Agreement(f"ETF m={m}, tau={tau}: free min CE vs closed form", float(free), float(exact), 1e-9 * float(exact))
        for tau, free, exact in zip(TAUS, result.loss, closed)
    ]


@claim(
    "A2",
    source="Paper A: CE with a fixed classifier, the many-prototype limit",
    statement="For an ETF classifier and unit h, mean CE is minimised exactly at h_i = w_{y_i} for any class sizes "
    "(minimum log(1 + (m-1) exp(-m/((m-1) tau)))); for an orthonormal frame the minimiser is the centred direction "
    "(<h, w_y> = sqrt((m-1)/m)), and for the minority-spread geometry it is not w_y either.",
    routes=("exact", "free optimisation"),
)
def check() -> Result:
    failures, figures = _symbolic()
    agreements, unsettled = [], []

    def settled(result, where):
        if not bool(result.converged.all()):
            unsettled.append(f"{where}: free minimisation not converged ({result.converged.tolist()})")

    for m, sizes in ((4, (30, 30, 3, 1)), (10, (20,) * 5 + (2,) * 5)):
        agreements += _etf_case(m, sizes, figures, failures, settled)
    m, sizes = 4, (8, 8, 2, 1)
    orthogonal = simplex.orthogonal_frame(m, 6)
    result, labels = _free_minimiser(sizes, orthogonal, TAUS)
    settled(result, "orthogonal")
    cosine = (result.z * torch.tensor(orthogonal)[labels]).sum(-1)
    expected = math.sqrt((m - 1) / m)
    agreements += [
        Agreement(f"orthogonal m=4: {side} <h_i, w_y> (free) vs sqrt((m-1)/m) (Lagrange)", float(value), expected, 1e-6)
        for side, value in (("min", cosine.min()), ("max", cosine.max()))
    ]
    centred = torch.tensor(prototypes.jensen_candidate(orthogonal))[labels]
    figures["orthogonal m=4: <h_i, w_y> range"] = (float(cosine.min()), float(cosine.max()))
    figures["orthogonal: max |h_i - centred direction|"] = float((result.z - centred).norm(dim=-1).max())
    if float((cosine - expected).abs().max()) > 1e-6:
        failures.append(
            f"orthogonal: <h, w_y> = {float(cosine.min()):.8f}..{float(cosine.max()):.8f}, expected {expected:.8f}"
        )
    spread = simplex.minority_spread(m, 6, 0.5)
    result, labels = _free_minimiser(sizes, spread, (0.5,))
    settled(result, "minority-spread")
    theory = prototypes.limit_minimisers(spread, 0.5)[labels.numpy()]
    agreement = float(np.abs(result.z[0].numpy() - theory).max())
    cosine = (result.z[0] * torch.tensor(spread)[labels]).sum(-1)
    figures["minority-spread 0.5, tau=0.5: max |free - theory minimiser|"] = agreement
    theory_ce = prototypes.mean_cross_entropy(theory, labels.numpy(), spread, 0.5)
    agreements.append(
        Agreement(
            "minority-spread: free min CE vs CE at the theory minimiser (scipy BFGS)",
            float(result.loss[0]),
            theory_ce,
            1e-9 * theory_ce,
        )
    )
    figures["minority-spread: <h_i, w_y> range"] = (float(cosine.min()), float(cosine.max()))
    if agreement > 1e-5 or float(cosine.max()) > 1 - 1e-3:
        failures.append(
            f"minority-spread: free vs theory minimiser differ by {agreement:.3g}, "
            f"max <h, w_y> {float(cosine.max()):.6f}"
        )
    return verdict(figures, failures, unsettled=unsettled, agreements=agreements)


def test_A2_fixed_classifier_minimiser():
    assert_claim(check)
