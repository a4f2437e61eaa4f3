"""Claim B10 (Paper B, variant "supcon"): at small alpha and tau the global minimum of the
combined loss falls below its SSEM minimum — the views of an instance separate, so the minimiser leaves
SSEM — and elsewhere the SSEM minimum is the global one.

Routes: exact (the SSEM minimum min_beta L(beta) of variant "supcon", `theory.ssem`) against the
certificate (`simulate.certify`, the global minimum over Gram matrices), on an (alpha, tau) grid for a
few small (m, n, p). A point is "below" when the certified minimum — a value unit vectors attain — is
under the SSEM minimum by more than 1e-6 relative (the suite's agreement tolerance; the solver is
accurate to ~1e-9). The finding holds when, for every size,
* the corner (alpha = 0, smallest tau) is below;
* the region below is a lower set of the grid (below at (alpha, tau) implies below at every smaller
  alpha and smaller tau): "small alpha and small tau";
* no point with alpha >= 0.5 or tau >= 1 is below;
* at every point below, the certified Gram separates two views of one instance (1 - G_ab >= 1e-3).
The map itself — for each tau, the largest alpha below — is reported for each size.

Where the certificate is not below, its optimal G is not compared with the SSEM Gram: at tau = 0.05
the program does not determine the between-class entries (see B8's docstring).
"""

import time

import numpy as np

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import exchangeable
from simulate.certify import certify_combined
from theory import ssem

SIZES = [(2, 2, 2), (3, 2, 2), (2, 2, 3)]
ALPHAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
TAUS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
BELOW = 1e-6  # relative: certified minimum under the SSEM minimum by more than the agreement tolerance
SEPARATED = 1e-3  # 1 - G_ab for two views of one instance
LARGE_ALPHA, LARGE_TAU = 0.5, 1.0


def _view_separation(gram: np.ndarray, p: int) -> float:
    """max over pairs of views of one instance of 1 - G_ab (0 when views coincide)."""
    instance = np.arange(len(gram)) // p
    return float((1.0 - gram[instance[:, None] == instance[None, :]]).max())


def _map(m: int, n: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(below, relative drop, view separation) on the (alpha, tau) grid, and every certificate's (K, seconds, ok)."""
    shape = (len(ALPHAS), len(TAUS))
    below, drop, separation = np.zeros(shape, bool), np.zeros(shape), np.zeros(shape)
    minimum, closed_form = np.zeros(shape), np.zeros(shape)
    timings = []
    for i, alpha in enumerate(ALPHAS):
        for j, tau in enumerate(TAUS):
            closed = float(
                ssem.restricted_loss(ssem.optimal_beta(alpha, tau, m, n, p, "supcon"), alpha, tau, m, n, p, "supcon")
            )
            cert = certify_combined(alpha, tau, m, n, p, "supcon", strict=False)
            timings.append((m * n * p, cert.seconds, cert.ok, (alpha, tau)))
            drop[i, j] = (closed - cert.minimum) / abs(closed)
            minimum[i, j], closed_form[i, j] = cert.minimum, closed
            below[i, j] = cert.ok and drop[i, j] > BELOW
            separation[i, j] = _view_separation(cert.gram, p)
    return below, drop, separation, timings, minimum, closed_form


def _agreements(m: int, n: int, p: int, minimum: np.ndarray, closed: np.ndarray, large: np.ndarray) -> list:
    """The full certificate pinned by two other routes.

    * At the corner (alpha = 0, smallest tau: the drop below SSEM, the finding) against the exchangeable
      certificate (`simulate.exchangeable`, the program reduced by symmetry, built independently).
    * Where alpha >= 0.5 or tau >= 1, at the point of largest difference, against the SSEM closed form.
    """
    name = f"(m, n, p) = {(m, n, p)}"
    reduced = exchangeable.certify_combined(ALPHAS[0], TAUS[0], m, n, p, "supcon")
    i, j = np.unravel_index(np.argmax(np.where(large, np.abs(minimum - closed), -1.0)), minimum.shape)
    return [
        Agreement(
            f"{name}, alpha = {ALPHAS[0]}, tau = {TAUS[0]}: certified minimum, full vs exchangeable program",
            float(minimum[0, 0]),
            reduced.minimum,
            BELOW * abs(reduced.minimum),
        ),
        Agreement(
            f"{name}, alpha = {ALPHAS[i]}, tau = {TAUS[j]}: certified minimum vs SSEM closed form",
            float(minimum[i, j]),
            float(closed[i, j]),
            BELOW * abs(closed[i, j]),
        ),
    ]


def _is_lower_set(below: np.ndarray) -> bool:
    """below[i, j] implies below at every i' <= i, j' <= j (grid axes sorted ascending)."""
    return all(below[: i + 1, : j + 1].all() for i, j in zip(*np.nonzero(below)))


def _region(below: np.ndarray) -> str:
    """For each tau, the largest alpha of the grid that is below (or 'none')."""
    parts = []
    for j, tau in enumerate(TAUS):
        rows = np.nonzero(below[:, j])[0]
        parts.append(f"tau={tau:g}: alpha<={ALPHAS[rows.max()]:g}" if len(rows) else f"tau={tau:g}: none")
    return "; ".join(parts)


@claim(
    "B10",
    source="Paper B: the supcon variant (the authors' ImageNet code)",
    statement='Variant "supcon": at small alpha and tau the certified minimum falls below the SSEM minimum '
    "(views separate); at alpha >= 0.5 or tau >= 1 it equals it.",
    routes=("exact", "certificate"),
)
def check() -> Result:
    start = time.perf_counter()
    alpha_grid, tau_grid = np.meshgrid(ALPHAS, TAUS, indexing="ij")
    large = (alpha_grid >= LARGE_ALPHA) | (tau_grid >= LARGE_TAU)
    figures, failures, timings, agreements = {}, [], [], []
    for m, n, p in SIZES:
        below, drop, separation, seen, minimum, closed = _map(m, n, p)
        agreements += _agreements(m, n, p, minimum, closed, large)
        timings += seen
        collapsed = ssem.optimal_beta(alpha_grid, tau_grid, m, n, p, "supcon") == 1.0
        name = f"(m, n, p) = {(m, n, p)}"
        figures[f"{name} below"] = _region(below)
        figures[f"{name} max rel drop below SSEM"] = float(drop.max())
        figures[f"{name} min view separation where below"] = float(separation[below].min()) if below.any() else None
        figures[f"{name} points below / below and in SSEM collapse region (beta* = 1) / collapsing"] = (
            f"{int(below.sum())}/{int((below & collapsed).sum())}/{int(collapsed.sum())}"
        )
        if not below[0, 0]:
            failures.append(f"{name}: not below at alpha = 0, tau = {TAUS[0]} (drop {drop[0, 0]:.3g})")
        if not _is_lower_set(below):
            failures.append(f"{name}: the region below is not a lower set of (alpha, tau): {_region(below)}")
        if (below & large).any():
            i, j = np.argwhere(below & large)[0]
            failures.append(f"{name}: below at alpha = {ALPHAS[i]}, tau = {TAUS[j]} (drop {drop[i, j]:.3g})")
        if below.any() and separation[below].min() < SEPARATED:
            failures.append(f"{name}: below but views coincide (1 - G = {separation[below].min():.3g})")
    not_ok = [t for t in timings if not t[2]]
    unsettled = [f"certificate not optimal at K = {k}, (alpha, tau) = {point}" for k, _, _, point in not_ok]
    figures["certificates (K, count, max s)"] = [
        (k, sum(t[0] == k for t in timings), round(max(t[1] for t in timings if t[0] == k), 2))
        for k in sorted({t[0] for t in timings})
    ]
    figures["seconds"] = round(time.perf_counter() - start, 1)
    return verdict(figures, failures, unsettled=unsettled, agreements=agreements)


def test_B10_supcon_variant_views_separate_at_small_alpha_and_tau():
    assert_claim(check)
