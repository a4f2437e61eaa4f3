"""Certified global minima of the contrastive losses over Gram matrices (docs/certificates.md).

Every loss of docs/losses.md is, per anchor a, a log-sum-exp of linear functions of the
Gram matrix G of all vectors minus a linear function of G:

    loss(G) = (1 / sum_a w_a) * sum_a w_a [ log sum_{c in D(a)} exp(G_ac / tau + shift_ac)
                                           - sum_b C_ab G_ab / tau ],

with anchor weights w_a (multiplicities), denominator sets D(a), constant shifts
(log k for a row standing for k identical copies) and positive weights C_ab. It is
convex in G. Unit vectors in R^d give exactly the G with diag(G) = 1, G psd and
rank G <= d, so for d >= K (the number of vectors) the minimum of this convex
program over {G psd, diag(G) = 1} is the global minimum over unit embeddings. A
fixed prototype block of G (docs/losses.md#prototype-scl) adds linear equality constraints.

Row order of G matches `simulate.losses`:
* combined loss (`certify_combined`): the m*n*p views, class-major, then instance,
  then view, index (i*n + j)*p + v (`simulate.losses.balanced_layout`);
* per-anchor SCL (`certify_supcon`): the N = sum(class_sizes) samples, class-major;
* prototype SCL (`certify_prototype`): the N samples class-major, then one row per
  prototype (class 0..m-1), each standing for its n_proto identical copies.

Solving: cvxpy with CLARABEL (interior point, exponential and PSD cones) at a
tight tolerance, then at its default, then SCS, then CLARABEL looser
(`ATTEMPTS`). Only status "optimal" counts: otherwise `Certificate.ok` is False
and, by default (``strict=True``), `CertificateError` is raised. The returned Gram is the solver's
G projected onto exact Grams of unit vectors (`nearest_gram`), and the certified
value is the loss there, so it is attained by actual unit vectors
(`Certificate.embeddings`, `Certificate.embeddings_with_prototypes`).

Typical use::

    cert = certify_combined(alpha=0.5, tau=0.3, n_classes=3, n_per_class=2, n_views=2)
    cert.minimum, cert.gap, cert.gram          # value, accuracy figure, (12, 12) Gram
    z = cert.embeddings()                      # (12, 12) unit vectors attaining it
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sparse
from numpy.typing import ArrayLike
from scipy.special import logsumexp

from simulate.gram_program import (
    Program,
    combined_program,
    prototype_program,
    supcon_program,
)
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
from theory.simplex import check_gram, from_gram

#: Largest number of vectors (rows of G) a certificate accepts. CLARABEL's Newton
#: system on the K(K+1)/2 PSD entries is dense, so one attempt costs about K^6.
#: Measured for one CLARABEL attempt on 2 cores shared with other jobs (load ~7):
#: K = 32: 3-5 s, 40: 6 s, 48: 12 s, 56: 30 s, 64: 42-74 s. A certificate may need
#: several attempts (`ATTEMPTS`; at K = 62 all of them took 150 s), so K = 48 keeps
#: even the worst case near a minute.
MAX_VECTORS = 48

SOLVERS = ("CLARABEL", "SCS")

#: Solver attempts in order, (solver, tolerance); the first to report "optimal" wins.
#: * CLARABEL's gap and feasibility tolerances are 1e-9 first: checks compare losses
#:   to 1e-6 relative, and at tau = 0.01-0.02 its default 1e-8 leaves relative errors
#:   up to 7e-7 in the loss (1/tau amplifies the residuals), 1e-9 below 2e-7
#:   (measured on m, n, p <= 3, tau in [0.01, 10]).
#: * At 1e-9 CLARABEL sometimes stalls at a gap of ~2e-9 ("almost solved", i.e.
#:   optimal_inaccurate; about 1 case in 20), so its default 1e-8 comes second.
#: * It can stall at ~1.1e-8 too (1 case in 40 at K = 32); SCS (first order) at 1e-9
#:   then either converges in a few seconds or crawls for minutes, hence its time limit.
#: * CLARABEL at 1e-7 is the last resort; its `gap` says how accurate it is.
ATTEMPTS = (("CLARABEL", 1e-9), ("CLARABEL", 1e-8), ("SCS", 1e-9), ("CLARABEL", 1e-7))

#: Seconds SCS may spend in one attempt.
SCS_TIME_LIMIT = 10.0


class CertificateError(RuntimeError):
    """A convex program did not reach status "optimal": nothing is certified."""


@dataclass(frozen=True, eq=False)
class Certificate:
    """A solved convex program over the Gram matrix G of all vectors.

    The true global minimum L* satisfies lower_bound <~ L* <= minimum: `minimum` is
    the loss at `gram`, which unit vectors attain; `lower_bound` is the solver's dual
    objective, a lower bound up to the solver's dual residual (its tolerance).

    Attributes:
        loss: the program: "combined-instance", "combined-supcon", "supcon",
            "prototype-data" or "prototype-all".
        minimum: the mean loss at `gram` (normalised as in `simulate.losses`),
            evaluated in float64 numpy.
        lower_bound: the solver's dual objective.
        primal: the solver's primal objective, at its slightly infeasible G.
        gram: (K, K) the solver's G projected to an exact Gram of unit vectors.
        labels: (K,) class of each row of G.
        n_data: rows [0, n_data) are data vectors, rows [n_data, K) prototypes.
        solver, tolerance, status: the last attempt of `ATTEMPTS` made, and its
            cvxpy status.
        diag_violation: max |diag(G) - 1| of the solver's G.
        min_eigenvalue: smallest eigenvalue of the solver's G (>= -tolerance).
        fixed_violation: max |gram - prototype_gram| on the prototype block (0 if none).
        seconds: wall time of building and solving, all attempts.
    """

    loss: str
    minimum: float
    lower_bound: float
    primal: float
    gram: np.ndarray
    labels: np.ndarray
    n_data: int
    solver: str
    tolerance: float
    status: str
    diag_violation: float
    min_eigenvalue: float
    fixed_violation: float
    seconds: float

    @property
    def ok(self) -> bool:
        """True iff the solver reported status "optimal"."""
        return self.status == cp.OPTIMAL

    @property
    def gap(self) -> float:
        """minimum - lower_bound: how far `minimum` can lie above L* (to solver accuracy)."""
        return self.minimum - self.lower_bound

    @property
    def residual(self) -> float:
        """Largest of |gap|, diag_violation, -min_eigenvalue and fixed_violation."""
        return max(abs(self.gap), self.diag_violation, -self.min_eigenvalue, self.fixed_violation)

    def require_ok(self) -> Certificate:
        """Return self if the status is "optimal", else raise `CertificateError`."""
        if not self.ok:
            raise CertificateError(f"{self.loss} certificate not optimal: solver {self.solver} status {self.status!r}")
        return self

    def class_mean_gram(self) -> np.ndarray:
        """M^T M of the data class means mu_c = mean of the class's rows; (m, m).

        (docs/metrics.md#class-mean-gram-and-delta-g)

        Linear in G: <mu_c, mu_c'> = mean of G over the (class c, class c') data block.
        Classes without data rows give NaN rows and columns.
        """
        labels = self.labels[: self.n_data]
        classes = np.arange(self.labels.max() + 1)
        members = (labels[None, :] == classes[:, None]).astype(float)  # (m, N)
        with np.errstate(invalid="ignore", divide="ignore"):
            averaging = members / members.sum(axis=1, keepdims=True)
        return averaging @ self.gram[: self.n_data, : self.n_data] @ averaging.T

    def embeddings(self, dim: int | None = None, seed: int | None = None) -> np.ndarray:
        """Unit vectors whose Gram is `gram` (`embeddings_from_gram`); (K, dim)."""
        return embeddings_from_gram(self.gram, dim, seed)

    def embeddings_with_prototypes(self, prototypes) -> tuple[np.ndarray, np.ndarray]:
        """Data embeddings placed against given prototype vectors (prototype programs).

        With X (K, D) realising `gram` (D = max(K, d)) and W the prototypes zero-padded
        to (m, D), the orthogonal Q minimising |X_w Q - W| (Procrustes, X_w the
        prototype rows) maps X_w onto W exactly when X_w X_w^T = W W^T.

        Args:
            prototypes: (m, d) unit vectors with W W^T equal to the fixed block.
        Returns:
            z (n_data, D) data embeddings and W (m, D); [z; W] has Gram `gram`.
        Raises:
            ValueError: no prototype rows, wrong shape, or W W^T differs from the
            fixed block by more than 1e-6.
        """
        prototypes = np.asarray(prototypes, dtype=float)
        m = len(self.labels) - self.n_data
        if m == 0:
            raise ValueError(f"prototypes: this {self.loss} certificate has no prototype rows")
        if prototypes.ndim != 2 or prototypes.shape[0] != m:
            raise ValueError(f"prototypes must have shape ({m}, d) for this certificate, got {prototypes.shape}")
        mismatch = np.abs(prototypes @ prototypes.T - self.gram[self.n_data :, self.n_data :]).max()
        if mismatch > 1e-6:
            raise ValueError(f"prototypes' Gram differs from the certificate's prototype block by {mismatch:.3g}")
        dim = max(len(self.labels), prototypes.shape[1])
        vectors = self.embeddings(dim)
        padded = np.zeros((m, dim))
        padded[:, : prototypes.shape[1]] = prototypes
        u, _, vt = np.linalg.svd(vectors[self.n_data :].T @ padded)
        return vectors[: self.n_data] @ (u @ vt), padded


# ---------------------------------------------------------------------------
# Recovering embeddings


def nearest_gram(G: ArrayLike) -> np.ndarray:
    """A solver's G made an exact Gram of unit vectors; (K, K) -> (K, K).

    Symmetrise, clip negative eigenvalues to 0, rescale D^-1/2 G D^-1/2 to unit
    diagonal. An interior-point G meets diag(G) = 1 and G psd to ~1e-9, so this moves
    it by about that much.
    """
    G = np.asarray(G, dtype=float)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or not np.isfinite(G).all():
        raise ValueError(f"G must be a finite square (K, K) matrix, got shape {G.shape}")
    eigenvalues, eigenvectors = np.linalg.eigh((G + G.T) / 2)
    psd = (eigenvectors * np.clip(eigenvalues, 0.0, None)) @ eigenvectors.T
    diagonal = np.diag(psd)
    if not (diagonal > 0).all():
        raise ValueError("G is too far from a Gram of unit vectors: its psd part has a zero diagonal entry")
    scale = 1.0 / np.sqrt(diagonal)
    gram = psd * scale[:, None] * scale[None, :]
    return (gram + gram.T) / 2  # exactly symmetric, not just to rounding


def embeddings_from_gram(
    G: ArrayLike, dim: int | None = None, seed: int | None = None, rank_tol: float = 1e-6
) -> np.ndarray:
    """Unit vectors Z (K, dim) with Z Z^T = G, via `theory.simplex.from_gram`.

    G is cleaned by `nearest_gram` first. dim=None means dim = K (always realisable).
    A smaller dim keeps the dim largest eigenvalues; the discarded ones must sum to
    <= rank_tol * K (trace G = K), else ValueError: G needs more dimensions.
    A seed applies a seeded random rotation.
    """
    G = nearest_gram(G)
    k = G.shape[0]
    dim = k if dim is None else require_int("dim", dim, 1)
    eigenvalues, eigenvectors = np.linalg.eigh(G)
    order = np.argsort(eigenvalues)[::-1]
    discarded = eigenvalues[order[dim:]].clip(0.0).sum()
    if discarded > rank_tol * k:
        needed = int((eigenvalues > rank_tol).sum())
        raise ValueError(
            f"dim must be large enough for this Gram: dim = {dim} discards eigenvalue mass {discarded:.3g} "
            f"> rank_tol * K = {rank_tol * k:.3g}; use dim >= {needed}"
        )
    keep = order[:dim]
    truncated = (eigenvectors[:, keep] * eigenvalues[keep]) @ eigenvectors[:, keep].T
    return from_gram(nearest_gram(truncated), dim, seed=seed)


# ---------------------------------------------------------------------------
# Building, solving, evaluating


def _entries(rows: np.ndarray, columns: np.ndarray, size: int) -> sparse.csr_matrix:
    """Sparse S with (S vec(G))_i = G[rows_i, columns_i], vec in column-major order."""
    count = len(rows)
    return sparse.csr_matrix((np.ones(count), (np.arange(count), columns * size + rows)), shape=(count, size * size))


def _build(program: Program, tau: float) -> tuple[cp.Problem, cp.Variable]:
    """The cvxpy problem: minimise the program's loss over psd G with its equality constraints.

    Each group of anchors with equal denominator length L becomes one (R, L) affine
    expression of vec(G) and one row-wise log_sum_exp: no per-entry Python loop.
    """
    size = program.size
    G = cp.Variable((size, size), PSD=True)
    vec_G = cp.vec(G, order="F")
    total = -cp.sum(cp.multiply(program.positives, G)) / tau
    for rows, columns, shifts, weights in program.groups():
        flat = _entries(np.repeat(rows, columns.shape[1]), columns.reshape(-1), size) @ vec_G
        total = total + weights @ cp.log_sum_exp(cp.reshape(flat, columns.shape, order="C") / tau + shifts, axis=1)
    n = program.n_data
    constraints = [cp.diag(G)[:n] == 1]
    if program.fixed is not None:
        upper_rows, upper_columns = np.triu_indices(len(program.fixed))  # G symmetric: upper triangle suffices
        select = _entries(n + upper_rows, n + upper_columns, size)
        constraints.append(select @ vec_G == program.fixed[upper_rows, upper_columns])
    return cp.Problem(cp.Minimize(total / program.total_weight), constraints), G


def solver_options(solver: str, tolerance: float) -> dict:
    """The options that ask ``solver`` ("CLARABEL" or "SCS") for accuracy ``tolerance`` within its iteration limits."""
    if solver == "CLARABEL":
        return {"tol_gap_abs": tolerance, "tol_gap_rel": tolerance, "tol_feas": tolerance, "max_iter": 400}
    return {"eps_abs": tolerance, "eps_rel": tolerance, "max_iters": 100_000, "time_limit_secs": SCS_TIME_LIMIT}


def solve_problem(problem: cp.Problem, solver: str, tolerance: float) -> tuple[str, float, float]:
    """Solve in place; return (status, primal, dual objective) on the problem's scale.

    Problem.solve split into get_problem_data / solve_via_data / unpack_results, to
    keep the raw solver result, which carries the dual objective. cvxpy adds a
    constant offset to the solver's objective: problem.value - raw primal.
    """
    options = solver_options(solver, tolerance)
    data, chain, inverse_data = problem.get_problem_data(solver, solver_opts=options)
    raw = chain.solve_via_data(problem, data, warm_start=False, verbose=False, solver_opts=dict(options))
    with warnings.catch_warnings():
        # "Solution may be inaccurate" is reported by the status; no warning from a library.
        warnings.simplefilter("ignore", UserWarning)
        problem.unpack_results(raw, chain, inverse_data)
    if problem.value is None or not np.isfinite(problem.value):
        return problem.status, math.nan, math.nan
    if solver == "CLARABEL":
        primal, dual = raw.obj_val, raw.obj_val_dual
    else:
        primal, dual = raw["info"]["pobj"], raw["info"]["dobj"]
    return problem.status, float(problem.value), float(problem.value - primal + dual)


def _evaluate(program: Program, G: np.ndarray, tau: float) -> float:
    """The program's loss at a Gram matrix G (K, K), float64 numpy."""
    total = -np.sum(program.positives * G) / tau
    for rows, columns, shifts, weights in program.groups():
        total += weights @ logsumexp(G[rows[:, None], columns] / tau + shifts, axis=1)  # (R,) per anchor
    return float(total / program.total_weight)


def _solve(program: Program, tau: float, loss: str, solver: str | None, strict: bool) -> Certificate:
    """Run `ATTEMPTS` (restricted to `solver` if given) until one is optimal."""
    start = time.perf_counter()
    attempts = ATTEMPTS if solver is None else tuple(a for a in ATTEMPTS if a[0] == solver)
    for name, tolerance in attempts:
        problem, G = _build(program, tau)
        try:
            status, primal, dual = solve_problem(problem, name, tolerance)
        except cp.SolverError:
            status, primal, dual = cp.SOLVER_ERROR, math.nan, math.nan
        if status == cp.OPTIMAL:
            break
    raw = None if G.value is None else (G.value + G.value.T) / 2
    solved = {"solver": name, "tolerance": tolerance, "status": status, "primal": primal, "lower_bound": dual}
    certificate = certificate_from_gram(program, tau, loss, raw, solved, time.perf_counter() - start)
    return certificate.require_ok() if strict else certificate


def certificate_from_gram(
    program: Program, tau: float, loss: str, raw: np.ndarray | None, solved: dict, seconds: float
) -> Certificate:
    """The certificate of `program` from the solver's Gram `raw` (None or non-finite: every figure NaN): its
    violations (diagonal, eigenvalue, fixed block) and the loss at its projection `nearest_gram`; `solved` carries
    the solver's name, tolerance, status, primal value and lower bound, `seconds` the solve's wall time."""
    n, size = program.n_data, program.size
    if raw is None or not np.isfinite(raw).all():
        gram = np.full((size, size), math.nan)
        figures = dict(minimum=math.nan, diag_violation=math.nan, min_eigenvalue=math.nan, fixed_violation=math.nan)
    else:
        gram = nearest_gram(raw)
        fixed = 0.0 if program.fixed is None else float(np.abs(gram[n:, n:] - program.fixed).max())
        figures = dict(
            minimum=_evaluate(program, gram, tau),
            diag_violation=float(np.abs(np.diag(raw)[:n] - 1).max()),
            min_eigenvalue=float(np.linalg.eigvalsh(raw)[0]),
            fixed_violation=fixed,
        )
    return Certificate(loss=loss, gram=gram, labels=program.labels, n_data=n, seconds=seconds, **solved, **figures)


# ---------------------------------------------------------------------------
# Validation


def _require_size(size: int) -> None:
    if size > MAX_VECTORS:
        raise ValueError(
            f"number of vectors K must be <= {MAX_VECTORS} (beyond, a certificate takes over about a minute), "
            f"got K = {size}"
        )


def _require_solver(solver) -> None:
    if solver is not None:
        require_choice("solver", solver, SOLVERS)


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
    solver: str | None = None,
    strict: bool = True,
) -> Certificate:
    """Certified global minimum of Paper B's combined loss (docs/losses.md#combined-loss-instance-variant).

    L = (1 - alpha) L_sup + alpha L_self over N = m*n*p unit views of balanced
    classes, minimised over G (N, N) psd with diag(G) = 1: the global minimum over
    unit embeddings in any dim >= N. Rows of G: class-major, then instance, then
    view (`simulate.losses.balanced_layout`).

    Args:
        alpha: weight of the self-supervised term, scalar in [0, 1].
        tau: temperature, scalar > 0.
        n_classes, n_per_class, n_views: m >= 2, n >= 2, p >= 1 (p >= 2 for
            "supcon"); m*n*p <= MAX_VECTORS.
        variant: "instance" (anchor kept in its denominator and self positives) or
            "supcon" (anchor removed from both).
        solver: None (all of `ATTEMPTS`), "CLARABEL" or "SCS" (only that solver's attempts).
        strict: raise `CertificateError` unless the status is "optimal".
    Returns:
        A `Certificate` with K = N rows.
    """
    m, n, p = require_balanced_sizes(n_classes, n_per_class, n_views)
    require_variant(variant, p)
    alpha = require_scalar("alpha", require_alpha(alpha))
    tau = require_scalar("tau", require_tau_in_range(tau))
    _require_solver(solver)
    _require_size(m * n * p)
    return _solve(combined_program(alpha, m, n, p, variant), tau, f"combined-{variant}", solver, strict)


def certify_supcon(
    class_sizes: Sequence[int], tau: float, *, solver: str | None = None, strict: bool = True
) -> Certificate:
    """Certified global minimum of per-anchor SCL (docs/losses.md#per-anchor-scl) for any class sizes.

    l_a = -(1/|P(a)|) sum_{b in P(a)} [G_ab/tau - log sum_{c != a} exp(G_ac/tau)],
    P(a) = the other samples of a's class; mean over the anchors with non-empty
    P(a) (singleton classes anchor nothing). Rows of G: samples, class-major.

    Args:
        class_sizes: samples per class, each >= 1, at least one >= 2, sum <= MAX_VECTORS.
        tau: temperature, scalar > 0.
        solver, strict: as in `certify_combined`.
    Returns:
        A `Certificate` with K = sum(class_sizes) rows.
    """
    sizes = require_class_sizes(class_sizes, 1)
    if max(sizes) < 2:
        raise ValueError(f"class_sizes must contain a class of size >= 2 (else no anchor has a positive), got {sizes}")
    tau = require_scalar("tau", require_tau_in_range(tau))
    _require_solver(solver)
    _require_size(sum(sizes))
    return _solve(supcon_program(sizes), tau, "supcon", solver, strict)


def certify_prototype(
    class_sizes: Sequence[int],
    prototype_gram: ArrayLike,
    n_proto: int,
    tau: float,
    anchors: str = "data",
    *,
    solver: str | None = None,
    strict: bool = True,
) -> Certificate:
    """Certified global minimum of prototype SCL (docs/losses.md#prototype-scl) given fixed prototypes.

    S = the N data samples plus n_proto identical copies of each prototype w_c. G
    has the N data rows, then one row per prototype: (N + m, N + m), its prototype
    block fixed to prototype_gram. The copies enter as log(n_proto) shifts in
    denominators and weight n_proto on positives; with anchors="all" the copies of
    w_c are anchors of weight n_proto. The data block of the optimum is the best data geometry given
    the prototypes. n_proto = 0 is plain SCL on the data (prototype rows then enter
    no term; their cross block is any feasible completion).

    Args:
        class_sizes: data samples per class (m entries, each >= 0, sum >= 1);
            N + m <= MAX_VECTORS.
        prototype_gram: the prototypes' Gram <w_c, w_c'> (W W^T for
            prototypes as rows), (m, m) symmetric psd with unit diagonal (e.g.
            `theory.simplex.etf_gram(m)`).
        n_proto: copies of each prototype, integer >= 0.
        tau: temperature, scalar > 0.
        anchors: "data" (the data samples anchor) or "all" (prototype copies too).
        solver, strict: as in `certify_combined`.
    Returns:
        A `Certificate` with K = N + m rows, n_data = N; see
        `Certificate.embeddings_with_prototypes` to evaluate it against vectors W.
    """
    sizes = require_class_sizes(class_sizes, 0)
    if sum(sizes) < 1:
        raise ValueError(f"class_sizes must contain at least one sample, got {sizes}")
    try:
        gram = check_gram(prototype_gram)
    except ValueError as error:
        raise ValueError(f"prototype_gram: {error}") from None
    if gram.shape != (len(sizes), len(sizes)):
        m = len(sizes)
        raise ValueError(f"prototype_gram must have shape ({m}, {m}), one row per class, got {gram.shape}")
    n_proto = require_int("n_proto", n_proto, 0)
    tau = require_scalar("tau", require_tau_in_range(tau))
    require_choice("anchors", anchors, ANCHOR_MODES)
    _require_solver(solver)
    _require_size(sum(sizes) + len(sizes))
    program = prototype_program(sizes, gram, n_proto, anchors)
    if not program.anchors:
        raise ValueError(f"class_sizes {sizes} with n_proto = {n_proto} give no anchor a positive (loss undefined)")
    return _solve(program, tau, f"prototype-{anchors}", solver, strict)


if __name__ == "__main__":  # python -m simulate.certify: the command line lives in simulate.certify_command
    import sys

    from simulate import cli
    from simulate.certify_command import COMMAND, main

    sys.exit(cli.run_command(COMMAND, main))
