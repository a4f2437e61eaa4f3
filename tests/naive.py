"""Deliberately naive float64 references, written straight from docs/losses.md and docs/metrics.md.

Python loops over anchors and pairs, ``math.exp`` / ``math.log`` with the plain
formula (no log-sum-exp: callers keep |s/tau| moderate), lists of floats in and a
float out. Prototype copies are materialised literally. These are oracles for the
vectorised code in `simulate.losses` and `simulate.metrics`; they share no code with it.
"""

from __future__ import annotations

import math

import numpy as np


def _dot(u, v) -> float:
    return sum(a * b for a, b in zip(u, v))


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _neg_log_p(z, a, b, tau, denominator_indices) -> float:
    """-[s_ab/tau - log sum_{c in D} exp(s_ac/tau)]."""
    denominator = sum(math.exp(_dot(z[a], z[c]) / tau) for c in denominator_indices)
    return -(_dot(z[a], z[b]) / tau - math.log(denominator))


def combined_loss(z, labels, instances, alpha, tau, variant) -> float:
    """Combined loss of docs/losses.md: "instance" (pair means, anchor kept), "supcon" (per anchor, anchor removed)."""
    n = len(z)
    if variant == "instance":
        everyone = range(n)
        self_pairs = [(a, b) for a in range(n) for b in range(n) if instances[a] == instances[b]]
        sup_pairs = [
            (a, b) for a in range(n) for b in range(n) if labels[a] == labels[b] and instances[a] != instances[b]
        ]
        l_self = _mean(_neg_log_p(z, a, b, tau, everyone) for a, b in self_pairs)
        l_sup = _mean(_neg_log_p(z, a, b, tau, everyone) for a, b in sup_pairs)
    else:
        self_terms, sup_terms = [], []
        for a in range(n):
            others = [c for c in range(n) if c != a]
            own = [b for b in others if instances[b] == instances[a]]
            sup = [b for b in others if labels[b] == labels[a] and instances[b] != instances[a]]
            self_terms.append(_mean(_neg_log_p(z, a, b, tau, others) for b in own))
            if sup:
                sup_terms.append(_mean(_neg_log_p(z, a, b, tau, others) for b in sup))
        l_self, l_sup = _mean(self_terms), _mean(sup_terms)
    return (1 - alpha) * l_sup + alpha * l_self


def supcon_on_set(points, labels, anchors, tau) -> float:
    """Per-anchor SCL (docs/losses.md) on the set ``points`` with the given anchor indices; empty P(a) skipped."""
    terms = []
    for a in anchors:
        others = [c for c in range(len(points)) if c != a]
        positives = [b for b in others if labels[b] == labels[a]]
        if positives:
            terms.append(_mean(_neg_log_p(points, a, b, tau, others) for b in positives))
    return _mean(terms)


def prototype_supcon_loss(z, labels, prototypes, n_proto, tau, anchors) -> float:
    """Prototype SCL (docs/losses.md#prototype-scl) with the n_w copies of every prototype written out."""
    points = list(z) + [w for w in prototypes for _ in range(n_proto)]
    point_labels = list(labels) + [c for c in range(len(prototypes)) for _ in range(n_proto)]
    anchor_indices = range(len(z)) if anchors == "data" else range(len(points))
    return supcon_on_set(points, point_labels, anchor_indices, tau)


def fixed_classifier_ce(h, labels, classifier, tau) -> float:
    """Fixed-classifier CE: mean_i -log softmax_c(<h_i, w_c>/tau)[y_i]."""
    terms = []
    for h_i, y in zip(h, labels):
        scores = [math.exp(_dot(h_i, w) / tau) for w in classifier]
        terms.append(-math.log(scores[y] / sum(scores)))
    return _mean(terms)


def class_means(z, labels, n_classes):
    """Class means as lists; None for an absent class."""
    means = []
    for c in range(n_classes):
        members = [z_i for z_i, y in zip(z, labels) if y == c]
        means.append([_mean(column) for column in zip(*members)] if members else None)
    return means


def variances(z, labels, n_classes) -> tuple[float, float, float]:
    """(T, W, B) of docs/metrics.md#variances by the plain formulas."""
    mu = [_mean(column) for column in zip(*z)]
    total = 1 - _dot(mu, mu)
    within = 0.0
    for c, mu_c in enumerate(class_means(z, labels, n_classes)):
        if mu_c is not None:
            within += sum(1 for y in labels if y == c) / len(z) * (1 - _dot(mu_c, mu_c))
    return total, within, total - within


def class_mean_gram(z, labels, n_classes):
    means = class_means(z, labels, n_classes)
    return [[_dot(u, v) for v in means] for u in means]


def nc1(z, labels, n_classes) -> float:
    """trace(Sigma_W pinv(Sigma_B)) / m with Sigma_W over samples, Sigma_B over classes about the mean of means."""
    z = np.asarray(z, dtype=float)
    means = np.asarray(class_means(z.tolist(), labels, n_classes), dtype=float)
    sigma_w = sum(np.outer(z_i - means[y], z_i - means[y]) for z_i, y in zip(z, labels)) / len(z)
    centre = means.mean(axis=0)
    sigma_b = sum(np.outer(mu - centre, mu - centre) for mu in means) / n_classes
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, hermitian=True))) / n_classes


def ssem_fit(z, labels, instances, s_w, s_b) -> tuple[float, float]:
    """Best beta in [0, 1] and max residual against the SSEM Gram; s_w, s_b: beta -> entry.

    The squared error over off-instance entries is a quadratic in beta, recovered exactly
    from its values at 0, 1/2, 1 (vertex of the parabola, clipped to [0, 1]).
    """
    n = len(z)
    gram = [[_dot(z[a], z[b]) for b in range(n)] for a in range(n)]

    def model(beta, a, b):
        if instances[a] == instances[b]:
            return 1.0
        return s_w(beta) if labels[a] == labels[b] else s_b(beta)

    def error(beta):
        return sum(
            (gram[a][b] - model(beta, a, b)) ** 2 for a in range(n) for b in range(n) if instances[a] != instances[b]
        )

    f0, f_half, f1 = error(0.0), error(0.5), error(1.0)
    quadratic = 2 * (f0 - 2 * f_half + f1)  # f(beta) = quadratic beta^2 + linear beta + f0
    linear = f1 - f0 - quadratic
    beta = min(1.0, max(0.0, -linear / (2 * quadratic)))
    residual = max(abs(gram[a][b] - model(beta, a, b)) for a in range(n) for b in range(n))
    return beta, residual
