"""Claim A5 (Paper A's starting point): without prototypes (n_w = 0), class imbalance bends the
SCL geometry away from the ETF — DeltaG* of the class means to the ETF Gram is 0 for balanced classes and
grows with R; at the extreme the minority classes collapse onto one another.

Routes: free optimisation (`simulate.prototypes.minimise_cells` with n_w = 0, m = 4,
majority 20, minority round(20/R), tau = 0.5) and certificate (`simulate.certify.certify_supcon`,
the global minimum over Gram matrices, at three small class-size vectors; the free
minimiser's loss and DeltaG* must match it).
"""

import numpy as np
import torch

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import certify, metrics
from simulate import prototypes as sweep
from simulate.optimise import single_thread
from theory import simplex

TAU = 0.5
RATIOS = (1, 2, 5, 10, 20)
CERTIFIED_SIZES = ((4, 4, 4, 4), (4, 4, 2, 2), (4, 4, 1, 1))


def _certified_delta_g(sizes) -> tuple[float, float]:
    """(certified minimum, DeltaG* of its class means to the ETF Gram)."""
    certificate = certify.certify_supcon(sizes, TAU)
    gram = certify.nearest_gram(certificate.gram)
    averaging = np.stack([(certificate.labels == c) / np.sum(certificate.labels == c) for c in range(len(sizes))])
    means = averaging @ gram @ averaging.T
    return certificate.minimum, float(metrics.delta_g(torch.tensor(means), torch.tensor(simplex.etf_gram(len(sizes)))))


@claim(
    "A5",
    source="Paper A: imbalance bends the SCL geometry without prototypes",
    statement="Without prototypes, the SCL minimiser's class-mean geometry is the ETF for balanced classes and moves "
    "away from it as the imbalance R grows (DeltaG* to the ETF Gram increasing in R; m=4, tau=0.5).",
    routes=("free optimisation", "certificate"),
)
def check() -> Result:
    W = simplex.etf(4, 8)
    failures, figures, values, unsettled, agreements = [], {"R": RATIOS}, [], [], []
    for ratio in RATIOS:
        sizes = sweep.class_sizes(4, 20, ratio)
        with single_thread():
            result, _, measured = sweep.minimise_cells(sizes, W, (0,), TAU, start="clustered", grad_tol=1e-10)
        values.append(float(measured["delta_g_etf"][0]))
        gram = measured["class_mean_gram"][0]
        cosine = float(gram[2, 3] / torch.sqrt(gram[2, 2] * gram[3, 3]))
        figures[f"R={ratio} sizes {sizes}: DeltaG* to ETF, minority cosine"] = (
            float(f"{values[-1]:.5g}"),
            round(cosine, 5),
        )
        if not bool(result.converged.all()):
            unsettled.append(f"R={ratio}: free minimisation did not converge")
    if values[0] > 1e-6 or np.any(np.diff(values) <= 0):
        failures.append(f"DeltaG* to the ETF over R = {RATIOS}: {values} (expected 0 at R=1, increasing)")
    worst_loss, worst_delta = 0.0, 0.0
    for sizes in CERTIFIED_SIZES:
        minimum, certified = _certified_delta_g(sizes)
        with single_thread():
            result, _, measured = sweep.minimise_cells(sizes, W, (0,), TAU, start="clustered", grad_tol=1e-10)
        worst_loss = max(worst_loss, abs(float(result.loss[0]) - minimum) / minimum)
        worst_delta = max(worst_delta, abs(float(measured["delta_g_etf"][0]) - certified))
        if not bool(result.converged.all()):
            unsettled.append(f"certified sizes {sizes}: free minimisation did not converge")
        agreements += [
            Agreement(
                f"sizes {sizes}: min loss, free vs certificate", float(result.loss[0]), minimum, 1e-6 * abs(minimum)
            ),
            Agreement(
                f"sizes {sizes}: DeltaG* to ETF, free vs certificate",
                float(measured["delta_g_etf"][0]),
                certified,
                1e-4,
            ),
        ]
        figures[f"certified sizes {sizes}: minimum, DeltaG* to ETF"] = (round(minimum, 10), float(f"{certified:.5g}"))
    figures["certified vs free: max rel loss gap, max |DeltaG* difference|"] = (worst_loss, worst_delta)
    return verdict(figures, failures, unsettled=unsettled, agreements=agreements)


def test_A5_imbalance_bends_scl_geometry():
    assert_claim(check)
