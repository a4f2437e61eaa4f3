"""`python -m simulate.certify`: results written with their configuration, bad input refused (exit 2, one line)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from simulate import certify_command, cli, exchangeable
from theory import simplex
from theory.compositions import cifar10_composition

RESULT_KEYS = {
    "minimum",
    "gap",
    "status",
    "method",
    "seconds",
    "rank",
    "class_mean_gram",
    "delta_g",
    "within",
    "between",
}


def _run(tmp_path, *argv):
    out = tmp_path / "out"
    assert certify_command.main([*argv, "--out", str(out)]) == 0
    return json.loads((out / "certificate.json").read_text()), out


def test_prototype_at_cifar_batch_composition(tmp_path):
    record, out = _run(
        tmp_path,
        "prototype",
        "--cifar10-R",
        "100",
        "--composition",
        "batch",
        "--n-proto",
        "100",
        "--geometry",
        "etf",
        "--tau",
        "0.1",
    )
    assert RESULT_KEYS <= set(record["result"]) and {"config", "metadata"} <= set(record)
    assert record["config"]["class_sizes"] == list(cifar10_composition(100, "batch"))
    direct = exchangeable.certify_prototype(cifar10_composition(100, "batch"), simplex.etf_gram(10), 100, 0.1)
    assert record["result"]["minimum"] == pytest.approx(direct.minimum, rel=1e-9)  # its Gram from vectors: rounding
    # The loss pins the Gram less tightly than its value: two solves from prototype Grams equal to
    # rounding gave DeltaG* 0.11451 and 0.11453 (losses equal to 1e-11) at tau = 0.1.
    assert record["result"]["delta_g"] == pytest.approx(direct.delta_g(simplex.etf_gram(10)), abs=1e-4)
    assert np.array(record["result"]["class_mean_gram"]).shape == (10, 10)
    assert (out / "certificate.png").stat().st_size > 0


def test_full_and_exchangeable_methods_agree(tmp_path):
    arguments = ("combined", "--m", "2", "--n", "3", "--p", "2", "--alpha", "0.4", "--tau", "0.5")
    full, _ = _run(tmp_path / "full", *arguments, "--method", "full")
    reduced, _ = _run(tmp_path / "reduced", *arguments)
    assert full["result"]["method"] == "full" and reduced["result"]["method"] == "exchangeable"
    assert reduced["result"]["minimum"] == pytest.approx(full["result"]["minimum"], rel=1e-7)
    assert reduced["result"]["within"] == pytest.approx(full["result"]["within"], abs=1e-4)


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["supcon", "--class-sizes", "3,x", "--tau", "0.5"], "--class-sizes"),
        (["supcon", "--class-sizes", "3,3", "--tau", "-1"], "tau"),
        (["supcon", "--class-sizes", "30,30,1", "--tau", "0.5", "--method", "full"], "--method full"),
        (["prototype", "--class-sizes", "3,3", "--n-proto", "2", "--geometry", "blob", "--tau", "1"], "geometry"),
        (["prototype", "--cifar10-R", "0.5", "--n-proto", "2", "--tau", "1"], "--cifar10-R"),
        (["prototype", "--class-sizes", "3,3", "--cifar10-R", "10", "--tau", "1"], "exactly one"),
        (["supcon", "--class-sizes", "3,3,", "--tau", "1"], "--class-sizes"),
        (["supcon", "--class-sizes", "3,3", "--tau", "inf"], "--tau"),
        (["supcon", "--class-sizes", "3,3", "--tau", "1", "--bogus", "1"], "--bogus"),
        (["nothing", "--tau", "1"], "unknown loss"),
        (
            ["combined", "--m", "3", "--n", "3", "--p", "1", "--variant", "supcon", "--alpha", "0.5", "--tau", "1"],
            "n_views",
        ),
        (["combined", "--m", "3", "--n", "3", "--alpha", "2", "--tau", "1"], "alpha"),
        (["supcon", "--tau", "1"], "--class-sizes"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, flag):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        certify_command.main([*argv, "--out", str(out)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and flag in error
    assert not out.exists()


def test_empty_out_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        certify_command.main(["supcon", "--class-sizes", "3,3", "--tau", "1", "--out", ""])
    assert exit_info.value.code == 2 and "--out" in capsys.readouterr().err


def test_out_under_a_file_is_refused_before_solving(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        certify_command.main(["supcon", "--class-sizes", "3,3", "--tau", "1", "--out", str(blocker / "sub")])
    assert exit_info.value.code == 2 and "--out" in capsys.readouterr().err


def test_rerun_replaces_the_whole_set_and_respects_the_umask(tmp_path):
    out = tmp_path / "out"
    _run(tmp_path, "supcon", "--class-sizes", "3,3", "--tau", "1")
    (out / "stale.png").write_text("from another run")
    _run(tmp_path, "supcon", "--class-sizes", "4,4", "--tau", "1")
    assert sorted(p.name for p in out.iterdir()) == ["certificate.json", "certificate.png"]
    assert not list(tmp_path.glob(".out.*"))  # no staging or retired folder left
    mask = cli.current_umask()
    assert (out / "certificate.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_module_runs_as_a_command(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulate.certify",
            "supcon",
            "--class-sizes",
            "5000,5000,50",
            "--tau",
            "0.2",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "certified by exchangeable" in completed.stdout and len(completed.stdout.strip().splitlines()) == 1
