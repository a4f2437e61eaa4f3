"""The exchangeable certificate programs, reduced by symmetry (docs/certificates.md).

The full programs of `simulate.certify` optimise over the Gram matrix G of all K vectors.
This module writes the same programs in a handful of variables whose number depends on the
number of classes m (and on how many classes are alike), not on the class sizes n_i, the
views p or the prototype copies n_w. `simulate.exchangeable` solves them.

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

"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import scipy.sparse as sparse
from scipy.special import logsumexp, softmax

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
        """The orbit of class i (a table built once: class-level results ask m^2 times)."""
        return self._orbit_table[i]

    @functools.cached_property
    def _orbit_table(self) -> dict[int, int]:
        return {i: o for o, members in enumerate(self.orbits) for i in members}

    def prototype_between(self, o: int, q: int) -> float:
        """P between a class of orbit o and another class of orbit q (distinct classes)."""
        members_o, members_q = self.orbits[o], self.orbits[q]
        k = members_q[1] if o == q else members_q[0]
        return float(self.prototype_gram[members_o[0], k])


def class_orbits(
    sizes: Sequence[int], prototype_gram: np.ndarray | None = None, symmetry: str = "classes"
) -> tuple[tuple[int, ...], ...]:
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
    scale = tuple(
        1 / math.sqrt(structure.orbit_count(o) * (structure.orbit_size(o) * p if kind == "data" else 1))
        for kind, o in rows
    )  # the Gram of orbit means of class means and of prototypes
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
