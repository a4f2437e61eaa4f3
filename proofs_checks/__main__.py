"""`python -m proofs_checks`: the verification report — every claim with its verdict, figures and numbers.

Runs the checks of the claims registry (the functions `pytest proofs_checks` runs) and writes, as one
set that replaces the folder (`simulate.cli.publish`), DIR/README.md (verdict table, a section per
claim with its figures), DIR/report.json (the same for machines) and DIR/figures/*.png.
`--update-readme` also regenerates the verdict table of the project README. Exit code: 0 when every
check ran, whatever its verdict; 1 if a check raised (or a claim module did not import); 2 for bad
arguments; 130/143 on SIGINT/SIGTERM (nothing published).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from proofs_checks import report
from simulate import cli
from simulate.cli import option

PROG = "python -m proofs_checks"
PROJECT_README = Path(__file__).resolve().parent.parent / "README.md"
#: What the exit code judges (recorded in report.json): the verdicts are results, not failures of the run.
EXIT_RULE = "0 when every check ran, whatever its verdict; 1 if a check raised or a claim module did not import"


def _claim_ids(ids: tuple) -> None:
    report.parse_claim_ids(",".join(ids))


@dataclass(frozen=True)
class Config:
    """The verification report: every claim with its verdict, figures and numbers."""

    out: str = option("report", "output folder (replaced as one set)")
    claims: tuple[str, ...] | None = option(
        None, "comma-separated claim ids, e.g. A1,B2 (none: every claim)", check=_claim_ids
    )
    figures: bool = option(True, "figures (--no-figures: numbers and verdicts only)")
    empirical_results: str | None = option(
        None, "output folder of python -m empirical.cifar (DIR/summary.json or DIR/*/summary.json)"
    )
    update_readme: bool = option(False, "also rewrite the verdict table between the markers of --readme")
    readme: str = option(str(PROJECT_README), "README whose verdict block --update-readme rewrites")

    def validate(self) -> None:
        """Every check of the arguments that needs no claim to run (raises ValueError)."""
        if self.empirical_results is not None:
            for path in report.find_empirical_summaries(self.empirical_results):
                report.empirical_summary(path)
        if self.update_readme:
            if self.claims is not None:
                raise ValueError("--update-readme rewrites the table of every claim: drop --claims")
            try:
                text = Path(self.readme).read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(f"--readme {self.readme} cannot be read: {error.strerror}") from None
            report.replace_marked_block(text, "")
            if not os.access(self.readme, os.W_OK) or not os.access(Path(self.readme).resolve().parent, os.W_OK):
                raise ValueError(f"--readme {self.readme}: cannot be rewritten (no write permission)")

    def claim_ids(self) -> tuple[str, ...] | None:
        """--claims upper-cased, without repeats (None: every claim)."""
        return None if self.claims is None else report.parse_claim_ids(",".join(self.claims))


def parse(argv=None) -> Config:
    """The validated configuration; bad input exits 2 with one line naming the flag, before any check runs."""
    return cli.parse_config(Config, argv, PROG, Config.__doc__)


def main(argv=None) -> int:
    config = parse(argv)
    # The checks' tensors are tiny: extra torch threads only spin (10x slower on a shared machine).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    started = time.perf_counter()
    claims, broken = report.load_claims()
    try:
        selected = report.select_claims(claims, config.claim_ids())
    except ValueError as error:
        cli.fail(PROG, str(error))
    outcomes = list(broken)
    with tqdm(selected.values(), desc="claims", unit="claim", disable=None) as bar:
        for claim in bar:
            bar.set_postfix_str(claim.id)
            outcomes.append(report.run_claim(claim))
    outcomes.sort(key=lambda outcome: report.claim_order(outcome.id))
    empirical = [
        report.empirical_summary(path)
        for path in (report.find_empirical_summaries(config.empirical_results) if config.empirical_results else [])
    ]
    code = report.exit_code(outcomes)
    drawn = []

    def write(folder: Path) -> None:
        # The figures are drawn into the staging folder too: an interrupted report leaves no figure behind.
        drawn.extend(draw_figures(config, selected, empirical, folder) if config.figures else [])
        metadata = {
            **cli.run_metadata(),
            "seconds": time.perf_counter() - started,
            "exit_code": code,
            "exit_rule": EXIT_RULE,
        }
        report.write_report(folder, outcomes, drawn, empirical, metadata, asdict(config))

    out = cli.publish(config.out, write)
    if config.update_readme:
        report.update_readme(config.readme, outcomes)
    line = report.summary_line(outcomes, drawn if config.figures else None, time.perf_counter() - started)
    reason = "a check raised" if code else "every check ran"
    print(f"{line}; exit {code} ({reason}) -> {out / 'README.md'}")
    return code


def draw_figures(config: Config, selected: dict, empirical: list[dict], out: Path) -> list:
    from tqdm import tqdm

    specs = report.figure_specs(None if config.claims is None else tuple(selected))
    inputs = report.FigureInputs()
    figures = []
    with tqdm(specs, desc="figures", unit="figure", disable=None) as bar:
        for spec in bar:
            bar.set_postfix_str(spec.name)
            figures.append(report.draw_figure(spec, inputs, out))
    for index, entry in enumerate(empirical):
        entry["_figure"] = report.draw_empirical(entry, report.empirical_claims(selected), out, index)
        figures.append(entry["_figure"])
    return figures


if __name__ == "__main__":
    sys.exit(cli.run_command(PROG, main))
