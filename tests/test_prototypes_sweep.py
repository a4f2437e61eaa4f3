"""Tests of simulate.prototypes (the sweep), of its command line `python -m simulate.prototypes`
(simulate.prototypes_command) and of the benchmark's naive loss."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate import cli, prototypes_command
from simulate import prototypes as sweep
from simulate.losses import prototype_supcon_loss
from theory import simplex

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "m, majority, ratio, expected",
    [
        (4, 10, 1, (10, 10, 10, 10)),
        (5, 10, 10, (10, 10, 10, 1, 1)),
        (4, 100, 100, (100, 100, 1, 1)),
        (4, 10, 3, (10, 10, 3, 3)),
        (4, 10, 4, (10, 10, 2, 2)),
        (4, 10, 20, (10, 10, 1, 1)),
        (4, 10, 21, (10, 10, 1, 1)),
    ],
)
def test_class_sizes_follow_the_step_convention(m, majority, ratio, expected):
    sizes = sweep.class_sizes(m, majority, ratio)
    assert sizes == expected
    assert np.all(np.array(sizes)[simplex.majority_classes(m)] == majority)


@pytest.mark.parametrize("ratio, match", [(0.5, ">= 1"), (float("nan"), "finite")])
def test_class_sizes_errors(ratio, match):
    with pytest.raises(ValueError, match=match):
        sweep.class_sizes(4, 10, ratio)


@pytest.mark.parametrize(
    "geometry, gram",
    [
        ("etf", simplex.etf_gram(4)),
        ("orthogonal", np.eye(4)),
        ("minority-spread:0.3", simplex.minority_spread_gram(4, 0.3)),
    ],
)
def test_prototype_vectors_have_the_named_gram(geometry, gram):
    W = sweep.prototype_vectors(geometry, 4, 6, seed=1)
    assert W.shape == (4, 6)
    np.testing.assert_allclose(W @ W.T, gram, atol=1e-10)


def test_prototype_vectors_from_a_gram_file(tmp_path):
    gram = simplex.minority_spread_gram(4, 0.8)
    np.save(tmp_path / "g.npy", gram)
    W = sweep.prototype_vectors(f"gram:{tmp_path / 'g.npy'}", 4, 5)
    np.testing.assert_allclose(W @ W.T, gram, atol=1e-10)


@pytest.mark.parametrize(
    "matrix, match",
    [
        (np.array([[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1.0]]), "positive semidefinite"),
        (2 * np.eye(3), "unit diagonal"),
        (np.eye(4), r"\(3, 3\)"),
        (np.array([[1, 0.5, 0], [0.2, 1, 0], [0, 0, 1.0]]), "symmetric"),
    ],
)
def test_prototype_vectors_reject_bad_gram_files(tmp_path, matrix, match):
    np.save(tmp_path / "g.npy", matrix)
    with pytest.raises(ValueError, match=match):
        sweep.prototype_vectors(f"gram:{tmp_path / 'g.npy'}", 3, 4)


@pytest.mark.parametrize(
    "geometry, dim, match",
    [
        ("etf", 2, "dim"),
        ("orthogonal", 3, "dim"),
        ("minority-spread:1.5", 5, "spread"),
        ("minority-spread:x", 5, "number"),
        ("gram:/no/such/file.npy", 5, "cannot be read"),
        ("simplex", 5, "geometry must be"),
    ],
)
def test_prototype_vectors_errors(geometry, dim, match):
    with pytest.raises(ValueError, match=match):
        sweep.prototype_vectors(geometry, 4, dim)


def test_clustered_start_groups_classes_and_uniform_start_is_seeded():
    labels = sweep.sample_labels((3, 2))
    x = sweep.starting_points(labels, (2,), 5, start="clustered", seed=0, spread=0.0)
    assert torch.allclose(x[:, 0], x[:, 2]) and not torch.allclose(x[:, 0], x[:, 3])
    a = sweep.starting_points(labels, (2,), 5, seed=3)
    assert torch.equal(a, sweep.starting_points(labels, (2,), 5, seed=3))


# ---------------------------------------------------------------------------
# Minimisation against the certificate and the theory
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("anchors", ["data", "all"])
def test_free_minimiser_matches_the_certificate(anchors):
    sizes, W = (3, 3, 1), simplex.etf(3, 6)
    result, labels, measured = sweep.minimise_cells(sizes, W, (0, 5), 0.5, anchors, start="clustered", grad_tol=1e-10)
    for b, n_w in enumerate((0, 5)):
        certified = sweep.certified_cell(sizes, W @ W.T, n_w, 0.5, anchors, max_vectors=20)
        assert certified["optimal"]
        assert float(result.loss[b]) == pytest.approx(certified["minimum"], rel=1e-7)
        assert float(measured["delta_g"][b]) == pytest.approx(certified["delta_g"], abs=1e-4)


def test_certification_respects_the_size_guard():
    W = simplex.etf(3, 4)
    assert sweep.certified_cell((10, 10, 10), W @ W.T, 1, 0.5, "data", max_vectors=24) is None


def test_cells_are_independent_of_their_batch_companions():
    sizes, W = (4, 2, 1), simplex.etf(3, 5)
    together, _, _ = sweep.minimise_cells(sizes, W, (0, 10), 0.5, start="clustered", grad_tol=1e-10)
    alone, _, _ = sweep.minimise_cells(sizes, W, (10,), 0.5, start="clustered", grad_tol=1e-10)
    assert float(together.loss[1]) == pytest.approx(float(alone.loss[0]), rel=1e-9)


def test_restarts_keep_each_cells_best():
    sizes, W = (3, 2, 1), simplex.etf(3, 4)
    one, _, _ = sweep.minimise_cells(sizes, W, (0, 3), 0.5, restarts=1, seed=1, max_iter=5)
    three, _, _ = sweep.minimise_cells(sizes, W, (0, 3), 0.5, restarts=3, seed=1, max_iter=5)
    assert torch.all(three.loss <= one.loss + 1e-12)


def test_large_n_proto_minimiser_approaches_the_theory_limit():
    sizes, W = (6, 6, 1, 1), simplex.minority_spread(4, 6, 0.5)
    _, limit = sweep.theory_limit(W, 0.5)
    _, _, measured = sweep.minimise_cells(sizes, W, (10**5,), 0.5, start="clustered", grad_tol=1e-10)
    assert limit > 0.1
    assert float(measured["delta_g"][0]) == pytest.approx(limit, abs=2e-3)


def test_stochastic_loop_lowers_the_full_batch_loss():
    sizes, W = (6, 6, 2), simplex.etf(3, 4)
    labels = sweep.sample_labels(sizes)
    start, _ = sweep.full_batch_loss_and_grad_norm(
        sweep.cell_losses(labels, torch.tensor(W), (0, 10), 0.5, "data"),
        torch.nn.functional.normalize(sweep.starting_points(labels, (2,), 4, seed=0), dim=-1),
    )
    result, _, _ = sweep.minimise_cells(sizes, W, (0, 10), 0.5, batch_size=6, steps=150, lr=0.05, seed=0)
    assert torch.all(result.loss < start - 0.1)
    assert not bool(result.converged.any())  # no convergence is claimed for the stochastic loop
    assert not result.loss.requires_grad and not result.grad_norm.requires_grad  # plain numbers for the record


def test_stochastic_batches_always_give_an_anchor_a_positive():
    labels = sweep.sample_labels((1, 1, 1, 2))
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        index = sweep.draw_batch(generator, labels, 3, need_pair=True)
        assert len(torch.unique(labels[index])) < 3


def test_limit_convergence_curve_is_bounded_by_c_over_n():
    sizes, W = (4, 2, 1), simplex.etf(3, 5)
    result, labels, _ = sweep.minimise_cells(sizes, W, (100,), 0.5, start="clustered", grad_tol=1e-9)
    data = sweep.limit_convergence(result.z[0].numpy(), labels.numpy(), W, 0.5, "data")
    n = np.array(data["n_proto"], dtype=float)
    assert np.all(np.array(data["abs_gap"]) * n <= data["bound_constant"] * (1 + 1e-9))


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

SMALL = [
    "--m",
    "3",
    "--majority-size",
    "4",
    "--imbalance",
    "1,4",
    "--n-proto",
    "0,10",
    "--dim",
    "4",
    "--certify-max-vectors",
    "12",
]


def test_command_line_writes_its_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert prototypes_command.main([*SMALL, "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "R=4" in summary[0] and str(out) in summary[0]
    record = json.loads((out / "prototypes.json").read_text())
    assert record["config"]["imbalance"] == [1.0, 4.0] and record["config"]["seed"] == 0
    assert {"git_revision", "versions"} <= set(record["metadata"])
    assert len(record["cells"]) == 4 and record["summary"]["cells"] == 4
    certified = [c for c in record["cells"] if c["certified"] is not None]
    assert certified and all(abs(c["loss"] - c["certified"]["minimum"]) < 1e-6 * c["loss"] for c in certified)
    assert (out / "prototypes.csv").read_text().count("\n") == 5
    for name in ("deltag.png", "gram_heatmaps.png", "limit_gap.png"):
        assert (out / name).stat().st_size > 1000
    assert not list(out.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--n-proto", "0,-1"], "--n-proto"),
        (["--imbalance", "0.5"], "--imbalance"),
        (["--majority-size", "5000"], "--route certificate"),
        (["--route", "exact"], "--route"),
        (["--geometry", "etf", "--dim", "1"], "--geometry"),
        (["--geometry", "gram:/no/such.npy"], "cannot be read"),
        (["--tau", "0"], "--tau"),
        (["--n-proto", "x"], "--n-proto"),
        (["--batch-size", "1"], "--batch-size"),
        (["--batch-size", "100"], "--batch-size"),
        (["--anchors", "some"], "--anchors"),
        (["--seed", "99999999999999999999999"], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--R", "1,1"], "must not repeat"),
        (["--n-proto", "10,10"], "--n-proto"),
        (["--n-proto", "0", "10"], "10"),
        (["--tau", "1e-5"], "--tau"),
        (["--tau", "1e4"], "--tau"),
        (["--tau", "inf"], "--tau"),
        (["--m", "1000", "--dim", "1000"], "--route certificate"),
        (["--max-iter", "0"], "--max-iter"),
        (["--bogus", "1"], "--bogus"),
    ],
)
def test_command_line_bad_input_exits_2_with_one_line(tmp_path, capsys, arguments, message):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        prototypes_command.main([*SMALL, *arguments, "--out", str(out)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not out.exists()


def test_command_line_rejects_a_non_psd_gram_file(tmp_path, capsys):
    np.save(tmp_path / "g.npy", np.array([[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1.0]]))
    with pytest.raises(SystemExit) as exit_info:
        prototypes_command.main([*SMALL, "--geometry", f"gram:{tmp_path / 'g.npy'}", "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    assert "positive semidefinite" in capsys.readouterr().err


def _blocked_outs(tmp_path) -> dict:
    """--out values that cannot be a result folder: an existing file, a path under it, "", /proc."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    return {"file": str(blocker), "under a file": str(blocker / "sub"), "empty": "", "proc": "/proc/x"}


@pytest.mark.parametrize("case", ["file", "under a file", "empty", "proc"])
def test_command_line_refuses_an_unwritable_out_before_any_work(tmp_path, capsys, case):
    before = sorted(p.name for p in tmp_path.iterdir())
    out = _blocked_outs(tmp_path)[case]
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        prototypes_command.main([*SMALL, "--out", out])
    assert exit_info.value.code == 2 and time.perf_counter() - started < 5  # refused, not after the sweep
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--out" in error[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "file"])
    assert (tmp_path / "file").read_text() == "x"


def test_help_shows_every_default_in_input_syntax(capsys):
    with pytest.raises(SystemExit) as exit_info:
        prototypes_command.parse(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "--imbalance IMBALANCE, --R IMBALANCE",
        "(default: 1.0,2.0,10.0)",
        "(default: 0,1,10,100,1000)",
        "(default: none)",
        "(default: 1e-09)",
        "(default: results/prototypes)",
        "(default: data)",
    ):
        assert shown in text
    assert text.count("(default:") == len(prototypes_command.Config.__dataclass_fields__)
    assert "(" + "1.0, " not in text  # no Python tuples


def test_R_is_an_alias_of_imbalance(tmp_path):
    config = prototypes_command.parse(
        ["--R", "100", "--n-proto", "0", "--route", "certificate", "--out", str(tmp_path / "o")]
    )
    assert config.imbalance == (100.0,) and not (tmp_path / "o").exists()


def test_failed_criteria_exit_1_and_say_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert prototypes_command.main([*SMALL, "--max-iter", "2", "--out", str(out)]) == 1
    line = capsys.readouterr().out.strip()
    assert "criteria FAIL" in line and "exit 1" in line
    record = json.loads((out / "prototypes.json").read_text())
    assert record["criteria"]["thresholds"] == prototypes_command.CRITERIA
    assert record["criteria"]["passed"] is False
    assert len(record["criteria"]["failures"]) >= sum(not c["converged"] for c in record["cells"]) > 0


def test_rerun_replaces_the_whole_set_and_records_its_command(tmp_path, capsys):
    out = tmp_path / "run"
    assert prototypes_command.main([*SMALL, "--out", str(out)]) == 0
    assert "criteria hold, exit 0" in capsys.readouterr().out
    (out / "stale.png").write_text("another configuration")
    assert prototypes_command.main([*SMALL[:-2], "--n-proto", "5", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["deltag.png", "limit_gap.png", "prototypes.csv", "prototypes.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging or retired folder left
    record = json.loads((out / "prototypes.json").read_text())
    assert record["config"]["n_proto"] == [5] and record["criteria"]["passed"] is True
    assert record["metadata"]["command"] == cli.run_metadata()["command"]
    assert (out / "prototypes.json").stat().st_mode & 0o777 == 0o666 & ~cli.current_umask()


FUZZ_FLAGS = [
    "--m",
    "--majority-size",
    "--imbalance",
    "--R",
    "--n-proto",
    "--dim",
    "--tau",
    "--anchors",
    "--geometry",
    "--batch-size",
    "--steps",
    "--lr",
    "--start",
    "--restarts",
    "--max-iter",
    "--grad-tol",
    "--certify-max-vectors",
    "--route",
    "--seed",
    "--threads",
    "--bogus",
]
FUZZ_VALUES = [
    "0",
    "1",
    "-1",
    "2",
    "3",
    "0.5",
    "1e-5",
    "1e300",
    "nan",
    "inf",
    "x",
    "",
    "1,1",
    "0,10",
    "1,,2",
    "none",
    "data",
    "all",
    "etf",
    "orthogonal",
    "minority-spread:2",
    "gram:/no/file.npy",
    "certificate",
    "optimise",
    "clustered",
    "99999999999999999999",
    "2001",
]


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(FUZZ_FLAGS), st.sampled_from(FUZZ_VALUES)), max_size=6))
def test_fuzzed_command_lines_exit_0_or_2_and_write_nothing(tmp_path_factory, pairs):
    out = tmp_path_factory.mktemp("fuzz") / "never"
    argv = [token for pair in pairs for token in pair] + ["--out", str(out)]
    try:
        prototypes_command.parse(argv)  # validation only: the sweep is not run
    except SystemExit as exit_info:
        assert exit_info.code == 2
    assert not out.exists() and not list(out.parent.iterdir())


def test_sigint_ends_the_sweep_with_one_line_and_no_result(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "prototypes.json").write_text("previous run")
    # A sweep of minutes (tight tolerance, many iterations); SIGINT arrives once it is under way.
    command = [
        sys.executable,
        "-m",
        "simulate.prototypes",
        "--m",
        "10",
        "--majority-size",
        "60",
        "--R",
        "1",
        "--n-proto",
        "0,1,10,100",
        "--dim",
        "32",
        "--max-iter",
        "100000",
        "--grad-tol",
        "1e-300",
        "--certify-max-vectors",
        "0",
        "--out",
        str(out),
    ]
    imports = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import simulate.prototypes_command"], check=True, timeout=120)
    imports = time.perf_counter() - imports
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(1.5 * imports + 1)  # past its imports (measured just now): the handlers are in place
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    output, error = process.communicate(timeout=120)
    assert process.returncode == 130, error
    assert error.strip().splitlines() == [
        "python -m simulate.prototypes: interrupted by SIGINT; no partial result was published"
    ]
    assert output == ""
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out.iterdir()] == ["prototypes.json"]
    assert (out / "prototypes.json").read_text() == "previous run"


# ---------------------------------------------------------------------------
# The benchmark's naive loss is the same loss
# ---------------------------------------------------------------------------


def test_benchmark_naive_loss_equals_the_reduced_loss(monkeypatch):
    spec = importlib.util.spec_from_file_location("prototype_cost", ROOT / "benchmarks" / "prototype_cost.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(module)
    generator = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(12, 6, generator=generator, dtype=torch.float64), dim=-1)
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4])
    W = torch.tensor(simplex.etf(5, 6), dtype=torch.float64)
    for n_proto in (0, 1, 7, 50):
        expected = prototype_supcon_loss(z, labels, W, n_proto, 0.3)
        actual = module.naive_prototype_supcon(z, labels, W, n_proto, 0.3)
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=0)


def test_certificate_route_at_paper_size(tmp_path):
    # Every cell is the exchangeable certificate: exact at majority 5000, where free optimisation refuses.
    out = tmp_path / "out"
    assert (
        prototypes_command.main(
            [
                "--route",
                "certificate",
                "--m",
                "4",
                "--majority-size",
                "5000",
                "--imbalance",
                "1,100",
                "--n-proto",
                "0,100",
                "--tau",
                "0.2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads((out / "prototypes.json").read_text())
    assert "limit gap" in record["summary"]["not_computed"]
    cells = {(c["imbalance"], c["n_proto"]): c for c in record["cells"]}
    assert cells[(100.0, 0)]["class_sizes"] == [5000, 5000, 50, 50]
    from simulate import exchangeable

    direct = exchangeable.certify_prototype((5000, 5000, 50, 50), simplex.etf_gram(4), 100, 0.2)
    assert cells[(100.0, 100)]["loss"] == pytest.approx(direct.minimum, rel=1e-9)
    assert cells[(100.0, 100)]["delta_g"] == pytest.approx(direct.delta_g(simplex.etf_gram(4)), abs=1e-4)
    assert cells[(1.0, 0)]["delta_g"] < 1e-6  # balanced: collapse onto the ETF (Graf et al.)
    assert all(c["converged"] for c in record["cells"])
