"""The regularised Riemannian Newton finish of `simulate.optimise` (its module docstring says why and how):
batched conjugate gradients for the shifted Newton system (`shifted_cg`) and the Newton iteration (`newton_finish`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from simulate.sphere import ROUTES, Book, SphereProblem, rowdot, spread

_TR_ACCEPT = 0.1  # smallest ratio of actual to predicted decrease of a step taken (Manopt's default)
_LAMBDA_MIN = 1e-3  # smallest regularisation mu / |g| of a Newton step
# Growth of lambda after a refused step: x4, or x16 when the loss rose (ratio < 0: the model is off by more
# than a short step fixes). Measured: x16 cut the Hessian products by 3-22% and the Newton steps by 1-13% on
# the benchmark grid and eleven 16 x 16 grids (m n p <= 64), all converged as before; on the benchmark grid
# x8 and x64 cut fewer products than x16.
_LAMBDA_UP, _LAMBDA_UP_ROSE = 4.0, 16.0
_MAX_STEP = 1.0  # longest Newton step (norm over all N vectors, radians to first order)
_TR_RHO_REGULARISATION = 1e3  # ratio computed with this many ulps of slack: decreases at rounding level still count
_CG_KAPPA, _CG_THETA = 0.1, 0.0  # inner stopping |r| <= |g| min(|g|^theta, kappa)
_CORRECTIONS = 2  # second-order corrections of a trial point at most (measured: 2 is fastest, module docstring)
# Bound on CG iterations per solve: a truncated CG step is still a descent step. Measured on the default benchmark
# grid: 30 instead of 50 cut the products by 26% (rows 15%) for 1% more Newton steps; 20 took 13% more steps.
_CG_MAX_INNER = 30
# ... and per second-order correction, which only has to resolve the stiff directions (CG's first products find
# the largest curvatures first). Measured on the benchmark grid and eleven 16 x 16 grids (m n p <= 64), against
# 30: 18-48% fewer products (3-28% fewer rows), Newton steps -19% to +2%, the slowest configuration's at most 128
# (30: up to 154); a cap of 2 did as well on average but took 239 and 354 steps on two of the grids, 1 far worse.
_CORRECTION_CG_MAX_INNER = 3


def shifted_cg(
    hess: Callable[..., torch.Tensor],
    gradient: torch.Tensor,
    shift: torch.Tensor,
    running: torch.Tensor,
    max_products: int = _CG_MAX_INNER,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conjugate gradients for the regularised Newton system (H + shift I) s = -g, batched, at most
    `max_products` Hessian products per configuration (a truncated CG step is still a descent step).

    gradient (B, D), shift (B,), running (B,) bool (the others get s = 0); hess(v, part) is H on the
    configurations `part` (j,) alone, v (j, D): each iteration computes only the configurations still
    iterating. A configuration stops when its residual is below |g| min(|g|^theta, kappa) (fast enough for
    quadratic convergence), or when it meets a direction of non-positive curvature of H + shift I; it then
    keeps the iterate so far (the scaled gradient step -g / shift if it was the first). Returns s, H s
    (B, D) and the configurations that met non-positive curvature (B,) (their shift was too small).
    """
    s, hs = torch.zeros_like(gradient), torch.zeros_like(gradient)
    g_norm = gradient.norm(dim=-1)
    negative = torch.zeros_like(running)
    tiny = torch.finfo(gradient.dtype).tiny
    part = (running & (g_norm > 0)).nonzero().squeeze(-1)  # the configurations still iterating, in order
    if not len(part):
        return s, hs, negative
    # Their state, compact: iterate and its product, residual, search direction, |r|^2, shift and CG target.
    s_part, hs_part, r = torch.zeros_like(gradient[part]), torch.zeros_like(gradient[part]), gradient[part]
    direction, rr, shift_part = -r, g_norm[part] ** 2, shift[part, None]
    target = (g_norm[part] * torch.clamp(g_norm[part] ** _CG_THETA, max=_CG_KAPPA)) ** 2  # on |r|^2
    for iteration in range(max_products):
        h_dir = hess(direction, part)
        shifted = h_dir + shift_part * direction  # (H + shift I) direction
        curvature = rowdot(direction, shifted)
        bad = curvature <= 0
        step = torch.where(bad, 0.0, rr / curvature.clamp(min=tiny))[:, None]  # 0: a bad row keeps its iterate
        if iteration == 0:  # a bad row has no iterate yet: the gradient step of the regularised model
            step = torch.where(bad[:, None], 1 / shift_part, step)
        s_part, hs_part = s_part + step * direction, hs_part + step * h_dir
        r = r + step * shifted
        rr_next = rowdot(r, r)
        going = ~bad & (rr_next > target)
        if not going.all():  # those that stop leave their iterate and the compact state
            negative[part[bad]] = True
            s[part[~going]], hs[part[~going]] = s_part[~going], hs_part[~going]
            if not going.any():
                return s, hs, negative
            part, s_part, hs_part, r = part[going], s_part[going], hs_part[going], r[going]
            direction, rr, rr_next = direction[going], rr[going], rr_next[going]
            shift_part, target = shift_part[going], target[going]
        direction = -r + (rr_next / rr.clamp(min=tiny))[:, None] * direction
        rr = rr_next
    s[part], hs[part] = s_part, hs_part
    return s, hs, negative


def _trial_step(problem, z, index, active, current, hess, shift, book):
    """The regularised Newton step of the configurations `index` (k,) of z (B, D), those of them marked `active`
    (k,) bool, the others left where they are: s from CG on (H + shift I) s = -g, at most `_MAX_STEP` long, the
    retracted trial point, and its second-order corrections (`_CORRECTIONS` at most) while the trial's gradient
    is larger than the current one (`_corrected`).
    current: their (loss (k,), gradient (k, D)); hess: their Hessian operator on (k, D); shift (k,).
    Returns, all for the k configurations: the trial point (k, D), its loss and gradient norm, the ratio of
    actual to predicted decrease (model <g, s> + <s, H s>/2), whether the decrease is above rounding level,
    and whether CG met non-positive curvature."""
    loss, gradient = current
    eps = torch.finfo(z.dtype).eps
    s, hs, negative = shifted_cg(hess, gradient, shift.clamp(min=torch.finfo(z.dtype).tiny), active)
    s, hs = capped_step(s, hs, _MAX_STEP)
    predicted = model_decrease(gradient, s, hs)
    start = z[index]
    trial = torch.where(active[:, None], book.retract(start + s), start)
    trial_loss, trial_gradient, trial_norm = _evaluated(problem, z, index, active, trial)
    regulariser = rounding_slack(loss, eps)
    for _ in range(_CORRECTIONS):
        off_valley = off_the_valley(active, trial_norm, gradient)
        if not off_valley.any():
            break
        trial, trial_loss, trial_gradient, trial_norm = _corrected(
            problem, z, index, hess, (trial, trial_loss, trial_gradient, trial_norm), off_valley, book, regulariser
        )
    ratio, decisive = decrease_ratio(loss, trial_loss, predicted, regulariser)
    return trial, trial_loss, trial_norm, ratio, decisive, negative


def step_taken(
    ratio: torch.Tensor, decisive: torch.Tensor, trial_norm: torch.Tensor, grad_norm: torch.Tensor
) -> torch.Tensor:
    """Whether a trial step is taken (k,): its decrease ratio is above `_TR_ACCEPT`, and its decrease is beyond
    rounding (`decisive`) or, if not, it lowers the gradient norm (a change of the loss at rounding level says
    nothing; measured: otherwise long steps along the flat directions of the minima undo the convergence)."""
    return (ratio > _TR_ACCEPT) & (decisive | (trial_norm < grad_norm))


def off_the_valley(active: torch.Tensor, trial_norm: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """The configurations `active` (k,) whose trial point's gradient norm (k,) is larger than their current
    gradient's (k, D): their step left the valley of the stiff directions, and they get a correction."""
    return active & (trial_norm > gradient.norm(dim=-1))


def capped_step(s: torch.Tensor, hs: torch.Tensor, longest: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps s and their products H s (k, D), each row scaled down (both alike) to at most `longest` long."""
    scale = (longest / s.norm(dim=-1).clamp(min=longest))[:, None]  # <= 1
    return s * scale, hs * scale


def model_decrease(gradient: torch.Tensor, s: torch.Tensor, hs: torch.Tensor) -> torch.Tensor:
    """The decrease the quadratic model predicts for the steps s: -(<g, s> + <s, H s>/2) per row, (k, D) -> (k,)."""
    return -(rowdot(gradient, s) + 0.5 * rowdot(s, hs))


def rounding_slack(loss: torch.Tensor, eps: float) -> torch.Tensor:
    """Manopt's regularisation of the decrease ratio: `_TR_RHO_REGULARISATION` ulps of max(1, |loss|) (k,)."""
    return _TR_RHO_REGULARISATION * eps * loss.abs().clamp(min=1.0)


def decrease_ratio(
    loss: torch.Tensor, trial_loss: torch.Tensor, predicted: torch.Tensor, slack: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ratio of actual to predicted decrease (a predicted increase counts as 0), `slack` added to both: near
    a minimum both are at rounding level and must still count. Also whether the actual decrease is beyond the
    slack (decisive). All (k,)."""
    actual = loss - trial_loss
    return (actual + slack) / (predicted.clamp(min=0) + slack), actual > slack


def _evaluated(problem, z, index, active, points):
    """Loss, Riemannian gradient and its norm of the configurations `index` (k,) of z (B, D) moved to `points`
    (k, D), evaluated where `active` (k,): (k,), (k, D), (k,) (zeros elsewhere)."""
    where = active.nonzero().squeeze(-1)
    loss, gradient, norm = problem.evaluate_at(z, index[where], points[where])
    column = points[:, 0]
    return spread(column, where, loss), spread(points, where, gradient), spread(column, where, norm)


def _corrected(problem, z, index, hess, trial_point, rows, book, regulariser):
    """The second-order correction of the trial points of `rows` (module docstring of `simulate.optimise`): one
    more Newton step from each, with z's Hessian and the shift |g_trial|, which resolves the stiff directions
    and leaves those of curvature below |g_trial| almost where they are. A corrected point replaces its trial
    where `correction_wins` (lower loss beyond `regulariser`, or equal with a lower gradient). All tensors are of
    the k configurations `index` of z: trial_point is (trial (k, D), its loss (k,), gradient (k, D), gradient
    norm (k,)) and rows (k,) bool; returns them corrected."""
    trial, trial_loss, trial_gradient, trial_norm = trial_point
    tiny = torch.finfo(z.dtype).tiny
    step, _, _ = shifted_cg(
        hess, book.tangent(z[index], trial_gradient), trial_norm.clamp(min=tiny), rows, _CORRECTION_CG_MAX_INNER
    )
    corrected = torch.where(rows[:, None], book.retract(trial + book.tangent(trial, step)), trial)
    corrected_loss, corrected_gradient, corrected_norm = _evaluated(problem, z, index, rows, corrected)
    better = rows & correction_wins((trial_loss, trial_norm), (corrected_loss, corrected_norm), regulariser)
    return (
        torch.where(better[:, None], corrected, trial),
        torch.where(better, corrected_loss, trial_loss),
        torch.where(better[:, None], corrected_gradient, trial_gradient),
        torch.where(better, corrected_norm, trial_norm),
    )


def correction_wins(
    trial: tuple[torch.Tensor, torch.Tensor], corrected: tuple[torch.Tensor, torch.Tensor], regulariser: torch.Tensor
) -> torch.Tensor:
    """Whether a corrected point replaces its trial point (`_corrected`): its loss is lower by more than
    `regulariser`, or equal to the trial's within it and its gradient norm strictly lower.
    trial, corrected: (loss (k,), gradient norm (k,)) each; regulariser (k,) or scalar. Returns (k,) bool."""
    (trial_loss, trial_norm), (corrected_loss, corrected_norm) = trial, corrected
    lower = corrected_loss < trial_loss - regulariser
    level = (corrected_loss - trial_loss).abs() <= regulariser
    return lower | (level & (corrected_norm < trial_norm))


def updated_lambda(
    lam: torch.Tensor, ratio: torch.Tensor, accepted: torch.Tensor, running: torch.Tensor, negative: torch.Tensor
) -> torch.Tensor:
    """Nielsen's update of lambda (B,) for the configurations `running` (B,) bool: a taken (`accepted`) step
    multiplies it by max(1/3, 1 - (2 rho - 1)^3), rho the decrease ratio clamped to [0, 1] (by 1/3 after a
    perfect model, by less the poorer the model), down to `_LAMBDA_MIN`; a refused one, or one that met
    non-positive curvature (`negative`), multiplies it by 4 (after the first rule, for a taken one), and a
    refused one that raised the loss (rho < 0) by 16."""
    relief = (1 - (2 * ratio.clamp(0, 1) - 1) ** 3).clamp(min=1 / 3)
    lam = torch.where(accepted, (lam * relief).clamp(min=_LAMBDA_MIN), lam)
    growth = torch.where(~accepted & (ratio < 0), _LAMBDA_UP_ROSE, _LAMBDA_UP)
    return torch.where(running & (~accepted | negative), growth * lam, lam)


def newton_finish(
    problem: SphereProblem, z: torch.Tensor, running: torch.Tensor, book: Book, *, hessian: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched regularised Riemannian Newton on the configurations `running`, until each is settled, has
    used up its iterations (`book.max_iter`) or its regularisation has grown without bound (stalled).
    Returns z, loss, grad_norm (at the final points) and the stalled mask.

    Each iteration: loss, gradient and Hessian operator at z; the settling test; for the others the step
    s solving (H + mu I) s = -g by CG with mu = lambda |g| (module docstring), at most `_MAX_STEP` long;
    the loss at the retracted trial point, after its second-order correction where its gradient grew
    (`_corrected`); the ratio of actual to predicted decrease (model <g, s> + <s, H s>/2); the step taken if
    the ratio is good enough; lambda updated from the ratio (`updated_lambda`). Only the configurations still
    running are computed.
    """
    n_configs = z.shape[0]
    lam = z.new_ones(n_configs)
    stalled = torch.zeros_like(running)
    eps = torch.finfo(z.dtype).eps
    loss, gradient, grad_norm = z.new_zeros(n_configs), torch.zeros_like(z), z.new_zeros(n_configs)
    fresh = torch.zeros_like(running)  # loss and gradient are those of the current z
    handed = running.clone()
    while True:
        running = running & (book.counts < book.max_iter)
        if not running.any():
            break
        index = running.nonzero().squeeze(-1)  # the configurations of this iteration, in order
        loss_k, gradient_k, norm_k, hess = problem.second_order(z, running, hessian)
        loss = torch.where(running, loss_k, loss)
        gradient = torch.where(running[:, None], gradient_k, gradient)
        grad_norm = torch.where(running, norm_k, grad_norm)
        fresh |= running
        first_look = running & (book.newton_counts == 0)
        done = book.settle(running, loss, grad_norm)
        book.route = torch.where(done & ~first_look, ROUTES.index("newton"), book.route)
        running = running & ~done
        if not running.any():
            break
        active = running[index]
        shift = lam * grad_norm
        trial, trial_loss, trial_norm, ratio, decisive, negative = _trial_step(
            problem, z, index, active, (loss[index], gradient[index]), hess, shift[index], book
        )
        taken = active & step_taken(ratio, decisive, trial_norm, grad_norm[index])
        accepted, negative = spread(running, index, taken), spread(running, index, negative)
        lam = updated_lambda(lam, spread(lam, index, ratio), accepted, running, negative)
        z = z.index_copy(0, index[taken], trial[taken])
        book.record_step(running, accepted, spread(loss, index, loss[index] - trial_loss))
        book.newton_counts += running.long()
        fresh &= ~accepted
        blown = running & ~accepted & (shift > 1 / eps)  # no step of any length decreases the loss
        stalled |= blown
        running = running & ~blown
        book.tick()
    # Stopped by the cap right after a step, or before the first look: evaluate the final point.
    stale = handed & ~fresh
    if stale.any():
        new_loss, _, new_norm = problem.evaluate(z, stale)
        loss, grad_norm = torch.where(stale, new_loss, loss), torch.where(stale, new_norm, grad_norm)
    return z, loss, grad_norm, stalled
