"""Exchangeable certificates against the full Gram program, in one run (docs/certificates.md).

Part 1, matched sizes: per-anchor SCL on m = 4 step-imbalanced classes (majority K/3, minority
K/6) and the combined loss at K = m n p, for K in {24, 32, 48}: both methods certify the same
configuration; the table gives each one's median seconds over --repeats, the ratio, and the
difference of the certified minima.

Part 2, scale: the largest size each method certifies within --budget seconds. The full program
grows with the number of vectors K (its cost is about K^6): it is timed at growing K until one
solve exceeds the budget. The exchangeable program does not grow with the class sizes at all;
what grows is the number of classes when no two classes are alike (symmetry "none"), timed at
growing m with CIFAR-sized classes (5000 per class), until one solve exceeds the budget.

Run: ``python benchmarks/certificate_scale.py [--repeats 3] [--budget 60] [--out DIR]``;
writes DIR/certificate_scale.json (default results/certificate_scale/, replaced as one set) and
prints the tables and one summary line. Exit code 0 when the two methods' minima agree within
`CRITERIA` in part 1, 1 when they do not, 2 for bad arguments.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, dataclass

from simulate import certify, cli, exchangeable
from simulate.cli import option

PROG = "python benchmarks/certificate_scale.py"

#: The benchmark's own criterion, recorded in its JSON: at matched sizes the two methods' certified
#: minima agree to this relative difference (docs/certificates.md: to solver accuracy).
CRITERIA = {"max_relative_minimum_difference": 1e-6}


@dataclass(frozen=True)
class Config:
    """Exchangeable certificates against the full Gram program, in one run."""

    repeats: int = option(3, "solves per timing (their median)", check=cli.between(1, 1000))
    budget: float = option(60.0, "seconds one certificate may take in part 2", check=cli.between(0.01, 86400))
    out: str = option("results/certificate_scale", "output folder (replaced as one set)")


def _seconds(call, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def matched(sizes_k=(24, 32, 48), repeats: int = 3) -> list[dict]:
    rows = []
    for k in sizes_k:
        supcon_sizes = (k // 3, k // 3, k // 6, k - 2 * (k // 3) - k // 6)
        cases = {
            f"supcon {supcon_sizes}": (
                lambda s=supcon_sizes: certify.certify_supcon(s, 0.2),
                lambda s=supcon_sizes: exchangeable.certify_supcon(s, 0.2),
            ),
            f"combined m=4 n={k // 8} p=2": (
                lambda n=k // 8: certify.certify_combined(0.3, 0.2, 4, n, 2),
                lambda n=k // 8: exchangeable.certify_combined(0.3, 0.2, 4, n, 2),
            ),
        }
        for name, (full_call, reduced_call) in cases.items():
            full_seconds, full = _seconds(full_call, repeats)
            reduced_seconds, reduced = _seconds(reduced_call, repeats)
            rows.append(
                {
                    "K": k,
                    "case": name,
                    "full_s": full_seconds,
                    "exchangeable_s": reduced_seconds,
                    "ratio": full_seconds / reduced_seconds,
                    "full_minimum": full.minimum,
                    "minimum_difference": reduced.minimum - full.minimum,
                    "relative_minimum_difference": abs(reduced.minimum - full.minimum) / abs(full.minimum),
                }
            )
    return rows


def largest_full(budget: float, start: int = 40, step: int = 8) -> list[dict]:
    rows, k = [], start
    while True:
        sizes = (k // 2, k - k // 2)
        original, certify.MAX_VECTORS = certify.MAX_VECTORS, 10**6  # lift the cap to time past it
        try:
            seconds, _ = _seconds(lambda sizes=sizes: certify.certify_supcon(sizes, 0.2, strict=False), 1)
        finally:
            certify.MAX_VECTORS = original
        rows.append({"K": k, "seconds": seconds})
        if seconds > budget:
            return rows
        k += step


def largest_exchangeable(budget: float, classes=(10, 20, 40, 60, 100, 150, 200)) -> list[dict]:
    rows = []
    for m in classes:
        sizes = (5000,) * (m // 2) + (50,) * (m - m // 2)
        seconds, certificate = _seconds(lambda sizes=sizes: exchangeable.certify_supcon(sizes, 0.2, symmetry="none"), 1)
        rows.append({"m": m, "vectors": sum(sizes), "variables": len(certificate.variables), "seconds": seconds})
        if seconds > budget:
            break
    return rows


def judge(rows: list[dict]) -> dict:
    """`CRITERIA` applied to part 1: thresholds, failures, passed."""
    limit = CRITERIA["max_relative_minimum_difference"]
    failures = [
        f"K={row['K']} {row['case']}: minima differ by {row['relative_minimum_difference']:.1e} (relative)"
        for row in rows
        if not row["relative_minimum_difference"] <= limit
    ]
    return {"thresholds": CRITERIA, "failures": failures, "passed": not failures}


def parse(argv=None) -> Config:
    return cli.parse_config(Config, argv, PROG, Config.__doc__)


def main(argv=None) -> int:
    config = parse(argv)
    rows = matched(repeats=config.repeats)
    print(f"{'K':>3} {'case':<34} {'full s':>8} {'exch. s':>8} {'ratio':>7} {'min diff':>9}")
    for row in rows:
        print(
            f"{row['K']:>3} {row['case']:<34} {row['full_s']:>8.2f} {row['exchangeable_s']:>8.3f} "
            f"{row['ratio']:>7.0f} {row['minimum_difference']:>9.1e}"
        )
    full_rows = largest_full(config.budget)
    print("full program: " + ", ".join(f"K={r['K']}: {r['seconds']:.1f} s" for r in full_rows))
    reduced_rows = largest_exchangeable(config.budget)
    print(
        "exchangeable, no class symmetry, 5000/50 per class: "
        + ", ".join(f"m={r['m']} ({r['vectors']} vectors): {r['seconds']:.1f} s" for r in reduced_rows)
    )
    verdict = judge(rows)
    record = {
        "config": asdict(config),
        "metadata": cli.run_metadata(),
        "criteria": verdict,
        "matched": rows,
        "largest_full": full_rows,
        "largest_exchangeable": reduced_rows,
    }
    out = cli.publish(config.out, lambda folder: cli.write_json(folder / "certificate_scale.json", record))
    outcome = "criteria hold, exit 0" if verdict["passed"] else f"criteria FAIL ({verdict['failures'][0]}), exit 1"
    print(
        f"matched sizes: largest relative difference of the minima "
        f"{max(row['relative_minimum_difference'] for row in rows):.1e}; {outcome}; wrote "
        f"{out / 'certificate_scale.json'}"
    )
    return 0 if verdict["passed"] else 1


if __name__ == "__main__":
    sys.exit(cli.run_command(PROG, main))
