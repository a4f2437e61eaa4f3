"""The product of unit spheres on which `simulate.optimise` works: the geometry (normalisation, tangent
projection), the loss of many configurations as flat tensors with their Riemannian gradients and Hessians
(`SphereProblem`), and the per-configuration bookkeeping of a run (`Book`).

Split out of `simulate.optimise` (its module docstring explains the method); it re-exports the public names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from theory.arguments import require_int

#: How each configuration's run ended: index into this tuple is `OptimResult.route`.
ROUTES = ("lbfgs", "newton", "iteration cap", "stalled")


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows of x scaled to unit length: (..., N, d) -> (..., N, d)."""
    return x / x.norm(dim=-1, keepdim=True)


def random_start(
    batch_shape: Sequence[int],
    n_vectors: int,
    dim: int,
    *,
    seed: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Gaussian starting parameters (*batch, N, d) from a seeded generator (uniform directions on the sphere).

    Drawn on the CPU and moved to `device`, so a seed gives the same start on every device.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = (*tuple(batch_shape), require_int("n_vectors", n_vectors, 1), require_int("dim", dim, 1))
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


def tangent_projection(z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Project v onto the tangent space of the product of spheres at z: v - <v, z> z per vector."""
    return v - (v * z).sum(-1, keepdim=True) * z


def rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-configuration inner product of flat (B, D) tensors -> (B,)."""
    return (a * b).sum(-1)


def spread(like: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Values (k, ...) of the configurations `index` (k,) as a tensor like `like` (B, ...), zeros elsewhere."""
    return torch.zeros_like(like).index_copy(0, index, values.to(like.dtype))


def mask_at(like: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """A bool mask shaped like `like` (B,), True at `index` (k,)."""
    return torch.zeros(like.shape, dtype=torch.bool, device=like.device).index_fill_(0, index, True)


class SphereProblem:
    """The loss of every configuration as flat tensors (B, D), D = N d: values, gradients, Hessians.

    `rows` (B,) bool selects the configurations to evaluate; the others get zeros. In indexed mode
    only the selected configurations are passed to the loss.

    `derivatives` (indexed mode only), when given, replaces automatic differentiation: derivatives(z (k, N, d),
    index (k,)) -> (loss (k,), Euclidean gradient (k, N, d), Euclidean Hessian operator) of the same loss, in
    closed form, the operator called as hess(v (j, N, d), rows (j,)) for the configurations `rows` of the k
    (e.g. `simulate.loss_derivatives.combined_loss_derivatives`).
    """

    def __init__(self, loss_fn, shape, indexed: bool, derivatives=None):
        self.loss_fn, self.indexed, self.derivatives = loss_fn, indexed, derivatives
        self.batch_shape, (self.n_vectors, self.dim) = shape[:-2], shape[-2:]
        self.n_configs = math.prod(self.batch_shape)

    def _loss(self, z, index):
        """Loss of the configurations `index` (k,) at unit vectors z (k, N, d), shape checked -> (k,)."""
        if self.indexed:
            loss, expected = self.loss_fn(z, index), torch.Size((len(index),))
        else:
            loss, expected = self.loss_fn(z.reshape(*self.batch_shape, self.n_vectors, self.dim)), self.batch_shape
        if loss.shape != expected:
            raise ValueError(
                f"loss_fn must return one loss per configuration, shape {tuple(expected)}, got {tuple(loss.shape)}"
            )
        return loss.reshape(-1)

    def _select(self, z, rows):
        """(index, z of those rows as (k, N, d)); every row when not indexed."""
        index = rows.nonzero().squeeze(-1) if self.indexed else torch.arange(self.n_configs, device=z.device)
        return index, z[index].reshape(len(index), self.n_vectors, self.dim)

    def _scatter(self, like, index, values):
        return torch.zeros_like(like).index_copy(0, index, values)

    def evaluate(self, z, rows):
        """Loss (B,), Riemannian gradient (B, D) and its norm (B,) for the configurations `rows`."""
        index, zk = self._select(z, rows)
        loss, gradient = self._first_order(zk, index)
        loss_full = self._scatter(z[:, 0], index, loss)
        gradient_full = self._scatter(z, index, gradient)
        return loss_full, gradient_full, gradient_full.norm(dim=-1)

    def evaluate_at(self, z, index, points):
        """Loss (k,), Riemannian gradient (k, D) and its norm (k,) of the configurations `index` (k,) moved to
        `points` (k, D); z (B, D) holds the other configurations, which a loss that is not indexed also sees."""
        if not self.indexed:
            loss, gradient, norm = self.evaluate(z.index_copy(0, index, points), mask_at(z[:, 0], index))
            return loss[index], gradient[index], norm[index]
        loss, gradient = self._first_order(points.reshape(len(index), self.n_vectors, self.dim), index)
        return loss, gradient, gradient.norm(dim=-1)

    def _first_order(self, zk, index):
        """Loss (k,) and Riemannian gradient (k, D) at unit vectors zk (k, N, d) (the loss's configurations `index`)."""
        if self.derivatives is not None:
            loss, grad, _ = self._closed_form(zk, index)
        else:
            zk = zk.detach().requires_grad_(True)
            loss = self._loss(zk, index)
            (grad,) = torch.autograd.grad(loss.sum(), zk)
        return loss.detach(), tangent_projection(zk.detach(), grad).reshape(len(index), -1)

    def _closed_form(self, zk, index):
        """`derivatives` at zk (k, N, d), its shapes checked: loss (k,), Euclidean gradient (k, N, d), operator."""
        loss, grad, hess = self.derivatives(zk, index)
        if loss.shape != (len(index),) or grad.shape != zk.shape:
            raise ValueError(
                f"derivatives must return a loss of shape {(len(index),)} and a gradient of shape {tuple(zk.shape)}, "
                f"got {tuple(loss.shape)} and {tuple(grad.shape)}"
            )
        return loss, grad, hess

    def second_order(self, z, rows, hessian: str):
        """Loss, Riemannian gradient and norm as `evaluate`, and the Riemannian Hessian operator of the
        configurations `rows` alone: hess(v) for tangent v (k, D) -> (k, D), k = rows.sum(), its rows those
        of `rows` in order (the solvers work on the configurations still running only).

        hess(v, part) with part (j,) indices into the k rows and v (j, D) is the operator of those configurations
        alone (the closed-form and matrix products then compute only those). The operator keeps the rows of the
        last part it was given, recognised by identity: a part must not be changed in place between calls.

        hessian="hvp": each call is the closed-form product of `derivatives` when given, else one
        double-backward pass through the loss.
        hessian="matrix": the exact Hessian of every selected configuration is built here, as (k, D, D),
        with batched backward passes over the coordinate directions; each call is then a matrix product.
        """
        index, zk = self._select(z, rows)
        point = zk.detach()
        if self.derivatives is not None and hessian == "hvp":
            loss, egrad, euclidean = self._closed_form(point, index)  # indexed: the loss's batch is zk
        else:
            loss, egrad, euclidean = self._autograd_second_order(point, index, hessian)
        radial = (egrad * point).sum(-1, keepdim=True)  # (k, N, 1) <g_z, z> per vector
        gradient = (egrad - radial * point).reshape(len(index), -1)
        # Positions of the selected configurations in the loss's batch: all of it when indexed, else `rows`.
        selected = torch.arange(len(index), device=z.device) if self.indexed else rows.nonzero().squeeze(-1)

        last = {}  # the rows of the last part asked for: CG asks for the same part until a configuration stops

        def hess(v, part=None):
            j = v.shape[0]
            v = v.reshape(j, self.n_vectors, self.dim)
            if "rows" not in last or last["part"] is not part:
                positions = selected if part is None else selected[part]
                last.update(part=part, rows=(positions, point[positions], radial[positions]))
            positions, at_point, at_radial = last["rows"]
            hv = tangent_projection(at_point, euclidean(v, positions)) - at_radial * v
            return hv.reshape(j, -1)

        loss_full = self._scatter(z[:, 0], index, loss.detach())
        gradient_full = self._scatter(z, index, gradient)
        return loss_full, gradient_full, gradient_full.norm(dim=-1), hess

    def _autograd_second_order(self, point, index, hessian):
        """Loss (k,), Euclidean gradient (k, N, d) and Hessian operator at point (k, N, d) by automatic
        differentiation: the exact matrix (hessian="matrix") or double backward ("hvp"). The operator takes
        v (j, N, d) and the positions (j,) of its configurations in the loss's batch."""
        zk = point.clone().requires_grad_(True)
        loss = self._loss(zk, index)
        (egrad,) = torch.autograd.grad(loss.sum(), zk, create_graph=True)
        if not egrad.requires_grad:  # the gradient does not depend on z (a loss linear in z): the Hessian is 0

            def euclidean(v, positions):
                return torch.zeros_like(v)
        elif hessian == "matrix":
            matrix = hessian_matrix(egrad, zk)  # (k, D, D)

            def euclidean(v, positions):
                return (matrix[positions] @ v.reshape(len(positions), -1, 1)).reshape(v.shape)
        else:

            def euclidean(v, positions):  # one pass over the whole batch: the others get a zero direction
                padded = torch.zeros_like(zk).index_copy(0, positions, v)
                return torch.autograd.grad(egrad, zk, grad_outputs=padded, retain_graph=True)[0][positions]

        return loss.detach(), egrad.detach(), euclidean


#: Memory for one chunk of the batched backward passes that build an exact Hessian (bytes, approximate).
HESSIAN_CHUNK_BYTES = 2**28


def hessian_matrix(egrad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean Hessians (k, D, D) of k independent losses, from their gradient egrad (k, N, d)
    built with create_graph: column j is the backward pass of egrad along coordinate direction e_j,
    many directions per call (`is_grads_batched`), in chunks that bound the memory."""
    k, n_vectors, dim = z.shape
    n_variables = n_vectors * dim
    # The backward of one direction holds a few (k, N, N) intermediates of the loss.
    per_direction = 8 * k * n_vectors * max(n_vectors, dim) * z.element_size()
    chunk = max(1, min(n_variables, HESSIAN_CHUNK_BYTES // per_direction))
    identity = torch.eye(n_variables, dtype=z.dtype, device=z.device)
    columns = []
    for start in range(0, n_variables, chunk):
        directions = identity[start : start + chunk].reshape(-1, 1, n_vectors, dim).expand(-1, k, -1, -1)
        (rows,) = torch.autograd.grad(egrad, z, grad_outputs=directions, retain_graph=True, is_grads_batched=True)
        columns.append(rows.reshape(-1, k, n_variables))
    return torch.cat(columns).permute(1, 2, 0).contiguous()  # (k, D, D), symmetric up to rounding


class Book:
    """Per-configuration bookkeeping shared by both phases: iteration counts, the last step's decrease,
    when and how each configuration stopped."""

    def __init__(self, problem, z, *, grad_tol, step_tol, max_iter, progress):
        n_configs = z.shape[0]
        self.problem, self.grad_tol, self.step_tol, self.max_iter = problem, grad_tol, step_tol, max_iter
        self.progress, self.started, self.iteration = progress, time.perf_counter(), 0
        self.counts = torch.zeros(n_configs, dtype=torch.long, device=z.device)
        self.newton_counts = torch.zeros_like(self.counts)
        self.last_decrease = z.new_zeros(n_configs)  # no step taken yet
        self.settled = torch.zeros(n_configs, dtype=torch.bool, device=z.device)
        self.route = torch.full((n_configs,), ROUTES.index("iteration cap"), dtype=torch.long, device=z.device)
        self.seconds = torch.full((n_configs,), math.nan, dtype=torch.float64)
        self.eps = torch.finfo(z.dtype).eps

    def retract(self, z):  # back onto the spheres: each vector renormalised
        shape = (z.shape[0], self.problem.n_vectors, self.problem.dim)
        return normalise(z.reshape(shape)).reshape(z.shape[0], -1)

    def tangent(self, z, v):
        shape = (z.shape[0], self.problem.n_vectors, self.problem.dim)
        return tangent_projection(z.reshape(shape), v.reshape(shape)).reshape(z.shape[0], -1)

    def slack(self, loss):
        """Rounding slack: near the optimum, changes below a few ulps of the loss are noise."""
        return 8 * self.eps * loss.abs().clamp(min=1.0)

    def record_step(self, running, moved, decrease):
        self.counts += running.long()
        self.last_decrease = torch.where(moved, decrease, self.last_decrease)

    def settle(self, running, loss, grad_norm):
        """Mark and return the configurations of `running` that pass the convergence test: gradient norm
        <= grad_tol and the last step changed the loss by at most step_tol max(1, |loss|) (module docstring)."""
        done = running & (grad_norm <= self.grad_tol)
        done &= self.last_decrease.abs() <= self.step_tol * loss.abs().clamp(min=1.0)
        self.settled |= done
        self.route = torch.where(done, ROUTES.index("lbfgs"), self.route)
        self.stop(done)
        return done

    def stop(self, rows):
        fresh = rows.cpu() & self.seconds.isnan()
        self.seconds[fresh] = time.perf_counter() - self.started

    def tick(self):
        self.iteration += 1
        if self.progress is not None:
            self.progress(self.iteration, int(self.settled.sum()))
