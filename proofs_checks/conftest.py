"""After `pytest proofs_checks`, list every claim checked with its verdict and measured figures."""

from proofs_checks.registry import CLAIMS, MEASURED, describe


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section("claims: verdicts and measured figures")
    for claim_id, result in sorted(MEASURED.items(), key=lambda item: (item[0][0], int(item[0][1:]))):
        entry = CLAIMS[claim_id]
        finding = {
            "fails": "  [finding: the claim is false]",
            "inconclusive": "  [inconclusive: a route did not settle, nothing judged]",
        }.get(entry.expect, "")
        terminalreporter.write_line(f"{claim_id} {entry.statement}{finding}")
        terminalreporter.write_line(f"    {describe(result)}")
        pins = f"{len(result.agreements) - len(result.broken)}/{len(result.agreements)} route agreements hold"
        terminalreporter.write_line(f"    {pins}" if result.agreements else "    no route agreement pinned (one-sided)")
