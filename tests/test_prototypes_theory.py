"""Tests of theory.prototypes: the count evaluator against the naive oracle, the limit and its bounds,
the symbolic derivations, the fixed-classifier results, and argument errors (docs/prototypes.md)."""

from __future__ import annotations

import math
import warnings

import naive
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate.losses import fixed_classifier_ce, prototype_supcon_loss
from theory import prototypes, prototypes_symbolic, simplex

SIZES = {
    "imbalanced": (4, 3, 1),
    "singletons": (1, 1, 2),
    "absent class": (3, 0, 2),
}


def unit_rows(rng, n, d) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def problem(sizes, seed=0, d=5):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return unit_rows(rng, len(labels), d), labels, unit_rows(rng, len(sizes), d)


# ---------------------------------------------------------------------------
# The loss from counts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("anchors", ["data", "all"])
@pytest.mark.parametrize("n_proto", [0, 1, 2, 5])
@pytest.mark.parametrize("case", list(SIZES), ids=list(SIZES))
def test_loss_from_counts_matches_naive_materialised_copies(case, n_proto, anchors):
    z, labels, W = problem(SIZES[case])
    expected = naive.prototype_supcon_loss(z.tolist(), labels.tolist(), W.tolist(), n_proto, 0.7, anchors)
    actual = prototypes.prototype_loss_from_counts(z, labels, W, n_proto, 0.7, anchors)
    assert actual == pytest.approx(expected, rel=1e-12)


def test_loss_from_counts_is_vectorised_over_n_proto():
    z, labels, W = problem((4, 3, 1))
    counts = np.array([[1, 10], [100, 1000]])
    values = prototypes.prototype_loss_from_counts(z, labels, W, counts, 0.5, "all")
    assert values.shape == (2, 2)
    assert values[1, 0] == prototypes.prototype_loss_from_counts(z, labels, W, 100, 0.5, "all")


@pytest.mark.parametrize("anchors", ["data", "all"])
def test_loss_from_counts_matches_simulate_losses_at_large_n_proto(anchors):
    z, labels, W = problem((6, 2, 1), seed=3)
    for n_proto in (10, 10**4, 10**6):
        zt, yt, wt = torch.tensor(z), torch.tensor(labels), torch.tensor(W)
        expected = float(prototype_supcon_loss(zt, yt, wt, n_proto, 0.3, anchors))
        actual = prototypes.prototype_loss_from_counts(z, labels, W, n_proto, 0.3, anchors)
        assert actual == pytest.approx(expected, rel=1e-13)


def test_cross_entropy_matches_naive_and_simulate():
    z, labels, W = problem((4, 3, 1), seed=1)
    expected = naive.fixed_classifier_ce(z.tolist(), labels.tolist(), W.tolist(), 0.4)
    assert prototypes.mean_cross_entropy(z, labels, W, 0.4) == pytest.approx(expected, rel=1e-12)
    simulated = float(fixed_classifier_ce(torch.tensor(z), torch.tensor(labels), torch.tensor(W), 0.4))
    assert prototypes.mean_cross_entropy(z, labels, W, 0.4) == pytest.approx(simulated, rel=1e-12)


# ---------------------------------------------------------------------------
# The limit, the gap, its first-order term and bounds
# ---------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 4), min_size=2, max_size=4).filter(lambda s: sum(s) >= 2),
    tau=st.floats(0.2, 3.0),
    n_proto=st.integers(1, 10**5),
    anchors=st.sampled_from(["data", "all"]),
    seed=st.integers(0, 1000),
)
def test_gap_is_within_the_proven_bound(sizes, tau, n_proto, anchors, seed):
    z, labels, W = problem(sizes, seed=seed)
    if anchors == "all" and n_proto == 1 and 0 in sizes:
        n_proto = 2  # the anchors="all" bound needs n_w >= 2 when a class is absent
    gap = prototypes.gap(z, labels, W, n_proto, tau, anchors)
    bound = prototypes.gap_bound_constant(z, labels, W, tau, anchors)
    assert abs(gap) <= bound / n_proto * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("anchors", ["data", "all"])
def test_first_order_coefficient_is_the_limit_of_n_gap(anchors):
    z, labels, W = problem((5, 3, 2), seed=4)
    c1 = prototypes.first_order_coefficient(z, labels, W, 0.6, anchors)
    scaled = [n * float(prototypes.gap(z, labels, W, n, 0.6, anchors)) for n in (10**3, 10**4, 10**5)]
    errors = [abs(s - c1) for s in scaled]
    assert errors[2] < 1e-3 * max(1.0, abs(c1))
    assert errors[2] < errors[1] < errors[0]  # O(1/n_w) second-order term


def test_data_limit_is_mean_ce_and_all_limit_is_prototype_self_ce():
    z, labels, W = problem((5, 3, 2), seed=5)
    big = 10**7
    data = prototypes.prototype_loss_from_counts(z, labels, W, big, 0.5, "data") - math.log(big)
    assert data == pytest.approx(prototypes.mean_cross_entropy(z, labels, W, 0.5), abs=1e-5)
    every = prototypes.prototype_loss_from_counts(z, labels, W, big, 0.5, "all") - math.log(big)
    kbar = prototypes.prototype_self_cross_entropy(W, 0.5).mean()
    assert every == pytest.approx(kbar, abs=1e-5)
    mean_ce = prototypes.mean_cross_entropy(z, labels, W, 0.5)
    assert prototypes.extra_term(z, labels, W, 0.5) == pytest.approx(kbar - mean_ce)
    assert prototypes.extra_term(z, labels, W, 0.5, anchors="data") == 0.0


def test_prototype_self_ce_of_an_etf_is_its_ce_minimum():
    for m in (2, 3, 7):
        K = prototypes.prototype_self_cross_entropy(simplex.etf(m, m), 0.3)
        np.testing.assert_allclose(K, prototypes.etf_ce_minimum(m, 0.3), rtol=1e-12)


def test_uniform_bound_dominates_the_data_dependent_bound():
    W = simplex.etf(3, 4)
    for seed in range(5):
        z, labels, _ = problem((4, 2, 1), seed=seed, d=4)
        uniform = prototypes.uniform_gap_bound_constant((4, 2, 1), W, 0.5)
        assert prototypes.gap_bound_constant(z, labels, W, 0.5) <= uniform


# ---------------------------------------------------------------------------
# Symbolic derivations
# ---------------------------------------------------------------------------


def test_symbolic_data_anchor_limit():
    derived = prototypes_symbolic.derive_data_anchor(2)
    assert derived.limit == 0
    assert derived.first_order_residual == 0
    assert derived.decomposition_residual == 0


def test_symbolic_prototype_anchor_limit():
    derived = prototypes_symbolic.derive_prototype_anchor(2)
    assert derived.limit == 0
    assert derived.first_order_residual == 0
    assert derived.decomposition_residual == 0


def test_symbolic_all_anchor_mean():
    derived = prototypes_symbolic.derive_all_anchor_mean()
    assert derived.limit_residual == 0 and derived.first_order_residual == 0


def test_symbolic_derivation_detects_a_wrong_count():
    """If the own-class copies were not positives, the gap would not vanish: the derivation can fail."""
    import sympy as sp

    tau, n_w, u0, u1 = sp.symbols("tau n_w u0 u1", positive=True)
    groups = [
        prototypes_symbolic.copies(n_w, u0, tau, False),
        prototypes_symbolic.copies(n_w, u1, tau, False),
        prototypes_symbolic.PairGroup(1, sp.Symbol("S"), sp.Symbol("E", positive=True)),
    ]
    ce = -u0 / tau + sp.log(sp.exp(u0 / tau) + sp.exp(u1 / tau))
    wrong = prototypes_symbolic.anchor_loss(groups, tau) - sp.log(n_w) - ce
    assert prototypes_symbolic.expansion(wrong, n_w)[0] != 0


def test_symbolic_fixed_classifier_results():
    etf = prototypes_symbolic.derive_etf_fixed_classifier()
    assert etf.at_prototype_residual == 0
    m, tau = sp_symbol(etf.bound, "m"), sp_symbol(etf.bound, "tau")
    at_prototype = float(etf.bound.subs({m: 4, tau: 0.5, sp_symbol(etf.bound, "t"): 1}))
    assert at_prototype == pytest.approx(prototypes.etf_ce_minimum(4, 0.5))
    orthogonal = prototypes_symbolic.derive_orthogonal_minimiser()
    m = sp_symbol(orthogonal.a, "m")
    assert float(orthogonal.label_cosine.subs(m, 4)) == pytest.approx(math.sqrt(3 / 4))
    assert float(orthogonal.margin.subs(m, 4)) == pytest.approx(np.linalg.norm(np.eye(4)[0] - np.eye(4)[1:].mean(0)))


def sp_symbol(expr, name):
    return next(s for s in expr.free_symbols if s.name == name)


# ---------------------------------------------------------------------------
# Fixed classifier
# ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(m=st.integers(2, 8), tau=st.floats(0.1, 5.0), seed=st.integers(0, 10**6))
def test_jensen_bound_holds_and_etf_minimum_is_at_the_prototype(m, tau, seed):
    W = simplex.etf(m, m + 1, seed=seed % 97)
    h = unit_rows(np.random.default_rng(seed), 8, m + 1)
    for y in range(m):
        values = prototypes.limit_objective(h, y, W, tau)
        assert np.all(values >= prototypes.ce_lower_bound(W, tau)[y] - 1e-12)
        at_prototype = float(prototypes.limit_objective(W[y], y, W, tau))
        assert at_prototype == pytest.approx(prototypes.etf_ce_minimum(m, tau), rel=1e-12)


def test_jensen_tightness_by_geometry():
    assert prototypes.jensen_is_tight(simplex.etf(5, 5)).all()
    assert prototypes.jensen_is_tight(simplex.orthogonal_frame(5, 6)).all()
    assert not prototypes.jensen_is_tight(simplex.minority_spread(5, 6, 0.5)).any()
    np.testing.assert_allclose(prototypes.jensen_candidate(simplex.etf(4, 5)), simplex.etf(4, 5), atol=1e-12)


@pytest.mark.parametrize("anchors", ["data", "all"])
def test_limit_minimisers_of_an_etf_are_the_prototypes(anchors):
    W = simplex.etf(4, 6, seed=2)
    np.testing.assert_allclose(prototypes.limit_minimisers(W, 0.3, anchors), W, atol=1e-6)


def test_limit_minimiser_of_an_orthogonal_frame_is_the_centred_direction():
    W = simplex.orthogonal_frame(4, 6, seed=1)
    H = prototypes.limit_minimisers(W, 0.7)
    np.testing.assert_allclose(H, prototypes.jensen_candidate(W), atol=1e-6)
    np.testing.assert_allclose((H * W).sum(1), math.sqrt(3 / 4), atol=1e-8)
    np.testing.assert_allclose(prototypes.limit_gram(W, 0.7), simplex.etf_gram(4), atol=1e-6)


def test_limit_minimiser_beats_random_points():
    W = simplex.minority_spread(4, 6, 0.7)
    h_star = prototypes.limit_minimisers(W, 0.5, "all")
    h = unit_rows(np.random.default_rng(0), 200, 6)
    for y in range(4):
        best = float(prototypes.limit_objective(h_star[y], y, W, 0.5, "all"))
        assert best <= prototypes.limit_objective(h, y, W, 0.5, "all").min()
        assert np.linalg.norm(h_star[y]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

Z, LABELS, W = problem((2, 2, 1))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W, -1, 0.5), "n_proto"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W, 1.5, 0.5), "n_proto"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W, 1, 0.0), "tau"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W, 1, [0.5, 1.0]), "tau"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W, 1, 0.5, "some"), "anchors"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS + 3, W, 1, 0.5), "labels"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS.astype(float), W, 1, 0.5), "labels"),
        (lambda: prototypes.prototype_loss_from_counts(Z[:, :3], LABELS, W, 1, 0.5), "z"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W[:1], 1, 0.5), "prototypes"),
        (lambda: prototypes.prototype_loss_from_counts(Z[[0, 2, 4]], np.array([0, 1, 2]), W, 0, 0.5), "no anchor"),
        (lambda: prototypes.gap(Z, LABELS, W, 0, 0.5), "n_proto"),
        (lambda: prototypes.uniform_gap_bound_constant((2, 2), W, 0.5), "class_sizes"),
        (lambda: prototypes.etf_ce_minimum(1, 0.5), "n_classes"),
        (lambda: prototypes.limit_objective(W[0], 3, W, 0.5), "label"),
        (lambda: prototypes.limit_minimisers(W, 0.5, "some"), "anchors"),
        (lambda: prototypes_symbolic.derive_data_anchor(1), "n_classes"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------
# Kills of surviving mutants (benchmarks/mutation.sh; docs/mutation.md)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W, -1, 0.5), r"^n_proto must be an integer >= 0"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W, [2, True], 0.5), r"^n_proto must be an integer"),
        (lambda: prototypes.prototype_loss_from_counts(Z, LABELS, W, 1, 0.5, "some"), r"^anchors must be one of"),
        (
            lambda: prototypes.prototype_loss_from_counts(Z[[0, 2, 4]], np.array([0, 1, 2]), W, 0, 0.5),
            r"^no anchor has a positive \(every class has one sample and n_proto = 0\)$",
        ),
        (lambda: prototypes.uniform_gap_bound_constant((2, "a", 1), W, 0.5), r"^class_sizes\[1\] must be an integer"),
        (lambda: prototypes.uniform_gap_bound_constant((2, 2), np.eye(3, 5), 0.5), r"^class_sizes must give m = 3 "),
    ],
)
def test_error_messages_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_defaults_are_the_data_anchors():
    z, labels, w = problem(SIZES["imbalanced"])
    np.testing.assert_array_equal(
        prototypes.gap(z, labels, w, [1, 7], 0.5), prototypes.gap(z, labels, w, [1, 7], 0.5, "data")
    )
    np.testing.assert_array_equal(
        prototypes.prototype_loss_from_counts(z, labels, w, 3, 0.5),
        prototypes.prototype_loss_from_counts(z, labels, w, 3, 0.5, "data"),
    )


@pytest.mark.parametrize("anchors", ["data", "all"])
def test_empty_positive_sets_and_one_copy_raise_no_floating_point_warning(anchors):
    """n_w = 0 with a singleton class (an empty P(a)) and n_w = 1 (no other copy of an anchor's prototype)."""
    import warnings

    z, labels, w = problem(SIZES["singletons"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = prototypes.prototype_loss_from_counts(z, labels, w, [0, 1, 2], 0.5, anchors)
    assert np.isfinite(values).all()


def test_uniform_gap_bound_constant_is_its_stated_formula():
    """C_unif = mean_a [q_a (|w_{y_a}| + 1)/tau + (N-1) e^{(1 + |wbar|)/tau} / m], q_a = N_{y_a} - 1, written out."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 4)) * np.array([[0.5], [1.0], [2.0]])  # rows of different norms
    sizes, tau = (4, 0, 2), 0.7
    labels = np.repeat(np.arange(3), sizes)
    n = len(labels)
    terms = [
        (sizes[y] - 1) * (np.linalg.norm(w[y]) + 1) / tau
        + (n - 1) * math.exp((1 + np.linalg.norm(w.mean(axis=0))) / tau) / 3
        for y in labels
    ]
    assert prototypes.uniform_gap_bound_constant(sizes, w, tau) == pytest.approx(sum(terms) / n, rel=1e-13)
    # a single sample in all is allowed (sizes >= 0, positive sum)
    assert prototypes.uniform_gap_bound_constant((1, 0, 0), w, tau) == pytest.approx(0.0, abs=0.0)


@pytest.mark.parametrize("m", [3, 4, 10])
def test_ce_lower_bound_of_an_etf_is_the_etf_minimum(m):
    """For an ETF the Jensen bound is attained at h = w_y: it equals etf_ce_minimum and CE(w_y)."""
    W_etf = simplex.etf(m, m + 1)
    at_prototypes = prototypes.per_sample_cross_entropy(W_etf, np.arange(m), W_etf, 0.3)
    np.testing.assert_allclose(prototypes.ce_lower_bound(W_etf, 0.3), prototypes.etf_ce_minimum(m, 0.3), rtol=1e-12)
    np.testing.assert_allclose(prototypes.ce_lower_bound(W_etf, 0.3), at_prototypes, rtol=1e-12)


def test_jensen_tightness_row_by_row():
    """W = (e1, -e1, e2): for y = e2 the other two logits are both exactly 0 (tight); for y = +-e1 they differ."""
    w = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert prototypes.jensen_is_tight(w).tolist() == [False, False, True]
    assert prototypes.jensen_is_tight(w, atol=0.0).tolist() == [False, False, True]


def test_limit_gram_forwards_its_options(monkeypatch):
    """limit_gram is the Gram of limit_minimisers with the same anchors, restarts and seed (and the same defaults)."""
    import inspect

    seen = []

    def fake(prototypes_, tau, anchors="data", restarts=4, seed=0):
        seen.append((anchors, restarts, seed))
        return np.eye(2)

    expected_defaults = tuple(
        inspect.signature(prototypes.limit_minimisers).parameters[name].default
        for name in ("anchors", "restarts", "seed")
    )
    monkeypatch.setattr(prototypes, "limit_minimisers", fake)
    prototypes.limit_gram(np.eye(2), 0.5)
    prototypes.limit_gram(np.eye(2), 0.5, "all", 7, 11)
    assert seen == [expected_defaults, ("all", 7, 11)]


def _riemannian_gradient(objective, h, eps=1e-6):
    """Central differences of objective along an orthonormal basis of the tangent space at unit h."""
    basis = np.linalg.svd(np.eye(len(h)) - np.outer(h, h))[0][:, : len(h) - 1]
    steps = [
        (objective(np.cos(eps) * h + np.sin(eps) * v) - objective(np.cos(eps) * h - np.sin(eps) * v)) / (2 * eps)
        for v in basis.T
    ]
    return np.linalg.norm(steps)


@pytest.mark.parametrize("anchors", ["data", "all"])
def test_limit_minimisers_are_stationary_for_their_own_objective(anchors):
    """Each row minimises limit_objective(., y, W, tau, anchors): tangent gradient ~ 0, and no nearby point is lower."""
    w = simplex.minority_spread(4, 6, 0.5)
    h = prototypes.limit_minimisers(w, 0.5, anchors)
    rng = np.random.default_rng(0)
    for y in range(4):

        def objective(x, y=y):
            return float(prototypes.limit_objective(x, y, w, 0.5, anchors))

        assert _riemannian_gradient(objective, h[y]) < 1e-7
        nearby = h[y] + 1e-3 * rng.standard_normal((20, 6))
        nearby /= np.linalg.norm(nearby, axis=1, keepdims=True)
        assert (prototypes.limit_objective(nearby, y, w, 0.5, anchors) >= objective(h[y]) - 1e-12).all()


@pytest.mark.parametrize("anchors", ["data", "all"])
def test_minimise_limit_objective_from_starts_off_the_sphere(anchors):
    """From starts of any length (x = 0.1 or 10 times a unit vector): the returned h is unit and stationary for
    its own objective, the returned value is the objective there, and scipy takes every option (no warning)."""
    w = simplex.minority_spread(4, 6, 0.5)
    rng = np.random.default_rng(3)
    for y in range(4):
        unit = rng.standard_normal((2, 6))
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            h, value = prototypes.minimise_limit_objective(y, w, 0.5, anchors, [0.1 * unit[0], 10.0 * unit[1]])

        def objective(x, y=y):
            return float(prototypes.limit_objective(x, y, w, 0.5, anchors))

        assert np.linalg.norm(h) == pytest.approx(1.0, abs=1e-12)
        assert value == pytest.approx(objective(h), rel=1e-12, abs=1e-12)
        assert _riemannian_gradient(objective, h) < 1e-7


def test_limit_value_defaults_to_data_anchors():
    w = simplex.minority_spread(4, 6, 0.5)
    z = np.vstack([w, -w])  # unit rows
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    default = prototypes.limit_value(z, labels, w, 0.4)
    assert default == prototypes.limit_value(z, labels, w, 0.4, "data")
    assert default != prototypes.limit_value(z, labels, w, 0.4, "all")


def test_a_single_data_sample_has_no_gap():
    """One data anchor, no other data: no positive and no other sample in its denominator, so the loss minus
    log n_w is the limit at every n_w; the 1/n_w coefficient and the bound's constant are 0."""
    w = simplex.minority_spread(4, 6, 0.5)
    z, labels = np.array([[0.6, 0.8, 0.0, 0.0, 0.0, 0.0]]), np.array([1])
    assert np.abs(prototypes.gap(z, labels, w, [1, 10, 1000], 0.5)).max() < 1e-13
    assert prototypes.first_order_coefficient(z, labels, w, 0.5) == 0.0
    assert prototypes.gap_bound_constant(z, labels, w, 0.5) == 0.0


def test_limit_objective_all_anchors_is_its_stated_formula():
    """'all': CE(h; y) - <w_y, h>/tau + sum_c exp(<w_c, h>/tau) / Z_c, Z_c = sum_k exp(<w_c, w_k>/tau)."""
    w, tau = simplex.minority_spread(4, 6, 0.5), 0.7
    h = unit_rows(np.random.default_rng(5), 3, 6)
    logits = h @ w.T / tau
    ce = np.log(np.exp(logits).sum(1)) - logits[:, 2]
    z_c = np.exp(w @ w.T / tau).sum(1)
    stated = ce - logits[:, 2] + (np.exp(logits) / z_c).sum(1)
    np.testing.assert_allclose(prototypes.limit_objective(h, 2, w, tau, "all"), stated, rtol=1e-12)
    assert not np.allclose(prototypes.limit_objective(h, 2, w, tau, "data"), stated)


def test_limit_minimisers_random_starts_follow_the_seed(monkeypatch):
    """The starts handed to the sphere minimiser: w_y, the Jensen candidate, then `restarts` seeded random points."""
    seen = []
    real = prototypes.minimise_limit_objective

    def spy(label, w, tau, anchors, starts):
        seen.append(np.array(starts))
        return real(label, w, tau, anchors, starts)

    monkeypatch.setattr(prototypes, "minimise_limit_objective", spy)
    w = simplex.minority_spread(4, 6, 0.5)
    prototypes.limit_minimisers(w, 0.5)
    prototypes.limit_minimisers(w, 0.5, "data", 4, 0)
    prototypes.limit_minimisers(w, 0.5, "data", 0, 0)
    default, explicit, none = seen[:4], seen[4:8], seen[8:]
    assert all(np.array_equal(a, b) for a, b in zip(default, explicit)) and len(default[0]) == 2 + 4
    assert len(none[0]) == 2  # restarts = 0 is allowed: the two deterministic starts only


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: prototypes.limit_minimisers(W, 0.5, "some"), r"^anchors must be one of"),
        (lambda: prototypes.limit_minimisers(W, 0.5, "data", -1), r"^restarts must be an integer >= 0"),
        (lambda: prototypes.limit_objective(W[0], 0, W, 0.5, "some"), r"^anchors must be one of"),
        (lambda: prototypes.limit_objective(W[0], -1, W, 0.5), r"^label must be an integer >= 0"),
        (lambda: prototypes.limit_objective(W[0], 3, np.eye(3, 5), 0.5), r"^label must lie in \[0, 3\), got 3"),
        (lambda: prototypes.etf_ce_minimum(1, 0.5), r"^n_classes must be an integer >= 2"),
        (
            lambda: prototypes.jensen_candidate(np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])),
            r"^prototypes must not have w_y equal to the mean of the other prototypes$",
        ),
    ],
)
def test_more_error_messages_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_jensen_tightness_is_judged_within_each_row():
    """Apex e3 over a 3-fold symmetric base at height -0.6: the apex row is tight (its other logits are equal by
    symmetry) although the base rows see larger logits; the base rows are not tight."""
    h, r = 0.6, 0.8
    w = np.array([[0.0, 0.0, 1.0]] + [[r * np.cos(a), r * np.sin(a), -h] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)])
    assert prototypes.jensen_is_tight(w).tolist() == [True, False, False, False]
