"""Training of a network with prototype SCL or the combined loss, and its geometry per epoch.

`run(config)` trains one network and returns its epoch log and final metrics; it reads
top to bottom as setup -> data -> network -> evaluation -> training. Losses come from
`simulate.losses` (DESIGN §2.1-§2.4) and metrics from `simulate.metrics` (DESIGN §3);
nothing here defines either.

Each step draws a batch of B images, makes two augmented views of each (parameters
from a generator seeded by (seed, epoch, step), so a resumed run repeats the same
randomness), embeds both views in one forward pass and minimises

* ``loss="prototype"``: prototype SupCon with n_w = ``n_proto`` copies of each fixed
  prototype (geometry ``etf``, ``orthogonal`` or ``minority_spread`` from
  `theory.simplex`), anchors ``"data"`` or ``"all"``; n_w = 0 is plain SupCon;
* ``loss="combined"``: (1 - alpha) L_sup + alpha L_self, variant ``"instance"`` or
  ``"supcon"``, with the two views of an image forming one instance.

After every ``eval_every`` epochs the un-augmented train and test images are embedded
and the epoch's record gets DeltaG* of the train class means to the prototype Gram
(the ETF Gram by default), total/within/between variance, NC1 and nearest-class-centre
accuracy (overall, majority, minority; train and test).

Under ``torchrun`` (one process per device, `distributed_context`), every process draws
the same global batch and embeds its own slice; the embeddings are all-gathered so the
loss sees the whole global batch, exactly as one process would. With BatchNorm the
processes normalise their own slices (SyncBatchNorm on CUDA restores the global
statistics; gloo on the CPU has no SyncBatchNorm, so CPU multi-process runs differ from
one process by the BatchNorm batch statistics only).

On CUDA: data resident on the device as uint8, bf16 autocast (losses and metrics in
float32 or wider), channels_last, fused SGD, no host synchronisation inside the step
loop, images/s from CUDA events. `configure_backends` sets the global cuDNN flags; the
command line calls it, `run` does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from empirical.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from empirical.data import (
    CIFAR_AUGMENTATION,
    DATASETS,
    DIGITS_AUGMENTATION,
    PROFILES,
    Augmentation,
    LabelledImages,
    augment,
    channel_stats,
    imbalanced,
    load_dataset,
    normalise,
    require_imbalance,
    sample_augmentation,
)
from empirical.models import MODELS, ContrastiveNet, build_model, count_parameters, cross_process_batchnorm
from simulate import losses, metrics
from theory import simplex
from theory.arguments import (
    require_alpha,
    require_choice,
    require_int,
    require_positive_real,
    require_tau,
    require_variant,
)

LOSSES = ("prototype", "combined")
ANCHORS = ("data", "all")
GEOMETRIES = ("etf", "orthogonal", "minority_spread")
#: Config fields that may change between a checkpoint and the run that resumes from it.
RESUMABLE_CHANGES = ("device", "data_dir", "download")


# ---------------------------------------------------------------------------
# Setup: configuration, devices, processes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one training run. The defaults are a small CPU run on digits.

    dataset, data_dir, download: which images (`empirical.data.DATASETS`) and where.
    imbalance (R >= 1), profile ("step" | "exp"), subset_seed: the imbalanced training subset.
    loss ("prototype" | "combined"); n_proto, anchors, geometry, spread: prototype SCL;
    alpha, variant: the combined loss; tau: temperature of either.
    model ("resnet18" | "small_cnn"), width (small_cnn), dim (embedding d), final_relu.
    epochs, batch_size (global), lr (peak), momentum, weight_decay, warmup_epochs: SGD
    with linear warm-up then cosine decay, per step.
    seed: network initialisation, batch order and augmentation. device: "cpu", "cuda", "cuda:k".
    eval_every: evaluate the geometry every this many epochs (and after the last).
    """

    dataset: str = "digits"
    data_dir: str = "data"
    download: bool = False
    imbalance: float = 1.0
    profile: str = "step"
    subset_seed: int = 0
    loss: str = "prototype"
    n_proto: int = 0
    anchors: str = "data"
    geometry: str = "etf"
    spread: float = 0.5
    alpha: float = 0.0
    variant: str = "instance"
    tau: float = 0.1
    model: str = "small_cnn"
    width: int = 16
    dim: int = 32
    final_relu: bool = False
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    seed: int = 0
    device: str = "cpu"
    eval_every: int = 1

    def __post_init__(self):
        require_choice("dataset", self.dataset, DATASETS)
        require_choice("profile", self.profile, PROFILES)
        require_choice("loss", self.loss, LOSSES)
        require_choice("anchors", self.anchors, ANCHORS)
        require_choice("geometry", self.geometry, GEOMETRIES)
        require_choice("model", self.model, MODELS)
        require_variant(self.variant, 2)
        require_imbalance(self.imbalance)
        require_alpha(self.alpha)
        require_tau(self.tau)
        spread = require_positive_real("spread", self.spread, allow_zero=True)
        if spread > 1:
            raise ValueError(f"spread must lie in [0, 1], got {self.spread}")
        for name, minimum in [("subset_seed", 0), ("n_proto", 0), ("width", 1), ("dim", 1), ("epochs", 1),
                              ("batch_size", 2), ("warmup_epochs", 0), ("seed", 0), ("eval_every", 1)]:
            require_int(name, getattr(self, name), minimum)
        require_positive_real("lr", self.lr)
        require_positive_real("weight_decay", self.weight_decay, allow_zero=True)
        if not 0 <= require_positive_real("momentum", self.momentum, allow_zero=True) < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not isinstance(self.download, bool) or not isinstance(self.final_relu, bool):
            raise ValueError(f"download and final_relu must be booleans, got {self.download!r}, {self.final_relu!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {self.device!r}") from None
        require_choice("device type", device.type, ("cpu", "cuda"))

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def resolve_device(name: str) -> torch.device:
    """"auto" -> the first CUDA device if there is one, else the CPU; other names as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but no CUDA device is available; use --device cpu or auto")
    return device


def configure_backends(device: torch.device) -> None:
    """Global speed flags for CUDA (cuDNN autotuning, TF32 matmuls). Changes process-wide state."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@contextlib.contextmanager
def distributed_context(device: torch.device):
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1); yields (rank, world_size, device).

    Backend nccl on CUDA (each process on cuda:LOCAL_RANK), gloo on the CPU. Outside
    torchrun it yields (0, 1, device) and touches nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield 0, 1, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), world_size, device
    finally:
        dist.destroy_process_group()


@dataclass(frozen=True)
class _Processes:
    """This process's rank, the world size, and a gloo group for host-side flags."""

    rank: int
    world: int
    control: object = None

    @staticmethod
    def current() -> _Processes:
        if not (dist.is_available() and dist.is_initialized()):
            return _Processes(0, 1)
        # A CPU all-reduce on a gloo group agrees on "stop now" without a CUDA synchronisation.
        control = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        return _Processes(dist.get_rank(), dist.get_world_size(), control)

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return bool(value.item())


def _seed(*parts: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------------------
# Data and prototypes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """The training subset and the test set on the device, with normalisation and augmentation."""

    train: LabelledImages
    test: LabelledImages
    mean: Tensor  # (C,)
    std: Tensor  # (C,)
    augmentation: Augmentation


def prepare_data(config: TrainConfig, device) -> PreparedData:
    """Load the dataset, keep the imbalanced training subset, move both splits to ``device``."""
    train, test = load_dataset(config.dataset, config.data_dir, config.download)
    train = imbalanced(train, config.imbalance, config.profile, seed=config.subset_seed)
    mean, std = channel_stats(train.images)
    augmentation = DIGITS_AUGMENTATION if config.dataset == "digits" else CIFAR_AUGMENTATION
    return PreparedData(train.to(device), test.to(device), mean.to(device), std.to(device), augmentation)


def prototypes(config: TrainConfig, n_classes: int) -> np.ndarray:
    """The fixed prototypes w_c as rows, (m, dim), in the configured geometry."""
    if config.geometry == "etf":
        return simplex.etf(n_classes, config.dim)
    if config.geometry == "orthogonal":
        return simplex.orthogonal_frame(n_classes, config.dim)
    return simplex.minority_spread(n_classes, config.dim, config.spread)


def global_batch_size(batch_size: int, n_train: int, world: int) -> int:
    """The batch actually used: at most the training set, and a multiple of the number of processes."""
    size = min(batch_size, n_train)
    size -= size % world
    if size < world:
        raise ValueError(f"batch_size must allow at least one image per process ({world}), got {batch_size}")
    return size


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up to lr over warmup_epochs, then cosine decay towards 0; ``step`` counts from 0."""
    total = config.epochs * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        return config.lr * (step + 1) / warm
    return config.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def epoch_order(n: int, seed: int, epoch: int, device) -> Tensor:
    """The permutation of the training set for one epoch, the same on every process; (n,)."""
    generator = torch.Generator().manual_seed(_seed(seed, 1, epoch))
    return torch.randperm(n, generator=generator).to(device)


# ---------------------------------------------------------------------------
# Network and loss
# ---------------------------------------------------------------------------


def make_network(config: TrainConfig, in_channels: int, device: torch.device) -> ContrastiveNet:
    """The network, initialised from ``config.seed`` without touching torch's global generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config.model, in_channels, config.dim, config.final_relu, config.width)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def two_view_batch(data: PreparedData, index: Tensor, generator: torch.Generator,
                   processes: _Processes) -> tuple[Tensor, Tensor, Tensor]:
    """This process's two augmented views of its slice of the global batch, and the gathered labels.

    Augmentation parameters are drawn for the whole global batch (2, B, 9) and sliced,
    so an image gets the same views whatever the number of processes.

    Args:
        index: (B,) training-set indices of the global batch.
    Returns:
        views (2 b, C, H, W) float, b = B / world, ordered [view 1 of the slice; view 2];
        labels and instances (2 B,) of the all-gathered embeddings, whose order is
        rank-major, then view, then image (instance = position in the global batch).
    """
    batch, world = index.shape[0], processes.world
    local = batch // world
    params = sample_augmentation(2 * batch, data.augmentation, generator).view(2, batch, -1)
    mine = slice(processes.rank * local, (processes.rank + 1) * local)
    images = data.train.images[index[mine]]
    views = augment(torch.cat([images, images]), params[:, mine].reshape(2 * local, -1), data.mean, data.std)
    positions = torch.arange(batch, device=index.device).view(world, 1, local).expand(-1, 2, -1).reshape(-1)
    return views, data.train.labels[index][positions], positions


def batch_loss(config: TrainConfig, z: Tensor, labels: Tensor, instances: Tensor, protos: Tensor) -> Tensor:
    """The configured loss (from `simulate.losses`) of view embeddings z (N, d); scalar."""
    if config.loss == "prototype":
        return losses.prototype_supcon_loss(z, labels, protos, config.n_proto, config.tau, config.anchors)
    return losses.combined_loss(z, labels, instances, config.alpha, config.tau, config.variant)


def _gather_rows(z: Tensor, processes: _Processes) -> Tensor:
    """All processes' rows in rank order, (world n, d); gradients flow to this process's rows only.

    Every process computes the same loss on the gathered batch; with the loss scaled by
    the world size, DDP's gradient average equals the one-process gradient.
    """
    if processes.world == 1:
        return z
    parts = [torch.empty_like(z) for _ in range(processes.world)]
    dist.all_gather(parts, z.detach().contiguous())
    parts[processes.rank] = z
    return torch.cat(parts)


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@torch.no_grad()
def embed(model: torch.nn.Module, images: Tensor, mean: Tensor, std: Tensor, processes: _Processes,
          chunk: int = 512) -> Tensor:
    """Un-augmented embeddings of uint8 images in evaluation mode; (N, d) float32 on every process.

    Each process embeds a contiguous shard (padded to equal length for all_gather).
    """
    n = images.shape[0]
    share = -(-n // processes.world)
    mine = images[processes.rank * share:(processes.rank + 1) * share]
    was_training = model.training
    model.eval()
    device_type = images.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=device_type == "cuda"):
        parts = [model(_to_model_layout(normalise(part, mean, std))) for part in mine.split(chunk)]
    model.train(was_training)
    dim = parts[0].shape[1] if parts else _output_dim(model)
    z = torch.cat(parts) if parts else images.new_zeros((0, dim), dtype=torch.float32)
    if processes.world == 1:
        return z
    padded = torch.cat([z, z.new_zeros(share - z.shape[0], z.shape[1])])
    gathered = [torch.empty_like(padded) for _ in range(processes.world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: max(0, min(share, n - r * share))] for r, g in enumerate(gathered)])


def _output_dim(model: torch.nn.Module) -> int:
    return model.module.projector[-1].out_features if hasattr(model, "module") else model.projector[-1].out_features


def _to_model_layout(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


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


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


class _EpochTimer:
    """Wall time of the step loop: CUDA events on a GPU (one synchronisation at the end), else perf_counter."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.begin = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000
        else:
            self.seconds = time.perf_counter() - self.begin
        return False


def _check_resumable(saved: dict, config: TrainConfig, path) -> None:
    current = asdict(config)
    for key, value in current.items():
        if key not in RESUMABLE_CHANGES and saved.get(key) != value:
            raise CheckpointError(
                f"checkpoint {path} belongs to a different run ({key} = {saved.get(key)!r} there, {value!r} here); "
                "use another --out or delete it"
            )


def run(config: TrainConfig, *, checkpoint=None, resume: bool = False,
        should_stop: Callable[[], bool] | None = None, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train one network and return its epoch log and final metrics.

    Args:
        config: the run (see `TrainConfig`).
        checkpoint: path of the checkpoint file, written atomically after every epoch and
            on a stop request (by rank 0 only); None trains without writing anything.
        resume: continue from ``checkpoint`` (same config up to `RESUMABLE_CHANGES`),
            mid-epoch if it was written on a stop request. Raises CheckpointError if the
            file is unreadable or belongs to another run.
        should_stop: polled before every step; when it returns True (on any process) a
            checkpoint is written and the run returns with status "interrupted".
        on_epoch: called with each epoch's record.
    Returns:
        {"status": "finished" | "interrupted", "config", "epoch", "step", "log": [records],
         "final": last evaluated record, "gram": learned class-mean Gram (m x m lists),
         "target_gram", "class_sizes", "test_class_sizes", "n_parameters", "world_size"}.
    """
    # --- setup
    device = torch.device(config.device)
    processes = _Processes.current()
    # --- data
    data = prepare_data(config, device)
    n_classes = data.train.n_classes
    protos_np = prototypes(config, n_classes)  # (m, dim)
    protos = torch.as_tensor(protos_np, dtype=torch.float32, device=device)
    target_gram = torch.as_tensor(protos_np @ protos_np.T, dtype=torch.float64, device=device)  # (m, m)
    minority = simplex.minority_classes(n_classes).tolist()
    n_train = len(data.train)
    batch = global_batch_size(config.batch_size, n_train, processes.world)
    steps_per_epoch = n_train // batch
    # --- network
    model = make_network(config, data.train.images.shape[1], device)
    if processes.world > 1:
        # BatchNorm over the global batch, as one process would normalise it.
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = cross_process_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    network = model.module if processes.world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, fused=device.type == "cuda")
    state = {"epoch": 0, "step": 0, "loss_sum": 0.0, "log": []}
    if resume:
        saved = load_checkpoint(checkpoint, map_location=device)
        _check_resumable(saved["config"], config, checkpoint)
        network.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {key: saved[key] for key in state}

    def save(epoch: int, step: int, loss_sum: float, log: list) -> None:
        if checkpoint is not None and processes.rank == 0:
            save_checkpoint(checkpoint, {"config": asdict(config), "epoch": epoch, "step": step,
                                         "loss_sum": loss_sum, "model": network.state_dict(),
                                         "optimizer": optimizer.state_dict(), "log": log})

    def evaluate() -> tuple[dict, Tensor]:
        if processes.world > 1:  # running statistics agree up to float order; make them identical
            for buffer in network.buffers():
                dist.broadcast(buffer, 0)
        z_train = embed(network, data.train.images, data.mean, data.std, processes)
        z_test = embed(network, data.test.images, data.mean, data.std, processes)
        return geometry_metrics(z_train, data.train.labels, z_test, data.test.labels, target_gram, n_classes, minority)

    log = list(state["log"])
    result = {
        "config": asdict(config), "class_sizes": data.train.class_sizes(), "test_class_sizes": data.test.class_sizes(),
        "n_parameters": count_parameters(network), "world_size": processes.world, "batch_size": batch,
        "steps_per_epoch": steps_per_epoch, "target_gram": target_gram.tolist(),
    }
    # --- training
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    gram = None
    for epoch in range(state["epoch"], config.epochs):
        order = epoch_order(n_train, config.seed, epoch, device)
        first = state["step"] if epoch == state["epoch"] else 0
        loss_sum = torch.tensor(state["loss_sum"] if epoch == state["epoch"] else 0.0, device=device)
        lr = learning_rate(config, epoch * steps_per_epoch + first, steps_per_epoch)
        with _EpochTimer(device) as timer:
            for step in range(first, steps_per_epoch):
                if should_stop is not None and processes.any(bool(should_stop())):
                    save(epoch, step, float(loss_sum), log)
                    return {**result, "status": "interrupted", "epoch": epoch, "step": step, "log": log}
                lr = learning_rate(config, epoch * steps_per_epoch + step, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                index = order[step * batch:(step + 1) * batch]  # (B,) the global batch
                generator = torch.Generator(device=device).manual_seed(_seed(config.seed, 2, epoch, step))
                views, labels, instances = two_view_batch(data, index, generator, processes)
                with autocast:
                    z = model(_to_model_layout(views))  # (2 local, d) float32, unit rows
                loss = batch_loss(config, _gather_rows(z, processes), labels, instances, protos)
                (loss * processes.world).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach()
        record = {
            "epoch": epoch + 1,
            "loss": float(loss_sum) / steps_per_epoch,
            "lr": lr,
            "images_per_s": (steps_per_epoch - first) * batch / timer.seconds if steps_per_epoch > first else None,
            "train_seconds": timer.seconds,
        }
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            geometry, gram = evaluate()
            record.update(geometry)
        log.append(record)
        save(epoch + 1, 0, 0.0, log)
        if on_epoch is not None:
            on_epoch(record)
    if gram is None:  # resumed a finished run: evaluate the restored network once more
        _, gram = evaluate()
    final = next((r for r in reversed(log) if "delta_g" in r), {})
    return {**result, "status": "finished", "epoch": config.epochs, "step": 0, "log": log, "final": final,
            "gram": gram.tolist()}
