"""Tests of simulate.exchangeable that pin what mutation testing found unpinned (docs/mutation.md).

Each expected value comes from an independent route: the invariant Gram written out row by row from the
relations the reduced variables name (docs/certificates.md), block averages of that Gram for the class
means, the definitions of T, W, B and DeltaG* (docs/metrics.md) evaluated on it, the SSEM closed form, or the
rule a docstring states (the polish is kept only when feasible and no worse; the first optimal attempt
wins). Certificates built by hand (no solver) and scripted programs keep the tests fast.
"""

import math
import time
from types import SimpleNamespace

import cvxpy as cp
import numpy as np
import pytest
import sympy

from simulate import exchangeable
from simulate.certify import CertificateError
from simulate.exchangeable import ExchangeableCertificate, certify_combined, certify_prototype, certify_supcon
from simulate.polish import FEASIBILITY
from simulate.reduction import Structure
from theory import simplex, ssem

#: float64 agreement of Grams rebuilt from explicit vectors (eigendecompositions of small matrices).
GRAM = 1e-10


# ---------------------------------------------------------------------------
# The invariant Gram, written out from the relations (independent of the module's formulas)


def _orbit_of(structure: Structure) -> dict:
    return {i: o for o, members in enumerate(structure.orbits) for i in members}


def _rows(structure: Structure) -> list[tuple[int, int, int]]:
    """(class, instance, view) of every data row, class-major like `realise`."""
    return [
        (i, j, v)
        for i in range(structure.n_classes)
        for j in range(structure.sizes[i])
        for v in range(structure.n_views)
    ]


def _invariant_gram(certificate: ExchangeableCertificate) -> tuple[np.ndarray, np.ndarray | None]:
    """The data Gram (N, N) and the data-prototype block (N, m) the reduced variables describe."""
    s, values = certificate.structure, certificate.variables
    orbit = _orbit_of(s)
    rows = _rows(s)
    G = np.empty((len(rows), len(rows)))
    for r, (i, j, _) in enumerate(rows):
        for t, (k, jj, _) in enumerate(rows):
            if r == t:
                G[r, t] = 1.0
            elif i == k and j == jj:
                G[r, t] = values[f"a{orbit[i]}"]
            elif i == k:
                G[r, t] = values[f"b{orbit[i]}"]
            else:
                low, high = sorted((orbit[i], orbit[k]))
                G[r, t] = values[f"c{low},{high}"]
    if s.prototype_gram is None:
        return G, None
    cross = np.array(
        [
            [values[f"x{orbit[i]}"] if k == i else values[f"x{orbit[i]},{orbit[k]}"] for k in range(s.n_classes)]
            for i, _, _ in rows
        ]
    ).reshape(len(rows), s.n_classes)
    return G, cross


def _class_blocks(structure: Structure) -> list[np.ndarray]:
    labels = np.array([i for i, _, _ in _rows(structure)], dtype=int)
    return [np.flatnonzero(labels == i) for i in range(structure.n_classes)]


def _block_means(G: np.ndarray, structure: Structure) -> np.ndarray:
    """<mu_i, mu_k> = mean of the (i, k) block of G; NaN for classes without data."""
    blocks = _class_blocks(structure)
    m = structure.n_classes
    means = np.full((m, m), math.nan)
    for i in range(m):
        for k in range(m):
            if len(blocks[i]) and len(blocks[k]):
                means[i, k] = G[np.ix_(blocks[i], blocks[k])].mean()
    return means


def _hand_certificate(structure: Structure, variables: dict) -> ExchangeableCertificate:
    """A certificate with given reduced variables and no solver behind it."""
    return ExchangeableCertificate(
        loss="hand",
        minimum=math.nan,
        lower_bound=math.nan,
        status=cp.OPTIMAL,
        solver="none",
        tolerance=0.0,
        polished=False,
        violation=0.0,
        variables=dict(variables),
        structure=structure,
        block_values=(),
        block_multiplicities=(),
        seconds=0.0,
    )


def _views_apart() -> ExchangeableCertificate:
    """m = 3 alike classes of n = 3 instances, p = 3 views that do not coincide (a < 1)."""
    # psd: 1 - a = 0.5, 1 + 2a - 3b = 1.4, class contrast 3.2 + 0.9 = 4.1, sum 3.2 - 1.8 = 1.4 (all > 0).
    return _hand_certificate(Structure(((0, 1, 2),), (3, 3, 3), 3, None, 0), {"a0": 0.5, "b0": 0.2, "c0,0": -0.1})


def _views_apart_two() -> ExchangeableCertificate:
    """m = 2, n = 2, p = 2 with a < 1: the smallest case with a view part and an instance part."""
    # psd: 1 - a = 0.3, 1 + a - 2b = 1.3, d = 1 + a + 2b = 2.1, contrast 2.1 + 4 * 0.3 = 3.3, sum 2.1 - 1.2 = 0.9.
    return _hand_certificate(Structure(((0, 1),), (2, 2), 2, None, 0), {"a0": 0.7, "b0": 0.2, "c0,0": -0.3})


NAMES = (
    "views-apart",
    "views-apart-two",
    "instance-p3",
    "supcon-variant",
    "supcon-singletons",
    "prototype-empty-class",
    "prototype-orbits",
)


@pytest.fixture(scope="session")
def certificates() -> dict:
    """Solved and hand-built certificates covering views, singletons, several orbits and empty classes."""
    spread = simplex.minority_spread_gram(4, 0.5)
    return {
        "views-apart": _views_apart(),
        "views-apart-two": _views_apart_two(),
        "instance-p3": certify_combined(0.6, 0.3, 3, 2, 3),
        "supcon-variant": certify_combined(0.1, 0.2, 2, 3, 2, "supcon"),
        "supcon-singletons": certify_supcon((3, 3, 1, 2, 1), 0.4),
        "prototype-empty-class": certify_prototype((2, 0, 3, 1), spread, 3, 0.3, "all", symmetry="none"),
        "prototype-orbits": certify_prototype((3, 3, 1, 1), simplex.etf_gram(4), 2, 0.5),
    }


# ---------------------------------------------------------------------------
# Relations, class means, variances, DeltaG*


def test_value_reads_each_relation_by_its_name():
    certificate = _hand_certificate(
        Structure(((0,), (1,), (2,)), (2, 2, 2), 2, None, 0),
        {"a1": 0.5, "c0,2": -0.25, "x2,0": 0.125, "x1": 0.75},
    )
    assert certificate._value("a", 1) == 0.5
    assert certificate._value("c", 2, 0) == -0.25  # c is symmetric: stored once under c{min},{max}
    assert certificate._value("c", 0, 2) == -0.25
    assert certificate._value("x", 2, 0) == 0.125  # x is not: data of orbit 2, prototype of orbit 0
    assert math.isnan(certificate._value("x", 0, 2))
    assert certificate._value("x", 1) == 0.75
    missing = certificate._value("b", 0)
    assert isinstance(missing, float) and math.isnan(missing)


@pytest.mark.parametrize("name", NAMES)
def test_class_mean_gram_is_the_block_average_of_the_invariant_gram(certificates, name):
    certificate = certificates[name]
    G, _ = _invariant_gram(certificate)
    np.testing.assert_allclose(certificate.class_mean_gram(), _block_means(G, certificate.structure), atol=1e-12)


@pytest.mark.parametrize("name", ["prototype-empty-class", "prototype-orbits"])
def test_prototype_cross_is_the_block_average_of_the_data_prototype_block(certificates, name):
    certificate = certificates[name]
    _, cross = _invariant_gram(certificate)
    s = certificate.structure
    expected = np.full((s.n_classes, s.n_classes), math.nan)
    for i, rows in enumerate(_class_blocks(s)):
        if len(rows):
            expected[i] = cross[rows].mean(axis=0)
    np.testing.assert_allclose(certificate.prototype_cross(), expected, atol=1e-12)


def _variances_by_definition(certificate: ExchangeableCertificate) -> dict:
    """T = 1 - |mu|^2, W = sum_c (N_c/N)(1 - |mu_c|^2), B = T - W (docs/metrics.md#variances), from the rows."""
    G, _ = _invariant_gram(certificate)
    total = 1.0 - G.mean()
    blocks = [rows for rows in _class_blocks(certificate.structure) if len(rows)]
    within = sum(len(rows) / len(G) * (1.0 - G[np.ix_(rows, rows)].mean()) for rows in blocks)
    return {"total": total, "within": within, "between": total - within}


@pytest.mark.parametrize("name", NAMES)
def test_variances_follow_their_definitions(certificates, name):
    certificate = certificates[name]
    variances = certificate.variances()
    expected = _variances_by_definition(certificate)
    assert set(variances) == {"total", "within", "between"}
    for key, value in expected.items():
        assert variances[key] == pytest.approx(value, abs=1e-12)


def _delta_g_by_definition(gram: np.ndarray, target: np.ndarray) -> float:
    return float(np.linalg.norm(gram / np.linalg.norm(gram) - target / np.linalg.norm(target)))


@pytest.mark.parametrize("name", ["views-apart", "views-apart-two", "supcon-singletons"])
def test_delta_g_follows_its_definition(certificates, name):
    certificate = certificates[name]
    G, _ = _invariant_gram(certificate)
    means = _block_means(G, certificate.structure)
    target = simplex.etf_gram(certificate.structure.n_classes)
    value = certificate.delta_g(target)
    assert value == pytest.approx(_delta_g_by_definition(means, target), abs=1e-12)
    assert value > 1e-3  # none of these is the ETF geometry: the check could fail


def test_delta_g_reads_an_exact_sympy_target(certificates):
    # The exact route (sympy) gives targets as rational matrices; they are read as floats.
    certificate = certificates["supcon-singletons"]
    m = certificate.structure.n_classes
    exact = sympy.Matrix(m, m, lambda i, k: 1 if i == k else sympy.Rational(-1, m - 1))
    assert certificate.delta_g(exact) == pytest.approx(certificate.delta_g(simplex.etf_gram(m)), abs=1e-14)


# ---------------------------------------------------------------------------
# Explicit vectors


def _expected_width(certificate: ExchangeableCertificate, class_rank: int) -> int:
    """Coordinates `realise` documents: the class-level factor, n_i - 1 per instance simplex, and
    n_i (p - 1) per class for the view simplices when the views do not coincide (a < 1)."""
    s = certificate.structure
    orbit = _orbit_of(s)
    width = class_rank
    for i, n in enumerate(s.sizes):
        if n >= 2:
            width += n - 1
        if n >= 1 and s.n_views >= 2 and certificate.variables[f"a{orbit[i]}"] < 1 - 1e-9:
            width += n * (s.n_views - 1)
    return width


def _class_level_rank(certificate: ExchangeableCertificate) -> int:
    """Rank of the Gram of the class sums and prototypes, from the explicit invariant Gram."""
    G, cross = _invariant_gram(certificate)
    blocks = [rows for rows in _class_blocks(certificate.structure) if len(rows)]
    sums = np.array([[G[np.ix_(r, t)].sum() for t in blocks] for r in blocks])
    if cross is not None:
        sums = np.block(
            [
                [sums, np.array([cross[r].sum(axis=0) for r in blocks])],
                [np.array([cross[r].sum(axis=0) for r in blocks]).T, certificate.structure.prototype_gram],
            ]
        )
    eigenvalues = np.linalg.eigvalsh(sums)
    return int((eigenvalues > 1e-8 * eigenvalues.max()).sum())


@pytest.mark.parametrize("name", NAMES)
def test_realised_vectors_have_the_invariant_gram(certificates, name):
    certificate = certificates[name]
    s = certificate.structure
    z, labels, instances, W = certificate.embeddings()
    G, cross = _invariant_gram(certificate)
    rows = _rows(s)
    np.testing.assert_array_equal(labels, [i for i, _, _ in rows])
    expected_instances = [sum(s.sizes[:i]) + j for i, j, _ in rows]
    np.testing.assert_array_equal(instances, expected_instances)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(z @ z.T, G, atol=GRAM)
    assert z.shape[1] == _expected_width(certificate, _class_level_rank(certificate))
    if cross is None:
        assert W is None
    else:
        assert W.shape == (s.n_classes, z.shape[1])
        np.testing.assert_allclose(W @ W.T, s.prototype_gram, atol=GRAM)
        np.testing.assert_allclose(z @ W.T, cross, atol=GRAM)


def test_realised_vectors_work_with_given_prototypes(certificates):
    certificate = certificates["prototype-empty-class"]
    s = certificate.structure
    prototypes = simplex.minority_spread(4, 7, 0.5, seed=5)  # (4, 7): more columns than the factor has
    np.testing.assert_allclose(prototypes @ prototypes.T, s.prototype_gram, atol=1e-12)
    z, _, _, W = certificate.embeddings(prototypes=prototypes)
    _, cross = _invariant_gram(certificate)
    np.testing.assert_allclose(W[:, :7], prototypes, atol=1e-12)
    np.testing.assert_allclose(W[:, 7:], 0.0, atol=0)
    np.testing.assert_allclose(z @ W.T, cross, atol=GRAM)
    np.testing.assert_allclose(z @ z.T, _invariant_gram(certificate)[0], atol=GRAM)


def test_realised_vectors_read_exact_sympy_prototypes():
    # Orthogonal prototypes given exactly (sympy's identity): the same vectors as the float identity.
    certificate = certify_prototype((2, 1, 3), np.eye(3), 2, 0.5, symmetry="none")
    z_float, _, _, W_float = certificate.embeddings(prototypes=np.eye(3))
    z_exact, _, _, W_exact = certificate.embeddings(prototypes=sympy.eye(3))
    assert W_exact.dtype == np.float64
    np.testing.assert_allclose(W_exact, W_float, atol=1e-14)
    np.testing.assert_allclose(z_exact, z_float, atol=1e-14)
    np.testing.assert_allclose(z_exact @ W_exact.T, _invariant_gram(certificate)[1], atol=GRAM)


@pytest.mark.parametrize("name", ["views-apart", "prototype-orbits"])
def test_a_seed_rotates_the_vectors_and_nothing_else(certificates, name):
    certificate = certificates[name]
    plain = certificate.embeddings()
    again = certificate.embeddings()
    for first, second in zip(plain, again):
        if first is not None:
            np.testing.assert_array_equal(first, second)  # no seed: deterministic, no rotation
    z, labels, instances, W = certificate.embeddings(seed=7)
    z_same, _, _, W_same = certificate.embeddings(seed=7)
    z_other = certificate.embeddings(seed=8)[0]
    np.testing.assert_array_equal(z, z_same)
    assert np.abs(z - plain[0]).max() > 1e-3 and np.abs(z - z_other).max() > 1e-3
    np.testing.assert_array_equal(labels, plain[1])
    np.testing.assert_array_equal(instances, plain[2])
    np.testing.assert_allclose(z @ z.T, plain[0] @ plain[0].T, atol=GRAM)
    if W is None:
        assert plain[3] is None
    else:
        np.testing.assert_array_equal(W, W_same)
        np.testing.assert_allclose(z @ W.T, plain[0] @ plain[3].T, atol=GRAM)  # rotated together
        assert np.abs(W - plain[3]).max() > 1e-3


def test_seeded_vectors_with_given_prototypes_rotate_the_prototypes_too(certificates):
    certificate = certificates["prototype-orbits"]
    prototypes = simplex.etf(4, 5, seed=1)
    z, _, _, W = certificate.embeddings(prototypes=prototypes, seed=3)
    np.testing.assert_allclose(W @ W.T, simplex.etf_gram(4), atol=GRAM)
    np.testing.assert_allclose(z @ W.T, _invariant_gram(certificate)[1], atol=GRAM)
    assert np.abs(W[:, : prototypes.shape[1]] - prototypes).max() > 1e-3  # rotated away from the given W


def _diagonal_class_gram(small: float) -> ExchangeableCertificate:
    """Two classes with orthogonal means (c = 0): a singleton (class-sum eigenvalue 1) and four
    instances whose class sum has eigenvalue `small` = 1 + 3 b."""
    structure = Structure(((0,), (1,)), (1, 4), 1, None, 0)
    return _hand_certificate(structure, {"b1": (small - 1.0) / 3.0, "c0,1": 0.0})


def test_small_class_level_eigenvalues_above_the_rank_tolerance_are_kept():
    # 1.5e-6 is above RANK_TOL (1e-6) times the largest eigenvalue (1): kept, so the Gram is exact.
    certificate = _diagonal_class_gram(1.5e-6)
    z, _, _, _ = certificate.embeddings()
    np.testing.assert_allclose(z @ z.T, _invariant_gram(certificate)[0], atol=GRAM)
    assert z.shape[1] == 1 + 1 + 3  # both class means and the 3 directions of the four-instance simplex


def test_class_level_eigenvalues_below_the_relative_rank_tolerance_are_dropped():
    # Class means of norm^2 4 and 2e-6/4 (class sums 4 and 2e-6): 2e-6 < RANK_TOL * 4, so the second
    # class mean is dropped (it counts as zero) and its vectors are the instance simplex alone.
    structure = Structure(((0,), (1,)), (4, 4), 1, None, 0)
    certificate = _hand_certificate(structure, {"b0": 1.0, "b1": (2e-6 - 1.0) / 3.0, "c0,1": 0.0})
    z, labels, _, _ = certificate.embeddings()
    assert z.shape[1] == 1 + 3 + 3  # the first class's mean, then each class's (n - 1)-dimensional instance simplex
    np.testing.assert_allclose(z[labels == 1].sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-12)  # rows shortened by the drop are rescaled
    np.testing.assert_allclose(z[labels == 0] @ z[labels == 0].T, 1.0, atol=GRAM)


# ---------------------------------------------------------------------------
# Solving: attempts, fall-backs, arguments passed on


def test_the_first_attempt_wins_when_it_is_optimal():
    certificate = certify_supcon((3, 3), 0.5)
    assert (certificate.status, certificate.solver, certificate.tolerance) == (cp.OPTIMAL, "CLARABEL", 1e-10)
    assert math.isfinite(certificate.lower_bound)
    # A dual bound below the loss of a feasible point, to solver accuracy.
    assert certificate.lower_bound <= certificate.minimum + 1e-9
    assert certificate.minimum - certificate.lower_bound < 1e-6


@pytest.mark.parametrize(
    "call",
    [
        lambda solver: certify_supcon((3, 2), 0.5, solver=solver),
        lambda solver: certify_combined(0.4, 0.5, 2, 3, 2, solver=solver),
        lambda solver: certify_prototype((2, 3), np.eye(2), 2, 0.5, solver=solver),
    ],
    ids=["supcon", "combined", "prototype"],
)
def test_a_named_solver_is_the_only_one_tried(call):
    default = call(None)
    scs = call("SCS")
    assert (scs.solver, scs.tolerance) == ("SCS", 1e-9)
    assert scs.minimum == pytest.approx(default.minimum, rel=1e-6)


def _failing_first(monkeypatch, failures: int):
    """solve_problem raises SolverError on its first `failures` calls, then solves."""
    real = exchangeable.solve_problem
    calls = []

    def solve(problem, name, tolerance):
        calls.append((name, tolerance))
        if len(calls) <= failures:
            raise cp.SolverError("scripted failure")
        return real(problem, name, tolerance)

    monkeypatch.setattr(exchangeable, "solve_problem", solve)
    return calls


def test_a_solver_error_moves_on_to_the_next_attempt(monkeypatch):
    calls = _failing_first(monkeypatch, 1)
    certificate = certify_supcon((3, 2), 0.5)
    assert calls == [("CLARABEL", 1e-10), ("CLARABEL", 1e-9)]
    assert (certificate.status, certificate.solver, certificate.tolerance) == (cp.OPTIMAL, "CLARABEL", 1e-9)


def test_every_attempt_failing_gives_a_not_optimal_certificate(monkeypatch):
    calls = _failing_first(monkeypatch, 10)
    certificate = certify_supcon((3, 2), 0.5, strict=False)
    assert [name for name, _ in calls] == ["CLARABEL", "CLARABEL", "CLARABEL", "SCS"]
    assert (certificate.status, certificate.solver, certificate.tolerance) == (cp.SOLVER_ERROR, "SCS", 1e-9)
    assert not certificate.ok and certificate.polished is False
    assert math.isnan(certificate.minimum) and math.isnan(certificate.lower_bound) and math.isnan(certificate.violation)
    assert certificate.variables and all(math.isnan(value) for value in certificate.variables.values())
    with pytest.raises(
        CertificateError, match="supcon exchangeable certificate not optimal: SCS status 'solver_error'"
    ):
        certificate.require_ok()


def _not_solved(monkeypatch):
    monkeypatch.setattr(
        exchangeable, "solve_problem", lambda problem, name, tolerance: (cp.INFEASIBLE, math.nan, math.nan)
    )


@pytest.mark.parametrize(
    "call, loss",
    [
        (lambda **kw: certify_supcon((3, 2), 0.5, **kw), "supcon"),
        (lambda **kw: certify_combined(0.4, 0.5, 2, 3, **kw), "combined-instance"),
        (lambda **kw: certify_prototype((2, 3), np.eye(2), 2, 0.5, **kw), "prototype-data"),
    ],
    ids=["supcon", "combined", "prototype"],
)
def test_not_optimal_raises_unless_strict_is_off(monkeypatch, call, loss):
    _not_solved(monkeypatch)
    message = f"{loss} exchangeable certificate not optimal: SCS status 'infeasible'"
    with pytest.raises(CertificateError, match=message):
        call()  # strict by default
    with pytest.raises(CertificateError, match=message):
        call(strict=True)
    certificate = call(strict=False)
    assert certificate.status == cp.INFEASIBLE and not certificate.ok


def test_the_solvers_multipliers_reach_the_polish(monkeypatch):
    real = exchangeable.polish
    seen = []

    def spy(reduced, theta, duals=None):
        seen.append((len(reduced.blocks), duals))
        return real(reduced, theta, duals)

    monkeypatch.setattr(exchangeable, "polish", spy)
    certificate = certify_combined(0.6, 0.3, 3, 4, 2)
    assert certificate.polished
    ((n_blocks, duals),) = seen
    assert duals is not None and len(duals) == n_blocks
    assert all(d.shape[0] == d.shape[1] and np.allclose(d, d.T) for d in duals)


def test_default_views_are_two():
    alpha, tau, m, n = 0.6, 0.3, 3, 4
    beta = float(ssem.optimal_beta(alpha, tau, m, n, 2))
    closed = float(ssem.restricted_loss(beta, alpha, tau, m, n, 2))
    assert certify_combined(alpha, tau, m, n).minimum == pytest.approx(closed, rel=1e-9)


# ---------------------------------------------------------------------------
# certify_reduced on a scripted program: what is kept, what is passed on


class _Scripted:
    """A stand-in for `simulate.reduction.Reduced`: loss and violation looked up per point."""

    family = "scripted"

    def __init__(self, table: dict, n_variables: int = 2):
        self.table = table  # tuple(theta) -> (loss, violation)
        self.variables = tuple(f"v{j}" for j in range(n_variables))
        self.structure = SimpleNamespace(name="scripted structure")
        self.blocks = (SimpleNamespace(multiplicity=3),)
        self.block_points = []

    def _entry(self, theta):
        if theta is None:
            raise TypeError("a point is required")
        return self.table.get(tuple(np.asarray(theta, dtype=float)), (math.nan, math.nan))

    def loss(self, theta):
        return self._entry(theta)[0]

    def violation(self, theta):
        return self._entry(theta)[1]

    def block_values(self, theta):
        if theta is None:
            raise TypeError("a point is required")
        self.block_points.append(np.array(theta, dtype=float))
        return [np.array([[float(theta[0])]])]


SOLVER_POINT = (0.0, 0.0)
CANDIDATE = (1.0, 1.0)
DUALS = [np.eye(2)]


def _script(monkeypatch, program, status=cp.OPTIMAL, theta=SOLVER_POINT, converged=True):
    """Replace the solver and the polish by scripted ones; return the calls they received."""
    calls = {"solve": [], "polish": []}

    def solve(reduced, solver):
        calls["solve"].append((reduced, solver))
        time.sleep(0.02)
        solved = {"status": status, "solver": "CLARABEL", "tolerance": 1e-10, "lower_bound": 0.25}
        return (None if theta is None else np.array(theta, dtype=float)), solved, DUALS

    def polish(reduced, point, duals=None):
        calls["polish"].append((reduced, np.array(point), duals))
        return np.array(CANDIDATE, dtype=float), converged

    monkeypatch.setattr(exchangeable, "solve_reduced", solve)
    monkeypatch.setattr(exchangeable, "polish", polish)
    return calls


MINIMUM = 0.5


@pytest.mark.parametrize(
    "candidate, converged, kept",
    [
        ((MINIMUM, 0.0), True, True),  # no worse: kept
        ((MINIMUM + 1e-12 * abs(MINIMUM), 0.0), True, True),  # worse by the rounding allowance exactly: kept
        ((MINIMUM + 1e-12, 0.0), True, False),  # worse by 2e-12 relative: not kept
        ((0.4, FEASIBILITY), True, True),  # feasible to FEASIBILITY exactly: kept
        ((0.4, 1e-6), True, False),  # better but infeasible: not kept
        ((0.4, 0.0), False, False),  # better but the Newton run did not converge: not kept
        ((0.9, 0.0), True, False),  # worse: not kept
    ],
)
def test_the_polished_point_is_kept_only_when_feasible_and_no_worse(monkeypatch, candidate, converged, kept):
    program = _Scripted({SOLVER_POINT: (MINIMUM, 3e-9), CANDIDATE: candidate})
    calls = _script(monkeypatch, program, converged=converged)
    start = time.perf_counter()
    certificate = exchangeable.certify_reduced(program, solver="SCS")
    elapsed = time.perf_counter() - start
    ((reduced, solver),) = calls["solve"]
    assert reduced is program and solver == "SCS"
    ((reduced, point, duals),) = calls["polish"]
    assert reduced is program and duals is DUALS
    np.testing.assert_array_equal(point, SOLVER_POINT)
    point = CANDIDATE if kept else SOLVER_POINT
    assert certificate.polished is kept
    assert certificate.minimum == (candidate[0] if kept else MINIMUM)
    assert certificate.violation == (candidate[1] if kept else 3e-9)
    assert certificate.variables == {"v0": point[0], "v1": point[1]}
    np.testing.assert_array_equal(program.block_points[-1], point)
    assert certificate.block_values[0][0, 0] == point[0]
    assert certificate.block_multiplicities == (3,)
    assert certificate.loss == "scripted" and certificate.structure is program.structure
    assert (certificate.status, certificate.solver, certificate.tolerance, certificate.lower_bound) == (
        cp.OPTIMAL,
        "CLARABEL",
        1e-10,
        0.25,
    )
    assert 0.02 <= certificate.seconds <= elapsed


@pytest.mark.parametrize("n_variables, polished", [(600, True), (601, False)])
def test_the_polish_runs_up_to_max_polish_variables(monkeypatch, n_variables, polished):
    assert exchangeable.MAX_POLISH_VARIABLES == 600
    theta = (0.0,) * n_variables
    program = _Scripted({theta: (MINIMUM, 0.0)}, n_variables)  # the candidate's loss is NaN: never kept
    calls = _script(monkeypatch, program, theta=theta)
    certificate = exchangeable.certify_reduced(program)
    assert len(calls["polish"]) == (1 if polished else 0)
    assert certificate.minimum == MINIMUM and certificate.polished is False


def test_no_solution_gives_nan_variables(monkeypatch):
    program = _Scripted({})
    _script(monkeypatch, program, status=cp.INFEASIBLE, theta=None)
    certificate = exchangeable.certify_reduced(program, strict=False)
    assert certificate.polished is False and not certificate.ok
    assert list(certificate.variables) == ["v0", "v1"]
    assert all(math.isnan(v) for v in certificate.variables.values())
    assert math.isnan(certificate.minimum) and math.isnan(certificate.violation)
    with pytest.raises(
        CertificateError, match="scripted exchangeable certificate not optimal: CLARABEL status 'infeasible'"
    ):
        exchangeable.certify_reduced(program)
    with pytest.raises(CertificateError, match="not optimal"):
        exchangeable.certify_reduced(program, strict=True)


def test_strict_returns_an_optimal_certificate(monkeypatch):
    program = _Scripted({SOLVER_POINT: (MINIMUM, 0.0)})
    _script(monkeypatch, program)
    certificate = exchangeable.certify_reduced(program, strict=True)
    assert certificate.ok and certificate.require_ok() is certificate


# ---------------------------------------------------------------------------
# Arguments


def test_edge_sizes_are_accepted():
    # One sample in all (n_w >= 1 gives it a positive); two singletons with prototypes; a pair and a
    # singleton without prototypes: each is a valid program, not an error.
    assert certify_prototype((1, 0), np.eye(2), 1, 0.5).ok
    assert certify_prototype((1, 1), np.eye(2), 1, 0.5).ok
    assert certify_prototype((2, 1), np.eye(2), 0, 0.5).ok
    assert certify_supcon((2, 1), 0.5).ok


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: certify_combined([0.2, 0.3], 0.5, 3, 3), r"^alpha must be a scalar"),
        (lambda: certify_combined(0.2, [0.5, 0.6], 3, 3), r"^tau must be a scalar"),
        (lambda: certify_combined(0.2, 0.5, 3, 3, symmetry="rows"), r"^symmetry must be one of"),
        (lambda: certify_combined(0.2, 0.5, 1, 3), r"^n_classes must be an integer >= 2"),
        (lambda: certify_combined(0.2, 0.5, 3, 1), r"^n_per_class must be an integer >= 2"),
        (lambda: certify_combined(0.2, 0.5, 3, 3, 0), r"^n_views must be an integer >= 1"),
        (lambda: certify_combined(0.2, 0.5, 3, 3, 1, "supcon"), r"^n_views must be >= 2 for variant 'supcon'"),
        (lambda: certify_supcon((3, 3), [0.5, 0.6]), r"^tau must be a scalar"),
        (lambda: certify_supcon((3, 3), 0.5, symmetry="rows"), r"^symmetry must be one of"),
        (lambda: certify_supcon((0, 3), 0.5), r"^class_sizes\[0\] must be an integer >= 1"),
        (lambda: certify_supcon((1, 1), 0.5), r"^class_sizes must contain a class of size >= 2 \(else no anchor"),
        (lambda: certify_prototype((2, 2), np.eye(2), 1, [0.5, 0.6]), r"^tau must be a scalar"),
        (lambda: certify_prototype((2, 2), np.eye(2), 1, 0.5, "some"), r"^anchors must be one of"),
        (lambda: certify_prototype((2, 2), np.eye(2), 1, 0.5, symmetry="rows"), r"^symmetry must be one of"),
        (lambda: certify_prototype((2, 2), np.eye(2), -1, 0.5), r"^n_proto must be an integer >= 0"),
        (lambda: certify_prototype((2, -1), np.eye(2), 1, 0.5), r"^class_sizes\[1\] must be an integer >= 0"),
        (lambda: certify_prototype((0, 0), np.eye(2), 1, 0.5), r"^class_sizes must contain at least one sample"),
        (lambda: certify_prototype((2, 2), 2 * np.eye(2), 1, 0.5), r"^prototype_gram: "),
        (lambda: certify_prototype((2, 2), np.eye(3), 1, 0.5), r"^prototype_gram must have shape \(2, 2\)"),
        (lambda: certify_prototype((1, 1), np.eye(2), 0, 0.5), r"^class_sizes \(1, 1\) with n_proto = 0 give no"),
    ],
)
def test_bad_arguments_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda symmetry: certify_combined(0.4, 0.5, 3, 2, symmetry=symmetry),
        lambda symmetry: certify_supcon((2, 2, 2), 0.5, symmetry=symmetry),
        lambda symmetry: certify_prototype((2, 2, 2), simplex.etf_gram(3), 1, 0.5, symmetry=symmetry),
    ],
    ids=["combined", "supcon", "prototype"],
)
def test_symmetry_none_keeps_one_orbit_per_class(call):
    # Three alike classes: one orbit with the class symmetry, three without it; the same minimum.
    alike, apart = call("classes"), call("none")
    assert alike.structure.orbits == ((0, 1, 2),)
    assert apart.structure.orbits == ((0,), (1,), (2,))
    assert apart.minimum == pytest.approx(alike.minimum, rel=1e-9)
