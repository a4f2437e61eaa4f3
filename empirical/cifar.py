"""Command line: Paper A's imbalanced-CIFAR experiment (and Paper B's loss) on real networks.

    python -m empirical.cifar                                  # CIFAR-10, R = 100, n_w = 0 10 50 100 (a GPU job)
    python -m empirical.cifar --dataset digits --R 10          # minutes on a CPU
    python -m empirical.cifar --dataset digits --R 1 --loss combined --alpha 0 0.5 1
    torchrun --standalone --nproc_per_node 4 -m empirical.cifar --dataset cifar10 --R 10

Runs one training per (seed, swept value) one after another, the swept value being
``--n-proto`` (prototype SCL, for each of ``--anchors``; n_w = 0 once, as it has no
prototype anchors) or ``--alpha`` (combined loss). Under ``--out`` (default
results/cifar/) it writes, atomically: runs/<run>.jsonl (one line per epoch, the
geometry every ``--eval-every`` epochs and after the last), runs/<run>.json (resolved
config, versions, git revision, seed, final metrics of the projector output and of the
backbone features, measured in float32, Grams), checkpoints/<run>.pt (the run's latest
checkpoint only: every ``--checkpoint-every`` seconds at an epoch end, on a signal and
after the last epoch), summary.csv (one row per run), summary.json, and the figures
delta_g_vs_<swept>.png, delta_g_epochs.png, gram_heatmaps.png, accuracy.png (and
variances_vs_alpha.png for the combined loss; with two anchor modes, one set per mode,
suffixed _anchors-<mode>).

On the CPU the command sets OMP_WAIT_POLICY=PASSIVE unless it is set (spinning OpenMP
threads slow training tenfold on shared cores); --threads sets torch's thread count.

SIGINT/SIGTERM: the current step finishes, a checkpoint is written and the program
exits (130 / 143); the same command with ``--resume`` continues, skipping finished runs.
Bad arguments, missing CIFAR files, a failed --download and unreadable checkpoints:
exit code 2, one line, before any data is loaded or any training starts.

Under torchrun, rank 0 decides what to resume and broadcasts it; an error on one rank
during setup ends every rank with that rank's reason, and an unexpected error during
training ends the failing process at once (torchrun then stops the others).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simulate import cli

if TYPE_CHECKING:  # the module imports torch lazily so that --help and argument errors answer at once
    from empirical.train import TrainConfig

#: Per-dataset defaults. CIFAR targets a GPU; digits and the fixture finish on a CPU.
#: eval_every: the geometry curve's spacing in epochs (evaluation costs about a quarter of a CIFAR epoch).
PRESETS = {
    "cifar10": dict(model="resnet18", dim=128, epochs=200, batch_size=512, lr=0.25, weight_decay=1e-4,
                    warmup_epochs=10, eval_every=10, seeds=(0, 1, 2)),
    "cifar100": dict(model="resnet18", dim=128, epochs=200, batch_size=512, lr=0.25, weight_decay=1e-4,
                     warmup_epochs=10, eval_every=10, seeds=(0, 1, 2)),
    "digits": dict(model="small_cnn", width=16, dim=32, epochs=30, batch_size=64, lr=0.1, weight_decay=5e-4,
                   warmup_epochs=2, eval_every=1, seeds=(0, 1, 2)),
    "fixture": dict(model="resnet18", dim=128, epochs=2, batch_size=32, lr=0.05, weight_decay=5e-4,
                    warmup_epochs=0, eval_every=1, seeds=(0,)),
}
#: Images per class of the CIFAR-format fixture written for --dataset fixture.
FIXTURE_SIZES = dict(n_train_per_class=10, n_test_per_class=5)
EXIT_BAD_INPUT = 2


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
                    runs.append((f"{self.base.loss}_alpha{value:g}_seed{seed}", self.base.replace(seed=seed, alpha=value)))
                    continue
                for anchors in self.anchors[:1] if value == 0 else self.anchors:
                    suffix = "" if value == 0 else f"_{anchors}"
                    config = self.base.replace(seed=seed, n_proto=value, anchors=anchors)
                    runs.append((f"{config.loss}_nw{value:g}{suffix}_seed{seed}", config))
        return runs


def _preset_table() -> str:
    keys = ("model", "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "dim", "width", "eval_every",
            "seeds")
    lines = ["per-dataset defaults (override with the options above):"]
    for name, preset in PRESETS.items():
        lines.append(f"  {name:9s} " + ", ".join(f"{k}={preset[k]}" for k in keys if k in preset))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m empirical.cifar", description=__doc__.split("\n\n")[0], epilog=_preset_table(),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=list(PRESETS), default="cifar10", help="default cifar10")
    p.add_argument("--data-dir", default=None,
                   help="folder that contains cifar-10-batches-py/ or cifar-100-python/ (default data/; "
                        "for the fixture <out>/fixture_data, written there if absent)")
    p.add_argument("--download", action="store_true", help="fetch CIFAR into --data-dir if it is missing")
    p.add_argument("--R", dest="imbalance", type=float, default=100.0,
                   help="imbalance ratio R >= 1: minority classes keep size/R (default 100; 1 = balanced)")
    p.add_argument("--profile", choices=["step", "exp"], default="step", help="imbalance profile (default step)")
    p.add_argument("--loss", choices=["prototype", "combined"], default="prototype",
                   help="prototype SCL (sweeps --n-proto) or the combined loss (sweeps --alpha); default prototype")
    p.add_argument("--n-proto", type=int, nargs="+", default=[0, 10, 50, 100],
                   help="prototypes per class n_w, one run each (default 0 10 50 100)")
    p.add_argument("--anchors", choices=["data", "all"], nargs="+", default=["data", "all"],
                   help="anchor modes of prototype SCL, one run each per n_w >= 1 (default data all)")
    p.add_argument("--geometry", choices=["etf", "orthogonal", "minority_spread"], default="etf",
                   help="prototype geometry, also the target of DeltaG* (default etf)")
    p.add_argument("--spread", type=float, default=0.5, help="minority_spread parameter in [0, 1] (default 0.5)")
    p.add_argument("--alpha", type=float, nargs="+", default=[0.0, 0.5, 1.0],
                   help="combined-loss weights alpha in [0, 1], one run each (default 0 0.5 1)")
    p.add_argument("--variant", choices=["instance", "supcon"], default="instance", help="default instance")
    p.add_argument("--tau", type=float, default=0.1, help="temperature > 0 (default 0.1)")
    p.add_argument("--model", choices=["resnet18", "small_cnn"], default=None, help="default per dataset")
    p.add_argument("--width", type=int, default=None, help="small_cnn width (default per dataset)")
    p.add_argument("--dim", type=int, default=None, help="embedding dimension d (default per dataset)")
    p.add_argument("--final-relu", action="store_true", help="ReLU before normalisation (arXiv 2306.07960)")
    p.add_argument("--augmentation", choices=["auto", "supcon", "crop_flip", "digits"], default="auto",
                   help="supcon: RandomResizedCrop(0.2-1) + flip + colour jitter + grayscale (SupCon's CIFAR recipe); "
                        "crop_flip: pad 4 + random crop + flip (Paper A's predecessor code); "
                        "auto: digits for the digits datasets, supcon otherwise (default auto)")
    p.add_argument("--epochs", type=int, default=None, help="default per dataset")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch in images, split over processes (default per dataset)")
    p.add_argument("--lr", type=float, default=None, help="peak SGD learning rate (default per dataset)")
    p.add_argument("--weight-decay", type=float, default=None, help="default per dataset")
    p.add_argument("--warmup-epochs", type=int, default=None, help="linear warm-up before the cosine (default per dataset)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="evaluate the geometry every k epochs and after the last (default per dataset)")
    p.add_argument("--checkpoint-every", type=float, default=600.0,
                   help="seconds between checkpoints, written at an epoch end; also on a signal and after the last "
                        "epoch; one file per run, replaced each time (default 600)")
    p.add_argument("--compile", action="store_true", help="train through torch.compile (a GPU option)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="one run per seed and value (default per dataset)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index> (default auto)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0 = torch's default, one per core)")
    p.add_argument("--out", default="results/cifar", help="output folder (default results/cifar)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --out; runs already finished are not repeated")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def resolve(args: argparse.Namespace, device: str) -> SweepConfig:
    """The SweepConfig of parsed arguments; raises ValueError (naming the option) on bad values."""
    from empirical.train import TrainConfig  # deferred: parsing stays fast and free of torch

    preset = {key: value for key, value in PRESETS[args.dataset].items() if key != "seeds"}
    seeds = tuple(args.seeds) if args.seeds is not None else PRESETS[args.dataset]["seeds"]
    overrides = {key: getattr(args, key) for key in ("model", "width", "dim", "epochs", "batch_size", "lr",
                                                      "weight_decay", "warmup_epochs", "eval_every")}
    settings = {**preset, **{key: value for key, value in overrides.items() if value is not None}}
    out = Path(args.out)
    data_dir = args.data_dir or (str(out / "fixture_data") if args.dataset == "fixture" else "data")
    sweep_key, values = ("n_proto", args.n_proto) if args.loss == "prototype" else ("alpha", args.alpha)
    anchors = tuple(dict.fromkeys(args.anchors))  # in the order given, without repeats
    base = TrainConfig(
        dataset=args.dataset, data_dir=data_dir, download=args.download, imbalance=args.imbalance,
        profile=args.profile, loss=args.loss, anchors=anchors[0], geometry=args.geometry, spread=args.spread,
        variant=args.variant, tau=args.tau, final_relu=args.final_relu, augmentation=args.augmentation,
        device=device, compile=args.compile, **settings,
    )
    for seed in seeds:
        if seed < 0:
            raise ValueError(f"--seeds must be integers >= 0, got {seed}")
    if not args.checkpoint_every >= 0:  # also refuses NaN
        raise ValueError(f"--checkpoint-every must be a number of seconds >= 0, got {args.checkpoint_every}")
    sweep = SweepConfig(base, sweep_key, tuple(values), seeds, str(out), args.resume, not args.no_progress,
                        anchors, args.checkpoint_every)
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
# Outputs
# ---------------------------------------------------------------------------


def summary_row(run_id: str, result: dict) -> dict:
    """One CSV row: identity of the run, its status and its final metrics."""
    config, final = result["config"], result.get("final") or {}
    speeds = [r["images_per_s"] for r in result.get("log", []) if r.get("images_per_s")]
    row = {"run": run_id, "status": result["status"]}
    row.update({key: config[key] for key in ("dataset", "imbalance", "profile", "loss", "n_proto", "anchors",
                                             "geometry", "alpha", "variant", "tau", "model", "augmentation",
                                             "epochs", "seed")})
    row["augmentation"] = result.get("augmentation", config["augmentation"])  # the recipe "auto" resolved to
    row["epochs_done"] = len(result.get("log", []))
    row["final_loss"] = final.get("loss")  # the column "loss" names the loss function
    row.update({key: value for key, value in final.items() if key not in ("epoch", "loss", "lr", "train_seconds",
                                                                           "images_per_s")})
    row.update({f"backbone_{key}": value for key, value in (result.get("final_backbone") or {}).items()
                if key != "eval_precision"})
    row["mean_images_per_s"] = float(np.mean(speeds)) if speeds else None
    return row


def write_figures(out: Path, results: list[dict], key: str, anchors: tuple = ("data",)) -> list[Path]:
    """The sweep's figures; with several anchor modes one set per mode (the n_w = 0 runs in each)."""
    from empirical import figures

    groups = {"": results}
    if key == "n_proto" and len(anchors) > 1:
        groups = {f"_anchors-{mode}": [r for r in results if r["config"]["n_proto"] == 0
                                       or r["config"]["anchors"] == mode] for mode in anchors}
    paths = []
    for suffix, subset in groups.items():
        made = {
            f"delta_g_vs_{key}": figures.metric_by_sweep(subset, key, {"delta_g": r"$\Delta G^*$"},
                                                         r"$\Delta G^*$ at the last epoch"),
            "delta_g_epochs": figures.delta_g_over_epochs(subset, key),
            "gram_heatmaps": figures.gram_heatmaps(subset, key),
            "accuracy": figures.accuracy_by_group(subset, key),
        }
        if key == "alpha":
            made["variances_vs_alpha"] = figures.metric_by_sweep(
                subset, key, {"within_var": "within-class W", "between_var": "between-class B"},
                "variances at the last epoch")
        for name, figure in made.items():
            paths.append(cli.save_figure(figure, out / f"{name}{suffix}.png", dpi=120))
    return paths


def _finished_result(path: Path, config) -> dict | None:
    """The stored result of a finished run with the same config (up to resumable changes), else None."""
    from empirical.train import RESUMABLE_CHANGES

    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    current = dataclasses.asdict(config)
    same = all(stored.get("config", {}).get(k) == v for k, v in current.items() if k not in RESUMABLE_CHANGES)
    return stored if same and stored.get("status") == "finished" else None


def _summary_line(sweep: SweepConfig, results: list[dict], device: str, world: int) -> str:
    finished = [r for r in results if r["status"] == "finished"]
    groups = {}
    for r in finished:
        config = r["config"]
        value = config[sweep.sweep_key]
        label = f"{value:g}" if sweep.sweep_key == "alpha" or value == 0 or len(sweep.anchors) == 1 \
            else f"{value:g}/{config['anchors']}"
        groups.setdefault(label, []).append(r["final"]["delta_g"])
    parts = []
    for label, values in groups.items():
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        parts.append(f"{label}: {np.mean(values):.3f}±{std:.3f}")
    name = "n_w" if sweep.sweep_key == "n_proto" else "alpha"
    if sweep.sweep_key == "n_proto" and len(sweep.anchors) > 1:
        name += "/anchors"
    return (f"{len(finished)} runs on {sweep.base.dataset} ({device}, {world} process{'es' * (world > 1)}); "
            f"final DeltaG* by {name} (mean±std over seeds): {', '.join(parts)}; results in {sweep.out}/")


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
        done = _finished_result(out / "runs" / f"{run_id}.json", config)
        resume = done is None and (out / "checkpoints" / f"{run_id}.pt").exists()
    finished, resume = processes.broadcast((done is not None, resume))
    return (done if processes.rank == 0 else ({} if finished else None)), resume


def _run_all(sweep: SweepConfig, processes, stop: StopFlag) -> int:
    from tqdm import tqdm

    from empirical import train

    out, rank = Path(sweep.out), processes.rank
    provenance = {"versions": cli.library_versions(), "git_revision": cli.git_revision()} if rank == 0 else {}
    finished = []
    rows = []
    for run_id, config in sweep.run_configs():
        record_path = out / "runs" / f"{run_id}.json"
        checkpoint = out / "checkpoints" / f"{run_id}.pt"
        done, resume = _plan(sweep, run_id, config, processes)
        if done is not None:  # --resume skips runs that already finished with this config
            if rank == 0:
                finished.append(done)
                rows.append(summary_row(run_id, done))
            continue
        bar = tqdm(total=config.epochs, desc=run_id, disable=not sweep.progress or rank != 0, leave=False,
                   dynamic_ncols=True)

        def on_epoch(log, run_id=run_id, bar=bar):
            bar.update(len(log) - bar.n)
            bar.set_postfix(loss=f"{log[-1]['loss']:.3f}", dG=f"{log[-1].get('delta_g', float('nan')):.3f}")
            if rank == 0:
                cli.write_jsonl(out / "runs" / f"{run_id}.jsonl", log)

        result = train.run(config, checkpoint=checkpoint, resume=resume, checkpoint_every=sweep.checkpoint_every,
                           should_stop=stop, on_epoch=on_epoch, processes=processes)
        bar.close()
        if rank == 0:
            cli.write_jsonl(out / "runs" / f"{run_id}.jsonl", result["log"])
            cli.write_json(record_path, {"run": run_id, "seed": config.seed, **provenance, **result})
        if result["status"] == "interrupted":
            if rank == 0:
                name = signal.Signals(stop.signal).name if stop.signal else "a stop request"
                print(f"interrupted by {name} in {run_id} at epoch {result['epoch'] + 1}, step {result['step']}: "
                      f"checkpoint {checkpoint} written; rerun the same command with --resume to continue",
                      file=sys.stderr)
            return 128 + (stop.signal or signal.SIGINT)
        finished.append(result)
        rows.append(summary_row(run_id, result))
        if rank == 0:
            cli.write_csv(out / "summary.csv", rows)
    if rank == 0:
        cli.write_json(out / "summary.json", {"command": "empirical.cifar", "sweep": sweep.sweep_key,
                                                "values": list(sweep.sweep_values), "anchors": list(sweep.anchors),
                                                "seeds": list(sweep.seeds),
                                                "base_config": dataclasses.asdict(sweep.base), **provenance,
                                                "runs": rows})
        write_figures(out, finished, sweep.sweep_key, sweep.anchors)
        print(_summary_line(sweep, finished, sweep.base.device, processes.world))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # OpenMP threads that spin while waiting slow CPU training by an order of magnitude
    # when other processes share the cores; passive waiting costs little on an idle machine.
    # Effective only if torch is not imported yet (as when run with python -m).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch  # deferred so that --help and argument errors answer at once

    if args.threads < 0:
        return _bad_input(f"--threads must be an integer >= 0 (0 = torch's default), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)

    from empirical import distributed, train

    try:
        device = train.resolve_device(args.device)
    except (RuntimeError, ValueError) as error:
        return _bad_input(f"--device: {error}")
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


def _main_in_group(args, processes, device) -> int:
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
    """"--option: " for the config field a validation message starts with (messages name their field)."""
    from empirical.train import TrainConfig

    field = message.split(" ", 1)[0]
    if field not in {f.name for f in dataclasses.fields(TrainConfig)}:
        return ""
    return {"imbalance": "--R", "seed": "--seeds"}.get(field, "--" + field.replace("_", "-")) + ": "


def _bad_input(message: str) -> int:
    print(f"python -m empirical.cifar: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
