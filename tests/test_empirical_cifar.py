"""Tests of the command line `python -m empirical.cifar` on the CIFAR-format fixture (CPU, tiny sizes).

The command runs in-process (`cifar.main(argv)` returns the exit code) except the
torchrun test, which launches two gloo processes through the standard launcher.
"""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical import cifar
from empirical.checkpoint import load_checkpoint
from simulate import cli as files

TINY = [
    "--dataset",
    "fixture",
    "--model",
    "small_cnn",
    "--width",
    "4",
    "--dim",
    "12",
    "--batch-size",
    "16",
    "--no-progress",
]
#: Metrics a 2-process run must reproduce, with their relative tolerance. The processes
#: compute the same global batch, loss and BatchNorm statistics; only float sums run in
#: another order. NC1 goes through a pseudo-inverse of a rank-deficient Sigma_B and
#: amplifies those differences, hence its looser tolerance.
DDP_TOLERANCE = {
    "loss": 1e-4,
    "delta_g": 1e-4,
    "total_var": 1e-4,
    "within_var": 1e-3,
    "between_var": 1e-4,
    "nc1": 2e-2,
    "train_acc_overall": 1e-6,
    "test_acc_overall": 1e-6,
}


@pytest.fixture(autouse=True)
def passive_openmp(monkeypatch):
    # cifar.main sets OMP_WAIT_POLICY if unset; setting it here keeps that out of os.environ after the test.
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_fixture_pipeline_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    argv = TINY + ["--epochs", "3", "--eval-every", "2", "--n-proto", "0,10", "--seeds", "0,1", "--out", str(out)]
    assert cifar.main(argv) == 0
    captured = capsys.readouterr()
    assert "no CUDA device" in captured.err or torch.cuda.is_available()
    line = one_line(captured.out)
    assert "6 runs on fixture" in line and "exit 0: every run ended with a finite loss and DeltaG*" in line
    runs = sorted(p.stem for p in (out / "runs").glob("*.jsonl"))
    # Both anchor modes for n_w = 10; n_w = 0 has no prototype anchors and runs once.
    assert runs == [
        "prototype_nw0_seed0",
        "prototype_nw0_seed1",
        "prototype_nw10_all_seed0",
        "prototype_nw10_all_seed1",
        "prototype_nw10_data_seed0",
        "prototype_nw10_data_seed1",
    ]
    # One checkpoint per run, the latest (after the last epoch), and nothing else.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(f"{run}.pt" for run in runs)
    for run in runs:
        saved = load_checkpoint(out / "checkpoints" / f"{run}.pt")
        assert (saved["epoch"], saved["step"], len(saved["log"])) == (3, 0, 3)
        log = read_jsonl(out / "runs" / f"{run}.jsonl")
        # The evaluation curve: every 2 epochs and after the last.
        assert [r["epoch"] for r in log] == [1, 2, 3] and ["delta_g" in r for r in log] == [False, True, True]
        assert all(0 <= r["delta_g"] <= 2 for r in log[1:])
        # Per-epoch curves beside the run: one CSV row per logged epoch, and its figure.
        curve_rows = (out / "runs" / f"{run}.curves.csv").read_text().strip().splitlines()
        assert len(curve_rows) == 1 + len(log) and (out / "runs" / f"{run}.curves.png").stat().st_size > 0
        stored = json.loads((out / "runs" / f"{run}.json").read_text())
        assert stored["status"] == "finished" and stored["seed"] == stored["config"]["seed"]
        assert stored["config"]["n_proto"] == int(run.split("_nw")[1].split("_")[0])
        assert stored["config"]["anchors"] == ("all" if "_all_" in run else "data")
        assert stored["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
        assert "git_revision" in stored
        assert stored["final"] == log[-1] and stored["final"]["eval_precision"] == "float32"
        # The final geometry of the backbone features too, with its own Gram.
        backbone = stored["final_backbone"]
        assert backbone["eval_precision"] == "float32" and 0 <= backbone["delta_g"] <= 2
        assert backbone["total_var"] == pytest.approx(backbone["within_var"] + backbone["between_var"])
        assert len(stored["gram_backbone"]) == 10 and stored["gram_backbone"] != stored["gram"]
        assert stored["augmentation"] == "supcon"
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["run"] for row in rows) == runs
    assert all(
        row["status"] == "finished" and row["loss"] == "prototype" and row["augmentation"] == "supcon" for row in rows
    )
    assert all(row["backbone_delta_g"] and row["delta_g"] != row["backbone_delta_g"] for row in rows)
    for mode in ("data", "all"):
        for figure in ["delta_g_vs_n_proto", "delta_g_epochs", "gram_heatmaps", "accuracy"]:
            assert (out / f"{figure}_anchors-{mode}.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["values"] == [0, 10] and summary["seeds"] == [0, 1] and len(summary["runs"]) == 6
    # summary.json is the manifest of the set: every file it names exists, and every result file is named.
    assert summary["passed"] is True and summary["criteria"] == {"finite_final_metrics": ["final_loss", "delta_g"]}
    assert all((out / name).is_file() for name in summary["files"])
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "fixture_data" not in p.parts}
    assert written == set(summary["files"]) | {"summary.json"}
    assert summary["anchors"] == ["data", "all"]
    # Fixture sizes at the default R = 100: majority classes keep 10 images, minority classes 1.
    assert stored["class_sizes"] == [10] * 5 + [1] * 5


def test_cifar_preset_has_three_seeds_and_sparse_evaluation():
    for name in ("cifar10", "cifar100"):
        assert len(cifar.PRESETS[name]["seeds"]) >= 3 and cifar.PRESETS[name]["eval_every"] > 1
    sweep = cifar.resolve(cifar.parse(["--augmentation", "crop_flip", "--compile"]), "cpu")
    assert sweep.seeds == (0, 1, 2) and sweep.anchors == ("data", "all") and sweep.base.eval_every == 10
    assert sweep.base.augmentation_name == "crop_flip" and sweep.base.compile
    # 3 seeds x (n_w = 0 once + n_w = 10, 50, 100 in both anchor modes).
    assert len(sweep.run_configs()) == 3 * 7


def test_combined_loss_sweeps_alpha(tmp_path, capsys):
    out = tmp_path / "out"
    code = cifar.main(TINY + ["--epochs", "1", "--R", "1", "--loss", "combined", "--alpha", "0,1", "--out", str(out)])
    assert code == 0
    assert sorted(p.stem for p in (out / "runs").glob("*.jsonl")) == ["combined_alpha0_seed0", "combined_alpha1_seed0"]
    assert (out / "variances_vs_alpha.png").is_file() and (out / "delta_g_vs_alpha.png").is_file()
    stored = json.loads((out / "runs" / "combined_alpha1_seed0.json").read_text())
    assert stored["config"]["alpha"] == 1.0 and stored["config"]["loss"] == "combined"


def test_missing_cifar_exits_2_with_one_line(tmp_path, capsys):
    code = cifar.main(["--R", "100", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert code == 2
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert "--data-dir" in line and "--download" in line and "Traceback" not in captured.err
    assert not (tmp_path / "out").exists()


def _exit_code(argv) -> int:
    """cifar.main's exit code: option errors exit 2 from the parser, later refusals return 2."""
    try:
        return cifar.main(argv)
    except SystemExit as exit_info:
        return exit_info.code


@pytest.fixture
def no_data_loading(monkeypatch):
    """Fails the test if anything reads or writes images: bad input must stop before."""
    from empirical import data

    def refuse(*args, **kwargs):
        raise AssertionError("data were loaded before the bad input was reported")

    for name in ("load_dataset", "load_cifar", "load_digits_split", "write_cifar_fixture"):
        monkeypatch.setattr(data, name, refuse)


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--dim", "5", "--n-proto", "1"], "--dim: dim must be >= n_classes - 1 = 9"),
        (["--R", "0"], "--R '0': must be >= 1"),
        (["--seeds", "99999999999999999999999"], "--seeds '99999999999999999999999': must be an integer of magnitude"),
        (["--seeds", "9999999999999"], "--seeds '9999999999999': must lie in [0, 4294967295]"),
        (["--seeds", "-1"], "--seeds '-1': must lie in"),
        (["--seeds", "0,0"], "--seeds '0,0': must not repeat"),
        (["--n-proto", "10,10"], "--n-proto '10,10': must not repeat"),
        (["--alpha", "0.5,0.5", "--loss", "combined"], "--alpha '0.5,0.5': must not repeat"),
        (["--anchors", "data,data"], "--anchors 'data,data': must not repeat"),
        (["--n-proto", "0", "10"], "unrecognized arguments: 10"),
        (["--tau", "1e-5"], "--tau '1e-5': must lie in"),
        (["--tau", "1e9"], "--tau '1e9': must lie in"),
        (["--dataset", "fixture", "--loss", "combined", "--batch-size", "8"], "--batch-size"),
        (["--checkpoint-every", "-1"], "--checkpoint-every"),
    ],
)
def test_bad_inputs_exit_2_before_data_loading(argv, named, tmp_path, capsys, no_data_loading):
    code = _exit_code(argv + ["--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert named in line and "Traceback" not in line
    assert not (tmp_path / "out").exists()


def test_an_unwritable_out_exits_2_before_data_loading(tmp_path, capsys, no_data_loading):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (str(blocker), str(blocker / "sub"), "", "/proc/x"):
        assert _exit_code(["--dataset", "fixture", "--out", out]) == 2
        assert "--out" in one_line(capsys.readouterr().err)
    assert [p.name for p in tmp_path.iterdir()] == ["file"] and blocker.read_text() == "x"


def test_help_shows_every_default_in_input_syntax(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cifar.parse(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "--R IMBALANCE, --imbalance IMBALANCE",
        "(default: 100.0)",
        "(default: 0,10,50,100)",
        "(default: data,all)",
        "(default: 0.0,0.5,1.0)",
        "(default: none)",
        "(default: results/cifar)",
        "--no-progress",
        "seeds=0,1,2",
    ):
        assert shown in text
    assert text.count("(default:") == len(cifar.Config.__dataclass_fields__)
    assert "(0, 1, 2)" not in text and "[0, 10" not in text  # input syntax, not Python


FUZZ_FLAGS = [
    "--dataset",
    "--R",
    "--loss",
    "--n-proto",
    "--anchors",
    "--alpha",
    "--tau",
    "--dim",
    "--epochs",
    "--batch-size",
    "--seeds",
    "--spread",
    "--model",
    "--checkpoint-every",
    "--threads",
    "--bogus",
]
FUZZ_VALUES = [
    "fixture",
    "digits",
    "cifar10",
    "combined",
    "0",
    "1",
    "-1",
    "5",
    "0.5",
    "100",
    "1e-5",
    "nan",
    "x",
    "",
    "0,10",
    "10,10",
    "data,all",
    "all",
    "none",
    "small_cnn",
    "99999999999999999999",
]


@settings(max_examples=80, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(FUZZ_FLAGS), st.sampled_from(FUZZ_VALUES)), max_size=6))
def test_fuzzed_command_lines_exit_0_or_2_and_write_nothing(tmp_path_factory, pairs):
    out = tmp_path_factory.mktemp("fuzz") / "never"
    try:
        cifar.parse([token for pair in pairs for token in pair] + ["--out", str(out)])  # validation only
    except SystemExit as exit_info:
        assert exit_info.code == 2
    assert not out.exists() and not list(out.parent.iterdir())


def test_download_without_network_exits_2_before_data_loading(tmp_path, capsys, monkeypatch, no_data_loading):
    import urllib.error

    from empirical import data

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data.CIFAR10, "download", offline)
    code = cifar.main(["--download", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert "could not download cifar10" in line and "name resolution" in line


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--R", "0.5"], "--R"),
        (["--dataset", "mnist"], "--dataset"),
        (["--epochs", "0"], "--epochs"),
        (["--n-proto", "x"], "--n-proto"),
        (["--tau", "-1"], "--tau"),
        (["--seeds", "-2"], "--seeds"),
        (["--device", "tpu"], "--device"),
        (["--threads", "-1"], "--threads"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, named, capsys):
    code = _exit_code(argv + ["--dataset", "digits"] if "--dataset" not in argv else argv)
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert named in line and "Traceback" not in line


def test_sigterm_writes_a_checkpoint_and_resume_finishes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    argv = TINY + ["--epochs", "2", "--R", "2", "--n-proto", "0,10", "--anchors", "data", "--out", str(out)]
    original = files.write_jsonl
    sent = []

    def write_then_signal(path, records):  # SIGTERM arrives right after the first epoch is logged
        original(path, records)
        if not sent:
            sent.append(path)
            signal.raise_signal(signal.SIGTERM)

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(files, "write_jsonl", write_then_signal)
    out.mkdir()
    for stale in ("summary.json", "summary.csv", "accuracy.png"):  # an earlier sweep's set in the same folder
        (out / stale).write_text("another configuration")
    code = cifar.main(argv)
    assert code == 128 + signal.SIGTERM
    # The earlier set is gone: no summary names a mix of two sweeps; without summary.json the sweep is unfinished.
    assert not any((out / stale).exists() for stale in ("summary.json", "summary.csv", "accuracy.png"))
    assert "--resume" in one_line(capsys.readouterr().err.replace("no CUDA device found: training on the CPU", ""))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    saved = load_checkpoint(out / "checkpoints" / "prototype_nw0_seed0.pt")
    assert (saved["epoch"], saved["step"], len(saved["log"])) == (1, 0, 1)
    assert not (out / "runs" / "prototype_nw10_data_seed0.jsonl").exists()

    monkeypatch.setattr(files, "write_jsonl", original)
    assert cifar.main(argv + ["--resume"]) == 0
    log = read_jsonl(out / "runs" / "prototype_nw0_seed0.jsonl")
    assert [r["epoch"] for r in log] == [1, 2]
    # The resumed run equals an uninterrupted one.
    fresh = tmp_path / "fresh"
    assert cifar.main(TINY + ["--epochs", "2", "--R", "2", "--n-proto", "0", "--out", str(fresh)]) == 0
    reference = read_jsonl(fresh / "runs" / "prototype_nw0_seed0.jsonl")
    assert [r["delta_g"] for r in log] == [r["delta_g"] for r in reference]
    # A second --resume finds every run finished and trains nothing.
    before = (out / "checkpoints" / "prototype_nw10_data_seed0.pt").stat().st_mtime_ns
    assert cifar.main(argv + ["--resume"]) == 0
    assert (out / "checkpoints" / "prototype_nw10_data_seed0.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "row, finite",
    [
        ({"final_loss": 1.5, "delta_g": 0.2}, True),
        ({"final_loss": float("nan"), "delta_g": 0.2}, False),
        ({"final_loss": 1.5, "delta_g": "nan"}, False),  # read back from JSON
        ({"final_loss": 1.5}, False),
    ],
)
def test_the_sweep_criterion_needsfinite_final_metrics(row, finite):
    assert cifar.finite_final_metrics(row) is finite


def test_corrupt_checkpoint_on_resume_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "prototype_nw0_seed0.pt").write_bytes(b"\x00garbage" * 50)
    code = cifar.main(TINY + ["--epochs", "1", "--n-proto", "0", "--out", str(out), "--resume"])
    assert code == 2
    line = one_line(capsys.readouterr().err.replace("no CUDA device found: training on the CPU", ""))
    assert "prototype_nw0_seed0.pt" in line and "unreadable" in line


def test_torchrun_two_gloo_processes_match_one_process(tmp_path):
    argv = TINY + [
        "--epochs",
        "2",
        "--R",
        "1",
        "--n-proto",
        "10",
        "--anchors",
        "data",
        "--warmup-epochs",
        "0",
        "--batch-size",
        "32",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    completed = subprocess.run(
        launcher + ["-m", "empirical.cifar", *argv, "--out", str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 processes" in completed.stdout
    assert cifar.main(argv + ["--out", str(tmp_path / "single")]) == 0
    two = read_jsonl(tmp_path / "ddp" / "runs" / "prototype_nw10_data_seed0.jsonl")
    one = read_jsonl(tmp_path / "single" / "runs" / "prototype_nw10_data_seed0.jsonl")
    assert len(two) == len(one) == 2
    for a, b in zip(two, one):
        for key, tolerance in DDP_TOLERANCE.items():
            assert a[key] == pytest.approx(b[key], rel=tolerance, abs=1e-7), key
    stored = json.loads((tmp_path / "ddp" / "runs" / "prototype_nw10_data_seed0.json").read_text())
    assert stored["world_size"] == 2 and stored["batch_size"] == 32


def test_result_files_are_written_atomically(tmp_path):
    path = files.write_csv(tmp_path / "t.csv", [{"a": 1, "b": float("nan")}, {"a": 2, "c": "x"}])
    # Non-finite numbers are written as the strings nan / inf (docs/commands.md), a missing cell stays empty.
    assert path.read_text() == "a,b,c\n1,nan,\n2,,x\n"
    files.write_jsonl(tmp_path / "t.jsonl", [{"x": float("inf")}, {"x": 1.5}])
    assert read_jsonl(tmp_path / "t.jsonl") == [{"x": "inf"}, {"x": 1.5}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.jsonl"]
