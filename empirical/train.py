"""Training of a network with prototype SCL or the combined loss, and its geometry over epochs.

`run(config)` trains one network and returns its epoch log and final metrics; the module reads
top to bottom as setup -> data -> network -> training step -> the run, which is `build`, then
`restore` (on resume), then `train_epoch` per epoch; the run's configuration, `TrainConfig`, lives in
`empirical.train_config` (re-exported here). Losses come from `simulate.losses` (docs/losses.md,
through its training fast path) and metrics from `simulate.metrics` (docs/metrics.md),
measured by `empirical.evaluation`; nothing here defines either.

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

Every ``eval_every`` epochs and after the last, the epoch's record gets the geometry of the
un-augmented train and test images (`empirical.evaluation.evaluate`: DeltaG* to the prototype
Gram, variances, NC1, nearest-class-centre accuracy) at the training precision; the final
geometry is measured again in float32, on the projector output z and the backbone features h.

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
from torch import Tensor

from empirical.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from empirical.data import (
    AUGMENTATIONS,
    PreparedData,
    channel_stats,
    imbalanced,
    load_dataset,
    two_view_batch,
)
from empirical.distributed import Processes, current_processes, distribute, gather_rows
from empirical.evaluation import evaluate, to_model_layout
from empirical.evaluation import full_float32 as full_float32  # re-exported: empirical/gpu_check.py uses it
from empirical.models import ContrastiveNet, build_model, count_parameters
from empirical.train_config import (  # the configuration; every name re-exported (callers import it from here)
    ANCHORS,  # noqa: F401
    AUGMENTATION_CHOICES,  # noqa: F401
    GEOMETRIES,  # noqa: F401
    LOSSES,  # noqa: F401
    RESUMABLE_CHANGES,
    TrainConfig,
    prototype_gram,
    prototypes,
)
from simulate import losses
from theory.arguments import require_int

# ---------------------------------------------------------------------------
# Setup: devices (the configuration is `empirical.train_config.TrainConfig`)
# ---------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """ "auto" -> the first CUDA device if there is one, else the CPU; other names as given."""
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


def _seed(*parts: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------------------
# Data and prototypes
# ---------------------------------------------------------------------------


def prepare_data(config: TrainConfig, device) -> PreparedData:
    """Load the dataset, keep the imbalanced training subset, move both splits to ``device``."""
    train, test = load_dataset(config.dataset, config.data_dir, config.download)
    train = imbalanced(train, config.imbalance, config.profile, seed=config.subset_seed)
    mean, std = channel_stats(train.images)
    augmentation = AUGMENTATIONS[config.augmentation_name]
    return PreparedData(train.to(device), test.to(device), mean.to(device), std.to(device), augmentation)


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


def step_loss(config: TrainConfig, protos: Tensor | None) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The configured loss as ``loss(z (N, d), labels (N,), instances (N,))``, validated once for the run.

    Built from `simulate.losses`' training fast path: no checks and no host reads per step.
    """
    if config.loss == "prototype":
        loss = losses.prototype_supcon_training_loss(protos, config.n_proto, config.tau, config.anchors)
        return lambda z, labels, instances: loss(z, labels)
    return losses.combined_training_loss(config.alpha, config.tau, config.variant)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    data: PreparedData,
    index: Tensor,
    generator: torch.Generator,
    processes: Processes,
    autocast,
) -> Tensor:
    """One SGD step on the global batch ``index``; returns the loss as a detached device scalar.

    Nothing here reads a tensor on the host, so on a GPU the host queues the whole step
    and moves on (tests/test_empirical_train.py counts the synchronisations: zero).
    """
    views, labels, instances = two_view_batch(data, index, generator, processes)
    with autocast:
        z = model(to_model_layout(views))  # (2 b, d) float32 unit rows; both views in one pass
    loss = loss_fn(gather_rows(z, processes), labels, instances)  # float32 even under autocast
    (loss * processes.world).backward()  # DDP averages over processes; every process holds the global loss
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# ---------------------------------------------------------------------------
# Training: build, restore, one epoch, the run
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Training:
    """What `build` makes for one run, on this process's device.

    network: the `ContrastiveNet` itself (checkpoints, evaluation); model: it wrapped for the
    processes (`empirical.distributed.distribute`), whose parameters the optimiser updates;
    trained: ``model``, through torch.compile when configured (the steps call it).
    target_gram: (m, m) float64, the DeltaG* target; batch: the global batch actually used.
    """

    config: TrainConfig
    processes: Processes
    device: torch.device
    data: PreparedData
    target_gram: Tensor
    batch: int
    steps_per_epoch: int
    network: ContrastiveNet
    model: torch.nn.Module
    trained: Callable
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor]
    autocast: torch.autocast


def build(config: TrainConfig, processes: Processes) -> Training:
    """Data, prototypes, network, optimiser and loss of a run, in that order."""
    device = torch.device(config.device)
    data = prepare_data(config, device)
    n_classes, n_train = data.train.n_classes, len(data.train)
    target_gram = torch.as_tensor(prototype_gram(config, n_classes), dtype=torch.float64, device=device)  # (m, m)
    protos = None
    if config.loss == "prototype" and config.n_proto > 0:
        protos = torch.as_tensor(prototypes(config, n_classes), dtype=torch.float32, device=device)  # (m, dim)
    batch = global_batch_size(config.batch_size, n_train, processes.world)
    if config.loss == "combined" and batch <= n_classes:
        raise ValueError(
            f"batch_size must exceed the number of classes ({n_classes}) for the combined loss, "
            f"got a batch of {batch} (the training set has {n_train} images)"
        )
    network = make_network(config, data.train.images.shape[1], device)
    model = distribute(network, device, processes)
    network = model.module if processes.world > 1 else model  # the same parameters, maybe with new BatchNorms
    trained = torch.compile(model) if config.compile else model
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        fused=device.type == "cuda",
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    return Training(
        config,
        processes,
        device,
        data,
        target_gram,
        batch,
        n_train // batch,
        network,
        model,
        trained,
        optimizer,
        step_loss(config, protos),
        autocast,
    )


@dataclass(frozen=True)
class Progress:
    """Where a run stands: the next epoch and step, the loss summed over that epoch's steps so far, the log."""

    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    log: list = dataclasses.field(default_factory=list)


def _check_resumable(saved: dict, config: TrainConfig, path) -> None:
    current = asdict(config)
    for key, value in current.items():
        if key not in RESUMABLE_CHANGES and saved.get(key) != value:
            raise CheckpointError(
                f"checkpoint {path} belongs to a different run ({key} = {saved.get(key)!r} there, {value!r} here); "
                "use another --out or delete it"
            )


def _read_checkpoint(checkpoint, config: TrainConfig, processes: Processes) -> dict:
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


def restore(training: Training, checkpoint) -> Progress:
    """Load the network and optimiser of ``checkpoint`` (a run of the same config) and return its progress."""
    saved = _read_checkpoint(checkpoint, training.config, training.processes)
    training.network.load_state_dict(saved["model"])
    training.optimizer.load_state_dict(saved["optimizer"])
    return Progress(saved["epoch"], saved["step"], saved["loss_sum"], list(saved["log"]))


def save(training: Training, checkpoint, progress: Progress) -> None:
    """Write ``checkpoint`` (rank 0 only; each write replaces the last, atomically); nothing if it is None."""
    if checkpoint is not None and training.processes.rank == 0:
        save_checkpoint(
            checkpoint,
            {
                "config": asdict(training.config),
                "epoch": progress.epoch,
                "step": progress.step,
                "loss_sum": progress.loss_sum,
                "model": training.network.state_dict(),
                "optimizer": training.optimizer.state_dict(),
                "log": progress.log,
            },
        )


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


@dataclass(frozen=True)
class EpochSteps:
    """The outcome of `train_epoch`: loss summed on the device, last learning rate, step-loop seconds, and
    the step before which a stop was requested (None when the epoch ran to its end)."""

    loss_sum: Tensor
    lr: float
    seconds: float
    stopped_at: int | None


def _stop_requested(
    should_stop: Callable[[], bool] | None, global_step: int, check_every: int, processes: Processes
) -> bool:
    """``should_stop()`` polled every ``check_every`` steps; true on every process as soon as it is true on one."""
    return should_stop is not None and global_step % check_every == 0 and processes.any(bool(should_stop()))


def train_epoch(
    training: Training, epoch: int, progress: Progress, should_stop: Callable[[], bool] | None, check_every: int
) -> EpochSteps:
    """The steps of ``epoch`` from where ``progress`` stands (mid-epoch after a stop) to its end, or to a stop.

    Batch order and augmentation come from (seed, epoch, step), so a resumed run repeats them.
    """
    config, device, per_epoch = training.config, training.device, training.steps_per_epoch
    resumed = epoch == progress.epoch
    first = progress.step if resumed else 0
    order = epoch_order(len(training.data.train), config.seed, epoch, device)
    loss_sum = torch.tensor(progress.loss_sum if resumed else 0.0, device=device)  # summed on the device
    lr = learning_rate(config, epoch * per_epoch + first, per_epoch)
    stopped_at = None
    with _EpochTimer(device) as timer:
        for step in range(first, per_epoch):
            global_step = epoch * per_epoch + step
            if _stop_requested(should_stop, global_step, check_every, training.processes):
                stopped_at = step
                break
            lr = learning_rate(config, global_step, per_epoch)
            for group in training.optimizer.param_groups:
                group["lr"] = lr
            index = order[step * training.batch : (step + 1) * training.batch]  # (B,) the global batch
            generator = torch.Generator(device=device).manual_seed(_seed(config.seed, 2, epoch, step))
            loss_sum += train_step(
                training.trained,
                training.optimizer,
                training.loss_fn,
                training.data,
                index,
                generator,
                training.processes,
                training.autocast,
            )
    return EpochSteps(loss_sum, lr, timer.seconds, stopped_at)


def epoch_record(training: Training, epoch: int, first: int, steps: EpochSteps) -> dict:
    """The log entry of a finished epoch: mean loss, last learning rate, throughput of the steps run here."""
    ran = training.steps_per_epoch - first
    return {
        "epoch": epoch + 1,
        "loss": float(steps.loss_sum) / training.steps_per_epoch,
        "lr": steps.lr,
        "images_per_s": ran * training.batch / steps.seconds if ran > 0 else None,
        "train_seconds": steps.seconds,
    }


def describe(training: Training) -> dict:
    """What a result records about its run besides the log: config, class sizes, job and batch sizes, target."""
    data = training.data
    return {
        "config": asdict(training.config),
        "class_sizes": data.train.class_sizes(),
        "test_class_sizes": data.test.class_sizes(),
        "n_parameters": count_parameters(training.network),
        "world_size": training.processes.world,
        "batch_size": training.batch,
        "steps_per_epoch": training.steps_per_epoch,
        "target_gram": training.target_gram.tolist(),
        "augmentation": training.config.augmentation_name,
    }


def finish(training: Training, log: list, measured: dict | None) -> dict:
    """The finished run's result: its log and its final geometry in float32 on both heads."""
    if measured is None or measured["projector"][0]["eval_precision"] != "float32":  # resumed a finished run
        measured = evaluate(training.network, training.data, training.target_gram, training.processes, precise=True)
    (final, gram), (backbone, backbone_gram) = measured["projector"], measured["backbone"]
    return {
        **describe(training),
        "status": "finished",
        "epoch": training.config.epochs,
        "step": 0,
        "log": log,
        "final": {**log[-1], **final},
        "final_backbone": backbone,
        "gram": gram.tolist(),
        "gram_backbone": backbone_gram.tolist(),
    }


def run(
    config: TrainConfig,
    *,
    checkpoint=None,
    resume: bool = False,
    checkpoint_every: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
    stop_check_every: int = 10,
    on_epoch: Callable[[list], None] | None = None,
    processes: Processes | None = None,
) -> dict:
    """Train one network and return its epoch log and final metrics.

    Args:
        checkpoint: the run's checkpoint file (rank 0 writes it; each write atomically replaces the last);
            None writes nothing. ``resume``: continue from it (same config up to `RESUMABLE_CHANGES`),
            mid-epoch if it was written on a stop; CheckpointError if it is unreadable or of another run.
        checkpoint_every: seconds between checkpoints, written at the end of an epoch once that much
            time has passed since the last (0: every epoch), on a stop request and after the last epoch.
        should_stop: polled before a step (by one process before every step; by several every
            ``stop_check_every`` steps, one all-reduce of a CPU flag); when True on any process a
            checkpoint is written and the run returns with status "interrupted".
        on_epoch: called after each epoch with the whole log so far (restored records included).
        processes: the job's processes (`empirical.distributed`); by default those of the joined
            process group, if any, else one process.
    Returns:
        `describe`'s fields and {"status": "finished" | "interrupted", "epoch", "step", "log": [records]};
        when finished also "final" (last record, its geometry measured in float32), "final_backbone" (the
        normalised backbone features), "gram", "gram_backbone" (class-mean Grams, m x m lists).
    """
    with contextlib.nullcontext(processes) if processes is not None else current_processes() as processes:
        require_int("stop_check_every", stop_check_every, 1)
        training = build(config, processes)
        progress = restore(training, checkpoint) if resume else Progress()
        check_every = 1 if processes.world == 1 else stop_check_every  # one process: a Python call, free
        return _train_epochs(training, progress, checkpoint, checkpoint_every, should_stop, check_every, on_epoch)


def _train_epochs(
    training: Training,
    progress: Progress,
    checkpoint,
    checkpoint_every: float,
    should_stop: Callable[[], bool] | None,
    check_every: int,
    on_epoch: Callable[[list], None] | None,
) -> dict:
    """`run`'s epochs from where ``progress`` stands: train, evaluate, log, checkpoint; the run's result."""
    config, processes = training.config, training.processes
    last_save, log, measured = time.monotonic(), progress.log, None
    training.model.train()
    for epoch in range(progress.epoch, config.epochs):
        steps = train_epoch(training, epoch, progress, should_stop, check_every)
        if steps.stopped_at is not None:
            save(training, checkpoint, Progress(epoch, steps.stopped_at, float(steps.loss_sum), log))
            return {**describe(training), "status": "interrupted", "epoch": epoch, "step": steps.stopped_at, "log": log}
        record = epoch_record(training, epoch, progress.step if epoch == progress.epoch else 0, steps)
        last = epoch + 1 == config.epochs
        if (epoch + 1) % config.eval_every == 0 or last:
            # Curves at the training precision; the last epoch in float32, on both heads.
            measured = evaluate(training.network, training.data, training.target_gram, processes, precise=last)
            record.update(measured["projector"][0])
        log.append(record)
        if last or time.monotonic() - last_save >= checkpoint_every:
            save(training, checkpoint, Progress(epoch + 1, 0, 0.0, log))
            last_save = time.monotonic()
        if on_epoch is not None:
            on_epoch(log)
    return finish(training, log, measured)
