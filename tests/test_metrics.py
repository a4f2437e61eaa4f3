"""Tests of simulate.metrics: known configurations, naive oracles, invariances, errors (docs/metrics.md)."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import BY_DTYPE

from simulate.losses import balanced_layout
from simulate.metrics import (
    Variances,
    class_mean_gram,
    class_means,
    delta_g,
    nc1,
    ncc_accuracy,
    ssem_distance,
    variances,
)
from theory import simplex, ssem


def unit(shape, seed) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(shape, generator=generator, dtype=torch.float64), dim=-1)


def close(actual, expected, dtype=torch.float64) -> None:
    actual, expected = torch.as_tensor(actual, dtype=dtype), torch.as_tensor(expected, dtype=dtype)
    torch.testing.assert_close(actual, expected, **BY_DTYPE[dtype])


def collapsed_to(vertices: np.ndarray, class_sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sample of class c equal to vertex c."""
    labels = torch.repeat_interleave(torch.arange(len(class_sizes)), torch.tensor(class_sizes))
    return torch.from_numpy(vertices)[labels], labels


IMBALANCED = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3])

# ---------------------------------------------------------------------------
# Variances and class means
# ---------------------------------------------------------------------------


def test_collapse_to_etf_has_no_within_and_unit_between():
    z, labels = collapsed_to(simplex.etf(4, 6, seed=3), [5, 5, 5, 5])
    total, within, between = variances(z, labels, 4)
    close(total, 1.0), close(within, 0.0), close(between, 1.0)


def test_collapse_to_etf_with_imbalance():
    """T = 1 - |sum_c (N_c/N) w_c|^2 = 1 - f^T G_etf f with f the class fractions; W = 0."""
    sizes = [6, 3, 2, 1]
    z, labels = collapsed_to(simplex.etf(4, 5, seed=4), sizes)
    fractions = np.array(sizes) / sum(sizes)
    expected_total = 1 - fractions @ simplex.etf_gram(4) @ fractions
    total, within, between = variances(z, labels, 4)
    close(within, 0.0), close(total, expected_total), close(between, expected_total)


def test_antipodal_pairs_have_only_within_variance():
    """Each class holds +v and -v: class means vanish, so W = T = 1 and B = 0."""
    v = unit((3, 4), seed=5)
    z, labels = torch.cat([v, -v]), torch.tensor([0, 1, 2, 0, 1, 2])
    close(variances(z, labels, 3), Variances(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0)))


@pytest.mark.parametrize("beta", [0.0, 0.35, 1.0])
def test_variances_on_ssem(beta):
    """docs/ssem.md: on SSEM(beta) T = 1, B = beta, W = 1 - beta."""
    m, n, p, dim = 3, 4, 2, 12
    labels, _ = balanced_layout(m, n, p)
    z = torch.from_numpy(ssem.embeddings(m, n, p, dim, beta, seed=2)).reshape(-1, dim)
    total, within, between = variances(z, labels, m)
    close(total, 1.0), close(within, 1 - beta), close(between, beta)


def test_variances_are_the_usual_decomposition():
    """For unit vectors T = mean|z - mu|^2, W = mean|z - mu_y|^2 and B = sum_c (N_c/N)|mu_c - mu|^2."""
    z = unit((12, 5), seed=6)
    total, within, between = variances(z, IMBALANCED, 4)
    means, mu = class_means(z, IMBALANCED, 4), z.mean(0)
    fractions = torch.bincount(IMBALANCED).double() / 12
    close(total, (z - mu).square().sum(-1).mean())
    close(within, (z - means[IMBALANCED]).square().sum(-1).mean())
    close(between, (fractions * (means - mu).square().sum(-1)).sum())


def test_variances_and_gram_match_naive_with_an_absent_class():
    z, labels = unit((12, 5), seed=7), IMBALANCED.clone()
    labels[labels == 2] = 1  # class 2 absent among 5 classes
    close(variances(z, labels, 5), naive.variances(z.tolist(), labels.tolist(), 5))
    means = class_means(z, labels, 5)
    assert bool((means[2] == 0).all()) and bool((means[4] == 0).all())
    present = IMBALANCED.clone()
    close(class_mean_gram(z, present, 4), naive.class_mean_gram(z.tolist(), present.tolist(), 4))


def test_leading_batch_dims():
    z = unit((2, 3, 12, 5), seed=8)

    def metrics(embeddings):
        return (
            *variances(embeddings, IMBALANCED, 4),
            class_mean_gram(embeddings, IMBALANCED, 4),
            nc1(embeddings, IMBALANCED, 4),
        )

    batched = metrics(z)
    for i in range(2):
        for j in range(3):
            for many, one in zip(batched, metrics(z[i, j])):
                assert many.shape[:2] == (2, 3)
                close(many[i, j], one)


def test_half_precision_is_upcast():
    z = unit((12, 5), seed=9)
    result = variances(z.to(torch.bfloat16), IMBALANCED, 4)
    assert result.total.dtype == torch.float32
    close(result.total, variances(z.to(torch.bfloat16).float(), IMBALANCED, 4).total, torch.float32)


# ---------------------------------------------------------------------------
# Delta G and NC1
# ---------------------------------------------------------------------------


def test_delta_g_of_scaled_target_is_zero():
    z = unit((12, 5), seed=10)
    G = class_mean_gram(z, IMBALANCED, 4)
    close(delta_g(G, 3.7 * G), 0.0)
    close(delta_g(G, (0.2 * G).numpy()), 0.0)


@pytest.mark.parametrize("m", [2, 3, 10])
def test_delta_g_identity_against_etf(m):
    """||I/sqrt(m) - E/||E||||_F = sqrt(2 - 2 sqrt((m-1)/m)) since tr E = m, ||E||_F^2 = m^2/(m-1)."""
    close(delta_g(torch.eye(m, dtype=torch.float64), simplex.etf_gram(m)), math.sqrt(2 - 2 * math.sqrt((m - 1) / m)))


def test_delta_g_is_symmetric_and_bounded():
    G = class_mean_gram(unit((12, 5), seed=11), IMBALANCED, 4)
    H = class_mean_gram(unit((12, 5), seed=12), IMBALANCED, 4)
    close(delta_g(G, H), delta_g(H, G))
    close(delta_g(G, -G), 2.0)


def test_nc1_matches_naive():
    z = unit((12, 5), seed=13)
    close(nc1(z, IMBALANCED, 4), naive.nc1(z.numpy(), IMBALANCED.tolist(), 4))


def test_nc1_vanishes_at_collapse_and_grows_with_spread():
    vertices = simplex.etf(3, 4, seed=1)
    z, labels = collapsed_to(vertices, [4, 4, 4])
    close(nc1(z, labels, 3), 0.0)
    noise = unit((12, 4), seed=14)
    values = [float(nc1(torch.nn.functional.normalize(z + s * noise, dim=-1), labels, 3)) for s in (0.05, 0.2)]
    assert 0 < values[0] < values[1]


# ---------------------------------------------------------------------------
# Nearest class centre
# ---------------------------------------------------------------------------


def clusters(centres: np.ndarray, sizes: list[int], spread: float, seed: int):
    z, labels = collapsed_to(centres, sizes)
    return torch.nn.functional.normalize(z + spread * unit(z.shape, seed), dim=-1), labels


def test_ncc_on_separable_toy():
    centres = simplex.etf(4, 6, seed=2)
    z_train, y_train = clusters(centres, [8, 8, 3, 3], 0.1, seed=15)
    z_test, y_test = clusters(centres, [5, 5, 2, 2], 0.1, seed=16)
    result = ncc_accuracy(z_train, y_train, z_test, y_test, 4)
    close(result["overall"], 1.0), close(result["per_class"], torch.ones(4))
    # Label sample 0 (a class-0 point) as 1 and both class-3 points as 0: all three are now wrong.
    y_wrong = y_test.clone()
    y_wrong[0], y_wrong[12], y_wrong[13] = 1, 0, 0
    result = ncc_accuracy(z_train, y_train, z_test, y_wrong, 4)
    assert result["support"].tolist() == [6, 6, 2, 0]
    close(result["per_class"], [4 / 6, 5 / 6, 1.0, 0.0])
    close(result["overall"], 11 / 14)
    # Default groups for m = 4: majority {0, 1}, minority {2, 3}; class 3 has no test sample.
    close(result["majority"], (4 / 6 + 5 / 6) / 2), close(result["minority"], 1.0)


def test_ncc_groups_default_and_absent_test_class():
    centres = simplex.etf(5, 6, seed=3)
    z_train, y_train = clusters(centres, [4] * 5, 0.05, seed=17)
    z_test, y_test = clusters(centres, [3, 3, 0, 2, 2], 0.05, seed=18)  # class 2 absent from test
    result = ncc_accuracy(z_train, y_train, z_test, y_test, 5)
    assert result["support"].tolist() == [3, 3, 0, 2, 2]
    assert all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in result.values())
    close(result["per_class"][2], 0.0), close(result["majority"], 1.0), close(result["minority"], 1.0)
    # Default minority = the last floor(m/2) ids = {3, 4}: moving both class-4 points onto centre 0
    # makes class 4 wrong, which only the minority mean sees.
    moved = z_test.clone()
    moved[y_test == 4] = torch.from_numpy(centres[0])
    result = ncc_accuracy(z_train, y_train, moved, y_test, 5)
    close(result["per_class"][4], 0.0), close(result["minority"], 0.5), close(result["majority"], 1.0)
    custom = ncc_accuracy(z_train, y_train, moved, y_test, 5, minority=[0])
    close(custom["minority"], 1.0), close(custom["majority"], 2 / 3)  # classes 1, 3, 4 (2 absent)


# ---------------------------------------------------------------------------
# SSEM distance
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.8, 1.0])
def test_ssem_distance_recovers_beta(beta):
    m, n, p, dim = 3, 3, 2, 9
    labels, instances = balanced_layout(m, n, p)
    z = torch.from_numpy(ssem.embeddings(m, n, p, dim, beta, seed=4)).reshape(-1, dim)
    fitted, residual = ssem_distance(z, labels, instances, m)
    close(fitted, beta)
    assert float(residual) < 1e-12


def test_ssem_distance_matches_naive_fit():
    m, n, p, dim = 2, 3, 2, 6
    labels, instances = balanced_layout(m, n, p)
    z = torch.from_numpy(ssem.embeddings(m, n, p, dim, 0.5, seed=5)).reshape(-1, dim)
    z = torch.nn.functional.normalize(z + 0.3 * unit(z.shape, seed=19), dim=-1)

    def entry(index):
        return lambda beta: float(ssem.ssem_gram_entries(beta, m, n)[index])

    expected_beta, expected_residual = naive.ssem_fit(
        z.tolist(), labels.tolist(), instances.tolist(), entry(0), entry(1)
    )
    fitted, residual = ssem_distance(z, labels, instances, m)
    assert 0 < expected_beta < 1 and expected_residual > 0.05  # the fit is interior and the residual real
    close(fitted, expected_beta), close(residual, expected_residual)


@pytest.mark.parametrize(("signs", "expected"), [((1, 1, -1, -1), 1.0), ((1, -1, 1, -1), 0.0)])
def test_ssem_distance_clips_beta(signs, expected):
    """Vectors of norm 2 push the least-squares beta outside [0, 1] (to 5/2 and -1): it is clipped."""
    labels, instances = balanced_layout(2, 2, 1)
    v = unit((1, 3), seed=20)
    z = 2.0 * torch.tensor(signs, dtype=torch.float64)[:, None] * v
    fitted, residual = ssem_distance(z, labels, instances, 2)
    expected_beta, expected_residual = naive.ssem_fit(
        z.tolist(), labels.tolist(), instances.tolist(), lambda b: 2 * b - 1, lambda b: -b
    )
    close(fitted, expected), close(expected_beta, expected), close(residual, expected_residual)


# ---------------------------------------------------------------------------
# Invariances
# ---------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_metrics_invariant_under_rotation_and_within_class_permutation(seed):
    m, n, p, dim = 3, 3, 2, 6
    labels, instances = balanced_layout(m, n, p)
    z = unit((m * n * p, dim), seed)
    rotation = torch.from_numpy(simplex.random_rotation(dim, seed))
    generator = torch.Generator().manual_seed(seed)
    # Permute instances within each class (views follow their instance), then views within instances.
    order = torch.arange(m * n * p).reshape(m, n, p)
    order = torch.stack([order[c, torch.randperm(n, generator=generator)] for c in range(m)])
    order = torch.stack([row[torch.randperm(p, generator=generator)] for row in order.reshape(m * n, p)]).reshape(-1)
    moved = (z @ rotation.T)[order]
    target = simplex.etf_gram(m)
    close(torch.stack(list(variances(moved, labels, m))), torch.stack(list(variances(z, labels, m))))
    close(class_mean_gram(moved, labels, m), class_mean_gram(z, labels, m))
    close(delta_g(class_mean_gram(moved, labels, m), target), delta_g(class_mean_gram(z, labels, m), target))
    close(nc1(moved, labels, m), nc1(z, labels, m))
    for rotated, original in zip(ssem_distance(moved, labels, instances, m), ssem_distance(z, labels, instances, m)):
        close(rotated, original)
    expected = ncc_accuracy(z, labels, z, labels, m)["per_class"]
    close(ncc_accuracy(moved, labels, moved, labels, m)["per_class"], expected)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

LABELS, INSTANCES = balanced_layout(3, 2, 2)
Z = unit((12, 4), seed=0)

BAD_CALLS = {
    "n_classes-zero": (lambda: variances(Z, LABELS, 0), "n_classes"),
    "labels-out-of-range": (lambda: class_means(Z, LABELS, 2), "labels"),
    "labels-shape": (lambda: variances(Z, LABELS[:5], 3), "labels"),
    "z-vector": (lambda: variances(Z[0], LABELS, 3), "z"),
    "gram-absent-class": (lambda: class_mean_gram(Z, LABELS, 4), "labels"),
    "nc1-one-class": (lambda: nc1(Z, torch.zeros(12, dtype=torch.long), 1), "n_classes"),
    "delta_g-not-square": (lambda: delta_g(torch.ones(3, 2), torch.eye(3)), "G"),
    "delta_g-size": (lambda: delta_g(torch.eye(3, dtype=torch.float64), torch.eye(2)), "G_target"),
    "delta_g-zero": (lambda: delta_g(torch.eye(3), torch.zeros(3, 3)), "G_target"),
    "ncc-dim": (lambda: ncc_accuracy(Z, LABELS, Z[:, :3], LABELS, 3), "z_test"),
    "ncc-minority-range": (lambda: ncc_accuracy(Z, LABELS, Z, LABELS, 3, minority=[3]), "minority"),
    "ncc-minority-all": (lambda: ncc_accuracy(Z, LABELS, Z, LABELS, 3, minority=[0, 1, 2]), "minority"),
    "ncc-minority-type": (lambda: ncc_accuracy(Z, LABELS, Z, LABELS, 3, minority=5), "minority"),
    "ncc-group-absent": (lambda: ncc_accuracy(Z, LABELS, Z[:8], LABELS[:8], 3), "minority"),
    "ncc-train-absent": (lambda: ncc_accuracy(Z[:8], LABELS[:8], Z, LABELS, 3), "y_train"),
    "ssem-imbalanced": (
        lambda: ssem_distance(Z, torch.tensor([0] * 6 + [1] * 4 + [2] * 2), torch.arange(12) // 2, 3),
        "balanced",
    ),
    "ssem-spanning-instance": (lambda: ssem_distance(Z, LABELS, torch.arange(12) // 3, 3), "instances"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_errors(case):
    call, name = BAD_CALLS[case]
    with pytest.raises(ValueError, match=name):
        call()


# --- kills of surviving mutants (benchmarks/mutation.sh; docs/mutation.md) ---


def test_batched_metrics_equal_per_slice_with_two_leading_dims():
    """(2, 3, N, d) batches where N, d, m differ from the leading sizes: every metric equals its per-slice value."""
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    z = unit((2, 3, 7, 5), seed=41)
    z_test, y_test = unit((2, 3, 6, 5), seed=42), torch.tensor([0, 1, 2, 2, 1, 0])
    layout_labels, instances = balanced_layout(3, 2, 2)
    z_ssem = unit((2, 3, 12, 5), seed=43)
    batched_gram = class_mean_gram(z, labels, 3)
    batched_ncc = ncc_accuracy(z, labels, z_test, y_test, 3, minority=[2])
    batched_ssem = ssem_distance(z_ssem, layout_labels, instances, 3)
    assert batched_gram.shape == (2, 3, 3, 3) and batched_ncc["per_class"].shape == (2, 3, 3)
    target = simplex.etf_gram(3)
    for i in range(2):
        for j in range(3):
            one = ncc_accuracy(z[i, j], labels, z_test[i, j], y_test, 3, minority=[2])
            for key in ("overall", "per_class", "majority", "minority"):
                close(batched_ncc[key][i, j], one[key])
            close(delta_g(batched_gram, target)[i, j], delta_g(class_mean_gram(z[i, j], labels, 3), target))
            close(batched_ssem[0][i, j], ssem_distance(z_ssem[i, j], layout_labels, instances, 3)[0])
            close(batched_ssem[1][i, j], ssem_distance(z_ssem[i, j], layout_labels, instances, 3)[1])


def test_ncc_counts_a_class_with_one_test_sample():
    z_train = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]], dtype=torch.float64)
    y_train = torch.tensor([0, 0, 1, 1])
    z_test = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=torch.float64)  # class 1: one sample
    result = ncc_accuracy(z_train, y_train, z_test, torch.tensor([0, 0, 1]), 2, minority=[1])
    assert result["per_class"].tolist() == [1.0, 1.0] and float(result["minority"]) == 1.0


def test_ncc_mixed_precision_test_set():
    z_train, y_train = unit((6, 3), seed=44), torch.tensor([0, 0, 1, 1, 2, 2])
    z_test = unit((4, 3), seed=45)
    mixed = ncc_accuracy(z_train, y_train, z_test.float(), torch.tensor([0, 1, 2, 2]), 3)
    same = ncc_accuracy(z_train, y_train, z_test.float().double(), torch.tensor([0, 1, 2, 2]), 3)
    assert mixed["per_class"].dtype == torch.float64
    torch.testing.assert_close(mixed["per_class"], same["per_class"], rtol=0, atol=0)


def test_two_classes_are_enough_for_nc1_and_ncc():
    z, labels = unit((6, 3), seed=46), torch.tensor([0, 0, 0, 1, 1, 1])
    close(nc1(z, labels, 2), naive.nc1(z.tolist(), labels.tolist(), 2))
    assert float(ncc_accuracy(z, labels, z, labels, 2)["overall"]) >= 0.0


def test_delta_g_dtypes():
    G = class_mean_gram(unit((6, 3), seed=47), torch.tensor([0, 0, 1, 1, 2, 2]), 3)
    target32 = torch.as_tensor(simplex.etf_gram(3), dtype=torch.float32)
    # a float32 target is compared in G's float64, exactly as if converted first
    assert torch.equal(delta_g(G, target32), delta_g(G, target32.double()))
    # numpy inputs: G becomes float64, a numpy target takes G's dtype
    assert delta_g(simplex.etf_gram(3).astype(np.float32), simplex.etf_gram(3)).dtype == torch.float64
    assert delta_g(G.float(), simplex.etf_gram(3)).dtype == torch.float32


M3 = class_mean_gram(unit((6, 3), seed=48), torch.tensor([0, 0, 1, 1, 2, 2]), 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: delta_g("G", M3), r"^G must be a real \(\.\.\., m, m\) matrix, got 'G'"),
        (lambda: delta_g(M3, "T"), r"^G_target must be a real \(\.\.\., m, m\) matrix"),
        (lambda: delta_g(torch.ones(3, dtype=torch.float64), M3), r"^G must be a floating \(\.\.\., m, m\) matrix"),
        (lambda: delta_g(torch.ones(3, 3, dtype=torch.int64), M3), r"^G must be a floating"),
        (lambda: delta_g(M3, torch.ones(2, 3, 4, dtype=torch.float64)), r"^G_target must be a floating"),
        (lambda: delta_g(torch.zeros(0, 0, dtype=torch.float64), M3), r"^G must have"),
        (
            lambda: delta_g(M3.expand(1, 2, 3, 3), torch.eye(4, dtype=torch.float64)),
            r"^G_target must be \(3, 3\) like G, got \(4, 4\)",
        ),
        (
            lambda: class_mean_gram(unit((4, 3), seed=1), torch.tensor([0, 0, 1, 1]), 4),
            r"^labels must contain every class for class_mean_gram; classes \[2, 3\] have no sample",
        ),
        (
            lambda: nc1(unit((4, 3), seed=1), torch.tensor([0, 0, 1, 1]), 3),
            r"^labels must contain every class for nc1; classes \[2\] have no sample",
        ),
        (
            lambda: ssem_distance(unit((8, 3), seed=1), *balanced_layout(2, 2, 2), 3),
            r"^labels must contain every class for ssem_distance; classes \[2\] have no sample",
        ),
        (
            lambda: ssem_distance(
                unit((4, 3), seed=1), torch.zeros(4, dtype=torch.long), torch.tensor([0, 0, 1, 1]), 1
            ),
            r"^n_classes must be an integer >= 2",
        ),
        (
            lambda: ssem_distance(unit((4, 3), seed=1), torch.tensor([0, 0, 1, 1]), torch.zeros(4), 2),
            r"^instances must be an integer tensor",
        ),
        (
            lambda: ssem_distance(unit((4, 3), seed=1), torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 2]), 2),
            r"^instances must not span classes: views sharing an instance id must share a label$",
        ),
        (
            lambda: ncc_accuracy(
                unit((4, 3), seed=1),
                torch.zeros(4, dtype=torch.long),
                unit((2, 3), seed=2),
                torch.zeros(2, dtype=torch.long),
                1,
            ),
            r"^n_classes must be an integer >= 2",
        ),
        (
            lambda: ncc_accuracy("z", torch.tensor([0, 1]), unit((2, 3), seed=2), torch.tensor([0, 1]), 2),
            r"^z_train must be a floating tensor",
        ),
        (
            lambda: ncc_accuracy(unit((2, 3), seed=1), torch.tensor([0, 1]), "z", torch.tensor([0, 1]), 2),
            r"^z_test must be a floating tensor",
        ),
        (
            lambda: ncc_accuracy(
                unit((2, 7, 4), seed=1),
                torch.tensor([0, 1] * 3 + [0]),
                unit((2, 5, 3), seed=2),
                torch.tensor([0, 1, 0, 1, 0]),
                2,
            ),
            r"^z_test must have d = 4 like z_train",
        ),
        (
            lambda: ncc_accuracy(
                unit((3, 3), seed=1), torch.tensor([0, 0, 1]), unit((2, 3), seed=2), torch.tensor([0, 1]), 3
            ),
            r"^labels must contain every class for ncc_accuracy \(y_train\)",
        ),
        (
            lambda: ncc_accuracy(
                unit((4, 3), seed=1),
                torch.tensor([0, 0, 1, 1]),
                unit((2, 3), seed=2),
                torch.tensor([0, 0]),
                2,
                minority=[1],
            ),
            r"^y_test has no sample of any minority class",
        ),
        (
            lambda: ncc_accuracy(
                unit((4, 3), seed=1),
                torch.tensor([0, 0, 1, 1]),
                unit((2, 3), seed=2),
                torch.tensor([1, 1]),
                2,
                minority=[1],
            ),
            r"^y_test has no sample of any majority class",
        ),
        (
            lambda: ncc_accuracy(
                unit((4, 3), seed=1),
                torch.tensor([0, 0, 1, 1]),
                unit((2, 3), seed=2),
                torch.tensor([0, 1]),
                2,
                minority=[True],
            ),
            r"^minority must be a collection of integer",
        ),
        (
            lambda: ncc_accuracy(
                unit((4, 3), seed=1),
                torch.tensor([0, 0, 1, 1]),
                unit((2, 3), seed=2),
                torch.tensor([0, 1]),
                2,
                minority=[],
            ),
            r"^minority must be distinct class ids",
        ),
    ],
)
def test_error_messages_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_one_class_is_enough_for_means_and_variances():
    z = unit((4, 3), seed=49)
    total, within, between = variances(z, torch.zeros(4, dtype=torch.long), 1)
    close(between, 0.0)
    close(within, total)
    with pytest.raises(ValueError, match=r"^z must be a floating tensor"):
        class_mean_gram("z", torch.zeros(4, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"^n_classes must be an integer >= 1, got 0"):
        class_mean_gram(z, torch.zeros(4, dtype=torch.long), 0)


def test_variances_from_the_class_mean_gram_equal_the_variances_of_the_embeddings():
    from simulate.metrics import variances_from_class_mean_gram

    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    z = unit((2, 3, 9, 4), seed=50)  # two leading dims
    counts = torch.bincount(labels, minlength=3)
    gram = class_mean_gram(z, labels, 3)
    from_gram = variances_from_class_mean_gram(gram, counts)
    direct = variances(z, labels, 3)
    for got, expected in zip(from_gram, direct):
        assert got.shape == (2, 3)
        close(got, expected)
    # a fourth class with count 0 has weight 0, whatever its Gram row
    bordered = torch.eye(4, dtype=torch.float64).repeat(2, 3, 1, 1) * 0.5
    bordered[..., :3, :3] = gram
    for got, expected in zip(variances_from_class_mean_gram(bordered, counts.tolist() + [0]), direct):
        close(got, expected)
    gram32 = class_mean_gram(z[0, 0].float(), labels, 3)
    assert variances_from_class_mean_gram(gram32, counts.tolist()).total.dtype == torch.float32
    as_numpy = variances_from_class_mean_gram(gram[0, 0].numpy(), counts.numpy())
    close(as_numpy.within, direct.within[0, 0])


@pytest.mark.parametrize(
    "gram, counts, message",
    [
        (np.eye(3)[:, :2], (1, 1, 1), r"^G must be a \(\.\.\., m, m\) matrix, got shape \(3, 2\)"),
        (np.ones(3), (1, 1, 1), r"^G must be a \(\.\.\., m, m\) matrix, got shape \(3,\)"),
        (np.eye(3), (1, 1), r"^class_counts must be 3 counts >= 0 with a positive sum, got \(1, 1\)"),
        (np.eye(3), (1, -1, 1), r"^class_counts must be 3 counts >= 0"),
        (np.eye(3), (0, 0, 0), r"^class_counts must be 3 counts >= 0 with a positive sum"),
        (torch.ones(3, 3, dtype=torch.int64), (1, 1, 1), r"^G must be a floating tensor"),
    ],
)
def test_variances_from_class_mean_gram_errors(gram, counts, message):
    from simulate.metrics import variances_from_class_mean_gram

    with pytest.raises(ValueError, match=message):
        variances_from_class_mean_gram(gram, counts)


def test_four_dimensional_grams_and_mixed_precision_training_set():
    from simulate.metrics import variances_from_class_mean_gram

    G = M3.expand(1, 2, 3, 3)
    close(delta_g(G, G.clone())[0, 1], 0.0)  # batch sizes (1, 2) differ from m = 3 in every position
    close(delta_g(G, simplex.etf_gram(3))[0, 1], delta_g(M3, simplex.etf_gram(3)))
    with pytest.raises(ValueError, match=r"^class_counts must be 3 counts >= 0 with a positive sum"):
        variances_from_class_mean_gram(G, (1, 1))
    one = variances_from_class_mean_gram(np.eye(3, dtype=np.float32), (1, 0, 0))  # a single sample in all
    assert one.total.dtype == torch.float64 and float(one.total) == 0.0
    z_train, y_train = unit((6, 3), seed=51).float(), torch.tensor([0, 0, 1, 1, 2, 2])
    z_test = unit((3, 3), seed=52)
    result = ncc_accuracy(z_train, y_train, z_test, torch.tensor([0, 1, 2]), 3)
    expected = ncc_accuracy(z_train.double(), y_train, z_test, torch.tensor([0, 1, 2]), 3)
    torch.testing.assert_close(result["per_class"], expected["per_class"], rtol=0, atol=0)
