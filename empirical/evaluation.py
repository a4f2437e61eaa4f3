"""The geometry of a network's embeddings of a dataset, as training measures it (DESIGN §3).

`evaluate` embeds the un-augmented train and test images (`embed`: every process a shard,
then all-gathered) and measures, on the projector output z and on the backbone features h
(normalised to unit length), DeltaG* of the train class means to a target Gram, the
total/within/between variance, NC1 and nearest-class-centre accuracy (`geometry_metrics`,
from `simulate.metrics`; nothing here defines a metric). ``precise`` measures in float32
with TF32 off (`full_float32`); otherwise at the training precision (bf16 on CUDA).
"""

from __future__ import annotations

import contextlib

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
def embed(network: ContrastiveNet, images: Tensor, mean: Tensor, std: Tensor, processes: Processes,
          precise: bool = False, chunk: int = 512) -> dict[str, Tensor]:
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
    precision = full_float32(device) if precise else torch.autocast(device.type, dtype=torch.bfloat16,
                                                                     enabled=device.type == "cuda")
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


def geometry_metrics(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor, target_gram: Tensor,
                     n_classes: int, minority) -> tuple[dict, Tensor]:
    """DESIGN §3 metrics of embeddings (from `simulate.metrics`), in float64.

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


def evaluate(network: ContrastiveNet, data: PreparedData, target_gram: Tensor, processes: Processes,
             precise: bool) -> dict[str, tuple[dict, Tensor]]:
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
        record, gram = geometry_metrics(train[head], data.train.labels, test[head], data.test.labels, target_gram,
                                        n_classes, minority)
        measured[head] = ({**record, "eval_precision": precision}, gram)
    return measured
