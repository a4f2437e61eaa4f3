"""Certified cells of the prototype sweep of `simulate.prototypes`: the certified minimum of one cell
(`certified_cell`, small sizes) and its exchangeable certificate (`exchangeable_cell`, any size), each with its
class-mean geometry. Re-exported from `simulate.prototypes`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from simulate import metrics
from theory import simplex


def certified_cell(
    sizes: Sequence[int], prototype_gram: np.ndarray, n_proto: int, tau: float, anchors: str, max_vectors: int
) -> dict[str, Any] | None:
    """Certified minimum and its class-mean geometry for one cell, or None when N + m > max_vectors.

    Uses `simulate.certify.certify_prototype` (non-strict: a status other than "optimal" is
    recorded, never counted). Class-mean Gram from the certified G: A G A^T with A the
    (m, N + m) class-averaging matrix of the data rows.
    """
    if sum(sizes) + len(sizes) > max_vectors:
        return None
    from simulate import certify

    started = time.perf_counter()
    certificate = certify.certify_prototype(sizes, prototype_gram, n_proto, tau, anchors, strict=False)
    gram = certify.nearest_gram(certificate.gram)
    n_data = certificate.n_data
    averaging = np.zeros((len(sizes), gram.shape[0]))
    for c in range(len(sizes)):
        rows = np.flatnonzero(certificate.labels[:n_data] == c)
        averaging[c, rows] = 1.0 / len(rows)
    means = averaging @ gram @ averaging.T
    weights = np.asarray(sizes) / sum(sizes)
    return {
        "minimum": certificate.minimum,
        "status": certificate.status,
        "optimal": certificate.ok,
        "residual": certificate.residual,
        "delta_g": float(metrics.delta_g(torch.as_tensor(means), torch.as_tensor(prototype_gram))),
        "within": float((weights * (1.0 - np.diag(means))).sum()),
        "seconds": time.perf_counter() - started,
    }


def exchangeable_cell(
    sizes: Sequence[int], prototype_gram: np.ndarray, n_proto: int, tau: float, anchors: str
) -> dict[str, Any]:
    """The exchangeable certificate of one cell (`simulate.exchangeable.certify_prototype`), any size.

    Non-strict: a status other than "optimal" is recorded as such and the cell reads unconverged.
    """
    from simulate import exchangeable

    started = time.perf_counter()
    certificate = exchangeable.certify_prototype(sizes, prototype_gram, n_proto, tau, anchors, strict=False)
    means = certificate.class_mean_gram()
    return {
        "minimum": certificate.minimum,
        "gap": certificate.gap,
        "status": certificate.status,
        "optimal": certificate.ok,
        "polished": certificate.polished,
        "class_mean_gram": means,
        "delta_g": certificate.delta_g(prototype_gram),
        "delta_g_etf": certificate.delta_g(simplex.etf_gram(len(sizes))),
        "within": certificate.variances()["within"],
        "seconds": time.perf_counter() - started,
    }
