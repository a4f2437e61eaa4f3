"""Result files of empirical runs: atomic writes of JSON, JSON lines and CSV, and provenance.

Every file is written to a temporary file in its folder and renamed into place, so a
reader (or an interrupted run) never sees half a file (DESIGN §7).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

#: Libraries whose versions are recorded beside every result.
LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "matplotlib")


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _plain(value):
    """JSON-safe values: non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_json(path, obj) -> Path:
    return write_text_atomic(path, json.dumps(_plain(obj), indent=2) + "\n")


def write_jsonl(path, records) -> Path:
    """One JSON object per line."""
    return write_text_atomic(path, "".join(json.dumps(_plain(r)) + "\n" for r in records))


def write_csv(path, rows: list[dict]) -> Path:
    """Rows of dicts as CSV; the columns are the union of keys in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_plain(row) for row in rows)
    return write_text_atomic(path, buffer.getvalue())


def git_revision() -> str | None:
    """``git rev-parse HEAD`` of the source tree (read-only); None when git or the repository is absent."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip() or None


def library_versions() -> dict[str, str | None]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance() -> dict:
    """Versions of Python and the libraries, and the git revision, for a result file."""
    return {"versions": library_versions(), "git_revision": git_revision()}
