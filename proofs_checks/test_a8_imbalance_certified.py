"""Claim A8 (Paper A's starting point): without prototypes, the global SCL minimiser collapses
every class to a point, and imbalance bends its class-mean geometry away from the ETF — DeltaG* to the
ETF Gram is 0 for balanced classes and grows with the imbalance ratio R.

Class sizes: the majority classes (the first ceil(m/2)) hold 10 samples, the minority classes 10/R,
R in {1, 2, 5, 10}; m in {3, 4}; tau in {0.2, 1}. (A5 checks m = 4 at tau = 0.5 with free optimisation;
this claim adds the certificate, the within-class collapse, m = 3 and a smaller temperature.)

Routes:
* certificate (`simulate.certify.certify_supcon`): the global minimum over Gram matrices, its embeddings
  measured with `simulate.metrics` (within-class variance W, class-mean Gram, DeltaG* to the ETF Gram);
* free optimisation (`simulate.optimise`, d = N, both temperatures of one class-size vector in one batch):
  must reach the certified minimum (1e-6 relative) and the same DeltaG* (1e-3);
* exchangeable certificate (`simulate.exchangeable.certify_supcon`, the program reduced by symmetry):
  the same minimum (1e-7 relative) and DeltaG* (1e-3) as the full certificate.
Collapse is certified, not just observed: the configuration with every sample moved to its class's
normalised mean (W = 0) must attain the certified minimum to 1e-6 relative. The loss is strictly convex
in the Gram matrix, so the minimiser is unique and is that collapsed configuration.

Every cell's loss and DeltaG* are pinned across the two routes (a broken pin fails the test); when a
certificate is not optimal or a free minimisation has not converged the claim is "inconclusive".
"""

import time

import numpy as np
import torch

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import exchangeable, losses, metrics, optimise
from simulate.certify import certify_supcon
from simulate.optimise import single_thread
from theory import simplex

CLASS_COUNTS = (3, 4)
MAJORITY = 10
RATIOS = (1, 2, 5, 10)
TAUS = (0.2, 1.0)
RELATIVE = 1e-6  # loss agreement between routes, and the collapsed configuration against the certificate
DELTA_G_RESOLUTION = 1e-3  # routes must agree on DeltaG* to this; steps in R must exceed it; ETF at R = 1 within it
FREE = dict(restarts=2, seed=0, max_iter=1000, grad_tol=1e-9)


def class_sizes(m: int, ratio: int) -> tuple[int, ...]:
    sizes = np.full(m, MAJORITY // ratio)
    sizes[simplex.majority_classes(m)] = MAJORITY
    return tuple(int(s) for s in sizes)


def _geometry(z: torch.Tensor, labels: torch.Tensor, m: int) -> tuple[float, float, torch.Tensor]:
    """(W, DeltaG* to the ETF Gram, class-mean Gram) of embeddings z (N, d) via simulate.metrics."""
    gram = metrics.class_mean_gram(z, labels, m)
    within = float(metrics.variances(z, labels, m).within)
    return within, float(metrics.delta_g(gram, simplex.etf_gram(m))), gram


def _collapsed(z: torch.Tensor, labels: torch.Tensor, m: int) -> torch.Tensor:
    """Every sample replaced by its class's normalised mean."""
    means = metrics.class_means(z, labels, m)
    return (means / means.norm(dim=-1, keepdim=True))[labels]


def _cells(m: int, ratio: int) -> list[dict]:
    """One record per temperature for one class-size vector: both routes and the collapse test."""
    sizes = class_sizes(m, ratio)
    labels = torch.repeat_interleave(torch.arange(m), torch.tensor(sizes))
    taus = torch.tensor(TAUS, dtype=torch.float64)
    with single_thread():
        free = optimise.minimise_with_restarts(
            lambda z, index: losses.supcon_loss(z, labels, taus[index]),
            (len(TAUS),),
            len(labels),
            len(labels),
            indexed=True,
            **FREE,
        )
    records = []
    for k, tau in enumerate(TAUS):
        cert = certify_supcon(sizes, tau, strict=False)
        reduced = exchangeable.certify_supcon(sizes, tau, strict=False)
        z = torch.from_numpy(cert.embeddings())
        within, delta_g, gram = _geometry(z, labels, m)
        collapsed_loss = float(losses.supcon_loss(_collapsed(z, labels, m), labels, tau))
        free_within, free_delta_g, _ = _geometry(free.z[k], labels, m)
        records.append(
            {
                "m": m,
                "R": ratio,
                "sizes": sizes,
                "tau": tau,
                "ok": cert.ok,
                "seconds": cert.seconds,
                "W": within,
                "delta_g": delta_g,
                "free W": free_within,
                "free delta_g": free_delta_g,
                "collapse excess": (collapsed_loss - cert.minimum) / abs(cert.minimum),
                "free excess": abs(float(free.loss[k]) - cert.minimum) / abs(cert.minimum),
                "free loss": float(free.loss[k]),
                "minimum": cert.minimum,
                "exchangeable minimum": reduced.minimum,
                "exchangeable delta_g": reduced.delta_g(simplex.etf_gram(m)),
                "exchangeable ok": reduced.ok and reduced.polished,
                "converged": bool(free.converged[k]),
                "minority cosine": float(gram[-2, -1] / (gram[-2, -2] * gram[-1, -1]).sqrt()) if m >= 4 else None,
            }
        )
    return records


def _unsettled(records: list[dict]) -> list[str]:
    """Routes that did not settle: a certificate not optimal, a free minimisation not converged."""
    reasons = []
    for r in records:
        where = f"m = {r['m']}, sizes {r['sizes']}, tau = {r['tau']}"
        if not r["ok"]:
            reasons.append(f"certificate not optimal at {where}")
        if not r["converged"]:
            reasons.append(f"free minimisation not converged at {where}")
        if not r["exchangeable ok"]:
            reasons.append(f"exchangeable certificate not optimal and polished at {where}")
    return reasons


def _agreements(records: list[dict]) -> list[Agreement]:
    """Every cell's certified minimum and DeltaG* against the free minimiser's (the counterexample's numbers too)."""
    agreements = []
    for r in records:
        where = f"m = {r['m']}, sizes {r['sizes']}, tau = {r['tau']}"
        agreements += [
            Agreement(
                f"{where}: min loss, free vs certificate", r["free loss"], r["minimum"], RELATIVE * abs(r["minimum"])
            ),
            Agreement(
                f"{where}: DeltaG* to ETF, free vs certificate", r["free delta_g"], r["delta_g"], DELTA_G_RESOLUTION
            ),
            Agreement(
                f"{where}: min loss, exchangeable vs full certificate",
                r["exchangeable minimum"],
                r["minimum"],
                1e-7 * abs(r["minimum"]),
            ),
            Agreement(
                f"{where}: DeltaG* to ETF, exchangeable vs full certificate",
                r["exchangeable delta_g"],
                r["delta_g"],
                DELTA_G_RESOLUTION,
            ),
        ]
    return agreements


def _claim_failures(records: list[dict]) -> list[str]:
    failures = []
    for r in records:
        if r["collapse excess"] > RELATIVE:
            failures.append(
                f"no within-class collapse at m = {r['m']}, sizes {r['sizes']}, tau = {r['tau']}: the "
                f"collapsed configuration is {r['collapse excess']:.3g} above the certified minimum"
            )
    for m in CLASS_COUNTS:
        for tau in TAUS:
            row = [r for r in records if r["m"] == m and r["tau"] == tau]  # in the order of RATIOS
            if row[0]["delta_g"] > DELTA_G_RESOLUTION:
                failures.append(f"balanced m = {m}, tau = {tau} is not the ETF: DeltaG* = {row[0]['delta_g']:.4f}")
            for low, high in zip(row, row[1:]):
                if high["delta_g"] - low["delta_g"] <= DELTA_G_RESOLUTION:
                    failures.append(
                        f"m = {m}, tau = {tau}: DeltaG* does not grow from R = {low['R']} {low['sizes']} "
                        f"({low['delta_g']:.4f}) to R = {high['R']} {high['sizes']} ({high['delta_g']:.4f}); "
                        f"free optimisation: {low['free delta_g']:.4f} -> {high['free delta_g']:.4f}"
                    )
    return failures


@claim(
    "A8",
    source="Paper A: imbalance bends the SCL geometry without prototypes",
    statement="Without prototypes the certified SCL minimiser collapses within classes, and DeltaG* of its class "
    "means to the ETF Gram is 0 at R = 1 and grows with R (m in {3, 4}, tau in {0.2, 1}).",
    routes=("certificate", "free optimisation"),
    expect="fails",
)
def check() -> Result:
    start = time.perf_counter()
    records = [r for m in CLASS_COUNTS for ratio in RATIOS for r in _cells(m, ratio)]
    figures = {
        f"DeltaG* m={m} tau={tau:g} R={RATIOS}": [
            round(r["delta_g"], 4) for r in records if r["m"] == m and r["tau"] == tau
        ]
        for m in CLASS_COUNTS
        for tau in TAUS
    }
    figures.update(
        {
            "max W (certificate embeddings)": max(r["W"] for r in records),
            "max W (free optimisation)": max(r["free W"] for r in records),
            "max rel (collapsed loss - certified minimum)": max(r["collapse excess"] for r in records),
            "max rel |free - certified minimum|": max(r["free excess"] for r in records),
            "max |DeltaG* free - certificate|": max(abs(r["free delta_g"] - r["delta_g"]) for r in records),
            "cosine of the two minority class means, m=4, R=10": [
                round(r["minority cosine"], 4) for r in records if r["m"] == 4 and r["R"] == 10
            ],
            "slowest certificate by class sizes (s)": {
                str(sizes): round(max(r["seconds"] for r in records if r["sizes"] == sizes), 2)
                for sizes in dict.fromkeys(r["sizes"] for r in records)
            },
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    return verdict(figures, _claim_failures(records), unsettled=_unsettled(records), agreements=_agreements(records))


def test_A8_imbalance_without_prototypes_certified():
    assert_claim(check)
