"""The geometry of a network's embeddings of a dataset, as training measures it (docs/metrics.md).

`evaluate` embeds the un-augmented train and test images (`embed`: every process a shard,
then all-gathered) and measures, on the projector output z and on the backbone features h
(normalised to unit length), DeltaG* of the train class means to a target Gram, the
total/within/between variance, NC1 and nearest-class-centre accuracy (`geometry_metrics`,
from `simulate.metrics`; nothing here defines a metric). ``precise`` measures in float32
with TF32 off (`full_float32`); otherwise at the training precision (bf16 on CUDA).

`training_settled` is the convergence rule of an empirical claim (docs/verdicts.md#converged-training):
it reads a run's epoch log and decides whether the run has settled. `over_seeds` is the one summary of a
figure over seeds (mean, sample std, count) that the claims, the report and the sweep figures use.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from empirical.data import PreparedData, standardise
from empirical.distributed import Processes, gather_shards, shard, share_buffers
from empirical.models import ContrastiveNet
from simulate import metrics
from theory import simplex


@contextlib.contextmanager
def full_float32(device: torch.device):
    """TF32 off for the block on CUDA (float32 matmuls and convolutions in full precision); restored after."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def to_model_layout(x: Tensor) -> Tensor:
    """Images in the network's memory format: channels_last on CUDA (faster convolutions), as given on the CPU."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


@torch.no_grad()
def embed(
    network: ContrastiveNet,
    images: Tensor,
    mean: Tensor,
    std: Tensor,
    processes: Processes,
    precise: bool = False,
    chunk: int = 512,
) -> dict[str, Tensor]:
    """Un-augmented embeddings of uint8 images in evaluation mode, on every process.

    Returns {"projector": z (N, d), "backbone": h / |h| (N, F)} in float32. ``precise``:
    float32 throughout (TF32 off); otherwise bf16 autocast on CUDA, as in training. Each
    process embeds a contiguous shard (`empirical.distributed.shard`), then all are gathered.
    """
    n = images.shape[0]
    mine = images[shard(n, processes)]
    was_training = network.training
    network.eval()
    device = images.device
    precision = (
        full_float32(device)
        if precise
        else torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    )
    parts = {"projector": [], "backbone": []}
    with precision:
        for part in mine.split(chunk):
            h, z = network.features_and_embedding(to_model_layout(standardise(part, mean, std)))
            parts["backbone"].append(torch.nn.functional.normalize(h.float(), dim=-1))
            parts["projector"].append(z)
    network.train(was_training)
    widths = {"projector": network.projector[-1].out_features, "backbone": network.projector[0].in_features}
    result = {}
    for head, rows in parts.items():
        z = torch.cat(rows) if rows else torch.zeros((0, widths[head]), device=device)
        result[head] = gather_shards(z, n, processes)
    return result


def geometry_metrics(
    z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor, target_gram: Tensor, n_classes: int, minority
) -> tuple[dict, Tensor]:
    """The metrics of docs/metrics.md of embeddings (from `simulate.metrics`), in float64.

    Returns the record {delta_g, total_var, within_var, between_var, nc1,
    {train,test}_acc_{overall,majority,minority}} and the class-mean Gram G (m, m).
    """
    z_train, z_test = z_train.double(), z_test.double()
    variances = metrics.variances(z_train, y_train, n_classes)
    gram = metrics.class_mean_gram(z_train, y_train, n_classes)
    record = {
        "delta_g": float(metrics.delta_g(gram, target_gram.to(gram))),
        "total_var": float(variances.total),
        "within_var": float(variances.within),
        "between_var": float(variances.between),
        "nc1": float(metrics.nc1(z_train, y_train, n_classes)),
    }
    for split, (z, y) in {"train": (z_train, y_train), "test": (z_test, y_test)}.items():
        accuracy = metrics.ncc_accuracy(z_train, y_train, z, y, n_classes, minority=minority)
        record.update({f"{split}_acc_{key}": float(accuracy[key]) for key in ("overall", "majority", "minority")})
    return record, gram


def evaluate(
    network: ContrastiveNet, data: PreparedData, target_gram: Tensor, processes: Processes, precise: bool
) -> dict[str, tuple[dict, Tensor]]:
    """Geometry of the projector output and the backbone features: {head: (record, Gram)}.

    With several processes the BatchNorm running statistics (equal up to the order of
    float sums) are first made identical, so every process measures the same network.
    """
    share_buffers(network, processes)
    n_classes = data.train.n_classes
    minority = simplex.minority_classes(n_classes).tolist()
    train = embed(network, data.train.images, data.mean, data.std, processes, precise)
    test = embed(network, data.test.images, data.mean, data.std, processes, precise)
    precision = "float32" if precise or data.train.images.device.type != "cuda" else "bfloat16"
    measured = {}
    for head in ("projector", "backbone"):
        record, gram = geometry_metrics(
            train[head], data.train.labels, test[head], data.test.labels, target_gram, n_classes, minority
        )
        measured[head] = ({**record, "eval_precision": precision}, gram)
    return measured


#: The convergence rule (docs/verdicts.md#converged-training): over the last `SETTLING_TAIL` of the
#: epochs, each quantity the claim reads changes by at most its tolerance. DeltaG* lies in [0, 2] and W in
#: [0, 1]: 0.02 is 1-2 % of their range.
SETTLING_TOLERANCES = {"loss": 0.05, "delta_g": 0.02, "within_var": 0.02}
SETTLING_TAIL = 0.2
#: Quantities averaged over the epoch's augmented batches: they move from epoch to epoch even when the network
#: has settled, so their change is the drift of the window's second-half mean from its first-half mean.
BATCH_AVERAGED = ("loss",)


@dataclass(frozen=True)
class Settling:
    """What `training_settled` decided: settled, each quantity's change over the window, and why not."""

    settled: bool
    changes: dict
    first_epoch: int
    last_epoch: int
    reason: str | None = None


def window_change(values: list[float], batch_averaged: bool) -> float:
    """Change of a quantity over the window from its values in epoch order: the range (max - min), or for a
    batch-averaged quantity |mean of the last half - mean of the first half| (the middle value of an odd count
    left out)."""
    if not batch_averaged:
        return max(values) - min(values) if all(v == v for v in values) else math.nan
    half = len(values) // 2
    return abs(sum(values[-half:]) / half - sum(values[:half]) / half)


def training_settled(log: list[dict], tolerances: dict = SETTLING_TOLERANCES, tail: float = SETTLING_TAIL) -> Settling:
    """Whether a training run has converged, by the rule of docs/verdicts.md#converged-training.

    The window runs from epoch E - ceil(tail * E) to the last epoch E. For each quantity of
    ``tolerances`` the window's values are the logged ones at epochs inside it, plus the last value
    logged before it (so an evaluation every k epochs still covers the window's start). The run has
    settled when every quantity has at least two such values and their `window_change` is within
    its tolerance.
    """
    if not log or not 0 < tail <= 1:
        raise ValueError(f"need a non-empty log and tail in (0, 1], got {len(log)} records and tail {tail}")
    last = int(log[-1]["epoch"])
    first = last - math.ceil(tail * last)
    changes, problems = {}, []
    for name, tolerance in tolerances.items():
        logged = [(int(r["epoch"]), float(r[name])) for r in log if r.get(name) is not None]
        before = [value for epoch, value in logged if epoch <= first]
        values = before[-1:] + [value for epoch, value in logged if epoch > first]
        if not before or len(values) < 2:
            problems.append(f"{name} not logged at or before epoch {first} and after it")
            continue
        changes[name] = window_change(values, name in BATCH_AVERAGED)
        if not changes[name] <= tolerance:  # NaN: not settled
            problems.append(f"{name} moved by {changes[name]:.4g} > {tolerance:g} over epochs {first}-{last}")
    return Settling(not problems, changes, first, last, "; ".join(problems) or None)


def over_seeds(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof = 1 (0 for one value), n) of a figure's per-seed values."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("over_seeds needs at least one value")
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0, 1
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)), len(values)
