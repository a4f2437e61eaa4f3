"""Claim B8 (Paper B): for variant "instance" and d >= mn - 1 the global minimum of the
combined loss over free unit embeddings is the SSEM minimum min_beta L(beta), and every minimiser lies in
SSEM: the minimiser's Gram is the SSEM Gram at beta*.

Routes, on a grid of small (m, n, p) and (alpha, tau):
* exact: beta* and L(beta*) from the closed form (`theory.ssem`);
* certificate: the convex program over the Gram matrix of all views (`simulate.certify`), whose
  value is the global minimum in any dimension >= N = m n p;
* free optimisation: batched L-BFGS over unit embeddings in d = m n (`simulate.optimise`), three
  random starts per point, every point of one size in one batch.
The three minima must agree to 1e-6 relative (docs/verdicts.md#routes), and the certified optimal G must equal the
SSEM Gram at beta* entrywise within 1e-4. The exchangeable certificate (`simulate.exchangeable`, the same
program reduced by symmetry and polished) is pinned at every grid point, tau = 0.1 included: its minimum
to the closed form (1e-9 relative) and its similarities (same instance, same class, other class) to the
SSEM Gram entries at beta* (1e-6).

Why the Gram comparison is asserted for tau >= 0.2 only. The loss is strictly convex in G (each
off-diagonal entry is one logit of a log-sum-exp), so its minimiser is unique; but an entry enters the
loss with its softmax weight, and with m = 2 classes at tau = 0.1 the between-class entries weigh
about e^{-2/tau} ~ 2e-9, below the solver's accuracy: the program does not determine them, and the
solver returns a G that differs from the SSEM Gram there while its loss equals the SSEM loss to ~1e-9.
The figure at tau = 0.1 is reported, not asserted; the loss agreement is asserted on the whole grid.
"""

import time

import numpy as np
import torch

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import exchangeable, losses, metrics, optimise
from simulate.certify import certify_combined
from simulate.optimise import single_thread
from theory import ssem

SIZES = [(2, 2, 1), (2, 2, 2), (2, 3, 2), (3, 2, 2), (3, 3, 1)]
ALPHAS = (0.0, 0.4, 0.7, 0.95)  # about half the points collapse (beta* = 1), half do not
TAUS = (0.1, 0.2, 0.5, 1.0, 2.0)
#: One larger size (K = 32 vectors, the largest the issue asks to time) at one point.
LARGE_SIZE, LARGE_POINT = (4, 4, 2), (0.6, 0.5)

RELATIVE = 1e-6  # agreement of loss values (docs/verdicts.md#routes)
GRAM_TOLERANCE = 1e-4  # certified G against the SSEM Gram, entrywise
GRAM_MIN_TAU = 0.2  # below it some entries are not determined by the program (module docstring)
FREE = dict(restarts=3, seed=0, max_iter=500, grad_tol=1e-7)


def _free_minima(m: int, n: int, p: int, alphas: np.ndarray, taus: np.ndarray, restarts: int):
    """Best free-embedding loss of every (alpha, tau) point, all points in one batch, d = m n; (B,) each.

    Returns the losses and the minimisers' distances to the SSEM family (`simulate.metrics.ssem_distance`).
    """
    labels, instances = losses.balanced_layout(m, n, p)
    alpha, tau = torch.from_numpy(alphas), torch.from_numpy(taus)

    def loss_fn(z, index):
        return losses.combined_loss(z, labels, instances, alpha[index], tau[index])

    options = dict(FREE, restarts=restarts)
    with single_thread():
        result = optimise.minimise_with_restarts(loss_fn, (len(alphas),), m * n * p, m * n, indexed=True, **options)
    residual = metrics.ssem_distance(result.z, labels, instances, m)[1].numpy()
    return result.loss.numpy(), residual, result.converged.numpy()


def _measure(m: int, n: int, p: int, alphas: np.ndarray, taus: np.ndarray, restarts: int) -> list[dict]:
    """One record per point: closed form, certificate, free minimum, Gram error, solver status and time."""
    beta = ssem.optimal_beta(alphas, taus, m, n, p)
    closed = ssem.restricted_loss(beta, alphas, taus, m, n, p)
    free, free_residual, converged = _free_minima(m, n, p, alphas, taus, restarts)
    records = []
    for i, (alpha, tau) in enumerate(zip(alphas, taus)):
        cert = certify_combined(float(alpha), float(tau), m, n, p, strict=False)
        records.append(
            {
                "size": (m, n, p),
                "alpha": float(alpha),
                "tau": float(tau),
                "beta": float(beta[i]),
                "ok": cert.ok,
                "status": cert.status,
                "seconds": cert.seconds,
                "certificate": abs(cert.minimum - closed[i]) / abs(closed[i]),
                "free": abs(free[i] - closed[i]) / abs(closed[i]),
                "gram": float(np.abs(cert.gram - ssem.ssem_view_gram(float(beta[i]), m, n, p)).max()),
                "free residual": float(free_residual[i]),
                "converged": bool(converged[i]),
                "closed form": float(closed[i]),
                "certified minimum": float(cert.minimum),
                "free minimum": float(free[i]),
            }
        )
    return records


def _worst(records: list[dict], key: str) -> dict:
    return max(records, key=lambda record: record[key])


def _where(record: dict) -> str:
    return f"(m, n, p) = {record['size']}, alpha = {record['alpha']}, tau = {record['tau']}"


@claim(
    "B8",
    source="Paper B: optimal embeddings lie in SSEM",
    statement='Variant "instance": certified minimum = closed-form SSEM minimum = free-optimisation minimum '
    "(1e-6 relative), and the certified optimal Gram equals the SSEM Gram at beta* (1e-4 entrywise, tau >= 0.2).",
    routes=("exact", "certificate", "free optimisation"),
)
def check() -> Result:
    start = time.perf_counter()
    grid_alpha, grid_tau = (a.ravel() for a in np.meshgrid(ALPHAS, TAUS, indexing="ij"))
    records = [r for size in SIZES for r in _measure(*size, grid_alpha, grid_tau, restarts=FREE["restarts"])]
    records += _measure(*LARGE_SIZE, np.array([LARGE_POINT[0]]), np.array([LARGE_POINT[1]]), restarts=2)
    resolved = [r for r in records if r["tau"] >= GRAM_MIN_TAU]
    unresolved = [r for r in records if r["tau"] < GRAM_MIN_TAU]
    not_optimal = [r for r in records if not r["ok"]]
    worst = {key: _worst(records, key) for key in ("certificate", "free")}
    worst["gram"] = _worst(resolved, "gram")
    seconds = {}
    for r in records:
        k = int(np.prod(r["size"]))
        seconds[k] = max(seconds.get(k, 0.0), r["seconds"])
    figures = {
        "points": len(records),
        "certificates not optimal": len(not_optimal),
        "max rel |certificate - closed form|": worst["certificate"]["certificate"],
        "max rel |free - closed form|": worst["free"]["free"],
        "max |G_cert - G_SSEM(beta*)|, tau >= 0.2": worst["gram"]["gram"],
        "worst Gram point": _where(worst["gram"]),
        "max |G_cert - G_SSEM(beta*)|, tau = 0.1 (not determined, not asserted)": _worst(unresolved, "gram")["gram"],
        "max SSEM residual of the free minimisers, tau >= 0.2 (not asserted)": _worst(resolved, "free residual")[
            "free residual"
        ],
        "collapsed points (beta* = 1)": sum(r["beta"] == 1.0 for r in records),
        "slowest certificate by K (s)": {k: round(v, 2) for k, v in sorted(seconds.items())},
        "seconds": round(time.perf_counter() - start, 1),
    }
    unsettled = [f"solver status {r['status']!r} at {_where(r)}" for r in not_optimal]
    unsettled += [f"free minimisation not converged at {_where(r)}" for r in records if not r["converged"]]
    # Two-sided, at the worst point of each comparison (every other point is closer).
    agreements = [
        Agreement(
            f"certified minimum vs closed form at {_where(worst['certificate'])}",
            worst["certificate"]["certified minimum"],
            worst["certificate"]["closed form"],
            RELATIVE * abs(worst["certificate"]["closed form"]),
        ),
        Agreement(
            f"free minimum vs closed form at {_where(worst['free'])}",
            worst["free"]["free minimum"],
            worst["free"]["closed form"],
            RELATIVE * abs(worst["free"]["closed form"]),
        ),
    ]
    agreements += _exchangeable_agreements(records)
    failures = []
    if worst["gram"]["gram"] > GRAM_TOLERANCE:
        failures.append(
            f"certified Gram off the SSEM Gram by {worst['gram']['gram']:.3g} (> {GRAM_TOLERANCE:g}) "
            f"at {_where(worst['gram'])}"
        )
    return verdict(figures, failures, unsettled=unsettled, agreements=agreements)


def _exchangeable_agreements(records: list[dict]) -> list[Agreement]:
    """The reduced program at every point: the worst minimum and the worst similarity against SSEM(beta*)."""
    worst_minimum, worst_entry = (0.0, None), (0.0, None)
    for r in records:
        (m, n, p), alpha, tau, beta = r["size"], r["alpha"], r["tau"], r["beta"]
        reduced = exchangeable.certify_combined(alpha, tau, m, n, p)
        gap = abs(reduced.minimum - r["closed form"]) / abs(r["closed form"])
        ssem_entries = {"a0": 1.0, "b0": (n * beta - 1) / (n - 1), "c0,0": -beta / (m - 1)}
        entry = max(
            abs(reduced.variables[key] - value) for key, value in ssem_entries.items() if key in reduced.variables
        )
        worst_minimum = max(worst_minimum, (gap, r), key=lambda item: item[0])
        worst_entry = max(worst_entry, (entry, r), key=lambda item: item[0])
    return [
        Agreement(
            f"exchangeable minimum vs closed form, relative, worst at {_where(worst_minimum[1])}",
            worst_minimum[0],
            0.0,
            1e-9,
        ),
        Agreement(
            f"exchangeable similarities vs SSEM Gram at beta*, worst at {_where(worst_entry[1])} (tau = 0.1 too)",
            worst_entry[0],
            0.0,
            1e-6,
        ),
    ]


def test_B8_ssem_is_the_certified_global_minimum():
    assert_claim(check)
