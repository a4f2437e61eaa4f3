"""Training checkpoints: written atomically, read back with a clear error when unreadable.

A checkpoint is a dict of tensors and plain Python values (config, epoch, step, epoch
log, model and optimizer state) saved with ``torch.save`` and read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

from pathlib import Path

import torch

from simulate import cli

#: Tag stored in every checkpoint; a file without it is not one of ours.
FORMAT = "scl-geometry/empirical checkpoint v1"
REQUIRED_KEYS = ("format", "config", "epoch", "step", "model", "optimizer", "log")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, is not a checkpoint of this project, or does not fit the run."""


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the
    file is renamed over ``path``: a crash or a signal mid-write leaves the previous
    checkpoint intact, never a truncated one.
    """
    cli.write_atomic(path, lambda stream: torch.save({"format": FORMAT, **state}, stream))


def load_checkpoint(path, map_location=None) -> dict:
    """Read a checkpoint written by `save_checkpoint`.

    Raises CheckpointError with one line naming the file and the reason when the file
    is missing, truncated, corrupt, or lacks the keys of this project's checkpoints.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: run without --resume to start afresh")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad bytes
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} is unreadable (corrupt or truncated: {reason}); delete it to start afresh"
        ) from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing or state["format"] != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not a checkpoint of this project (missing {missing or ['format tag']}); "
            "delete it to start afresh"
        )
    return state
