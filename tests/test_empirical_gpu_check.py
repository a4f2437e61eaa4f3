"""Tests of `python -m empirical.gpu_check` on the CPU (its small version), and of the multi-process failure path.

The check runs as a subprocess with cvxpy made unimportable (``sys.modules["cvxpy"] = None``),
as on the GPU machine, which has torch and torchvision but no cvxpy.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical import gpu_check

ROOT = Path(__file__).resolve().parent.parent


def run_check(out, *options, block=("cvxpy",)):
    """Run the check in a fresh interpreter in which the modules ``block`` cannot be imported."""
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in block)
    code = (
        f"import sys, runpy; {blocked}; sys.argv = ['gpu_check', *sys.argv[1:]]; "
        "runpy.run_module('empirical.gpu_check', run_name='__main__')"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, "--out", str(out), "--device", "cpu", *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        cwd=ROOT,
    )


def test_gpu_check_runs_on_a_cpu_without_cvxpy(tmp_path):
    completed = run_check(tmp_path / "check")
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    (line,) = completed.stdout.strip().splitlines()
    assert "5/5 sections passed" in line and "0 host syncs per step" in line and "exit 0" in line
    report = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    sections = report["sections"]
    assert report["passed"] and report["complete"] and report["tolerances"] == gpu_check.TOLERANCES
    assert list(sections) == ["environment", "fixture", "digits", "fixed_batch", "torchrun"]
    assert sections["environment"]["cvxpy_imported"] is False
    for name in ("fixture", "digits"):
        run = sections[name]
        assert run["host_syncs_in_step"] == 0 and run["steps_counted"] >= 4
        assert run["final_eval_precision"] == "float32" and run["images_per_s_last_epoch"] > 0
        assert run["checkpoint_files"].count(f"{run['config']['dataset']}.pt") == 1
    assert sections["digits"]["config"]["dataset"] == "digits32"
    fixed = sections["fixed_batch"]
    for path, tolerance in [("kernel", 1e-6), ("float32", 1e-5), ("bfloat16", 1e-2)]:
        assert fixed[path]["tolerance"] == tolerance
        assert abs(fixed[path]["loss"] - fixed["float64_cpu_loss"]) <= tolerance * fixed["float64_cpu_loss"]
    # bf16 autocast really ran: its loss differs from float32 by more than float32 rounding.
    assert abs(fixed["bfloat16"]["loss"] - fixed["float32"]["loss"]) > 1e-5 * fixed["float64_cpu_loss"]
    ddp = sections["torchrun"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo" and ddp["relative_difference"] <= 1e-4


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path):
    # Without scikit-learn and without its digits file, the digits section fails with the reason.
    completed = run_check(tmp_path / "check", "--no-torchrun", block=("cvxpy", "sklearn", "sklearn.datasets"))
    assert completed.returncode == 1
    assert "3/4 sections passed (failed: digits)" in completed.stdout and "exit 1" in completed.stdout
    sections = json.loads((tmp_path / "check" / "gpu_check.json").read_text())["sections"]
    assert "scikit-learn" in sections["digits"]["error"] and not sections["digits"]["passed"]
    assert sections["fixture"]["passed"] and sections["fixed_batch"]["passed"]


def test_tolerances_are_ordered_by_precision():
    tolerances = gpu_check.TOLERANCES
    assert tolerances["kernel"] < tolerances["float32"] < tolerances["bfloat16"]
    assert tolerances["torchrun_float32"] < tolerances["torchrun_bfloat16"]


FAIL_ON_RANK_1 = """
import os, sys
from empirical import cifar, train

original, calls = train.train_step, []

def train_step(*args, **kwargs):  # rank 1 fails at its 7th step (epoch 2; the epoch-1 checkpoint exists)
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 7:
        raise RuntimeError("injected failure on rank 1")
    return original(*args, **kwargs)

train.train_step = train_step
sys.exit(cifar.main(sys.argv[1:]))
"""


def test_a_failure_on_one_rank_ends_every_rank_with_its_reason_and_rank_0_resumes(tmp_path):
    script = tmp_path / "fail_on_rank_1.py"
    script.write_text(FAIL_ON_RANK_1)
    out = tmp_path / "out"
    argv = [
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
        "--R",
        "2",
        "--n-proto",
        "10",
        "--anchors",
        "data",
        "--epochs",
        "2",
        "--checkpoint-every",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # A hang (rank 0 waiting in a collective for the 30-minute default timeout) fails the test as TimeoutExpired.
    failed = subprocess.run(launcher + [str(script), *argv], capture_output=True, text=True, env=env, timeout=180)
    assert failed.returncode != 0
    assert "rank 1: error: RuntimeError: injected failure on rank 1" in failed.stderr
    # Rank 0 wrote the checkpoint of epoch 1; rank 0 decides to resume and both ranks continue from it.
    resumed = subprocess.run(
        launcher + ["-m", "empirical.cifar", *argv, "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = [json.loads(line) for line in (out / "runs" / "prototype_nw10_data_seed0.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    stored = json.loads((out / "runs" / "prototype_nw10_data_seed0.json").read_text())
    assert stored["world_size"] == 2 and stored["status"] == "finished"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["prototype_nw10_data_seed0.pt"]


@pytest.mark.parametrize(
    "argv, named", [(["--device", "tpu"], "--device 'tpu'"), (["--bogus"], "--bogus"), (["--compile", "yes"], "yes")]
)
def test_bad_arguments_exit_2_with_one_line(argv, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        gpu_check.main(argv + ["--out", str(tmp_path / "never")])
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert named in line and not (tmp_path / "never").exists()


@pytest.mark.parametrize("case", ["file", "under a file", "empty", "proc"])
def test_an_unwritable_out_exits_2_before_any_work(case, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = {"file": str(blocker), "under a file": str(blocker / "sub"), "empty": "", "proc": "/proc/x"}[case]
    with pytest.raises(SystemExit) as caught:
        gpu_check.main(["--out", out, "--device", "cpu"])
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--out" in line and [p.name for p in tmp_path.iterdir()] == ["file"] and blocker.read_text() == "x"


def test_help_shows_every_default_in_input_syntax(capsys):
    with pytest.raises(SystemExit) as caught:
        gpu_check.parse(["--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: results/gpu_check)", "(default: auto)", "(default: none)", "--no-torchrun"):
        assert shown in text
    assert text.count("(default:") == len(gpu_check.Config.__dataclass_fields__)


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.lists(
        st.sampled_from(
            [
                "--device",
                "--data-dir",
                "--compile",
                "--no-torchrun",
                "--worker",
                "--bogus",
                "cpu",
                "",
                "none",
                "x",
                "-1",
            ]
        ),
        max_size=6,
    )
)
def test_fuzzed_command_lines_exit_0_or_2_and_write_nothing(tmp_path_factory, tokens):
    out = tmp_path_factory.mktemp("fuzz") / "never"
    try:
        gpu_check.parse([*tokens, "--out", str(out)])  # validation only: nothing runs
    except SystemExit as caught:
        assert caught.code == 2
    assert not out.exists() and not list(out.parent.iterdir())
