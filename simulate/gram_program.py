"""The full certificate programs: every loss of docs/losses.md as a convex function of the Gram
matrix G of all K vectors (docs/certificates.md#full-program).

Per anchor a the loss is a log-sum-exp of entries of G minus a linear function of G:

    loss(G) = (1 / sum_a w_a) * sum_a w_a [ log sum_{c in D(a)} exp(G_ac / tau + shift_ac)
                                           - sum_b C_ab G_ab / tau ],

with anchor weights w_a (multiplicities), denominator sets D(a), constant shifts (log k for a
row standing for k identical copies) and positive weights C_ab. This module writes a `Program`
(anchors, C, labels, the fixed prototype block) for each loss family; `simulate.certify` solves it.
Row order follows `simulate.losses` (see `simulate.certify`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Anchor:
    """One anchor row: its denominator D(a) as (columns, shifts), and its weight."""

    row: int
    columns: np.ndarray  # (L,) columns c of G in the denominator
    shifts: np.ndarray  # (L,) constants added to G_ac / tau: log of the copies c stands for
    weight: float  # multiplicity of the anchor in the mean


@dataclass(frozen=True)
class Program:
    """loss(G) = [sum_a w_a LSE_{c in D(a)}(G_ac/tau + shift_ac) - <C, G>/tau] / sum_a w_a.

    `positives` is C with each anchor's row already multiplied by its weight w_a.
    """

    anchors: tuple[Anchor, ...]
    positives: np.ndarray  # (K, K)
    labels: np.ndarray  # (K,)
    n_data: int
    fixed: np.ndarray | None  # (m, m) Gram fixed on rows/columns [n_data, K), or None

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def total_weight(self) -> float:
        return float(sum(anchor.weight for anchor in self.anchors))

    def groups(self):
        """(rows (R,), columns (R, L), shifts (R, L), weights (R,)) per distinct length L."""
        lengths = np.array([len(anchor.columns) for anchor in self.anchors])
        for length in np.unique(lengths):
            chosen = [self.anchors[i] for i in np.flatnonzero(lengths == length)]
            yield (
                np.array([anchor.row for anchor in chosen]),
                np.stack([anchor.columns for anchor in chosen]),
                np.stack([anchor.shifts for anchor in chosen]),
                np.array([anchor.weight for anchor in chosen]),
            )


def others(k: int, a: int) -> np.ndarray:
    """0..k-1 without a: the denominator of an anchor excluded from its own sum."""
    return np.delete(np.arange(k), a)


def plain_anchor(row: int, columns: np.ndarray) -> Anchor:
    return Anchor(row, columns, np.zeros(len(columns)), 1.0)


def combined_program(alpha: float, m: int, n: int, p: int, variant: str) -> Program:
    """The combined loss (docs/losses.md#combined-loss-instance-variant) on N = m*n*p views; every anchor has weight 1.

    "instance": D(a) = all N views, a included; self positives: the p views of a's
    instance, a included (weight alpha/p); sup positives: the (n-1)p views of a's
    class in other instances (weight (1-alpha)/((n-1)p)).
    "supcon": a removed from D(a) and from its self positives (weight alpha/(p-1)).
    """
    size = m * n * p
    index = np.arange(size)
    label, instance = index // (n * p), index // p
    same_instance = instance[:, None] == instance[None, :]
    same_class_other = (label[:, None] == label[None, :]) & ~same_instance
    if variant == "instance":
        anchors = tuple(plain_anchor(a, index) for a in index)
        own = np.where(same_instance, alpha / p, 0.0)
    else:
        anchors = tuple(plain_anchor(a, others(size, a)) for a in index)
        own = np.where(same_instance & ~np.eye(size, dtype=bool), alpha / (p - 1), 0.0)
    positives = own + np.where(same_class_other, (1 - alpha) / ((n - 1) * p), 0.0)
    return Program(anchors, positives, label, size, None)


def supcon_program(class_sizes: tuple[int, ...]) -> Program:
    """Per-anchor SCL (docs/losses.md#per-anchor-scl): D(a) = all samples but a;
    P(a) = a's class but a, weight 1/|P(a)|.

    Samples of singleton classes (empty P(a)) are not anchors but stay in the
    other anchors' denominators.
    """
    label = np.repeat(np.arange(len(class_sizes)), class_sizes)
    size = len(label)
    same = (label[:, None] == label[None, :]) & ~np.eye(size, dtype=bool)
    count = same.sum(axis=1)
    anchors = tuple(plain_anchor(a, others(size, a)) for a in np.flatnonzero(count > 0))
    positives = np.where(same, 1.0 / np.maximum(count, 1)[:, None], 0.0)
    return Program(anchors, positives, label, size, None)


def data_anchor(a: int, data_label: np.ndarray, n_proto: int, m: int, positives: np.ndarray) -> Anchor | None:
    """Data anchor a of class y (docs/losses.md#prototype-scl); writes its row of C into `positives`.

    D(a) = the other data (shift 0) and the m prototypes (shift log n_proto);
    P(a) = the other class-y data and n_proto copies of w_y, |P(a)| = N_y - 1 + n_proto.
    """
    n_data, y = len(data_label), data_label[a]
    same = np.flatnonzero((data_label == y) & (np.arange(n_data) != a))
    count = len(same) + n_proto
    if count == 0:
        return None
    positives[a, same] = 1.0 / count
    if n_proto == 0:
        return plain_anchor(a, others(n_data, a))
    positives[a, n_data + y] = n_proto / count
    columns = np.concatenate([others(n_data, a), n_data + np.arange(m)])
    shifts = np.concatenate([np.zeros(n_data - 1), np.full(m, math.log(n_proto))])
    return Anchor(a, columns, shifts, 1.0)


def prototype_anchor(c: int, data_label: np.ndarray, n_proto: int, m: int, positives: np.ndarray) -> Anchor | None:
    """The n_proto copies of w_c as anchors (anchors="all", n_proto >= 1), weight n_proto.

    D = all data (shift 0), the other prototypes (shift log n_proto) and, if
    n_proto >= 2, the other n_proto - 1 copies of w_c (the diagonal entry, shift
    log(n_proto - 1)); P = class-c data and those copies, |P| = N_c + n_proto - 1.
    """
    n_data = len(data_label)
    row = n_data + c
    class_data = np.flatnonzero(data_label == c)
    count = len(class_data) + n_proto - 1
    if count == 0:
        return None
    positives[row, class_data] = n_proto / count
    columns = [np.arange(n_data), n_data + others(m, c)]
    shifts = [np.zeros(n_data), np.full(m - 1, math.log(n_proto))]
    if n_proto >= 2:
        positives[row, row] = n_proto * (n_proto - 1) / count
        columns.append(np.array([row]))
        shifts.append(np.array([math.log(n_proto - 1)]))
    return Anchor(row, np.concatenate(columns), np.concatenate(shifts), float(n_proto))


def prototype_program(class_sizes: tuple[int, ...], prototype_gram: np.ndarray, n_proto: int, anchors: str) -> Program:
    """Prototype SCL (docs/losses.md#prototype-scl) on N data rows and one row per prototype (its n_proto copies)."""
    m = len(class_sizes)
    data_label = np.repeat(np.arange(m), class_sizes)
    n_data = len(data_label)
    positives = np.zeros((n_data + m, n_data + m))
    rows = [data_anchor(a, data_label, n_proto, m, positives) for a in range(n_data)]
    if anchors == "all" and n_proto > 0:
        rows += [prototype_anchor(c, data_label, n_proto, m, positives) for c in range(m)]
    label = np.concatenate([data_label, np.arange(m)])
    return Program(tuple(r for r in rows if r is not None), positives, label, n_data, prototype_gram)
