"""Unit and property tests of theory.ssem and theory.ssem_symbolic."""

import itertools

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from theory import ssem, ssem_symbolic

# --- pair counts: the symbolic counts against brute-force enumeration of the variants' definitions ---


def _enumerated_counts(variant, m, n, p):
    """Count, by looping over all views, what each set of docs/losses.md (both variants) holds for anchor (0, 0, 0)."""
    anchor = (0, 0, 0)
    counts = {"denominator": [0, 0, 0], "self_positives": [0, 0, 0], "sup_positives": [0, 0, 0]}
    for view in itertools.product(range(m), range(n), range(p)):
        kind = 0 if view[:2] == anchor[:2] else 1 if view[0] == anchor[0] else 2
        is_anchor = view == anchor
        if variant == "instance" or not is_anchor:  # "supcon" drops the anchor from its denominator
            counts["denominator"][kind] += 1
        if kind == 0 and (variant == "instance" or not is_anchor):
            counts["self_positives"][kind] += 1
        if kind == 1:
            counts["sup_positives"][kind] += 1
    return counts


@pytest.mark.parametrize("variant", ["instance", "supcon"])
@pytest.mark.parametrize("m, n, p", [(2, 2, 2), (3, 4, 2), (2, 3, 5), (4, 2, 3), (5, 5, 1)])
def test_pair_counts_match_enumeration(variant, m, n, p):
    if variant == "supcon" and p < 2:
        pytest.raises(ValueError, ssem.restricted_loss, 0.5, 0.5, 1.0, m, n, p, variant)
        return
    counts = ssem.pair_counts(variant, m, n, p)
    expected = _enumerated_counts(variant, m, n, p)
    assert list(counts.denominator) == expected["denominator"]
    assert list(counts.self_positives) == expected["self_positives"]
    assert list(counts.sup_positives) == expected["sup_positives"]


@pytest.mark.parametrize("variant", ["instance", "supcon"])
@pytest.mark.parametrize(
    "field, index", [("denominator", 0), ("denominator", 1), ("denominator", 2), ("sup_positives", 2)]
)
def test_one_wrong_pair_count_changes_the_derived_threshold(variant, field, index):
    """The derivation depends on every count: one count off by one no longer gives the stated alpha*."""
    from proofs_checks.test_b1_closed_forms import STATED_ALPHA_STAR

    m, n, p = ssem_symbolic.m, ssem_symbolic.n, ssem_symbolic.p
    counts = ssem.pair_counts(variant, m, n, p)
    wrong = list(getattr(counts, field))
    wrong[index] = wrong[index] + 1
    mutated = ssem.PairCounts(**{**counts.__dict__, field: tuple(wrong)})
    derived = ssem_symbolic.derive(variant, mutated).alpha_star
    assert sp.simplify(derived - STATED_ALPHA_STAR[variant]) != 0
    assert sp.simplify(ssem_symbolic.derive(variant).alpha_star - STATED_ALPHA_STAR[variant]) == 0


# --- numerics ---


def test_reference_values():
    # independent reference values (issue acceptance): m = 3, n = 4, tau = 0.5
    assert ssem.alpha_star(0.5, 3, 4) == pytest.approx(0.35188, abs=5e-6)
    within = [ssem.optimal_variances(a, 0.5, 3, 4)[0] for a in (0.5, 0.8, 1.0)]
    np.testing.assert_allclose(within, [0.18380, 0.52739, 0.81818], atol=5e-6)


@given(
    alpha=st.floats(0, 1),
    log_tau=st.floats(-3, 3),
    m=st.integers(2, 10),
    n=st.integers(2, 10),
    variant=st.sampled_from(["instance", "supcon"]),
)
def test_optimal_beta_minimises_the_restricted_loss(alpha, log_tau, m, n, variant):
    tau = 10.0**log_tau
    beta = ssem.optimal_beta(alpha, tau, m, n, 3, variant)
    grid = np.linspace(0, 1, 2001)
    losses = ssem.restricted_loss(grid, alpha, tau, m, n, 3, variant)
    best = ssem.restricted_loss(beta, alpha, tau, m, n, 3, variant)
    assert best <= losses.min() + 1e-12 * max(1.0, abs(losses.min()))
    assert np.isfinite(losses).all()


@pytest.mark.parametrize("tau", [1e-3, 1e-2, 1.0, 1e3])
def test_restricted_loss_is_finite_and_convex_at_extreme_temperatures(tau):
    beta = np.linspace(0, 1, 101)
    loss = ssem.restricted_loss(beta, 0.3, tau, 4, 5)
    assert np.isfinite(loss).all()
    second_difference = loss[2:] - 2 * loss[1:-1] + loss[:-2]
    assert (second_difference >= -1e-9 * np.abs(loss).max()).all()


def test_vectorised_over_alpha_and_tau_equals_pointwise():
    alphas, taus = np.meshgrid(np.linspace(0, 1, 7), np.logspace(-3, 2, 5))
    grid = ssem.optimal_beta(alphas, taus, 3, 4)
    pointwise = np.vectorize(lambda a, t: ssem.optimal_beta(a, t, 3, 4))(alphas, taus)
    np.testing.assert_array_equal(grid, pointwise)
    assert grid.shape == alphas.shape


def test_closed_form_restricted_loss_instance():
    # docs/ssem.md#restricted-loss formula typed independently
    m, n, p, alpha, tau, beta = 3, 4, 2, 0.3, 0.7, 0.6
    s_w, s_b = (n * beta - 1) / (n - 1), -beta / (m - 1)
    expected = np.log(p) + np.log(np.exp(1 / tau) + (n - 1) * np.exp(s_w / tau) + (m - 1) * n * np.exp(s_b / tau))
    expected -= (alpha + (1 - alpha) * s_w) / tau
    assert ssem.restricted_loss(beta, alpha, tau, m, n, p) == pytest.approx(expected, rel=1e-14)


@given(m=st.integers(2, 5), n=st.integers(2, 5), p=st.integers(1, 3), beta=st.floats(0, 1), seed=st.integers(0, 99))
def test_embeddings_have_the_ssem_gram(m, n, p, beta, seed):
    dim = m * n + 1
    z = ssem.embeddings(m, n, p, dim, beta, seed=seed)
    assert z.shape == (m, n, p, dim)
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0, atol=1e-12)
    gram = np.einsum("ijkd,abcd->ijkabc", z, z)
    s_w, s_b = ssem.ssem_gram_entries(beta, m, n)
    same_class = np.arange(m)[:, None, None, None, None, None] == np.arange(m)[None, None, None, :, None, None]
    same_instance = same_class & (
        np.arange(n)[None, :, None, None, None, None] == np.arange(n)[None, None, None, None, :, None]
    )
    expected = np.where(same_instance, 1.0, np.where(same_class, s_w, s_b))
    np.testing.assert_allclose(gram, np.broadcast_to(expected, gram.shape), atol=1e-12)


def test_tau_star_edges():
    assert ssem.tau_star(1.0, 3, 4) == np.inf
    assert ssem.tau_star(0.25, 3, 4) == 0.0
    assert ssem.tau_star(0.1, 3, 4) == 0.0
    assert 0 < ssem.tau_star(0.5, 3, 4) < np.inf


def test_guideline_audit_finds_the_design_counterexample():
    found = {(c.n_classes, c.n_per_class) for c in ssem.guideline_audit(range(2, 5), range(2, 6))}
    assert (3, 4) in found
    for c in ssem.guideline_audit([3], [4]):
        assert c.alpha >= 1 / c.n_per_class and c.tau <= 1 / np.log(c.n_classes) + 1e-15
        assert ssem.optimal_beta(c.alpha, c.tau, c.n_classes, c.n_per_class) == 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ssem.alpha_star(0.5, 1, 4), "n_classes must be an integer >= 2, got 1"),
        (lambda: ssem.alpha_star(0.5, 3, 1), "n_per_class must be an integer >= 2, got 1"),
        (lambda: ssem.alpha_star(0.0, 3, 4), "tau must be finite and > 0, got 0.0"),
        (lambda: ssem.alpha_star(-1.0, 3, 4), "tau must be finite and > 0"),
        (lambda: ssem.alpha_star(np.inf, 3, 4), "tau must be finite and > 0, got inf"),
        (lambda: ssem.alpha_star(np.nan, 3, 4), "tau must be finite"),
        (lambda: ssem.alpha_star(0.5, 3, 4, 1, "supcon"), "n_views must be >= 2 for variant 'supcon'"),
        (lambda: ssem.alpha_star(0.5, 3, 4, 0), "n_views must be an integer >= 1, got 0"),
        (lambda: ssem.optimal_beta(1.5, 1.0, 3, 4), r"alpha must lie in \[0, 1\], got 1.5"),
        (lambda: ssem.optimal_beta(-0.1, 1.0, 3, 4), r"alpha must lie in \[0, 1\]"),
        (lambda: ssem.optimal_beta([0.2, np.nan], 1.0, 3, 4), r"alpha must lie in \[0, 1\], got nan"),
        (lambda: ssem.optimal_beta(0.5, 1.0, 3, 4, variant="simclr"), "variant must be one of 'instance', 'supcon'"),
        (lambda: ssem.optimal_beta("a", 1.0, 3, 4), "alpha must be a real number"),
        (lambda: ssem.restricted_loss(1.2, 0.5, 1.0, 3, 4), r"beta must lie in \[0, 1\]"),
        (lambda: ssem.tau_star(2.0, 3, 4), r"alpha must lie in \[0, 1\]"),
        (
            lambda: ssem.embeddings(3, 4, 2, 10, 0.5),
            "dim must be >= n_classes \\* n_per_class - 1 = 11 for SSEM, got 10",
        ),
        (lambda: ssem.embeddings(3, 4, 2, 11, 1.5), r"beta must lie in \[0, 1\]"),
        (lambda: ssem.embeddings(3, 4, 0, 11, 0.5), "n_views must be an integer >= 1"),
        (lambda: ssem.small_tau_within(0.5, 0.1, 1), "n_per_class must be an integer >= 2"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- independent routes for the closed forms (each fails on a planted wrong formula) ---

INTERIOR = [(m, n, a) for m, n in ((2, 2), (3, 4), (10, 16)) for a in (0.3, 0.6, 0.9)]


@pytest.mark.parametrize("m, n, alpha", [(m, n, a) for m, n, a in INTERIOR if a > 1 / n])
def test_tau_star_interior_solves_alpha_star_of_tau_equal_alpha(m, n, alpha):
    """tau*(alpha) is the root of alpha*(tau) = alpha, found here by bracketing in log tau (brentq)."""
    from scipy.optimize import brentq

    root = np.exp(
        brentq(
            lambda log_tau: ssem.alpha_star(np.exp(log_tau), m, n) - alpha,
            np.log(1e-3),
            np.log(1e3),
            xtol=1e-14,
            rtol=1e-14,
        )
    )
    assert ssem.tau_star(alpha, m, n) == pytest.approx(root, rel=1e-9)


@pytest.mark.parametrize("m, n, alpha", [(m, n, a) for m, n, a in INTERIOR if a > 1 / n])
def test_tau_star_interior_separates_collapse_in_the_restricted_loss(m, n, alpha):
    """Just below tau* the restricted loss still falls towards beta = 1 (no collapse); just above it rises."""
    tau = ssem.tau_star(alpha, m, n)
    step = 1e-4
    for factor, collapses in ((1 - 1e-3, False), (1 + 1e-3, True)):
        near_one = ssem.restricted_loss(np.array([1 - step, 1.0]), alpha, tau * factor, m, n)
        assert (near_one[1] < near_one[0]) == collapses, (factor, near_one)


@pytest.mark.parametrize("m, n", [(2, 2), (3, 4), (10, 5)])
def test_small_tau_within_is_the_asymptote_of_the_optimum(m, n):
    """W*(alpha, tau) / asymptote -> 1 as tau -> 0, W* from the minimiser of the restricted loss.

    The neglected terms are O(e^{-c/tau}): below tau = 1e-2 only rounding separates the two.
    """
    alphas = np.linspace(1 / n, 1, 7)[1:-1]
    for tau in (1e-2, 1e-3):
        within = ssem.optimal_variances(alphas, tau, m, n)[0]
        np.testing.assert_allclose(within, ssem.small_tau_within(alphas, tau, n), rtol=1e-9)


OPEN_POINTS = [
    (3, 4, 0.5, 0.5, "instance"),
    (3, 4, 0.8, 0.2, "instance"),
    (2, 2, 0.9, 1.0, "instance"),
    (5, 3, 0.7, 0.1, "instance"),
    (3, 4, 0.2, 0.05, "supcon"),
    (2, 3, 0.9, 0.5, "supcon"),
]


@pytest.mark.parametrize("m, n, alpha, tau, variant", OPEN_POINTS)
def test_optimal_beta_is_the_brute_force_minimiser_where_it_is_below_one(m, n, alpha, tau, variant):
    """Brute force: the restricted loss on a fine beta grid, refined by bounded scalar minimisation."""
    from scipy.optimize import minimize_scalar

    grid = np.linspace(0, 1, 10001)
    losses = ssem.restricted_loss(grid, alpha, tau, m, n, 2, variant)
    k = int(np.argmin(losses))
    low, high = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    refined = minimize_scalar(
        lambda b: float(ssem.restricted_loss(b, alpha, tau, m, n, 2, variant)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-12},
    ).x
    assert refined < 1 - 1e-2  # the point is away from collapse: a beta* stuck at 1 would fail below
    assert ssem.optimal_beta(alpha, tau, m, n, 2, variant) == pytest.approx(refined, abs=1e-6)


# --- kills of surviving mutants (benchmarks/mutation.sh; docs/mutation.md) ---


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ssem.embeddings(2, 2, 1, "a", 0.5), r"^dim must be an integer >= 1, got 'a'"),
        (lambda: ssem.embeddings(2, 2, 1, 1, 0.5), r"^dim must be >= n_classes \* n_per_class - 1 = 3 for SSEM, got 1"),
        (lambda: ssem.embeddings(2, 2, 1, 3, -0.5), r"^beta must be"),
    ],
)
def test_embedding_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_embedding_seed_rotates_the_construction():
    plain, rotated = ssem.embeddings(2, 3, 1, 8, 0.5), ssem.embeddings(2, 3, 1, 8, 0.5, seed=3)
    assert np.abs(plain - rotated).max() > 0.1  # a random rotation moves the vectors ...
    np.testing.assert_allclose(
        np.einsum("ijkd,abcd->ijkabc", plain, plain), np.einsum("ijkd,abcd->ijkabc", rotated, rotated), atol=1e-12
    )  # ... not their Gram


def test_tau_star_edges_without_floating_point_warnings_and_its_return_types():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = ssem.tau_star(np.array([0.1, 0.25, 0.5, 1.0]), 3, 4)
    assert values[0] == 0.0 and values[1] == 0.0 and 0 < values[2] < np.inf and values[3] == np.inf
    # alpha = 1/49 rounds to n alpha - 1 = -1e-16: still "every temperature collapses", not NaN
    assert ssem.tau_star(1.0 / 49, 3, 49) == 0.0
    assert isinstance(ssem.tau_star(0.5, 3, 4), float) and isinstance(ssem.tau_star([0.5, 0.6], 3, 4), np.ndarray)


def test_guideline_audit_counterexamples_are_the_midpoints():
    """Each counterexample's alpha is the midpoint of [1/n, alpha*(1/log m)] (the audit's stated choice)."""
    for c in ssem.guideline_audit([2, 5], [3, 7]):
        assert c.alpha == pytest.approx(0.5 * (1 / c.n_per_class + c.alpha_star), rel=1e-15)
        assert c.alpha_star == pytest.approx(ssem.alpha_star(1 / np.log(c.n_classes), c.n_classes, c.n_per_class))
    with pytest.raises(ValueError, match=r"^n_classes must be an integer >= 2, got 1"):
        ssem.guideline_audit([1], [3])


@pytest.mark.parametrize("m, n, p", [(2, 2, 2), (3, 4, 3), (5, 2, 4)])
def test_supcon_alpha_star_is_the_collapse_boundary_of_the_numeric_optimum(m, n, p):
    """alpha* of variant "supcon" against the largest alpha with beta* = 1, bisected on optimal_beta."""
    for tau in (0.1, 1.0):
        low, high = 0.0, 1.0
        for _ in range(60):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if ssem.optimal_beta(middle, tau, m, n, p, "supcon") == 1.0 else (low, middle)
        assert ssem.alpha_star(tau, m, n, p, "supcon") == pytest.approx(low, abs=1e-9)


def test_restricted_loss_reports_the_first_beta_outside_the_interval_and_defaults():
    with pytest.raises(ValueError, match=r"^beta must lie in \[0, 1\], got 1\.5$"):
        ssem.restricted_loss([0.0, 0.5, 1.0, 1.5], 0.5, 1.0, 3, 4)
    assert ssem.restricted_loss(0.3, 0.5, 1.0, 3, 4) == ssem.restricted_loss(0.3, 0.5, 1.0, 3, 4, 2, "instance")
    within, between = ssem.optimal_variances(0.2, 0.1, 3, 4, 2, "supcon")
    assert between == ssem.optimal_beta(0.2, 0.1, 3, 4, 2, "supcon") and within == 1 - between
    assert between != ssem.optimal_beta(0.2, 0.1, 3, 4, 2, "instance")
    with pytest.raises(ValueError, match=r"^n_classes must be an integer >= 2, got 1"):
        ssem.collapse_ratio(0.5, 1)


@pytest.mark.parametrize("m, n, p, beta", [(2, 2, 1, 0.3), (3, 4, 2, 0.8), (4, 3, 3, 1.0), (3, 2, 2, 0.0)])
def test_ssem_view_gram_is_the_gram_of_the_construction(m, n, p, beta):
    # The closed-form Gram against the constructed vectors (an independent route: simplices placed in R^d).
    z = ssem.embeddings(m, n, p, m * n, beta).reshape(m * n * p, m * n)
    np.testing.assert_allclose(ssem.ssem_view_gram(beta, m, n, p), z @ z.T, atol=1e-12)
