"""Command line: Paper A's imbalanced-CIFAR experiment (and Paper B's loss) on real networks.

    python -m empirical.cifar                                  # CIFAR-10, R = 100, n_w = 0 10 50 100 (a GPU job)
    python -m empirical.cifar --dataset digits --R 10          # minutes on a CPU
    python -m empirical.cifar --dataset digits --R 1 --loss combined --alpha 0,0.5,1
    torchrun --standalone --nproc_per_node 4 -m empirical.cifar --dataset cifar10 --R 10

Runs one training per (seed, swept value) one after another, the swept value being
``--n-proto`` (prototype SCL, for each of ``--anchors``; n_w = 0 once, as it has no
prototype anchors) or ``--alpha`` (combined loss); lists are comma-separated. Under ``--out`` (default
results/cifar/) it writes, atomically: runs/<run>.jsonl (one line per epoch, the
geometry every ``--eval-every`` epochs and after the last), runs/<run>.json (resolved
config, versions, git revision, seed, final metrics of the projector output and of the
backbone features, measured in float32, Grams), checkpoints/<run>.pt (the run's latest
checkpoint only: every ``--checkpoint-every`` seconds at an epoch end, on a signal and
after the last epoch), summary.csv (one row per run), summary.json, and the figures
delta_g_vs_<swept>.png, delta_g_epochs.png, gram_heatmaps.png, accuracy.png (and
variances_vs_alpha.png for the combined loss; with two anchor modes, one set per mode,
suffixed _anchors-<mode>). summary.json is written last and names every file of the set;
a sweep removes the previous summary files and figures when it starts, so a folder without
summary.json holds an unfinished sweep (``--resume`` continues it) and never a summary of
another configuration beside its runs. Exit code 0 when every run finished with a finite
final loss and DeltaG*, 1 otherwise (the criterion is recorded in summary.json).

On the CPU the command sets OMP_WAIT_POLICY=PASSIVE unless it is set (spinning OpenMP
threads slow training tenfold on shared cores); --threads sets torch's thread count.

SIGINT/SIGTERM: the current step finishes, a checkpoint is written and the program
exits (130 / 143); the same command with ``--resume`` continues, skipping finished runs.
Before training starts a signal ends the command at once (one line, 130 / 143).
Bad arguments (every option is declared once on `Config`; `simulate.cli` checks them, --out
included), missing CIFAR files, a failed --download and unreadable checkpoints: exit code 2,
one line naming the option, before any data is loaded or any training starts.

Under torchrun, rank 0 decides what to resume and broadcasts it; an error on one rank
during setup ends every rank with that rank's reason, and an unexpected error during
training ends the failing process at once (torchrun then stops the others).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from empirical.cifar_outputs import (  # the sweep's outputs (the constants and write_figures re-exported)
    CRITERIA,  # noqa: F401
    FIGURE_PATTERNS,  # noqa: F401
    SUMMARY_FILES,  # noqa: F401
    finished_result,
    finite_final_metrics,
    retire_summary,
    run_files,
    summary_line,
    summary_row,
    write_figures,  # noqa: F401
    write_summary,
)
from simulate import cli
from simulate.cli import option
from theory.arguments import TAU_RANGE

if TYPE_CHECKING:  # the module imports torch lazily so that --help and argument errors answer at once
    from empirical.train import TrainConfig

#: Per-dataset defaults. CIFAR targets a GPU; digits and the fixture finish on a CPU.
#: eval_every: the geometry curve's spacing in epochs (evaluation costs about a quarter of a CIFAR epoch).
_CIFAR = dict(
    model="resnet18",
    dim=128,
    epochs=200,
    batch_size=512,
    lr=0.25,
    weight_decay=1e-4,
    warmup_epochs=10,
    eval_every=10,
    seeds=(0, 1, 2),
)
PRESETS = {
    "cifar10": _CIFAR,
    "cifar100": dict(_CIFAR),  # the same recipe for both CIFARs
    "digits": dict(
        model="small_cnn",
        width=16,
        dim=32,
        epochs=30,
        batch_size=64,
        lr=0.1,
        weight_decay=5e-4,
        warmup_epochs=2,
        eval_every=1,
        seeds=(0, 1, 2),
    ),
    "fixture": dict(
        model="resnet18",
        dim=128,
        epochs=2,
        batch_size=32,
        lr=0.05,
        weight_decay=5e-4,
        warmup_epochs=0,
        eval_every=1,
        seeds=(0,),
    ),
}
#: Images per class of the CIFAR-format fixture written for --dataset fixture.
FIXTURE_SIZES = dict(n_train_per_class=10, n_test_per_class=5)
EXIT_BAD_INPUT = 2
PROG = "python -m empirical.cifar"


@dataclass(frozen=True)
class SweepConfig:
    """The resolved command: the base training config, the swept field and values, the seeds, the outputs."""

    base: TrainConfig
    sweep_key: str
    sweep_values: tuple
    seeds: tuple
    out: str
    resume: bool
    progress: bool
    anchors: tuple = ("data",)
    checkpoint_every: float = 600.0

    def run_configs(self) -> list[tuple[str, TrainConfig]]:
        """(run id, TrainConfig) for every seed, swept value and anchor mode, in execution order.

        Prototype runs are named <loss>_nw<n_w>_<anchors>_seed<s>, except n_w = 0 (plain
        SupCon, no prototype anchors): one run, <loss>_nw0_seed<s>, whatever --anchors.
        """
        runs = []
        for seed in self.seeds:
            for value in self.sweep_values:
                if self.sweep_key == "alpha":
                    runs.append(
                        (f"{self.base.loss}_alpha{value:g}_seed{seed}", self.base.replace(seed=seed, alpha=value))
                    )
                    continue
                for anchors in self.anchors[:1] if value == 0 else self.anchors:
                    suffix = "" if value == 0 else f"_{anchors}"
                    config = self.base.replace(seed=seed, n_proto=value, anchors=anchors)
                    runs.append((f"{config.loss}_nw{value:g}{suffix}_seed{seed}", config))
        return runs


def _preset_table() -> str:
    """The per-dataset defaults as one sentence (the help reflows its description)."""
    keys = (
        "model",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup_epochs",
        "dim",
        "width",
        "eval_every",
        "seeds",
    )
    return (
        "Per-dataset defaults (the options shown 'none'): "
        + "; ".join(
            f"{name}: " + ", ".join(f"{k}={cli.input_syntax(preset[k])}" for k in keys if k in preset)
            for name, preset in PRESETS.items()
        )
        + "."
    )


def _one_of(*allowed):
    def check(value):
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")

    return check


#: Per-dataset options: None takes the dataset's value from PRESETS.
PER_DATASET = "(none: per dataset, see below)"
SEED_RANGE = (0, 2**32 - 1)


@dataclass(frozen=True)
class Config:
    """Paper A's imbalanced-CIFAR experiment (and Paper B's loss) on real networks."""

    dataset: str = option("cifar10", "images", choices=tuple(PRESETS))
    data_dir: str | None = option(
        None,
        "folder that contains cifar-10-batches-py/ or cifar-100-python/ (none: data/; "
        "for the fixture <out>/fixture_data, written there if absent)",
    )
    download: bool = option(False, "fetch CIFAR into --data-dir if it is missing")
    imbalance: float = option(
        100.0,
        "imbalance ratio R: minority classes keep max(1, floor(size / R)); 1 = balanced",
        check=cli.at_least(1),
        flag="--R",
        aliases=("--imbalance",),
    )
    profile: str = option("step", "imbalance profile", choices=("step", "exp"))
    loss: str = option(
        "prototype",
        "prototype SCL (sweeps --n-proto) or the combined loss (sweeps --alpha)",
        choices=("prototype", "combined"),
    )
    n_proto: tuple[int, ...] = option(
        (0, 10, 50, 100), "prototypes per class n_w, one run each", check=cli.each(cli.at_least(0)), sweep=True
    )
    anchors: tuple[str, ...] = option(
        ("data", "all"),
        "anchor modes of prototype SCL, one run each per n_w >= 1; data, all",
        check=cli.each(_one_of("data", "all")),
        sweep=True,
    )
    geometry: str = option(
        "etf", "prototype geometry, also the target of DeltaG*", choices=("etf", "orthogonal", "minority_spread")
    )
    spread: float = option(0.5, "minority_spread parameter", check=cli.between(0, 1))
    alpha: tuple[float, ...] = option(
        (0.0, 0.5, 1.0), "combined-loss weights alpha, one run each", check=cli.each(cli.between(0, 1)), sweep=True
    )
    variant: str = option("instance", "combined-loss variant", choices=("instance", "supcon"))
    tau: float = option(0.1, "temperature, in [0.001, 1000]", check=cli.between(*TAU_RANGE))
    model: str | None = option(None, f"network {PER_DATASET}", choices=("resnet18", "small_cnn"))
    width: int | None = option(None, f"small_cnn width {PER_DATASET}", check=cli.at_least(1))
    dim: int | None = option(None, f"embedding dimension d {PER_DATASET}", check=cli.at_least(1))
    final_relu: bool = option(False, "ReLU before normalisation (arXiv 2306.07960)")
    augmentation: str = option(
        "auto",
        "supcon: RandomResizedCrop(0.2-1) + flip + colour jitter + grayscale (SupCon's "
        "CIFAR recipe); crop_flip: pad 4 + random crop + flip (Paper A's predecessor code); "
        "auto: digits for the digits datasets, supcon otherwise",
        choices=("auto", "supcon", "crop_flip", "digits"),
    )
    epochs: int | None = option(None, f"epochs {PER_DATASET}", check=cli.at_least(1))
    batch_size: int | None = option(
        None, f"global batch in images, split over processes {PER_DATASET}", check=cli.at_least(2)
    )
    lr: float | None = option(None, f"peak SGD learning rate {PER_DATASET}", check=cli.positive)
    weight_decay: float | None = option(None, f"weight decay {PER_DATASET}", check=cli.at_least(0))
    warmup_epochs: int | None = option(None, f"linear warm-up before the cosine {PER_DATASET}", check=cli.at_least(0))
    eval_every: int | None = option(
        None, f"evaluate the geometry every k epochs and after the last {PER_DATASET}", check=cli.at_least(1)
    )
    checkpoint_every: float = option(
        600.0,
        "seconds between checkpoints, written at an epoch end; also on a signal "
        "and after the last epoch; one file per run, replaced each time",
        check=cli.at_least(0),
    )
    compile: bool = option(False, "train through torch.compile (a GPU option)")
    seeds: tuple[int, ...] | None = option(
        None, f"one run per seed and value {PER_DATASET}", check=cli.each(cli.between(*SEED_RANGE)), sweep=True
    )
    device: str = option("auto", "auto, cpu, cuda or cuda:<index>")
    threads: int = option(0, "CPU threads for torch (0: torch's default, one per core)", check=cli.at_least(0))
    out: str = option("results/cifar", "output folder")
    resume: bool = option(False, "continue from the checkpoints in --out; runs already finished are not repeated")
    progress: bool = option(True, "progress bars (--no-progress: none)")

    def validate(self) -> None:
        """Every run's TrainConfig built (so checked) before anything is loaded; raises ValueError naming the option."""
        try:
            resolve(self, "cpu")
        except ValueError as error:
            raise ValueError(f"{_option_named_in(str(error))}{error}") from None


def parse(argv=None) -> Config:
    """The validated configuration; bad input exits 2 with one line naming the option, before any work."""
    return cli.parse_config(Config, argv, PROG, f"{Config.__doc__} {_preset_table()}")


def resolve(config: Config, device: str) -> SweepConfig:
    """The SweepConfig of a configuration; raises ValueError (naming the config field) on bad values."""
    from empirical.train import TrainConfig  # deferred: --help and option errors answer without torch

    preset = {key: value for key, value in PRESETS[config.dataset].items() if key != "seeds"}
    seeds = config.seeds if config.seeds is not None else PRESETS[config.dataset]["seeds"]
    overrides = {
        key: getattr(config, key)
        for key in (
            "model",
            "width",
            "dim",
            "epochs",
            "batch_size",
            "lr",
            "weight_decay",
            "warmup_epochs",
            "eval_every",
        )
    }
    settings = {**preset, **{key: value for key, value in overrides.items() if value is not None}}
    out = Path(config.out)
    data_dir = config.data_dir or (str(out / "fixture_data") if config.dataset == "fixture" else "data")
    sweep_key, values = ("n_proto", config.n_proto) if config.loss == "prototype" else ("alpha", config.alpha)
    base = TrainConfig(
        dataset=config.dataset,
        data_dir=data_dir,
        download=config.download,
        imbalance=config.imbalance,
        profile=config.profile,
        loss=config.loss,
        anchors=config.anchors[0],
        geometry=config.geometry,
        spread=config.spread,
        variant=config.variant,
        tau=config.tau,
        final_relu=config.final_relu,
        augmentation=config.augmentation,
        device=device,
        compile=config.compile,
        **settings,
    )
    sweep = SweepConfig(
        base,
        sweep_key,
        tuple(values),
        tuple(seeds),
        str(out),
        config.resume,
        config.progress,
        config.anchors,
        config.checkpoint_every,
    )
    sweep.run_configs()  # builds (and so validates) every run's config before anything is loaded
    return sweep


# ---------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------


class StopFlag:
    """Set by SIGINT/SIGTERM; `empirical.train.run` polls it before every step."""

    def __init__(self):
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.signal = signum


@contextlib.contextmanager
def stop_on_signals():
    """Route SIGINT and SIGTERM to a StopFlag for the duration; restore the previous handlers after."""
    flag = StopFlag()
    previous = {s: signal.signal(s, flag._handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def _plan(sweep: SweepConfig, run_id: str, config, processes) -> tuple[dict | None, bool]:
    """(stored result of a finished run or None, resume from the checkpoint?), decided by rank 0 for every rank.

    One disk decides: ranks on other machines may see other files, or none.
    """
    out = Path(sweep.out)
    done, resume = None, False
    if processes.rank == 0 and sweep.resume:
        done = finished_result(out / "runs" / f"{run_id}.json", config)
        resume = done is None and (out / "checkpoints" / f"{run_id}.pt").exists()
    finished, resume = processes.broadcast((done is not None, resume))
    return (done if processes.rank == 0 else ({} if finished else None)), resume


def _run_all(sweep: SweepConfig, processes, stop: StopFlag) -> int:
    """Every run of the sweep in turn (finished ones skipped on --resume), then the summary set; the exit code."""
    out, rank = Path(sweep.out), processes.rank
    provenance = {"versions": cli.library_versions(), "git_revision": cli.git_revision()} if rank == 0 else {}
    if rank == 0:
        retire_summary(out)
    finished = []
    rows = []
    files = []
    for run_id, config in sweep.run_configs():
        done, resume = _plan(sweep, run_id, config, processes)
        files += run_files(run_id)
        if done is not None:  # --resume skips runs that already finished with this config
            if rank == 0:
                finished.append(done)
                rows.append(summary_row(run_id, done))
            continue
        result = _train_run(sweep, run_id, config, resume, processes, stop, provenance)
        if result["status"] == "interrupted":
            return _interrupted(stop, run_id, result, out / "checkpoints" / f"{run_id}.pt", rank)
        finished.append(result)
        rows.append(summary_row(run_id, result))
        if rank == 0:
            cli.write_csv(out / "summary.csv", rows)
    failures = [row["run"] for row in rows if not finite_final_metrics(row)]
    if rank == 0:
        write_summary(sweep, finished, rows, files, provenance, failures)
        print(summary_line(sweep, finished, sweep.base.device, processes.world, failures))
    return 1 if failures else 0


def _train_run(sweep: SweepConfig, run_id: str, config, resume: bool, processes, stop: StopFlag, provenance) -> dict:
    """Train one run with a progress bar; rank 0 writes its epoch log, its record and its curves."""
    from tqdm import tqdm

    from empirical import train

    out, rank = Path(sweep.out), processes.rank
    bar = tqdm(
        total=config.epochs, desc=run_id, disable=not sweep.progress or rank != 0, leave=False, dynamic_ncols=True
    )

    def on_epoch(log):
        bar.update(len(log) - bar.n)
        bar.set_postfix(loss=f"{log[-1]['loss']:.3f}", dG=f"{log[-1].get('delta_g', float('nan')):.3f}")
        if rank == 0:
            cli.write_jsonl(out / "runs" / f"{run_id}.jsonl", log)

    result = train.run(
        config,
        checkpoint=out / "checkpoints" / f"{run_id}.pt",
        resume=resume,
        checkpoint_every=sweep.checkpoint_every,
        should_stop=stop,
        on_epoch=on_epoch,
        processes=processes,
    )
    bar.close()
    if rank == 0:
        cli.write_jsonl(out / "runs" / f"{run_id}.jsonl", result["log"])
        cli.write_json(out / "runs" / f"{run_id}.json", {"run": run_id, "seed": config.seed, **provenance, **result})
        if result["log"]:  # per-epoch loss, DeltaG*, W, accuracy: CSV and figure beside the run
            from empirical import curves  # matplotlib only when a run has finished

            curves.write_curves(result, out / "runs", f"{run_id}.curves")
    return result


def _interrupted(stop: StopFlag, run_id: str, result: dict, checkpoint: Path, rank: int) -> int:
    """Say (rank 0) where the run stopped and how to continue; the exit code 128 + signal."""
    if rank == 0:
        name = signal.Signals(stop.signal).name if stop.signal else "a stop request"
        print(
            f"interrupted by {name} in {run_id} at epoch {result['epoch'] + 1}, step {result['step']}: "
            f"checkpoint {checkpoint} written; rerun the same command with --resume to continue",
            file=sys.stderr,
        )
    return 128 + (stop.signal or signal.SIGINT)


def main(argv=None) -> int:
    # OpenMP threads that spin while waiting slow CPU training by an order of magnitude
    # when other processes share the cores; passive waiting costs little on an idle machine.
    # Effective only if torch is not imported yet (as when run with python -m): before parsing,
    # whose validation builds every run's TrainConfig (and so imports torch).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parse(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from empirical import distributed, train

    try:
        device = train.resolve_device(args.device)
    except (RuntimeError, ValueError) as error:
        return _bad_input(f"--device {args.device!r}: {error}")
    with distributed.distributed_context(device) as (processes, device):
        try:
            return _main_in_group(args, processes, device)
        except Exception:
            if processes.world == 1:
                raise
            # One process failed on its own: say why and leave now, without the collective
            # teardown that would wait for the others; torchrun then stops them.
            traceback.print_exc()
            reason = traceback.format_exception_only(*sys.exc_info()[:2])[-1].strip()
            print(f"python -m empirical.cifar: rank {processes.rank}: error: {reason}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(1)


def _main_in_group(args: Config, processes, device) -> int:
    """Resolve, provide the data, train: the part of main run by every process of the job."""
    from empirical import train
    from empirical.checkpoint import CheckpointError
    from empirical.data import DatasetNotFoundError, ensure_available

    try:
        sweep = resolve(args, str(device))
    except ValueError as error:  # the same arguments on every rank: every rank stops here
        return _bad_input(f"{_option_named_in(str(error))}{error}")
    error = None
    try:
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:  # one process per machine provides the data
            _provide_data(sweep.base)
    except DatasetNotFoundError as failure:
        error = str(failure)
    error = processes.first_error(error)  # also the barrier: the others wait for the data here
    if error is None:
        try:
            ensure_available(sweep.base.dataset, sweep.base.data_dir)
        except DatasetNotFoundError as failure:
            error = str(failure)
        error = processes.first_error(error)
    if error is not None:
        return _bad_input(error)
    if processes.rank == 0 and args.device == "auto" and device.type == "cpu":
        print("no CUDA device found: training on the CPU", file=sys.stderr)
    train.configure_backends(device)
    try:
        with stop_on_signals() as stop:
            return _run_all(sweep, processes, stop)
    except CheckpointError as failure:  # rank 0 read it and told every rank
        return _bad_input(str(failure))
    except KeyboardInterrupt:
        print("aborted by a second signal: no checkpoint written for the current step", file=sys.stderr)
        return 130


def _provide_data(config) -> None:
    """Write the CIFAR-format fixture if it is the dataset and absent; download CIFAR if asked."""
    from empirical.data import ensure_available, write_cifar_fixture

    root = Path(config.data_dir)
    if config.dataset == "fixture" and not (root / "cifar-10-fixture-batches-py" / "batches.meta").exists():
        write_cifar_fixture(root, **FIXTURE_SIZES)
    elif config.download:
        ensure_available(config.dataset, config.data_dir, download=True)


def _option_named_in(message: str) -> str:
    """ "--option: " for the config field a validation message starts with (messages name their field)."""
    from empirical.train import TrainConfig

    field = message.split(" ", 1)[0]
    if field not in {f.name for f in dataclasses.fields(TrainConfig)}:
        return ""
    return {"imbalance": "--R", "seed": "--seeds"}.get(field, "--" + field.replace("_", "-")) + ": "


def _bad_input(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(cli.run_command(PROG, main))
