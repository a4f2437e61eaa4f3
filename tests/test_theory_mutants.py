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

from theory import prototypes


def _problem(sizes, seed, d=4):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    z = rng.standard_normal((len(labels), d))
    w = rng.standard_normal((len(sizes), d))
    return z / np.linalg.norm(z, axis=1, keepdims=True), labels, w / np.linalg.norm(w, axis=1, keepdims=True)


def _first_order_data_by_hand(z, labels, w, tau) -> float:
    """mean_a [(q_a u_a - S_a)/tau + E_a/Z_a] (docs/prototypes.md, result 1), one anchor at a time."""
    terms = []
    for a in range(len(labels)):
        same = [b for b in range(len(labels)) if b != a and labels[b] == labels[a]]
        u = float(z[a] @ w[labels[a]])
        s = sum(float(z[a] @ z[b]) for b in same)
        e = sum(math.exp(float(z[a] @ z[b]) / tau) for b in range(len(labels)) if b != a)
        big_z = sum(math.exp(float(z[a] @ w_c) / tau) for w_c in w)
        terms.append((len(same) * u - s) / tau + e / big_z)
    return sum(terms) / len(terms)


def test_first_order_coefficient_defaults_to_the_data_anchors():
    """Kills x_first_order_coefficient__mutmut_1, _2 (default anchors "data" -> "XXdataXX" / "DATA")."""
    z, labels, w = _problem((3, 2, 1), seed=11)
    expected = _first_order_data_by_hand(z, labels, w, 0.8)
    assert prototypes.first_order_coefficient(z, labels, w, 0.8) == pytest.approx(expected, rel=1e-12)


def test_first_order_coefficient_names_the_anchors_argument_in_its_error():
    """Kills x_first_order_coefficient__mutmut_12 (require_choice(None, ...): the message says "None must be")."""
    z, labels, w = _problem((2, 2), seed=12)
    with pytest.raises(ValueError, match=r"^anchors must be one of 'data', 'all', got 'some'$"):
        prototypes.first_order_coefficient(z, labels, w, 0.5, "some")


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
