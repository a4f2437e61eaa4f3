"""Tests of simulate.certify that pin what mutation testing found unpinned (docs/mutation.md).

Each expected value comes from an independent route: a closed form (the loss at G = I, the spectrum
of (1 - eps) J + eps I), explicit class means of the vectors, the shapes and messages the docstrings
state, or a bound measured around the call. Certificates built by hand (no solver) keep the tests fast.
"""

import math
import time
import warnings

import cvxpy as cp
import numpy as np
import pytest

from simulate import certify
from simulate.certify import (
    Certificate,
    CertificateError,
    certify_combined,
    certify_prototype,
    certify_supcon,
    embeddings_from_gram,
    nearest_gram,
)
from simulate.gram_program import prototype_program, supcon_program
from theory import simplex, ssem

#: float64 agreement of Grams rebuilt from vectors (eigendecompositions of K <= 8 matrices).
GRAM = 1e-10


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _by_hand(gram, labels, n_data):
    """A Certificate around a given Gram (no solver): only gram, labels and n_data matter."""
    return Certificate(
        loss="by-hand",
        minimum=math.nan,
        lower_bound=math.nan,
        primal=math.nan,
        gram=np.asarray(gram, dtype=float),
        labels=np.asarray(labels),
        n_data=n_data,
        solver="CLARABEL",
        tolerance=1e-9,
        status="optimal",
        diag_violation=0.0,
        min_eigenvalue=0.0,
        fixed_violation=0.0,
        seconds=0.0,
    )


#: Three unit vectors in R^6 with entries k/64: exact in float16 and float64, and their Gram is exact
#: in float64, but entry (1, 2) = 0.598876953125 needs 12 significant bits, so a float16 product rounds it.
HALF_EXACT_PROTOTYPES = (
    np.array([[-3, -13, -28, 41, 3, 38], [-15, -44, 17, 7, 34, 21], [-31, -21, 32, -21, -2, 35]], dtype=float) / 64
)


# --- Certificate.class_mean_gram ---


def test_class_mean_gram_of_a_class_without_data_is_nan_and_silent():
    # Data rows of classes 0 and 2 only; class 1 has a prototype row but no data row.
    z = _unit(np.random.default_rng(0).standard_normal((6, 4)))
    cert = _by_hand(z @ z.T, [0, 0, 2, 0, 1, 2], n_data=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the 0/0 of the empty class must not warn
        got = cert.class_mean_gram()
    means = np.stack([z[:2].mean(axis=0), np.full(4, np.nan), z[2]])
    np.testing.assert_allclose(got, means @ means.T, atol=1e-12)
    assert np.isnan(got[1]).all() and np.isnan(got[:, 1]).all()


# --- Certificate.embeddings and embeddings_from_gram: dim and seed are honoured ---


def _rank3_gram(k=5, seed=1):
    z = _unit(np.random.default_rng(seed).standard_normal((k, 3)))
    return z @ z.T


def test_certificate_embeddings_take_dim_and_seed():
    G = _rank3_gram()
    cert = _by_hand(G, [0, 0, 1, 1, 1], n_data=5)
    plain = cert.embeddings(3)
    assert plain.shape == (5, 3)
    seeded = cert.embeddings(3, seed=7)
    assert seeded.shape == (5, 3)
    for x in (plain, seeded, cert.embeddings(seed=7)):
        np.testing.assert_allclose(x @ x.T, G, atol=GRAM)
    # A seed applies a random rotation: other vectors, the same Gram; the same seed, the same vectors.
    assert np.abs(seeded - plain).max() > 0.1
    np.testing.assert_array_equal(cert.embeddings(3, seed=7), seeded)
    assert np.abs(cert.embeddings(3, seed=8) - seeded).max() > 0.1


def test_embeddings_from_gram_applies_the_seed():
    G = _rank3_gram()
    plain, seeded = embeddings_from_gram(G, 4), embeddings_from_gram(G, 4, seed=3)
    np.testing.assert_allclose(seeded @ seeded.T, G, atol=GRAM)
    assert np.abs(seeded - plain).max() > 0.1
    np.testing.assert_array_equal(embeddings_from_gram(G, 4, seed=3), seeded)


def test_embeddings_from_gram_in_one_dimension():
    x = embeddings_from_gram(np.array([[1.0, -1.0], [-1.0, 1.0]]), dim=1)  # two antipodal vectors
    assert x.shape == (2, 1)
    np.testing.assert_allclose(np.abs(x), 1.0, atol=1e-12)
    assert x[0, 0] == pytest.approx(-x[1, 0], abs=1e-12)


def _near_collapse(k, eps):
    """(1 - eps) J + eps I: unit diagonal, eigenvalues 1 + (k - 1) eps (once) and eps (k - 1 times)."""
    return (1 - eps) * np.ones((k, k)) + eps * np.eye(k)


def test_embeddings_from_gram_discards_up_to_rank_tol_times_k():
    # k = 4, dim = 1 discards 3 eps. Accepted iff 3 eps <= rank_tol * 4.
    x = embeddings_from_gram(_near_collapse(4, 1e-3), dim=1, rank_tol=1e-3)  # 3e-3 <= 4e-3
    assert x.shape == (4, 1)
    with pytest.raises(ValueError, match=r"discards eigenvalue mass 0\.006 > rank_tol \* K = 0\.004; use dim >= 4$"):
        embeddings_from_gram(_near_collapse(4, 2e-3), dim=1, rank_tol=1e-3)  # 6e-3 > 4e-3


def test_embeddings_from_gram_full_dimension_with_zero_tolerance():
    # dim = K discards nothing: a mass of 0 is not above rank_tol * K = 0.
    x = embeddings_from_gram(_near_collapse(3, 0.5), dim=3, rank_tol=0.0)
    np.testing.assert_allclose(x @ x.T, _near_collapse(3, 0.5), atol=GRAM)


def test_embeddings_from_gram_counts_only_eigenvalues_above_rank_tol():
    # blockdiag(J_2, 1) has eigenvalues 2, 1 and 0; rank_tol set to the computed zero eigenvalue
    # itself (rounding, of either sign) must not count it: "use dim >= 2", the rank.
    G = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    zero = np.linalg.eigh(nearest_gram(G))[0][0]
    assert abs(zero) < 1e-12
    with pytest.raises(ValueError, match=r"use dim >= 2$"):
        embeddings_from_gram(G, dim=1, rank_tol=zero)


def test_embeddings_from_gram_discarded_mass_ignores_rounding_below_zero():
    # The discarded mass is the clipped sum: rounding eigenvalues below 0 (nearest_gram is psd, so
    # only rounding goes there) must not cancel positive discarded mass. Rank-2 Grams of 8 vectors:
    # with dim = 2 the 6 discarded eigenvalues are rounding of both signs; put rank_tol * K between
    # the signed sum and the clipped one, so only the clipped sum is above it.
    for seed in range(20):
        G = _unit(np.random.default_rng(seed).standard_normal((8, 2)))
        G = G @ G.T
        discarded = np.sort(np.linalg.eigh(nearest_gram(G))[0])[::-1][2:]
        clipped, signed = discarded.clip(0.0).sum(), discarded.sum()
        if signed < clipped and clipped > 0:
            break
    else:
        pytest.fail("no rank-2 Gram with discarded rounding of both signs in 20 seeds")
    with pytest.raises(ValueError, match="dim must be large enough"):
        embeddings_from_gram(G, dim=2, rank_tol=(clipped + signed) / 2 / 8)


# --- Certificate.embeddings_with_prototypes ---


def _prototype_certificate(prototypes, n_data=2, seed=2):
    """A by-hand prototype certificate: n_data random unit data vectors and the given prototype rows."""
    data = _unit(np.random.default_rng(seed).standard_normal((n_data, prototypes.shape[1])))
    vectors = np.vstack([data, prototypes])
    labels = np.concatenate([np.arange(n_data) % len(prototypes), np.arange(len(prototypes))])
    return _by_hand(vectors @ vectors.T, labels, n_data)


def test_embeddings_with_prototypes_in_more_dimensions_than_rows():
    # K = 5 rows, prototypes in d = 6 > K dimensions and d != m = 3: the output lives in R^6.
    w = HALF_EXACT_PROTOTYPES
    cert = _prototype_certificate(w)
    z, padded = cert.embeddings_with_prototypes(w)
    assert z.shape == (2, 6) and padded.shape == (3, 6)
    np.testing.assert_array_equal(padded, w)
    both = np.vstack([z, padded])
    np.testing.assert_allclose(both @ both.T, cert.gram, atol=GRAM)


def test_embeddings_with_half_precision_prototypes_checks_their_gram_in_float64():
    # The float16 values are exact, and so is their Gram in float64; a float16 product would be
    # off by 2.4e-4 in entry (1, 2), far beyond the 1e-6 the check allows.
    w = HALF_EXACT_PROTOTYPES
    half = w.astype(np.float16)
    assert np.array_equal(half.astype(float), w)
    cert = _prototype_certificate(w)
    z, padded = cert.embeddings_with_prototypes(half)
    assert padded.dtype == np.float64
    np.testing.assert_array_equal(padded, w)
    both = np.vstack([z, padded])
    np.testing.assert_allclose(both @ both.T, cert.gram, atol=GRAM)


def test_embeddings_with_prototypes_accepts_a_gram_mismatch_of_exactly_1e_6():
    # "differs by more than 1e-6" is refused; the orthonormal pair against an off-diagonal of 1e-6
    # differs by exactly 1e-6 (0 - 1e-6 is exact).
    gram = np.eye(3)
    gram[1, 2] = gram[2, 1] = 1e-6
    cert = _by_hand(gram, [0, 0, 1], n_data=1)
    z, padded = cert.embeddings_with_prototypes(np.eye(2))
    assert z.shape == (1, 3) and padded.shape == (2, 3)
    np.testing.assert_allclose(np.abs(z), [[0.0, 0.0, 1.0]], atol=1e-5)  # orthogonal to both prototypes
    with pytest.raises(ValueError, match="differs from the certificate's prototype block by 2e-06"):
        gram[1, 2] = gram[2, 1] = 2e-6
        _by_hand(gram, [0, 0, 1], n_data=1).embeddings_with_prototypes(np.eye(2))


@pytest.mark.parametrize("shape", [(2, 6), (4, 6), (3,), (1, 3, 6)], ids=str)
def test_embeddings_with_prototypes_of_the_wrong_shape_are_refused(shape):
    cert = _prototype_certificate(HALF_EXACT_PROTOTYPES)
    prototypes = np.resize(HALF_EXACT_PROTOTYPES, shape)
    with pytest.raises(ValueError, match=r"^prototypes must have shape \(3, d\) for this certificate"):
        cert.embeddings_with_prototypes(prototypes)


# --- nearest_gram ---


def test_nearest_gram_reads_booleans_as_numbers():
    # [[1, 1], [0, 1]] symmetrises to [[1, .5], [.5, 1]], already a Gram of unit vectors.
    got = nearest_gram(np.array([[True, True], [False, True]]))
    np.testing.assert_allclose(got, [[1.0, 0.5], [0.5, 1.0]], atol=1e-15)


def test_nearest_gram_is_scale_free_up_to_the_float_range():
    # Any positive multiple of a Gram gives the Gram back, even near the largest float64 (6e307:
    # G + G^T is still finite).
    G = _near_collapse(3, 0.25)
    for scale in (1e-300, 3.0, 6e307):
        np.testing.assert_allclose(nearest_gram(scale * G), G, atol=1e-14)


@pytest.mark.parametrize(
    "G",
    [np.ones((2, 3)), np.ones(4), np.ones((2, 2, 2)), np.array([[1.0, np.nan], [np.nan, 1.0]]), np.diag([1.0, np.inf])],
    ids=["2x3", "1-D", "3-D", "nan", "inf"],
)
def test_nearest_gram_refuses_what_is_not_a_finite_square_matrix(G):
    with pytest.raises(ValueError, match=r"^G must be a finite square \(K, K\) matrix"):
        nearest_gram(G)


def test_nearest_gram_refuses_a_zero_psd_diagonal_with_its_own_message():
    with pytest.raises(ValueError, match=r"^G is too far from a Gram of unit vectors"):
        nearest_gram(-np.eye(3))


# --- the certificate's figures: _certificate from a given solver G ---


def test_certificate_figures_of_a_given_solver_gram():
    # Prototype SCL, 4 data rows (classes 2, 1, 1), 3 ETF prototypes, n_proto = 2. The solver's G is
    # diag(1.25, 0.875, 1, ..., 1): projected to G = I (orthogonal unit vectors), where every data
    # anchor sees N - 1 + m n_proto = 9 terms exp(0) and positives of similarity 0: loss log 9.
    program = prototype_program((2, 1, 1), simplex.etf_gram(3), 2, "data")
    raw = np.diag([1.25, 0.875, 1.0, 1.0, 1.0, 1.0, 1.0])
    solved = {"solver": "SCS", "tolerance": 1e-9, "status": "optimal", "primal": 2.0, "lower_bound": 2.1}
    cert = certify.certificate_from_gram(program, 0.3, "prototype-data", raw, solved, 1.5)
    np.testing.assert_allclose(cert.gram, np.eye(7), atol=1e-15)
    assert cert.minimum == pytest.approx(math.log(9), rel=1e-14)
    assert cert.diag_violation == pytest.approx(0.25, abs=1e-15)
    assert cert.min_eigenvalue == pytest.approx(0.875, abs=1e-15)  # the smallest, not the second
    assert cert.fixed_violation == pytest.approx(0.5, abs=1e-15)  # |0 - (-1/2)|: I against the ETF
    passed_on = (cert.solver, cert.tolerance, cert.status, cert.primal, cert.lower_bound)
    assert passed_on == ("SCS", 1e-9, "optimal", 2.0, 2.1)
    assert (cert.loss, cert.seconds, cert.n_data) == ("prototype-data", 1.5, 4)
    np.testing.assert_array_equal(cert.labels, [0, 0, 1, 2, 0, 1, 2])
    # All vectors equal (G = J): every term of every denominator is exp(1/tau) and the positive
    # weights of an anchor sum to 1, so each anchor's loss is log(9 exp(1/tau)) - 1/tau = log 9 again,
    # now only if the 1/tau, the sign and the positive term are all right.
    collapsed = certify.certificate_from_gram(program, 0.3, "prototype-data", np.ones((7, 7)), solved, 1.5)
    assert collapsed.minimum == pytest.approx(math.log(9), rel=1e-14)
    assert collapsed.fixed_violation == pytest.approx(1.5, abs=1e-14)  # |1 - (-1/2)|


def test_certificate_of_a_non_finite_solver_gram_is_all_nan():
    program = supcon_program((2, 2))
    raw = np.eye(4)
    raw[0, 1] = raw[1, 0] = np.nan
    solved = {"solver": "CLARABEL", "tolerance": 1e-7, "status": "user_limit", "primal": 1.0, "lower_bound": 1.0}
    cert = certify.certificate_from_gram(program, 0.5, "supcon", raw, solved, 0.1)
    assert cert.gram.shape == (4, 4) and np.isnan(cert.gram).all()
    figures = (cert.minimum, cert.diag_violation, cert.min_eigenvalue, cert.fixed_violation)
    assert all(isinstance(x, float) and math.isnan(x) for x in figures)
    assert not cert.ok


def test_solver_error_gives_a_nan_certificate_that_strict_refuses(monkeypatch):
    def broken(problem, solver, tolerance):
        raise cp.SolverError("planted")

    monkeypatch.setattr(certify, "solve_problem", broken)
    cert = certify_combined(0.5, 0.5, 2, 2, 1, strict=False)
    assert cert.status == cp.SOLVER_ERROR and not cert.ok
    assert (cert.solver, cert.tolerance) == certify.ATTEMPTS[-1]
    assert cert.gram.shape == (4, 4) and np.isnan(cert.gram).all()
    figures = (cert.minimum, cert.lower_bound, cert.primal, cert.diag_violation, cert.min_eigenvalue)
    assert all(isinstance(x, float) and math.isnan(x) for x in figures + (cert.fixed_violation,))
    with pytest.raises(CertificateError, match="combined-instance certificate not optimal: solver CLARABEL"):
        certify_combined(0.5, 0.5, 2, 2, 1)


# --- what a real solve reports ---


def test_certificates_name_their_loss_and_report_no_fixed_violation_without_prototypes():
    etf = simplex.etf_gram(2)
    cases = [
        (certify_combined(0.5, 0.5, 2, 2, 1), "combined-instance", 4),
        (certify_combined(0.5, 0.5, 2, 2, 2, "supcon"), "combined-supcon", 8),
        (certify_supcon((2, 2), 0.5), "supcon", 4),
        (certify_prototype((1, 1), etf, 1, 0.5), "prototype-data", 4),
        (certify_prototype((1, 1), etf, 1, 0.5, "all"), "prototype-all", 4),
    ]
    for cert, loss, rows in cases:
        assert cert.loss == loss and cert.gram.shape == (rows, rows) and cert.ok
        assert cert.residual < 1e-6
        if not loss.startswith("prototype"):
            assert cert.fixed_violation == 0.0  # "0 if none"
    # Independent values: the SSEM closed form (theory.ssem) and, for balanced SupCon, classes
    # collapsed onto the ETF (Graf et al. 2021): log[(n - 1) + (m - 1) n exp(-m / ((m - 1) tau))].
    beta = ssem.optimal_beta(0.5, 0.5, 2, 2, 1, "instance")
    closed = float(ssem.restricted_loss(beta, 0.5, 0.5, 2, 2, 1, "instance"))
    assert cases[0][0].minimum == pytest.approx(closed, rel=1e-6)
    assert cases[2][0].minimum == pytest.approx(math.log(1 + 2 * math.exp(-4)), rel=1e-6)


def test_combined_default_is_two_views():
    assert certify_combined(0.5, 0.5, 2, 2).gram.shape == (8, 8)  # m n p = 2 * 2 * 2


def test_seconds_are_the_wall_time_of_the_call():
    start = time.perf_counter()
    cert = certify_supcon((2, 2), 0.5)
    elapsed = time.perf_counter() - start
    assert 0 < cert.seconds <= elapsed


def test_solver_choice_reaches_every_certificate():
    etf = simplex.etf_gram(2)
    assert certify_combined(0.5, 0.5, 2, 2, 1, solver="SCS", strict=False).solver == "SCS"
    assert certify_supcon((2, 1), 0.5, solver="SCS", strict=False).solver == "SCS"
    assert certify_prototype((1, 1), etf, 1, 0.5, solver="SCS", strict=False).solver == "SCS"
    for call in (
        lambda: certify_supcon((2, 1), 0.5, solver="MOSEK"),
        lambda: certify_prototype((1, 1), etf, 1, 0.5, solver="MOSEK"),
        lambda: certify_combined(0.5, 0.5, 2, 2, 1, solver="MOSEK"),
    ):
        with pytest.raises(ValueError, match=r"^solver must be one of 'CLARABEL', 'SCS', got 'MOSEK'"):
            call()


def _starve(monkeypatch):
    starved = {"CLARABEL": {"max_iter": 2}, "SCS": {"max_iters": 5}}
    monkeypatch.setattr(certify, "solver_options", lambda solver, tolerance: starved[solver])


def test_every_certificate_is_strict_by_default(monkeypatch):
    _starve(monkeypatch)
    etf = simplex.etf_gram(2)
    for call in (lambda: certify_supcon((2, 1), 0.5), lambda: certify_prototype((1, 1), etf, 1, 0.5)):
        with pytest.raises(CertificateError, match="not optimal"):
            call()
    assert not certify_supcon((2, 1), 0.5, strict=False).ok
    assert not certify_prototype((1, 1), etf, 1, 0.5, strict=False).ok


def test_certifying_warns_and_prints_nothing(monkeypatch, capfd):
    # Library code is silent: no FutureWarning from cvxpy, no solver log, and the inaccurate
    # statuses of starved attempts are reported in the status, not as warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert certify_prototype((2, 1), simplex.etf_gram(2), 2, 0.5).ok
        assert certify_combined(0.5, 0.5, 2, 2, 1, solver="SCS").ok
        _starve(monkeypatch)
        assert not certify_combined(0.5, 0.5, 2, 2, 1, strict=False).ok
    assert capfd.readouterr() == ("", "")


def test_size_limit_is_inclusive(monkeypatch):
    # With the limit at 4 vectors: K = 4 is certified, K = 5 and more are refused before solving.
    monkeypatch.setattr(certify, "MAX_VECTORS", 4)
    etf = simplex.etf_gram(2)
    assert certify_combined(0.5, 0.5, 2, 2, 1).gram.shape == (4, 4)
    assert certify_supcon((2, 2), 0.5).gram.shape == (4, 4)
    assert certify_prototype((1, 1), etf, 1, 0.5).gram.shape == (4, 4)
    for call, k in (
        (lambda: certify_combined(0.5, 0.5, 2, 2, 2), 8),
        (lambda: certify_combined(0.5, 0.5, 2, 3, 1), 6),
        (lambda: certify_supcon((3, 2), 0.5), 5),
        (lambda: certify_prototype((2, 1), etf, 1, 0.5), 5),
    ):
        with pytest.raises(ValueError, match=rf"^number of vectors K must be <= 4 .* got K = {k}$"):
            call()


# --- argument messages start with the argument's name ---

ETF2 = simplex.etf_gram(2)
NAMED_ERRORS = [
    (lambda: certify_combined([0.1, 0.2], 0.5, 2, 2, 2), r"^alpha must be a scalar"),
    (lambda: certify_combined(0.5, [0.1, 0.2], 2, 2, 2), r"^tau must be a scalar"),
    (lambda: certify_supcon([2, 2], [0.1, 0.2]), r"^tau must be a scalar"),
    (lambda: certify_prototype([2, 2], ETF2, 1, [0.1, 0.2]), r"^tau must be a scalar"),
    (lambda: certify_prototype([2, 2], ETF2, -1, 0.5), r"^n_proto must be an integer >= 0"),
    (lambda: certify_prototype([2, 2], simplex.etf_gram(3), 1, 0.5), r"^prototype_gram must have shape \(2, 2\)"),
    (lambda: certify_prototype([2, 2], ETF2, 1, 0.5, "some"), r"^anchors must be one of 'data', 'all'"),
    (lambda: embeddings_from_gram(np.eye(2), dim=0), r"^dim must be an integer >= 1"),
]


@pytest.mark.parametrize("call, message", NAMED_ERRORS, ids=[m for _, m in NAMED_ERRORS])
def test_argument_errors_start_with_the_argument_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("solver", ["CLARABEL", "SCS"])
@pytest.mark.parametrize("kind", ["infeasible", "unbounded"])
def test_solve_problem_without_a_finite_value_reports_nan(solver, kind):
    # solve_problem takes any cvxpy problem: with no finite optimum cvxpy's value is +-inf, and the
    # primal and dual objectives returned are NaN (the certificate's figures then read NaN).
    x = cp.Variable()
    constraints = [x >= 1, x <= 0] if kind == "infeasible" else [x <= 0]
    status, primal, dual = certify.solve_problem(cp.Problem(cp.Minimize(x), constraints), solver, 1e-8)
    assert status.startswith(kind)  # "infeasible", "unbounded" or their "_inaccurate" forms
    assert math.isnan(primal) and math.isnan(dual)
