"""Minimise losses over free unit embeddings, many configurations at once (DESIGN §6, route 2a).

Each configuration (say one (alpha, tau) point of a phase diagram) owns N free
vectors; all configurations live in one tensor of shape (*batch, N, d) and are
minimised together by one batched L-BFGS.

Why this method. The free-embedding problems here are small (N d up to a few
thousand), smooth and, at small tau, badly conditioned (curvature ~ 1/tau^2 in
some directions, ~1 in others). First-order methods (the papers' Adam with a
fixed step) need thousands of steps and stall or overflow at small tau; L-BFGS
adapts to the curvature and reaches float64 accuracy in a few hundred steps.
torch.optim.LBFGS would treat the whole batch as one problem (one line search,
curvature pairs mixing configurations, one stopping rule), so this module runs
an independent L-BFGS per configuration — two-loop recursion, Armijo
backtracking and stopping all done with batched tensor operations — so one
loss evaluation serves every configuration.

Geometry: Riemannian L-BFGS on the product of unit spheres. Each step moves
along a tangent direction and retracts (every vector renormalised); memory pairs
are carried to the new point by projection onto its tangent space. (An
unconstrained x with z = x/|x| looked simpler but let some rows grow to norm
~1e4 after a long first step, which scales their gradients by 1/|x| and wrecks
the conditioning: thousands of iterations instead of hundreds.)

Convergence test: the Riemannian gradient on the product of spheres,
g_R = g_z - <g_z, z> z for each vector, with g_z = dL/dz; a configuration is
`converged` when ||g_R|| (Frobenius over its N vectors) <= grad_tol. Converged
configurations are frozen while the rest continue.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch

from theory.arguments import require_int, require_positive_real

#: Default stopping tolerance on the Riemannian gradient norm, per dtype.
GRAD_TOL = {torch.float64: 1e-9, torch.float32: 1e-4}

_ARMIJO = 1e-4  # sufficient-decrease constant
_MAX_BACKTRACKS = 30
_CURVATURE_EPS = 1e-12  # pairs with s.y below this (relative) are skipped: no positive curvature seen


@dataclass(frozen=True)
class OptimResult:
    """Result of a batched minimisation; every tensor has the batch shape of the input except `z`."""

    z: torch.Tensor  # (*batch, N, d) unit vectors
    loss: torch.Tensor  # (*batch,)
    grad_norm: torch.Tensor  # (*batch,) Riemannian gradient norm at z
    converged: torch.Tensor  # (*batch,) bool: grad_norm <= grad_tol
    iterations: int  # iterations run (the slowest configuration's count)


@contextlib.contextmanager
def single_thread():
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


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows of x scaled to unit length: (..., N, d) -> (..., N, d)."""
    return x / x.norm(dim=-1, keepdim=True)


def random_start(batch_shape, n_vectors: int, dim: int, *, seed: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Gaussian starting parameters (*batch, N, d) from a seeded generator (uniform directions on the sphere)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = (*tuple(batch_shape), require_int("n_vectors", n_vectors, 1), require_int("dim", dim, 1))
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


def _tangent(z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Project v onto the tangent space of the product of spheres at z: v - <v, z> z per vector."""
    return v - (v * z).sum(-1, keepdim=True) * z


def _loss_and_gradient(loss_fn, z: torch.Tensor, shape):
    """Loss (B,) and Riemannian gradient (B, D) at flat unit vectors z (B, D); `shape` = (*batch, N, d)."""
    z = z.detach().reshape(shape).requires_grad_(True)
    loss = loss_fn(z)
    if loss.shape != torch.Size(shape[:-2]):
        raise ValueError(f"loss_fn must return one loss per configuration, shape {tuple(shape[:-2])}, got {tuple(loss.shape)}")
    (grad,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach().reshape(-1), _tangent(z.detach(), grad).reshape(math.prod(shape[:-2]), -1)


def _two_loop(gradient, S, Y, rho, gamma, newest: int):
    """L-BFGS direction -H g per configuration.

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


def minimize_on_sphere(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    *,
    max_iter: int = 3000,
    grad_tol: float | None = None,
    history: int = 10,
    indexed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> OptimResult:
    """Minimise independent losses over unit vectors, all configurations in one batch.

    Args:
        loss_fn: maps unit vectors z (*batch, N, d) to losses (*batch,); configuration b's
            loss may depend only on z[b] (so the gradient of the sum is per configuration).
        x0: starting parameters (*batch, N, d), any nonzero rows; dtype and device are kept.
        max_iter: iteration cap; configurations still above grad_tol then report converged=False.
        grad_tol: tolerance on the Riemannian gradient norm (default `GRAD_TOL[dtype]`).
        history: L-BFGS memory per configuration.
        indexed: if True, `loss_fn(z, index)` is called with only the configurations still
            running, z of shape (k, N, d) and `index` (k,) their flat positions in the batch;
            converged configurations then cost nothing (the batch shrinks as they finish).
        progress: optional callback(iteration, n_converged), e.g. to drive a progress bar.
    """
    if x0.ndim < 3:
        raise ValueError(f"x0 must have shape (*batch, N, d) with at least one batch dimension, got {tuple(x0.shape)}")
    max_iter = require_int("max_iter", max_iter, 1)
    history = require_int("history", history, 1)
    grad_tol = GRAD_TOL.get(x0.dtype, 1e-4) if grad_tol is None else require_positive_real("grad_tol", grad_tol)
    batch_shape, (n_vectors, dim) = x0.shape[:-2], x0.shape[-2:]
    n_configs = math.prod(batch_shape)

    def evaluate(z, rows):
        """Loss, Riemannian gradient and its norm for the configurations `rows` (bool mask), zeros elsewhere."""
        if not indexed:
            loss, gradient = _loss_and_gradient(loss_fn, z, x0.shape)
        else:
            index = rows.nonzero().squeeze(-1)
            part = _loss_and_gradient(lambda v: loss_fn(v, index), z[index], (len(index), n_vectors, dim))
            loss = z.new_zeros(n_configs).index_copy(0, index, part[0])
            gradient = torch.zeros_like(z).index_copy(0, index, part[1])
        return loss, gradient, gradient.norm(dim=-1)

    def retract(z):  # back onto the spheres: each vector renormalised
        return normalise(z.reshape(n_configs, n_vectors, dim)).reshape(n_configs, -1)

    def tangent(z, v):
        shape = (n_configs, n_vectors, dim)
        return _tangent(z.reshape(shape), v.reshape(shape)).reshape(n_configs, -1)

    z = retract(x0.detach().reshape(n_configs, -1).clone())
    S = z.new_zeros(n_configs, history, n_vectors * dim)
    Y = torch.zeros_like(S)
    rho = z.new_zeros(n_configs, history)
    gamma = z.new_ones(n_configs)
    newest = history - 1
    loss, gradient, grad_norm = evaluate(z, torch.ones(n_configs, dtype=torch.bool, device=z.device))
    active = grad_norm > grad_tol
    iteration = 0
    while active.any() and iteration < max_iter:
        iteration += 1
        # Memory pairs live in earlier tangent spaces: the direction is projected onto the current one.
        direction = tangent(z, _two_loop(gradient, S, Y, rho, gamma, newest))
        slope = (direction * gradient).sum(-1)
        not_descent = slope >= 0
        direction = torch.where(not_descent[:, None], -gradient, direction)
        rho = torch.where(not_descent[:, None], torch.zeros_like(rho), rho)  # forget a misleading memory
        slope = (direction * gradient).sum(-1)
        first = rho.abs().sum(-1) == 0  # no curvature information yet: keep the first step short
        step = torch.where(first, torch.clamp(0.1 / direction.norm(dim=-1), max=1.0), torch.ones_like(slope))
        new_z, new_loss, new_gradient, new_grad_norm = z, loss, gradient, grad_norm
        pending = active.clone()
        # Rounding slack: near the optimum, decreases below a few ulps of the loss are noise.
        slack = 8 * torch.finfo(z.dtype).eps * loss.abs().clamp(min=1.0)
        for _ in range(_MAX_BACKTRACKS):
            trial = torch.where(pending[:, None], retract(z + step[:, None] * direction), new_z)
            trial_loss, trial_gradient, trial_norm = evaluate(trial, pending)
            accepted = pending & (trial_loss <= loss + _ARMIJO * step * slope + slack)
            new_z = torch.where(accepted[:, None], trial, new_z)
            new_loss = torch.where(accepted, trial_loss, new_loss)
            new_gradient = torch.where(accepted[:, None], trial_gradient, new_gradient)
            new_grad_norm = torch.where(accepted, trial_norm, new_grad_norm)
            pending = pending & ~accepted
            if not pending.any():
                break
            step = torch.where(pending, step / 2, step)
        moved = active & ~pending  # configurations whose line search failed keep their point
        # Curvature pair transported to the new point by projection.
        s = tangent(new_z, step[:, None] * direction)
        y = new_gradient - tangent(new_z, gradient)
        sy = (s * y).sum(-1)
        usable = moved & (sy > _CURVATURE_EPS * (s.norm(dim=-1) * y.norm(dim=-1)).clamp(min=torch.finfo(z.dtype).tiny))
        # One ring slot per iteration for every configuration; a skipped pair gets rho = 0.
        newest = (newest + 1) % history
        S[:, newest], Y[:, newest] = s, y
        rho[:, newest] = torch.where(usable, 1 / sy.clamp(min=1e-300), 0.0)
        gamma = torch.where(usable, sy / (y * y).sum(-1).clamp(min=1e-300), gamma)
        z, loss, gradient, grad_norm = new_z, new_loss, new_gradient, new_grad_norm
        stalled = active & pending
        active = active & (grad_norm > grad_tol) & ~stalled
        if progress is not None:
            progress(iteration, int((grad_norm <= grad_tol).sum()))
    return OptimResult(
        z=z.reshape(*batch_shape, n_vectors, dim),
        loss=loss.reshape(batch_shape),
        grad_norm=grad_norm.reshape(batch_shape),
        converged=(grad_norm <= grad_tol).reshape(batch_shape),
        iterations=iteration,
    )


def minimize_with_restarts(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    batch_shape,
    n_vectors: int,
    dim: int,
    *,
    restarts: int = 1,
    seed: int = 0,
    dtype=torch.float64,
    device=None,
    **options,
) -> OptimResult:
    """Run `restarts` random starts of every configuration in one batch and keep each one's best.

    `loss_fn` receives z of shape (restarts, *batch, N, d) and must broadcast over the leading
    restart dimension (the losses of `simulate.losses` do when their alpha/tau have the batch shape);
    with `indexed=True` it receives (z (k, N, d), index (k,)) with index into the flattened batch
    (the same for every restart).
    """
    restarts = require_int("restarts", restarts, 1)
    x0 = random_start((restarts, *tuple(batch_shape)), n_vectors, dim, seed=seed, dtype=dtype, device=device)
    if options.get("indexed"):
        n_configs = math.prod(batch_shape)
        result = minimize_on_sphere(lambda z, index: loss_fn(z, index % n_configs), x0, **options)
    else:
        result = minimize_on_sphere(loss_fn, x0, **options)
    best = result.loss.argmin(dim=0)  # (*batch,)

    def pick(tensor):
        index = best.reshape(1, *best.shape, *([1] * (tensor.ndim - 1 - best.ndim)))
        return torch.take_along_dim(tensor, index.expand(1, *tensor.shape[1:]), dim=0)[0]

    return OptimResult(
        z=pick(result.z),
        loss=pick(result.loss),
        grad_norm=pick(result.grad_norm),
        converged=pick(result.converged),
        iterations=result.iterations,
    )
