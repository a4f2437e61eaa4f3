"""Tests of simulate.certify: certified minima against independent code (simulate.losses,
theory.ssem closed forms, Graf et al.'s collapse value) and against feasible embeddings."""

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate import certify, exchangeable, losses
from simulate.certify import (
    MAX_VECTORS,
    CertificateError,
    certify_combined,
    certify_prototype,
    certify_supcon,
    embeddings_from_gram,
    nearest_gram,
)
from theory import simplex, ssem

#: float64 tolerances. RELATIVE: the acceptance figure for agreement of loss values
#: (docs/verdicts.md#routes). BELOW: how far a feasible loss may fall under a certified minimum
#: (solver accuracy, relative). GRAM: exactness of the projected Gram.
RELATIVE = 1e-6
BELOW = 1e-7
GRAM = 1e-12


def _relative(a, b):
    return abs(a - b) / abs(b)


def _t(array):
    return torch.as_tensor(np.asarray(array), dtype=torch.float64)


def _labels(class_sizes):
    return torch.repeat_interleave(torch.arange(len(class_sizes)), torch.tensor(class_sizes))


# --- cached certificates (each solve is 0.05-0.5 s; hypothesis reuses them) ---


@functools.cache
def _combined(alpha, tau, m, n, p, variant):
    return certify_combined(alpha, tau, m, n, p, variant)


@functools.cache
def _supcon(class_sizes, tau):
    return certify_supcon(class_sizes, tau)


PROTOTYPE_GEOMETRIES = {
    "etf3": simplex.etf(3, 3),
    "spread4": simplex.minority_spread(4, 4, 0.5),
    "orthogonal3": simplex.orthogonal_frame(3, 3),
}


@functools.cache
def _prototype(class_sizes, geometry, n_proto, tau, anchors):
    w = PROTOTYPE_GEOMETRIES[geometry]
    return certify_prototype(class_sizes, w @ w.T, n_proto, tau, anchors)


def _combined_loss(z, alpha, tau, m, n, p, variant):
    labels, instances = losses.balanced_layout(m, n, p)
    return float(losses.combined_loss(_t(z), labels, instances, alpha, tau, variant))


def _prototype_loss(z, class_sizes, geometry, n_proto, tau, anchors, w=None):
    w = PROTOTYPE_GEOMETRIES[geometry] if w is None else w
    return float(losses.prototype_supcon_loss(_t(z), _labels(class_sizes), _t(w), n_proto, tau, anchors))


# --- Paper B, variant "instance": the certificate equals the SSEM closed form (docs/ssem.md) ---

INSTANCE_CASES = [
    (2, 2, 1, 0.5, 0.5),
    (2, 3, 2, 0.6, 0.2),
    (3, 2, 2, 0.2, 1.0),  # alpha < alpha*: collapse, beta* = 1
    (3, 3, 1, 0.9, 0.1),
    (2, 2, 2, 0.0, 0.3),  # pure supervised
    (3, 3, 2, 1.0, 0.5),  # pure self-supervised
]


@pytest.mark.parametrize("m, n, p, alpha, tau", INSTANCE_CASES, ids=lambda v: str(v))
def test_instance_minimum_equals_ssem_closed_form(m, n, p, alpha, tau):
    cert = _combined(alpha, tau, m, n, p, "instance")
    beta = ssem.optimal_beta(alpha, tau, m, n, p, "instance")
    closed = float(ssem.restricted_loss(beta, alpha, tau, m, n, p, "instance"))
    assert cert.ok and cert.status == "optimal"
    assert _relative(cert.minimum, closed) < RELATIVE
    assert cert.lower_bound <= closed + BELOW * abs(closed)
    # SSEM(beta) is feasible for every beta: no point of the family beats the certificate.
    family = ssem.restricted_loss(np.linspace(0.0, 1.0, 101), alpha, tau, m, n, p, "instance")
    assert family.min() >= cert.minimum - BELOW * abs(cert.minimum)


def _collapse_loss(m, n, tau):
    """Graf et al. (ICML 2021): balanced SupCon is minimised by classes collapsed onto an
    ETF; then l_a = log[(n - 1) + (m - 1) n exp(-m / ((m - 1) tau))] for every anchor."""
    return np.log((n - 1) + (m - 1) * n * np.exp(-m / ((m - 1) * tau)))


@pytest.mark.parametrize("m, n, tau", [(2, 3, 0.5), (3, 3, 0.1), (4, 2, 2.0)])
def test_balanced_supcon_minimum_is_collapse_to_etf(m, n, tau):
    # The full program certifies the loss to the solver's accuracy. It does not determine the
    # Gram to 1e-4 at small tau: the between-class weights (~exp(-2/tau)) fall below that
    # accuracy, so the solver's Gram depends on the machine. The Gram is pinned by the
    # exchangeable certificate, whose polish step solves its few variables to machine precision.
    cert = _supcon((n,) * m, tau)
    assert _relative(cert.minimum, _collapse_loss(m, n, tau)) < RELATIVE
    reduced = exchangeable.certify_supcon((n,) * m, tau)
    assert reduced.polished
    assert _relative(reduced.minimum, _collapse_loss(m, n, tau)) < 1e-12
    np.testing.assert_allclose(reduced.class_mean_gram(), simplex.etf_gram(m), atol=1e-9)


# --- the certified value is attained: embeddings recovered from G, evaluated by simulate.losses ---

COMBINED_CASES = [
    (0.4, 0.5, 2, 3, 2, "instance"),
    (0.1, 0.1, 3, 2, 2, "instance"),
    (0.4, 0.5, 2, 3, 2, "supcon"),
    (0.05, 0.1, 2, 2, 3, "supcon"),
]


@pytest.mark.parametrize("alpha, tau, m, n, p, variant", COMBINED_CASES, ids=lambda v: str(v))
def test_combined_recovered_embeddings_attain_minimum(alpha, tau, m, n, p, variant):
    cert = _combined(alpha, tau, m, n, p, variant)
    for seed in (None, 3):  # the loss is rotation invariant
        z = cert.embeddings(seed=seed)
        assert z.shape == (m * n * p, m * n * p)
        assert _relative(_combined_loss(z, alpha, tau, m, n, p, variant), cert.minimum) < RELATIVE


@pytest.mark.parametrize("class_sizes, tau", [((5, 2, 1), 0.3), ((4, 4), 0.1), ((6, 3, 2, 1), 1.0)], ids=str)
def test_supcon_recovered_embeddings_attain_minimum(class_sizes, tau):
    cert = _supcon(class_sizes, tau)
    z = cert.embeddings()
    assert _relative(float(losses.supcon_loss(_t(z), _labels(class_sizes), tau)), cert.minimum) < RELATIVE


PROTOTYPE_CASES = [
    ((4, 2, 1), "etf3", 0, 0.3, "data"),
    ((4, 2, 1), "etf3", 1, 0.3, "data"),
    ((4, 2, 1), "etf3", 5, 0.3, "all"),
    ((3, 0, 2), "orthogonal3", 1, 0.5, "all"),  # a class without data: its prototype still anchors
    ((3, 3, 1, 1), "spread4", 2, 0.2, "data"),
    ((3, 3, 1, 1), "spread4", 2, 0.2, "all"),
]


@pytest.mark.parametrize("class_sizes, geometry, n_proto, tau, anchors", PROTOTYPE_CASES, ids=str)
def test_prototype_recovered_embeddings_attain_minimum(class_sizes, geometry, n_proto, tau, anchors):
    cert = _prototype(class_sizes, geometry, n_proto, tau, anchors)
    z, w = cert.embeddings_with_prototypes(PROTOTYPE_GEOMETRIES[geometry])
    assert z.shape == (sum(class_sizes), w.shape[1])
    loss = _prototype_loss(z, class_sizes, geometry, n_proto, tau, anchors, w=w)
    assert _relative(loss, cert.minimum) < RELATIVE
    if n_proto > 0:
        assert cert.fixed_violation < 1e-7


def test_prototype_without_copies_is_plain_supcon():
    sizes = (4, 2, 1)
    assert _relative(_prototype(sizes, "etf3", 0, 0.3, "data").minimum, _supcon(sizes, 0.3).minimum) < RELATIVE
    assert _relative(_prototype(sizes, "etf3", 0, 0.3, "all").minimum, _supcon(sizes, 0.3).minimum) < RELATIVE


def test_certificate_is_a_gram_of_unit_vectors_with_consistent_metadata():
    cert = _prototype((4, 2, 1), "etf3", 5, 0.3, "all")
    G = cert.gram
    assert G.shape == (10, 10) and cert.n_data == 7
    assert np.array_equal(cert.labels, [0, 0, 0, 0, 1, 1, 2, 0, 1, 2])
    assert np.abs(G - G.T).max() == 0.0
    assert np.abs(np.diag(G) - 1).max() < GRAM
    assert np.linalg.eigvalsh(G)[0] > -GRAM
    assert cert.ok and cert.residual < 1e-6 and cert.seconds > 0
    z = cert.embeddings()
    means = np.stack([z[:7][cert.labels[:7] == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(cert.class_mean_gram(), means @ means.T, atol=1e-10)


# --- no feasible embedding goes below the certificate ---

BOUND_CASES = [
    ("combined", (0.4, 0.5, 2, 3, 2, "instance")),
    ("combined", (0.05, 0.1, 2, 2, 3, "supcon")),
    ("supcon", ((5, 2, 1), 0.3)),
    ("prototype", ((4, 2, 1), "etf3", 5, 0.3, "all")),
    ("prototype", ((3, 3, 1, 1), "spread4", 2, 0.2, "data")),
]


def _certificate_for(kind, case):
    return {"combined": _combined, "supcon": _supcon, "prototype": _prototype}[kind](*case)


def _row_classes(kind, case):
    """(N,) class of each data row."""
    if kind == "combined":
        return losses.balanced_layout(*case[2:5])[0].numpy()
    return _labels(case[0]).numpy()


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _feasible_loss(kind, case, z, seed):
    """simulate.losses at data embeddings z (N, d); prototypes (if any) randomly rotated."""
    if kind == "combined":
        return _combined_loss(z, *case)
    if kind == "supcon":
        return float(losses.supcon_loss(_t(z), _labels(case[0]), case[1]))
    w = PROTOTYPE_GEOMETRIES[case[1]]
    dim = max(z.shape[1], w.shape[1])
    padded_w, padded_z = np.zeros((len(w), dim)), np.zeros((len(z), dim))
    padded_w[:, : w.shape[1]], padded_z[:, : z.shape[1]] = w, z
    return _prototype_loss(padded_z, *case, w=padded_w @ simplex.random_rotation(dim, seed).T)


@pytest.mark.parametrize("kind, case", BOUND_CASES, ids=lambda v: str(v))
@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), dim=st.integers(1, 16), concentration=st.floats(0.0, 3.0))
def test_random_unit_embeddings_stay_above_certificate(kind, case, seed, dim, concentration):
    # Unit vectors drawn around one random direction per class (concentration 0:
    # uniform on the sphere) cover spread-out and near-collapsed configurations.
    rng = np.random.default_rng(seed)
    classes = _row_classes(kind, case)
    centres = _unit(rng.standard_normal((classes.max() + 1, dim)))
    z = _unit(concentration * centres[classes] + rng.standard_normal((len(classes), dim)) / np.sqrt(dim))
    minimum = _certificate_for(kind, case).minimum
    assert _feasible_loss(kind, case, z, seed) >= minimum - BELOW * abs(minimum)


@pytest.mark.parametrize("kind, case", BOUND_CASES, ids=lambda v: str(v))
@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), size=st.floats(1e-4, 0.3))
def test_perturbed_optimum_stays_above_certificate(kind, case, seed, size):
    # Near the optimum the loss is flat to first order: the sharpest test of "certified".
    cert = _certificate_for(kind, case)
    rng = np.random.default_rng(seed)
    if kind == "prototype":
        z, w = cert.embeddings_with_prototypes(PROTOTYPE_GEOMETRIES[case[1]])
        loss = _prototype_loss(_unit(z + size * rng.standard_normal(z.shape)), *case, w=w)
    else:
        z = cert.embeddings()
        loss = _feasible_loss(kind, case, _unit(z + size * rng.standard_normal(z.shape)), seed)
    assert loss >= cert.minimum - BELOW * abs(cert.minimum)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.7, 1.0])
def test_ssem_constructions_stay_above_certificate(beta):
    for variant, case in (("instance", (0.4, 0.5, 2, 3, 2)), ("supcon", (0.05, 0.1, 2, 2, 3))):
        alpha, tau, m, n, p = case
        z = ssem.embeddings(m, n, p, m * n, beta, seed=1).reshape(m * n * p, m * n)
        cert = _combined(alpha, tau, m, n, p, variant)
        assert _combined_loss(z, alpha, tau, m, n, p, variant) >= cert.minimum - BELOW * abs(cert.minimum)


def test_data_on_prototypes_stays_above_certificate():
    case = ((4, 2, 1), "etf3", 5, 0.3, "all")
    w = PROTOTYPE_GEOMETRIES["etf3"]
    z = w[_labels(case[0]).numpy()]  # every sample collapsed onto its class prototype
    minimum = _prototype(*case).minimum
    assert _prototype_loss(z, *case) >= minimum - BELOW * abs(minimum)


# --- solver status: only "optimal" passes ---


def test_solver_not_reaching_optimal_is_never_a_pass(monkeypatch):
    starved = {"CLARABEL": {"max_iter": 2}, "SCS": {"max_iters": 5}}
    monkeypatch.setattr(certify, "solver_options", lambda solver, tolerance: starved[solver])
    with pytest.raises(CertificateError, match="not optimal"):
        certify_combined(0.5, 0.5, 2, 2, 1)
    cert = certify_combined(0.5, 0.5, 2, 2, 1, strict=False)
    assert not cert.ok and cert.status != "optimal"
    assert (cert.solver, cert.tolerance) == certify.ATTEMPTS[-1]  # every attempt was made
    with pytest.raises(CertificateError):
        cert.require_ok()


def test_scs_alone_agrees_with_clarabel():
    scs = certify_combined(0.5, 0.5, 2, 2, 1, solver="SCS")
    assert scs.solver == "SCS" and scs.ok
    assert _relative(scs.minimum, _combined(0.5, 0.5, 2, 2, 1, "instance").minimum) < RELATIVE


# --- refused sizes and bad arguments ---


def test_sizes_beyond_the_limit_are_refused_before_solving():
    assert MAX_VECTORS == 48
    with pytest.raises(ValueError, match="K must be <= 48"):
        certify_combined(0.5, 0.5, 2, 5, 5)  # 50 views
    with pytest.raises(ValueError, match="K must be <= 48"):
        certify_supcon([25, 24], 0.5)
    with pytest.raises(ValueError, match="K must be <= 48"):
        certify_prototype([24, 23], simplex.etf_gram(2), 3, 0.5)  # 47 samples + 2 prototypes


ETF2 = simplex.etf_gram(2)
BAD_ARGUMENTS = [
    (lambda: certify_combined(1.5, 0.5, 2, 2, 2), "alpha"),
    (lambda: certify_combined(0.5, 0.0, 2, 2, 2), "tau"),
    (lambda: certify_combined(0.5, [0.1, 0.2], 2, 2, 2), "tau must be a scalar"),
    (lambda: certify_combined(0.5, 0.5, 1, 2, 2), "n_classes"),
    (lambda: certify_combined(0.5, 0.5, 2, 1, 2), "n_per_class"),
    (lambda: certify_combined(0.5, 0.5, 2, 2, 2.0), "n_views"),
    (lambda: certify_combined(0.5, 0.5, 2, 2, 1, "supcon"), "n_views"),
    (lambda: certify_combined(0.5, 0.5, 2, 2, 2, "simclr"), "variant"),
    (lambda: certify_combined(0.5, 0.5, 2, 2, 2, solver="MOSEK"), "solver"),
    (lambda: certify_supcon([1, 1, 1], 0.5), "class_sizes"),
    (lambda: certify_supcon([], 0.5), "class_sizes"),
    (lambda: certify_supcon([3, 0], 0.5), r"class_sizes\[1\]"),
    (lambda: certify_supcon(5, 0.5), "class_sizes"),
    (lambda: certify_supcon([3, 2], -1.0), "tau"),
    (lambda: certify_prototype([0, 0], ETF2, 2, 0.5), "class_sizes"),
    (lambda: certify_prototype([2, 2], simplex.etf_gram(3), 2, 0.5), "prototype_gram"),
    (lambda: certify_prototype([2, 2], 2 * ETF2, 2, 0.5), "prototype_gram"),
    (lambda: certify_prototype([2, 2], np.array([[1.0, 2.0], [2.0, 1.0]]), 2, 0.5), "prototype_gram"),
    (lambda: certify_prototype([2, 2], ETF2, -1, 0.5), "n_proto"),
    (lambda: certify_prototype([2, 2], ETF2, 2, 0.5, "prototypes"), "anchors"),
    (lambda: certify_prototype([1, 0], ETF2, 0, 0.5), "no anchor"),
    (lambda: embeddings_from_gram(np.ones((3, 3)), dim=0), "dim"),
    (lambda: nearest_gram(np.ones((2, 3))), "square"),
]


@pytest.mark.parametrize("call, message", BAD_ARGUMENTS, ids=[m for _, m in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- recovering embeddings ---


def test_embeddings_from_gram_in_the_gram_rank_and_not_below():
    z = simplex.etf(4, 3)
    G = z @ z.T
    for dim in (3, 5):
        x = embeddings_from_gram(G, dim)
        assert x.shape == (4, dim)
        np.testing.assert_allclose(x @ x.T, G, atol=1e-12)
    with pytest.raises(ValueError, match="dim >= 3"):
        embeddings_from_gram(G, 2)


def test_nearest_gram_repairs_small_violations_and_refuses_non_grams():
    G = simplex.etf_gram(4)  # singular: the noise pushes an eigenvalue below 0
    noisy = G + 1e-9 * np.diag([1.0, -1.0, 0.5, 0.0]) - 1e-9 * np.ones((4, 4))
    assert np.linalg.eigvalsh(noisy)[0] < 0
    repaired = nearest_gram(noisy)
    assert np.abs(np.diag(repaired) - 1).max() < GRAM and np.linalg.eigvalsh(repaired)[0] > -GRAM
    assert np.abs(repaired - G).max() < 1e-8
    with pytest.raises(ValueError, match="too far"):
        nearest_gram(-np.eye(3))


def test_embeddings_with_wrong_prototypes_are_refused():
    cert = _prototype((4, 2, 1), "etf3", 5, 0.3, "all")
    with pytest.raises(ValueError, match="prototypes' Gram"):
        cert.embeddings_with_prototypes(simplex.orthogonal_frame(3, 3))
    with pytest.raises(ValueError, match="shape"):
        cert.embeddings_with_prototypes(simplex.etf(4, 3))
    with pytest.raises(ValueError, match="no prototype rows"):
        _supcon((5, 2, 1), 0.3).embeddings_with_prototypes(simplex.etf(3, 3))
