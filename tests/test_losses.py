"""Tests of simulate.losses: naive oracles, reductions, batching, numerics, errors (docs/losses.md)."""

from __future__ import annotations

import math
import re

import naive
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import BY_DTYPE

from simulate.losses import (
    balanced_layout,
    combined_loss,
    combined_loss_terms,
    fixed_classifier_ce,
    prototype_supcon_loss,
    require_embeddings,
    require_ids,
    supcon_loss,
    supcon_loss_per_anchor,
)
from theory import simplex, ssem

#: Agreement tolerances per dtype (relative and absolute).
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def unit(shape, seed, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(shape, generator=generator, dtype=torch.float64), dim=-1).to(dtype)


def close(actual, expected, dtype=torch.float64) -> None:
    actual, expected = torch.as_tensor(actual, dtype=dtype), torch.as_tensor(expected, dtype=dtype)
    torch.testing.assert_close(actual, expected, **BY_DTYPE[dtype])


def layout_from_sizes(views_per_instance: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and instance ids from views_per_instance[class][instance] = number of views."""
    labels, instances, instance_id = [], [], 0
    for c, sizes in enumerate(views_per_instance):
        for views in sizes:
            labels += [c] * views
            instances += [instance_id] * views
            instance_id += 1
    return torch.tensor(labels), torch.tensor(instances)


# ---------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------


def test_balanced_layout_matches_reshape():
    m, n, p = 3, 4, 2
    labels, instances = balanced_layout(m, n, p)
    grid_class = torch.arange(m)[:, None, None].expand(m, n, p).reshape(-1)
    grid_instance = (torch.arange(m)[:, None, None] * n + torch.arange(n)[None, :, None]).expand(m, n, p).reshape(-1)
    assert torch.equal(labels, grid_class) and torch.equal(instances, grid_instance)
    assert labels.dtype == instances.dtype == torch.int64


# ---------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------

LAYOUTS = {
    "balanced-p1": [[1, 1, 1], [1, 1, 1]],
    "balanced-p2": [[2, 2], [2, 2], [2, 2]],
    "balanced-p3": [[3, 3], [3, 3]],
    "imbalanced-instances": [[2, 2, 2, 2], [2, 2], [2, 2, 2]],
    "uneven-views": [[2, 3], [4, 2, 2], [3]],  # a class with a single instance: no supervised positives
}


# Variant "supcon" needs two views per instance: one-view layouts run with "instance" only
# (the refusal is in test_errors).
COMBINED_CASES = [
    (variant, layout)
    for layout, sizes in LAYOUTS.items()
    for variant in ("instance", "supcon")
    if variant == "instance" or min(min(class_sizes) for class_sizes in sizes) >= 2
]


@pytest.mark.parametrize(("variant", "layout"), COMBINED_CASES)
@pytest.mark.parametrize("tau", [0.1, 0.7, 3.0])
def test_combined_loss_matches_naive(variant, layout, tau):
    labels, instances = layout_from_sizes(LAYOUTS[layout])
    z = unit((len(labels), 5), seed=len(labels) + int(10 * tau))
    for alpha in (0.0, 0.37, 1.0):
        expected = naive.combined_loss(z.tolist(), labels.tolist(), instances.tolist(), alpha, tau, variant)
        close(combined_loss(z, labels, instances, alpha, tau, variant), expected)


@pytest.mark.parametrize("variant", ["instance", "supcon"])
def test_combined_loss_terms_are_the_alpha_endpoints(variant):
    labels, instances = balanced_layout(3, 2, 2)
    z = unit((12, 4), seed=3)
    sup, own = combined_loss_terms(z, labels, instances, 0.4, variant)
    close(combined_loss(z, labels, instances, 0.0, 0.4, variant), sup)
    close(combined_loss(z, labels, instances, 1.0, 0.4, variant), own)


@pytest.mark.parametrize("variant", ["instance", "supcon"])
@pytest.mark.parametrize("beta", [0.0, 0.45, 1.0])
def test_combined_loss_on_ssem_equals_restricted_loss(variant, beta):
    """Second route: theory.ssem's restricted loss, assembled from pair counts, on an SSEM construction."""
    m, n, p, dim = 3, 3, 2, 10
    labels, instances = balanced_layout(m, n, p)
    z = torch.from_numpy(ssem.embeddings(m, n, p, dim, beta, seed=7)).reshape(m * n * p, dim)
    for alpha, tau in [(0.2, 0.3), (0.8, 2.0)]:
        expected = ssem.restricted_loss(beta, alpha, tau, m, n, p, variant)
        close(combined_loss(z, labels, instances, alpha, tau, variant), expected)


SUPCON_LABELS = {
    "balanced": [0, 0, 1, 1, 2, 2],
    "imbalanced": [0, 0, 0, 0, 0, 1, 1, 2, 2, 2],
    "singleton-class": [0, 0, 0, 1, 2, 2],  # class 1 has one sample: empty P(a)
    "two-singletons": [3, 0, 1, 1, 2],
}


@pytest.mark.parametrize("case", list(SUPCON_LABELS))
@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_supcon_loss_matches_naive(case, tau):
    labels = torch.tensor(SUPCON_LABELS[case])
    z = unit((len(labels), 4), seed=len(labels))
    expected = naive.supcon_on_set(z.tolist(), labels.tolist(), range(len(labels)), tau)
    close(supcon_loss(z, labels, tau), expected)


PROTO_LABELS = {
    "balanced": [0, 0, 1, 1, 2, 2],
    "imbalanced": [0, 0, 0, 0, 1, 1, 2],
    "absent-class": [0, 0, 0, 1, 1, 1],  # class 2 only through its prototype
}


@pytest.mark.parametrize("anchors", ["data", "all"])
@pytest.mark.parametrize("n_proto", [0, 1, 3])
@pytest.mark.parametrize("case", list(PROTO_LABELS))
def test_prototype_supcon_matches_naive(anchors, n_proto, case):
    labels = torch.tensor(PROTO_LABELS[case])
    z, prototypes = unit((len(labels), 4), seed=11), unit((3, 4), seed=12)
    tau = 0.5
    expected = naive.prototype_supcon_loss(z.tolist(), labels.tolist(), prototypes.tolist(), n_proto, tau, anchors)
    close(prototype_supcon_loss(z, labels, prototypes, n_proto, tau, anchors), expected)


@pytest.mark.parametrize("n_proto", [1, 2, 5])
def test_prototype_supcon_equals_supcon_on_explicit_copies(n_proto):
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 3])
    z, prototypes = unit((7, 6), seed=21), unit((4, 6), seed=22)
    copies = prototypes.repeat_interleave(n_proto, dim=0)
    union = torch.cat([z, copies])
    union_labels = torch.cat([labels, torch.arange(4).repeat_interleave(n_proto)])
    tau = 0.3
    close(prototype_supcon_loss(z, labels, prototypes, n_proto, tau, "all"), supcon_loss(union, union_labels, tau))
    per_anchor, valid = supcon_loss_per_anchor(union, union_labels, tau)
    data = torch.arange(len(union)) < len(z)
    close(prototype_supcon_loss(z, labels, prototypes, n_proto, tau, "data"), per_anchor[data & valid].mean())


def test_prototype_supcon_with_zero_copies_is_supcon_by_the_oracle():
    """n_w = 0 against the naive loop (not against supcon_loss, which prototype_supcon_loss calls at n_w = 0)."""
    labels = torch.tensor([0, 0, 1, 1, 1])
    z, prototypes = unit((5, 3), seed=5), unit((2, 3), seed=6)
    expected = naive.supcon_on_set(z.tolist(), labels.tolist(), range(len(labels)), 0.2)
    for anchors in ("data", "all"):
        close(prototype_supcon_loss(z, labels, prototypes, 0, 0.2, anchors), expected)


@pytest.mark.parametrize("anchors", ["data", "all"])
@pytest.mark.parametrize("n_proto", [2, 7])
def test_prototype_copies_count_n_w_times_in_positives(anchors, n_proto):
    """Against the oracle with the copies written out, at tau where the positive weighting moves the loss."""
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    z, prototypes = unit((6, 5), seed=31), unit((3, 5), seed=32)
    tau = 0.1
    expected = naive.prototype_supcon_loss(z.tolist(), labels.tolist(), prototypes.tolist(), n_proto, tau, anchors)
    close(prototype_supcon_loss(z, labels, prototypes, n_proto, tau, anchors), expected)


def test_prototype_supcon_tends_to_ce_plus_log_copies():
    """Prototype limit, data anchors: loss - log n_w -> CE, error O(1/n_w); n_w = 1e12 is never materialised."""
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    z, prototypes = unit((6, 5), seed=31), torch.from_numpy(simplex.etf(3, 5, seed=1))
    ce = fixed_classifier_ce(z, labels, prototypes, 0.5)
    errors = [abs(prototype_supcon_loss(z, labels, prototypes, k, 0.5) - math.log(k) - ce) for k in (10**4, 10**5)]
    assert 0.08 < errors[1] / errors[0] < 0.12  # O(1/n_w): tenfold more copies, tenfold smaller error
    huge = prototype_supcon_loss(z, labels, prototypes, 10**12, 0.5)
    assert abs(huge - math.log(10**12) - ce) < 1e-6


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_fixed_classifier_ce_matches_naive(tau):
    labels = torch.tensor([0, 2, 2, 1, 0, 3])
    h, classifier = unit((6, 4), seed=41), unit((4, 4), seed=42)
    expected = naive.fixed_classifier_ce(h.tolist(), labels.tolist(), classifier.tolist(), tau)
    close(fixed_classifier_ce(h, labels, classifier, tau), expected)


def test_fixed_vectors_get_no_gradient():
    labels = torch.tensor([0, 0, 1, 1])
    z = unit((4, 3), seed=1).requires_grad_()
    prototypes = unit((2, 3), seed=2).requires_grad_()
    prototype_loss = prototype_supcon_loss(z, labels, prototypes, 3, 0.5, "all")
    (prototype_loss + fixed_classifier_ce(z, labels, prototypes, 0.5)).backward()
    assert prototypes.grad is None and z.grad is not None and bool(z.grad.abs().sum() > 0)


# ---------------------------------------------------------------------------
# Batching, precision, numerics
# ---------------------------------------------------------------------------


def _all_losses(z, alpha, tau, prototypes=None):
    """Every loss on a (..., 12, 4) batch with a fixed (3 classes, 2 instances, 2 views) layout."""
    labels, instances = balanced_layout(3, 2, 2)
    prototypes = unit((3, 4), seed=99, dtype=z.dtype) if prototypes is None else prototypes
    return {
        "instance": combined_loss(z, labels, instances, alpha, tau, "instance"),
        "supcon-variant": combined_loss(z, labels, instances, alpha, tau, "supcon"),
        "supcon": supcon_loss(z, labels, tau),
        "proto-data": prototype_supcon_loss(z, labels, prototypes, 4, tau, "data"),
        "proto-all": prototype_supcon_loss(z, labels, prototypes, 4, tau, "all"),
        "ce": fixed_classifier_ce(z, labels, prototypes, tau),
    }


def test_leading_batch_equals_separate_calls():
    z = unit((2, 3, 12, 4), seed=51)
    alpha = torch.tensor([[0.1, 0.5, 0.9], [0.0, 1.0, 0.3]], dtype=torch.float64)
    tau = torch.tensor([0.2, 1.0, 4.0], dtype=torch.float64)  # broadcasts along the first batch dim
    batched = _all_losses(z, alpha, tau)
    for i in range(2):
        for j in range(3):
            single = _all_losses(z[i, j], float(alpha[i, j]), float(tau[j]))
            for name, value in single.items():
                assert batched[name].shape == (2, 3)
                close(batched[name][i, j], value)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [1e-3, 1.0, 1e3])
def test_finite_values_and_gradients(dtype, tau):
    z = unit((12, 4), seed=61, dtype=dtype).requires_grad_()
    for name, value in _all_losses(z, 0.5, tau).items():
        (gradient,) = torch.autograd.grad(value, z)
        assert value.dtype == dtype, name
        assert bool(torch.isfinite(value)) and bool(torch.isfinite(gradient).all()), (name, tau)


def test_collapsed_embeddings_at_tiny_tau_stay_finite():
    """All views identical: every logit equal, the hardest case for cancellation."""
    labels, instances = balanced_layout(2, 2, 2)
    z = unit((1, 3), seed=1).expand(8, 3).clone().requires_grad_()
    for variant in ("instance", "supcon"):
        value = combined_loss(z, labels, instances, 0.5, 1e-3, variant)
        (gradient,) = torch.autograd.grad(value, z)
        assert bool(torch.isfinite(value)) and bool(torch.isfinite(gradient).all())


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast(half):
    z, prototypes = unit((12, 4), seed=71, dtype=half), unit((3, 4), seed=72, dtype=half)
    reference = _all_losses(z.float(), 0.5, 0.5, prototypes.float())
    for name, value in _all_losses(z, 0.5, 0.5, prototypes).items():
        assert value.dtype == torch.float32, name
        close(value, reference[name], torch.float32)


def test_autocast_does_not_lower_precision():
    z = unit((12, 4), seed=72, dtype=torch.float32)
    reference = _all_losses(z, 0.5, 0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = _all_losses(z, 0.5, 0.05)
    for name, value in inside.items():
        assert value.dtype == torch.float32, name
        close(value, reference[name], torch.float32)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), variant=st.sampled_from(["instance", "supcon"]))
def test_losses_invariant_under_rotation_and_relabelled_order(seed, variant):
    """Rotating all vectors (prototypes too) and permuting samples with their ids leaves every loss unchanged."""
    generator = torch.Generator().manual_seed(seed)
    labels, instances = balanced_layout(3, 2, 2)
    z, prototypes = unit((12, 5), seed=seed), unit((3, 5), seed=seed + 1)
    rotation = torch.from_numpy(simplex.random_rotation(5, seed))
    order = torch.randperm(12, generator=generator)
    zr, pr = (z @ rotation.T)[order], prototypes @ rotation.T
    lr, ir = labels[order], instances[order]
    close(combined_loss(zr, lr, ir, 0.3, 0.4, variant), combined_loss(z, labels, instances, 0.3, 0.4, variant))
    close(supcon_loss(zr, lr, 0.4), supcon_loss(z, labels, 0.4))
    for anchors in ("data", "all"):
        expected = prototype_supcon_loss(z, labels, prototypes, 2, 0.4, anchors)
        close(prototype_supcon_loss(zr, lr, pr, 2, 0.4, anchors), expected)
    close(fixed_classifier_ce(zr, lr, pr, 0.4), fixed_classifier_ce(z, labels, prototypes, 0.4))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

LABELS, INSTANCES = balanced_layout(2, 2, 2)
Z = unit((8, 3), seed=0)
W = unit((2, 3), seed=1)

BAD_CALLS = {
    "tau-zero": (lambda: combined_loss(Z, LABELS, INSTANCES, 0.5, 0.0), "tau"),
    "tau-nan": (lambda: supcon_loss(Z, LABELS, float("nan")), "tau"),
    "tau-tensor-negative": (lambda: combined_loss(Z, LABELS, INSTANCES, 0.5, torch.tensor(-1.0)), "tau"),
    "tau-shape": (lambda: combined_loss(Z, LABELS, INSTANCES, 0.5, torch.ones(3)), "tau"),
    "alpha-above-one": (lambda: combined_loss(Z, LABELS, INSTANCES, 1.5, 1.0), "alpha"),
    "alpha-tensor": (
        lambda: combined_loss(Z[None].expand(2, 8, 3), LABELS, INSTANCES, torch.tensor([0.5, -0.1]), 1.0),
        "alpha",
    ),
    "variant": (lambda: combined_loss(Z, LABELS, INSTANCES, 0.5, 1.0, "simclr"), "variant"),
    "supcon-one-view": (lambda: combined_loss(Z, LABELS, torch.arange(8), 0.5, 1.0, "supcon"), "n_views"),
    "instances-span-classes": (lambda: combined_loss(Z, LABELS, torch.zeros_like(LABELS), 0.5, 1.0), "instances"),
    "no-supervised-pair": (lambda: combined_loss(Z, torch.arange(8), torch.arange(8), 0.5, 1.0), "L_sup"),
    "labels-shape": (lambda: supcon_loss(Z, LABELS[:-1], 1.0), "labels"),
    "labels-float": (lambda: supcon_loss(Z, LABELS.double(), 1.0), "labels"),
    "z-vector": (lambda: supcon_loss(Z[0], LABELS, 1.0), "z"),
    "z-integer": (lambda: supcon_loss(LABELS[:, None].expand(8, 3), LABELS, 1.0), "z"),
    "no-positive": (lambda: supcon_loss(Z, torch.arange(8), 1.0), "labels"),
    "n_proto-negative": (lambda: prototype_supcon_loss(Z, LABELS, W, -1, 1.0), "n_proto"),
    "n_proto-float": (lambda: prototype_supcon_loss(Z, LABELS, W, 2.0, 1.0), "n_proto"),
    "anchors": (lambda: prototype_supcon_loss(Z, LABELS, W, 2, 1.0, "prototypes"), "anchors"),
    "prototypes-dim": (lambda: prototype_supcon_loss(Z, LABELS, unit((2, 4), 1), 2, 1.0), "prototypes"),
    "labels-beyond-prototypes": (lambda: prototype_supcon_loss(Z, LABELS + 1, W, 2, 1.0), "labels"),
    "classifier-dim": (lambda: fixed_classifier_ce(Z, LABELS, unit((2, 5), 1), 1.0), "classifier"),
    "ce-tau": (lambda: fixed_classifier_ce(Z, LABELS, W, -2.0), "tau"),
    "layout": (lambda: balanced_layout(2, 0, 2), "n_per_class"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_errors(case):
    call, name = BAD_CALLS[case]
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize(
    "name, values, message",
    [
        ("alpha", [0.0, 1.5], "alpha must be [0, 1], got 1.5"),
        ("alpha", [-0.25, 1.0], "alpha must be [0, 1], got -0.25"),
        ("tau", [1.0, 0.0], "tau must be finite and > 0, got 0.0"),
        ("tau", [math.inf, 1.0], "tau must be finite and > 0, got inf"),
        ("tau", [math.nan, 1.0], "tau must be finite and > 0, got nan"),
    ],
)
def test_tensor_alpha_and_tau_are_checked_per_configuration(name, values, message):
    """Per-configuration alpha and tau (tensors) are checked like scalars, each named with its range and the
    first bad value; alpha 0 and 1 and any tau > 0 are accepted."""
    parameters = {"alpha": torch.tensor([0.0, 1.0]), "tau": torch.tensor([1e-3, 2.0])}
    z = unit((2, 8, 3), seed=4)
    assert combined_loss(z, LABELS, INSTANCES, **parameters).isfinite().all()
    parameters[name] = torch.tensor(values)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        combined_loss(z, LABELS, INSTANCES, **parameters)


@pytest.mark.parametrize(
    "z, min_samples, message",
    [
        ([[1.0, 0.0]], 1, "z must be a floating tensor of shape (..., N, d), got list"),
        (torch.zeros(2, 3, dtype=torch.long), 1, "z must be a floating tensor of shape (..., N, d), got (2, 3)"),
        (torch.zeros(3), 1, "z must be a floating tensor of shape (..., N, d), got (3,)"),
        (torch.zeros(0, 3), 1, "z must have N >= 1 samples and d >= 1, got shape (0, 3)"),
        (torch.zeros(2, 4, 0), 1, "z must have N >= 1 samples and d >= 1, got shape (2, 4, 0)"),
        (torch.zeros(1, 3), 2, "z must have N >= 2 samples and d >= 1, got shape (1, 3)"),
    ],
)
def test_embeddings_are_refused_with_their_shape_or_type(z, min_samples, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        require_embeddings("z", z, min_samples)


def test_embeddings_of_one_sample_pass_by_default_and_half_precision_is_upcast():
    assert require_embeddings("z", torch.zeros(1, 3, dtype=torch.float64)).shape == (1, 3)
    assert require_embeddings("z", torch.zeros(2, 2, 3), min_samples=2).shape == (2, 2, 3)
    assert require_embeddings("z", torch.zeros(2, 3, dtype=torch.float16)).dtype == torch.float32


@pytest.mark.parametrize("ids", [torch.zeros(4, dtype=torch.bool), torch.zeros(4), torch.zeros(4, dtype=torch.cfloat)])
def test_ids_must_be_integers(ids):
    with pytest.raises(ValueError, match=r"^labels must be an integer tensor of shape \(N,\) = \(4,\), got tensor\("):
        require_ids("labels", ids, 4, None)


def test_ids_come_back_as_long():
    ids = require_ids("labels", torch.tensor([0, 1, 1], dtype=torch.int32), 3, None)
    assert ids.dtype == torch.long and ids.tolist() == [0, 1, 1]


def test_tensor_alpha_and_tau_take_the_embeddings_dtype():
    """float64 alpha and tau do not promote a float32 loss."""
    alpha, tau = torch.tensor([0.25, 0.75], dtype=torch.float64), torch.tensor([0.5, 1.0], dtype=torch.float64)
    assert combined_loss(unit((2, 8, 3), seed=4, dtype=torch.float32), LABELS, INSTANCES, alpha, tau).dtype == (
        torch.float32
    )


def test_keyword_call():
    expected = combined_loss(Z, LABELS, INSTANCES, 0.5, 0.7)
    close(combined_loss(z=Z, labels=LABELS, instances=INSTANCES, alpha=0.5, tau=0.7), expected)


def test_numpy_scalars_are_accepted():
    expected = combined_loss(Z, LABELS, INSTANCES, 0.5, 0.7)
    close(combined_loss(Z, LABELS, INSTANCES, np.float64(0.5), np.float64(0.7)), expected)


@pytest.mark.parametrize(
    "vectors, message",
    [
        (torch.ones(4, 3, dtype=torch.long), r"^{name} must be a floating tensor of shape \(m, d\), got tensor\("),
        (torch.ones(3, dtype=torch.float64), r"^{name} must be a floating tensor of shape \(m, d\), got tensor\("),
        (torch.ones(4, 5, dtype=torch.float64), r"^{name} must have shape \(m, d\) with m >= 1, d = 3, got \(4, 5\)$"),
        (torch.ones(0, 3, dtype=torch.float64), r"^{name} must have shape \(m, d\) with m >= 1, d = 3, got \(0, 3\)$"),
        (torch.ones(2, 4, 3, dtype=torch.float64), r"^{name} leading shape \(2,\) must broadcast to \(\)$"),
    ],
)
def test_fixed_vectors_are_checked_with_their_name(vectors, message):
    """Prototypes and classifier rows: floating (m, d) with z's d and m >= 1, leading shape broadcasting to z's."""
    z = torch.nn.functional.normalize(torch.ones(6, 3, dtype=torch.float64), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=message.format(name="prototypes")):
        prototype_supcon_loss(z, labels, vectors, 2, 0.5)
    with pytest.raises(ValueError, match=message.format(name="classifier")):
        fixed_classifier_ce(z, labels, vectors, 0.5)


def test_a_single_fixed_vector_is_allowed():
    z = torch.nn.functional.normalize(torch.ones(2, 3, dtype=torch.float64), dim=-1)
    one = torch.nn.functional.normalize(torch.ones(1, 3, dtype=torch.float64), dim=-1)
    assert torch.isfinite(fixed_classifier_ce(z, torch.tensor([0, 0]), one, 0.5))


def test_batched_fixed_vectors_act_per_configuration():
    """z (B, N, d) with prototypes or classifier rows (B, m, d): each configuration with its own vectors; a
    wrong d is reported with z's d."""
    generator = torch.Generator().manual_seed(11)
    z = torch.nn.functional.normalize(torch.randn(2, 6, 3, dtype=torch.float64, generator=generator), dim=-1)
    vectors = torch.nn.functional.normalize(torch.randn(2, 3, 3, dtype=torch.float64, generator=generator), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for loss in (
        lambda x, w: prototype_supcon_loss(x, labels, w, 2, 0.5),
        lambda x, w: fixed_classifier_ce(x, labels, w, 0.5),
    ):
        batched = loss(z, vectors)
        torch.testing.assert_close(batched, torch.stack([loss(z[0], vectors[0]), loss(z[1], vectors[1])]))
    with pytest.raises(ValueError, match=r"^prototypes must have shape \(m, d\) with m >= 1, d = 3, got \(2, 4, 5\)$"):
        prototype_supcon_loss(z, labels, torch.ones(2, 4, 5, dtype=torch.float64), 2, 0.5)
    with pytest.raises(ValueError, match=r"^classifier leading shape \(3,\) must broadcast to \(2,\)$"):
        fixed_classifier_ce(z, labels, torch.ones(3, 4, 3, dtype=torch.float64), 0.5)


def test_class_ids_and_layout_sizes_are_refused_by_name():
    z = torch.nn.functional.normalize(torch.ones(4, 3, dtype=torch.float64), dim=-1)
    classifier = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^labels must be an integer tensor of shape \(N,\) = \(4,\), got tensor\("):
        fixed_classifier_ce(z, torch.tensor([0.0, 1.0, 2.0, 0.0]), classifier, 0.5)
    with pytest.raises(ValueError, match=r"^labels must have shape \(N,\) = \(4,\), got \(3,\)$"):
        prototype_supcon_loss(z, torch.tensor([0, 1, 2]), classifier, 2, 0.5)
    with pytest.raises(ValueError, match=r"^n_classes must be an integer >= 1, got 0$"):
        balanced_layout(0, 2, 2)


@pytest.mark.parametrize("sizes, message", [((1, 1, 0), "n_views"), ((1, 0, 1), "n_per_class")])
def test_layout_sizes_are_at_least_one_each(sizes, message):
    labels, instances = balanced_layout(1, 1, 1)  # one class, one instance, one view: allowed
    assert labels.tolist() == [0] and instances.tolist() == [0]
    with pytest.raises(ValueError, match=rf"^{message} must be an integer >= 1, got 0$"):
        balanced_layout(*sizes)


def test_combined_loss_with_one_supervised_positive_per_anchor_matches_naive():
    """m = 2 classes of n = 2 single-view instances: every anchor has exactly one supervised positive."""
    labels, instances = balanced_layout(2, 2, 1)
    z = torch.nn.functional.normalize(
        torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)), dim=-1
    )
    for alpha in (0.0, 0.5):
        expected = naive.combined_loss(z.tolist(), labels.tolist(), instances.tolist(), alpha, 0.5, "instance")
        close(combined_loss(z, labels, instances, alpha, 0.5), expected)
