"""After `pytest proofs_checks`, list every claim checked with its verdict and measured figures."""

from proofs_checks.registry import CLAIMS, MEASURED, describe


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section("claims: verdicts and measured figures")
    for claim_id, result in sorted(MEASURED.items(), key=lambda item: (item[0][0], int(item[0][1:]))):
        entry = CLAIMS[claim_id]
        finding = "" if entry.expect == "holds" else "  [finding: the claim is false]"
        terminalreporter.write_line(f"{claim_id} {entry.statement}{finding}")
        terminalreporter.write_line(f"    {describe(result)}")
