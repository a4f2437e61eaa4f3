"""The losses of docs/losses.md, each defined once, in torch.

Conventions shared by every loss here:

* Embeddings ``z`` have shape ``(..., N, d)``: any leading batch shape, N samples
  (all views of all instances), dimension d. They are expected to be unit vectors
  (s_ab = <z_a, z_b>); the losses do not normalise them. ``labels`` (class ids) and
  ``instances`` (instance ids) are int64 tensors of shape ``(N,)`` shared by the batch.
* ``alpha`` and ``tau`` are python reals or tensors broadcastable to ``z.shape[:-2]``
  (a grid of configurations shares one tensor z of shape (B, N, d) with alpha, tau of
  shape (B,)); every loss returns a tensor of shape ``z.shape[:-2]``.
* Everything is computed in float32 or wider: half-precision inputs are upcast and
  autocast is switched off inside the loss, so results are float32 for fp16/bf16
  inputs and the input dtype otherwise.
* Log-sum-exp throughout; excluded entries of a denominator are masked with -inf and
  positives are reduced with ``torch.where(mask, logits, 0)``; per-anchor divisions
  use counts clamped to 1 so that excluded anchors carry no NaN into the gradient.

Training loops use the fast path (`prototype_supcon_training_loss`,
`combined_training_loss`): the arguments that are fixed for a run are validated once
when the loss is built, tau and alpha stay Python floats, and a call runs the same
kernel as the public function without any check that reads a tensor on the host
(``bool(t.all())``, ``.item()``, ``.tolist()``): on a GPU such a read waits for every
queued kernel, once per step.

`balanced_layout` builds the labels and instance ids of a balanced (m, n, p) set in
the order used throughout the project: index = (i n + j) p + k for view k of
instance j of class i, so that ``z.reshape(m * n * p, d)`` of an (m, n, p, d) tensor
matches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from theory.arguments import (
    ANCHOR_MODES,
    VARIANTS,
    require_alpha,
    require_choice,
    require_int,
    require_tau,
    require_variant,
)

# ---------------------------------------------------------------------------
# Inputs: layout, validation, precision
# ---------------------------------------------------------------------------


def balanced_layout(
    n_classes: int, n_per_class: int, n_views: int, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Labels and instance ids of a balanced set of m classes, n instances each, p views each.

    Sample index (i n + j) p + k holds view k of instance j of class i (class-major,
    then instance, then view), so an (m, n, p, d) tensor reshaped to (m n p, d) matches.

    Returns:
        labels (m n p,) int64 = i; instances (m n p,) int64 = i n + j.
    """
    m = require_int("n_classes", n_classes, 1)
    n = require_int("n_per_class", n_per_class, 1)
    p = require_int("n_views", n_views, 1)
    index = torch.arange(m * n * p, device=device)
    return index // (n * p), index // p


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision inputs, the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _full_precision(loss):
    """Run a loss with autocast off, so matmuls and log-sum-exp stay in float32 or wider."""

    @functools.wraps(loss)
    def wrapper(*args, **kwargs):
        tensors = [value for value in (*args, *kwargs.values()) if isinstance(value, Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            return loss(*args, **kwargs)

    return wrapper


def require_embeddings(name: str, z: object, min_samples: int = 1) -> Tensor:
    """A floating (..., N, d) tensor, upcast to float32 if it is half precision."""
    if not isinstance(z, Tensor) or not z.is_floating_point() or z.dim() < 2:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"{name} must be a floating tensor of shape (..., N, d), got {shape}")
    if z.shape[-2] < min_samples or z.shape[-1] < 1:
        raise ValueError(f"{name} must have N >= {min_samples} samples and d >= 1, got shape {tuple(z.shape)}")
    return z.to(_compute_dtype(z.dtype))


def require_ids(name: str, ids: object, n_samples: int, device: torch.device | str | None) -> Tensor:
    """An integer (N,) tensor of class or instance ids."""
    if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of shape (N,) = ({n_samples},), got {ids!r}")
    if tuple(ids.shape) != (n_samples,):
        raise ValueError(f"{name} must have shape (N,) = ({n_samples},), got {tuple(ids.shape)}")
    return ids.to(device=device, dtype=torch.long)


def require_class_ids(labels: object, n_samples: int, n_classes: int, device: torch.device | str | None) -> Tensor:
    """Labels of shape (N,) with every entry in [0, n_classes)."""
    labels = require_ids("labels", labels, n_samples, device)
    if n_samples and not bool(((labels >= 0) & (labels < n_classes)).all()):
        raise ValueError(f"labels must lie in [0, {n_classes}) (one per prototype / class), got {labels.tolist()}")
    return labels


def _parameter(name: str, value, batch_shape: torch.Size, like: Tensor) -> Tensor:
    """alpha or tau as a tensor of ``like``'s dtype, validated and broadcastable to batch_shape."""
    if isinstance(value, Tensor):
        value = value.to(device=like.device, dtype=like.dtype)
        ok = (value >= 0) & (value <= 1) if name == "alpha" else torch.isfinite(value) & (value > 0)
        if not bool(ok.all()):
            valid = "[0, 1]" if name == "alpha" else "finite and > 0"
            raise ValueError(f"{name} must be {valid}, got {value[~ok].flatten()[0].item()!r}")
    else:
        checked = require_alpha(value) if name == "alpha" else require_tau(value)
        value = torch.as_tensor(checked, device=like.device, dtype=like.dtype)
    try:
        broadcast = torch.broadcast_shapes(value.shape, batch_shape)
    except RuntimeError:
        broadcast = None
    if broadcast != batch_shape:
        raise ValueError(
            f"{name} must be a scalar or broadcastable to the batch shape z.shape[:-2] = {tuple(batch_shape)}, "
            f"got shape {tuple(value.shape)}"
        )
    return value


def _fixed_vectors(name: str, vectors, z: Tensor) -> Tensor:
    """Prototypes or classifier rows: (m, d) or (..., m, d) broadcastable to z's batch, no gradient."""
    if not isinstance(vectors, Tensor) or not vectors.is_floating_point() or vectors.dim() < 2:
        raise ValueError(f"{name} must be a floating tensor of shape (m, d), got {vectors!r}")
    if vectors.shape[-1] != z.shape[-1] or vectors.shape[-2] < 1:
        raise ValueError(f"{name} must have shape (m, d) with m >= 1, d = {z.shape[-1]}, got {tuple(vectors.shape)}")
    try:
        broadcast = torch.broadcast_shapes(vectors.shape[:-2], z.shape[:-2])
    except RuntimeError:
        broadcast = None
    if broadcast != z.shape[:-2]:
        raise ValueError(f"{name} leading shape {tuple(vectors.shape[:-2])} must broadcast to {tuple(z.shape[:-2])}")
    return vectors.detach().to(device=z.device, dtype=z.dtype)


def _similarities(x: Tensor, y: Tensor, tau: Tensor | float) -> Tensor:
    """<x_a, y_b> / tau; (..., N, d), (..., M, d), tau (...) or a Python float -> (..., N, M)."""
    return x @ y.transpose(-1, -2) / (tau if isinstance(tau, float) else tau[..., None, None])


# ---------------------------------------------------------------------------
# Reductions over positives
# ---------------------------------------------------------------------------


def _anchor_losses(log_denominator: Tensor, logits: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """l_a = log_denominator_a - mean_{b in P(a)} logits_ab, and the count |P(a)|.

    log_denominator (..., N), logits (..., N, M), positive (N, M) bool -> (..., N), (N,).
    Anchors with |P(a)| = 0 get l_a = log_denominator_a (divide by the clamped count):
    callers exclude them, and the clamp keeps 0/0 out of the gradient.
    """
    count = positive.sum(-1)  # (N,)
    positive_sum = torch.where(positive, logits, 0.0).sum(-1)  # (..., N)
    return log_denominator - positive_sum / count.clamp(min=1), count


def _mean_over_anchors(losses: Tensor, weight: Tensor) -> Tensor:
    """sum_a weight_a l_a / sum_a weight_a; weight (N,) >= 0 (0 excludes an anchor)."""
    return torch.where(weight > 0, losses * weight, 0.0).sum(-1) / weight.sum()


# ---------------------------------------------------------------------------
# Paper B: combined loss (docs/losses.md, combined loss)
# ---------------------------------------------------------------------------


def _instance_masks(labels: Tensor, instances: Tensor) -> tuple[Tensor, Tensor]:
    """(same_instance, same_class_other_instance), each (N, N) bool; checks ids are consistent."""
    same_class = labels[:, None] == labels[None, :]
    same_instance = instances[:, None] == instances[None, :]
    if bool((same_instance & ~same_class).any()):
        raise ValueError("instances must not span classes: views sharing an instance id must share a label")
    return same_instance, same_class & ~same_instance


@_full_precision
def combined_loss_terms(
    z: Tensor, labels: Tensor, instances: Tensor, tau: float | Tensor, variant: str = "instance"
) -> tuple[Tensor, Tensor]:
    """(L_sup, L_self) of Paper B's combined loss, each of shape z.shape[:-2].

    docs/losses.md#combined-loss-instance-variant and #combined-loss-supcon-variant.

    With logp(a, b) = s_ab/tau - log sum_{c in D(a)} exp(s_ac/tau):

    * ``"instance"`` (default): D(a) = all of V (c = a included).
      L_self = mean of -logp(a, b) over ordered pairs of the same instance, b = a included;
      L_sup = mean of -logp(a, b) over ordered pairs of the same class and different
      instances. Both are means over pairs (with balanced sizes: the same as per anchor).
    * ``"supcon"``: D(a) = V minus a; the self positives of a are the other views of its
      instance (every instance needs >= 2 views). Each term is the mean over anchors of
      the anchor's mean over its positives; anchors without supervised positives (an
      instance alone in its class) are left out of L_sup's mean.

    Args:
        z: (..., N, d) unit embeddings. labels, instances: (N,) int ids; views of one
            instance share an instance id, instance ids are unique across classes.
        tau: python real or tensor broadcastable to z.shape[:-2], > 0.
    Raises:
        ValueError: bad shapes, tau, variant, inconsistent ids, no supervised pair at all.
    """
    z = require_embeddings("z", z)
    n = z.shape[-2]
    labels, instances = require_ids("labels", labels, n, z.device), require_ids("instances", instances, n, z.device)
    require_choice("variant", variant, VARIANTS)
    tau = _parameter("tau", tau, z.shape[:-2], z)
    same_instance, supervised = combined_masks(labels, instances, variant)
    return _combined_terms(z, same_instance, supervised, tau, variant)


def combined_masks(labels: Tensor, instances: Tensor, variant: str) -> tuple[Tensor, Tensor]:
    """(same_instance, same_class_other_instance) (N, N) bool of checked ids for the combined loss's `variant`:
    raises unless instances stay within a class, some pair shares a class across instances, and (variant
    "supcon") every instance has two views."""
    same_instance, supervised = _instance_masks(labels, instances)
    if not bool(supervised.any()):
        raise ValueError("labels/instances give no pair of the same class and different instances: L_sup is undefined")
    if variant == "supcon":
        require_variant(variant, int(same_instance.sum(-1).min()))  # views of the smallest instance
    return same_instance, supervised


def _combined_terms(z: Tensor, same_instance: Tensor, supervised: Tensor, tau, variant: str) -> tuple[Tensor, Tensor]:
    """(L_sup, L_self) of `combined_loss_terms` from checked masks (N, N); no validation, no host read."""
    logits = _similarities(z, z, tau)  # (..., N, N)
    if variant == "instance":
        log_denominator = torch.logsumexp(logits, dim=-1)  # (..., N)
        sup, sup_count = _anchor_losses(log_denominator, logits, supervised)
        own, own_count = _anchor_losses(log_denominator, logits, same_instance)
        # Pair means = per-anchor means weighted by the anchor's number of positives.
        return _mean_over_anchors(sup, sup_count), _mean_over_anchors(own, own_count)
    diagonal = torch.eye(z.shape[-2], dtype=torch.bool, device=z.device)
    log_denominator = torch.logsumexp(logits.masked_fill(diagonal, -math.inf), dim=-1)
    sup, sup_count = _anchor_losses(log_denominator, logits, supervised)
    own, own_count = _anchor_losses(log_denominator, logits, same_instance & ~diagonal)
    return _mean_over_anchors(sup, (sup_count > 0).to(z.dtype)), _mean_over_anchors(own, (own_count > 0).to(z.dtype))


@_full_precision
def combined_loss(
    z: Tensor, labels: Tensor, instances: Tensor, alpha: float | Tensor, tau: float | Tensor, variant: str = "instance"
) -> Tensor:
    """Paper B's loss L = (1 - alpha) L_sup + alpha L_self (docs/losses.md#combined-loss-instance-variant).

    L_sup and L_self are defined in `combined_loss_terms` (variant "instance": pair
    means, anchor kept in its denominator and self positives; variant "supcon": anchor
    removed from both, per-anchor means, needs >= 2 views per instance).

    Args:
        z: (..., N, d) unit embeddings of all views of all instances.
        labels: (N,) int class ids. instances: (N,) int instance ids.
        alpha: in [0, 1]; tau: > 0. Python reals or tensors broadcastable to z.shape[:-2].
        variant: "instance" | "supcon".
    Returns:
        (...,) = z.shape[:-2].
    """
    z = require_embeddings("z", z)
    alpha = _parameter("alpha", alpha, z.shape[:-2], z)
    sup, own = combined_loss_terms(z, labels, instances, tau, variant)
    return (1.0 - alpha) * sup + alpha * own


# ---------------------------------------------------------------------------
# Paper A: SupCon, prototype SupCon, fixed-classifier cross-entropy (docs/losses.md)
# ---------------------------------------------------------------------------


def _multiset_supcon_anchors(z: Tensor, x: Tensor, labels: Tensor, multiplicity: Tensor, tau: Tensor):
    """Per-anchor SupCon on a multiset S holding multiplicity_j identical copies of x_j.

    The first A = z.shape[-2] elements of x are the anchors (z = x[..., :A, :]). A copy
    of x_i sees o_ij = multiplicity_j - [i = j] copies of x_j, all with q_ij = <x_i, x_j>/tau,
    so for that anchor (docs/losses.md#per-anchor-scl on S):
        log sum_{c in S minus anchor} e^{q} = LSE_j (log o_ij + q_ij)      (log 0 = -inf drops j),
        |P(i)| = sum_{j: y_j = y_i} o_ij,  sum_{b in P(i)} q = sum_{j: y_j = y_i} o_ij q_ij.
    All multiplicity_i copies of x_i have the same l_i.

    Args:
        z: (..., A, d) anchors; x: (..., K, d) distinct elements, K >= A; labels (K,);
        multiplicity (K,) >= 1 in x's dtype; tau (...).
    Returns:
        l (..., A), |P| (A,) (anchors with |P| = 0 carry a meaningless finite l).
    """
    n_anchors, n_elements = z.shape[-2], x.shape[-2]
    others = multiplicity - torch.eye(n_anchors, n_elements, dtype=x.dtype, device=x.device)  # (A, K)
    logits = _similarities(z, x, tau)  # (..., A, K)
    log_denominator = torch.logsumexp(logits + torch.log(others), dim=-1)  # (..., A)
    positive = (labels[:n_anchors, None] == labels[None, :]) & (others > 0)  # (A, K)
    weight = torch.where(positive, others, 0.0)
    count = weight.sum(-1)
    positive_sum = torch.where(positive, logits * weight, 0.0).sum(-1)
    return log_denominator - positive_sum / count.clamp(min=1), count


@_full_precision
def supcon_loss_per_anchor(z: Tensor, labels: Tensor, tau: float | Tensor) -> tuple[Tensor, Tensor]:
    """Per-anchor SupCon l_a (docs/losses.md#per-anchor-scl) with every sample an anchor.

    l_a = -(1/|P(a)|) sum_{b in P(a)} [s_ab/tau - log sum_{c != a} exp(s_ac/tau)],
    P(a) = {b != a, y_b = y_a}.

    Returns:
        l (..., N) and valid (N,) bool = (|P(a)| > 0); l_a of an invalid anchor is
        meaningless (finite when N >= 2) and must be excluded.
    """
    z = require_embeddings("z", z)
    labels = require_ids("labels", labels, z.shape[-2], z.device)
    tau = _parameter("tau", tau, z.shape[:-2], z)
    return _supcon_per_anchor(z, labels, tau)


def _supcon_per_anchor(z: Tensor, labels: Tensor, tau) -> tuple[Tensor, Tensor]:
    """(l (..., N), valid (N,)) of `supcon_loss_per_anchor`; no validation, no host read."""
    ones = torch.ones(z.shape[-2], dtype=z.dtype, device=z.device)
    losses, count = _multiset_supcon_anchors(z, z, labels, ones, tau)
    return losses, count > 0


@_full_precision
def supcon_loss(z: Tensor, labels: Tensor, tau: float | Tensor) -> Tensor:
    """SupCon of Paper A (docs/losses.md#per-anchor-scl): mean of l_a over the anchors with a non-empty P(a).

    Every sample is an anchor; P(a) = {b != a, y_b = y_a};
    l_a = -(1/|P(a)|) sum_{b in P(a)} [s_ab/tau - log sum_{c != a} exp(s_ac/tau)].
    Policy: an anchor whose class has no other sample in the batch (empty P(a)) is
    left out of the mean; class sizes are arbitrary.

    Args:
        z: (..., N, d) unit embeddings; labels: (N,) int; tau: > 0, real or tensor
            broadcastable to z.shape[:-2].
    Returns:
        (...,) = z.shape[:-2].
    Raises:
        ValueError: bad shapes or tau, or no anchor has a positive.
    """
    losses, valid = supcon_loss_per_anchor(z, labels, tau)
    if not bool(valid.any()):
        raise ValueError("labels give no anchor a positive (every class has a single sample): supcon_loss is undefined")
    return _mean_over_anchors(losses, valid.to(losses.dtype))


@_full_precision
def prototype_supcon_loss(
    z: Tensor, labels: Tensor, prototypes: Tensor, n_proto: int, tau: float | Tensor, anchors: str = "data"
) -> Tensor:
    """Prototype SupCon of Paper A (docs/losses.md#prototype-scl), at a cost independent of n_proto.

    S = the batch z plus n_w = n_proto identical copies of each fixed prototype w_c
    (label c); prototypes get no gradient. SupCon (docs/losses.md#per-anchor-scl) on S with anchors the
    batch samples (``anchors="data"``) or every element of S (``anchors="all"``);
    anchors with empty P(a) are left out of the mean. n_proto = 0 is `supcon_loss`.

    Reduced formula (why copies never need materialising). Write q_ab = s_ab/tau;
    N_c = batch samples of class c.

    * Data anchor a of class y: S minus a holds the other batch samples and, for each
      class k, n_w copies that all have q = <z_a, w_k>/tau. A sum of n_w equal terms
      e^q equals e^{log n_w + q}, so
        log sum_{c in S, c != a} e^{q_ac}
          = LSE( {q_ab : batch b != a}  U  {log n_w + <z_a, w_k>/tau : k = 1..m} ),
      P(a) = {batch b != a of class y} U {n_w copies of w_y}, |P(a)| = N_y - 1 + n_w,
        sum_{b in P(a)} q_ab = sum_{batch b in P(a)} q_ab + n_w <z_a, w_y>/tau.
    * Prototype anchor (anchors="all"), one copy of w_c: S minus itself holds the batch,
      n_w copies of each w_k (k != c) and n_w - 1 copies of w_c, so
        log-denominator = LSE( {<w_c, z_b>/tau : b}  U  {log n_w + <w_c, w_k>/tau : k != c}
                               U  {log(n_w - 1) + <w_c, w_c>/tau} )   (last set empty if n_w = 1),
      P = the n_w - 1 other copies and the batch samples of class c, |P| = n_w - 1 + N_c,
        sum_P q = (n_w - 1) <w_c, w_c>/tau + sum_{b: y_b = c} <w_c, z_b>/tau.
      All n_w copies of w_c share this l_c, so each class enters the mean with weight
      n_w (and none if |P| = 0, i.e. n_w = 1 and class c absent from the batch):
        loss = [sum_{data a} l_a + n_w sum_{valid c} l_c] / [N + n_w #valid c].

    Both cases are one computation on the distinct elements x = [z; w_1..w_m] with
    multiplicities (1, .., 1, n_w, .., n_w): one (A, N + m) Gram, one log-sum-exp, A = N
    ("data") or N + m ("all") anchor rows; nothing scales with n_w.

    Args:
        z: (..., N, d) unit embeddings; labels: (N,) int in [0, m).
        prototypes: (m, d) (or (..., m, d) broadcastable to z's batch) fixed unit vectors.
        n_proto: int >= 0, copies of each prototype. tau: > 0, real or tensor
            broadcastable to z.shape[:-2]. anchors: "data" | "all".
    Returns:
        (...,) = z.shape[:-2].
    """
    z = require_embeddings("z", z)
    n_proto = require_int("n_proto", n_proto, 0)
    require_choice("anchors", anchors, ANCHOR_MODES)
    prototypes = _fixed_vectors("prototypes", prototypes, z)
    labels = require_class_ids(labels, z.shape[-2], prototypes.shape[-2], z.device)
    if n_proto == 0:
        return supcon_loss(z, labels, tau)
    tau = _parameter("tau", tau, z.shape[:-2], z)
    return _prototype_supcon(z, labels, prototypes, n_proto, tau, anchors)


def _prototype_supcon(z: Tensor, labels: Tensor, prototypes: Tensor, n_proto: int, tau, anchors: str) -> Tensor:
    """`prototype_supcon_loss` for n_proto >= 1 on checked arguments; no validation, no host read."""
    n, m = z.shape[-2], prototypes.shape[-2]
    x = torch.cat([z, prototypes.expand(z.shape[:-2] + prototypes.shape[-2:])], dim=-2)  # (..., N + m, d)
    all_labels = torch.cat([labels, torch.arange(m, device=z.device)])
    multiplicity = torch.cat([z.new_ones(n), z.new_full((m,), float(n_proto))])
    anchor_rows = x if anchors == "all" else z
    losses, count = _multiset_supcon_anchors(anchor_rows, x, all_labels, multiplicity, tau)
    weight = torch.where(count > 0, multiplicity[: anchor_rows.shape[-2]], 0.0)
    return _mean_over_anchors(losses, weight)


@_full_precision
def fixed_classifier_ce(h: Tensor, labels: Tensor, classifier: Tensor, tau: float | Tensor) -> Tensor:
    """Cross-entropy with a fixed classifier: mean_i -log softmax_c(<h_i, w_c>/tau)[y_i].

    docs/losses.md#cross-entropy-with-a-fixed-classifier.

    The classifier gets no gradient; h is expected unit-norm (not normalised here).

    Args:
        h: (..., N, d) embeddings; labels: (N,) int in [0, m).
        classifier: (m, d) (or (..., m, d) broadcastable to h's batch) rows w_c.
        tau: > 0, real or tensor broadcastable to h.shape[:-2].
    Returns:
        (...,) = h.shape[:-2].
    """
    h = require_embeddings("h", h)
    classifier = _fixed_vectors("classifier", classifier, h)
    labels = require_class_ids(labels, h.shape[-2], classifier.shape[-2], h.device)
    tau = _parameter("tau", tau, h.shape[:-2], h)
    log_probs = torch.log_softmax(_similarities(h, classifier, tau), dim=-1)  # (..., N, m)
    picked = torch.gather(log_probs, -1, labels.expand(log_probs.shape[:-1])[..., None])[..., 0]
    return -picked.mean(-1)


# ---------------------------------------------------------------------------
# Training fast path: validated once per run, no host synchronisation per call
# ---------------------------------------------------------------------------


def prototype_supcon_training_loss(
    prototypes: Tensor | None, n_proto: int, tau: float, anchors: str = "data"
) -> Callable[[Tensor, Tensor], Tensor]:
    """`prototype_supcon_loss` for a training loop: ``loss(z, labels)`` with the run's fixed arguments checked here.

    Builds once: n_proto (int >= 0), anchors, the prototypes (m, d) (detached, kept on
    their device; None allowed when n_proto = 0) and tau (a finite real > 0, kept as a Python float). The
    returned function computes exactly the loss of `prototype_supcon_loss` (docs/losses.md#prototype-scl)
    with the same kernels, but checks nothing per call and never reads a tensor on
    the host, so a step on a GPU queues its kernels without waiting.

    The caller guarantees what the public function would check: z (N, d) floating on
    the prototypes' device with d = the prototypes' d, labels (N,) int64 in [0, m).
    With n_proto = 0 (plain SupCon) a batch in which no anchor has a positive gives NaN
    (0/0) where the public function raises; two views of every image rule that out.

    Returns:
        loss(z (N, d), labels (N,)) -> scalar tensor, float32 or wider.
    """
    n_proto = require_int("n_proto", n_proto, 0)
    require_choice("anchors", anchors, ANCHOR_MODES)
    if n_proto > 0:  # n_proto = 0 uses no prototype: None is accepted there
        if not isinstance(prototypes, Tensor) or not prototypes.is_floating_point() or prototypes.dim() != 2:
            raise ValueError(f"prototypes must be a floating tensor of shape (m, d), got {prototypes!r}")
        prototypes = prototypes.detach().to(_compute_dtype(prototypes.dtype))
    tau = float(require_tau(tau))  # a Python float: no tensor to build or copy per step

    @_full_precision
    def loss(z: Tensor, labels: Tensor) -> Tensor:
        z = z.to(_compute_dtype(z.dtype))
        if n_proto == 0:
            losses, valid = _supcon_per_anchor(z, labels, tau)
            return _mean_over_anchors(losses, valid.to(losses.dtype))
        return _prototype_supcon(z, labels, prototypes.to(z.dtype), n_proto, tau, anchors)

    return loss


def combined_training_loss(
    alpha: float, tau: float, variant: str = "instance"
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """`combined_loss` for a training loop: ``loss(z, labels, instances)`` with alpha, tau, variant checked here.

    alpha in [0, 1] and tau > 0 are kept as Python floats. The returned function computes
    (1 - alpha) L_sup + alpha L_self of docs/losses.md (combined loss) with the kernels of
    `combined_loss_terms`, without checks and without reading a tensor on the host.

    The caller guarantees what the public function would check: z (N, d) floating,
    labels and instances (N,) int64 on z's device, views of one instance sharing a label,
    at least two views per instance for variant "supcon", and at least one pair of the
    same class and different instances (otherwise L_sup is 0/0 = NaN where the public
    function raises: a batch of more images than classes always has one).

    Returns:
        loss(z (N, d), labels (N,), instances (N,)) -> scalar tensor, float32 or wider.
    """
    alpha = float(require_alpha(alpha))
    tau = float(require_tau(tau))
    require_choice("variant", variant, VARIANTS)

    @_full_precision
    def loss(z: Tensor, labels: Tensor, instances: Tensor) -> Tensor:
        z = z.to(_compute_dtype(z.dtype))
        same_instance = instances[:, None] == instances[None, :]
        supervised = (labels[:, None] == labels[None, :]) & ~same_instance
        sup, own = _combined_terms(z, same_instance, supervised, tau, variant)
        return (1.0 - alpha) * sup + alpha * own

    return loss
