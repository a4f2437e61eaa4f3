"""The processes of a torchrun job: joining them, agreeing across them, leaving together.

* `distributed_context(device)` joins torchrun's process group when WORLD_SIZE > 1 and
  yields this process's `Processes` and device; on leaving it destroys every group it made.
* `Processes` carries the rank, the world size and a gloo "control" group on which the
  processes agree on host-side facts (a stop flag, a decision, an error message) without
  a CUDA synchronisation: `any`, `broadcast`, `first_error`.
* Data-parallel training across them: `distribute` wraps a network (global-batch BatchNorm,
  then DDP), `gather_rows` all-gathers a batch's embeddings with gradients to this process's
  rows, `shard` / `gather_shards` split an evaluation set and put it back together, and
  `share_buffers` makes every process's BatchNorm statistics rank 0's.

Backends: NCCL when every process has a GPU of its own; gloo on the CPU and when several
processes share one GPU (NCCL refuses two ranks on one device), so a one-GPU machine can
still run a two-process job.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from empirical.models import cross_process_batchnorm


@dataclass(frozen=True)
class Processes:
    """This process's rank, the world size, and the group used for host-side agreement (None: the default group)."""

    rank: int = 0
    world: int = 1
    control: object = None

    @property
    def backend(self) -> str | None:
        return dist.get_backend() if self.world > 1 else None

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (one all-reduce of a CPU integer)."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return bool(value.item())

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process (a picklable object; other ranks' arguments are ignored)."""
        if self.world == 1:
            return obj
        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def first_error(self, error: str | None) -> str | None:
        """The error message of the lowest failing rank ("rank r: message"), the same on every process, or None.

        Every process calls it at the same point with its own outcome, so a failure on one
        rank ends all of them at once with its reason instead of leaving the others waiting
        in the next collective until a timeout.
        """
        if self.world == 1:
            return error
        errors = [None] * self.world
        dist.all_gather_object(errors, error, group=self.control)
        return next((f"rank {rank}: {message}" for rank, message in enumerate(errors) if message is not None), None)


def _control_group():
    """A gloo group for host-side agreement; the default group itself when it is gloo already."""
    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


@contextlib.contextmanager
def current_processes():
    """`Processes` of an already joined group (with a control group of its own, destroyed on exit), else one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        yield Processes()
        return
    control = _control_group()
    try:
        yield Processes(dist.get_rank(), dist.get_world_size(), control)
    finally:
        if control is not None:
            dist.destroy_process_group(control)


def process_device(device: torch.device) -> torch.device:
    """This process's device: cuda:(LOCAL_RANK mod number of GPUs) for CUDA, else ``device``."""
    if device.type != "cuda":
        return device
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def backend_for(device: torch.device) -> str:
    """nccl if every local process has a GPU of its own, else gloo."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if device.type == "cuda" and torch.cuda.device_count() >= local_world:
        return "nccl"
    return "gloo"


@contextlib.contextmanager
def distributed_context(device: torch.device):
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1); yields (Processes, device).

    Outside torchrun it yields (Processes(), device) and touches nothing. On a normal exit
    (or a handled error) every group is destroyed; an unhandled exception propagates
    without the collective teardown, so a failing process leaves at once (torchrun then
    stops the others).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield Processes(), device
        return
    device = process_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device))
    control = _control_group()
    yield Processes(dist.get_rank(), world_size, control), device
    dist.destroy_process_group()  # the default group and every subgroup


# ---------------------------------------------------------------------------
# Data-parallel training and evaluation
# ---------------------------------------------------------------------------


def distribute(model: nn.Module, device: torch.device, processes: Processes) -> nn.Module:
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
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
    )


def gather_rows(z: Tensor, processes: Processes) -> Tensor:
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


def shard(n: int, processes: Processes) -> slice:
    """This process's contiguous share of n rows: ceil(n / world) of them (fewer, or none, at the end)."""
    share = -(-n // processes.world)
    return slice(processes.rank * share, (processes.rank + 1) * share)


def gather_shards(rows: Tensor, n: int, processes: Processes) -> Tensor:
    """All n rows (n, d) on every process, from each process's `shard` of them (share, d)."""
    if processes.world == 1:
        return rows
    share = -(-n // processes.world)
    padded = torch.cat([rows, rows.new_zeros(share - rows.shape[0], rows.shape[1])])  # all_gather needs equal sizes
    gathered = [torch.empty_like(padded) for _ in range(processes.world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: max(0, min(share, n - r * share))] for r, g in enumerate(gathered)])


def share_buffers(module: nn.Module, processes: Processes) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every process, in place."""
    if processes.world > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)
