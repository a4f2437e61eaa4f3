"""Unit and property tests of theory.simplex."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from theory import simplex

TOL = 1e-12


@given(m=st.integers(2, 12), extra=st.integers(0, 4), seed=st.one_of(st.none(), st.integers(0, 2**31)))
def test_etf_is_a_regular_simplex(m, extra, seed):
    dim = m - 1 + extra
    w = simplex.etf(m, dim, seed=seed)
    assert w.shape == (m, dim)
    gram = w @ w.T
    np.testing.assert_allclose(np.diag(gram), 1.0, atol=TOL)
    off_diagonal = gram[~np.eye(m, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, -1.0 / (m - 1), atol=TOL)
    np.testing.assert_allclose(w.sum(axis=0), 0.0, atol=1e-11)  # centred: the simplex is balanced
    np.testing.assert_allclose(gram, simplex.etf_gram(m), atol=TOL)


@pytest.mark.parametrize("m", [2, 3, 7])
def test_symbolic_etf_gram_is_exact(m):
    exact = simplex.etf_gram_symbolic(m)
    assert exact.is_symmetric() and all(exact[i, i] == 1 for i in range(m))
    assert exact[0, 1] == sp.Rational(-1, m - 1)
    assert exact.rank() == m - 1
    np.testing.assert_allclose(np.array(exact, dtype=float), simplex.etf_gram(m), atol=TOL)


def test_rotation_is_orthogonal_and_seeded():
    q = simplex.random_rotation(9, seed=3)
    np.testing.assert_allclose(q @ q.T, np.eye(9), atol=TOL)
    np.testing.assert_array_equal(q, simplex.random_rotation(9, seed=3))
    assert not np.allclose(q, simplex.random_rotation(9, seed=4))


@given(m=st.integers(2, 8), extra=st.integers(0, 3), seed=st.integers(0, 1000))
def test_from_gram_round_trip_and_rotation_invariance(m, extra, seed):
    dim = m + extra
    original = simplex.etf(m, dim, seed=seed)
    # a generic Gram: random unit vectors
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((m, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for target in (original @ original.T, vectors @ vectors.T):
        rebuilt = simplex.from_gram(target, dim, seed=seed + 1)
        np.testing.assert_allclose(rebuilt @ rebuilt.T, target, atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(rebuilt, axis=1), 1.0, atol=TOL)
    rotated = original @ simplex.random_rotation(dim, seed + 2).T
    np.testing.assert_allclose(rotated @ rotated.T, original @ original.T, atol=TOL)


def test_orthogonal_frame():
    w = simplex.orthogonal_frame(5, 8, seed=1)
    np.testing.assert_allclose(w @ w.T, np.eye(5), atol=TOL)


@pytest.mark.parametrize("m", [4, 5, 10])
@pytest.mark.parametrize("spread", [0.0, 0.3, 0.7, 1.0])
def test_minority_spread_family_is_feasible_and_spreads_the_minority(m, spread):
    gram = simplex.minority_spread_gram(m, spread)
    simplex.check_gram(gram, dim=m)
    major, minor = simplex.majority_classes(m), simplex.minority_classes(m)
    assert len(major) + len(minor) == m and len(major) >= len(minor)
    majority_cos = gram[major[0], major[1]]
    minority_cos = gram[minor[0], minor[1]]
    if spread == 0:
        np.testing.assert_allclose(gram, simplex.etf_gram(m), atol=TOL)
    else:
        assert minority_cos < majority_cos - 1e-3  # minority prototypes further apart
    w = simplex.minority_spread(m, m, spread, seed=0)
    np.testing.assert_allclose(w @ w.T, gram, atol=1e-9)


def test_minority_spread_beyond_its_range_is_not_a_gram():
    # just past s = 1 the minority cosine drops below -1/(k-1): no unit vectors realise it
    m = 6
    s = 1.05
    extrapolated = (1 - s) * simplex.etf_gram(m) + s * simplex.minority_spread_gram(m, 1.0)
    with pytest.raises(ValueError, match="positive semidefinite"):
        simplex.check_gram(extrapolated)
    with pytest.raises(ValueError, match=r"spread must lie in \[0, 1\]"):
        simplex.minority_spread_gram(m, s)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: simplex.etf(1, 3), "n_classes must be an integer >= 2"),
        (lambda: simplex.etf(4, 2), "dim must be >= n_classes - 1 = 3"),
        (lambda: simplex.etf(3.0, 3), "n_classes must be an integer"),
        (lambda: simplex.etf(True, 3), "n_classes must be an integer"),
        (lambda: simplex.orthogonal_frame(4, 3), "dim must be >= n_classes = 4"),
        (lambda: simplex.minority_spread_gram(3, 0.5), "n_classes must be an integer >= 4"),
        (lambda: simplex.minority_spread_gram(4, -0.1), "spread must be >= 0"),
        (lambda: simplex.minority_spread_gram(4, float("nan")), "spread must be a finite real"),
        (lambda: simplex.from_gram(np.ones((2, 3)), 3), "must be square"),
        (lambda: simplex.from_gram([[1, 0.5], [0.4, 1]], 2), "must be symmetric"),
        (lambda: simplex.from_gram([[2, 0], [0, 1]], 2), "unit diagonal"),
        (lambda: simplex.from_gram([[1, 2], [2, 1]], 2), "positive semidefinite"),
        (lambda: simplex.from_gram(np.eye(3), 2), "rank 3 > dim = 2"),
        (lambda: simplex.from_gram([[1, np.nan], [np.nan, 1]], 2), "finite"),
        (lambda: simplex.from_gram(np.eye(2), 0), "dim must be an integer >= 1"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
