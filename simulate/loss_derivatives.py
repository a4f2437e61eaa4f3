"""Paper B's combined loss (`simulate.losses.combined_loss`) with its gradient and Hessian in closed form, for
the free-embedding optimiser (docs/losses.md#combined-loss-gradient-and-hessian-in-closed-form): one
Hessian-vector product is a few batched matrix products, no graph. Checked against automatic differentiation
in tests/test_loss_derivatives.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from simulate.losses import combined_masks, require_ids
from theory.arguments import VARIANTS, require_choice


def _pair_weights(positive: Tensor, variant: str) -> Tensor:
    """T (N, N) with L_term = sum_ab T_ab (-logp(a, b)) for the positives `positive` (N, N) of one term of
    `simulate.losses.combined_loss_terms`: 1 / (number of pairs) on every pair ("instance"), 1 / (|P(a)|
    times the number of anchors with a positive) on the pairs of anchor a ("supcon")."""
    weight = positive.to(torch.float64)
    if variant == "instance":
        return weight / weight.sum()
    count = weight.sum(-1, keepdim=True)
    return weight / (count.clamp(min=1) * (count > 0).sum())


def _pair_layout(labels: Tensor, instances: Tensor, variant: str) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """The layout of `combined_loss_derivatives`, checked as `simulate.losses.combined_loss_terms` checks it:
    the pair weights T_sup, T_self (N, N), the pairs either term weighs, and the entries left out of the
    denominators (None for the instance variant)."""
    require_choice("variant", variant, VARIANTS)
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        raise ValueError(f"labels must be an integer tensor of shape (N,), got {labels!r}")
    n = labels.shape[0]
    labels = require_ids("labels", labels, n, None)
    instances = require_ids("instances", instances, n, labels.device)
    same_instance, supervised = combined_masks(labels, instances, variant)
    own, outside = same_instance, None
    if variant == "supcon":
        outside = torch.eye(n, dtype=torch.bool, device=labels.device)
        own = same_instance & ~outside
    return _pair_weights(supervised, variant), _pair_weights(own, variant), supervised | own, outside


def combined_loss_derivatives(
    labels: Tensor, instances: Tensor, variant: str = "instance"
) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]]:
    """`simulate.losses.combined_loss` with its gradient and Hessian in closed form, for one layout (checked
    here, once); docs/losses.md#combined-loss-gradient-and-hessian-in-closed-form.

    L = -sum_ab T_ab logp(a, b) with T = (1 - alpha) T_sup + alpha T_self (`_pair_weights`); with P the
    softmax of each row over its denominator and c_a = sum_b T_ab: G = c P - T, gradient (G + G^T) z / tau,
    Hessian times v = ((dG + dG^T) z + (G + G^T) v) / tau, dG_ab = c_a P_ab (ds_ab - sum_e P_ae ds_ae),
    ds = (v z^T + z v^T) / tau: the derivatives in z, not normalised (what autograd of the loss gives).

    Returns:
        derivatives(z (..., N, d), alpha, tau) -> (loss (...,), gradient (..., N, d), hess); alpha, tau of
        shape z.shape[:-2] (broadcastable when hess acts on the whole batch). hess(v) for v (..., N, d), or
        hess(v, rows) for the configurations rows (j,) of a batch z (B, N, d) alone, v (j, N, d); it keeps the
        factors of the last `rows`, recognised by identity (do not change rows in place between calls). The
        caller passes checked values (no host read happens here).
    Raises:
        ValueError: as `simulate.losses.combined_loss_terms` for the ids and the variant.
    """
    weights_sup, weights_own, support, outside = _pair_layout(labels, instances, variant)

    def derivatives(z: Tensor, alpha: Tensor, tau: Tensor):
        a, t = alpha[..., None, None], tau[..., None, None]
        pair = torch.lerp(weights_sup.to(z), weights_own.to(z), a)  # T (..., N, N)
        anchor = pair.sum(-1, keepdim=True)  # c (..., N, 1)
        z_t = z / t
        logits = z_t @ z.transpose(-1, -2)
        if outside is not None:
            logits = logits.masked_fill(outside, -math.inf)
        log_p = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        loss = -torch.where(support, pair * log_p, 0.0).sum((-1, -2))
        p = log_p.exp()
        weighted_p = anchor * p  # c_a P_ab
        g = weighted_p - pair
        g_sym_t = (g + g.transpose(-1, -2)) / t

        last = {}  # the factors of the last rows asked for: CG asks for the same rows until a configuration stops

        def hess(v: Tensor, rows: Tensor | None = None) -> Tensor:
            if rows is None:
                at_z_t, at_p, at_weighted_p, at_g = z_t, p, weighted_p, g_sym_t
            else:
                if last.get("rows") is not rows:
                    last.update(rows=rows, factors=(z_t[rows], p[rows], weighted_p[rows], g_sym_t[rows]))
                at_z_t, at_p, at_weighted_p, at_g = last["factors"]
            vz = v @ at_z_t.transpose(-1, -2)
            ds = vz + vz.transpose(-1, -2)
            dg = at_weighted_p * (ds - (at_p * ds).sum(-1, keepdim=True))
            return (dg + dg.transpose(-1, -2)) @ at_z_t + at_g @ v

        return loss, g_sym_t @ z, hess

    return derivatives
