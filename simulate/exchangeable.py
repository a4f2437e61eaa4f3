"""Exchangeable certificates: certified global minima of the contrastive losses at any size.

The full programs of `simulate.certify` optimise over the Gram matrix G of all K vectors
and stop near K = 48. This module solves the same programs reduced by symmetry, so that
their size depends on the number of classes m (and on how many classes are alike), not
on the class sizes n_i, the views p or the prototype copies n_w (docs/certificates.md).

Why the reduction is exact
--------------------------
Every loss of `simulate.losses` is convex in G and unchanged when rows that play the same
role are permuted: the views of one instance, the instances of one class, and classes
that are alike (same size, and the fixed prototype Gram P unchanged by swapping them;
the labels and the prototypes move with their class). For an optimal G, the average of
pi(G) over that group is feasible (psd, unit diagonal, the same prototype block) and has
no larger loss (Jensen), so an *invariant* global minimiser exists. An invariant G has
one value per relation. With classes grouped into orbits o (m_o alike classes of n_o
instances each), p views and prototypes w_k:

    a_o   = <z_ijv, z_ijv'>    views of one instance (v != v')
    b_o   = <z_ijv, z_ij'v'>   instances of one class (j != j')
    c_oq  = <z_i.., z_k..>     different classes, i in o, k in q (c_oo: two classes of o)
    x_o   = <z_i.., w_i>       data and its own class's prototype
    x_oo  = <z_i.., w_k>       data and the prototype of another class of its orbit
    x_oq  = <z_i.., w_k>       data of orbit o, prototype of a class of orbit q != o

When is an invariant G psd? Split R^K into subspaces G maps to themselves:
* view contrasts (sum over views 0) inside an instance: eigenvalue 1 - a_o,
  multiplicity m_o n_o (p - 1);
* instance contrasts of the instance sums inside a class: eigenvalue
  1 + (p - 1) a_o - p b_o, multiplicity m_o (n_o - 1);
* class contrasts inside an orbit (data class sums and prototypes together): the 2 x 2
  matrix [[d_o - e_o, g_o - h_o], [g_o - h_o, 1 - P_oo]], multiplicity m_o - 1, where
  d_o = 1 + (p - 1) a_o + (n_o - 1) p b_o is <S_i, S_i>/(n_o p) for the class sum S_i,
  e_o = p n_o c_oo, g_o = sqrt(n_o p) x_o, h_o = sqrt(n_o p) x_oo;
* orbit sums: one (data, prototype) row per orbit, the matrix
      data o, data o:   d_o + (m_o - 1) e_o        data o, data q:   sqrt(m_o m_q) p sqrt(n_o n_q) c_oq
      data o, proto o:  g_o + (m_o - 1) h_o        data o, proto q:  sqrt(m_o m_q) sqrt(n_o p) x_oq
      proto o, proto o: 1 + (m_o - 1) P_oo         proto o, proto q: sqrt(m_o m_q) P_oq.
G is psd iff every one of these is psd. With every class its own orbit this is the
(2m x 2m) Gram of the normalised class sums bordered by the prototypes.

Every anchor of an orbit sees the same multiset of similarities (self 1, a_o p - 1 times,
b_o (n_o - 1) p times, ...), so the loss is a short weighted sum of log-sum-exps with
log-multiplicity shifts, minus a linear term: the same convex program in a handful of
variables. Its size does not grow with n_o, p or n_w: CIFAR-10 with step imbalance is
two orbits, about a dozen variables.

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
import warnings
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import scipy.sparse as sparse
from scipy.special import logsumexp, softmax

import torch

from simulate import metrics
from simulate.certify import ANCHOR_MODES, CertificateError, solve_problem
from theory.arguments import (
    require_alpha,
    require_balanced_sizes,
    require_choice,
    require_int,
    require_tau,
    require_variant,
)
from theory.simplex import check_gram

#: Solver attempts in order; the first "optimal" wins. The reduced programs are small and
#: well scaled, so CLARABEL usually reaches 1e-10; looser attempts follow (their `gap` says so).
ATTEMPTS = (("CLARABEL", 1e-10), ("CLARABEL", 1e-9), ("CLARABEL", 1e-8), ("SCS", 1e-9))

#: Largest eigenvalue violation (relative to the block's scale) of a point counted as feasible.
FEASIBILITY = 1e-11

#: Eigenvalues below this (relative to the block's scale) count as zero: rank and active faces.
RANK_TOL = 1e-6

#: The polish step runs Newton on a dense Hessian: only for at most this many variables.
MAX_POLISH_VARIABLES = 600

SYMMETRIES = ("classes", "none")


# ---------------------------------------------------------------------------
# The reduced program: variables, anchors, psd blocks


@dataclass(frozen=True)
class Term:
    """A similarity that is a variable (`name`) or a constant (`name` None, `value`)."""

    name: str | None
    value: float = 0.0


def _sim(x) -> Term:
    return Term(x) if isinstance(x, str) else Term(None, float(x))


@dataclass(frozen=True)
class AnchorType:
    """`weight` anchors that all see `terms` (similarity, count) and average `positives` (similarity, coefficient)."""

    weight: float
    terms: tuple[tuple[Term, float], ...]
    positives: tuple[tuple[Term, float], ...]


@dataclass(frozen=True)
class Block:
    """A symmetric k x k matrix affine in the variables that must be psd; it occurs `multiplicity` times.

    entries[r][c] is a tuple of (Term, coefficient); the entry is their sum. The program uses
    diag(scale) Q diag(scale) (psd iff Q is): rows of class sums scaled by 1/sqrt(count) make
    every entry O(1) — an inner product of means — whatever n_i; unscaled, entries of order
    n p (5000 at CIFAR size) left CLARABEL "optimal" 1e-5 away from the optimum, with a dual
    bound above the true minimum.
    """

    label: str
    multiplicity: int
    entries: tuple[tuple[tuple[tuple[Term, float], ...], ...], ...]
    scale: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Structure:
    """What is exchangeable: classes grouped into orbits, sizes, views, prototypes.

    orbits: tuple of class-id tuples; sizes[i] instances of class i (0 allowed with
    prototypes); n_views p; prototype_gram P (m, m) or None; n_proto n_w.
    """

    orbits: tuple[tuple[int, ...], ...]
    sizes: tuple[int, ...]
    n_views: int
    prototype_gram: np.ndarray | None
    n_proto: int

    @property
    def n_classes(self) -> int:
        return len(self.sizes)

    def orbit_size(self, o: int) -> int:
        return self.sizes[self.orbits[o][0]]

    def orbit_count(self, o: int) -> int:
        return len(self.orbits[o])

    def orbit_of(self, i: int) -> int:
        return next(o for o, members in enumerate(self.orbits) if i in members)

    def prototype_between(self, o: int, q: int) -> float:
        """P between a class of orbit o and another class of orbit q (distinct classes)."""
        members_o, members_q = self.orbits[o], self.orbits[q]
        k = members_q[1] if o == q else members_q[0]
        return float(self.prototype_gram[members_o[0], k])


def class_orbits(sizes, prototype_gram=None, symmetry: str = "classes") -> tuple[tuple[int, ...], ...]:
    """Group alike classes: equal sizes, and P unchanged by permuting classes inside groups.

    "classes": classes of equal size form an orbit when P is constant on the blocks this
    partition induces (within and between orbits, off the diagonal) to 1e-12; otherwise
    every class is its own orbit. "none": every class its own orbit.
    """
    m = len(sizes)
    singletons = tuple((i,) for i in range(m))
    if symmetry == "none":
        return singletons
    by_size: dict[int, list[int]] = {}
    for i, size in enumerate(sizes):
        by_size.setdefault(size, []).append(i)
    orbits = tuple(tuple(members) for members in by_size.values())
    if prototype_gram is None:
        return orbits
    for members_o in orbits:
        for members_q in orbits:
            block = prototype_gram[np.ix_(members_o, members_q)]
            values = block[~np.eye(len(members_o), len(members_q), dtype=bool)] if members_o is members_q else block
            if values.size and np.ptp(values) > 1e-12:
                return singletons
    return orbits


def _names(structure: Structure) -> dict:
    """Variable names per relation, present only where the relation exists."""
    p, has_proto = structure.n_views, structure.prototype_gram is not None
    names = {}
    for o in range(len(structure.orbits)):
        n_o, m_o = structure.orbit_size(o), structure.orbit_count(o)
        if n_o >= 1 and p >= 2:
            names[("a", o)] = f"a{o}"
        if n_o >= 2:
            names[("b", o)] = f"b{o}"
        for q in range(o, len(structure.orbits)):
            if n_o >= 1 and structure.orbit_size(q) >= 1 and (q != o or m_o >= 2):
                names[("c", o, q)] = names[("c", q, o)] = f"c{o},{q}"
        if has_proto and n_o >= 1:
            names[("x", o)] = f"x{o}"
            for q in range(len(structure.orbits)):
                if q != o or m_o >= 2:
                    names[("x", o, q)] = f"x{o},{q}"
    return names


def _data_anchor(structure: Structure, names: dict, o: int, family: str, alpha: float) -> AnchorType | None:
    """The m_o n_o p data anchors of orbit o: the similarities each sees and its positives."""
    p, n_w = structure.n_views, structure.n_proto
    n_o, m_o = structure.orbit_size(o), structure.orbit_count(o)
    terms = []
    if family == "combined-instance":
        terms.append((_sim(1.0), 1))
    if ("a", o) in names:
        terms.append((_sim(names[("a", o)]), p - 1))
    if ("b", o) in names:
        terms.append((_sim(names[("b", o)]), (n_o - 1) * p))
    for q in range(len(structure.orbits)):
        if ("c", o, q) in names:
            others = (m_o - 1) if q == o else structure.orbit_count(q)
            terms.append((_sim(names[("c", o, q)]), others * structure.orbit_size(q) * p))
    if n_w >= 1:
        terms.append((_sim(names[("x", o)]), n_w))
        for q in range(len(structure.orbits)):
            if ("x", o, q) in names:
                terms.append((_sim(names[("x", o, q)]), ((m_o - 1) if q == o else structure.orbit_count(q)) * n_w))
    if family == "combined-instance":
        positives = [(_sim(1.0), alpha / p), (_sim(names[("b", o)]), 1 - alpha)]
        if p >= 2:
            positives.append((_sim(names[("a", o)]), alpha * (p - 1) / p))
    elif family == "combined-supcon":
        positives = [(_sim(names[("a", o)]), alpha), (_sim(names[("b", o)]), 1 - alpha)]
    else:  # per-anchor SCL, with or without prototypes
        count = (n_o - 1) + n_w
        if count == 0:
            return None
        positives = []
        if n_o >= 2:
            positives.append((_sim(names[("b", o)]), (n_o - 1) / count))
        if n_w >= 1:
            positives.append((_sim(names[("x", o)]), n_w / count))
    positives = tuple((term, coefficient) for term, coefficient in positives if coefficient != 0)
    return AnchorType(float(m_o * n_o * p), tuple(terms), positives)


def _prototype_anchor(structure: Structure, names: dict, q: int) -> AnchorType | None:
    """The n_w copies of each prototype of orbit q as anchors (anchors="all"), weight m_q n_w."""
    n_w, n_q, m_q = structure.n_proto, structure.orbit_size(q), structure.orbit_count(q)
    terms = []
    if n_q >= 1:
        terms.append((_sim(names[("x", q)]), n_q))
    for o in range(len(structure.orbits)):
        if ("x", o, q) in names:
            count = (m_q - 1) * n_q if o == q else structure.orbit_count(o) * structure.orbit_size(o)
            terms.append((_sim(names[("x", o, q)]), count))
    for o in range(len(structure.orbits)):
        if o != q or m_q >= 2:
            others = (m_q - 1) if o == q else structure.orbit_count(o)
            terms.append((_sim(structure.prototype_between(q, o)), others * n_w))
    if n_w >= 2:
        terms.append((_sim(1.0), n_w - 1))
    count = n_q + n_w - 1
    if count == 0:
        return None
    positives = []
    if n_q >= 1:
        positives.append((_sim(names[("x", q)]), n_q / count))
    if n_w >= 2:
        positives.append((_sim(1.0), (n_w - 1) / count))
    return AnchorType(float(m_q * n_w), tuple(terms), tuple(positives))


def _linear(*parts) -> tuple[tuple[Term, float], ...]:
    """An affine entry from (similarity, coefficient) pairs, zero coefficients dropped."""
    return tuple((_sim(x), float(coefficient)) for x, coefficient in parts if coefficient != 0)


def _class_sum_norm(structure: Structure, names: dict, o: int) -> list:
    """d_o = <S_i, S_i>/(n_o p) = 1 + (p - 1) a_o + (n_o - 1) p b_o as affine parts."""
    p, n_o = structure.n_views, structure.orbit_size(o)
    parts = [(1.0, 1.0)]
    if ("a", o) in names:
        parts.append((names[("a", o)], p - 1))
    if ("b", o) in names:
        parts.append((names[("b", o)], (n_o - 1) * p))
    return parts


def _blocks(structure: Structure, names: dict) -> tuple[Block, ...]:
    """Every psd condition of the invariant G (module docstring), with its multiplicity."""
    p, has_proto = structure.n_views, structure.prototype_gram is not None
    blocks = []
    orbits = range(len(structure.orbits))
    for o in orbits:
        n_o, m_o = structure.orbit_size(o), structure.orbit_count(o)
        if ("a", o) in names:
            blocks.append(Block(f"views{o}", m_o * n_o * (p - 1), ((_linear((1.0, 1.0), (names[("a", o)], -1.0)),),)))
        if ("b", o) in names:
            parts = [(1.0, 1.0), (names[("b", o)], -p)]
            if ("a", o) in names:
                parts.append((names[("a", o)], p - 1.0))
            entry = _linear(*parts)
            blocks.append(Block(f"instances{o}", m_o * (n_o - 1), ((entry,),)))
        if m_o >= 2 and n_o >= 1:
            scale = math.sqrt(n_o * p)
            data = _linear(*_class_sum_norm(structure, names, o), (names[("c", o, o)], -p * n_o))
            if has_proto:
                cross = _linear((names[("x", o)], scale), (names[("x", o, o)], -scale))
                proto = _linear((1.0, 1.0 - structure.prototype_between(o, o)))
                blocks.append(Block(f"classes{o}", m_o - 1, ((data, cross), (cross, proto)), (1 / scale, 1.0)))
            else:
                blocks.append(Block(f"classes{o}", m_o - 1, ((data,),), (1 / scale,)))
    rows = [("data", o) for o in orbits if structure.orbit_size(o) >= 1]
    if has_proto:
        rows += [("proto", o) for o in orbits]
    scale = tuple(1 / math.sqrt(structure.orbit_count(o) * (structure.orbit_size(o) * p if kind == "data" else 1))
                  for kind, o in rows)  # the Gram of orbit means of class means and of prototypes
    entries = tuple(tuple(_sum_entry(structure, names, r, c) for c in rows) for r in rows)
    blocks.append(Block("sums", 1, entries, scale))
    return tuple(blocks)


def _sum_entry(structure: Structure, names: dict, row, column):
    """One entry of the orbit-sum matrix (module docstring)."""
    (kind_r, o), (kind_c, q) = row, column
    m_o, m_q = structure.orbit_count(o), structure.orbit_count(q)
    n_o, n_q, p = structure.orbit_size(o), structure.orbit_size(q), structure.n_views
    root = math.sqrt(m_o * m_q)
    if kind_r == "proto" and kind_c == "proto":
        if o == q:
            return _linear((1.0, 1.0 + (m_o - 1) * (structure.prototype_between(o, o) if m_o >= 2 else 0.0)))
        return _linear((1.0, root * structure.prototype_between(o, q)))
    if kind_r == "proto":
        return _sum_entry(structure, names, column, row)
    if kind_c == "data":
        if o == q:
            parts = _class_sum_norm(structure, names, o)
            if m_o >= 2:
                parts.append((names[("c", o, o)], (m_o - 1) * p * n_o))
            return _linear(*parts)
        return _linear((names[("c", o, q)], root * p * math.sqrt(n_o * n_q)))
    scale = math.sqrt(n_o * p)
    if o == q:
        parts = [(names[("x", o)], scale)]
        if m_o >= 2:
            parts.append((names[("x", o, o)], (m_o - 1) * scale))
        return _linear(*parts)
    return _linear((names[("x", o, q)], root * scale))


# ---------------------------------------------------------------------------
# Numeric form: evaluation, gradient, Hessian, and the cvxpy program


@dataclass
class Reduced:
    """The reduced program in arrays: loss(theta) and the psd blocks Q_j(theta)."""

    structure: Structure
    family: str
    tau: float
    variables: tuple[str, ...]
    anchors: tuple[AnchorType, ...]
    blocks: tuple[Block, ...]
    groups: list = field(default_factory=list)  # per denominator length: (index (T, L), const, shift, weight (T,))
    positive_weights: np.ndarray = None  # (V,) sum_t w_t coefficient on each variable
    positive_constant: float = 0.0
    total_weight: float = 0.0
    block_arrays: list = field(default_factory=list)  # per block: (F0 (k, k), F (V, k, k) sparse-ish as dense list)

    def __post_init__(self):
        index = {name: j for j, name in enumerate(self.variables)}
        self.index = index
        rows_by_length: dict[int, list] = {}
        self.positive_weights = np.zeros(len(self.variables))
        for anchor in self.anchors:
            ids = np.array([index[t.name] if t.name else -1 for t, _ in anchor.terms])
            const = np.array([0.0 if t.name else t.value for t, _ in anchor.terms])
            shift = np.log([count for _, count in anchor.terms])
            rows_by_length.setdefault(len(ids), []).append((ids, const, shift, anchor.weight))
            for term, coefficient in anchor.positives:
                if term.name:
                    self.positive_weights[index[term.name]] += anchor.weight * coefficient
                else:
                    self.positive_constant += anchor.weight * coefficient * term.value
            self.total_weight += anchor.weight
        self.groups = [tuple(np.array(column) for column in zip(*rows)) for rows in rows_by_length.values()]
        self.block_arrays = [self._block_array(block) for block in self.blocks]

    def _block_array(self, block: Block) -> tuple[np.ndarray, sparse.csr_matrix]:
        """(F0 (k, k), F (k*k, V)) with vec(Q(theta)) = vec(F0) + F theta (row-major vec)."""
        k = len(block.entries)
        scale = np.ones(k) if block.scale is None else np.asarray(block.scale)
        constant = np.zeros((k, k))
        rows, columns, values = [], [], []
        for r in range(k):
            for c in range(k):
                for term, coefficient in block.entries[r][c]:
                    if term.name:
                        rows.append(r * k + c)
                        columns.append(self.index[term.name])
                        values.append(coefficient * scale[r] * scale[c])
                    else:
                        constant[r, c] += coefficient * term.value * scale[r] * scale[c]
        linear = sparse.csr_matrix((values, (rows, columns)), shape=(k * k, len(self.variables)))
        return constant, linear

    def block_values(self, theta: np.ndarray) -> list[np.ndarray]:
        """Q_j(theta) for every block, each (k, k)."""
        return [constant + (linear @ theta).reshape(constant.shape) for constant, linear in self.block_arrays]

    def _term_values(self, theta, ids, const):
        return np.where(ids >= 0, theta[np.clip(ids, 0, None)], const)

    def loss(self, theta: np.ndarray) -> float:
        """The mean loss at theta, float64."""
        total = -(self.positive_weights @ theta + self.positive_constant) / self.tau
        for ids, const, shift, weight in self.groups:
            total += weight @ logsumexp(self._term_values(theta, ids, const) / self.tau + shift, axis=1)
        return float(total / self.total_weight)

    def gradient_hessian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient (V,) and Hessian (V, V) of `loss` (log-sum-exp: softmax and its covariance)."""
        size = len(self.variables)
        gradient = -self.positive_weights / self.tau
        hessian = np.zeros((size, size))
        for ids, const, shift, weight in self.groups:
            probabilities = softmax(self._term_values(theta, ids, const) / self.tau + shift, axis=1)  # (T, L)
            selector = np.zeros(ids.shape + (size,))  # (T, L, V): d term / d theta
            t_index, l_index = np.nonzero(ids >= 0)
            selector[t_index, l_index, ids[t_index, l_index]] = 1.0
            mean = np.einsum("tl,tlv->tv", probabilities, selector)  # (T, V)
            gradient = gradient + weight @ mean / self.tau
            second = np.einsum("t,tl,tlv,tlw->vw", weight, probabilities, selector, selector)
            hessian += (second - np.einsum("t,tv,tw->vw", weight, mean, mean)) / self.tau**2
        return gradient / self.total_weight, hessian / self.total_weight

    def violation(self, theta: np.ndarray) -> float:
        """Largest negative eigenvalue over the blocks, relative to each block's scale (0 if feasible)."""
        worst = 0.0
        for Q in self.block_values(theta):
            eigenvalues = np.linalg.eigvalsh((Q + Q.T) / 2)
            worst = max(worst, -eigenvalues[0] / max(1.0, np.abs(eigenvalues).max()))
        return worst

    def problem(self) -> tuple[cp.Problem, cp.Variable]:
        """The convex program in cvxpy: minimise loss(theta) s.t. every block psd."""
        theta = cp.Variable(len(self.variables))
        objective = -(self.positive_weights @ theta + self.positive_constant) / self.tau
        for ids, const, shift, weight in self.groups:
            t_index, l_index = np.nonzero(ids >= 0)
            select = sparse.csr_matrix(
                (np.ones(len(t_index)), (t_index * ids.shape[1] + l_index, ids[t_index, l_index])),
                shape=(ids.size, len(self.variables)),
            )
            flat = select @ theta + const.reshape(-1)
            values = cp.reshape(flat, ids.shape, order="C") / self.tau + shift
            objective = objective + weight @ cp.log_sum_exp(values, axis=1)
        constraints = []  # one per block, in block order (`dual_matrices` reads them back)
        for constant, linear in self.block_arrays:
            k = constant.shape[0]
            if k == 1:
                constraints.append(linear @ theta + constant.reshape(-1) >= 0)
                continue
            upper = [r * k + c for r in range(k) for c in range(r, k)]
            Z = cp.Variable((k, k), PSD=True)
            constraints.append(cp.vec(Z, order="C")[upper] == linear[upper] @ theta + constant.reshape(-1)[upper])
        return cp.Problem(cp.Minimize(objective / self.total_weight), constraints), theta

    def dual_matrices(self, problem: cp.Problem) -> list[np.ndarray] | None:
        """The solver's multiplier of each block as a symmetric (k, k) matrix (None if unavailable).

        Its range is where the constraint binds: the face a polish should keep (a null direction
        of Q_j with a zero multiplier is free to open up).
        """
        duals = []
        for (constant, _), constraint in zip(self.block_arrays, problem.constraints):
            value = constraint.dual_value
            if value is None:
                return None
            k = constant.shape[0]
            matrix = np.zeros((k, k))
            matrix[np.triu_indices(k)] = np.ravel(value)
            duals.append((matrix + matrix.T) / 2)
        return duals


def build(structure: Structure, family: str, tau: float, alpha: float = 0.0) -> Reduced:
    """The reduced program of a loss family on an exchangeable structure."""
    names = _names(structure)
    orbits = range(len(structure.orbits))
    data = (_data_anchor(structure, names, o, family, alpha) for o in orbits if structure.orbit_size(o) >= 1)
    anchors = [anchor for anchor in data if anchor is not None]
    if family == "prototype-all" and structure.n_proto >= 1:
        anchors += [anchor for anchor in (_prototype_anchor(structure, names, q) for q in orbits) if anchor]
    variables = tuple(dict.fromkeys(names.values()))
    return Reduced(structure, family, tau, variables, tuple(anchors), _blocks(structure, names))


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


def candidate_faces(reduced: Reduced, theta: np.ndarray, duals) -> list[tuple[int, ...]]:
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


def polish(reduced: Reduced, theta: np.ndarray, duals=None) -> tuple[np.ndarray, bool]:
    """The best feasible Newton-polished point over the `candidate_faces`; (theta', found)."""
    best, best_value = theta, math.inf
    for deficiency in candidate_faces(reduced, theta, duals):
        candidate, converged = newton_on_face(reduced, theta, deficiency)
        if converged and reduced.violation(candidate) <= FEASIBILITY:
            value = reduced.loss(candidate)
            if value < best_value:
                best, best_value = candidate, value
    return best, math.isfinite(best_value)


def newton_on_face(reduced: Reduced, theta: np.ndarray, deficiency, max_steps: int = 80):
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
            raise CertificateError(f"{self.loss} exchangeable certificate not optimal: {self.solver} status {self.status!r}")
        return self

    def _value(self, kind: str, o: int, q: int | None = None) -> float:
        """A relation's value; relations without a variable (e.g. b for one instance) are NaN."""
        name = f"{kind}{o}" if q is None else f"{kind}{min(o, q)},{max(o, q)}" if kind == "c" else f"{kind}{o},{q}"
        return self.variables.get(name, math.nan)

    def class_mean_gram(self) -> np.ndarray:
        """<mu_i, mu_k> per class, (m, m): |mu_i|^2 = d_o/(n_o p), c_oq off the diagonal; NaN for classes without data."""
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


def _solve(reduced: Reduced, solver: str | None) -> tuple[np.ndarray | None, dict, list | None]:
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
    theta, solved, duals = _solve(reduced, solver)
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


def realise(certificate: ExchangeableCertificate, prototypes=None, seed: int | None = None):
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


def _scalar(name: str, value) -> float:
    if value.ndim != 0:
        raise ValueError(f"{name} must be a scalar (one program per value), got an array of shape {value.shape}")
    return float(value)


def _sizes(class_sizes, minimum: int) -> tuple[int, ...]:
    if isinstance(class_sizes, (str, bytes)) or not hasattr(class_sizes, "__len__") or len(class_sizes) < 1:
        raise ValueError(f"class_sizes must be a non-empty sequence of integers, got {class_sizes!r}")
    return tuple(require_int(f"class_sizes[{c}]", size, minimum) for c, size in enumerate(class_sizes))


def certify_combined(alpha, tau, n_classes: int, n_per_class: int, n_views: int = 2, variant: str = "instance", *,
                     symmetry: str = "classes", solver: str | None = None, strict: bool = True) -> ExchangeableCertificate:
    """Certified minimum of Paper B's combined loss at any balanced size (m, n, p).

    Same loss as `simulate.certify.certify_combined` (docs/losses.md), reduced by symmetry: with
    symmetry="classes" the m classes form one orbit (variables a, b, c); "none" keeps one
    orbit per class (a_i, b_i, c_ik), a check of the first.
    """
    m, n, p = require_balanced_sizes(n_classes, n_per_class, n_views)
    require_variant(variant, p)
    alpha = _scalar("alpha", require_alpha(alpha))
    tau = _scalar("tau", require_tau(tau))
    require_choice("symmetry", symmetry, SYMMETRIES)
    sizes = (n,) * m
    structure = Structure(class_orbits(sizes, None, symmetry), sizes, p, None, 0)
    return certify_reduced(build(structure, f"combined-{variant}", tau, alpha), solver=solver, strict=strict)


def certify_supcon(class_sizes, tau, *, symmetry: str = "classes", solver: str | None = None,
                   strict: bool = True) -> ExchangeableCertificate:
    """Certified minimum of per-anchor SCL (docs/losses.md) for any class sizes (each >= 1, one >= 2)."""
    sizes = _sizes(class_sizes, 1)
    if max(sizes) < 2:
        raise ValueError(f"class_sizes must contain a class of size >= 2 (else no anchor has a positive), got {sizes}")
    tau = _scalar("tau", require_tau(tau))
    require_choice("symmetry", symmetry, SYMMETRIES)
    structure = Structure(class_orbits(sizes, None, symmetry), sizes, 1, None, 0)
    return certify_reduced(build(structure, "supcon", tau), solver=solver, strict=strict)


def certify_prototype(class_sizes, prototype_gram, n_proto: int, tau, anchors: str = "data", *,
                      symmetry: str = "classes", solver: str | None = None,
                      strict: bool = True) -> ExchangeableCertificate:
    """Certified minimum of prototype SCL (docs/losses.md) for any class sizes, prototype Gram and n_proto.

    Args:
        class_sizes: data samples per class (m entries >= 0, sum >= 1).
        prototype_gram: (m, m) Gram of the fixed prototypes (psd, unit diagonal).
        n_proto: copies of each prototype n_w >= 0 (0 is plain SCL on the data).
        tau: > 0. anchors: "data" | "all". symmetry: "classes" | "none".
    """
    sizes = _sizes(class_sizes, 0)
    if sum(sizes) < 1:
        raise ValueError(f"class_sizes must contain at least one sample, got {sizes}")
    try:
        gram = check_gram(prototype_gram)
    except ValueError as error:
        raise ValueError(f"prototype_gram: {error}") from None
    if gram.shape != (len(sizes), len(sizes)):
        raise ValueError(f"prototype_gram must have shape ({len(sizes)}, {len(sizes)}), got {gram.shape}")
    n_proto = require_int("n_proto", n_proto, 0)
    tau = _scalar("tau", require_tau(tau))
    require_choice("anchors", anchors, ANCHOR_MODES)
    require_choice("symmetry", symmetry, SYMMETRIES)
    if n_proto == 0 and max(sizes) < 2:
        raise ValueError(f"class_sizes {sizes} with n_proto = 0 give no anchor a positive (loss undefined)")
    structure = Structure(class_orbits(sizes, gram, symmetry), sizes, 1, gram, n_proto)
    return certify_reduced(build(structure, f"prototype-{anchors}", tau), solver=solver, strict=strict)
