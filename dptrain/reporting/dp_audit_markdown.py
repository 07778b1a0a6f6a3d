"""The audits of the DP implementation in the report and on the console: bound beside claim.

A renderer only: the bounds and their verdicts were decided in `dptrain.audit.dp_audits`.
"""

from __future__ import annotations

import math

from dptrain.audit.dp_audits import DPAuditRow
from dptrain.reporting.markdown import number, table
from dptrain.reporting.results import RunReport

SECONDARY_NAMES = {
    "reachable": "reachable with these canaries",
    "gaussian_dp": "Gaussian-DP estimate",
    "clopper_pearson": "Clopper–Pearson (independent trials)",
    "one_run": "one-run bound",
    "fdp_one_run": "f-DP one-run (Gaussian curve)",
    "fdp_one_run_mu": "its μ ≥",
}


def _epsilon(value: float | None) -> str:
    if value is None:
        return "—"
    return "∞" if math.isinf(value) else number(value, 2)


def verdict(row: DPAuditRow) -> str:
    """What the bound says about the claim, in words."""
    if not row.applicable:
        return f"not applicable: {row.reason}"
    if row.violates_claim:
        return "**refutes the claimed ε**: the implementation leaks more than accounted"
    return "consistent with the claimed ε"


def dp_audit_section(report: RunReport) -> str:
    """``## Audits of the DP implementation``: one row per audit, then what each did."""
    rows = [
        [
            row.name,
            _epsilon(row.epsilon_accountant),
            (
                f"ε ≥ {_epsilon(row.epsilon_lower_bound)} ({row.confidence:.0%})"
                if row.applicable
                else "—"
            ),
            ", ".join(
                f"{SECONDARY_NAMES[key]} {_epsilon(value)}"
                for key, value in row.secondary.items()
                if key in SECONDARY_NAMES
            )
            or "—",
            verdict(row),
        ]
        for row in report.dp_audits
    ]
    methods = "\n".join(
        f"- **{row.name}**: {row.method}"
        + (
            " (" + ", ".join(f"{key} {value}" for key, value in row.counts.items()) + ")"
            if row.counts
            else ""
        )
        + f"; {row.wall_seconds:.0f} s."
        for row in report.dp_audits
    )
    return (
        "## Audits of the DP implementation\n\n"
        + table(
            ["audit", "accountant's ε", "empirical lower bound", "other bounds", "verdict"],
            rows,
        )
        + "\n\n"
        + methods
        + "\n\nEach audit trains one extra model on the training split with this run's recipe and "
        "worst-case canaries, and bounds ε from below at the stated confidence. A lower bound "
        "above the accountant's ε would show a broken implementation (noise, clipping or "
        "sampling); one below it is consistent with the accounting but proves nothing more: "
        'under Poisson subsampling these bounds are loose. The white-box "reachable" figure is '
        "what the optimal test reaches about half the time with that many canaries under the "
        "planned σ, q and T: a bound near it means the audit did all its canaries allow, and "
        "only more canaries (`audit.whitebox_runs`, `runs_for_half_epsilon` models reach half "
        "the accountant's ε) raise it. The Gaussian-DP figure assumes a Gaussian trade-off curve "
        "and is an estimate, not a bound. The f-DP one-run figure (Mahloujifar et al. 2024) "
        "tests the one-run guesses against Gaussian trade-off curves: its μ is a lower bound "
        "(no μ'-GDP with a smaller μ' fits the guesses), and its ε is that curve's ε at δ, an "
        "(ε, δ) bound only if the mechanism's curve is Gaussian."
    )


def dp_audit_console_lines(report: RunReport) -> list[str]:
    """One console line per DP audit: bound, claim, verdict."""
    lines = []
    for row in report.dp_audits:
        if row.applicable:
            lines.append(
                f"{row.name:<12} ε ≥ {_epsilon(row.epsilon_lower_bound)} "
                f"({row.confidence:.0%}) against the accountant's ε = "
                f"{_epsilon(row.epsilon_accountant)}: {verdict(row).replace('**', '')}"
            )
        else:
            lines.append(f"{row.name:<12} {verdict(row)}")
    return lines
