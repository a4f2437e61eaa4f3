"""Outcomes of the verification report: run each registered claim and collect its verdict.

Every claim's check is run once (`run_claim`); its outcome is one of

* a verdict of the check: "holds", "fails" (with its counterexample), "not run" (with the reason);
* "error": the check raised (or its module failed to import). The message is kept and
  reported; an error is a defect of the suite, never a verdict on the claim.

Also here: the summaries of `python -m empirical.cifar` results the report shows beside the claims.
Nothing here renders or writes files (`report_render`, `report_figures`).
"""

from __future__ import annotations

import json
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from empirical.evaluation import over_seeds
from proofs_checks import registry
from proofs_checks.registry import Claim, Result

ERROR = "error"
STATUSES = (*registry.VERDICTS, ERROR)


@dataclass(frozen=True)
class Outcome:
    """What running one claim gave.

    status: a verdict of `registry.VERDICTS`, or "error" (the check raised, or its
    module did not import); detail: the counterexample ("fails"), the reason ("not run")
    or "ExceptionType: message" ("error"); expect: the verdict the suite asserts (None
    when unknown, as for a module that did not import).
    """

    id: str
    source: str
    statement: str
    routes: tuple
    expect: str | None
    status: str
    figures: dict = field(default_factory=dict)
    detail: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    images: tuple = ()

    @property
    def unexpected(self) -> bool:
        """A measured verdict that differs from the one the suite asserts (errors excluded)."""
        return self.status != ERROR and self.expect is not None and self.status != self.expect


def claim_order(claim_id: str) -> tuple:
    """Sort key: A2 before A10, all A before B; unusual ids last, alphabetically."""
    match = re.fullmatch(r"([A-Za-z]+)(\d+)", claim_id)
    return (0, match.group(1).upper(), int(match.group(2))) if match else (1, claim_id, 0)


def order_claims(claims: dict[str, Claim]) -> dict[str, Claim]:
    return dict(sorted(claims.items(), key=lambda item: claim_order(item[0])))


def parse_claim_ids(text: str) -> tuple[str, ...]:
    """'a1, B2' -> ('A1', 'B2'): comma-separated, upper-cased, duplicates dropped; ValueError if empty."""
    ids = tuple(dict.fromkeys(token.strip().upper() for token in str(text).split(",") if token.strip()))
    if not ids:
        raise ValueError(f"--claims needs comma-separated claim ids such as A1,B2, got {text!r}")
    return ids


def select_claims(claims: dict[str, Claim], ids=None) -> dict[str, Claim]:
    """The claims named by `ids` (all when None), in claim order; ValueError naming unknown ids."""
    if ids is None:
        return order_claims(claims)
    by_upper = {claim_id.upper(): claim_id for claim_id in claims}
    unknown = [claim_id for claim_id in ids if claim_id.upper() not in by_upper]
    if unknown:
        known = ", ".join(order_claims(claims))
        raise ValueError(f"--claims: unknown claim id(s) {', '.join(unknown)}; known: {known}")
    return order_claims({by_upper[i.upper()]: claims[by_upper[i.upper()]] for i in ids})


def run_claim(claim: Claim) -> Outcome:
    """Run one check; an exception (or a return value that is not a `Result`) becomes an "error" outcome."""
    started = time.perf_counter()
    try:
        result = claim.check()
        if not isinstance(result, Result):
            raise TypeError(f"the check returned {type(result).__name__}, not a registry.Result")
    except Exception as error:  # reported as the claim's error, with its message
        return error_outcome(
            claim.id, claim.source, claim.statement, claim.routes, claim.expect, error, time.perf_counter() - started
        )
    detail = {"fails": result.counterexample, "not run": result.reason, "inconclusive": result.reason}.get(
        result.verdict
    )
    return Outcome(
        claim.id,
        claim.source,
        claim.statement,
        tuple(claim.routes),
        claim.expect,
        result.verdict,
        dict(result.figures),
        detail,
        None,
        time.perf_counter() - started,
        tuple(map(str, result.images)),
    )


def error_outcome(claim_id, source, statement, routes, expect, error: BaseException, seconds: float) -> Outcome:
    message = f"{type(error).__name__}: {error}".strip()
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return Outcome(claim_id, source, statement, tuple(routes), expect, ERROR, {}, message, trace, seconds)


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """Number of outcomes per status (every status present, zeros included)."""
    return {status: sum(o.status == status for o in outcomes) for status in STATUSES}


def exit_code(outcomes: list[Outcome]) -> int:
    """1 if any claim errored (check raised or module did not import), else 0."""
    return int(any(o.status == ERROR for o in outcomes))


def summary_line(
    outcomes: list[Outcome], figures: list | None = None, seconds: float | None = None, out: str | None = None
) -> str:
    """One line: counts per verdict, unexpected verdicts, errors, figures, time and where the report is."""
    tally = counts(outcomes)
    parts = [f"{len(outcomes)} claims: " + ", ".join(f"{tally[s]} {s}" for s in STATUSES)]
    unexpected = [o.id for o in outcomes if o.unexpected]
    if unexpected:
        parts.append(f"differs from the suite's assertion: {', '.join(unexpected)}")
    errored = [o.id for o in outcomes if o.status == ERROR]
    if errored:
        parts.append(f"errors: {', '.join(errored)}")
    if figures is not None:
        failed = [f.name for f in figures if f.error]
        parts.append(
            f"{len(figures) - len(failed)} figures"
            + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else "")
        )
    if seconds is not None:
        parts.append(f"{seconds:.0f} s")
    return "; ".join(parts) + (f" -> {out}" if out else "")


# ---------------------------------------------------------------------------
# Empirical summaries (output of `python -m empirical.cifar`)
# ---------------------------------------------------------------------------

EMPIRICAL_METRICS = ("delta_g", "within_var", "between_var", "nc1", "test_acc_majority", "test_acc_minority")


def find_empirical_summaries(directory) -> list[Path]:
    """summary.json of `python -m empirical.cifar --out DIR`: in DIR itself, else in its direct subfolders.

    Raises ValueError if DIR is not a folder or holds none.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"--empirical-results must be a folder written by python -m empirical.cifar, got {directory}")
    found = (
        [directory / "summary.json"]
        if (directory / "summary.json").is_file()
        else sorted(directory.glob("*/summary.json"))
    )
    if not found:
        raise ValueError(
            f"--empirical-results {directory}: no summary.json in it or its subfolders "
            "(run python -m empirical.cifar --out DIR first)"
        )
    return found


def empirical_summary(path) -> dict:
    """Mean, std (ddof 1) and count over seeds of each metric, per swept value, of one summary.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key = data.get("sweep", "n_proto")
        runs = [run for run in data.get("runs", []) if run.get("status") == "finished"]
        values = sorted({run[key] for run in runs})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{path} is not a summary of python -m empirical.cifar ({type(error).__name__}: {error})"
        ) from None
    rows = []
    for value in values:
        group = [run for run in runs if run[key] == value]
        row = {key: value, "seeds": len(group)}
        for metric in EMPIRICAL_METRICS:
            values = [run[metric] for run in group if run.get(metric) is not None]
            if values:
                row[metric] = dict(zip(("mean", "std", "n"), over_seeds(values)))
        rows.append(row)
    base = data.get("base_config", {})
    return {
        "path": str(path),
        "sweep": key,
        "dataset": base.get("dataset"),
        "imbalance": base.get("imbalance"),
        "loss": base.get("loss"),
        "tau": base.get("tau"),
        "epochs": base.get("epochs"),
        "runs": len(data.get("runs", [])),
        "finished": len(runs),
        "rows": rows,
        "pictures": sorted(str(p) for p in path.parent.glob("*.png")),
    }


def empirical_claims(claims: dict[str, Claim]) -> tuple:
    return tuple(claim_id for claim_id, c in claims.items() if "empirical" in c.routes)
