"""The benchmark runs both optimisers on one grid and reports comparable figures (no timing assertions)."""

import numpy as np
import torch

from simulate import bench, losses


def test_naive_baseline_loss_equals_the_suite_loss_where_it_is_finite():
    labels, instances = losses.balanced_layout(2, 3, 2)
    z = torch.nn.functional.normalize(torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), dim=-1)
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
