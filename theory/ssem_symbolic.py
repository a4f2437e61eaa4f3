"""Symbolic derivation of the SSEM restricted loss and its collapse threshold (docs/ssem.md).

The loss is built in sympy from the same pair counts the numerics use
(`theory.ssem.pair_counts`), with m, n, p, tau, alpha, beta as symbols — no
final formula is typed in. From it: dL/dbeta, d2L/dbeta2 written as a
variance (hence >= 0: L is convex in beta), and the collapse threshold alpha*
from the boundary condition dL/dbeta(1) = 0, rewritten with
r = exp(-m / ((m - 1) tau)).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import sympy as sp

from theory.arguments import require_variant
from theory.ssem import PairCounts, pair_counts

m, n, p = sp.symbols("m n p", positive=True, integer=True)
tau, alpha, beta, r = sp.symbols("tau alpha beta r", positive=True)


@dataclass(frozen=True)
class Derivation:
    """The symbolic objects of one variant's derivation."""

    loss: sp.Expr  # L(beta)
    slope: sp.Expr  # dL/dbeta
    curvature: sp.Expr  # d2L/dbeta2
    curvature_as_variance: sp.Expr  # sum_{s<t} q_s q_t (ds_s - ds_t)^2 / tau^2, manifestly >= 0
    alpha_star: sp.Expr  # root in alpha of dL/dbeta(1) = 0, as a function of r


def pair_similarities() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """Similarities of (same instance, same class, other class) pairs on SSEM(beta)."""
    return (sp.Integer(1), (n * beta - 1) / (n - 1), -beta / (m - 1))


def restricted_loss(counts: PairCounts) -> sp.Expr:
    """L(beta) = log sum_t D_t e^{s_t/tau} - [alpha mean_self(s) + (1-alpha) mean_sup(s)] / tau."""
    s = pair_similarities()
    denominator = sum(c * sp.exp(s_t / tau) for c, s_t in zip(counts.denominator, s))

    def mean_over(positive_counts):
        return sum(c * s_t for c, s_t in zip(positive_counts, s)) / sum(positive_counts)

    positives = alpha * mean_over(counts.self_positives) + (1 - alpha) * mean_over(counts.sup_positives)
    return sp.log(denominator) - positives / tau


def curvature_as_variance(counts: PairCounts) -> sp.Expr:
    """Var_q(ds/dbeta) / tau^2 written as sum_{s<t} w_s w_t (d_s - d_t)^2 / (tau^2 D^2)."""
    s = pair_similarities()
    weights = [c * sp.exp(s_t / tau) for c, s_t in zip(counts.denominator, s)]
    slopes = [sp.diff(s_t, beta) for s_t in s]
    total = sum(weights)
    pairs = sum(weights[i] * weights[j] * (slopes[i] - slopes[j]) ** 2 for i, j in combinations(range(3), 2))
    return pairs / (tau**2 * total**2)


def _in_terms_of_r(expr: sp.Expr) -> sp.Expr:
    """Rewrite exponentials of 1/tau through r = exp(-m/((m-1) tau)).

    Dividing numerator and denominator by e^{1/tau} leaves only
    e^{-1/((m-1)tau) - 1/tau} = r.
    """
    x = sp.Symbol("x", positive=True)  # x = e^{1/tau}
    y = sp.Symbol("y", positive=True)  # y = e^{-1/((m-1) tau)}
    expr = sp.powsimp(sp.expand_power_exp(expr.subs(sp.exp(-1 / ((m - 1) * tau)), y)), force=True)
    expr = expr.replace(sp.exp, lambda arg: _split_exponential(arg, x, y))
    expr = sp.simplify(expr.subs(y, r * x))
    return sp.factor(sp.simplify(expr))


def _split_exponential(arg, x, y):
    """exp(arg) as a monomial in x = e^{1/tau}, y = e^{-1/((m-1)tau)} where arg is linear in them."""
    a, b = sp.symbols("a b")
    solution = sp.solve(sp.Eq(sp.expand(arg), sp.expand(a / tau - b / ((m - 1) * tau))), [a, b], dict=True)
    if not solution or any(not v.is_number for v in solution[0].values()):
        return sp.exp(arg)
    return x ** solution[0][a] * y ** solution[0][b]


@lru_cache(maxsize=None)
def derive(variant: str = "instance", counts: PairCounts | None = None) -> Derivation:
    """Derive L, L', L'' and alpha* for a variant from its pair counts.

    `counts` defaults to `pair_counts(variant, m, n, p)`; passing other counts
    lets a test show that a wrong count changes the result.
    """
    require_variant(variant, 2)
    counts = counts or pair_counts(variant, m, n, p)
    loss = restricted_loss(counts)
    slope = sp.diff(loss, beta)
    curvature = sp.diff(slope, beta)
    threshold = sp.solve(sp.Eq(slope.subs(beta, 1), 0), alpha)
    if len(threshold) != 1:
        raise ArithmeticError(f"expected one root of dL/dbeta(1) = 0 in alpha, got {threshold}")
    return Derivation(
        loss=loss,
        slope=slope,
        curvature=curvature,
        curvature_as_variance=curvature_as_variance(counts),
        alpha_star=_in_terms_of_r(threshold[0]),
    )
