"""The Simplex-to-Simplex Embedding Model of Paper B and its closed forms (docs/ssem.md).

SSEM(beta): class centres c_1..c_m form a regular simplex, each class's instances
v_i1..v_in a regular simplex in its own subspace orthogonal to everything else,
u_ij = sqrt(beta) c_i + sqrt(1 - beta) v_ij, and every view of instance (i, j)
equals u_ij. Inner products: 1 within an instance, s_w = (n beta - 1)/(n - 1)
within a class, s_b = -beta/(m - 1) across classes.

On SSEM every anchor sees the same multiset of similarities, so the combined loss
reduces to a function of beta alone. It is assembled here from *pair counts*
(`pair_counts`): for one anchor, how many views of each pair type (same instance /
same class / other class) enter its denominator, its self-supervised positives and
its supervised positives, following each variant's definition (docs/losses.md):

    L(beta) = log sum_t D_t exp(s_t / tau)
              - [alpha * mean_{self positives} s + (1 - alpha) * mean_{sup positives} s] / tau

`theory.ssem_symbolic` builds the same expression from the same counts in sympy and
derives the closed forms; this module evaluates it with numpy, in log space
(stable for tau down to 1e-3), vectorised over arrays of alpha and tau.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from theory.arguments import (
    require_alpha,
    require_balanced_sizes,
    require_int,
    require_positive_real,
    require_tau,
    require_tau_in_range,
    require_variant,
)
from theory.simplex import pad_and_rotate, simplex_coordinates

if TYPE_CHECKING:  # sympy sizes come from theory.ssem_symbolic; numerics never import it
    import sympy as sp

PAIR_TYPES = ("same_instance", "same_class", "other_class")

#: Bisection steps for beta* on [0, 1]: 2^-64 is below float64 resolution at 1.
_BISECTION_STEPS = 64


@dataclass(frozen=True)
class PairCounts:
    """For one anchor: views of each pair type (order of PAIR_TYPES) in each set.

    Entries are ints, or sympy expressions when the sizes are symbols.
    """

    denominator: tuple
    self_positives: tuple
    sup_positives: tuple


def pair_counts(
    variant: str, n_classes: int | sp.Expr, n_per_class: int | sp.Expr, n_views: int | sp.Expr
) -> PairCounts:
    """Count, per pair type, the views an anchor meets in each set of its loss term.

    Views of a fixed anchor (class i, instance j, view k) are indexed by
    (class, instance, view); each count is a product of index ranges:
    same instance 1*1*p, same class 1*(n-1)*p, other class (m-1)*n*p; the
    anchor itself is one of the same-instance views. Variant "instance" keeps the
    anchor in its denominator and its self positives; "supcon" removes it from both.
    Works with ints or sympy symbols (no validation: the numeric callers validate).
    """
    m, n, p = n_classes, n_per_class, n_views
    anchor_kept = {"instance": 0, "supcon": 1}[variant]  # views removed from same-instance sets
    same_instance = 1 * 1 * p - anchor_kept
    same_class = 1 * (n - 1) * p
    other_class = (m - 1) * n * p
    return PairCounts(
        denominator=(same_instance, same_class, other_class),
        self_positives=(same_instance, 0, 0),
        sup_positives=(0, same_class, 0),
    )


def ssem_gram_entries(beta: ArrayLike, n_classes: int, n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(s_w, s_b) = ((n beta - 1)/(n - 1), -beta/(m - 1)), broadcasting over beta."""
    m, n, _ = require_balanced_sizes(n_classes, n_per_class)
    beta = np.asarray(beta, dtype=float)
    return (n * beta - 1.0) / (n - 1.0), -beta / (m - 1.0)


def ssem_view_gram(beta: float, n_classes: int, n_per_class: int, n_views: int) -> np.ndarray:
    """The Gram of all m n p views of SSEM(beta), rows class-major, then instance, then view; (mnp, mnp).

    Same instance 1, same class s_w, other class s_b (`ssem_gram_entries`): the order of
    `simulate.losses.balanced_layout` and of the certificate programs.
    """
    m, n, p = require_balanced_sizes(n_classes, n_per_class, n_views)
    s_w, s_b = (float(value) for value in ssem_gram_entries(beta, m, n))
    index = np.arange(m * n * p)
    instance, label = index // p, index // (n * p)
    same_class = label[:, None] == label[None, :]
    return np.where(instance[:, None] == instance[None, :], 1.0, np.where(same_class, s_w, s_b))


def _pair_similarities(beta, n_classes, n_per_class):
    """(3, ...) similarities of the pair types at beta, and their derivatives d s / d beta."""
    s_w, s_b = ssem_gram_entries(beta, n_classes, n_per_class)
    similarities = np.stack(np.broadcast_arrays(np.ones_like(s_w), s_w, s_b))
    slopes = np.array([0.0, n_per_class / (n_per_class - 1.0), -1.0 / (n_classes - 1.0)])
    return similarities, slopes


def _mean_over(counts: tuple, values: np.ndarray) -> np.ndarray:
    """Mean of per-pair-type values (leading axis of length 3) weighted by the pair counts."""
    weights = np.asarray(counts, dtype=float)
    return np.tensordot(weights / weights.sum(), values, axes=1)


def _log_denominator_terms(counts: PairCounts, similarities, tau):
    """log(D_t) + s_t / tau for each pair type t present in the denominator; (3, ...)."""
    log_counts = np.log(np.asarray(counts.denominator, dtype=float))  # log 0 = -inf drops a type
    with np.errstate(divide="ignore"):
        return log_counts.reshape((3,) + (1,) * (similarities.ndim - 1)) + similarities / tau


def _validated(alpha, tau, n_classes, n_per_class, n_views, variant):
    m, n, p = require_balanced_sizes(n_classes, n_per_class, n_views)
    require_variant(variant, p)
    return require_alpha(alpha), require_tau_in_range(tau), pair_counts(variant, m, n, p)


def restricted_loss(
    beta: ArrayLike,
    alpha: ArrayLike,
    tau: ArrayLike,
    n_classes: int,
    n_per_class: int,
    n_views: int = 2,
    variant: str = "instance",
) -> np.ndarray:
    """The combined loss on SSEM(beta), broadcasting over beta, alpha and tau (docs/ssem.md#restricted-loss).

    For "instance" this equals log p + log[e^{1/tau} + (n-1) e^{s_w/tau}
    + (m-1) n e^{s_b/tau}] - [alpha + (1-alpha) s_w]/tau.
    """
    alpha, tau, counts = _validated(alpha, tau, n_classes, n_per_class, n_views, variant)
    beta = np.asarray(beta, dtype=float)
    if not ((beta >= 0) & (beta <= 1)).all():
        raise ValueError(f"beta must lie in [0, 1], got {float(beta[~((beta >= 0) & (beta <= 1))].flat[0])!r}")
    similarities, _ = _pair_similarities(beta, n_classes, n_per_class)
    log_denominator = np.logaddexp.reduce(_log_denominator_terms(counts, similarities, tau), axis=0)
    positives = alpha * _mean_over(counts.self_positives, similarities) + (1 - alpha) * _mean_over(
        counts.sup_positives, similarities
    )
    return log_denominator - positives / tau


def _slope_sign(beta, alpha, tau, counts, n_classes, n_per_class):
    """A number with the sign of dL/dbeta at beta (L is convex, so it rises with beta).

    tau L'(beta) = sum_t q_t (d_t - c), q = softmax of the denominator terms
    (same instance, same class, other class), d = (0, n/(n-1), -1/(m-1)) their
    slopes d s_t / d beta and c = (1 - alpha) n/(n-1) the positives' mean slope,
    so 0 <= c <= d_1: only the same-class term pulls up. At small tau all weights
    but one underflow, so the two sides are compared in log space:
    log[q_1 (d_1 - c)] - log[q_0 c + q_2 (c - d_2)].
    """
    similarities, slopes = _pair_similarities(beta, n_classes, n_per_class)
    terms = _log_denominator_terms(counts, similarities, tau)
    c = alpha * _mean_over(counts.self_positives, slopes) + (1 - alpha) * _mean_over(counts.sup_positives, slopes)
    with np.errstate(divide="ignore"):
        rising = terms[1] + np.log(slopes[1] - c)
        falling = np.logaddexp(terms[0] + np.log(c - slopes[0]), terms[2] + np.log(c - slopes[2]))
    return rising - falling


def optimal_beta(
    alpha: ArrayLike, tau: ArrayLike, n_classes: int, n_per_class: int, n_views: int = 2, variant: str = "instance"
) -> float | np.ndarray:
    """beta* = argmin over [0, 1] of `restricted_loss`, broadcasting over alpha and tau.

    L is convex in beta, so L'(beta) is increasing: beta* = 1 where
    L'(1) <= 0 (collapse), otherwise the root of L' found by vectorised bisection
    (64 halvings of [0, 1], below float64 resolution). L'(0) < 0 always, so
    beta* > 0.
    """
    alpha, tau, counts = _validated(alpha, tau, n_classes, n_per_class, n_views, variant)
    alpha, tau = np.broadcast_arrays(alpha, tau)
    low, high = np.zeros(alpha.shape), np.ones(alpha.shape)
    collapsed = _slope_sign(high, alpha, tau, counts, n_classes, n_per_class) <= 0
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        rising = _slope_sign(middle, alpha, tau, counts, n_classes, n_per_class) > 0
        high = np.where(rising, middle, high)
        low = np.where(rising, low, middle)
    beta = np.where(collapsed, 1.0, 0.5 * (low + high))
    return beta[()] if beta.ndim == 0 else beta


def optimal_variances(
    alpha: ArrayLike, tau: ArrayLike, n_classes: int, n_per_class: int, n_views: int = 2, variant: str = "instance"
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """(within, between) class variance at the optimum: W* = 1 - beta*, B* = beta* (T = 1)."""
    beta = optimal_beta(alpha, tau, n_classes, n_per_class, n_views, variant)
    return 1.0 - beta, beta


def collapse_ratio(tau: ArrayLike, n_classes: int) -> np.ndarray:
    """r = exp(-m / ((m - 1) tau)), the ratio that governs the collapse threshold."""
    m = require_int("n_classes", n_classes, 2)
    return np.exp(-m / ((m - 1.0) * require_tau(tau)))


def alpha_star(
    tau: ArrayLike, n_classes: int, n_per_class: int, n_views: int = 2, variant: str = "instance"
) -> float | np.ndarray:
    """Collapse threshold: beta* = 1 iff alpha <= alpha*(tau) (docs/ssem.md#collapse-threshold).

    "instance": [1 + (mn-1) r] / [n (1 + (m-1) r)];
    "supcon":   [(p-1) + p(mn-1) r] / [(np-1) + (m-1) n p r];  r = `collapse_ratio`.
    Both follow from L'(1) = 0 (re-derived in `theory.ssem_symbolic`).
    """
    m, n, p = require_balanced_sizes(n_classes, n_per_class, n_views)
    require_variant(variant, p)
    r = collapse_ratio(tau, m)
    if variant == "instance":
        value = (1 + (m * n - 1) * r) / (n * (1 + (m - 1) * r))
    else:
        value = ((p - 1) + p * (m * n - 1) * r) / ((n * p - 1) + (m - 1) * n * p * r)
    return value[()] if value.ndim == 0 else value


def tau_star(alpha: ArrayLike, n_classes: int, n_per_class: int) -> float | np.ndarray:
    """Largest temperature without collapse, variant "instance": no collapse iff tau < tau*(alpha).

    tau* = m / ((m-1) log[(mn - 1 - n(m-1) alpha) / (n alpha - 1)]) for 1/n < alpha < 1;
    inf at alpha = 1 (no temperature collapses); 0 for alpha <= 1/n (every
    temperature collapses: no tau > 0 satisfies tau < 0).
    """
    m, n, _ = require_balanced_sizes(n_classes, n_per_class)
    alpha = require_alpha(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (m * n - 1 - n * (m - 1) * alpha) / (n * alpha - 1)
        value = m / ((m - 1) * np.log(ratio))
    value = np.where(alpha <= 1.0 / n, 0.0, np.where(alpha >= 1.0, np.inf, value))
    return value[()] if value.ndim == 0 else value


def small_tau_within(alpha: ArrayLike, tau: ArrayLike, n_per_class: int) -> np.ndarray:
    """Small-tau asymptote of W* for alpha > 1/n: ((n-1)/n) tau log((n-1) alpha / (1 - alpha))."""
    n = require_int("n_per_class", n_per_class, 2)
    alpha, tau = require_alpha(alpha), require_tau(tau)
    return (n - 1) / n * tau * np.log((n - 1) * alpha / (1 - alpha))


def embeddings(
    n_classes: int, n_per_class: int, n_views: int, dim: int, beta: float, seed: int | None = None
) -> np.ndarray:
    """An SSEM(beta) construction, shape (m, n, p, dim); needs dim >= m n - 1.

    Class centres occupy m-1 coordinates, each class's instance simplex its own n-1
    further coordinates (m - 1 + m (n - 1) = mn - 1 in all); a seed applies a
    random rotation of R^dim.
    """
    m, n, p = require_balanced_sizes(n_classes, n_per_class, n_views)
    dim = require_int("dim", dim, 1)
    if dim < m * n - 1:
        raise ValueError(f"dim must be >= n_classes * n_per_class - 1 = {m * n - 1} for SSEM, got {dim}")
    beta = require_positive_real("beta", beta, allow_zero=True)
    if beta > 1:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    centres, instances = simplex_coordinates(m), simplex_coordinates(n)  # (m, m-1), (n, n-1)
    u = np.zeros((m, n, m * n - 1))
    u[:, :, : m - 1] = np.sqrt(beta) * centres[:, None, :]
    for i in range(m):
        start = m - 1 + i * (n - 1)
        u[i, :, start : start + n - 1] = np.sqrt(1 - beta) * instances
    u /= np.linalg.norm(u, axis=-1, keepdims=True)  # exact unit length up to rounding
    placed = pad_and_rotate(u.reshape(m * n, -1), dim, seed).reshape(m, n, dim)
    return np.repeat(placed[:, :, None, :], p, axis=2)


@dataclass(frozen=True)
class GuidelineCounterexample:
    """A point that satisfies alpha >= 1/n and tau <= 1/log m yet collapses."""

    n_classes: int
    n_per_class: int
    alpha: float
    tau: float
    alpha_star: float


def guideline_audit(
    class_counts: Iterable[int] = range(2, 11), instance_counts: Iterable[int] = range(2, 11)
) -> list[GuidelineCounterexample]:
    """Audit the summarised guideline "alpha >= 1/n and tau <= 1/log m prevents collapse".

    alpha*(tau) increases with tau, so inside the guideline's region the collapsing
    alphas at tau = 1/log m form [1/n, alpha*(1/log m)] (non-empty because
    alpha* > 1/n for every tau > 0). For each (m, n) the returned counterexample is
    the midpoint of that interval at tau = 1/log m (m >= 2 only; m = 1 has no
    classes to collapse). Returns every counterexample found (empty if the
    guideline held on the grid).
    """
    counterexamples = []
    for m in class_counts:
        for n in instance_counts:
            tau = float(1.0 / np.log(require_int("n_classes", m, 2)))
            threshold = float(alpha_star(tau, m, n))
            alpha = 0.5 * (1.0 / n + threshold)
            if alpha >= 1.0 / n and float(optimal_beta(alpha, tau, m, n)) == 1.0:
                counterexamples.append(GuidelineCounterexample(m, n, alpha, tau, threshold))
    return counterexamples
