"""Paper B's phase diagram over (alpha, tau): closed form against free-embedding minima.

For a grid of alpha (rows) and tau (columns) and fixed (m, n, p, d):

* `theory_grid`: the SSEM optimum from `theory.ssem` (beta*, W* = 1 - beta*, L(beta*), collapse).
* `simulated_grid`: the combined loss minimised over free unit embeddings, every grid
  point in one batch (`simulate.optimise`), with its variances, distance to SSEM and
  convergence flags.
* `compare`: the agreement figures and every point that breaks the agreement criteria
  (reported, never dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from simulate import loss_derivatives, losses, metrics, optimise
from theory import ssem
from theory.arguments import require_balanced_sizes, require_int, require_variant

#: A simulated configuration counts as collapsed when its within-class variance is below this.
COLLAPSE_TOL = 1e-6
#: The same in float32, where a collapsed class keeps W ~ 1e-5 from its looser gradient (measured 1.2e-5 at
#: m=2, n=3, alpha=0, tau=0.2).
COLLAPSE_TOL_FLOAT32 = 1e-4


@dataclass(frozen=True)
class Criteria:
    """Agreement criteria between the free-embedding minimum and the closed form (this suite's criteria).

    docs/commands.md describes them for the phase diagram.
    """

    loss_floor: float = 1e-9  # simulated loss >= closed-form minimum - loss_floor (absolute)
    loss_rel_gap: float = 1e-7  # simulated - closed form <= loss_rel_gap |closed form| + loss_abs_gap
    # Absolute floor of the gap: with p = 1 and large alpha the minimum is near 0 (5.6e-12 absolute was
    # 6.8e-4 relative, a false alarm); 1e-10 is ~1e4 ulps of a loss of order 1, far below any real gap.
    loss_abs_gap: float = 1e-10
    within_abs: float = 1e-3  # |W_sim - W*| <= this, for tau >= within_min_tau
    within_min_tau: float = 0.05  # below it the loss is flat to float64 in some directions
    verdict_band: float = 1e-3  # collapse verdicts compared only where |alpha - alpha*| > band


#: One table per dtype (float32 resolves a loss of order 1 to ~1e-7 and a gradient to ~1e-4, so the
#: loss gaps and W, which moves with the square of the remaining gradient, are judged ~1e3 coarser).
CRITERIA = {
    torch.float64: Criteria(),
    torch.float32: Criteria(loss_floor=1e-5, loss_rel_gap=1e-5, loss_abs_gap=1e-6, within_abs=2e-2),
}


def theory_grid(
    alphas: Sequence[float] | np.ndarray,
    taus: Sequence[float] | np.ndarray,
    n_classes: int,
    n_per_class: int,
    n_views: int = 2,
    variant: str = "instance",
) -> dict:
    """Closed-form optimum on the grid; arrays of shape (len(alphas), len(taus))."""
    alpha, tau = np.meshgrid(np.asarray(alphas, float), np.asarray(taus, float), indexing="ij")
    beta = ssem.optimal_beta(alpha, tau, n_classes, n_per_class, n_views, variant)
    return {
        "beta": beta,
        "within": 1.0 - beta,
        "loss": ssem.restricted_loss(beta, alpha, tau, n_classes, n_per_class, n_views, variant),
        "collapsed": beta == 1.0,
    }


def simulated_grid(
    alphas: Sequence[float] | np.ndarray,
    taus: Sequence[float] | np.ndarray,
    n_classes: int,
    n_per_class: int,
    n_views: int = 2,
    dim: int | None = None,
    variant: str = "instance",
    *,
    seed: int = 0,
    restarts: int = 1,
    max_iter: int = 3000,
    grad_tol: float | None = None,
    method: str = "newton",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Free-embedding minima of the combined loss on the grid, all points in one batch.

    Returns arrays of shape (len(alphas), len(taus)): within, between, total, loss, collapsed
    (W < COLLAPSE_TOL, or COLLAPSE_TOL_FLOAT32 in float32), converged, grad_norm, ssem_beta,
    ssem_residual (distance to SSEM),
    iterations and newton_iterations (of the kept start), seconds (until the point stopped),
    route (how its run ended, a name of `optimise.ROUTES`); and max_iterations (int).
    `dtype` and `device` are those of the computation (float64 on the CPU by default).
    """
    m, n, p = require_balanced_sizes(n_classes, n_per_class, n_views)
    require_variant(variant, p)
    dim = m * n if dim is None else require_int("dim", dim, 1)
    alpha, tau = np.meshgrid(np.asarray(alphas, float), np.asarray(taus, float), indexing="ij")
    labels, instances = losses.balanced_layout(m, n, p, device=device)
    alpha_t = torch.from_numpy(alpha.ravel()).to(device=device, dtype=dtype)
    tau_t = torch.from_numpy(tau.ravel()).to(device=device, dtype=dtype)

    def loss_fn(z, index):
        return losses.combined_loss(z, labels, instances, alpha_t[index], tau_t[index], variant)

    closed_form = loss_derivatives.combined_loss_derivatives(labels, instances, variant)

    def derivatives(z, index):
        return closed_form(z, alpha_t[index], tau_t[index])

    result = optimise.minimise_with_restarts(
        loss_fn,
        (alpha.size,),
        m * n * p,
        dim,
        restarts=restarts,
        seed=seed,
        max_iter=max_iter,
        progress=progress,
        grad_tol=grad_tol,
        indexed=True,
        derivatives=derivatives,
        method=method,
        dtype=dtype,
        device=device,
    )
    return _grid_figures(result, labels, instances, m, alpha.shape)


def _grid_figures(
    result: optimise.OptimResult, labels: torch.Tensor, instances: torch.Tensor, m: int, shape: tuple[int, ...]
) -> dict:
    """The per-point figures of a batched minimisation, as arrays of the grid's `shape`."""
    variance = metrics.variances(result.z, labels, m)
    ssem_beta, ssem_residual = metrics.ssem_distance(result.z, labels, instances, m)
    collapse_tol = COLLAPSE_TOL_FLOAT32 if result.z.dtype == torch.float32 else COLLAPSE_TOL

    def grid(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().reshape(shape)

    return {
        "within": grid(variance.within),
        "between": grid(variance.between),
        "total": grid(variance.total),
        "loss": grid(result.loss),
        "collapsed": grid(variance.within) < collapse_tol,
        "converged": grid(result.converged),
        "grad_norm": grid(result.grad_norm),
        "ssem_beta": grid(ssem_beta),
        "ssem_residual": grid(ssem_residual),
        "iterations": grid(result.config_iterations),
        "newton_iterations": grid(result.newton_iterations),
        "seconds": grid(result.seconds),
        "route": np.array(result.route_names(), dtype=object).reshape(shape),
        "max_iterations": result.iterations,
    }


def compare(
    alphas: Sequence[float] | np.ndarray,
    taus: Sequence[float] | np.ndarray,
    theory: dict,
    simulated: dict,
    threshold: Sequence[float] | np.ndarray,
    criteria: Criteria = CRITERIA[torch.float64],
) -> tuple[dict, list]:
    """Agreement figures and the list of grid points that break `criteria`.

    `threshold` is alpha*(tau) for each tau (the collapse boundary of the closed form). The loss gap is
    judged against loss_rel_gap |closed form| + loss_abs_gap (`Criteria`); the summary's relative gap is taken
    where the relative term is the larger (|closed form| >= loss_abs_gap / loss_rel_gap; None if nowhere: near a
    loss of 0 a relative gap means nothing), the absolute gap everywhere.
    """
    alpha, tau = np.meshgrid(np.asarray(alphas, float), np.asarray(taus, float), indexing="ij")
    gap = simulated["loss"] - theory["loss"]
    relative = np.abs(theory["loss"]) >= criteria.loss_abs_gap / criteria.loss_rel_gap
    rel_gap = gap[relative] / np.abs(theory["loss"][relative])
    within_error = np.abs(simulated["within"] - theory["within"])
    resolvable = tau >= criteria.within_min_tau
    away = np.abs(alpha - np.broadcast_to(np.asarray(threshold)[None, :], alpha.shape)) > criteria.verdict_band
    disagree = away & (simulated["collapsed"] != theory["collapsed"])
    problems = {
        "loss below the closed-form minimum": gap < -criteria.loss_floor,
        "loss gap above tolerance": gap > criteria.loss_rel_gap * np.abs(theory["loss"]) + criteria.loss_abs_gap,
        "within-class variance off": resolvable & (within_error > criteria.within_abs),
        "collapse verdicts disagree": disagree,
    }
    violations = [
        {
            "alpha": float(alpha[i, j]),
            "tau": float(tau[i, j]),
            "problem": name,
            "loss_gap": float(gap[i, j]),
            "within_error": float(within_error[i, j]),
        }
        for name, mask in problems.items()
        for i, j in zip(*np.nonzero(mask))
    ]
    summary = {
        "max_abs_within_error": float(within_error[resolvable].max()) if resolvable.any() else None,
        "max_abs_within_error_all_tau": float(within_error.max()),
        "max_rel_loss_gap": float(rel_gap.max()) if rel_gap.size else None,
        "max_abs_loss_gap": float(gap.max()),
        "min_loss_gap": float(gap.min()),
        "agreement": float(1.0 - disagree.sum() / max(int(away.sum()), 1)),
        "converged_fraction": float(simulated["converged"].mean()),  # grad norm <= tolerance; reported, not a criterion
        "max_grad_norm": float(simulated["grad_norm"].max()),
        "max_ssem_residual": float(simulated["ssem_residual"].max()),
        "violations": {name: int(mask.sum()) for name, mask in problems.items()},
        "passes": not violations,
    }
    return summary, violations
