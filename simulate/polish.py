"""Polishing a reduced program's solution to machine precision (docs/certificates.md).

An interior-point solver stops near the optimum, on the inside of the feasible set. The
constraints active at its point — zero eigenvalues of the psd blocks, as null vectors u with
Q(theta) u = 0 — define a face; on it the loss is smooth and Newton's method converges
quadratically. `polish` tries the faces suggested by the primal (small eigenvalues) and by the
dual (the rank of the multipliers) and keeps the best feasible point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from simulate.reduction import Reduced

#: Largest eigenvalue violation (relative to the block's scale) of a point counted as feasible.
FEASIBILITY = 1e-11

# ---------------------------------------------------------------------------
# Solving and polishing


def _face(reduced: Reduced, theta: np.ndarray, deficiency) -> tuple[np.ndarray, np.ndarray]:
    """Linear equations E theta = e of a face: Q_j(theta) u = 0 for the deficiency[j] eigenvectors
    u of Q_j(theta) with the smallest eigenvalues, and for any eigenvalue below `BOUNDARY`
    (a constraint a step has just met)."""
    rows, right = [], []
    for (constant, linear), Q, count in zip(reduced.block_arrays, reduced.block_values(theta), deficiency):
        k = constant.shape[0]
        eigenvalues, eigenvectors = np.linalg.eigh((Q + Q.T) / 2)
        count = max(count, int((eigenvalues < BOUNDARY * max(1.0, np.abs(eigenvalues).max())).sum()))
        dense = linear.toarray().reshape(k, k, -1)  # (k, k, V)
        for u in eigenvectors[:, :count].T:
            rows.append(np.einsum("rcv,c->rv", dense, u))  # (k, V): (Q(theta) u) is F u theta + F0 u
            right.append(-constant @ u)
    if not rows:
        return np.zeros((0, len(reduced.variables))), np.zeros(0)
    return np.concatenate(rows), np.concatenate(right)


#: An eigenvalue below this (relative) after a step counts as a constraint met.
BOUNDARY = 1e-9


def candidate_faces(reduced: Reduced, theta: np.ndarray, duals: Sequence[np.ndarray] | None) -> list[tuple[int, ...]]:
    """Rank deficiencies per block to try: from small eigenvalues of Q_j (primal) and from the
    rank of the multipliers (dual, strict complementarity); duplicates removed."""
    faces = []
    values = [np.linalg.eigvalsh((Q + Q.T) / 2) for Q in reduced.block_values(theta)]
    for threshold in FACE_THRESHOLDS:
        faces.append(tuple(int((v < threshold * max(1.0, np.abs(v).max())).sum()) for v in values))
    if duals is not None:
        scale = max(np.abs(np.linalg.eigvalsh(Z)).max() for Z in duals) or 1.0
        for threshold in (1e-8, 1e-6, 1e-4):
            faces.append(tuple(int((np.abs(np.linalg.eigvalsh(Z)) > threshold * scale).sum()) for Z in duals))
    return list(dict.fromkeys(faces))


#: Thresholds tried for the active face: a solver stops before tiny slacks reach 0
#: (at tau = 0.1 a = 1 - 3e-6 was seen), so looser faces are tried too; the best feasible point wins.
FACE_THRESHOLDS = (1e-8, 1e-6, 1e-4, 1e-3)


def polish(reduced: Reduced, theta: np.ndarray, duals: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, bool]:
    """The best feasible Newton-polished point over the `candidate_faces`; (theta', found)."""
    best, best_value = theta, math.inf
    for deficiency in candidate_faces(reduced, theta, duals):
        candidate, converged = newton_on_face(reduced, theta, deficiency)
        if converged and reduced.violation(candidate) <= FEASIBILITY:
            value = reduced.loss(candidate)
            if value < best_value:
                best, best_value = candidate, value
    return best, math.isfinite(best_value)


def newton_on_face(
    reduced: Reduced, theta: np.ndarray, deficiency: Sequence[int], max_steps: int = 80
) -> tuple[np.ndarray, bool]:
    """An active-set Newton method from theta; returns (theta', converged).

    Each step: the face active at theta (`_face`) is affine, theta = theta_0 + N y with N a
    basis of the null space of E; the loss is smooth there, so a Newton step in y (with a
    pseudo-inverse, as the loss can be flat along the face) converges quadratically. A step
    that would leave the feasible set stops at its boundary (bisection), where the
    constraint it met joins the face of the next step.
    """
    value = math.inf
    for _ in range(max_steps):
        theta, basis = _onto_face(reduced, theta, deficiency)
        value = reduced.loss(theta)
        if basis.shape[1] == 0:
            return theta, True
        gradient, hessian = reduced.gradient_hessian(theta)
        g, H = basis.T @ gradient, basis.T @ hessian @ basis
        if np.abs(g).max() <= 1e-14 * abs(value) / reduced.tau:  # relative: losses near 0 too
            return theta, True
        step = basis @ np.linalg.lstsq(H, -g, rcond=1e-15)[0]
        step = _feasible_fraction(reduced, theta, step) * step
        for _ in range(40):  # backtracking: the first step that does not raise the loss
            trial = reduced.loss(theta + step)
            if trial <= value:
                break
            step = step / 2
        else:
            return theta, False
        theta = theta + step
        if value - trial <= 1e-16 * abs(value):
            return theta, True
    return theta, False


def _onto_face(reduced: Reduced, theta: np.ndarray, deficiency) -> tuple[np.ndarray, np.ndarray]:
    """theta projected onto the face active there, and a basis (V, dim) of the face's directions.

    The null vectors u come from theta itself, so they are only approximately those of the
    face; projecting and recomputing them a few times converges to a point of the face.
    """
    basis = np.eye(len(theta))
    for _ in range(8):
        E, e = _face(reduced, theta, deficiency)
        if not len(E):
            return theta, basis
        _, singular, vt = np.linalg.svd(E)
        rank = int((singular > 1e-10 * max(1.0, singular[0])).sum())
        correction = np.linalg.lstsq(E, E @ theta - e, rcond=None)[0]
        theta, basis = theta - correction, vt[rank:].T
        if np.abs(correction).max() <= 1e-15:
            break
    return theta, basis


def _feasible_fraction(reduced: Reduced, theta: np.ndarray, step: np.ndarray) -> float:
    """The largest t in [0, 1] (to 2^-40) with theta + t step feasible to `FEASIBILITY`."""
    if reduced.violation(theta + step) <= FEASIBILITY:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if reduced.violation(theta + middle * step) <= FEASIBILITY else (low, middle)
    return low
