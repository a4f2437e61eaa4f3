"""Exchangeable certificates: certified global minima of the contrastive losses at any size.

`simulate.reduction` writes each certificate program of `simulate.certify` in a handful of
variables by symmetry (views of an instance, instances of a class, alike classes); this
module solves it with cvxpy (CLARABEL at a tight tolerance; its dual objective is the lower
bound), polishes the solution on its active face (`simulate.polish`), and returns an
`ExchangeableCertificate`: the minimum, the reduced variables, the class-mean Gram, the
variances, DeltaG* to a target, the rank of the minimiser and explicit unit vectors that
attain it (`realise`). docs/certificates.md derives the reduction.

Solving and polishing
---------------------
cvxpy with CLARABEL at a tight tolerance solves the reduced program; its dual objective
is the lower bound. A polish step then takes the last digits: the constraints active at
the solver's point (zero eigenvalues of the blocks, as null vectors u with Q(theta) u = 0)
define a face, and Newton's method minimises the (smooth) loss over that affine face in
float64. The polished point is kept only if it is feasible to `FEASIBILITY` and does not
raise the loss; `minimum` is the loss at the point kept (an upper bound, attained by
explicit unit vectors: `ExchangeableCertificate.embeddings`).


What an invariant minimiser tells. Its loss is the global minimum. Its class-mean Gram
and rank are those of *an* optimal geometry; when the minimiser is unique (up to
rotation) they are the geometry's. Its rank is the dimension that geometry needs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import torch
from numpy.typing import ArrayLike

from simulate import metrics
from simulate.certify import CertificateError, solve_problem
from simulate.polish import FEASIBILITY, polish
from simulate.reduction import SYMMETRIES, Reduced, Structure, build, class_orbits
from theory.arguments import (
    ANCHOR_MODES,
    require_alpha,
    require_balanced_sizes,
    require_choice,
    require_class_sizes,
    require_int,
    require_scalar,
    require_tau_in_range,
    require_variant,
)
from theory.simplex import check_gram

#: Solver attempts in order; the first "optimal" wins. The reduced programs are small and
#: well scaled, so CLARABEL usually reaches 1e-10; looser attempts follow (their `gap` says so).
ATTEMPTS = (("CLARABEL", 1e-10), ("CLARABEL", 1e-9), ("CLARABEL", 1e-8), ("SCS", 1e-9))

#: Eigenvalues at or below this (relative to the block's scale) count as zero: the rank.
RANK_TOL = 1e-6

#: The polish step runs Newton on a dense Hessian: only for at most this many variables.
MAX_POLISH_VARIABLES = 600


@dataclass(frozen=True)
class ExchangeableCertificate:
    """A certified minimum from the reduced program (module docstring).

    Attributes:
        loss: the family ("combined-instance", "combined-supcon", "supcon", "prototype-data", "prototype-all").
        minimum: the loss at the point kept, float64; lower_bound: the solver's dual objective.
        status, solver, tolerance: the last solver attempt; polished: the polish step was kept.
        violation: largest relative negative eigenvalue of the point kept (<= FEASIBILITY when polished).
        variables: the reduced variables by name (a0, b0, c0,1, x0, ...).
        structure: the orbits, sizes, views and prototypes the program was built on.
        block_values: each psd block at the point kept; seconds: wall time.
    """

    loss: str
    minimum: float
    lower_bound: float
    status: str
    solver: str
    tolerance: float
    polished: bool
    violation: float
    variables: dict
    structure: Structure
    block_values: tuple
    block_multiplicities: tuple
    seconds: float
    method: str = "exchangeable"

    @property
    def ok(self) -> bool:
        return self.status == cp.OPTIMAL

    @property
    def gap(self) -> float:
        """minimum - lower_bound (to solver accuracy, >= 0 up to the dual residual)."""
        return self.minimum - self.lower_bound

    def require_ok(self) -> ExchangeableCertificate:
        if not self.ok:
            raise CertificateError(
                f"{self.loss} exchangeable certificate not optimal: {self.solver} status {self.status!r}"
            )
        return self

    def _value(self, kind: str, o: int, q: int | None = None) -> float:
        """A relation's value; relations without a variable (e.g. b for one instance) are NaN."""
        name = f"{kind}{o}" if q is None else f"{kind}{min(o, q)},{max(o, q)}" if kind == "c" else f"{kind}{o},{q}"
        return self.variables.get(name, math.nan)

    def class_mean_gram(self) -> np.ndarray:
        """<mu_i, mu_k> per class, (m, m): |mu_i|^2 = d_o/(n_o p), c_oq off the diagonal.

        NaN rows and columns for classes without data.
        """
        s = self.structure
        m, p = s.n_classes, s.n_views
        gram = np.full((m, m), math.nan)
        for i in range(m):
            o, n_i = s.orbit_of(i), s.sizes[i]
            if n_i == 0:
                continue
            a = self._value("a", o) if p >= 2 else 0.0
            b = self._value("b", o) if n_i >= 2 else 0.0
            gram[i, i] = (1 + (p - 1) * a + (n_i - 1) * p * b) / (n_i * p)
            for k in range(m):
                if k != i and s.sizes[k] >= 1:
                    gram[i, k] = self._value("c", o, s.orbit_of(k))
        return gram

    def prototype_cross(self) -> np.ndarray:
        """<mu_i, w_k>, (m, m) (prototype programs): x_o, x_oo or x_oq by relation."""
        s = self.structure
        cross = np.full((s.n_classes, s.n_classes), math.nan)
        for i in range(s.n_classes):
            o = s.orbit_of(i)
            if s.sizes[i] == 0:
                continue
            for k in range(s.n_classes):
                cross[i, k] = self._value("x", o) if k == i else self._value("x", o, s.orbit_of(k))
        return cross

    @property
    def rank(self) -> int:
        """Rank of the invariant minimiser's G: sum over blocks of multiplicity x rank."""
        total = 0
        for Q, multiplicity in zip(self.block_values, self.block_multiplicities):
            eigenvalues = np.linalg.eigvalsh(Q)
            total += multiplicity * int((eigenvalues > RANK_TOL * max(1.0, np.abs(eigenvalues).max())).sum())
        return total

    def variances(self) -> dict:
        """T, W, B of the minimiser (`simulate.metrics.variances_from_class_mean_gram`), data classes only."""
        s = self.structure
        present = [i for i in range(s.n_classes) if s.sizes[i] >= 1]
        gram = self.class_mean_gram()[np.ix_(present, present)]
        counts = [s.sizes[i] * s.n_views for i in present]
        values = metrics.variances_from_class_mean_gram(gram, counts)
        return {"total": float(values.total), "within": float(values.within), "between": float(values.between)}

    def delta_g(self, target) -> float:
        """DeltaG* of the class-mean Gram to a target Gram (`simulate.metrics.delta_g`)."""
        return float(metrics.delta_g(torch.as_tensor(self.class_mean_gram()), np.asarray(target, dtype=float)))

    def embeddings(self, prototypes=None, seed: int | None = None):
        """Explicit unit vectors realising the minimiser (`realise`): (z, labels, instances, W)."""
        return realise(self, prototypes, seed)


def solve_reduced(reduced: Reduced, solver: str | None) -> tuple[np.ndarray | None, dict, list | None]:
    """Solve a reduced program with the first of `ATTEMPTS` (those of `solver` if given) that reaches "optimal":
    (its variables or None, {status, solver, tolerance, lower_bound}, its dual matrices or None)."""
    attempts = ATTEMPTS if solver is None else tuple(a for a in ATTEMPTS if a[0] == solver)
    for name, tolerance in attempts:
        problem, theta = reduced.problem()
        try:
            status, _, dual = solve_problem(problem, name, tolerance)
        except cp.SolverError:
            status, dual = cp.SOLVER_ERROR, math.nan
        if status == cp.OPTIMAL:
            break
    solved = {"status": status, "solver": name, "tolerance": tolerance, "lower_bound": dual}
    value = None if theta.value is None or not np.isfinite(theta.value).all() else np.array(theta.value, dtype=float)
    return value, solved, reduced.dual_matrices(problem) if value is not None else None


def certify_reduced(reduced: Reduced, *, solver: str | None = None, strict: bool = True) -> ExchangeableCertificate:
    """Solve a reduced program, polish it, and return its certificate."""
    start = time.perf_counter()
    theta, solved, duals = solve_reduced(reduced, solver)
    polished = False
    if theta is None:
        theta, minimum, violation = np.full(len(reduced.variables), math.nan), math.nan, math.nan
    else:
        violation, minimum = reduced.violation(theta), reduced.loss(theta)
        if len(reduced.variables) <= MAX_POLISH_VARIABLES:
            candidate, converged = polish(reduced, theta, duals)
            candidate_violation = reduced.violation(candidate)
            candidate_value = reduced.loss(candidate)
            # Keep the polished point only when it is feasible and no worse than the solver's point.
            if converged and candidate_violation <= FEASIBILITY and candidate_value <= minimum + 1e-12 * abs(minimum):
                theta, minimum, violation, polished = candidate, candidate_value, candidate_violation, True
    certificate = ExchangeableCertificate(
        loss=reduced.family,
        minimum=float(minimum),
        polished=polished,
        violation=float(violation),
        variables=dict(zip(reduced.variables, (float(v) for v in theta))),
        structure=reduced.structure,
        block_values=tuple(reduced.block_values(theta)),
        block_multiplicities=tuple(block.multiplicity for block in reduced.blocks),
        seconds=time.perf_counter() - start,
        **solved,
    )
    return certificate.require_ok() if strict else certificate


# ---------------------------------------------------------------------------
# Explicit vectors from a reduced solution


def _centred_simplex(count: int) -> np.ndarray:
    """count vectors in R^(count-1) with <e_j, e_j'> = [j = j'] - 1/count; (count, count - 1)."""
    basis = np.linalg.svd(np.eye(count) - 1.0 / count)[0][:, : count - 1]  # orthonormal basis of 1-perp
    return basis


def _class_level_gram(certificate: ExchangeableCertificate) -> tuple[np.ndarray, list[int]]:
    """Q = [[M, B], [B^T, P]] per class (data rows of classes with data, then prototypes)."""
    s = certificate.structure
    present = [i for i in range(s.n_classes) if s.sizes[i] >= 1]
    scale = np.array([math.sqrt(s.sizes[i] * s.n_views) for i in present])  # sqrt(n_i p)
    means = certificate.class_mean_gram()[np.ix_(present, present)]
    rows = [means * np.outer(scale, scale)]  # M_ik = n p <mu_i, mu_k> in normalised-sum units
    if s.prototype_gram is None:
        return rows[0], present
    cross = certificate.prototype_cross()[present] * scale[:, None]
    return np.block([[rows[0], cross], [cross.T, s.prototype_gram]]), present


def realise(
    certificate: ExchangeableCertificate, prototypes: ArrayLike | None = None, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Unit vectors whose Gram is the certificate's invariant minimiser.

    Class means mu_i and prototypes come from a factor of the class-level Gram Q (eigenvalues
    clipped at 0); each instance adds a centred simplex of n_i points scaled by
    sqrt(1 + (p - 1) a - p b)/sqrt(p) and each view a centred simplex of p points scaled by
    sqrt(1 - a), in fresh orthogonal coordinates. Given prototypes W (m, d) with W W^T = P,
    the factor is rotated onto W (orthogonal Procrustes) so the vectors work with W itself.

    Returns:
        z (N, D) float64, labels (N,), instances (N,) (class-major, then instance, then view)
        and W (m, D) (None without prototypes).
    """
    s = certificate.structure
    p = s.n_views
    Q, present = _class_level_gram(certificate)
    eigenvalues, eigenvectors = np.linalg.eigh((Q + Q.T) / 2)
    keep = eigenvalues > RANK_TOL * max(1.0, eigenvalues.max())
    factor = eigenvectors[:, keep] * np.sqrt(eigenvalues[keep])  # (rows, r)
    W = None
    if s.prototype_gram is not None:
        factor, W = _onto_prototypes(factor, len(present), prototypes)
    pieces = [_class_vectors(certificate, i, factor[row] / math.sqrt(s.sizes[i] * p)) for row, i in enumerate(present)]
    labels = np.repeat(present, [s.sizes[i] * p for i in present])
    instances = np.repeat(np.arange(sum(s.sizes[i] for i in present)), p)
    width = factor.shape[1] + sum(piece.shape[1] - factor.shape[1] for piece in pieces)
    z = np.zeros((sum(len(piece) for piece in pieces), width))
    row, column = 0, factor.shape[1]
    for piece in pieces:
        z[row : row + len(piece), : factor.shape[1]] = piece[:, : factor.shape[1]]
        extra = piece.shape[1] - factor.shape[1]
        z[row : row + len(piece), column : column + extra] = piece[:, factor.shape[1] :]
        row, column = row + len(piece), column + extra
    z /= np.linalg.norm(z, axis=1, keepdims=True)  # unit to rounding: the parts are exact up to clipping
    if W is not None:
        W = np.concatenate([W, np.zeros((len(W), width - W.shape[1]))], axis=1)
    if seed is not None:
        rotation = np.linalg.qr(np.random.default_rng(seed).standard_normal((width, width)))[0]
        z, W = z @ rotation, None if W is None else W @ rotation
    return z, labels, instances, W


def _onto_prototypes(factor: np.ndarray, n_data_rows: int, prototypes):
    """Rotate a factor so its prototype rows equal given W (or a factor of P if W is None)."""
    proto_rows = factor[n_data_rows:]
    if prototypes is None:
        return factor[:n_data_rows], proto_rows
    W = np.asarray(prototypes, dtype=float)
    dim = max(factor.shape[1], W.shape[1])
    padded_factor = np.pad(factor, ((0, 0), (0, dim - factor.shape[1])))
    padded_W = np.pad(W, ((0, 0), (0, dim - W.shape[1])))
    u, _, vt = np.linalg.svd(padded_factor[n_data_rows:].T @ padded_W)
    return padded_factor[:n_data_rows] @ (u @ vt), padded_W


def _class_vectors(certificate: ExchangeableCertificate, i: int, mean: np.ndarray) -> np.ndarray:
    """The n_i p vectors of class i: (n_i p, r + extra) with the class mean in the first r columns."""
    s = certificate.structure
    o, n, p = s.orbit_of(i), s.sizes[i], s.n_views
    a = certificate._value("a", o) if p >= 2 else 1.0
    b = certificate._value("b", o) if n >= 2 else 0.0
    instance_scale = math.sqrt(max(0.0, (1 + (p - 1) * a) / p - b)) if n >= 2 else 0.0
    view_scale = math.sqrt(max(0.0, 1 - a)) if p >= 2 else 0.0
    instance_part = np.repeat(_centred_simplex(n) * instance_scale, p, axis=0) if n >= 2 else np.zeros((n * p, 0))
    if p >= 2 and view_scale > 0:
        view_part = np.kron(np.eye(n), _centred_simplex(p)) * view_scale  # (n p, n (p - 1))
    else:
        view_part = np.zeros((n * p, 0))
    return np.concatenate([np.tile(mean, (n * p, 1)), instance_part, view_part], axis=1)


# ---------------------------------------------------------------------------
# Certificates


def certify_combined(
    alpha: float,
    tau: float,
    n_classes: int,
    n_per_class: int,
    n_views: int = 2,
    variant: str = "instance",
    *,
    symmetry: str = "classes",
    solver: str | None = None,
    strict: bool = True,
) -> ExchangeableCertificate:
    """Certified minimum of Paper B's combined loss at any balanced size (m, n, p).

    Same loss as `simulate.certify.certify_combined` (docs/losses.md), reduced by symmetry: with
    symmetry="classes" the m classes form one orbit (variables a, b, c); "none" keeps one
    orbit per class (a_i, b_i, c_ik), a check of the first.
    """
    m, n, p = require_balanced_sizes(n_classes, n_per_class, n_views)
    require_variant(variant, p)
    alpha = require_scalar("alpha", require_alpha(alpha))
    tau = require_scalar("tau", require_tau_in_range(tau))
    require_choice("symmetry", symmetry, SYMMETRIES)
    sizes = (n,) * m
    structure = Structure(class_orbits(sizes, None, symmetry), sizes, p, None, 0)
    return certify_reduced(build(structure, f"combined-{variant}", tau, alpha), solver=solver, strict=strict)


def certify_supcon(
    class_sizes: Sequence[int], tau: float, *, symmetry: str = "classes", solver: str | None = None, strict: bool = True
) -> ExchangeableCertificate:
    """Certified minimum of per-anchor SCL (docs/losses.md) for any class sizes (each >= 1, one >= 2)."""
    sizes = require_class_sizes(class_sizes, 1)
    if max(sizes) < 2:
        raise ValueError(f"class_sizes must contain a class of size >= 2 (else no anchor has a positive), got {sizes}")
    tau = require_scalar("tau", require_tau_in_range(tau))
    require_choice("symmetry", symmetry, SYMMETRIES)
    structure = Structure(class_orbits(sizes, None, symmetry), sizes, 1, None, 0)
    return certify_reduced(build(structure, "supcon", tau), solver=solver, strict=strict)


def certify_prototype(
    class_sizes: Sequence[int],
    prototype_gram: ArrayLike,
    n_proto: int,
    tau: float,
    anchors: str = "data",
    *,
    symmetry: str = "classes",
    solver: str | None = None,
    strict: bool = True,
) -> ExchangeableCertificate:
    """Certified minimum of prototype SCL (docs/losses.md) for any class sizes, prototype Gram and n_proto.

    Args:
        class_sizes: data samples per class (m entries >= 0, sum >= 1).
        prototype_gram: (m, m) Gram of the fixed prototypes (psd, unit diagonal).
        n_proto: copies of each prototype n_w >= 0 (0 is plain SCL on the data).
        tau: > 0. anchors: "data" | "all". symmetry: "classes" | "none".
    """
    sizes = require_class_sizes(class_sizes, 0)
    if sum(sizes) < 1:
        raise ValueError(f"class_sizes must contain at least one sample, got {sizes}")
    try:
        gram = check_gram(prototype_gram)
    except ValueError as error:
        raise ValueError(f"prototype_gram: {error}") from None
    if gram.shape != (len(sizes), len(sizes)):
        raise ValueError(f"prototype_gram must have shape ({len(sizes)}, {len(sizes)}), got {gram.shape}")
    n_proto = require_int("n_proto", n_proto, 0)
    tau = require_scalar("tau", require_tau_in_range(tau))
    require_choice("anchors", anchors, ANCHOR_MODES)
    require_choice("symmetry", symmetry, SYMMETRIES)
    if n_proto == 0 and max(sizes) < 2:
        raise ValueError(f"class_sizes {sizes} with n_proto = 0 give no anchor a positive (loss undefined)")
    structure = Structure(class_orbits(sizes, gram, symmetry), sizes, 1, gram, n_proto)
    return certify_reduced(build(structure, f"prototype-{anchors}", tau), solver=solver, strict=strict)
