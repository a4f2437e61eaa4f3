"""Cost of prototype SCL against the number of prototype copies n_w (docs/losses.md#why-copies-are-never-materialised).

`simulate.losses.prototype_supcon_loss` enters the n_w identical copies of each
prototype as log n_w in denominators and as multiplicity n_w on positives, so its
cost should not grow with n_w. The naive version below does what the reduction
avoids: it concatenates the m n_w copies into the batch and computes SupCon for the
data anchors over the enlarged set (cost O(N (N + m n_w) d)).

Both are timed in one run, on the same inputs, forward and forward+backward, at
batch 256, m = 10, dim = 128, float32, on the CPU, for n_w in {0, 10, 100, 1000, 10000};
ratios are to the fast loss at n_w = 0. The naive value is also checked against the
fast one. Run: ``python benchmarks/prototype_cost.py [--out DIR] [--repeats K] [--threads T]``
(every option: --help); writes DIR/prototype_cost.json (default results/prototype_cost/, replaced as
one set) and prints a table and one summary line. Exit code 0 when its criteria (`CRITERIA`) hold,
1 when they fail, 2 for bad arguments.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass

import torch

from simulate import cli
from simulate.cli import option
from simulate.losses import prototype_supcon_loss
from theory.arguments import TAU_RANGE
from theory.simplex import etf

PROG = "python benchmarks/prototype_cost.py"

#: The benchmark's own criteria, recorded in its JSON: the naive value equals the fast one to float32
#: rounding (relative), and the fast loss's forward+backward cost at the largest n_w stays within this
#: multiple of its n_w = 0 cost (its cost must not grow with n_w; minimum times, whose noise on a
#: shared machine is well below 2x).
CRITERIA = {"max_relative_difference": 1e-5, "max_fast_cost_ratio": 2.0}
#: Largest n_w timed: the naive version materialises m * n_w copies (10^5 x d floats at 10^4).
MAX_N_PROTO = 100_000


@dataclass(frozen=True)
class Config:
    """The cost of prototype SCL against the number of prototype copies n_w, beside a naive version."""

    batch: int = option(256, "batch size N", check=cli.at_least(2))
    n_classes: int = option(10, "classes m", check=cli.between(2, 1000))
    dim: int = option(128, "embedding dimension d (>= m - 1 for the ETF prototypes)", check=cli.between(1, 4096))
    tau: float = option(0.1, "temperature, in [0.001, 1000]", check=cli.between(*TAU_RANGE))
    n_protos: tuple[int, ...] = option(
        (0, 10, 100, 1000, 10000),
        "prototype copies n_w, first 0 (the baseline)",
        check=cli.each(cli.between(0, MAX_N_PROTO)),
        sweep=True,
    )
    repeats: int = option(20, "timed calls per measurement", check=cli.between(1, 10_000))
    # Small kernels; on a shared 2-core machine extra threads add contention noise.
    threads: int = option(1, "torch threads", check=cli.between(1, 1024))
    seed: int = option(0, "random seed", check=cli.between(0, 2**32 - 1))
    out: str = option("results/prototype_cost", "output folder (replaced as one set)")

    def validate(self) -> None:
        if self.n_protos[0] != 0:
            raise ValueError(
                f"--n-protos {','.join(map(str, self.n_protos))}: must start with 0, the baseline of every ratio"
            )
        if self.dim < self.n_classes - 1:
            raise ValueError(
                f"--dim {self.dim}: ETF prototypes of {self.n_classes} classes need dim >= {self.n_classes - 1}"
            )


def naive_prototype_supcon(z, labels, prototypes, n_proto: int, tau: float):
    """SupCon over S = batch + n_proto materialised copies of each prototype, data anchors only."""
    m = prototypes.shape[0]
    everything = torch.cat([z, prototypes.repeat(n_proto, 1)])  # (N + m n_w, d)
    all_labels = torch.cat([labels, torch.arange(m).repeat(n_proto)])
    logits = z @ everything.T / tau  # (N, N + m n_w)
    n = z.shape[0]
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(n), torch.arange(n)] = True
    log_denominator = torch.logsumexp(logits.masked_fill(self_mask, -math.inf), dim=1)
    positive = (labels[:, None] == all_labels[None, :]) & ~self_mask
    count = positive.sum(1)
    valid = count > 0
    losses = log_denominator - torch.where(positive, logits, 0.0).sum(1) / count.clamp(min=1)
    return torch.where(valid, losses, 0.0).sum() / valid.sum()


def _calls(loss_fn, z) -> dict:
    """The two timed calls of one loss: forward only, and forward + backward."""

    def forward():
        with torch.no_grad():
            loss_fn(z)

    def forward_backward():
        x = z.detach().requires_grad_(True)
        loss_fn(x).backward()

    return {"forward": forward, "forward_backward": forward_backward}


def _time_round_robin(calls: dict, repeats: int, budget_s: float) -> dict:
    """Per key, the min and median wall time of its call over rounds that each time every call once.

    Round-robin timing spreads load changes of a shared machine over all n_w alike; the
    minimum is the least disturbed figure. Rounds stop at `repeats`, or earlier (after 3)
    once `budget_s` seconds have been spent.
    """
    for call in calls.values():
        call()  # warm-up
    times = {key: [] for key in calls}
    started = time.perf_counter()
    for round_ in range(repeats):
        if round_ >= 3 and time.perf_counter() - started > budget_s:
            break
        for key, call in calls.items():
            begin = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - begin)
    return {
        key: {"min_s": min(values), "median_s": sorted(values)[len(values) // 2], "calls": len(values)}
        for key, values in times.items()
    }


def run(config: Config) -> dict:
    torch.manual_seed(config.seed)
    z = torch.nn.functional.normalize(torch.randn(config.batch, config.dim), dim=1)
    labels = torch.arange(config.batch) % config.n_classes
    prototypes = torch.tensor(etf(config.n_classes, config.dim, seed=config.seed), dtype=torch.float32)

    def fast(n_w):
        return lambda x: prototype_supcon_loss(x, labels, prototypes, n_w, config.tau)

    def naive(n_w):
        return lambda x: naive_prototype_supcon(x, labels, prototypes, n_w, config.tau)

    calls = {}
    for n_w in config.n_protos:
        calls.update({("fast", n_w, kind): call for kind, call in _calls(fast(n_w), z).items()})
    # The fast loss first, on its own: the naive version's large allocations must not disturb it.
    timed = _time_round_robin(calls, config.repeats, budget_s=30.0)
    for n_w in config.n_protos:
        naive_calls = {("naive", n_w, kind): call for kind, call in _calls(naive(n_w), z).items()}
        timed.update(_time_round_robin(naive_calls, config.repeats, budget_s=5.0))
    rows = []
    for n_w in config.n_protos:
        with torch.no_grad():
            reference = fast(n_w)(z).item()
            difference = abs(naive(n_w)(z).item() - reference) / abs(reference)
        row = {"n_proto": n_w, "relative_difference": difference}
        for version in ("fast", "naive"):
            row[version] = {kind: timed[(version, n_w, kind)] for kind in ("forward", "forward_backward")}
        rows.append(row)
    base = rows[0]["fast"]
    for row in rows:
        for kind in ("forward", "forward_backward"):
            row[f"fast_{kind}_ratio_to_fast_n0"] = row["fast"][kind]["min_s"] / base[kind]["min_s"]
            row[f"naive_{kind}_ratio_to_fast_n0"] = row["naive"][kind]["min_s"] / base[kind]["min_s"]
            row[f"naive_over_fast_{kind}"] = row["naive"][kind]["min_s"] / row["fast"][kind]["min_s"]
    return {
        "rows": rows,
        "statistic": "ratios of the minimum time per call over the timed calls",
        "max_relative_difference": max(r["relative_difference"] for r in rows),
    }


def _table(results: dict) -> str:
    lines = [
        f"{'n_proto':>8} {'fast fwd ms':>12} {'fast f+b ms':>12} {'naive fwd ms':>13} {'naive f+b ms':>13}"
        f" {'fast f+b / n0':>14} {'naive/fast f+b':>15}   (min time per call)"
    ]
    for row in results["rows"]:
        fast, naive = row["fast"], row["naive"]
        lines.append(
            f"{row['n_proto']:>8} {1e3 * fast['forward']['min_s']:>12.3f}"
            f" {1e3 * fast['forward_backward']['min_s']:>12.3f}"
            f" {1e3 * naive['forward']['min_s']:>13.3f} {1e3 * naive['forward_backward']['min_s']:>13.3f}"
            f" {row['fast_forward_backward_ratio_to_fast_n0']:>14.2f} {row['naive_over_fast_forward_backward']:>15.1f}"
        )
    return "\n".join(lines)


def judge(results: dict) -> dict:
    """`CRITERIA` applied to the results: thresholds, failures, passed."""
    last = max(results["rows"], key=lambda row: row["n_proto"])
    failures = []
    if not results["max_relative_difference"] <= CRITERIA["max_relative_difference"]:
        failures.append(f"naive and fast values differ by {results['max_relative_difference']:.1e} (relative)")
    if not last["fast_forward_backward_ratio_to_fast_n0"] <= CRITERIA["max_fast_cost_ratio"]:
        failures.append(
            f"fast cost at n_w={last['n_proto']} is {last['fast_forward_backward_ratio_to_fast_n0']:.2f}x "
            f"its n_w=0 cost"
        )
    return {"thresholds": CRITERIA, "failures": failures, "passed": not failures}


def parse(argv=None) -> Config:
    return cli.parse_config(Config, argv, PROG, Config.__doc__)


def main(argv=None) -> int:
    config = parse(argv)
    torch.set_num_threads(config.threads)
    results = run(config)
    verdict = judge(results)
    record = {"config": asdict(config), "metadata": cli.run_metadata(), "criteria": verdict, "results": results}
    out = cli.publish(config.out, lambda folder: cli.write_json(folder / "prototype_cost.json", record))
    print(_table(results))
    last = max(results["rows"], key=lambda row: row["n_proto"])
    outcome = (
        "criteria hold, exit 0" if verdict["passed"] else f"criteria FAIL ({'; '.join(verdict['failures'])}), exit 1"
    )
    print(
        f"n_proto={last['n_proto']}: fast costs {last['fast_forward_backward_ratio_to_fast_n0']:.2f}x "
        f"its n_proto=0 cost (forward {last['fast_forward_ratio_to_fast_n0']:.2f}x), "
        f"naive {last['naive_over_fast_forward_backward']:.0f}x the fast loss; "
        f"max relative difference {results['max_relative_difference']:.1e}; {outcome}; "
        f"wrote {out / 'prototype_cost.json'}"
    )
    return 0 if verdict["passed"] else 1


if __name__ == "__main__":
    sys.exit(cli.run_command(PROG, main))
