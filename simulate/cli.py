"""What every command line of the project shares (docs/commands.md).

* `ArgumentParser`: argparse whose errors are one line on stderr and exit code 2.
* `fail`: the same for errors found after parsing (validation by the library).
* `write_text`, `write_json`, `write_jsonl`, `write_csv`, `save_figure`: atomic writes (temporary file in the
  target folder, then rename), so an interrupted run never leaves a half file; `plain`: a JSON-ready copy
  of results (numpy and torch are imported inside the functions that need them).
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
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import Field, field, fields
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ConfigT = TypeVar("ConfigT")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: `prog: error: message`, exit code 2, no usage dump."""

    def error(self, message):
        fail(self.prog, message)


def fail(prog: str, message: object) -> NoReturn:
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


def attach_range_values(argv: Iterable[str], options: Container[str]) -> list[str]:
    """Write `--opt VALUE` as `--opt=VALUE` for the given options, so that a VALUE starting with '-'
    (e.g. `--taus -1:1:3`, `--tau -1`) reaches the value checks instead of being taken for an option."""
    argv, joined = list(argv), []
    while argv:
        token = argv.pop(0)
        if token in options and argv:
            token = f"{token}={argv.pop(0)}"
        joined.append(token)
    return joined


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call write(stream) on a temporary file in the target folder, flush it to disk, rename it over path.

    A crash or a signal mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(handle, 0o666 & ~current_umask())  # mkstemp creates 0600; a result file follows the umask
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


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))


def plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays to python, tuples to lists, other objects to str."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return str(value)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON atomically (non-finite floats as the strings "inf", "-inf", "nan": JSON has none)."""
    return write_text(path, json.dumps(_finite_or_none(data), indent=2) + "\n")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> Path:
    """Write one JSON object per line, atomically."""
    return write_text(path, "".join(json.dumps(_finite_or_none(record)) + "\n" for record in records))


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dicts as CSV atomically; the columns are the union of keys in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_finite_or_none(row) for row in rows)
    return write_text(path, buffer.getvalue())


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 130) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    return write_atomic(path, lambda stream: figure.savefig(stream, format="png", dpi=dpi, bbox_inches="tight"))


def _finite_or_none(value):
    """JSON has no inf/NaN: they are written as the strings "inf", "-inf" and "nan" (docs/commands.md)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf")
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
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return revision + ("+dirty" if dirty else "")


#: Libraries whose versions are recorded beside every result.
LIBRARIES = ("numpy", "scipy", "sympy", "cvxpy", "torch", "torchvision", "scikit-learn", "matplotlib")


def library_versions(libraries: Iterable[str] = LIBRARIES) -> dict[str, str | None]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in libraries:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_metadata() -> dict[str, Any]:
    """Versions, git revision, command line and time of this run."""
    return {
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),  # exactly what ran, e.g. python -m ...
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_revision": git_revision(),
        "versions": library_versions(),
    }


# ---------------------------------------------------------------------------
# One pattern for every command line: a frozen dataclass declares the options
# ---------------------------------------------------------------------------
#
#     @dataclass(frozen=True)
#     class Config:
#         tau: float = option(0.5, "temperature", check=positive)
#         imbalance: tuple[float, ...] = option((1.0, 10.0), "ratios R", check=each(at_least(1)), aliases=("--R",))
#         out: str = option("results/x", "output folder")
#
#     config = parse_config(Config, argv, prog="python -m simulate.x", description="...")
#
# The field is the only declaration: its type (int, float, str, bool, tuple[...] as a comma list,
# "| None" for optional), default, help and valid range. `parse_config` builds the parser (every
# default shown in input syntax), converts and checks every value (one line naming the flag, the
# value and what is allowed; exit 2), runs the config's own `validate()` if it has one, and checks
# that `--out` can be created and written — all before any work.


def option(
    default: Any,
    help: str,
    *,
    check: Callable[[Any], None] | None = None,
    choices: Sequence[str] | None = None,
    aliases: Iterable[str] = (),
    flag: str | None = None,
    sweep: bool = False,
) -> Any:  # Any, as dataclasses.field: the field's own annotation types the value
    """A dataclass field declaring one command-line option (see the block comment above).

    sweep=True marks a list whose values are separate runs: a repeated value is refused.
    """
    return field(
        default=default,
        metadata={
            "help": help,
            "check": check,
            "choices": choices,
            "aliases": tuple(aliases),
            "flag": flag,
            "sweep": sweep,
        },
    )


def at_least(minimum: float) -> Callable[[float], None]:
    def check(value: float) -> None:
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")

    return check


def between(low: float, high: float) -> Callable[[float], None]:
    def check(value: float) -> None:
        if not low <= value <= high:
            raise ValueError(f"must lie in [{low}, {high}]")

    return check


def positive(value: float) -> None:
    if not value > 0:
        raise ValueError("must be > 0")


def each(check: Callable[[Any], None]) -> Callable[[Iterable[Any]], None]:
    """Apply a check to every element of a list option."""

    def check_all(values: Iterable[Any]) -> None:
        for value in values:
            check(value)

    return check_all


def flag_name(field_: Field[Any]) -> str:
    return field_.metadata.get("flag") or "--" + field_.name.replace("_", "-")


def _kind(annotation: str) -> tuple[str, bool, bool]:
    """(base type name, is a list, may be None) from a field's annotation string."""
    text = str(annotation).replace(" ", "")
    optional = text.endswith("|None")
    text = text.removesuffix("|None")
    if text.startswith("tuple["):
        return text[len("tuple[") :].split(",")[0].rstrip("]"), True, optional
    return text, False, optional


def _convert_scalar(base: str, text: str):
    if base == "int":
        try:
            value = int(text)
        except ValueError:
            raise ValueError("must be an integer") from None
        if abs(value) > 2**53:  # beyond, numpy and float arithmetic overflow or round: no option means it
            raise ValueError("must be an integer of magnitude at most 2^53")
        return value
    if base == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return value
    return text


def convert(field_: Field[Any], text: str) -> int | float | str | tuple[int | float | str, ...] | None:
    """The typed value of an option's text (ValueError with what is allowed)."""
    base, is_list, optional = _kind(field_.type)
    if optional and text.lower() == "none":
        return None
    if is_list:
        parts = [part.strip() for part in text.split(",")]
        if not text.strip() or any(not part for part in parts):
            raise ValueError("must be a comma-separated list of values, e.g. 1,2,3")
        values = tuple(_convert_scalar(base, part) for part in parts)
        if field_.metadata.get("sweep") and len(set(values)) != len(values):
            raise ValueError("must not repeat a value (repeated runs would overwrite each other)")
        return values
    return _convert_scalar(base, text)


def input_syntax(value: object) -> str:
    """A default as the user would type it: lists comma-separated, None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(input_syntax(item) for item in value)
    return str(value)


def build_parser(config_class: type, prog: str, description: str) -> ArgumentParser:
    """argparse from the dataclass fields: every option a string converted later by `convert`."""
    parser = ArgumentParser(prog=prog, description=description)
    for field_ in fields(config_class):
        base, _, _ = _kind(field_.type)
        names = [flag_name(field_), *field_.metadata.get("aliases", ())]
        help_text = field_.metadata.get("help", "")
        if base == "bool":
            names = [f"--no-{field_.name.replace('_', '-')}"] if field_.default else names
            parser.add_argument(
                *names,
                dest=field_.name,
                action="store_false" if field_.default else "store_true",
                help=f"{help_text} (default: {'on' if field_.default else 'off'})",
            )
            continue
        choices = field_.metadata.get("choices")
        allowed = f"; one of {', '.join(choices)}" if choices else ""
        parser.add_argument(
            *names,
            dest=field_.name,
            default=None,
            metavar=field_.name.upper(),
            help=f"{help_text}{allowed} (default: {input_syntax(field_.default)})",
        )
    return parser


def _attach_values(argv, parser: ArgumentParser) -> list[str]:
    """`--opt VALUE` as `--opt=VALUE`, so that a VALUE starting with '-' reaches the checks."""
    takes_value = {
        name
        for action in parser._actions
        if action.nargs is None
        and action.option_strings
        and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        for name in action.option_strings
    }
    return attach_range_values(argv, takes_value)


def _typed_flag(field_, argv) -> str:
    """The spelling of an option the user typed (an alias such as --R), else its main flag."""
    names = [flag_name(field_), *field_.metadata.get("aliases", ())]
    typed = [token.split("=", 1)[0] for token in argv if token.split("=", 1)[0] in names]
    return typed[-1] if typed else names[0]


def parse_config(config_class: type[ConfigT], argv: Sequence[str] | None, prog: str, description: str) -> ConfigT:
    """Parse and validate a command line into `config_class`; any bad input exits 2 with one line."""
    parser = build_parser(config_class, prog, description)
    argv = sys.argv[1:] if argv is None else list(argv)
    namespace = parser.parse_args(_attach_values(argv, parser))
    values = {}
    for field_ in fields(config_class):
        text = getattr(namespace, field_.name)
        if text is None or isinstance(text, bool):
            values[field_.name] = field_.default if text is None else text
            continue
        flag = _typed_flag(field_, argv)
        try:
            value = convert(field_, text)
            choices = field_.metadata.get("choices")
            if choices and value not in choices:
                raise ValueError(f"must be one of {', '.join(choices)}")
            if field_.metadata.get("check") and value is not None:
                field_.metadata["check"](value)
        except ValueError as error:
            fail(prog, f"{flag} {text!r}: {error}")
        values[field_.name] = value
    try:
        config = config_class(**values)
        if hasattr(config, "validate"):
            config.validate()
        if "out" in values:
            require_writable_folder(config.out)
    except ValueError as error:
        fail(prog, str(error))
    return config


def require_writable_folder(out: str) -> Path:
    """--out as a folder that can be created and written, checked without creating anything."""
    if not str(out).strip():
        raise ValueError("--out must name a folder, got an empty string")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out!r}: is a file, not a folder")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out!r}: cannot be created, {str(existing)!r} is a file")
    try:  # permissions do not tell (root, /proc): probe with an empty folder, removed at once
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".scl-probe-"))
    except OSError as error:
        raise ValueError(f"--out {out!r}: cannot be written ({error.strerror} in {str(existing)!r})") from None
    return path


# ---------------------------------------------------------------------------
# Running a command: signals, unexpected errors, results published as one set


class Interrupted(SystemExit):
    """Raised by the signal handlers: exit 128 + signal number after one line."""


def _on_signal(prog: str, what_is_left: str):
    def handler(number, _frame):
        name = signal.Signals(number).name
        sys.stderr.write(f"{prog}: interrupted by {name}; {what_is_left}\n")
        raise Interrupted(128 + number)

    return handler


def run_command(prog: str, main: Callable[[], int], what_is_left: str = "no partial result was published") -> int:
    """Run main() with one-line endings: SIGINT -> 130, SIGTERM -> 143, any unexpected error -> 1.

    what_is_left: what the interrupt line says about the results (a command that keeps partial
    results, like the GPU check, says so). SCL_DEBUG=1 re-raises unexpected errors with their traceback.
    """
    handler = _on_signal(prog, what_is_left)
    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        return main()
    except SystemExit:
        raise
    except MemoryError:
        sys.stderr.write(f"{prog}: error: out of memory; try a smaller grid or size\n")
        return 1
    except Exception as error:  # noqa: BLE001 - the one place a command turns an error into one line
        if os.environ.get("SCL_DEBUG") == "1":
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        sys.stderr.write(f"{prog}: error: {type(error).__name__}: {first} (SCL_DEBUG=1 shows the traceback)\n")
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def publish(out: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Write a run's files as one set: write(folder) fills a staging folder beside `out`, which then
    replaces `out` whole. A reader never sees files of two runs mixed; an interrupted run leaves the
    previous set untouched (and its staging folder removed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        write(staging)
        os.chmod(staging, 0o777 & ~current_umask())
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            retired = None
            if out.exists():
                retired = out.parent / f".{out.name}.old-{os.getpid()}"
                os.replace(out, retired)
            os.replace(staging, out)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def parse_bytes(text: str, *, name: str) -> int:
    """A memory size such as `512M`, `8G`, `1.5T` or a plain number of bytes; ValueError naming the option."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = str(text).strip().upper().removesuffix("B").removesuffix("I")
    suffix = value[-1:] if value[-1:] in units else ""
    try:
        number = float(value[: len(value) - len(suffix)])
    except ValueError:
        raise ValueError(f"{name} must be a size like 512M, 8G or a number of bytes, got {text!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive size, got {text!r}")
    return int(number * units[suffix])


def available_memory(device: str = "cpu") -> int | None:
    """Bytes this machine can spare now: free memory of the current CUDA device, or MemAvailable of
    /proc/meminfo for the CPU; None where it cannot be read."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
