"""Counting host synchronisations: the operations that make the host wait for the device.

On a GPU the host queues kernels and runs ahead; an operation whose result the host
needs (``.item()``, ``bool(t)``, ``.tolist()``, a data-dependent shape such as
``nonzero`` or boolean indexing) or that copies host data into a new device tensor
(``torch.tensor(x, device=...)``) makes it wait for the queue to drain. A training step
should contain none. `count_host_syncs` counts them on any device, so a CPU test can
show that a step would not synchronise on a GPU:

* every ATen call is seen through a `TorchDispatchMode`; ``_local_scalar_dense`` (behind
  item, bool, int, float), ``nonzero``, ``masked_select``, ``unique`` and boolean
  indexing count, and so does ``lift_fresh`` (a tensor made from Python data, which on a
  GPU is a host-to-device copy), and a copy from a device to the CPU;
* ``Tensor.tolist`` and ``Tensor.numpy`` do not dispatch, so they are wrapped while the
  context is active;
* on CUDA, torch's own sync debug mode is switched to "warn" as well and its warnings
  are counted under "cuda_sync_warning".

This is a measuring tool: it patches two Tensor methods and the sync debug mode for the
duration of the context (restored on exit) and is not meant to be left on in training.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_SYNCING = {
    "aten._local_scalar_dense.default": "item/bool/int/float",
    "aten.nonzero.default": "nonzero",
    "aten.masked_select.default": "masked_select",
    "aten._unique2.default": "unique",
    "aten.unique_consecutive.default": "unique",
    "aten.unique_dim.default": "unique",
    "aten.lift_fresh.default": "tensor from Python data",
}


def _is_device_to_host(func, args, kwargs) -> bool:
    if str(func) not in ("aten._to_copy.default", "aten.copy_.default"):
        return False
    if str(func) == "aten.copy_.default":
        target, source = args[0], args[1]
        return target.device.type == "cpu" and source.device.type != "cpu"
    target = kwargs.get("device")
    return target is not None and torch.device(target).type == "cpu" and args[0].device.type != "cpu"


def _boolean_index(func, args) -> bool:
    if str(func) not in ("aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default"):
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)


class _Counter(TorchDispatchMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _SYNCING.get(str(func))
        if name is None and _boolean_index(func, args):
            name = "boolean indexing"
        if name is None and _is_device_to_host(func, args, kwargs):
            name = "copy to the host"
        if name is not None:
            self.counts[name] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_host_syncs(dispatch: bool = True):
    """Count host synchronisations inside the block; yields a Counter {kind: count}, filled on exit.

    ``dispatch=False`` leaves out the dispatch mode (for compiled code, which it would
    break) and counts only the Tensor methods and, on CUDA, torch's sync warnings.

    Example:
        with count_host_syncs() as syncs:
            step()
        assert sum(syncs.values()) == 0, syncs
    """
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}

    def counting(name):
        original = originals[name]

        def method(self, *args, **kwargs):
            counts[f"Tensor.{name}"] += 1
            return original(self, *args, **kwargs)

        return method

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    previous_mode = torch.cuda.get_sync_debug_mode() if cuda else None
    for name in originals:
        setattr(torch.Tensor, name, counting(name))
    try:
        mode = _Counter(counts) if dispatch else contextlib.nullcontext()
        with warnings.catch_warnings(record=True) as caught, mode:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            yield counts
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode(previous_mode)
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    synchronising = [w for w in caught if "synchroniz" in str(w.message)]
    if synchronising:
        counts["cuda_sync_warning"] += len(synchronising)
