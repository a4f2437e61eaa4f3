"""The benchmark runs both optimisers on one grid and reports comparable figures (no timing assertions)."""

import json
from dataclasses import fields

import numpy as np
import pytest
import torch

from simulate import bench, cli, losses


def test_naive_baseline_loss_equals_the_suite_loss_where_it_is_finite():
    labels, instances = losses.balanced_layout(2, 3, 2)
    z = torch.nn.functional.normalize(
        torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    for alpha, tau in ((0.0, 0.5), (0.4, 0.1), (1.0, 2.0)):
        naive = bench.naive_combined_loss(z, labels, instances, alpha, tau)
        assert torch.allclose(naive, losses.combined_loss(z, labels, instances, alpha, tau), rtol=1e-12)


def test_naive_baseline_overflows_at_small_tau_in_float32():
    labels, instances = losses.balanced_layout(2, 2, 2)
    z = torch.nn.functional.normalize(torch.ones(8, 3), dim=-1)
    assert torch.isnan(bench.naive_combined_loss(z, labels, instances, 0.5, 0.005))


def test_small_benchmark_reports_both_routes(tmp_path):
    config = bench.Config(m=2, n=2, alphas="0:1:2", taus="0.3:1:2", steps=50, out=str(tmp_path))
    result = bench.run(config)
    assert result["n_configurations"] == 4
    for name in ("batched_tight", "batched_matched", "baseline"):
        entry = result[name]
        assert entry["configs_per_second"] > 0 and np.isfinite(entry["max_rel_loss_error"])
    assert result["batched_tight"]["max_rel_loss_error"] < 1e-8  # the batched optimiser reaches the closed form
    assert "speedup" in result["batched_matched"]
    assert result["criteria"]["batched_tight_max_rel_loss_error"] == 1e-7 and result["passes"] is True


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    for field_ in fields(bench.Config):
        assert f"(default: {cli.input_syntax(field_.default)})" in text, field_.name


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--out", "/proc/x"], "--out"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "99999999999999999999999"], "--seed"),
        (["--taus", "1e-300:1e300:7"], "--taus"),
        (["--alphas", "0:2:3"], "--alphas"),
        (["--lr", "0"], "--lr"),
        (["--steps", "0"], "--steps"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_flag(tmp_path, capsys, args, flag):
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*args, *out])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(stderr.strip().splitlines()) == 1 and flag in stderr
    assert list(tmp_path.iterdir()) == []


def test_command_publishes_bench_json_and_exit_0_when_its_criteria_hold(tmp_path, capsys):
    out = tmp_path / "bench"
    code = bench.main(
        ["--m", "2", "--n", "2", "--alphas", "0:1:2", "--taus", "0.3:1:2", "--steps", "50", "--out", str(out)]
    )
    result = json.loads((out / "bench.json").read_text())
    assert code == (0 if result["passes"] else 1)
    assert ("criteria hold, exit 0" if result["passes"] else "exit 1") in capsys.readouterr().out
    assert [path.name for path in out.iterdir()] == ["bench.json"]
