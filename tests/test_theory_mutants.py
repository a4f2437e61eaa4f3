"""Kills of mutmut's survivors in theory/prototypes.py and theory/ssem.py (benchmarks/mutation.sh; docs/mutation.md).

Each expected value comes from a route other than the function under test: a hand computation written out
here, or the naive oracle with the prototype copies materialised (tests/naive.py).
"""

from __future__ import annotations

import math
import warnings

import naive
import numpy as np
import pytest

from theory import prototypes, ssem


def _problem(sizes, seed, d=4):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    z = rng.standard_normal((len(labels), d))
    w = rng.standard_normal((len(sizes), d))
    return z / np.linalg.norm(z, axis=1, keepdims=True), labels, w / np.linalg.norm(w, axis=1, keepdims=True)


def _dot(u, v) -> float:
    return sum(a * b for a, b in zip(u, v))


def _terms_by_hand(z, labels, w, tau) -> dict:
    """The pieces of results 1-3 of docs/prototypes.md, one anchor and one class at a time."""
    z, w = np.asarray(z).tolist(), np.asarray(w).tolist()  # Python numbers: exact integer products
    labels = [int(y) for y in labels]
    n, m = len(labels), len(w)
    drift, e_over_z, ce = [], [], []
    for a in range(n):
        same = [b for b in range(n) if b != a and labels[b] == labels[a]]
        u = _dot(z[a], w[labels[a]])
        e = sum(math.exp(_dot(z[a], z[b]) / tau) for b in range(n) if b != a)
        big_z = sum(math.exp(_dot(z[a], w_c) / tau) for w_c in w)
        drift.append(len(same) * u - sum(_dot(z[a], z[b]) for b in same))
        e_over_z.append(e / big_z)
        ce.append(-u / tau + math.log(big_z))
    k, k1, b = [], [], []
    for c in range(m):
        members = [i for i in range(n) if labels[i] == c]
        g_cc = _dot(w[c], w[c])
        big_z = sum(math.exp(_dot(w[c], w_k) / tau) for w_k in w)
        f = sum(math.exp(_dot(w[c], z[i]) / tau) for i in range(n))
        proto_drift = len(members) * g_cc - sum(_dot(w[c], z[i]) for i in members)
        k.append(-g_cc / tau + math.log(big_z))
        k1.append(proto_drift / tau + (f - math.exp(g_cc / tau)) / big_z)
        b.append(abs(proto_drift) / tau + max(f / big_z, math.exp(g_cc / tau) / (big_z - math.exp(g_cc / tau))))
    return {"n": n, "m": m, "drift": drift, "e_over_z": e_over_z, "ce": ce, "k": k, "k1": k1, "b": b}


def _first_order_data_by_hand(z, labels, w, tau) -> float:
    """mean_a [(q_a u_a - S_a)/tau + E_a/Z_a] (docs/prototypes.md, result 1)."""
    t = _terms_by_hand(z, labels, w, tau)
    return sum(d / tau + e for d, e in zip(t["drift"], t["e_over_z"])) / t["n"]


def test_first_order_coefficient_defaults_to_the_data_anchors():
    """Kills x_first_order_coefficient__mutmut_1, _2 (default anchors "data" -> "XXdataXX" / "DATA")."""
    z, labels, w = _problem((3, 2, 1), seed=11)
    expected = _first_order_data_by_hand(z, labels, w, 0.8)
    assert prototypes.first_order_coefficient(z, labels, w, 0.8) == pytest.approx(expected, rel=1e-12)


def test_prototype_anchor_of_an_absent_class_with_one_copy_is_skipped_without_a_warning():
    """Kills x__prototype_anchor_losses__mutmut_56, _58 (invalid="ignore" dropped around count = n_c + n_w - 1).

    Class 1 has no batch sample and n_w = 1: its prototype anchor has an empty P (count 0, 0/0 in the
    evaluator), is left out of the mean, and no floating-point warning may escape. The value is the naive
    loss with the copy written out.
    """
    z, labels, w = _problem((3, 0, 2), seed=13)
    expected = naive.prototype_supcon_loss(z.tolist(), labels.tolist(), w.tolist(), 1, 0.7, "all")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        actual = prototypes.prototype_loss_from_counts(z, labels, w, 1, 0.7, "all")
    assert actual == pytest.approx(expected, rel=1e-12)


def test_first_order_coefficient_with_all_anchors_is_its_stated_formula():
    """[N (mean CE - Kbar) + sum_c k1_c] / m, k1_c = (n_c g_cc - S_c)/tau + (F_c - e^{g_cc/tau})/Z_c (result 3).

    Prototypes of different norms and an absent class, so that g_cc != 1 and n_c = 0 both enter.
    """
    z, labels, w = _problem((3, 0, 2), seed=14)
    w = w * np.array([[0.5], [1.0], [1.5]])
    tau = 0.7
    t = _terms_by_hand(z, labels, w, tau)
    kbar = sum(t["k"]) / t["m"]
    expected = (t["n"] * (sum(t["ce"]) / t["n"] - kbar) + sum(t["k1"])) / t["m"]
    assert prototypes.first_order_coefficient(z, labels, w, tau, "all") == pytest.approx(expected, rel=1e-12)


def test_gap_bound_constant_is_its_stated_formula():
    """ "data" (the default): C = mean_a [|q_a u_a - S_a|/tau + E_a/Z_a]; "all":
    C = [N |mean CE - Kbar| + N C_data + sum_c (|n_c g_cc - S_c|/tau + b_c)] / m,
    b_c = max(F_c/Z_c, e^{g_cc/tau}/(Z_c - e^{g_cc/tau})). Kills x_gap_bound_constant__mutmut_32 (timed out)."""
    z, labels, w = _problem((3, 0, 2), seed=15)
    w = w * np.array([[0.5], [1.0], [1.5]])
    tau = 0.6
    t = _terms_by_hand(z, labels, w, tau)
    c_data = sum(abs(d) / tau + e for d, e in zip(t["drift"], t["e_over_z"])) / t["n"]
    kbar = sum(t["k"]) / t["m"]
    c_all = (t["n"] * abs(sum(t["ce"]) / t["n"] - kbar) + t["n"] * c_data + sum(t["b"])) / t["m"]
    assert prototypes.gap_bound_constant(z, labels, w, tau) == pytest.approx(c_data, rel=1e-12)
    assert prototypes.gap_bound_constant(z, labels, w, tau, "all") == pytest.approx(c_all, rel=1e-12)


@pytest.mark.parametrize(
    "function",
    [
        prototypes.first_order_coefficient,
        prototypes.gap_bound_constant,
        prototypes.limit_value,
        prototypes.extra_term,
        prototypes.prototype_loss_from_counts,
        prototypes.gap,
    ],
)
def test_every_anchors_check_names_the_argument(function):
    """Kills the message mutants of require_choice("anchors", ...) (None, "XXanchorsXX", "ANCHORS")."""
    z, labels, w = _problem((2, 2), seed=16)
    args = (
        (z, labels, w, 2, 0.5)
        if function in (prototypes.prototype_loss_from_counts, prototypes.gap)
        else (z, labels, w, 0.5)
    )
    with pytest.raises(ValueError, match=r"^anchors must be one of 'data', 'all', got 'some'$"):
        function(*args, anchors="some")


# ---------------------------------------------------------------------------
# Argument checks of theory.prototypes: whole messages and the boundaries of what is accepted
# ---------------------------------------------------------------------------

Z3, LABELS3, W3 = _problem((2, 2, 1), seed=17, d=5)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: prototypes.mean_cross_entropy(Z3, LABELS3, W3, [0.5, 1.0]),
            r"^tau must be a scalar here, got an array of shape \(2,\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3, LABELS3, W3[:1], 0.5),
            r"^prototypes must have shape \(m, d\) with m >= 2, got shape \(1, 5\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3, LABELS3, W3[0], 0.5),
            r"^prototypes must have shape \(m, d\) with m >= 2, got shape \(5,\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3[:, :0], LABELS3, W3[:, :0], 0.5),
            r"^prototypes must have shape \(m, d\) with m >= 2, got shape \(3, 0\)$",
        ),
        (
            lambda: prototypes.prototype_self_cross_entropy(np.where(np.eye(3, 5) > 0, np.inf, W3), 0.5),
            r"^prototypes must be finite, got NaN or inf entries$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3[:, :3], LABELS3, W3, 0.5),
            r"^z must have shape \(N, d\) with N >= 1 and d = 5, got shape \(5, 3\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3[0], LABELS3[:1], W3, 0.5),
            r"^z must have shape \(N, d\) with N >= 1 and d = 5, got shape \(5,\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3[:0], LABELS3[:0], W3, 0.5),
            r"^z must have shape \(N, d\) with N >= 1 and d = 5, got shape \(0, 5\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(np.where(np.eye(5) > 0, np.nan, Z3), LABELS3, W3, 0.5),
            r"^z must be finite, got NaN or inf entries$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3, LABELS3.astype(float), W3, 0.5),
            r"^labels must be an integer array of shape \(5,\), got float64 \(5,\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3, LABELS3[:4], W3, 0.5),
            r"^labels must be an integer array of shape \(5,\), got int64 \(4,\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3[:4], LABELS3, W3, 0.5),  # N = 4 samples, d = 5
            r"^labels must be an integer array of shape \(4,\), got int64 \(5,\)$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3, LABELS3 + 1, W3, 0.5),
            r"^labels must lie in \[0, 3\), got values in \[1, 3\]$",
        ),
        (
            lambda: prototypes.mean_cross_entropy(Z3, LABELS3 - 1, W3, 0.5),
            r"^labels must lie in \[0, 3\), got values in \[-1, 1\]$",
        ),
    ],
)
def test_input_errors_are_whole_one_line_messages(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_smallest_accepted_inputs():
    """m = 2 prototypes in d = 1, a batch of one sample, labels 0 and m - 1: CE written out by hand."""
    w = np.array([[1.0], [-1.0]])
    for label, z in ((0, 0.6), (1, -0.3)):
        expected = -z * w[label, 0] / 0.5 + math.log(math.exp(z / 0.5) + math.exp(-z / 0.5))
        assert prototypes.mean_cross_entropy([[z]], [label], w, 0.5) == pytest.approx(expected, rel=1e-12)


def test_integer_prototypes_are_read_as_floats():
    """Kills x__prototypes__mutmut_3, _5 (prototypes read without dtype=float).

    An int8 frame 12 I: the Gram diagonal is 144, past int8's 127. K_c = -144/tau + log(e^{144/tau} + 2).
    """
    w = 12 * np.eye(3, dtype=np.int8)
    expected = -144.0 + math.log(math.exp(144.0) + 2.0)
    np.testing.assert_allclose(prototypes.prototype_self_cross_entropy(w, 1.0), expected, rtol=0, atol=1e-12)


def test_integer_embeddings_are_read_as_floats():
    """Kills x__inputs__mutmut_5, _7 (z read without dtype=float): int8 rows of norm 12 have <z_a, z_b> = 144."""
    z = 12 * np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.int8)
    labels = np.array([0, 0, 1, 1])
    w = np.eye(2, 3)
    expected = _first_order_data_by_hand(z, labels, w, 10.0)
    assert prototypes.first_order_coefficient(z, labels, w, 10.0) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------
# theory.ssem
# ---------------------------------------------------------------------------


def test_pair_counts_beyond_int64_keep_float_arithmetic():
    """Kills x__mean_over__mutmut_3, _5 (the pair counts read without dtype=float: an object array past int64).

    Claim B4 and the closed form: beta* does not depend on p, and L(beta) depends on p only through log p.
    """
    alpha, huge = np.array([0.3, 0.6]), 2**63
    small = ssem.restricted_loss(0.5, alpha, 0.5, 3, 5, 2)
    big = ssem.restricted_loss(0.5, alpha, 0.5, 3, 5, huge)
    assert big.dtype == np.float64
    np.testing.assert_allclose(big - small, math.log(huge / 2), rtol=1e-12)
    beta = ssem.optimal_beta(alpha, 0.5, 3, 5, huge)
    assert beta.dtype == np.float64
    np.testing.assert_allclose(beta, ssem.optimal_beta(alpha, 0.5, 3, 5, 2), rtol=0, atol=1e-12)


def test_scalar_arguments_give_python_floats():
    """Kills x_optimal_beta__mutmut_85, _87, _88 and x_alpha_star__mutmut_56, _58, _59 (a 0-d array, not a scalar).

    alpha* by hand: [1 + (mn-1) r] / [n (1 + (m-1) r)], r = exp(-m/((m-1) tau)).
    """
    m, n, tau = 3, 4, 0.5
    r = math.exp(-m / ((m - 1) * tau))
    value = ssem.alpha_star(tau, m, n)
    assert isinstance(value, float) and not isinstance(value, np.ndarray)
    assert value == pytest.approx((1 + (m * n - 1) * r) / (n * (1 + (m - 1) * r)), rel=1e-12)
    beta = ssem.optimal_beta(0.05, tau, m, n)  # alpha below 1/n: collapse
    assert isinstance(beta, float) and not isinstance(beta, np.ndarray) and beta == 1.0


@pytest.mark.parametrize("n_per_class", [2, 4])
def test_optimal_beta_at_alpha_0_and_1_raises_no_floating_point_warning(n_per_class):
    """Kills x__slope_sign__mutmut_29 (divide="ignore" dropped): at alpha = 0 the positives' slope c equals the
    same-class slope and at alpha = 1 it is 0, so one log in the slope's sign is log 0 = -inf by design.

    alpha = 0 collapses (beta* = 1); at alpha = 1, W* = m(n-1)/(mn-1) (docs/ssem.md#within-class-variance),
    so beta* = (m-1)/(mn-1).
    """
    m = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        beta = ssem.optimal_beta(np.array([0.0, 1.0]), 0.5, m, n_per_class)
    np.testing.assert_allclose(beta, [1.0, (m - 1) / (m * n_per_class - 1)], rtol=0, atol=1e-12)


def test_gram_entries_of_an_unsigned_integer_beta():
    """Kills x_ssem_gram_entries__mutmut_8, _10 (beta read without dtype=float: -beta wraps for uint8)."""
    s_w, s_b = ssem.ssem_gram_entries(np.array([0, 1], dtype=np.uint8), 3, 4)
    np.testing.assert_allclose(s_w, [-1 / 3, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(s_b, [0.0, -0.5], rtol=0, atol=1e-15)
