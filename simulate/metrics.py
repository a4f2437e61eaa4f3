"""Geometry metrics (docs/metrics.md), in torch, shared by `simulate` and `empirical`.

Inputs follow `simulate.losses`: embeddings ``z`` of shape ``(..., N, d)`` (any
leading batch shape; every view is one sample, counted once), ``labels`` an integer
tensor ``(N,)`` with entries in ``[0, n_classes)`` shared by the batch. Half-precision
inputs are upcast to float32; otherwise the input dtype is kept.

Policy for absent classes: `class_means` returns a zero row for a class without
samples, which gives it weight N_c/N = 0 in `variances`; the metrics that need every
class mean (`class_mean_gram`, `nc1`, `ssem_distance`, the training side of
`ncc_accuracy`) raise ValueError instead. Classes absent from the *test* side of
`ncc_accuracy` are handled there (see its docstring).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from numpy.typing import ArrayLike
from torch import Tensor

from simulate.losses import require_class_ids, require_embeddings, require_ids
from theory.arguments import require_int
from theory.simplex import minority_classes
from theory.ssem import ssem_gram_entries


class Variances(NamedTuple):
    """Total, within-class and between-class variance of unit embeddings; each (...,)."""

    total: Tensor
    within: Tensor
    between: Tensor


def _inputs(z, labels, n_classes, min_classes: int = 1, name: str = "z") -> tuple[Tensor, Tensor, int]:
    m = require_int("n_classes", n_classes, min_classes)
    z = require_embeddings(name, z)
    return z, require_class_ids(labels, z.shape[-2], m, z.device), m


def _class_counts(labels: Tensor, n_classes: int) -> Tensor:
    """N_c, (m,) int64."""
    return torch.bincount(labels, minlength=n_classes)


def _require_all_present(counts: Tensor, what: str) -> None:
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"labels must contain every class for {what}; classes {missing} have no sample")


def _means(z: Tensor, labels: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """Class means (..., m, d) (zero row for an absent class) and counts (m,)."""
    counts = _class_counts(labels, n_classes)
    sums = z.new_zeros(z.shape[:-2] + (n_classes, z.shape[-1])).index_add(-2, labels, z)  # (..., m, d)
    return sums / counts.clamp(min=1).to(z.dtype)[:, None], counts


def class_means(z: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """mu_c = (1/N_c) sum_{i: y_i = c} z_i, every view counted once.

    Args:
        z: (..., N, d); labels: (N,) int in [0, m); n_classes: m >= 1.
    Returns:
        (..., m, d); the row of a class without samples is 0.
    """
    z, labels, m = _inputs(z, labels, n_classes)
    return _means(z, labels, m)[0]


def variances(z: Tensor, labels: Tensor, n_classes: int) -> Variances:
    """T = 1 - |mu|^2, W = sum_c (N_c/N)(1 - |mu_c|^2), B = T - W (docs/metrics.md#variances).

    mu is the mean of all N samples, mu_c the class means. For unit z these are
    T = mean_i |z_i - mu|^2 and W = mean_i |z_i - mu_{y_i}|^2; the formula assumes unit
    vectors (it is not re-derived for other norms). Absent classes have N_c = 0 and drop out.

    Args:
        z: (..., N, d) unit embeddings; labels: (N,) int in [0, m); n_classes: m >= 1.
    Returns:
        Variances(total, within, between), each (...,).
    """
    z, labels, m = _inputs(z, labels, n_classes)
    means, counts = _means(z, labels, m)  # (..., m, d), (m,)
    total = 1.0 - z.mean(-2).square().sum(-1)
    fractions = counts.to(z.dtype) / z.shape[-2]  # (m,)
    within = ((1.0 - means.square().sum(-1)) * fractions).sum(-1)
    return Variances(total, within, total - within)


def class_mean_gram(z: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """G = M^T M with M = [mu_1 .. mu_m] (class means, not re-normalised).

    Args:
        z: (..., N, d); labels: (N,) int in [0, m), every class present; n_classes: m >= 1.
    Returns:
        (..., m, m), G_cc' = <mu_c, mu_c'>.
    """
    z, labels, m = _inputs(z, labels, n_classes)
    means, counts = _means(z, labels, m)
    _require_all_present(counts, "class_mean_gram")
    return means @ means.transpose(-1, -2)


def _gram_matrix(name: str, G, like: Tensor | None = None) -> Tensor:
    if not isinstance(G, Tensor):
        try:
            G = torch.as_tensor(G, dtype=like.dtype if like is not None else torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be a real (..., m, m) matrix, got {G!r}") from None
    if not G.is_floating_point() or G.dim() < 2 or G.shape[-1] != G.shape[-2]:
        raise ValueError(f"{name} must be a floating (..., m, m) matrix, got shape {tuple(G.shape)}")
    G = require_embeddings(name, G)  # upcast half precision
    if like is not None:
        G = G.to(device=like.device, dtype=like.dtype)
    norm = torch.linalg.matrix_norm(G)
    if not bool((norm > 0).all()):
        raise ValueError(f"{name} must have a non-zero Frobenius norm (it is normalised), got a zero matrix")
    return G


def delta_g(G: Tensor, G_target: Tensor | ArrayLike) -> Tensor:
    """DeltaG*(G, G*) = || G/||G||_F - G*/||G*||_F ||_F (Paper A's Delta G*); in [0, 2].

    Args:
        G: (..., m, m) class-mean Gram; G_target: (m, m) (or broadcastable) target,
            e.g. the prototype Gram W W^T or the ETF Gram (tensor or array).
    Returns:
        (...,) = broadcast of the leading shapes.
    """
    G = _gram_matrix("G", G)
    G_target = _gram_matrix("G_target", G_target, like=G)
    if G_target.shape[-1] != G.shape[-1]:
        raise ValueError(f"G_target must be ({G.shape[-1]}, {G.shape[-1]}) like G, got {tuple(G_target.shape)}")
    normalised = G / torch.linalg.matrix_norm(G)[..., None, None]
    target = G_target / torch.linalg.matrix_norm(G_target)[..., None, None]
    return torch.linalg.matrix_norm(normalised - target)


def nc1(z: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """NC1 = trace(Sigma_W pinv(Sigma_B)) / m (docs/metrics.md#nc1).

    Normalisations: Sigma_W = (1/N) sum_i (z_i - mu_{y_i})(z_i - mu_{y_i})^T over all
    samples; Sigma_B = (1/m) sum_c (mu_c - mu_bar)(mu_c - mu_bar)^T with mu_bar =
    (1/m) sum_c mu_c, the unweighted mean of the class means, so that Sigma_B describes
    the class-mean geometry whatever the class sizes (with balanced classes mu_bar is
    the global mean and this is Papyan et al.'s NC1). The pseudo-inverse is the
    Hermitian one with torch's default cut-off.

    Args:
        z: (..., N, d); labels: (N,) int in [0, m), every class present; n_classes: m >= 2.
    Returns:
        (...,).
    """
    z, labels, m = _inputs(z, labels, n_classes, min_classes=2)
    means, counts = _means(z, labels, m)  # (..., m, d)
    _require_all_present(counts, "nc1")
    centred = z - means[..., labels, :]  # (..., N, d)
    sigma_w = centred.transpose(-1, -2) @ centred / z.shape[-2]  # (..., d, d)
    spread = means - means.mean(-2, keepdim=True)  # (..., m, d)
    sigma_b = spread.transpose(-1, -2) @ spread / m  # (..., d, d)
    return (sigma_w * torch.linalg.pinv(sigma_b, hermitian=True)).sum((-1, -2)) / m


def _groups(minority, n_classes: int) -> tuple[Tensor, Tensor]:
    """Boolean (m,) masks of the majority and minority class ids."""
    try:
        ids = minority_classes(n_classes).tolist() if minority is None else list(minority)
    except TypeError:
        raise ValueError(f"minority must be a collection of class ids, got {minority!r}") from None
    if not all(hasattr(c, "__index__") and not isinstance(c, bool) for c in ids):
        raise ValueError(f"minority must be a collection of integer class ids, got {minority!r}")
    ids = [int(c) for c in ids]
    if not ids or len(set(ids)) != len(ids) or len(ids) >= n_classes or not all(0 <= c < n_classes for c in ids):
        raise ValueError(
            f"minority must be distinct class ids in [0, {n_classes}), at least one and fewer than all, "
            f"got {minority!r}"
        )
    is_minority = torch.zeros(n_classes, dtype=torch.bool)
    is_minority[ids] = True
    return ~is_minority, is_minority


def _group_mean(per_class: Tensor, members: Tensor, support: Tensor, group: str) -> Tensor:
    present = members & (support > 0)
    if not bool(present.any()):
        raise ValueError(f"y_test has no sample of any {group} class: its mean accuracy is undefined")
    return torch.where(present, per_class, 0.0).sum(-1) / present.sum()


def ncc_accuracy(
    z_train: Tensor,
    y_train: Tensor,
    z_test: Tensor,
    y_test: Tensor,
    n_classes: int,
    minority: Iterable[int] | None = None,
) -> dict[str, Tensor]:
    """Nearest-class-centre accuracy (docs/metrics.md#nearest-class-centre-accuracy).

    Centres are the class means of the training embeddings (not re-normalised); a test
    sample is assigned the class whose centre is nearest in Euclidean distance (ties:
    the lowest class id).

    Class groups: ``minority`` lists the minority class ids (default: the last
    floor(m/2) ids, `theory.simplex.minority_classes`, so the majority is the first
    ceil(m/2), matching step imbalance); the majority is every other class.

    Absent test classes: per_class[c] = (correct test samples of class c) / max(N_c, 1),
    so a class absent from the test set reads 0 and ``support[c] = 0`` marks it; the
    majority and minority means average only classes with support > 0 (no NaN). A group
    with no test sample at all raises ValueError. Every class must be present in training.

    Args:
        z_train: (..., N, d), y_train: (N,); z_test: (..., N', d), y_test: (N',);
            labels in [0, m); n_classes: m >= 2; minority: class ids or None.
    Returns:
        {"overall": (...,), "per_class": (..., m), "majority": (...,), "minority": (...,),
         "support": (m,) int64 test samples per class}.
    """
    z_train, y_train, m = _inputs(z_train, y_train, n_classes, min_classes=2, name="z_train")
    z_test, y_test, _ = _inputs(z_test, y_test, m, name="z_test")
    if z_test.shape[-1] != z_train.shape[-1]:
        raise ValueError(f"z_test must have d = {z_train.shape[-1]} like z_train, got shape {tuple(z_test.shape)}")
    majority_mask, minority_mask = _groups(minority, m)
    centres, train_counts = _means(z_train, y_train, m)
    _require_all_present(train_counts, "ncc_accuracy (y_train)")
    dtype = torch.promote_types(z_test.dtype, centres.dtype)
    distances = torch.cdist(z_test.to(dtype), centres.to(dtype))  # (..., N', m)
    correct = (distances.argmin(-1) == y_test).to(dtype)  # (..., N')
    support = _class_counts(y_test, m)
    hits = correct.new_zeros(correct.shape[:-1] + (m,)).index_add(-1, y_test, correct)  # (..., m)
    per_class = hits / support.clamp(min=1).to(dtype)
    majority_mask, minority_mask = majority_mask.to(support.device), minority_mask.to(support.device)
    return {
        "overall": correct.mean(-1),
        "per_class": per_class,
        "majority": _group_mean(per_class, majority_mask, support, "majority"),
        "minority": _group_mean(per_class, minority_mask, support, "minority"),
        "support": support,
    }


def _balanced_instances(labels: Tensor, instances: Tensor, n_classes: int) -> int:
    """n, the common number of instances per class; checks ids are consistent and balanced."""
    same_instance = instances[:, None] == instances[None, :]
    if bool((same_instance & (labels[:, None] != labels[None, :])).any()):
        raise ValueError("instances must not span classes: views sharing an instance id must share a label")
    unique, inverse = torch.unique(instances, return_inverse=True)
    instance_labels = torch.zeros_like(unique).scatter_(0, inverse, labels)
    per_class = _class_counts(instance_labels, n_classes)
    if not bool((per_class == per_class[0]).all()) or int(per_class[0]) < 2:
        raise ValueError(
            f"ssem_distance needs balanced classes with n_per_class >= 2 instances each, got {per_class.tolist()}"
        )
    return int(per_class[0])


def ssem_distance(z: Tensor, labels: Tensor, instances: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """Distance of an embedding set to the SSEM family (docs/metrics.md#distance-to-ssem).

    The SSEM Gram G(beta) has entries 1 (same instance), s_w(beta) (same class, other
    instance) and s_b(beta) (other class), `theory.ssem.ssem_gram_entries`. Both are
    affine in beta, s = s(0) + beta (s(1) - s(0)), so the least-squares fit of the
    off-instance entries of G = z z^T,
        beta_hat = sum_ab a_ab (G_ab - s_ab(0)) / sum_ab a_ab^2,  a_ab = s_ab(1) - s_ab(0),
    is closed form; it is clipped to [0, 1] (the fit is a convex quadratic in beta, so the
    clipped value is the constrained minimiser).

    Args:
        z: (..., N, d); labels, instances: (N,) int ids as in `simulate.losses`; classes
            balanced (the same n >= 2 instances each; views per instance may differ);
            n_classes: m >= 2, every class present.
    Returns:
        (beta_hat, residual), each (...,); residual = max_ab |G_ab - G(beta_hat)_ab| over
        all entries (same-instance entries included, so unaligned views count).
    """
    z, labels, m = _inputs(z, labels, n_classes, min_classes=2)
    instances = require_ids("instances", instances, z.shape[-2], z.device)
    _require_all_present(_class_counts(labels, m), "ssem_distance")
    n = _balanced_instances(labels, instances, m)
    (s_w0, s_w1), (s_b0, s_b1) = (entries.tolist() for entries in ssem_gram_entries([0.0, 1.0], m, n))
    same_instance = instances[:, None] == instances[None, :]
    same_class = labels[:, None] == labels[None, :]

    def constant(value: float) -> Tensor:  # built in z's dtype: a python float would pass through float32
        return torch.tensor(value, dtype=z.dtype, device=z.device)

    offset = torch.where(same_class, constant(s_w0), constant(s_b0))  # (N, N): s(0)
    slope = torch.where(same_class, constant(s_w1 - s_w0), constant(s_b1 - s_b0))  # (N, N): s(1) - s(0)
    slope = torch.where(same_instance, 0.0, slope)  # same-instance entries are 1 for every beta
    G = z @ z.transpose(-1, -2)  # (..., N, N)
    fitted = torch.where(same_instance, 0.0, slope * (G - offset)).sum((-1, -2)) / slope.square().sum()
    beta = fitted.clamp(0.0, 1.0)
    model = torch.where(same_instance, 1.0, offset + beta[..., None, None] * slope)
    return beta, (G - model).abs().amax((-1, -2))


def variances_from_class_mean_gram(G: Tensor | ArrayLike, class_counts: Tensor | ArrayLike) -> Variances:
    """T, W, B of unit embeddings from their class-mean Gram G_ck = <mu_c, mu_k> alone.

    The same quantities as `variances`, written in G: with f_c = N_c/N,
    |mu|^2 = sum_ck f_c f_k G_ck, so T = 1 - f^T G f, W = sum_c f_c (1 - G_cc), B = T - W.
    Used where only a Gram is known (the exchangeable certificates).

    Args:
        G: (..., m, m) class-mean Gram (tensor or array); class_counts: (m,) N_c >= 0, sum > 0.
    Returns:
        Variances(total, within, between), each (...,).
    """
    G = torch.as_tensor(G, dtype=torch.float64) if not isinstance(G, Tensor) else require_embeddings("G", G)
    if G.dim() < 2 or G.shape[-1] != G.shape[-2]:
        raise ValueError(f"G must be a (..., m, m) matrix, got shape {tuple(G.shape)}")
    counts = torch.as_tensor(class_counts, dtype=G.dtype, device=G.device)
    if counts.shape != G.shape[-1:] or not bool((counts >= 0).all()) or not bool(counts.sum() > 0):
        raise ValueError(f"class_counts must be {G.shape[-1]} counts >= 0 with a positive sum, got {class_counts!r}")
    fractions = counts / counts.sum()  # (m,)
    total = 1.0 - torch.einsum("c,...ck,k->...", fractions, G, fractions)
    within = ((1.0 - torch.diagonal(G, dim1=-2, dim2=-1)) * fractions).sum(-1)
    return Variances(total, within, total - within)
