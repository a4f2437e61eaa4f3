"""What every command line of the project shares (docs/commands.md).

* `ArgumentParser`: argparse whose errors are one line on stderr and exit code 2.
* `fail`: the same for errors found after parsing (validation by the library).
* `write_text`, `write_json`, `write_jsonl`, `write_csv`, `save_figure`: atomic writes (temporary file in the
  target folder, then rename), so an interrupted run never leaves a half file.
* `run_metadata`: library versions, git revision, command line, time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: `prog: error: message`, exit code 2, no usage dump."""

    def error(self, message):
        fail(self.prog, message)


def fail(prog: str, message: str):
    """Print `prog: error: message` (first line only) and exit with code 2."""
    first_line = str(message).strip().splitlines()[0] if str(message).strip() else "invalid arguments"
    sys.stderr.write(f"{prog}: error: {first_line}\n")
    raise SystemExit(2)


def parse_range(text: str, *, name: str) -> tuple[float, float, int]:
    """Parse `START:STOP:COUNT` into (start, stop, count); raises ValueError with the option's name."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"{name} must be START:STOP:COUNT, got {text!r}")
    try:
        start, stop = float(parts[0]), float(parts[1])
        count = int(parts[2])
    except ValueError:
        raise ValueError(f"{name} must be START:STOP:COUNT with numbers and an integer count, got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise ValueError(f"{name} needs finite START and STOP, got {text!r}")
    if count < 1:
        raise ValueError(f"{name} needs COUNT >= 1, got {count}")
    if count > 1 and stop < start:
        raise ValueError(f"{name} needs START <= STOP, got {text!r}")
    return start, stop, count


def attach_range_values(argv, options) -> list[str]:
    """Write `--opt VALUE` as `--opt=VALUE` for range options, so that a VALUE starting with '-'
    (e.g. `--taus -1:1:3`) reaches the range check instead of being taken for an option."""
    argv, joined = list(argv), []
    while argv:
        token = argv.pop(0)
        if token in options and argv:
            token = f"{token}={argv.pop(0)}"
        joined.append(token)
    return joined


def write_atomic(path, write) -> Path:
    """Call write(stream) on a temporary file in the target folder, flush it to disk, rename it over path.

    A crash or a signal mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text(path, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))


def write_json(path, data) -> Path:
    """Write JSON atomically (non-finite floats become null: JSON has no inf/NaN)."""
    return write_text(path, json.dumps(_finite_or_none(data), indent=2) + "\n")


def write_jsonl(path, records) -> Path:
    """Write one JSON object per line, atomically."""
    return write_text(path, "".join(json.dumps(_finite_or_none(record)) + "\n" for record in records))


def write_csv(path, rows: list[dict]) -> Path:
    """Write dicts as CSV atomically; the columns are the union of keys in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_finite_or_none(row) for row in rows)
    return write_text(path, buffer.getvalue())


def save_figure(figure, path, dpi: int = 130) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    return write_atomic(path, lambda stream: figure.savefig(stream, format="png", dpi=dpi, bbox_inches="tight"))


def _finite_or_none(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def git_revision() -> str | None:
    """The project's git revision (with '+dirty' if the tree has changes), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return revision + ("+dirty" if dirty else "")


#: Libraries whose versions are recorded beside every result.
LIBRARIES = ("numpy", "scipy", "sympy", "cvxpy", "torch", "torchvision", "scikit-learn", "matplotlib")


def library_versions(libraries=LIBRARIES) -> dict[str, str | None]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in libraries:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_metadata() -> dict:
    """Versions, git revision, command line and time of this run."""
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_revision": git_revision(),
        "versions": library_versions(),
    }
