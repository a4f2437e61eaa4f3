"""Symbolic derivation of the prototype-SCL limits and the fixed-classifier minimiser (docs/prototypes.md).

Results 1-4 of `theory.prototypes` (which states them and evaluates them with numpy) are
derived here in sympy, from the per-anchor definition of docs/losses.md#prototype-scl built
from groups of pairs with multiplicities (`anchor_loss`) — no final formula is typed in:

* `derive_data_anchor`: a data anchor's gap l_a - log n_w - CE_a, its limit (0), its 1/n_w
  coefficient and the exact decomposition of result 1, each checked against the stated form;
* `derive_prototype_anchor`: the same for a copy of a prototype as an anchor (result 2);
* `derive_all_anchor_mean`: the anchors="all" mean from the number of anchors of each kind (result 3);
* `derive_etf_fixed_classifier`, `derive_orthogonal_minimiser`: why h = w_y minimises CE for an
  ETF classifier, and the centred minimiser of an orthonormal one (result 4).

Every `*_residual` field is 0 exactly when the closed form stated in `theory.prototypes` is right.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from theory.arguments import require_int


@dataclass(frozen=True)
class PairGroup:
    """Elements of S seen from one anchor, aggregated with their multiplicities.

    count: how many of them are positives of the anchor (0 for negatives);
    positive_sum: the sum of s_ab over those positives;
    weight: their total contribution sum exp(s_ab/tau) to the anchor's denominator.
    """

    count: sp.Expr
    positive_sum: sp.Expr
    weight: sp.Expr


def copies(count: int | sp.Expr, similarity: float | sp.Expr, tau: sp.Expr, positive: bool) -> PairGroup:
    """`count` identical elements, each with similarity s to the anchor."""
    count, similarity = sp.sympify(count), sp.sympify(similarity)
    weight = count * sp.exp(similarity / tau)
    return PairGroup(count, count * similarity, weight) if positive else PairGroup(0, 0, weight)


def anchor_loss(groups: Iterable[PairGroup], tau: sp.Expr) -> sp.Expr:
    """l_a = -(1/|P(a)|) sum_{b in P(a)} s_ab/tau + log sum_{c in S, c != a} exp(s_ac/tau) (per-anchor SCL)."""
    n_positive = sum(g.count for g in groups)
    positive_sum = sum(g.positive_sum for g in groups)
    return -positive_sum / (tau * n_positive) + sp.log(sum(g.weight for g in groups))


@dataclass(frozen=True)
class AnchorLimit:
    """One anchor's loss as n_w -> infinity.

    loss: l(n_w); reference: the limit target (CE_a or K_c); gap: l - log n_w - reference;
    limit: lim gap (0 when the claim holds); first_order: lim n_w gap;
    first_order_residual: first_order minus the closed form stated in the module
    docstring (0 when it is right); decomposition_residual: gap minus the stated
    exact decomposition (0 when it is right).
    """

    loss: sp.Expr
    reference: sp.Expr
    gap: sp.Expr
    limit: sp.Expr
    first_order: sp.Expr
    first_order_residual: sp.Expr
    decomposition_residual: sp.Expr


def expansion(gap: sp.Expr, n_w: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    """(c0, c1) with gap = c0 + c1/n_w + O(1/n_w^2)."""
    eps = sp.Symbol("epsilon", positive=True)
    series = sp.series(gap.subs(n_w, 1 / eps), eps, 0, 2).removeO()
    return sp.simplify(series.coeff(eps, 0)), sp.simplify(series.coeff(eps, 1))


def vanishes(expr: sp.Expr) -> sp.Expr:
    """expr simplified, with logs expanded (all symbols are positive or real)."""
    return sp.simplify(sp.expand_log(sp.simplify(expr), force=True))


@lru_cache(maxsize=8)
def derive_data_anchor(n_classes: int = 3) -> AnchorLimit:
    """Data anchor of class 0 (of m = n_classes) in S = batch + n_w copies of each prototype.

    Groups: q other batch samples of its class (positive, similarity sum S, weight E_pos),
    the other batch samples (weight E_neg), n_w copies of w_0 (positive, similarity u_0)
    and n_w copies of each w_c, c >= 1 (similarity u_c). Reference: CE_a.
    """
    m = require_int("n_classes", n_classes, 2)
    tau, n_w = sp.symbols("tau n_w", positive=True)
    q = sp.Symbol("q", nonnegative=True)
    s_pos = sp.Symbol("S", real=True)
    e_pos, e_neg = sp.symbols("E_pos E_neg", positive=True)
    u = sp.symbols(f"u0:{m}", real=True)
    groups = [PairGroup(q, s_pos, e_pos), PairGroup(0, 0, e_neg), copies(n_w, u[0], tau, True)]
    groups += [copies(n_w, u_c, tau, False) for u_c in u[1:]]
    loss = anchor_loss(groups, tau)
    z_a = sum(sp.exp(u_c / tau) for u_c in u)
    reference = -u[0] / tau + sp.log(z_a)
    gap = loss - sp.log(n_w) - reference
    limit, first_order = expansion(gap, n_w)
    stated_first = (q * u[0] - s_pos) / tau + (e_pos + e_neg) / z_a
    stated_gap = (q * u[0] - s_pos) / ((q + n_w) * tau) + sp.log(1 + (e_pos + e_neg) / (n_w * z_a))
    return AnchorLimit(
        loss, reference, gap, limit, first_order, vanishes(first_order - stated_first), vanishes(gap - stated_gap)
    )


@lru_cache(maxsize=8)
def derive_prototype_anchor(n_classes: int = 3) -> AnchorLimit:
    """A copy of w_0 as an anchor (anchors="all"), m = n_classes.

    Groups: the n_w - 1 other copies of w_0 (positive, similarity g_0 = <w_0, w_0>), n_w
    copies of each w_c, c >= 1 (similarity g_c), the n_c batch samples of class 0
    (positive, similarity sum S, weight F_pos), the other batch samples (weight F_neg).
    Reference: K_0 = -g_0/tau + log sum_c exp(g_c/tau).
    """
    m = require_int("n_classes", n_classes, 2)
    tau, n_w = sp.symbols("tau n_w", positive=True)
    n_c = sp.Symbol("n_c", nonnegative=True)
    s_c = sp.Symbol("S_c", real=True)
    f_pos, f_neg = sp.symbols("F_pos F_neg", positive=True)
    g = sp.symbols(f"g0:{m}", real=True)
    groups = [copies(n_w - 1, g[0], tau, True)] + [copies(n_w, g_c, tau, False) for g_c in g[1:]]
    groups += [PairGroup(n_c, s_c, f_pos), PairGroup(0, 0, f_neg)]
    loss = anchor_loss(groups, tau)
    z_c = sum(sp.exp(g_c / tau) for g_c in g)
    reference = -g[0] / tau + sp.log(z_c)
    gap = loss - sp.log(n_w) - reference
    limit, first_order = expansion(gap, n_w)
    f_c, own = f_pos + f_neg, sp.exp(g[0] / tau)
    stated_first = (n_c * g[0] - s_c) / tau + (f_c - own) / z_c
    stated_gap = (n_c * g[0] - s_c) / ((n_w - 1 + n_c) * tau) + sp.log(1 + (f_c - own) / (n_w * z_c))
    return AnchorLimit(
        loss, reference, gap, limit, first_order, vanishes(first_order - stated_first), vanishes(gap - stated_gap)
    )


@dataclass(frozen=True)
class AllAnchorMean:
    """Mean over all anchors (anchors="all") as n_w -> infinity, from the anchor counts.

    mean: (N Ld + m n_w Lp)/(N + m n_w) with Ld = log n_w + CE + d1/n_w (mean over the N
    data anchors) and Lp = log n_w + K + k1/n_w (mean over classes; each of the m classes
    has n_w anchor copies); limit = lim (mean - log n_w); first_order = lim n_w (mean - log n_w - limit);
    limit_residual = limit - Kbar and first_order_residual = first_order - [N (CE - Kbar) + m k1]/m
    (both 0 when result 3 of the module docstring is right).
    """

    mean: sp.Expr
    limit: sp.Expr
    first_order: sp.Expr
    limit_residual: sp.Expr
    first_order_residual: sp.Expr


@lru_cache(maxsize=1)
def derive_all_anchor_mean() -> AllAnchorMean:
    """The anchors="all" mean loss from the number of anchors of each kind (result 3 of the module docstring)."""
    n_data, m, n_w = sp.symbols("N m n_w", positive=True)
    ce, kbar, d1, k1 = sp.symbols("CE Kbar d1 k1", real=True)
    data_mean = sp.log(n_w) + ce + d1 / n_w
    prototype_mean = sp.log(n_w) + kbar + k1 / n_w
    mean = (n_data * data_mean + m * n_w * prototype_mean) / (n_data + m * n_w)
    limit, first_order = expansion(mean - sp.log(n_w), n_w)
    stated_first = (n_data * (ce - kbar) + m * k1) / m
    return AllAnchorMean(mean, limit, first_order, sp.simplify(limit - kbar), sp.simplify(first_order - stated_first))


@dataclass(frozen=True)
class FixedClassifierDerivation:
    """CE with an ETF classifier at a unit h with t = <h, w_y> (result 4 of the module docstring).

    jensen_exponent: mean over c != y of (x_c - x_y), from sum_c w_c = 0 (= -m t/(m-1));
    bound: log(1 + (m-1) exp(jensen_exponent/tau)), a lower bound on CE(h);
    slope: d bound / dt (negative: the bound decreases in t, so its minimum over t <= 1 is at t = 1);
    at_prototype: CE(w_y) built from the ETF logits (one at 1, m-1 at -1/(m-1));
    at_prototype_residual: at_prototype - bound(t = 1) (0: the bound is attained at h = w_y).
    """

    jensen_exponent: sp.Expr
    bound: sp.Expr
    slope: sp.Expr
    at_prototype: sp.Expr
    at_prototype_residual: sp.Expr


@lru_cache(maxsize=1)
def derive_etf_fixed_classifier() -> FixedClassifierDerivation:
    """Why h = w_y minimises CE for an ETF classifier, for symbolic m and tau."""
    m = sp.Symbol("m", positive=True, integer=True)
    tau, t = sp.symbols("tau t", positive=True)
    # sum_{c != y} x_c = <h, sum_c w_c> - x_y = -t for a centred classifier.
    others_sum = -t
    exponent = sp.simplify((others_sum - (m - 1) * t) / (m - 1))
    bound = sp.log(1 + (m - 1) * sp.exp(exponent / tau))
    slope = sp.simplify(sp.diff(bound, t))
    logits = [(1, sp.Integer(1)), (m - 1, -1 / (m - 1))]  # (multiplicity, <w_y, w_c>) for the ETF
    at_prototype = -1 / tau + sp.log(sum(k * sp.exp(x / tau) for k, x in logits))
    residual = vanishes(at_prototype - bound.subs(t, 1))
    return FixedClassifierDerivation(exponent, bound, slope, at_prototype, residual)


@dataclass(frozen=True)
class OrthogonalMinimiser:
    """Minimiser of CE over unit h for an orthonormal classifier (m classes, symbolic m).

    By symmetry h = a w_y - b sum_{c != y} w_c; CE = log(1 + (m-1) exp(-(a + b)/tau)) is
    minimised by maximising a + b on a^2 + (m-1) b^2 = 1 (Lagrange). a, b: the solution;
    margin = a + b = <h, w_y - wbar_y>; label_cosine = <h, w_y> = a (< 1: h != w_y);
    minimum: the CE there.
    """

    a: sp.Expr
    b: sp.Expr
    margin: sp.Expr
    label_cosine: sp.Expr
    minimum: sp.Expr


@lru_cache(maxsize=1)
def derive_orthogonal_minimiser() -> OrthogonalMinimiser:
    """The minimiser of CE over unit h for an orthonormal classifier, from the Lagrange conditions (symbolic m)."""
    m = sp.Symbol("m", positive=True, integer=True)
    tau, a, b, lam = sp.symbols("tau a b lambda", positive=True)
    lagrangian = a + b - lam * (a**2 + (m - 1) * b**2 - 1)
    solutions = sp.solve([sp.diff(lagrangian, v) for v in (a, b, lam)], [a, b, lam], dict=True)
    best = max(solutions, key=lambda s: float((s[a] + s[b]).subs(m, 5)))
    margin = sp.simplify(best[a] + best[b])
    minimum = sp.log(1 + (m - 1) * sp.exp(-margin / tau))
    return OrthogonalMinimiser(sp.simplify(best[a]), sp.simplify(best[b]), margin, sp.simplify(best[a]), minimum)
