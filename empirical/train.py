"""Training of a network with prototype SCL or the combined loss, and its geometry over epochs.

`run(config)` trains one network and returns its epoch log and final metrics; it reads
top to bottom as setup -> data -> network -> evaluation -> training. Losses come from
`simulate.losses` (DESIGN §2.1-§2.4, through its training fast path) and metrics from
`simulate.metrics` (DESIGN §3); nothing here defines either.

Each step draws a batch of B images, makes two augmented views of each (parameters
from a generator seeded by (seed, epoch, step), so a resumed run repeats the same
randomness), embeds both views in one forward pass and minimises

* ``loss="prototype"``: prototype SupCon with n_w = ``n_proto`` copies of each fixed
  prototype (geometry ``etf``, ``orthogonal`` or ``minority_spread`` from
  `theory.simplex`), anchors ``"data"`` or ``"all"``; n_w = 0 is plain SupCon;
* ``loss="combined"``: (1 - alpha) L_sup + alpha L_self, variant ``"instance"`` or
  ``"supcon"``, with the two views of an image forming one instance.

Augmentation (`empirical.data.AUGMENTATIONS`): "supcon" (RandomResizedCrop, flip, colour
jitter, grayscale), "crop_flip" (pad 4, crop, flip) or "digits"; "auto" picks "digits"
for the digits datasets and "supcon" otherwise.

Every ``eval_every`` epochs and after the last, the un-augmented train and test images
are embedded and the epoch's record gets DeltaG* of the train class means to the
prototype Gram (the ETF Gram by default), total/within/between variance, NC1 and
nearest-class-centre accuracy (overall, majority, minority; train and test). Those
curves use the training precision (bf16 on CUDA); the final geometry is measured again
in float32 (TF32 off) on both the projector output z and the backbone features h
(normalised to unit length, as the metrics of DESIGN §3 assume).

Under ``torchrun`` (one process per device, `empirical.distributed`), every process
draws the same global batch and embeds its own slice; the embeddings are all-gathered so
the loss sees the whole global batch, exactly as one process would. BatchNorm uses the
global batch's statistics (SyncBatchNorm with NCCL, `CrossProcessBatchNorm` with gloo),
so buffers need no broadcast during training.

On CUDA: data resident on the device as uint8, bf16 autocast (losses and metrics in
float32 or wider), channels_last, fused SGD, optional torch.compile, no host
synchronisation inside the step (`train_step`; tests count them), images/s from CUDA
events. `configure_backends` sets the global cuDNN flags; the command line calls it,
`run` does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
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
    AUGMENTATIONS,
    DATASETS,
    N_CLASSES,
    PROFILES,
    Augmentation,
    LabelledImages,
    augment,
    channel_stats,
    imbalanced,
    load_dataset,
    require_imbalance,
    sample_augmentation,
    standardise,
)
from empirical.distributed import Processes, current_processes
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
AUGMENTATION_CHOICES = ("auto", *AUGMENTATIONS)
#: Config fields that may change between a checkpoint and the run that resumes from it.
RESUMABLE_CHANGES = ("device", "data_dir", "download", "compile")


# ---------------------------------------------------------------------------
# Setup: configuration, devices
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one training run. The defaults are a small CPU run on digits.

    dataset, data_dir, download: which images (`empirical.data.DATASETS`) and where.
    imbalance (R >= 1), profile ("step" | "exp"), subset_seed: the imbalanced training subset.
    loss ("prototype" | "combined"); n_proto, anchors, geometry, spread: prototype SCL;
    alpha, variant: the combined loss; tau: temperature of either.
    model ("resnet18" | "small_cnn"), width (small_cnn), dim (embedding d), final_relu.
    augmentation: "auto" | "supcon" | "crop_flip" | "digits" (`empirical.data.AUGMENTATIONS`).
    epochs, batch_size (global), lr (peak), momentum, weight_decay, warmup_epochs: SGD
    with linear warm-up then cosine decay, per step.
    seed: network initialisation, batch order and augmentation. device: "cpu", "cuda", "cuda:k".
    eval_every: evaluate the geometry every this many epochs (and after the last).
    compile: train through torch.compile (same maths; may be switched on or off on resume).
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
    augmentation: str = "auto"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    seed: int = 0
    device: str = "cpu"
    eval_every: int = 1
    compile: bool = False

    def __post_init__(self):
        require_choice("dataset", self.dataset, DATASETS)
        require_choice("profile", self.profile, PROFILES)
        require_choice("loss", self.loss, LOSSES)
        require_choice("anchors", self.anchors, ANCHORS)
        require_choice("geometry", self.geometry, GEOMETRIES)
        require_choice("model", self.model, MODELS)
        require_choice("augmentation", self.augmentation, AUGMENTATION_CHOICES)
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
        for name in ("download", "final_relu", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean, got {getattr(self, name)!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {self.device!r}") from None
        require_choice("device type", device.type, ("cpu", "cuda"))
        m = N_CLASSES[self.dataset]
        if self.loss == "prototype" and self.n_proto > 0:
            prototypes(self, m)  # the prototypes must fit in dim: ValueError naming dim otherwise
        if self.loss == "combined" and self.batch_size <= m:
            raise ValueError(f"batch_size must exceed the number of classes ({m}) for the combined loss, so that "
                             f"every batch holds two images of one class (L_sup needs a pair), got {self.batch_size}")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def augmentation_name(self) -> str:
        """The recipe used: the configured one, or for "auto" "digits" on digits and "supcon" otherwise."""
        if self.augmentation != "auto":
            return self.augmentation
        return "digits" if self.dataset.startswith("digits") else "supcon"


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
    augmentation = AUGMENTATIONS[config.augmentation_name]
    return PreparedData(train.to(device), test.to(device), mean.to(device), std.to(device), augmentation)


def prototypes(config: TrainConfig, n_classes: int) -> np.ndarray:
    """The fixed prototypes w_c as rows, (m, dim), in the configured geometry."""
    if config.geometry == "etf":
        return simplex.etf(n_classes, config.dim)
    if config.geometry == "orthogonal":
        return simplex.orthogonal_frame(n_classes, config.dim)
    return simplex.minority_spread(n_classes, config.dim, config.spread)


def prototype_gram(config: TrainConfig, n_classes: int) -> np.ndarray:
    """The Gram W^T W of the configured prototype geometry, (m, m): the target of DeltaG* (needs no dim)."""
    if config.geometry == "etf":
        return simplex.etf_gram(n_classes)
    if config.geometry == "orthogonal":
        return np.eye(n_classes)
    return simplex.minority_spread_gram(n_classes, config.spread)


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
# Network, loss and the training step
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


def distribute(model: ContrastiveNet, device: torch.device, processes: Processes) -> torch.nn.Module:
    """``model`` wrapped for several processes (unchanged for one): global-batch BatchNorm, then DDP.

    BatchNorm statistics of the global batch: SyncBatchNorm on NCCL, `CrossProcessBatchNorm`
    on gloo (CPU, or processes sharing a GPU). Every process then holds the same running
    statistics, so DDP's per-step buffer broadcast is switched off (broadcast_buffers=False).
    """
    if processes.world == 1:
        return model
    if processes.backend == "nccl":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        model = cross_process_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def two_view_batch(data: PreparedData, index: Tensor, generator: torch.Generator,
                   processes: Processes) -> tuple[Tensor, Tensor, Tensor]:
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
    size = data.train.images.shape[-1]
    params = sample_augmentation(2 * batch, data.augmentation, generator, size).view(2, batch, -1)
    mine = slice(processes.rank * local, (processes.rank + 1) * local)
    images = data.train.images[index[mine]]
    views = augment(torch.cat([images, images]), params[:, mine].reshape(2 * local, -1), data.mean, data.std,
                    padding_mode=data.augmentation.padding_mode)
    positions = torch.arange(batch, device=index.device).view(world, 1, local).expand(-1, 2, -1).reshape(-1)
    return views, data.train.labels[index][positions], positions


def step_loss(config: TrainConfig, protos: Tensor | None) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The configured loss as ``loss(z (N, d), labels (N,), instances (N,))``, validated once for the run.

    Built from `simulate.losses`' training fast path: no checks and no host reads per step.
    """
    if config.loss == "prototype":
        loss = losses.prototype_supcon_training_loss(protos, config.n_proto, config.tau, config.anchors)
        return lambda z, labels, instances: loss(z, labels)
    return losses.combined_training_loss(config.alpha, config.tau, config.variant)


def _gather_rows(z: Tensor, processes: Processes) -> Tensor:
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


def _to_model_layout(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, data: PreparedData,
               index: Tensor, generator: torch.Generator, processes: Processes, autocast) -> Tensor:
    """One SGD step on the global batch ``index``; returns the loss as a detached device scalar.

    Nothing here reads a tensor on the host, so on a GPU the host queues the whole step
    and moves on (tests/test_empirical_train.py counts the synchronisations: zero).
    """
    views, labels, instances = two_view_batch(data, index, generator, processes)
    with autocast:
        z = model(_to_model_layout(views))  # (2 b, d) float32 unit rows; both views in one pass
    loss = loss_fn(_gather_rows(z, processes), labels, instances)  # float32 even under autocast
    (loss * processes.world).backward()  # DDP averages over processes; every process holds the global loss
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@torch.no_grad()
def embed(network: ContrastiveNet, images: Tensor, mean: Tensor, std: Tensor, processes: Processes,
          precise: bool = False, chunk: int = 512) -> dict[str, Tensor]:
    """Un-augmented embeddings of uint8 images in evaluation mode, on every process.

    Returns {"projector": z (N, d), "backbone": h / |h| (N, F)} in float32. ``precise``:
    float32 throughout (TF32 off); otherwise bf16 autocast on CUDA, as in training. Each
    process embeds a contiguous shard (padded to equal length for all_gather).
    """
    n = images.shape[0]
    share = -(-n // processes.world)
    mine = images[processes.rank * share:(processes.rank + 1) * share]
    was_training = network.training
    network.eval()
    device = images.device
    precision = full_float32(device) if precise else torch.autocast(device.type, dtype=torch.bfloat16,
                                                                     enabled=device.type == "cuda")
    parts = {"projector": [], "backbone": []}
    with precision:
        for part in mine.split(chunk):
            h, z = network.features_and_embedding(_to_model_layout(standardise(part, mean, std)))
            parts["backbone"].append(torch.nn.functional.normalize(h.float(), dim=-1))
            parts["projector"].append(z)
    network.train(was_training)
    widths = {"projector": network.projector[-1].out_features, "backbone": network.projector[0].in_features}
    result = {}
    for head, rows in parts.items():
        z = torch.cat(rows) if rows else torch.zeros((0, widths[head]), device=device)
        if processes.world > 1:
            padded = torch.cat([z, z.new_zeros(share - z.shape[0], z.shape[1])])
            gathered = [torch.empty_like(padded) for _ in range(processes.world)]
            dist.all_gather(gathered, padded)
            z = torch.cat([g[: max(0, min(share, n - r * share))] for r, g in enumerate(gathered)])
        result[head] = z
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
    if processes.world > 1:
        for buffer in network.buffers():
            dist.broadcast(buffer, 0)
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


def _restore(checkpoint, config: TrainConfig, processes: Processes) -> dict:
    """The checkpoint's state, read by rank 0 and broadcast: one disk decides, every rank gets it or the error."""
    state, error = None, None
    if processes.rank == 0:
        try:
            state = load_checkpoint(checkpoint, map_location="cpu")
            _check_resumable(state["config"], config, checkpoint)
        except CheckpointError as failure:
            state, error = None, str(failure)
    state, error = processes.broadcast((state, error))
    if error is not None:
        raise CheckpointError(error)
    return state


def run(config: TrainConfig, *, checkpoint=None, resume: bool = False, checkpoint_every: float = 0.0,
        should_stop: Callable[[], bool] | None = None, stop_check_every: int = 10,
        on_epoch: Callable[[list], None] | None = None, processes: Processes | None = None) -> dict:
    """Train one network and return its epoch log and final metrics.

    Args:
        config: the run (see `TrainConfig`).
        checkpoint: path of the run's checkpoint file (one per run: each write replaces the
            last, atomically; by rank 0 only); None trains without writing anything.
        resume: continue from ``checkpoint`` (same config up to `RESUMABLE_CHANGES`),
            mid-epoch if it was written on a stop request. Rank 0 reads the file and
            broadcasts it. Raises CheckpointError if it is unreadable or of another run.
        checkpoint_every: seconds of wall time between checkpoints, written at the end of
            an epoch once that much time has passed since the last (0: every epoch); a
            checkpoint is also written on a stop request and after the last epoch.
        should_stop: polled before a step; when it returns True (on any process) a
            checkpoint is written and the run returns with status "interrupted". One process
            polls before every step; several agree every ``stop_check_every`` steps (one
            all-reduce of a CPU flag).
        on_epoch: called after each epoch with the whole log so far (restored records included).
        processes: the job's processes (`empirical.distributed`); by default those of the
            joined process group, if any, else one process.
    Returns:
        {"status": "finished" | "interrupted", "config", "epoch", "step", "log": [records],
         "final": last record (its geometry measured in float32), "final_backbone": the same
         metrics of the normalised backbone features, "gram", "gram_backbone": class-mean
         Grams (m x m lists), "target_gram", "class_sizes", "test_class_sizes",
         "n_parameters", "world_size", "batch_size", "steps_per_epoch", "augmentation"}.
    """
    if processes is None:
        with current_processes() as processes:
            return run(config, checkpoint=checkpoint, resume=resume, checkpoint_every=checkpoint_every,
                       should_stop=should_stop, stop_check_every=stop_check_every, on_epoch=on_epoch,
                       processes=processes)
    require_int("stop_check_every", stop_check_every, 1)
    # --- setup
    device = torch.device(config.device)
    # --- data
    data = prepare_data(config, device)
    n_classes = data.train.n_classes
    target_gram = torch.as_tensor(prototype_gram(config, n_classes), dtype=torch.float64, device=device)  # (m, m)
    protos = None
    if config.loss == "prototype" and config.n_proto > 0:
        protos = torch.as_tensor(prototypes(config, n_classes), dtype=torch.float32, device=device)  # (m, dim)
    n_train = len(data.train)
    batch = global_batch_size(config.batch_size, n_train, processes.world)
    if config.loss == "combined" and batch <= n_classes:
        raise ValueError(f"batch_size must exceed the number of classes ({n_classes}) for the combined loss, "
                         f"got a batch of {batch} (the training set has {n_train} images)")
    steps_per_epoch = n_train // batch
    # --- network
    network = make_network(config, data.train.images.shape[1], device)
    model = distribute(network, device, processes)
    network = model.module if processes.world > 1 else model  # the same parameters, maybe with new BatchNorms
    trained = torch.compile(model) if config.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, fused=device.type == "cuda")
    loss_fn = step_loss(config, protos)
    state = {"epoch": 0, "step": 0, "loss_sum": 0.0, "log": []}
    if resume:
        saved = _restore(checkpoint, config, processes)
        network.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {key: saved[key] for key in state}
    last_save = time.monotonic()

    def save(epoch: int, step: int, loss_sum: float, log: list) -> None:
        nonlocal last_save
        if checkpoint is not None and processes.rank == 0:
            save_checkpoint(checkpoint, {"config": asdict(config), "epoch": epoch, "step": step,
                                         "loss_sum": loss_sum, "model": network.state_dict(),
                                         "optimizer": optimizer.state_dict(), "log": log})
        last_save = time.monotonic()

    log = list(state["log"])
    result = {
        "config": asdict(config), "class_sizes": data.train.class_sizes(), "test_class_sizes": data.test.class_sizes(),
        "n_parameters": count_parameters(network), "world_size": processes.world, "batch_size": batch,
        "steps_per_epoch": steps_per_epoch, "target_gram": target_gram.tolist(),
        "augmentation": config.augmentation_name,
    }
    # --- training
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    check_every = 1 if processes.world == 1 else stop_check_every  # one process: a Python call, free
    model.train()
    measured = None
    for epoch in range(state["epoch"], config.epochs):
        order = epoch_order(n_train, config.seed, epoch, device)
        first = state["step"] if epoch == state["epoch"] else 0
        loss_sum = torch.tensor(state["loss_sum"] if epoch == state["epoch"] else 0.0, device=device)
        lr = learning_rate(config, epoch * steps_per_epoch + first, steps_per_epoch)
        with _EpochTimer(device) as timer:
            for step in range(first, steps_per_epoch):
                global_step = epoch * steps_per_epoch + step
                if should_stop is not None and global_step % check_every == 0 and processes.any(bool(should_stop())):
                    save(epoch, step, float(loss_sum), log)
                    return {**result, "status": "interrupted", "epoch": epoch, "step": step, "log": log}
                lr = learning_rate(config, global_step, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                index = order[step * batch:(step + 1) * batch]  # (B,) the global batch
                generator = torch.Generator(device=device).manual_seed(_seed(config.seed, 2, epoch, step))
                loss_sum += train_step(trained, optimizer, loss_fn, data, index, generator, processes, autocast)
        record = {
            "epoch": epoch + 1,
            "loss": float(loss_sum) / steps_per_epoch,
            "lr": lr,
            "images_per_s": (steps_per_epoch - first) * batch / timer.seconds if steps_per_epoch > first else None,
            "train_seconds": timer.seconds,
        }
        last = epoch + 1 == config.epochs
        if (epoch + 1) % config.eval_every == 0 or last:
            # Curves at the training precision; the last epoch in float32, on both heads.
            measured = evaluate(network, data, target_gram, processes, precise=last)
            record.update(measured["projector"][0])
        log.append(record)
        if last or time.monotonic() - last_save >= checkpoint_every:
            save(epoch + 1, 0, 0.0, log)
        if on_epoch is not None:
            on_epoch(log)
    if measured is None or measured["projector"][0]["eval_precision"] != "float32":
        measured = evaluate(network, data, target_gram, processes, precise=True)  # resumed a finished run
    (final, gram), (backbone, backbone_gram) = measured["projector"], measured["backbone"]
    return {**result, "status": "finished", "epoch": config.epochs, "step": 0, "log": log,
            "final": {**log[-1], **final}, "final_backbone": backbone, "gram": gram.tolist(),
            "gram_backbone": backbone_gram.tolist()}
