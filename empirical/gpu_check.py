"""A prepared GPU check: one command that tells within minutes whether the GPU path of the empirical layer works.

    python -m empirical.gpu_check --out results/gpu_check              # a GPU machine: a few minutes (< 8)
    python -m empirical.gpu_check --out results/gpu_check --compile    # the same through torch.compile
    python -m empirical.gpu_check --out DIR --device cpu               # the same checks, smaller, on a CPU

It writes DIR/gpu_check.json after every section (so a time-out keeps what finished; "complete"
is false until the last section is in and the verdict written, and a previous run's gpu_check.json
is removed first), then one summary line; exit code 0 if every section passed, 1 otherwise, 2 for
bad arguments, 130/143 on SIGINT/SIGTERM (one line). Sections:

1. ``environment``: versions, the device, bf16 support, GPU count, NCCL.
2. ``fixture``: the CIFAR-format fixture (written to DIR/data) through `empirical.train.run`
   with the GPU path on (bf16 autocast, channels_last, fused SGD, torch.compile with
   --compile): ResNet-18 on a GPU, a small CNN on a CPU. Host synchronisations inside the
   training step are counted (`empirical.host_sync`; torch's CUDA sync debug mode on a
   GPU) on every step of the first epoch after the first (cuDNN autotuning); images/s of
   the last epoch; the one checkpoint written and read back; the final geometry in float32.
3. ``digits``: the same on real images, scikit-learn's digits upsampled to 32x32
   ("digits32"), step imbalance R = 10, n_w = 10.
4. ``fixed_batch``: the loss of one fixed batch (fixed images, augmentation and initial
   ResNet-18) on the device against a float64 CPU reference, within `TOLERANCES`.
5. ``torchrun``: one epoch of the fixture with 2 processes under torchrun (NCCL when each
   process has its own GPU, else gloo: two processes then share the one GPU), its epoch
   loss against one process within `TOLERANCES`; without torch.compile (three more
   compilations would not fit the time).

Needs torch and torchvision only: no network, no cvxpy (nothing imported here reaches
`simulate.certify`); the digits need scikit-learn or its file digits.csv.gz in --data-dir.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

from simulate import cli
from simulate.cli import option

PROG = "python -m empirical.gpu_check"
#: Relative tolerances of the fixed-batch loss against float64 on the CPU, and of the 2-process epoch loss
#: against 1 process, set from the precision of each path before any GPU run (not fitted to one):
#: kernel: the loss alone on the device's float32 embeddings (float32 eps 1.2e-7, logits up to 1/tau = 10);
#: float32: the whole forward in float32, TF32 off; bfloat16: the forward under bf16 autocast (unit roundoff
#: 3.9e-3; measured on a CPU with bf16 autocast: <= 1.1e-3 at initialisation, 3 seeds);
#: torchrun: the same global batch split over 2 processes (float sums in another order; under bf16 also
#: BatchNorm in float32 instead of bf16).
TOLERANCES = {"kernel": 1e-6, "float32": 1e-5, "bfloat16": 1e-2, "torchrun_float32": 1e-4, "torchrun_bfloat16": 2e-2}
#: Sizes per device type: a GPU run that fits in minutes, a CPU run that fits in a test.
SIZES = {
    # 5000 fixture images in batches of 512 (the CIFAR preset's): 9 steps an epoch, enough for images/s.
    "cuda": dict(
        model="resnet18",
        dim=128,
        width=16,
        fixture_per_class=500,
        fixture_epochs=3,
        batch_size=512,
        digits_epochs=10,
        digits_batch=256,
        fixed_images=32,
        torchrun_batch=512,
    ),
    "cpu": dict(
        model="small_cnn",
        dim=16,
        width=4,
        fixture_per_class=8,
        fixture_epochs=2,
        batch_size=16,
        digits_epochs=1,
        digits_batch=64,
        fixed_images=4,
        torchrun_batch=16,
    ),
}
TAU = 0.1


@dataclass(frozen=True)
class Config:
    """A prepared GPU check: whether the GPU path of the empirical layer works, within minutes."""

    out: str = option("results/gpu_check", "output folder")
    device: str = option("auto", "auto, cpu, cuda or cuda:<index>")
    data_dir: str | None = option(
        None, "where the fixture is written and digits.csv.gz is looked for (none: <out>/data)"
    )
    compile: bool = option(False, "train through torch.compile")
    torchrun: bool = option(True, "the 2-process section (--no-torchrun leaves it out)")
    worker: bool = option(False, "internal: one process of the 2-process section, started by the check itself")


def parse(argv=None) -> Config:
    """The validated configuration; bad input exits 2 with one line naming the flag, before any work."""
    return cli.parse_config(Config, argv, PROG, Config.__doc__)


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


def environment(device) -> dict:
    import torch
    import torchvision

    record = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count(),
        "cvxpy_imported": any(
            isinstance(sys.modules.get(name), types.ModuleType) for name in ("cvxpy", "simulate.certify")
        ),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        record.update(
            gpu=properties.name,
            memory_gib=round(properties.total_memory / 2**30, 1),
            capability=f"{properties.major}.{properties.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16=torch.cuda.is_bf16_supported(),
            nccl=torch.distributed.is_nccl_available(),
        )
    record["passed"] = not record["cvxpy_imported"]
    return record


class _StepSyncs:
    """Replaces `train.train_step` while a run lasts: counts host syncs of the steps after the first ``skip``."""

    def __init__(self, compiled: bool, count_steps: int, skip: int = 1):
        from empirical import train

        self.train, self.original = train, train.train_step
        self.dispatch = not compiled  # the dispatch mode would break compiled code; CUDA's own counter stays
        self.count_steps, self.skip, self.steps = count_steps, skip, 0
        self.counts = {}

    def __enter__(self):
        from empirical.host_sync import count_host_syncs

        def step(*args, **kwargs):
            self.steps += 1
            if not self.skip < self.steps <= self.skip + self.count_steps:
                return self.original(*args, **kwargs)
            with count_host_syncs(dispatch=self.dispatch) as syncs:
                loss = self.original(*args, **kwargs)
            for kind, count in syncs.items():
                self.counts[kind] = self.counts.get(kind, 0) + count
            return loss

        self.train.train_step = step
        return self

    def __exit__(self, *exc):
        self.train.train_step = self.original
        return False


def training_run(config, out: Path, name: str) -> dict:
    """One `train.run` with syncs counted and one checkpoint written; the section's record."""
    from empirical import train
    from empirical.checkpoint import load_checkpoint

    checkpoint = out / "checkpoints" / f"{name}.pt"
    start = time.perf_counter()
    # Count over the first epoch after its first step only: the dispatch mode slows the steps it watches.
    with _StepSyncs(config.compile, count_steps=max(0, _steps_per_epoch(config) - 1), skip=1) as syncs:
        result = train.run(config, checkpoint=checkpoint, checkpoint_every=0.0)
    seconds = time.perf_counter() - start
    saved = load_checkpoint(checkpoint, map_location="cpu")
    log = result["log"]
    losses = [r["loss"] for r in log]
    record = {
        "config": {
            k: v
            for k, v in result["config"].items()
            if k in ("dataset", "model", "dim", "epochs", "batch_size", "n_proto", "imbalance", "compile", "device")
        },
        "seconds": round(seconds, 2),
        "steps_per_epoch": result["steps_per_epoch"],
        "host_syncs_in_step": sum(syncs.counts.values()),
        "host_sync_kinds": syncs.counts,
        "steps_counted": syncs.count_steps,
        "images_per_s_last_epoch": log[-1]["images_per_s"],
        "images_per_s_by_epoch": [r["images_per_s"] for r in log],
        "loss_by_epoch": losses,
        "final_delta_g": result["final"]["delta_g"],
        "final_backbone_delta_g": result["final_backbone"]["delta_g"],
        "final_eval_precision": result["final"]["eval_precision"],
        "checkpoint_mb": round(checkpoint.stat().st_size / 2**20, 2),
        "checkpoint_files": sorted(p.name for p in checkpoint.parent.iterdir()),
    }
    record["passed"] = bool(
        result["status"] == "finished"
        and all(math.isfinite(x) for x in losses)
        and record["host_syncs_in_step"] == 0
        and saved["epoch"] == config.epochs
        and record["final_eval_precision"] == "float32"
        and record["checkpoint_files"].count(checkpoint.name) == 1
    )
    return record


def _steps_per_epoch(config) -> int:
    from empirical import train

    data = train.prepare_data(config, "cpu")
    return len(data.train) // train.global_batch_size(config.batch_size, len(data.train), 1)


def _train_config(device, sizes: dict, data_dir: Path, compiled: bool, **run):
    """A prototype-SCL training config on the check's network and device; `run` sets the data and schedule."""
    from empirical import train

    return train.TrainConfig(
        data_dir=str(data_dir),
        loss="prototype",
        n_proto=10,
        tau=TAU,
        model=sizes["model"],
        width=sizes["width"],
        dim=sizes["dim"],
        device=str(device),
        compile=compiled,
        **run,
    )


def fixture_config(device, sizes: dict, data_dir: Path, compiled: bool, epochs: int | None = None, batch=None):
    return _train_config(
        device,
        sizes,
        data_dir,
        compiled,
        dataset="fixture",
        imbalance=1.0,
        epochs=epochs or sizes["fixture_epochs"],
        batch_size=batch or sizes["batch_size"],
        lr=0.05,
        warmup_epochs=0,
        eval_every=1,
    )


def fixture_section(device, sizes: dict, out: Path, data_dir: Path, compiled: bool) -> dict:
    return training_run(fixture_config(device, sizes, data_dir, compiled), out, "fixture")


def digits_section(device, sizes: dict, out: Path, data_dir: Path, compiled: bool) -> dict:
    config = _train_config(
        device,
        sizes,
        data_dir,
        compiled,
        dataset="digits32",
        imbalance=10.0,
        epochs=sizes["digits_epochs"],
        batch_size=sizes["digits_batch"],
        lr=0.1,
        warmup_epochs=min(2, sizes["digits_epochs"] - 1),
        eval_every=sizes["digits_epochs"],
    )
    record = training_run(config, out, "digits32")
    if config.epochs > 1:  # real images: training must lower the loss
        record["loss_decreased"] = record["loss_by_epoch"][-1] < record["loss_by_epoch"][0]
        record["passed"] = record["passed"] and record["loss_decreased"]
    return record


def fixed_batch_section(device, sizes: dict, data_dir: Path) -> dict:
    """The loss of one fixed batch on ``device`` (float32 and bf16 forward) against float64 on the CPU."""
    import torch
    import torch.nn.functional as F

    from empirical import data, train
    from simulate import losses
    from theory import simplex

    config = train.TrainConfig(dataset="fixture", model="resnet18", dim=128, n_proto=10, tau=TAU, seed=0)
    fixture = data.load_cifar("fixture", data_dir)[0]
    images, labels = fixture.images, fixture.labels
    mean, std = data.channel_stats(images)
    batch = sizes["fixed_images"]
    params = data.sample_augmentation(2 * batch, data.AUGMENTATIONS["supcon"], torch.Generator().manual_seed(0))
    views = data.augment(torch.cat([images[:batch]] * 2), params, mean, std)  # (2B, 3, 32, 32) float32, CPU
    view_labels = torch.cat([labels[:batch]] * 2)
    prototypes = torch.as_tensor(simplex.etf(10, config.dim))  # float64
    network = train.make_network(config, 3, torch.device("cpu"))  # training mode: BatchNorm on the batch

    reference_net = copy.deepcopy(network).double()
    with torch.no_grad():
        h = reference_net.backbone(views.double())
        z64 = F.normalize(reference_net.projector(h), dim=-1)
        reference = float(losses.prototype_supcon_loss(z64, view_labels, prototypes, config.n_proto, TAU))

    step_loss = losses.prototype_supcon_training_loss(prototypes.float().to(device), config.n_proto, TAU)
    x, y = views.to(device), view_labels.to(device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    measured = {}
    with torch.no_grad():
        with train.full_float32(device):
            z32 = copy.deepcopy(network).to(device)(x)
        measured["float32"] = float(step_loss(z32, y))
        measured["kernel"] = float(step_loss(z64.float().to(device), y))
        with torch.autocast(device.type, dtype=torch.bfloat16):
            z16 = copy.deepcopy(network).to(device)(x)
        measured["bfloat16"] = float(step_loss(z16, y))
    record = {
        "images": batch,
        "views": 2 * batch,
        "model": "resnet18",
        "tau": TAU,
        "n_proto": config.n_proto,
        "float64_cpu_loss": reference,
        "device": str(device),
    }
    passed = True
    for path, value in measured.items():
        error = abs(value - reference) / abs(reference)
        record[path] = {"loss": value, "relative_error": error, "tolerance": TOLERANCES[path]}
        passed = passed and error <= TOLERANCES[path]
    record["passed"] = bool(passed)
    return record


def torchrun_section(device, sizes: dict, out: Path, data_dir: Path) -> dict:
    """One epoch with 2 processes under torchrun, against one process."""
    from empirical import train

    folder = out / "torchrun"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "empirical.gpu_check",
        "--worker",
        "--out",
        str(folder),
        "--device",
        device.type,
        "--data-dir",
        str(data_dir),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).resolve().parent.parent
    )
    seconds = time.perf_counter() - start
    record = {"command": " ".join(command[1:]), "returncode": completed.returncode, "seconds": round(seconds, 1)}
    if completed.returncode != 0:
        record.update(passed=False, output_tail=(completed.stdout + completed.stderr)[-3000:])
        return record
    two = json.loads((folder / "result.json").read_text())
    one = train.run(fixture_config(device, sizes, data_dir, False, epochs=1, batch=sizes["torchrun_batch"]))
    loss_one = one["log"][0]["loss"]
    difference = abs(two["loss"] - loss_one) / abs(loss_one)
    tolerance = TOLERANCES["torchrun_bfloat16" if device.type == "cuda" else "torchrun_float32"]
    record.update(two, loss_one_process=loss_one, relative_difference=difference, tolerance=tolerance)
    record["passed"] = bool(two["world_size"] == 2 and math.isfinite(two["loss"]) and difference <= tolerance)
    return record


def worker(args: Config) -> int:
    """One process of the torchrun section: one epoch of the fixture; rank 0 writes result.json."""
    import torch

    from empirical import distributed, train

    requested = torch.device(args.device)
    with distributed.distributed_context(requested) as (processes, device):
        sizes = SIZES[device.type]
        config = fixture_config(device, sizes, Path(args.data_dir), False, epochs=1, batch=sizes["torchrun_batch"])
        train.configure_backends(device)
        result = train.run(config, processes=processes)
        if processes.rank == 0:
            cli.write_json(
                Path(args.out) / "result.json",
                {
                    "world_size": result["world_size"],
                    "backend": processes.backend,
                    "device": str(device),
                    "loss": result["log"][0]["loss"],
                    "images_per_s": result["log"][0]["images_per_s"],
                    "final_delta_g": result["final"]["delta_g"],
                },
            )
    return 0


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads (see empirical.cifar)
    if args.worker:
        return worker(args)
    import torch

    from empirical import data, train

    try:
        device = train.resolve_device(args.device)
    except (RuntimeError, ValueError) as error:
        cli.fail(PROG, f"--device {args.device!r}: {error}")
    out = Path(args.out)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data"
    sizes = SIZES[device.type]
    (out / "gpu_check.json").unlink(missing_ok=True)  # a previous run's verdict never sits beside this run's files
    train.configure_backends(device)
    if device.type == "cpu":  # the CPU run is the small version for tests: one thread, no spinning
        torch.set_num_threads(1)
    data.write_cifar_fixture(data_dir, n_train_per_class=sizes["fixture_per_class"], n_test_per_class=10)
    report = {
        **cli.run_metadata(),
        "complete": False,
        "tolerances": TOLERANCES,
        "sizes": sizes,
        "compile": args.compile,
        "sections": {},
    }
    sections = {
        "environment": lambda: environment(device),
        "fixture": lambda: fixture_section(device, sizes, out, data_dir, args.compile),
        "digits": lambda: digits_section(device, sizes, out, data_dir, args.compile),
        "fixed_batch": lambda: fixed_batch_section(device, sizes, data_dir),
    }
    if args.torchrun:
        sections["torchrun"] = lambda: torchrun_section(device, sizes, out, data_dir)
    failed = _run_sections(sections, report, out / "gpu_check.json")
    print(_verdict_line(report, device, len(sections), failed, out / "gpu_check.json"))
    return 0 if not failed else 1


def _run_sections(sections: dict, report: dict, path: Path) -> list[str]:
    """Run each section in turn, recording it (or its error) in ``report`` and rewriting ``path`` after each;
    then mark the report complete. Returns the names of the sections that failed."""
    start = time.perf_counter()
    for name, section in sections.items():
        began = time.perf_counter()
        try:
            record = section()
        except Exception as error:  # a failed section is a result: record it and go on to the next
            record = {
                "passed": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc()[-3000:],
            }
        record["section_seconds"] = round(time.perf_counter() - began, 2)
        report["sections"][name] = record
        report["seconds"] = round(time.perf_counter() - start, 1)
        cli.write_json(path, report)
    failed = [name for name, record in report["sections"].items() if not record["passed"]]
    report.update(passed=not failed, complete=True)
    cli.write_json(path, report)
    return failed


def _verdict_line(report: dict, device, n_sections: int, failed: list[str], path: Path) -> str:
    """The one-line summary printed at the end: sections passed, speed, host syncs, bf16 error, time, exit code."""
    fixture, fixed = report["sections"]["fixture"], report["sections"]["fixed_batch"]
    return (
        f"gpu check on {device} ({report['sections']['environment'].get('gpu', platform.processor() or 'cpu')}): "
        f"{n_sections - len(failed)}/{n_sections} sections passed"
        + (f" (failed: {', '.join(failed)})" if failed else "")
        + "; "
        f"fixture {fixture.get('images_per_s_last_epoch') or 0:.0f} images/s, "
        f"{fixture.get('host_syncs_in_step', '?')} host syncs per step; "
        f"bf16 loss error {fixed.get('bfloat16', {}).get('relative_error', float('nan')):.1e}; "
        f"{report['seconds']:.0f} s; exit {1 if failed else 0}; {path}"
    )


if __name__ == "__main__":
    sys.exit(
        cli.run_command(PROG, main, what_is_left='gpu_check.json keeps the sections that finished ("complete": false)')
    )
