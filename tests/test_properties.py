"""Property tests tying the routes together (docs/verdicts.md#routes).

* The three routes agree: over random small (m, n, p, alpha, tau) the closed-form SSEM minimum
  (`theory.ssem`), the certified minimum (`simulate.certify`) and the free-embedding minimum
  (`simulate.optimise`) are one number, to 1e-6 relative.
* Losses and metrics are invariant under rotations of the embeddings and permutations of the
  samples within a class, for random sizes, dimensions, class sizes and parameters.
* `simulate.metrics` on an SSEM(beta) construction returns T = 1, B = beta, W = 1 - beta exactly.
* The empirical code path computes its metrics through `simulate.metrics` (and its loss through
  `simulate.losses`): spies on those functions see the calls, and the values it records are theirs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical import evaluation, train
from simulate import losses, metrics, optimise
from simulate.certify import certify_combined
from theory import simplex, ssem

#: Tolerances. ROUTES: agreement of loss values between routes. EXACT: closed-form
#: quantities of an exact construction. INVARIANT (per dtype): a quantity against its transformed self.
ROUTES = 1e-6
EXACT = 1e-12
INVARIANT = {torch.float64: dict(rtol=1e-10, atol=1e-10)}

#: Balanced sizes with m, n >= 2 and at most 12 views: certificates take < 0.2 s there.
SMALL_SIZES = [(m, n, p) for m in range(2, 7) for n in range(2, 7) for p in range(1, 4) if m * n * p <= 12]


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _unit(shape, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(shape, generator=generator, dtype=torch.float64), dim=-1)


def _close(actual, expected) -> None:
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), **INVARIANT[torch.float64])


# ---------------------------------------------------------------------------
# Three routes, one answer
# ---------------------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(
    size=st.sampled_from(SMALL_SIZES),
    # alpha <= 0.9: at alpha = 1 with one view the minimum is ~e^{-1/tau}, close to 0, where a relative
    # criterion would only measure the solver's absolute accuracy (~1e-9).
    alpha=st.floats(0.0, 0.9),
    log_tau=st.floats(np.log(0.1), np.log(2.0)),
    seed=st.integers(0, 2**16),
)
def test_closed_form_certificate_and_free_optimisation_agree(size, alpha, log_tau, seed):
    m, n, p = size
    tau = float(np.exp(log_tau))
    beta = ssem.optimal_beta(alpha, tau, m, n, p)
    closed = float(ssem.restricted_loss(beta, alpha, tau, m, n, p))
    cert = certify_combined(alpha, tau, m, n, p)
    assert cert.ok
    labels, instances = losses.balanced_layout(m, n, p)
    free = optimise.minimise_with_restarts(
        lambda z, index: losses.combined_loss(z, labels, instances, alpha, tau),
        (1,),
        m * n * p,
        m * n,
        restarts=3,
        seed=seed,
        max_iter=1000,
        grad_tol=1e-8,
        indexed=True,
    )
    assert _relative(cert.minimum, closed) < ROUTES
    assert _relative(float(free.loss[0]), closed) < ROUTES
    # The free minimiser is a feasible point: it can never beat the certificate's lower bound.
    assert float(free.loss[0]) >= cert.lower_bound - ROUTES * abs(closed)


# ---------------------------------------------------------------------------
# Invariances: rotations and permutations within a class
# ---------------------------------------------------------------------------


def _permute_within_classes(z: torch.Tensor, m: int, n: int, p: int, generator: torch.Generator) -> torch.Tensor:
    """Instances shuffled within each class and views within each instance; layout and ids unchanged."""
    blocks = z.reshape(m, n, p, -1)
    blocks = torch.stack([blocks[c, torch.randperm(n, generator=generator)] for c in range(m)])
    views = [blocks[c, j, torch.randperm(p, generator=generator)] for c in range(m) for j in range(n)]
    return torch.stack(views).reshape(m * n * p, -1)


@settings(max_examples=15, deadline=None)
@given(
    size=st.sampled_from([(m, n, p) for m in (2, 3, 4) for n in (2, 3) for p in (1, 2, 3)]),
    extra_dim=st.integers(0, 3),
    alpha=st.floats(0.0, 1.0),
    tau=st.floats(0.05, 5.0),
    seed=st.integers(0, 2**16),
)
def test_combined_loss_and_metrics_invariant_under_rotation_and_within_class_permutation(
    size, extra_dim, alpha, tau, seed
):
    m, n, p = size
    dim = m + extra_dim
    labels, instances = losses.balanced_layout(m, n, p)
    z = _unit((m * n * p, dim), seed)
    rotation = torch.from_numpy(simplex.random_rotation(dim, seed))
    moved = _permute_within_classes(z @ rotation.T, m, n, p, torch.Generator().manual_seed(seed))
    for variant in ("instance", "supcon") if p >= 2 else ("instance",):
        _close(
            losses.combined_loss(moved, labels, instances, alpha, tau, variant),
            losses.combined_loss(z, labels, instances, alpha, tau, variant),
        )
    _close(torch.stack(list(metrics.variances(moved, labels, m))), torch.stack(list(metrics.variances(z, labels, m))))
    gram = metrics.class_mean_gram(z, labels, m)
    _close(metrics.class_mean_gram(moved, labels, m), gram)
    _close(
        metrics.delta_g(metrics.class_mean_gram(moved, labels, m), simplex.etf_gram(m)),
        metrics.delta_g(gram, simplex.etf_gram(m)),
    )
    _close(metrics.nc1(moved, labels, m), metrics.nc1(z, labels, m))
    for after, before in zip(
        metrics.ssem_distance(moved, labels, instances, m), metrics.ssem_distance(z, labels, instances, m)
    ):
        _close(after, before)


@settings(max_examples=15, deadline=None)
@given(
    class_sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4).filter(lambda sizes: max(sizes) >= 2),
    extra_dim=st.integers(0, 3),
    n_proto=st.integers(0, 20),
    anchors=st.sampled_from(["data", "all"]),
    tau=st.floats(0.05, 5.0),
    seed=st.integers(0, 2**16),
)
def test_imbalanced_losses_invariant_under_rotation_and_within_class_permutation(
    class_sizes, extra_dim, n_proto, anchors, tau, seed
):
    m = len(class_sizes)
    dim = m + extra_dim
    labels = torch.repeat_interleave(torch.arange(m), torch.tensor(class_sizes))
    z, prototypes = _unit((len(labels), dim), seed), _unit((m, dim), seed + 1)
    rotation = torch.from_numpy(simplex.random_rotation(dim, seed))
    generator = torch.Generator().manual_seed(seed)
    starts = np.concatenate([[0], np.cumsum(class_sizes)])
    order = torch.cat([start + torch.randperm(size, generator=generator) for start, size in zip(starts, class_sizes)])
    moved, turned = (z @ rotation.T)[order], prototypes @ rotation.T  # labels[order] == labels
    _close(losses.supcon_loss(moved, labels, tau), losses.supcon_loss(z, labels, tau))
    _close(
        losses.prototype_supcon_loss(moved, labels, turned, n_proto, tau, anchors),
        losses.prototype_supcon_loss(z, labels, prototypes, n_proto, tau, anchors),
    )
    _close(
        losses.fixed_classifier_ce(moved, labels, turned, tau), losses.fixed_classifier_ce(z, labels, prototypes, tau)
    )
    _close(torch.stack(list(metrics.variances(moved, labels, m))), torch.stack(list(metrics.variances(z, labels, m))))
    _close(metrics.class_mean_gram(moved, labels, m), metrics.class_mean_gram(z, labels, m))


# ---------------------------------------------------------------------------
# SSEM through simulate.metrics
# ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 6),
    n=st.integers(2, 5),
    p=st.integers(1, 3),
    beta=st.floats(0.0, 1.0),
    extra_dim=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
def test_metrics_of_an_ssem_construction_are_exact(m, n, p, beta, extra_dim, seed):
    dim = m * n - 1 + extra_dim
    z = torch.from_numpy(ssem.embeddings(m, n, p, dim, beta, seed=seed).reshape(m * n * p, dim))
    labels, instances = losses.balanced_layout(m, n, p)
    variance = metrics.variances(z, labels, m)
    assert abs(float(variance.total) - 1.0) < EXACT
    assert abs(float(variance.between) - beta) < EXACT
    assert abs(float(variance.within) - (1.0 - beta)) < EXACT
    np.testing.assert_allclose(metrics.class_mean_gram(z, labels, m).numpy(), beta * simplex.etf_gram(m), atol=EXACT)
    fitted, residual = metrics.ssem_distance(z, labels, instances, m)
    assert abs(float(fitted) - beta) < EXACT and float(residual) < EXACT


# ---------------------------------------------------------------------------
# The empirical code path measures through simulate.metrics and trains on simulate.losses
# ---------------------------------------------------------------------------

EMPIRICAL_METRICS = ("variances", "class_mean_gram", "delta_g", "nc1", "ncc_accuracy")


def _spy(monkeypatch, module, names):
    """Wrap module.<name> so each call is recorded (the original still computes); returns the call log."""
    calls = {name: 0 for name in names}
    for name in names:
        original = getattr(module, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return calls


def _empirical_inputs(m: int, per_class: int, dim: int, seed: int):
    labels = torch.arange(m).repeat_interleave(per_class)
    return _unit((m * per_class, dim), seed), labels, _unit((m * per_class, dim), seed + 1), labels


def test_empirical_evaluation_calls_simulate_metrics(monkeypatch):
    calls = _spy(monkeypatch, metrics, EMPIRICAL_METRICS)
    z_train, y_train, z_test, y_test = _empirical_inputs(4, 3, 6, seed=5)
    evaluation.geometry_metrics(
        z_train, y_train, z_test, y_test, torch.from_numpy(simplex.etf_gram(4)), 4, minority=[2, 3]
    )
    assert all(calls[name] >= 1 for name in EMPIRICAL_METRICS), calls


def test_empirical_evaluation_reports_what_simulate_metrics_returns(monkeypatch):
    # A within-class variance no real embedding has: the record must carry it through unchanged.
    sentinel = metrics.Variances(
        torch.tensor(0.125, dtype=torch.float64),
        torch.tensor(-7.0, dtype=torch.float64),
        torch.tensor(7.125, dtype=torch.float64),
    )
    monkeypatch.setattr(metrics, "variances", lambda z, labels, n_classes: sentinel)
    z_train, y_train, z_test, y_test = _empirical_inputs(3, 4, 5, seed=6)
    record, _ = evaluation.geometry_metrics(
        z_train, y_train, z_test, y_test, torch.from_numpy(simplex.etf_gram(3)), 3, minority=[2]
    )
    assert (record["total_var"], record["within_var"], record["between_var"]) == (0.125, -7.0, 7.125)


@settings(max_examples=10, deadline=None)
@given(m=st.integers(2, 5), per_class=st.integers(2, 4), extra_dim=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_empirical_metrics_equal_simulate_metrics_on_the_same_embeddings(m, per_class, extra_dim, seed):
    z_train, y_train, z_test, y_test = _empirical_inputs(m, per_class, m + extra_dim, seed)
    target = torch.from_numpy(simplex.etf_gram(m))
    minority = simplex.minority_classes(m).tolist()
    record, gram = evaluation.geometry_metrics(z_train, y_train, z_test, y_test, target, m, minority=minority)
    variance = metrics.variances(z_train, y_train, m)
    expected_gram = metrics.class_mean_gram(z_train, y_train, m)
    assert torch.equal(gram, expected_gram)
    assert record["total_var"] == float(variance.total)
    assert record["within_var"] == float(variance.within)
    assert record["between_var"] == float(variance.between)
    assert record["delta_g"] == float(metrics.delta_g(expected_gram, target))
    assert record["nc1"] == float(metrics.nc1(z_train, y_train, m))
    accuracy = metrics.ncc_accuracy(z_train, y_train, z_test, y_test, m, minority=minority)
    assert record["test_acc_overall"] == float(accuracy["overall"])
    assert record["test_acc_minority"] == float(accuracy["minority"])


@settings(max_examples=10, deadline=None)
# beta >= 1e-3: at beta = 0 every class mean is 0, DeltaG* is undefined and geometry_metrics raises.
@given(m=st.integers(2, 5), n=st.integers(2, 4), beta=st.floats(1e-3, 1.0), seed=st.integers(0, 2**16))
def test_empirical_metrics_of_an_ssem_construction_are_exact(m, n, beta, seed):
    p, dim = 2, m * n + 1
    z = torch.from_numpy(ssem.embeddings(m, n, p, dim, beta, seed=seed).reshape(m * n * p, dim))
    labels = losses.balanced_layout(m, n, p)[0]
    target = torch.from_numpy(simplex.etf_gram(m))
    record, _ = evaluation.geometry_metrics(
        z, labels, z, labels, target, m, minority=simplex.minority_classes(m).tolist()
    )
    assert abs(record["total_var"] - 1.0) < EXACT
    assert abs(record["between_var"] - beta) < EXACT
    assert abs(record["within_var"] - (1.0 - beta)) < EXACT


@pytest.mark.parametrize(
    "loss, name", [("combined", "combined_training_loss"), ("prototype", "prototype_supcon_training_loss")]
)
def test_empirical_training_loss_is_simulate_losses(monkeypatch, loss, name):
    calls = _spy(monkeypatch, losses, [name])
    config = train.TrainConfig(loss=loss, alpha=0.3, n_proto=5, tau=0.4)
    m, n = 3, 4
    labels, instances = losses.balanced_layout(m, n, 2)
    z, prototypes = _unit((m * n * 2, 6), seed=9), _unit((m, 6), seed=10)
    value = train.step_loss(config, prototypes)(z, labels, instances)
    assert calls[name] == 1
    if loss == "combined":
        expected = losses.combined_loss(z, labels, instances, 0.3, 0.4, "instance")
    else:
        expected = losses.prototype_supcon_loss(z, labels, prototypes, 5, 0.4, "data")
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
