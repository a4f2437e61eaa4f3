"""Minimise losses over free unit embeddings, many configurations at once (docs/verdicts.md#routes, free optimisation).

Each configuration (say one (alpha, tau) point of a phase diagram) owns N free
vectors; all configurations live in one tensor of shape (*batch, N, d) and are
minimised together: every loss evaluation serves every configuration still running.

Method: batched Riemannian L-BFGS to get near a minimum, then a batched Riemannian
trust-region Newton finish (`newton`).

Why L-BFGS first. The problems here are smooth and, at small tau, badly conditioned
(curvature ~ 1/tau^2 in some directions, ~1 in others). First-order methods (the
papers' Adam with a fixed step) need thousands of steps and stall or overflow at small
tau; L-BFGS adapts to the curvature and gets to a gradient of ~1e-4 in tens of steps.
torch.optim.LBFGS would treat the whole batch as one problem (one line search,
curvature pairs mixing configurations, one stopping rule), so this module runs an
independent L-BFGS per configuration — two-loop recursion, Armijo backtracking and
stopping all done with batched tensor operations.

Why a Newton finish. L-BFGS converges only linearly: its last digits at small tau
cost hundreds to thousands of iterations (measured: 17% of the default phase diagram
still above a gradient of 1e-9 after 1000 iterations). Once a configuration's gradient
is below `NEWTON_SWITCH_TOL` (or its L-BFGS stalls or uses up `LBFGS_BUDGET`
iterations) it is handed to a batched regularised Riemannian Newton method: each step
solves (H + mu I) s = -g by conjugate gradients, with mu = lambda |g| and lambda adapted
per configuration from the ratio of actual to predicted decrease (Levenberg-Marquardt,
Nielsen's update; a step that raised the loss grows lambda 16-fold, one that fell short 4-fold).
At a tolerance at or above `NEWTON_SWITCH_TOL` there are no last digits to take:
L-BFGS settles the configurations itself and the finish gets only those it leaves unsettled.
Why regularised and not plain or trust-region Newton: the minima here are far from isolated.
Measured at the SSEM minimum (m = n = 4, p = 2, d = 16, tau = 0.05):
393 of the 480 tangent directions have curvature below 1e-6 (joint rotations, and the
views of one instance, whose separation eps costs only ~eps^4: the instance loss keeps
the anchor in its own denominator, which cancels the eps^2 term), the others above 0.07.
Near such a minimum the Hessian has tiny eigenvalues of either sign (-7e-7 measured);
a Steihaug trust-region step follows them to the boundary and L-BFGS crawls along them,
while the shift mu keeps those steps short and leaves the stiff directions a Newton step
(convergence there is quadratic, along the quartic directions linear with ratio ~2/3).

Why a second-order correction. The weak directions are curved: a step of length t along them leaves the
valley of the stiff directions by ~t^2, which the quadratic model at z cannot see. Measured at m = 3, n = 5,
p = 2, tau = 0.087: such steps (0.1-0.5 long) were refused with ratios down to -10, or taken and raised the
gradient 100-1000 times, so each bit of progress along the weak directions cost three or four steps and a
configuration 600-1400 steps. So when a trial point's gradient is larger than the current one, one more
Newton step is taken from it before it is judged: CG with z's Hessian and the shift |g_trial|, which
resolves the stiff directions and leaves those of curvature below |g_trial| almost where they are (the
classical second-order correction of constrained optimisation, here for a curved valley). The corrected
point replaces the trial when its loss is lower (or equal to rounding with a lower gradient). Measured on
the same points: 115-261 steps instead of 600-1400, at the price of one more evaluation and CG solve per
step that uses it. A corrected point whose gradient is still larger than the current one gets a second
correction (two at most, `simulate.newton`): on the default benchmark grid that cut the Newton steps from
10209 to 6827 (the slowest configuration from 322 to 176) and the run's time by about 10%; a third cut
the steps less than it cost. A correction's CG stops after 3 Hessian products: it only has to resolve the stiff
directions, which CG's first products find (measured in `simulate.newton`: 18-48% fewer products in all).
Hessian-vector products come from double backward through the loss (`hessian="hvp"`),
or from the exact Hessian matrix built once per step with batched backward passes
(`hessian="matrix"`; it pays only for tiny problems, so "auto" uses it up to
`EXACT_HESSIAN_MAX_VARIABLES`). A loss with closed-form derivatives (`derivatives=`, e.g.
`simulate.loss_derivatives.combined_loss_derivatives`, which the phase diagram uses) replaces automatic
differentiation altogether: its Hessian-vector product is a few batched matrix products.

What a run costs. Every operation computes only the configurations that still need it: L-BFGS keeps
its state (point, memory) for the running configurations alone and each backtrack evaluates only those
still searching; the conjugate gradients of a Newton step apply the Hessian only to the configurations
still iterating (measured on the default benchmark grid: 3.9 times fewer rows than the whole batch).

Geometry: the product of unit spheres. Steps move along tangent directions and
retract (every vector renormalised); L-BFGS memory pairs are carried to the new point
by projection onto its tangent space. (An unconstrained x with z = x/|x| looked simpler
but let some rows grow to norm ~1e4 after a long first step, which scales their
gradients by 1/|x| and wrecks the conditioning.) The Riemannian gradient is
g_R = g_z - <g_z, z> z per vector (g_z = dL/dz); the Riemannian Hessian applied to a
tangent v is P_z(d^2L v) - <g_z, z> v per vector.

Convergence, per configuration: `converged` when ||g_R|| (Frobenius over its N vectors)
<= grad_tol AND the last step taken changed the loss by at most
`STEP_TOL[dtype] * max(1, |loss|)` (scaled with grad_tol / GRAD_TOL[dtype]; a configuration still
moving the loss by more than that has not settled, whatever its gradient). Near a minimum loss changes fall to
rounding level, where they cannot judge a step: a Newton step whose decrease is below
the rounding regulariser is taken only if it lowers the gradient norm. Converged configurations are frozen while
the rest continue. The result records per configuration the iterations, the time until
it stopped, and the route that decided it (`ROUTES`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from simulate.newton import newton_finish
from simulate.sphere import (  # the geometry and problem live there; re-exported as part of this module's API
    HESSIAN_CHUNK_BYTES,
    ROUTES,
    Book,
    SphereProblem,
    mask_at,
    normalise,
    random_start,
    rowdot,
    spread,
    tangent_projection,
)
from theory.arguments import require_choice, require_int, require_positive_real

__all__ = [
    "EXACT_HESSIAN_MAX_VARIABLES",
    "GRAD_TOL",
    "HESSIANS",
    "LBFGS_BUDGET",
    "METHODS",
    "NEWTON_SWITCH_TOL",
    "ROUTES",
    "STEP_TOL",
    "OptimResult",
    "backtracked_step",
    "SphereProblem",
    "estimate_memory",
    "minimise_on_sphere",
    "minimise_with_restarts",
    "normalise",
    "random_start",
    "seconds_per_evaluation",
    "single_thread",
    "tangent_projection",
    "typical_evaluations",
]

#: Default stopping tolerance on the Riemannian gradient norm, per dtype.
GRAD_TOL = {torch.float64: 1e-9, torch.float32: 1e-4}
#: Largest change of the loss (relative to max(1, |loss|)) the final step may make in a converged configuration,
#: at the default gradient tolerance (proportionally more at a looser one).
STEP_TOL = {torch.float64: 1e-12, torch.float32: 1e-6}
#: Gradient norm at which a configuration leaves L-BFGS for the Newton finish, per dtype.
NEWTON_SWITCH_TOL = {torch.float64: 1e-4, torch.float32: 1e-3}
#: L-BFGS iterations after which a configuration goes to the Newton finish whatever its gradient.
LBFGS_BUDGET = 300
#: Up to this many variables (N d) per configuration the Newton finish builds the exact Hessian matrix.
#: Measured (20 configurations, one thread): building it costs 20 Hessian-vector products at N d = 32,
#: 42 at 72, 178 at 162, where a product with the matrix is already slower than one by double backward;
#: a Newton step uses up to 30 products per CG solve, and up to three solves with its corrections (`simulate.newton`).
EXACT_HESSIAN_MAX_VARIABLES = 100
METHODS = ("newton", "lbfgs")
HESSIANS = ("auto", "matrix", "hvp")

_ARMIJO = 1e-4  # sufficient-decrease constant
_MAX_BACKTRACKS = 30
_CURVATURE_EPS = 1e-12  # pairs with s.y below this (relative) are skipped: no positive curvature seen


@dataclass(frozen=True)
class OptimResult:
    """Result of a batched minimisation; every tensor has the batch shape of the input except `z`.

    The per-configuration records (`config_iterations`, `seconds`, `route`) are None when the result
    did not come from `minimise_on_sphere` (e.g. a baseline built elsewhere).
    """

    z: torch.Tensor  # (*batch, N, d) unit vectors
    loss: torch.Tensor  # (*batch,)
    grad_norm: torch.Tensor  # (*batch,) Riemannian gradient norm at z
    converged: torch.Tensor  # (*batch,) bool: grad_norm <= grad_tol and the last step settled (module docstring)
    iterations: int  # iterations run (the slowest configuration's count)
    config_iterations: torch.Tensor | None = None  # (*batch,) int: L-BFGS + Newton iterations of each configuration
    seconds: torch.Tensor | None = None  # (*batch,) wall time from the start until the configuration stopped
    route: torch.Tensor | None = None  # (*batch,) int: index into ROUTES
    newton_iterations: torch.Tensor | None = None  # (*batch,) int: of config_iterations, the Newton steps

    def route_names(self) -> list[str]:
        """`route` as names (flattened batch order)."""
        return [ROUTES[int(code)] for code in self.route.reshape(-1)]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block, then restore the previous setting.

    The free-embedding problems are small tensors: extra intra-op threads mostly wait, and on
    a shared 2-core machine they spin against other processes (measured 10-50x slower).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def two_loop(
    gradient: torch.Tensor, S: torch.Tensor, Y: torch.Tensor, rho: torch.Tensor, gamma: torch.Tensor, newest: int
) -> torch.Tensor:
    """L-BFGS direction -H g per configuration, H the BFGS inverse Hessian built from gamma I by the stored pairs,
    oldest to newest (the two-loop recursion).

    S, Y (B, M, D) hold curvature pairs in a ring whose newest slot is `newest`;
    rho (B, M) = 1 / <s, y>, 0 for an empty or skipped slot (which then contributes nothing).
    """
    memory = S.shape[1]
    order = [(newest - k) % memory for k in range(memory)]  # newest first
    q = gradient.clone()
    coefficients = []
    for i in order:
        a = rho[:, i] * torch.linalg.vecdot(S[:, i], q)
        q.sub_(a[:, None] * Y[:, i])
        coefficients.append(a)
    r = gamma[:, None] * q
    for i, a in zip(reversed(order), reversed(coefficients)):
        b = rho[:, i] * torch.linalg.vecdot(Y[:, i], r)
        r.add_((a - b)[:, None] * S[:, i])
    return -r


def _lbfgs(problem, z, loss, gradient, grad_norm, running, book, *, history, handoff_tol, budget, settle):
    """Batched Riemannian L-BFGS on the configurations `running` until each one is settled (if `settle`:
    gradient test only), its gradient is below `handoff_tol`, its line search fails (stalled) or it has
    run `budget` iterations.

    z, gradient (B, D); loss, grad_norm (B,). Returns z, loss, gradient, grad_norm and the stalled mask.
    Only the configurations still running are computed: the state (point, memory, line search) is kept
    for those k configurations alone, as compact (k, ...) tensors that shrink as configurations leave.
    """
    index = running.nonzero().squeeze(-1)
    memory = LbfgsMemory(z.new_zeros(len(index), history, z.shape[1]), history)
    point = (z[index], loss[index], gradient[index], grad_norm[index])
    stalled_all = torch.zeros_like(running)
    while len(index):
        direction, first = memory.direction(book, point)
        new_point, step, moved = line_search(problem, z, index, point, direction, first, book)
        memory.remember(book.tangent(new_point[0], step[:, None] * direction), point, new_point, moved, book)
        # The iteration's records, written back into the whole batch.
        rows = mask_at(running, index)
        book.record_step(rows, mask_at(running, index[moved]), spread(loss, index, point[1] - new_point[1]))
        point = new_point
        z, loss = z.index_copy(0, index, point[0]), loss.index_copy(0, index, point[1])
        gradient, grad_norm = gradient.index_copy(0, index, point[2]), grad_norm.index_copy(0, index, point[3])
        stalled_all[index[~moved]] = True
        done = book.settle(rows, loss, grad_norm)[index] if settle else torch.zeros_like(moved)
        keep = ~done & moved & (point[3] > handoff_tol) & (book.counts[index] < budget)
        if not keep.all():
            index, point = index[keep], tuple(part[keep] for part in point)
            memory.keep(keep)
        book.tick()
    return z, loss, gradient, grad_norm, stalled_all & ~book.settled


class LbfgsMemory:
    """The L-BFGS memory of k configurations: curvature pairs S, Y (k, M, D) in a ring whose newest slot is
    shared, rho (k, M) = 1 / <s, y> (0 for an empty or skipped slot) and the initial scaling gamma (k,)."""

    def __init__(self, S, history):
        self.S, self.Y = S, torch.zeros_like(S)
        self.rho, self.gamma = S.new_zeros(S.shape[:2]), S.new_ones(S.shape[0])
        self.newest = history - 1

    def direction(self, book, point):
        """The L-BFGS direction at point (z, loss, gradient, norm), a descent direction; memory pairs live in
        earlier tangent spaces, so the direction is projected onto the current one. A direction that is not
        one of descent is replaced by -g and the misleading memory forgotten. Returns the direction (k, D) and
        the configurations without curvature information (k,) bool."""
        z, _, gradient, _ = point
        direction = book.tangent(z, two_loop(gradient, self.S, self.Y, self.rho, self.gamma, self.newest))
        not_descent = rowdot(direction, gradient) >= 0
        self.rho = torch.where(not_descent[:, None], 0.0, self.rho)
        return torch.where(not_descent[:, None], -gradient, direction), self.rho.abs().sum(-1) == 0

    def remember(self, step, point, new_point, moved, book):
        """The curvature pair of the step taken (tangent at the new point), transported by projection: one ring
        slot per iteration for every configuration, rho = 0 where no positive curvature was seen."""
        y = new_point[2] - book.tangent(new_point[0], point[2])
        sy = rowdot(step, y)
        floor = (step.norm(dim=-1) * y.norm(dim=-1)).clamp(min=torch.finfo(sy.dtype).tiny)
        usable = moved & (sy > _CURVATURE_EPS * floor)
        self.newest = (self.newest + 1) % self.S.shape[1]
        self.S[:, self.newest], self.Y[:, self.newest] = step, y
        self.rho[:, self.newest] = torch.where(usable, 1 / sy.clamp(min=1e-300), 0.0)
        self.gamma = torch.where(usable, sy / rowdot(y, y).clamp(min=1e-300), self.gamma)

    def keep(self, rows):
        """Drop the configurations that left (rows (k,) bool: those that stay)."""
        self.S, self.Y, self.rho, self.gamma = self.S[rows], self.Y[rows], self.rho[rows], self.gamma[rows]


def line_search(
    problem: SphereProblem,
    z: torch.Tensor,
    index: torch.Tensor,
    point: tuple,
    direction: torch.Tensor,
    first: torch.Tensor,
    book: Book,
) -> tuple[tuple, torch.Tensor, torch.Tensor]:
    """Armijo backtracking along `direction` (k, D) from point = (z, loss, gradient, norm) of the configurations
    `index` (k,) of z (B, D): the first step is 1, or 0.1 / |direction| (at most 1) where no curvature has been
    seen (`first` (k,) bool), shortened up to `_MAX_BACKTRACKS` times (`backtracked_step`); each trial evaluates only
    the configurations still searching. Returns the new point (the old one where the search failed), the step
    lengths (k,) and the configurations that moved (k,) bool."""
    start, loss, _, _ = point
    slope = rowdot(direction, point[2])
    step = torch.where(first, torch.clamp(0.1 / direction.norm(dim=-1), max=1.0), torch.ones_like(slope))
    bound = loss + book.slack(loss)
    new_point = [part.clone() for part in point]
    pending = torch.ones_like(slope, dtype=torch.bool)
    searching = torch.arange(len(index), device=z.device)
    for _ in range(_MAX_BACKTRACKS):
        trial = book.retract(start[searching] + step[searching, None] * direction[searching])
        trial_loss, trial_gradient, trial_norm = problem.evaluate_at(z, index[searching], trial)
        ok = trial_loss <= bound[searching] + _ARMIJO * step[searching] * slope[searching]
        accepted = searching[ok]
        for part, value in zip(new_point, (trial, trial_loss, trial_gradient, trial_norm)):
            part[accepted] = value[ok]
        pending[accepted] = False
        searching, trial_loss = searching[~ok], trial_loss[~ok]
        if not len(searching):
            break
        step[searching] = backtracked_step(step[searching], loss[searching], slope[searching], trial_loss)
    return tuple(new_point), step, ~pending


def backtracked_step(
    step: torch.Tensor, loss: torch.Tensor, slope: torch.Tensor, trial_loss: torch.Tensor
) -> torch.Tensor:
    """The next trial step of the line search after a refused one: the minimiser of the quadratic through the
    loss and slope at 0 and the loss at `step`, kept within [step / 10, step / 2] (0.1 step where the trial loss
    is not finite). All (j,); the refused trial lies above the tangent line, so the quadratic's curvature is
    positive."""
    excess = (trial_loss - loss - slope * step).clamp(min=torch.finfo(step.dtype).tiny)
    interpolated = -slope * step**2 / (2 * excess)
    return torch.where(torch.isfinite(trial_loss), interpolated.clamp(0.1 * step, 0.5 * step), 0.1 * step)


def minimise_on_sphere(
    loss_fn: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    *,
    max_iter: int = 3000,
    grad_tol: float | None = None,
    history: int = 10,
    indexed: bool = False,
    progress: Callable[[int, int], None] | None = None,
    method: str = "newton",
    hessian: str = "auto",
    derivatives: Callable[..., tuple] | None = None,
) -> OptimResult:
    """Minimise independent losses over unit vectors, all configurations in one batch.

    Args:
        loss_fn: maps unit vectors z (*batch, N, d) to losses (*batch,); configuration b's
            loss may depend only on z[b] (so the gradient of the sum is per configuration).
        x0: starting parameters (*batch, N, d), any nonzero rows; dtype and device are kept.
        max_iter: iteration cap per configuration (L-BFGS and Newton iterations together, default 3000);
            configurations that reach it unsettled report converged=False.
        grad_tol: tolerance on the Riemannian gradient norm (default `GRAD_TOL[dtype]`).
        history: L-BFGS memory per configuration (default 10 curvature pairs).
        indexed: if True, `loss_fn(z, index)` is called with only the configurations still
            running, z of shape (k, N, d) and `index` (k,) their flat positions in the batch;
            converged configurations then cost nothing (the batch shrinks as they finish).
        progress: optional callback(iteration, n_converged), e.g. to drive a progress bar.
        method: "newton" (L-BFGS, then the trust-region Newton finish; module docstring) or
            "lbfgs" (L-BFGS only, up to max_iter).
        hessian: for the Newton finish: "matrix" (exact Hessian), "hvp" (Hessian-vector products),
            or "auto": "hvp" with `derivatives`, otherwise "matrix" up to `EXACT_HESSIAN_MAX_VARIABLES`
            variables per configuration.
        derivatives: optional closed-form derivatives of the same loss (indexed mode only):
            derivatives(z (k, N, d), index (k,)) -> (loss (k,), Euclidean gradient (k, N, d), Euclidean
            Hessian operator hess(v (j, N, d), rows (j,)) -> (j, N, d) on the configurations `rows` of the k),
            e.g. from `simulate.loss_derivatives.combined_loss_derivatives`.
            Used for every loss, gradient and Hessian-vector product instead of automatic differentiation
            (loss_fn is then called only by the exact Hessian, hessian="matrix").
    """
    max_iter, history, method, hessian, grad_tol = _checked_options(x0, max_iter, history, method, hessian, grad_tol)
    if derivatives is not None and not indexed:
        raise ValueError("derivatives need indexed=True: they are called as derivatives(z (k, N, d), index (k,))")
    if hessian == "auto":
        small = x0.shape[-2] * x0.shape[-1] <= EXACT_HESSIAN_MAX_VARIABLES
        hessian = "matrix" if small and derivatives is None else "hvp"
    problem = SphereProblem(loss_fn, x0.shape, indexed, derivatives)
    z = x0.detach().reshape(problem.n_configs, -1)
    # The loss change allowed to the last step scales with the gradient tolerance (near a minimum both go as
    # the distance to it): STEP_TOL at the default tolerance.
    step_tol = STEP_TOL[x0.dtype] * grad_tol / GRAD_TOL[x0.dtype]
    book = Book(problem, z, grad_tol=grad_tol, step_tol=step_tol, max_iter=max_iter, progress=progress)
    z = book.retract(z.clone())
    z, loss, grad_norm = _run(problem, z, book, method=method, history=history, hessian=hessian, max_iter=max_iter)
    return _result(z, loss, grad_norm, book, x0.shape)


def _run(problem, z, book, *, method, history, hessian, max_iter):
    """Every configuration from z (B, D) on the spheres through L-BFGS, then the Newton finish if method is
    "newton"; routes and stopping times recorded in `book`. Returns z (B, D), loss and grad_norm (B,)."""
    everyone = torch.ones(problem.n_configs, dtype=torch.bool, device=z.device)
    loss, gradient, grad_norm = problem.evaluate(z, everyone)
    newton = method == "newton"
    switch = NEWTON_SWITCH_TOL[z.dtype] if newton else 0.0
    # The Newton finish takes the last digits below `switch`: at a looser tolerance L-BFGS settles the
    # configurations itself and the finish gets only those it left unsettled (budget used up, or stalled).
    # Below it, every configuration goes to the finish and is tested there (gradient and predicted decrease).
    settle = not newton or book.grad_tol >= switch
    running = everyone & ~(book.settle(everyone, loss, grad_norm) if settle else torch.zeros_like(everyone))
    z, loss, gradient, grad_norm, stalled = _lbfgs(
        problem,
        z,
        loss,
        gradient,
        grad_norm,
        running,
        book,
        history=history,
        handoff_tol=0.0 if settle else switch,
        budget=min(LBFGS_BUDGET, max_iter) if newton else max_iter,
        settle=settle,
    )
    if newton:
        finish = ~book.settled
        z, new_loss, new_norm, stalled = newton_finish(problem, z, finish, book, hessian=hessian)
        loss, grad_norm = torch.where(finish, new_loss, loss), torch.where(finish, new_norm, grad_norm)
    book.route = torch.where(stalled & ~book.settled, ROUTES.index("stalled"), book.route)
    book.stop(everyone)
    return z, loss, grad_norm


def _checked_options(x0, max_iter, history, method, hessian, grad_tol):
    """The options of `minimise_on_sphere` checked (a clear error otherwise), with the default gradient tolerance:
    (max_iter, history, method, hessian, grad_tol)."""
    if x0.ndim < 3:
        raise ValueError(f"x0 must have shape (*batch, N, d) with at least one batch dimension, got {tuple(x0.shape)}")
    max_iter = require_int("max_iter", max_iter, 1)
    history = require_int("history", history, 1)
    method, hessian = require_choice("method", method, METHODS), require_choice("hessian", hessian, HESSIANS)
    if x0.dtype not in GRAD_TOL:  # half precision: the losses compute in float32, the optimiser's state would not
        raise ValueError(f"x0 must be a float32 or float64 tensor, got {x0.dtype}")
    grad_tol = GRAD_TOL[x0.dtype] if grad_tol is None else require_positive_real("grad_tol", grad_tol)
    return max_iter, history, method, hessian, grad_tol


def _result(z, loss, grad_norm, book, shape) -> OptimResult:
    """The final flat tensors z (B, D), loss and grad_norm (B,) and the book's records in the input's
    shape (*batch, N, d)."""
    batch_shape = shape[:-2]
    return OptimResult(
        z=z.reshape(shape),
        loss=loss.reshape(batch_shape),
        grad_norm=grad_norm.reshape(batch_shape),
        converged=book.settled.reshape(batch_shape),
        iterations=int(book.counts.max()),
        config_iterations=book.counts.reshape(batch_shape),
        seconds=book.seconds.reshape(batch_shape),
        route=book.route.reshape(batch_shape),
        newton_iterations=book.newton_counts.reshape(batch_shape),
    )


def minimise_with_restarts(
    loss_fn: Callable[..., torch.Tensor],
    batch_shape: Sequence[int],
    n_vectors: int,
    dim: int,
    *,
    restarts: int = 1,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    **options: Any,  # keyword arguments of `minimise_on_sphere`, each of its own type
) -> OptimResult:
    """Run `restarts` random starts of every configuration in one batch and keep each one's best.

    `loss_fn` receives z of shape (restarts, *batch, N, d) and must broadcast over the leading
    restart dimension (the losses of `simulate.losses` do when their alpha/tau have the batch shape);
    with `indexed=True` it receives (z (k, N, d), index (k,)) with index into the flattened batch
    (the same for every restart). The per-configuration records (iterations, seconds) are those of
    the kept start; `iterations` is the slowest start's count.
    """
    restarts = require_int("restarts", restarts, 1)
    x0 = random_start((restarts, *tuple(batch_shape)), n_vectors, dim, seed=seed, dtype=dtype, device=device)
    if options.get("indexed"):
        n_configs = math.prod(batch_shape)
        derivatives = options.pop("derivatives", None)
        if derivatives is not None:
            options["derivatives"] = lambda z, index: derivatives(z, index % n_configs)
        result = minimise_on_sphere(lambda z, index: loss_fn(z, index % n_configs), x0, **options)
    else:
        result = minimise_on_sphere(loss_fn, x0, **options)
    best = result.loss.argmin(dim=0)  # (*batch,)

    def pick(tensor):
        chosen = best.to(tensor.device)
        index = chosen.reshape(1, *chosen.shape, *([1] * (tensor.ndim - 1 - chosen.ndim)))
        return torch.take_along_dim(tensor, index.expand(1, *tensor.shape[1:]), dim=0)[0]

    return OptimResult(
        z=pick(result.z),
        loss=pick(result.loss),
        grad_norm=pick(result.grad_norm),
        converged=pick(result.converged),
        iterations=result.iterations,
        config_iterations=pick(result.config_iterations),
        seconds=pick(result.seconds),
        route=pick(result.route),
        newton_iterations=pick(result.newton_iterations),
    )


def estimate_memory(
    n_configs: int,
    n_vectors: int,
    dim: int,
    *,
    dtype: torch.dtype = torch.float64,
    method: str = "newton",
    hessian: str = "auto",
    history: int = 10,
) -> int:
    """Approximate peak memory in bytes of `minimise_on_sphere` on n_configs configurations of N unit vectors
    in R^d (restarts count as configurations), for a loss built on the N x N similarities (every loss of
    `simulate.losses`).

    Model: the L-BFGS ring (2 x history x B x D) and about 12 work tensors of shape (B, D), D = N d; one loss
    evaluation with its backward holds about 12 tensors of shape (B, N, N); the Newton finish keeps the
    double-backward graph (about 40 of them) and 8 more (B, D) vectors for CG, plus the exact Hessians
    (B, D, D) and one chunk of their construction when they are built.
    """
    n_configs, n_vectors, dim = (
        require_int(name, value, 1)
        for name, value in (("n_configs", n_configs), ("n_vectors", n_vectors), ("dim", dim))
    )
    require_choice("method", method, METHODS)
    require_choice("hessian", hessian, HESSIANS)
    element = torch.empty((), dtype=dtype).element_size()
    n_variables = n_vectors * dim
    total = (2 * history + 12) * n_configs * n_variables * element
    total += (40 if method == "newton" else 12) * n_configs * n_vectors * max(n_vectors, dim) * element
    if method == "newton":
        total += 8 * n_configs * n_variables * element
        if hessian == "matrix" or (hessian == "auto" and n_variables <= EXACT_HESSIAN_MAX_VARIABLES):
            total += n_configs * n_variables**2 * element + HESSIAN_CHUNK_BYTES
    return int(total)


def typical_evaluations(max_iter: int, method: str = "newton") -> int:
    """Loss-and-gradient evaluations (or Hessian-vector products, which cost about as much) a configuration
    typically needs: L-BFGS up to its budget with ~1.2 evaluations per iteration, then ~30 Newton steps of
    ~25 products each (measured on the default phase diagram; a rough guide, not a bound)."""
    require_int("max_iter", max_iter, 1)
    if require_choice("method", method, METHODS) == "lbfgs":
        return int(1.2 * max_iter)
    return int(1.2 * min(LBFGS_BUDGET, max_iter) + 30 * 25)


def seconds_per_evaluation(
    loss_fn: Callable[..., torch.Tensor], x0: torch.Tensor, *, indexed: bool = False, repeats: int = 2
) -> float:
    """Wall time of one loss-and-gradient evaluation at x0 (*batch, N, d), best of `repeats` (a probe for
    sizing a run before it starts)."""
    problem = SphereProblem(loss_fn, x0.shape, indexed)
    z = normalise(x0.detach()).reshape(problem.n_configs, -1)
    rows = torch.ones(problem.n_configs, dtype=torch.bool, device=z.device)
    best = math.inf
    for _ in range(require_int("repeats", repeats, 1)):
        started = time.perf_counter()
        problem.evaluate(z, rows)
        if z.device.type == "cuda":
            torch.cuda.synchronize(z.device)
        best = min(best, time.perf_counter() - started)
    return best
