"""Claim A3 (Paper A): with ETF prototypes, the DeltaG* of the learnt class means to the prototype Gram
decreases as n_w grows, towards 0, for imbalance R in {1, 10, 100}.

Route: free optimisation (`simulate.prototypes.minimise_cells`: every n_w of one R in one
batched L-BFGS over free unit embeddings, float64, Riemannian gradient <= 1e-9), with the
theory's n_w -> infinity prediction (`theory.prototypes.limit_gram`: for an ETF the limit
class means are the prototypes, DeltaG* = 0). m = 4, tau = 0.5, full batch, anchors="data";
class sizes (majority, minority): R = 1: 10/10, R = 10: 10/1, R = 100: 100/1.
"""

import numpy as np

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import prototypes as sweep
from simulate.certify import MAX_VECTORS
from simulate.optimise import single_thread
from theory import simplex

N_PROTO = (0, 1, 10, 100, 1000, 10000)
SIZES = {1: (10, 10, 10, 10), 10: (10, 10, 1, 1), 100: (100, 100, 1, 1)}
TAU = 0.5
GRAD_TOL = 1e-9
MONOTONE_SLACK = 1e-6  # DeltaG* values at R = 1 are ~1e-9 noise around 0
CERTIFIED_RATIO, CERTIFIED_N_PROTO = 10, (0, 100, 10000)  # R = 10 (26 vectors) is certified at these n_w
LOSS_RELATIVE = 1e-6  # free minimum against the certified one (docs/verdicts.md#routes)
DELTA_G_RESOLUTION = 1e-3  # DeltaG* of the free and the certified minimiser (solver accuracy)


def delta_g_by_n_proto_and_loss(sizes, W, n_protos, tau, seed=0, anchors="data"):
    """Free-optimised DeltaG* (B,), within-class variance (B,), convergence flags (B,) and minimum loss (B,)."""
    with single_thread():
        result, _, measured = sweep.minimise_cells(
            sizes, W, n_protos, tau, anchors, start="clustered", seed=seed, grad_tol=GRAD_TOL
        )
    return measured["delta_g"].numpy(), measured["within"].numpy(), result.converged.numpy(), result.loss.numpy()


def delta_g_by_n_proto(sizes, W, n_protos, tau, seed=0, anchors="data"):
    """Free-optimised DeltaG* (B,), within-class variance (B,) and convergence flags (B,) for one class-size vector."""
    return delta_g_by_n_proto_and_loss(sizes, W, n_protos, tau, seed, anchors)[:3]


def _certified_agreements(sizes, W, values, losses, unsettled) -> list[Agreement]:
    """The free minimiser's loss and DeltaG* against the certified global minimiser at CERTIFIED_N_PROTO."""
    agreements = []
    for n_proto in CERTIFIED_N_PROTO:
        k = N_PROTO.index(n_proto)
        cell = sweep.certified_cell(sizes, W @ W.T, n_proto, TAU, "data", MAX_VECTORS)
        if not cell["optimal"]:
            unsettled.append(f"certificate at sizes {sizes}, n_w = {n_proto} not optimal ({cell['status']})")
        agreements += [
            Agreement(
                f"sizes {sizes}, n_w={n_proto}: min loss, free vs certificate",
                float(losses[k]),
                cell["minimum"],
                LOSS_RELATIVE * abs(cell["minimum"]),
            ),
            Agreement(
                f"sizes {sizes}, n_w={n_proto}: DeltaG*, free vs certificate",
                float(values[k]),
                cell["delta_g"],
                DELTA_G_RESOLUTION,
            ),
        ]
    return agreements


@claim(
    "A3",
    source="Paper A: prototypes in every batch steer the learnt geometry",
    statement="With ETF prototypes, DeltaG* of the free-embedding minimiser to the prototype Gram is non-increasing "
    "in n_w and tends to 0 (like 1/n_w) for imbalance R = 1, 10, 100.",
    routes=("exact", "free optimisation"),
)
def check() -> Result:
    W = simplex.etf(4, 8)
    _, limit = sweep.theory_limit(W, TAU)
    failures, figures = [], {"theory: DeltaG* as n_w -> inf": limit, "n_w": N_PROTO}
    unsettled, agreements = (
        [],
        [Agreement("theory DeltaG* as n_w -> inf (limit_gram) vs 0 (h = w_y for the ETF)", limit, 0.0, 1e-8)],
    )
    for ratio, sizes in SIZES.items():
        values, within, converged, losses = delta_g_by_n_proto_and_loss(sizes, W, N_PROTO, TAU)
        figures[f"R={ratio} DeltaG*"] = [float(f"{v:.4g}") for v in values]
        figures[f"R={ratio} max within-class variance"] = float(within.max())
        if not converged.all():
            unsettled.append(f"R={ratio}: not converged for n_w = {[n for n, c in zip(N_PROTO, converged) if not c]}")
        if ratio == CERTIFIED_RATIO:
            agreements += _certified_agreements(sizes, W, values, losses, unsettled)
        if np.any(np.diff(values) > MONOTONE_SLACK):
            failures.append(f"R={ratio}: DeltaG* increases somewhere along n_w = {N_PROTO}: {values.tolist()}")
        if values[-1] > max(1e-2 * values[0], 1e-6):
            failures.append(
                f"R={ratio}: DeltaG* at n_w = {N_PROTO[-1]} is {values[-1]:.3g}, not near 0 (n_w = 0: {values[0]:.3g})"
            )
        if values[0] > 1e-3:  # imbalanced: the last decade should show the 1/n_w rate
            rate = values[-2] / values[-1]
            figures[f"R={ratio} DeltaG*(1e3)/DeltaG*(1e4)"] = float(rate)
            if rate < 5:
                failures.append(
                    f"R={ratio}: DeltaG* falls only {rate:.3g}x from n_w = 1e3 to 1e4 (1/n_w would give 10x)"
                )
    return verdict(figures, failures, unsettled=unsettled, agreements=agreements)


def test_A3_etf_prototypes_steer_geometry():
    assert_claim(check)
