"""Claim A1 (Paper A): with many prototype copies, prototype SCL becomes CE with a fixed classifier.

anchors="data": mean loss - log n_w -> mean CE with classifier W = the prototypes, with
|gap| <= C / n_w for every n_w >= 1 (C from `theory.prototypes.gap_bound_constant`).
anchors="all": the limit is Kbar = mean_c K_c (the prototypes' own CE) instead, so the
term Kbar - mean CE survives; the gap to Kbar is also O(1/n_w).

Route: exact — sympy (each anchor's loss built from pair counts with multiplicities,
expanded in 1/n_w; the stated decompositions, limits and first-order terms must match),
checked numerically on the project's loss (`simulate.losses.prototype_supcon_loss` in
float64, random unit embeddings, n_w from 1 to 1e5): n_w * gap stays within the proven
bound and tends to the derived first-order coefficient.
"""

import numpy as np
import torch

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate.losses import prototype_supcon_loss
from theory import prototypes, prototypes_symbolic, simplex

N_W = np.unique(np.round(np.logspace(0, 5, 26)).astype(int))
FIRST_ORDER_TOLERANCE = 1e-3  # relative, on n_w * gap at n_w = 1e5 against c1 (the O(1/n_w) remainder is ~10x smaller)


def _unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cases():
    """(name, z, labels, W, tau): random unit embeddings, imbalanced sizes, ETF and random prototypes."""
    rng = np.random.default_rng(0)
    cases = []
    for name, sizes, W, tau in (
        ("m=4 ETF, sizes 6,6,2,1, tau=0.5", (6, 6, 2, 1), simplex.etf(4, 6, seed=1), 0.5),
        ("m=4 random W, sizes 6,6,2,1, tau=1", (6, 6, 2, 1), _unit_rows(rng, 4, 6), 1.0),
        ("m=10 ETF, sizes 10x5,1x5, tau=0.5", (10,) * 5 + (1,) * 5, simplex.etf(10, 12, seed=2), 0.5),
        ("m=3 ETF, sizes 3,2,0 (class 2 absent), tau=0.2", (3, 2, 0), simplex.etf(3, 4, seed=3), 0.2),
    ):
        labels = np.repeat(np.arange(len(sizes)), sizes)
        cases.append((name, _unit_rows(rng, len(labels), W.shape[1]), labels, W, tau))
    return cases


def _loss(z, labels, W, tau, anchors, n_proto) -> float:
    return float(
        prototype_supcon_loss(torch.tensor(z), torch.tensor(labels), torch.tensor(W), int(n_proto), tau, anchors)
    )


def _scaled_gaps(z, labels, W, tau, anchors):
    """n_w * (loss - log n_w - limit) for every n_w in N_W, with the loss from simulate.losses."""
    zt, yt, wt = torch.tensor(z), torch.tensor(labels), torch.tensor(W)
    losses = np.array([float(prototype_supcon_loss(zt, yt, wt, int(n), tau, anchors)) for n in N_W])
    limit = prototypes.limit_value(z, labels, W, tau, anchors)
    return N_W * (losses - np.log(N_W) - limit)


def _symbolic_residuals() -> dict:
    data, proto = prototypes_symbolic.derive_data_anchor(3), prototypes_symbolic.derive_prototype_anchor(3)
    mean = prototypes_symbolic.derive_all_anchor_mean()
    return {
        "data anchor: limit of gap": data.limit,
        "data anchor: first order - stated": data.first_order_residual,
        "data anchor: gap - stated decomposition": data.decomposition_residual,
        "prototype anchor: limit of gap": proto.limit,
        "prototype anchor: first order - stated": proto.first_order_residual,
        "prototype anchor: gap - stated decomposition": proto.decomposition_residual,
        "all-anchor mean: limit - Kbar": mean.limit_residual,
        "all-anchor mean: first order - stated": mean.first_order_residual,
    }


@claim(
    "A1",
    source="Paper A: with many prototypes SCL becomes CE with a fixed classifier",
    statement="Prototype SCL with anchors='data': mean loss - log n_w -> mean CE with classifier W, "
    "|error| <= C/n_w; with anchors='all' the limit is Kbar = mean_c CE(w_c; W), so Kbar - mean CE survives "
    "(closed form), error O(1/n_w).",
    routes=("exact",),
)
def check() -> Result:
    failures, figures = [], {}
    symbolic = _symbolic_residuals()
    wrong = [name for name, value in symbolic.items() if value != 0]
    if wrong:
        failures.append(f"sympy residuals not zero: {wrong}")
    figures["sympy residuals (8, all must be 0)"] = len(symbolic) - len(wrong)
    worst_bound_use, worst_tail, first_order, extras, agreements = 0.0, 0.0, {}, {}, []
    for name, z, labels, W, tau in _cases():
        bounds = {}
        for anchors in ("data", "all"):
            scaled = _scaled_gaps(z, labels, W, tau, anchors)
            bound = bounds[anchors] = prototypes.gap_bound_constant(z, labels, W, tau, anchors)
            c1 = prototypes.first_order_coefficient(z, labels, W, tau, anchors)
            # The anchors='all' bound is proven for n_w >= 2 when a class is absent from the batch.
            valid = N_W >= (2 if anchors == "all" and len(np.unique(labels)) < W.shape[0] else 1)
            use = float(np.max(np.abs(scaled[valid])) / bound)
            # O(1/n_w) second-order term: the distance to c1 shrinks ~100x from n_w = 1e3 to 1e5.
            tail = float(abs(scaled[-1] - c1) / max(abs(scaled[N_W == 1000][0] - c1), 1e-300))
            worst_bound_use, worst_tail = max(worst_bound_use, use), max(worst_tail, tail)
            if use > 1.0:
                failures.append(
                    f"{name}, {anchors}: max n_w |gap| = {use * bound:.4g} exceeds the bound C = {bound:.4g}"
                )
            if tail > 0.05:
                failures.append(
                    f"{name}, {anchors}: n_w gap does not approach c1 = {c1:.6g} like 1/n_w (ratio {tail:.3g})"
                )
            if anchors == "all":
                extra = prototypes.extra_term(z, labels, W, tau)
                extras[name] = round(extra, 6)
                if abs(extra) < 1e-3:
                    failures.append(f"{name}: the anchors='all' extra term vanishes ({extra:.3g})")
            first_order[f"{name}, {anchors}"] = round(c1, 6)
            # Two-sided: the loss (simulate) at n_w = 1e5 against the theory's 1/n_w coefficient; the
            # O(1/n_w^2) remainder leaves ~1e-4 relative there, a wrong c1 or loss moves it by O(1).
            agreements.append(
                Agreement(
                    f"{name}, {anchors}: n_w gap at n_w=1e5 vs c1 (theory)",
                    float(scaled[-1]),
                    c1,
                    FIRST_ORDER_TOLERANCE * max(1.0, abs(c1)),
                )
            )
        # The anchors='all' surplus measured on the loss against the closed form, within the proven bounds.
        surplus = _loss(z, labels, W, tau, "all", N_W[-1]) - _loss(z, labels, W, tau, "data", N_W[-1])
        agreements.append(
            Agreement(
                f"{name}: loss(all) - loss(data) at n_w=1e5 vs Kbar - mean CE (theory)",
                surplus,
                prototypes.extra_term(z, labels, W, tau),
                (bounds["data"] + bounds["all"]) / N_W[-1],
            )
        )
    figures["max over cases of max_n n_w|gap| / C (<= 1)"] = worst_bound_use
    figures["max over cases of |n gap - c1| at 1e5 / at 1e3 (~0.01)"] = worst_tail
    figures["n_w range"] = f"{N_W[0]}..{N_W[-1]} ({len(N_W)} values)"
    figures["anchors='all' extra term Kbar - mean CE by case"] = extras
    figures["first-order coefficient c1 by case"] = first_order
    return verdict(figures, failures, agreements=agreements)


def test_A1_prototype_limit_is_fixed_classifier_ce():
    assert_claim(check)
