"""The command lines of benchmarks/prototype_cost.py and benchmarks/certificate_scale.py (simulate.cli's
pattern): bad input exits 2 with one line naming the flag and writes nothing, every default shown in
input syntax, criteria judged and recorded, a result set published whole."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate import cli

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


prototype_cost = _load("prototype_cost")
certificate_scale = _load("certificate_scale")
MODULES = {"prototype_cost": prototype_cost, "certificate_scale": certificate_scale}


def _blocked_outs(tmp_path) -> dict:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    return {"file": str(blocker), "under a file": str(blocker / "sub"), "empty": "", "proc": "/proc/x"}


BAD = [
    ("prototype_cost", ["--n-protos", "0,10,10"], "--n-protos '0,10,10': must not repeat"),
    ("prototype_cost", ["--n-protos", "10,100"], "--n-protos 10,100: must start with 0"),
    ("prototype_cost", ["--n-protos", "0,1000000"], "--n-protos '0,1000000': must lie in"),
    ("prototype_cost", ["--seed", "99999999999999999999999"], "--seed"),
    ("prototype_cost", ["--seed", "-1"], "--seed"),
    ("prototype_cost", ["--tau", "1e-5"], "--tau"),
    ("prototype_cost", ["--repeats", "0"], "--repeats"),
    ("prototype_cost", ["--threads", "0"], "--threads"),
    ("prototype_cost", ["--dim", "4"], "--dim 4: ETF prototypes of 10 classes"),
    ("prototype_cost", ["--batch", "x"], "--batch 'x': must be an integer"),
    ("certificate_scale", ["--repeats", "0"], "--repeats"),
    ("certificate_scale", ["--budget", "nan"], "--budget"),
    ("certificate_scale", ["--budget", "-1"], "--budget"),
    ("certificate_scale", ["--bogus"], "--bogus"),
]


@pytest.mark.parametrize("name, arguments, message", BAD, ids=[f"{n}{' '.join(a)}" for n, a, _ in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, name, arguments, message):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        MODULES[name].main([*arguments, "--out", str(out)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not out.exists()


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("case", ["file", "under a file", "empty", "proc"])
def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys, name, case):
    with pytest.raises(SystemExit) as exit_info:
        MODULES[name].main(["--out", _blocked_outs(tmp_path)[case]])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--out" in error[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize(
    "name, shown",
    [
        ("prototype_cost", ("(default: 0,10,100,1000,10000)", "(default: 0.1)", "(default: results/prototype_cost)")),
        ("certificate_scale", ("(default: 3)", "(default: 60.0)", "(default: results/certificate_scale)")),
    ],
)
def test_help_shows_every_default_in_input_syntax(capsys, name, shown):
    with pytest.raises(SystemExit) as exit_info:
        MODULES[name].main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(item in text for item in shown)
    assert text.count("(default:") == len(MODULES[name].Config.__dataclass_fields__)


def test_prototype_cost_judges_records_and_publishes(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.json").write_text("another run")
    code = prototype_cost.main(
        ["--batch", "16", "--dim", "12", "--n-protos", "0,10,100", "--repeats", "2", "--out", str(out)]
    )
    record = json.loads((out / "prototype_cost.json").read_text())
    verdict = record["criteria"]
    assert verdict["thresholds"] == prototype_cost.CRITERIA
    assert code == (0 if verdict["passed"] else 1)
    assert record["results"]["max_relative_difference"] <= prototype_cost.CRITERIA["max_relative_difference"]
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"exit {code}" in last_line and str(out) in last_line
    assert [p.name for p in out.iterdir()] == ["prototype_cost.json"]  # the stale file went with the old set
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert record["metadata"]["command"] == cli.run_metadata()["command"]


def test_prototype_cost_fails_when_the_values_differ():
    rows = [
        {"n_proto": 0, "fast_forward_backward_ratio_to_fast_n0": 1.0},
        {"n_proto": 10, "fast_forward_backward_ratio_to_fast_n0": 3.0},
    ]
    verdict = prototype_cost.judge({"rows": rows, "max_relative_difference": 1e-3})
    assert verdict["passed"] is False and len(verdict["failures"]) == 2
    assert "n_w=10" in verdict["failures"][1]


def test_certificate_scale_matched_sizes_meet_its_criterion():
    rows = certificate_scale.matched(sizes_k=(16,), repeats=1)
    verdict = certificate_scale.judge(rows)
    assert verdict["passed"], verdict["failures"]
    assert certificate_scale.judge([{**rows[0], "relative_minimum_difference": 1e-3}])["passed"] is False


FLAGS = [
    "--batch",
    "--n-classes",
    "--dim",
    "--tau",
    "--n-protos",
    "--repeats",
    "--threads",
    "--seed",
    "--budget",
    "--bogus",
]
VALUES = [
    "0",
    "1",
    "-1",
    "2",
    "12",
    "0.5",
    "1e300",
    "nan",
    "inf",
    "x",
    "",
    "0,10",
    "0,0",
    "10,0",
    "1,,2",
    "none",
    "99999999999999999999",
    "100001",
]


@settings(max_examples=120, deadline=None)
@given(
    name=st.sampled_from(sorted(MODULES)),
    pairs=st.lists(st.tuples(st.sampled_from(FLAGS), st.sampled_from(VALUES)), max_size=6),
)
def test_fuzzed_command_lines_exit_0_or_2_and_write_nothing(tmp_path_factory, name, pairs):
    out = tmp_path_factory.mktemp("fuzz") / "never"
    try:
        MODULES[name].parse([token for pair in pairs for token in pair] + ["--out", str(out)])  # validation only
    except SystemExit as exit_info:
        assert exit_info.code == 2
    assert not out.exists() and not list(out.parent.iterdir())


def test_script_refuses_bad_input_as_a_command(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "prototype_cost.py"),
            "--seed",
            "-1",
            "--out",
            str(tmp_path / "never"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2 and not completed.stdout and not (tmp_path / "never").exists()
    assert completed.stderr.strip().splitlines() == [
        "python benchmarks/prototype_cost.py: error: --seed '-1': must lie in [0, 4294967295]"
    ]
