"""Simplex and Gram-matrix constructions for class prototypes (docs/notation.md#prototype-geometries).

A set of m unit vectors is described by its Gram matrix G (m, m); any G that is
symmetric, has unit diagonal, is positive semidefinite and has rank <= dim is
realised by unit vectors in R^dim (`from_gram`). Class-imbalance convention used
across the project: the majority classes are the first ceil(m/2) class ids and the
minority classes the remaining floor(m/2) (`majority_classes`, `minority_classes`).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from theory.arguments import require_int, require_positive_real

#: Tolerance (absolute, on entries and eigenvalues) for accepting a Gram matrix.
GRAM_TOL = 1e-8


def majority_classes(n_classes: int) -> np.ndarray:
    """Class ids of the majority classes: the first ceil(m/2)."""
    m = require_int("n_classes", n_classes, 2)
    return np.arange(m - m // 2)


def minority_classes(n_classes: int) -> np.ndarray:
    """Class ids of the minority classes: the last floor(m/2)."""
    m = require_int("n_classes", n_classes, 2)
    return np.arange(m - m // 2, m)


def random_rotation(dim: int, seed: int) -> np.ndarray:
    """A Haar-random orthogonal (dim, dim) matrix from a seeded generator (QR with sign fix)."""
    gaussian = np.random.default_rng(seed).standard_normal((dim, dim))
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))


def pad_and_rotate(vectors: np.ndarray, dim: int, seed: int | None) -> np.ndarray:
    """Pad (k, r) vectors with zeros to (k, dim) and rotate them when a seed is given."""
    padded = np.zeros((vectors.shape[0], dim))
    padded[:, : vectors.shape[1]] = vectors
    return padded if seed is None else padded @ random_rotation(dim, seed).T


def simplex_coordinates(n_points: int) -> np.ndarray:
    """n unit vectors in R^(n-1) with pairwise inner product -1/(n-1) (rows).

    Rows of an orthonormal basis Q (n, n-1) of the complement of the all-ones
    vector satisfy Q Q^T = I - 11^T/n; scaling by sqrt(n/(n-1)) makes them unit.
    """
    k = require_int("n_points", n_points, 2)
    centred = np.eye(k) - 1.0 / k
    eigenvalues, eigenvectors = np.linalg.eigh(centred)
    basis = eigenvectors[:, eigenvalues > 0.5]  # (n, n-1): eigenvalue 1 block
    return np.sqrt(k / (k - 1)) * basis


def etf_gram(n_classes: int) -> np.ndarray:
    """Gram of the simplex ETF: m/(m-1) (I - 11^T/m); (m, m)."""
    m = require_int("n_classes", n_classes, 2)
    return m / (m - 1) * (np.eye(m) - 1.0 / m)


def etf_gram_symbolic(n_classes: int) -> sp.Matrix:
    """The same Gram as an exact sympy Matrix."""
    m = require_int("n_classes", n_classes, 2)
    return sp.Rational(m, m - 1) * (sp.eye(m) - sp.ones(m, m) / m)


def etf(n_classes: int, dim: int, seed: int | None = None) -> np.ndarray:
    """m unit vectors in R^dim forming a regular simplex (needs dim >= m - 1); (m, dim).

    Without a seed the simplex lies in the first m-1 coordinates; with a seed it is
    rotated by a seeded Haar-random rotation.
    """
    m = require_int("n_classes", n_classes, 2)
    dim = require_int("dim", dim, 1)
    if dim < m - 1:
        raise ValueError(f"dim must be >= n_classes - 1 = {m - 1} for an ETF, got {dim}")
    return pad_and_rotate(simplex_coordinates(m), dim, seed)


def orthogonal_frame(n_classes: int, dim: int, seed: int | None = None) -> np.ndarray:
    """m orthonormal vectors in R^dim (Gram = I; needs dim >= m); (m, dim)."""
    m = require_int("n_classes", n_classes, 2)
    dim = require_int("dim", dim, 1)
    if dim < m:
        raise ValueError(f"dim must be >= n_classes = {m} for an orthogonal frame, got {dim}")
    return pad_and_rotate(np.eye(m), dim, seed)


def minority_spread_gram(n_classes: int, spread: float) -> np.ndarray:
    """A prototype Gram whose minority classes are set further apart than its majority.

    G(s) = (1 - s) G_etf + s G_x, with G_x: majority prototypes orthonormal,
    minority prototypes a regular simplex among themselves (cosine -1/(k-1), k
    minority classes) orthogonal to the majority. For s in (0, 1] the minority
    cosine (1-s)(-1/(m-1)) - s/(k-1) is below the majority cosine
    (1-s)(-1/(m-1)). Feasible range: s in [0, 1] exactly — both ends are Grams of
    unit vectors and the set of such Grams is convex; for s > 1 the minority cosine
    falls below -1/(k-1), which no k unit vectors attain. Needs k >= 2, so m >= 4.
    Rank <= m, so any dim >= m realises it.
    """
    m = require_int("n_classes", n_classes, 4)
    s = require_positive_real("spread", spread, allow_zero=True)
    if s > 1.0:
        raise ValueError(f"spread must lie in [0, 1] (the family's feasible range), got {spread}")
    minority = minority_classes(m)
    extreme = np.eye(m)
    extreme[np.ix_(minority, minority)] = etf_gram(len(minority))
    return (1.0 - s) * etf_gram(m) + s * extreme


def minority_spread(n_classes: int, dim: int, spread: float, seed: int | None = None) -> np.ndarray:
    """Unit vectors realising `minority_spread_gram`; needs dim >= m (dim >= m-1 at s = 0); (m, dim)."""
    return from_gram(minority_spread_gram(n_classes, spread), dim, seed=seed)


def check_gram(G: ArrayLike, dim: int | None = None, tol: float = GRAM_TOL) -> np.ndarray:
    """Validate a Gram matrix of unit vectors and return it as a float array.

    Checks: square, finite, symmetric and unit diagonal to `tol`, smallest
    eigenvalue >= -tol, and (if dim is given) numerical rank <= dim.
    """
    G = np.asarray(G, dtype=float)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] < 1:
        raise ValueError(f"Gram matrix must be square (k, k), got shape {G.shape}")
    if not np.isfinite(G).all():
        raise ValueError("Gram matrix must be finite, it has NaN or inf entries")
    asymmetry = np.abs(G - G.T).max()
    if asymmetry > tol:
        raise ValueError(f"Gram matrix must be symmetric, max |G - G^T| = {asymmetry:.3g} > {tol:g}")
    diagonal_error = np.abs(np.diag(G) - 1.0).max()
    if diagonal_error > tol:
        raise ValueError(f"Gram matrix must have unit diagonal, max |diag - 1| = {diagonal_error:.3g} > {tol:g}")
    eigenvalues = np.linalg.eigvalsh((G + G.T) / 2)
    if eigenvalues[0] < -tol:
        raise ValueError(
            f"Gram matrix must be positive semidefinite, smallest eigenvalue {eigenvalues[0]:.3g} < -{tol:g}"
        )
    rank = int((eigenvalues > tol).sum())
    if dim is not None and rank > dim:
        raise ValueError(f"Gram matrix has rank {rank} > dim = {dim}: it needs dim >= {rank}")
    return G


def from_gram(G: ArrayLike, dim: int, seed: int | None = None, tol: float = GRAM_TOL) -> np.ndarray:
    """Unit vectors X (k, dim) with X X^T = G (to the tolerance of `check_gram`).

    X = V sqrt(Lambda) from the eigendecomposition, keeping the `dim` largest
    eigenvalues (the rest are <= tol by the rank check), rows renormalised to
    exactly unit length; rotated by a seeded random rotation when a seed is given.
    """
    dim = require_int("dim", dim, 1)
    G = check_gram(G, dim, tol)
    eigenvalues, eigenvectors = np.linalg.eigh((G + G.T) / 2)
    keep = np.argsort(eigenvalues)[::-1][: min(dim, len(eigenvalues))]
    vectors = eigenvectors[:, keep] * np.sqrt(np.clip(eigenvalues[keep], 0.0, None))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return pad_and_rotate(vectors, dim, seed)
