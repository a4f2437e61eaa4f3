"""Prototype SCL with many prototype copies, and cross-entropy with a fixed classifier (docs/prototypes.md).

Setting. A batch of N data vectors z_a (labels y_a, class sizes n_k in the batch) and
m fixed prototypes w_c, each present in S as n_w identical copies. Write, for a data
anchor a of class k = y_a,

    q_a = n_k - 1 (data positives), S_a = sum_{b != a, y_b = k} <z_a, z_b>,
    E_a = sum_{b != a} exp(<z_a, z_b>/tau), u_a = <z_a, w_k>, Z_a = sum_c exp(<z_a, w_c>/tau),
    CE_a = -u_a/tau + log Z_a                                      (fixed-classifier CE),

and, for a copy of prototype w_c as an anchor (anchors="all"), with g_cc' = <w_c, w_c'>,

    n_c, S_c = sum_{b: y_b = c} <w_c, z_b>, F_c = sum_b exp(<w_c, z_b>/tau),
    Z_c = sum_c' exp(g_cc'/tau), K_c = -g_cc/tau + log Z_c   (the CE of w_c itself under W).

Results (derived in sympy by `theory.prototypes_symbolic`, from the per-anchor definition of
docs/losses.md#prototype-scl built from groups of pairs with multiplicities; evaluated here):

1. Data anchor, exactly (`prototypes_symbolic.derive_data_anchor`):
       l_a - log n_w - CE_a = (q_a u_a - S_a) / ((q_a + n_w) tau) + log(1 + E_a / (n_w Z_a)),
   so |l_a - log n_w - CE_a| <= [|q_a u_a - S_a| / tau + E_a/Z_a] / n_w for every n_w >= 1
   (first term: q/(q + n_w) <= q/n_w; second: 0 <= log(1 + x) <= x), and
   n_w (l_a - log n_w - CE_a) -> (q_a u_a - S_a)/tau + E_a/Z_a.
   With anchors="data" every data anchor has a positive once n_w >= 1, hence
       mean loss - log n_w = mean CE + gap,  |gap| <= C_data / n_w   (`gap_bound_constant`).
2. Prototype anchor, exactly (`prototypes_symbolic.derive_prototype_anchor`):
       l_c - log n_w - K_c = (n_c g_cc - S_c) / ((n_w - 1 + n_c) tau)
                             + log(1 + (F_c - exp(g_cc/tau)) / (n_w Z_c)),
   -> 0 like k1_c / n_w with k1_c = (n_c g_cc - S_c)/tau + (F_c - exp(g_cc/tau))/Z_c.
3. anchors="all" (`prototypes_symbolic.derive_all_anchor_mean`): the m n_w prototype anchors outnumber the
   N data anchors, so
       mean loss - log n_w -> Kbar = (1/m) sum_c K_c            (independent of z!),
   i.e. the term that survives relative to the CE limit is the closed form
       extra = Kbar - mean CE = (1/m) sum_c log sum_c' exp((g_cc' - g_cc)/tau) - mean_a CE_a
   (for an ETF, Kbar = log(1 + (m-1) exp(-m/((m-1) tau))) = min CE, so extra <= 0),
   and the gap to Kbar is [N (mean CE - Kbar) + sum_c k1_c] / (m n_w) + O(1/n_w^2).
   The embeddings enter only at order 1/n_w: to leading order the loss is
   (1/(m n_w)) sum_a phi_all(z_a), phi_all(h) = CE(h) - <w_y, h>/tau + sum_c exp(<w_c, h>/tau)/Z_c
   (+ constants), which is what its minimiser minimises (`limit_objective`).
4. Fixed classifier (`prototypes_symbolic.derive_etf_fixed_classifier`, `jensen_candidate`): for unit h,
   by Jensen and Cauchy-Schwarz,
       CE(h) = log(1 + sum_{c != y} exp((x_c - x_y)/tau)) >= log(1 + (m-1) exp(-<h, w_y - wbar_y>/tau))
             >= log(1 + (m-1) exp(-|w_y - wbar_y| / tau)),   wbar_y = mean_{c != y} w_c,
   with equality iff h = (w_y - wbar_y)/|w_y - wbar_y| and the logits <h, w_c>, c != y,
   are all equal. For an ETF, w_y - wbar_y = m/(m-1) w_y and all other logits equal
   -1/(m-1): CE is minimised exactly (and only) at h = w_y, with minimum
   log(1 + (m-1) exp(-m/((m-1) tau))). Samples do not interact in mean CE, so this holds
   for any class sizes. For an orthonormal frame the minimiser is the centred direction
   (w_y - wbar)/|w_y - wbar| != w_y (`prototypes_symbolic.derive_orthogonal_minimiser`): the learnt class
   means then form an ETF, not the prototypes' geometry. In general a minimiser is
   computed numerically (`limit_minimisers`).

Numerics (numpy, float64): `prototype_loss_from_counts` (prototype SCL from the
same counts, an independent evaluator), `mean_cross_entropy`, `limit_value`, `extra_term`,
`gap`, `first_order_coefficient`, `gap_bound_constant`, `uniform_gap_bound_constant`,
`etf_ce_minimum`, `jensen_candidate`, `jensen_is_tight`, `limit_objective`,
`minimise_limit_objective`, `limit_minimisers`, `limit_gram`. Shapes: z (N, d), labels (N,), prototypes (m, d).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import logsumexp

from theory.arguments import ANCHOR_MODES, require_choice, require_int, require_tau

# ---------------------------------------------------------------------------
# Numerics: validation
# ---------------------------------------------------------------------------


def _scalar_tau(tau) -> float:
    tau = require_tau(tau)
    if tau.ndim != 0:
        raise ValueError(f"tau must be a scalar here, got an array of shape {tau.shape}")
    return float(tau)


def _prototypes(prototypes) -> np.ndarray:
    w = np.asarray(prototypes, dtype=float)
    if w.ndim != 2 or w.shape[0] < 2 or w.shape[1] < 1:
        raise ValueError(f"prototypes must have shape (m, d) with m >= 2, got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("prototypes must be finite, got NaN or inf entries")
    return w


def _inputs(z, labels, prototypes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z (N, d) float, labels (N,) int in [0, m), prototypes (m, d) float."""
    w = _prototypes(prototypes)
    z = np.asarray(z, dtype=float)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] != w.shape[1]:
        raise ValueError(f"z must have shape (N, d) with N >= 1 and d = {w.shape[1]}, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("z must be finite, got NaN or inf entries")
    y = np.asarray(labels)
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be an integer array of shape ({z.shape[0]},), got {y.dtype} {y.shape}")
    if ((y < 0) | (y >= w.shape[0])).any():
        raise ValueError(f"labels must lie in [0, {w.shape[0]}), got values in [{y.min()}, {y.max()}]")
    return z, y.astype(int), w


def _n_proto_array(n_proto, minimum: int) -> np.ndarray:
    values = np.asarray(n_proto, dtype=object)
    checked = [require_int("n_proto", v, minimum) for v in values.ravel()]
    return np.asarray(checked, dtype=float).reshape(values.shape)


def _log_count(count: float) -> float:
    return np.log(count) if count > 0 else -np.inf


# ---------------------------------------------------------------------------
# Numerics: the loss from counts, CE, and the limits
# ---------------------------------------------------------------------------


def _data_anchor_losses(z, y, w, n_w: float, tau: float) -> np.ndarray:
    """l_a for every data anchor, (N,); NaN where P(a) is empty."""
    n = z.shape[0]
    logits = z @ z.T / tau  # (N, N)
    np.fill_diagonal(logits, -np.inf)
    to_prototypes = z @ w.T / tau + _log_count(n_w)  # (N, m): n_w copies each
    log_denominator = logsumexp(np.concatenate([logits, to_prototypes], axis=1), axis=1)
    positive = (y[:, None] == y[None, :]) & ~np.eye(n, dtype=bool)
    count = positive.sum(1) + n_w
    own = (z * w[y]).sum(1) / tau
    positive_sum = np.where(positive, logits, 0.0).sum(1) + n_w * own
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, log_denominator - positive_sum / count, np.nan)


def _prototype_anchor_losses(z, y, w, n_w: float, tau: float) -> np.ndarray:
    """l_c for one copy of each w_c as an anchor, (m,); NaN where its P is empty."""
    m = w.shape[0]
    to_batch = w @ z.T / tau  # (m, N)
    to_prototypes = w @ w.T / tau  # (m, m)
    log_copies = np.full((m, m), _log_count(n_w))
    np.fill_diagonal(log_copies, _log_count(n_w - 1))
    log_denominator = logsumexp(np.concatenate([to_batch, to_prototypes + log_copies], axis=1), axis=1)
    in_class = y[None, :] == np.arange(m)[:, None]  # (m, N)
    count = in_class.sum(1) + n_w - 1
    positive_sum = np.where(in_class, to_batch, 0.0).sum(1) + (n_w - 1) * np.diag(to_prototypes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, log_denominator - positive_sum / count, np.nan)


def _loss_from_counts(z, y, w, n_w: float, tau: float, anchors: str) -> float:
    data = _data_anchor_losses(z, y, w, n_w, tau)
    total, weight = np.nansum(data), np.isfinite(data).sum()
    if anchors == "all" and n_w >= 1:
        proto = _prototype_anchor_losses(z, y, w, n_w, tau)
        total, weight = total + n_w * np.nansum(proto), weight + n_w * np.isfinite(proto).sum()
    if weight == 0:
        raise ValueError("no anchor has a positive (every class has one sample and n_proto = 0)")
    return total / weight


def prototype_loss_from_counts(
    z: ArrayLike, labels: ArrayLike, prototypes: ArrayLike, n_proto: ArrayLike, tau: float, anchors: str = "data"
) -> np.ndarray:
    """Prototype SCL (docs/losses.md#prototype-scl) evaluated from pair counts (numpy, float64), for each n_proto.

    Every element of S is a batch sample or one of n_w identical copies of a prototype;
    copies enter denominators with weight n_w (n_w - 1 for an anchor's own copies) and
    positives with that multiplicity. Mean over the anchors with non-empty P(a), each
    prototype anchor class counted n_w times. n_proto = 0 is per-anchor SCL.

    Args:
        z: (N, d); labels: (N,) in [0, m); prototypes: (m, d); n_proto: int >= 0 or an
            array of them; tau > 0; anchors: "data" | "all".
    Returns:
        array of the shape of n_proto.
    """
    z, y, w = _inputs(z, labels, prototypes)
    tau = _scalar_tau(tau)
    require_choice("anchors", anchors, ANCHOR_MODES)
    counts = _n_proto_array(n_proto, 0)
    values = [_loss_from_counts(z, y, w, n_w, tau, anchors) for n_w in counts.ravel()]
    return np.asarray(values).reshape(counts.shape)


def per_sample_cross_entropy(z: ArrayLike, labels: ArrayLike, prototypes: ArrayLike, tau: float) -> np.ndarray:
    """CE_a = -<z_a, w_{y_a}>/tau + log sum_c exp(<z_a, w_c>/tau) (fixed-classifier CE); (N,)."""
    z, y, w = _inputs(z, labels, prototypes)
    logits = z @ w.T / _scalar_tau(tau)
    return logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]


def mean_cross_entropy(z: ArrayLike, labels: ArrayLike, prototypes: ArrayLike, tau: float) -> float:
    """Mean over samples of CE_a with classifier W = prototypes."""
    return float(per_sample_cross_entropy(z, labels, prototypes, tau).mean())


def prototype_self_cross_entropy(prototypes: ArrayLike, tau: float) -> np.ndarray:
    """K_c = -g_cc/tau + log sum_c' exp(g_cc'/tau): the CE of w_c under classifier W; (m,)."""
    w = _prototypes(prototypes)
    gram = w @ w.T / _scalar_tau(tau)
    return logsumexp(gram, axis=1) - np.diag(gram)


def limit_value(z: ArrayLike, labels: ArrayLike, prototypes: ArrayLike, tau: float, anchors: str = "data") -> float:
    """lim_{n_w -> inf} (mean loss - log n_w): mean CE ("data") or Kbar = mean_c K_c ("all")."""
    require_choice("anchors", anchors, ANCHOR_MODES)
    if anchors == "data":
        return mean_cross_entropy(z, labels, prototypes, tau)
    _inputs(z, labels, prototypes)
    return float(prototype_self_cross_entropy(prototypes, tau).mean())


def extra_term(z: ArrayLike, labels: ArrayLike, prototypes: ArrayLike, tau: float, anchors: str = "all") -> float:
    """What survives of (mean loss - log n_w - mean CE) as n_w -> inf: 0 ("data"), Kbar - mean CE ("all")."""
    return limit_value(z, labels, prototypes, tau, anchors) - mean_cross_entropy(z, labels, prototypes, tau)


def gap(
    z: ArrayLike, labels: ArrayLike, prototypes: ArrayLike, n_proto: ArrayLike, tau: float, anchors: str = "data"
) -> np.ndarray:
    """mean loss - log n_w - limit_value, from `prototype_loss_from_counts`; n_proto >= 1 (array ok)."""
    counts = _n_proto_array(n_proto, 1)
    loss = prototype_loss_from_counts(z, labels, prototypes, counts.astype(int), tau, anchors)
    return loss - np.log(counts) - limit_value(z, labels, prototypes, tau, anchors)


def _data_anchor_terms(z, y, w, tau) -> dict:
    """Per data anchor (N,): q u - S, E/Z and CE (the pieces of results 1 and 3)."""
    n = z.shape[0]
    sims = z @ z.T
    positive = (y[:, None] == y[None, :]) & ~np.eye(n, dtype=bool)
    q = positive.sum(1)
    to_prototypes = z @ w.T / tau
    log_z = logsumexp(to_prototypes, axis=1)
    own = (z * w[y]).sum(1)
    others = np.where(np.eye(n, dtype=bool), -np.inf, sims / tau)
    log_e = logsumexp(others, axis=1) if n > 1 else np.full(n, -np.inf)
    return {
        "drift": q * own - np.where(positive, sims, 0.0).sum(1),  # q u - S
        "e_over_z": np.exp(log_e - log_z),
        "ce": log_z - own / tau,
    }


def _prototype_anchor_terms(z, y, w, tau) -> dict:
    """Per class (m,): n_c g_cc - S_c, (F_c - e^{g_cc/tau})/Z_c and the log-term bound b_c."""
    m = w.shape[0]
    gram = w @ w.T / tau
    own = np.diag(gram)
    log_z = logsumexp(gram, axis=1)
    log_others = logsumexp(np.where(np.eye(m, dtype=bool), -np.inf, gram), axis=1)
    to_batch = w @ z.T / tau  # (m, N)
    in_class = y[None, :] == np.arange(m)[:, None]
    f_over_z = np.exp(logsumexp(to_batch, axis=1) - log_z)
    return {
        "drift": tau * (in_class.sum(1) * own - np.where(in_class, to_batch, 0.0).sum(1)),  # n_c g_cc - S_c
        "log_term": f_over_z - np.exp(own - log_z),
        "log_bound": np.maximum(f_over_z, np.exp(own - log_others)),
    }


def first_order_coefficient(
    z: ArrayLike, labels: ArrayLike, prototypes: ArrayLike, tau: float, anchors: str = "data"
) -> float:
    """c1 = lim n_w * gap(n_w): the 1/n_w term of the gap (results 1 and 3).

    "data": mean_a [(q_a u_a - S_a)/tau + E_a/Z_a];
    "all": [N (mean CE - Kbar) + sum_c k1_c] / m, k1_c = (n_c g_cc - S_c)/tau + (F_c - e^{g_cc/tau})/Z_c.
    """
    z, y, w = _inputs(z, labels, prototypes)
    tau = _scalar_tau(tau)
    require_choice("anchors", anchors, ANCHOR_MODES)
    data = _data_anchor_terms(z, y, w, tau)
    if anchors == "data":
        return float(np.mean(data["drift"] / tau + data["e_over_z"]))
    proto = _prototype_anchor_terms(z, y, w, tau)
    kbar = prototype_self_cross_entropy(w, tau).mean()
    k1 = proto["drift"] / tau + proto["log_term"]
    return float((len(y) * (data["ce"].mean() - kbar) + k1.sum()) / w.shape[0])


def gap_bound_constant(
    z: ArrayLike, labels: ArrayLike, prototypes: ArrayLike, tau: float, anchors: str = "data"
) -> float:
    """C with |gap(n_w)| <= C / n_w (results 1 and 3): an explicit O(1/n_w) bound.

    "data", for every n_w >= 1: C = mean_a [ |q_a u_a - S_a| / tau + E_a / Z_a ].
    "all", for every n_w >= 2 (and n_w = 1 when every class has a batch sample):
        C = [ N |mean CE - Kbar| + N C_data + sum_c ( |n_c g_cc - S_c| / tau + b_c ) ] / m,
        b_c = max(F_c / Z_c, e^{g_cc/tau} / (Z_c - e^{g_cc/tau})),
    from |log(1 + x)| <= max(x, -x/(1+x)) and 1/(n_w - 1 + n_c) <= 1/n_w when n_c >= 1.
    """
    z, y, w = _inputs(z, labels, prototypes)
    tau = _scalar_tau(tau)
    require_choice("anchors", anchors, ANCHOR_MODES)
    data = _data_anchor_terms(z, y, w, tau)
    c_data = float(np.mean(np.abs(data["drift"]) / tau + data["e_over_z"]))
    if anchors == "data":
        return c_data
    proto = _prototype_anchor_terms(z, y, w, tau)
    kbar = prototype_self_cross_entropy(w, tau).mean()
    n = len(y)
    per_class = np.abs(proto["drift"]) / tau + proto["log_bound"]
    return float((n * abs(data["ce"].mean() - kbar) + n * c_data + per_class.sum()) / w.shape[0])


def uniform_gap_bound_constant(class_sizes: Sequence[int], prototypes: ArrayLike, tau: float) -> float:
    """C_unif >= `gap_bound_constant(..., "data")` for every unit z with these class sizes.

    |u_a - S_a/q_a| <= |w_k| + 1 and, by Jensen, Z_a >= m exp(<z_a, wbar>/tau) >= m e^{-|wbar|/tau},
    E_a <= (N - 1) e^{1/tau}:  C_unif = mean_a [ q_a (|w_{y_a}| + 1)/tau + (N-1) e^{(1 + |wbar|)/tau} / m ].
    """
    w = _prototypes(prototypes)
    tau = _scalar_tau(tau)
    sizes = np.asarray([require_int(f"class_sizes[{c}]", s, 0) for c, s in enumerate(class_sizes)])
    if sizes.shape != (w.shape[0],) or sizes.sum() < 1:
        raise ValueError(f"class_sizes must give m = {w.shape[0]} sizes >= 0 with a positive sum, got {sizes.tolist()}")
    n = sizes.sum()
    norms = np.linalg.norm(w, axis=1)
    drift = (sizes * (sizes - 1) * (norms + 1)).sum() / n / tau
    return float(drift + (n - 1) * np.exp((1 + np.linalg.norm(w.mean(0))) / tau) / w.shape[0])


# ---------------------------------------------------------------------------
# Numerics: the fixed classifier and the limit geometry
# ---------------------------------------------------------------------------


def etf_ce_minimum(n_classes: int, tau: float) -> float:
    """min over unit h of CE with an ETF classifier: log(1 + (m-1) exp(-m/((m-1) tau))), attained at h = w_y."""
    m = require_int("n_classes", n_classes, 2)
    tau = _scalar_tau(tau)
    return float(np.logaddexp(0.0, np.log(m - 1) - m / ((m - 1) * tau)))


def jensen_candidate(prototypes: ArrayLike) -> np.ndarray:
    """Rows (w_y - wbar_y) / |w_y - wbar_y|, wbar_y = mean_{c != y} w_c; (m, d).

    The unit h maximising the Jensen lower bound of CE for class y (result 4); it is
    the exact minimiser of CE, for every tau, iff `jensen_is_tight`.
    """
    w = _prototypes(prototypes)
    m = w.shape[0]
    others = (w.sum(0)[None, :] - w) / (m - 1)
    direction = w - others
    norms = np.linalg.norm(direction, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("prototypes must not have w_y equal to the mean of the other prototypes")
    return direction / norms


def jensen_is_tight(prototypes: ArrayLike, atol: float = 1e-10) -> np.ndarray:
    """(m,) bool: the logits <h*, w_c>, c != y, are equal at h* = jensen_candidate row y."""
    w = _prototypes(prototypes)
    logits = jensen_candidate(w) @ w.T  # (m, m)
    others = np.where(np.eye(w.shape[0], dtype=bool), np.nan, logits)
    return (np.nanmax(others, axis=1) - np.nanmin(others, axis=1)) <= atol


def ce_lower_bound(prototypes: ArrayLike, tau: float) -> np.ndarray:
    """(m,) log(1 + (m-1) exp(-|w_y - wbar_y|/tau)) <= min_h CE(h; y), equality iff `jensen_is_tight`."""
    w = _prototypes(prototypes)
    tau = _scalar_tau(tau)
    m = w.shape[0]
    margin = np.linalg.norm(w - (w.sum(0)[None, :] - w) / (m - 1), axis=1)
    return np.logaddexp(0.0, np.log(m - 1) - margin / tau)


def _objective_and_gradient(h: np.ndarray, label: int, w: np.ndarray, tau: float, anchors: str):
    """phi(h) and d phi/dh for one unit h (d,) (results 3 and 4)."""
    logits = w @ h / tau  # (m,)
    log_z = logsumexp(logits)
    value = log_z - logits[label]
    grad = w.T @ (np.exp(logits - log_z)) / tau - w[label] / tau
    if anchors == "all":
        weights = np.exp(logits - logsumexp(w @ w.T / tau, axis=1))  # e^{<w_c,h>/tau} / Z_c
        value += weights.sum() - logits[label]
        grad += w.T @ weights / tau - w[label] / tau
    return value, grad


def limit_objective(h: ArrayLike, label: int, prototypes: ArrayLike, tau: float, anchors: str = "data") -> np.ndarray:
    """Per-sample objective that the n_w -> inf minimiser minimises, at unit h (..., d) -> (...).

    "data": CE(h; y). "all": CE(h; y) - <w_y, h>/tau + sum_c exp(<w_c, h>/tau) / Z_c
    (result 3; additive constants dropped).
    """
    w = _prototypes(prototypes)
    tau = _scalar_tau(tau)
    require_choice("anchors", anchors, ANCHOR_MODES)
    label = require_int("label", label, 0)
    if label >= w.shape[0]:
        raise ValueError(f"label must lie in [0, {w.shape[0]}), got {label}")
    h = np.asarray(h, dtype=float)
    flat = h.reshape(-1, w.shape[1])
    values = [_objective_and_gradient(x, label, w, tau, anchors)[0] for x in flat]
    return np.asarray(values).reshape(h.shape[:-1])


def minimise_limit_objective(
    label: int, w: np.ndarray, tau: float, anchors: str, starts: Iterable[np.ndarray]
) -> tuple[np.ndarray, float]:
    """Minimise `limit_objective` of class ``label`` over unit h, with prototypes w (m, k) in any coordinates.

    Best of BFGS runs on x with h = x/|x| from each start (k,); returns (h (k,), value). Arguments
    are not validated here (`limit_minimisers` does, and chooses the coordinates and the starts).
    """

    def fun(x):
        norm = np.linalg.norm(x)
        h = x / norm
        value, grad = _objective_and_gradient(h, label, w, tau, anchors)
        return value, (grad - (grad @ h) * h) / norm

    best_h, best_value = None, np.inf
    for x0 in starts:
        result = minimize(fun, x0, jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 2000})
        h = result.x / np.linalg.norm(result.x)
        value = _objective_and_gradient(h, label, w, tau, anchors)[0]
        if value < best_value:
            best_h, best_value = h, value
    return best_h, best_value


def limit_minimisers(
    prototypes: ArrayLike, tau: float, anchors: str = "data", restarts: int = 4, seed: int = 0
) -> np.ndarray:
    """Per class y, a minimiser over unit h of `limit_objective` (the n_w -> inf class mean); (m, d).

    Computed in span(W) plus one orthogonal direction (the objective depends on h only
    through W h, so any further directions only spend norm), by BFGS on h = x/|x| from
    w_y, the Jensen candidate and `restarts` random points; the best is kept.
    """
    w = _prototypes(prototypes)
    tau = _scalar_tau(tau)
    require_choice("anchors", anchors, ANCHOR_MODES)
    restarts = require_int("restarts", restarts, 0)
    _, singular, vt = np.linalg.svd(w, full_matrices=True)
    rank = int((singular > 1e-10 * singular.max()).sum())
    basis = vt[: min(rank + 1, w.shape[1])]  # (k, d) orthonormal rows
    coords = w @ basis.T  # (m, k)
    candidates = jensen_candidate(w) @ basis.T
    rng = np.random.default_rng(seed)
    result = np.empty_like(w)
    for label in range(w.shape[0]):
        starts = [coords[label], candidates[label]] + list(rng.standard_normal((restarts, basis.shape[0])))
        h, _ = minimise_limit_objective(label, coords, tau, anchors, starts)
        result[label] = h @ basis
    return result


def limit_gram(
    prototypes: ArrayLike, tau: float, anchors: str = "data", restarts: int = 4, seed: int = 0
) -> np.ndarray:
    """Class-mean Gram predicted for n_w -> inf (within-class collapse onto `limit_minimisers`); (m, m)."""
    h = limit_minimisers(prototypes, tau, anchors, restarts, seed)
    return h @ h.T
