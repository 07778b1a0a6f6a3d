"""``report.md``: the run in words and tables a clinician or a reviewer can read.

It never contains a feature value: counts, metrics, privacy parameters and patient ids as given.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dptrain.reporting.results import RunReport
from dptrain.training.evaluate import METRIC_NAMES, UtilityMetrics, UtilityReport


def number(value: float | None, digits: int = 3) -> str:
    """A number for a table: fixed digits, ``∞`` and ``n/a`` spelled out.

    Example:
        >>> number(0.12345), number(float("inf")), number(float("nan")), number(2.0e-5)
        ('0.123', '∞', 'n/a', '2e-05')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if isinstance(value, float) and value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.0e}"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal, ``n/a`` when undefined."""
    return "n/a" if value is None or np.isnan(value) else f"{value:.1%}"


def threshold_index(thresholds: np.ndarray, value: float) -> int | None:
    """Position of ``value`` among ``thresholds`` (within float tolerance), or None."""
    matches = np.flatnonzero(np.isclose(thresholds, value))
    return int(matches[0]) if len(matches) else None


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def privacy_section(report: RunReport) -> str:
    """The privacy budget of the deployed model, with what ε protects spelled out."""
    spend = report.privacy
    if not spend.private:
        return (
            "## Privacy budget\n\nNon-private baseline (`privacy=none`): no clipping, no noise, "
            "ε = ∞. Same data, model and optimisation recipe as the private runs."
        )
    k = spend.max_records_per_patient
    rows = [
        ["ε spent", f"{number(spend.epsilon)} ({spend.accountant.upper()} accountant)"],
        ["ε (RDP, for comparison)", number(spend.epsilon_rdp)],
        ["ε target", number(spend.epsilon_target)],
        ["δ", f"{spend.delta:g} (1/N = {1 / spend.n_units:.2g})"],
        ["noise multiplier σ", number(spend.noise_multiplier)],
        ["sampling rate q (Poisson)", number(spend.sample_rate, 4)],
        ["steps / epochs", f"{spend.steps} / {spend.epochs}"],
        ["clipping norm C", number(spend.max_grad_norm)],
        ["privacy unit", f"{spend.unit} (N = {spend.n_units} training {spend.unit}s)"],
    ]
    if spend.unit == "patient" and k == 1:
        unit_note = (
            "ε is per **patient**. Every training patient has one record, so patient-level "
            "DP-SGD ran with the σ, q and steps of record-level DP-SGD: the two are the same "
            "guarantee here."
        )
    elif spend.unit == "patient":
        unit_note = (
            "ε is per **patient**: patients were Poisson-sampled and each patient's summed "
            f"gradient clipped as one, so ε covers all of a patient's records (up to {k} here)."
        )
    elif k > 1:
        unit_note = (
            f"ε is per **record**. Some patients have up to {k} records; the guarantee for such a "
            f"patient is weaker (group privacy over {k} records, see the audit's patient-level "
            "bound)."
        )
    else:
        unit_note = (
            "Every patient has one record, so the record-level ε is also the patient-level ε."
        )
    return (
        "## Privacy budget\n\n"
        + table(["", "value"], rows)
        + f"\n\n{unit_note} Preprocessing statistics (medians, means, standard deviations) and "
        "class weights are computed from the training split without noise and are not covered by ε."
    )


def training_section(report: RunReport) -> str:
    """Which baseline ran: fixed epochs (the last deployed) or early stopping, and what ε covers.

    Empty for results written before the training facts were recorded.
    """
    training = report.training
    if "early_stopping" not in training:
        return ""
    run, kept = training["epochs_run"], training["kept_epoch"]
    if not training["early_stopping"]:
        return (
            f"## Training\n\nFixed epochs: all {run} epochs ran and the last one is deployed; "
            "no patients were held out to choose it (`train.early_stopping=true` keeps the "
            "epoch that scores best on validation patients outside the training data)."
        )
    metric = training["validation_metric"]
    best = "lowest validation loss" if metric == "loss" else "highest validation AUROC"
    lines = [
        f"Early stopping: the deployed model is epoch **{kept} of {run}** run, the epoch with "
        f"the {best} ({number(training['validation_score'])}) on "
        f"{training['validation_patients']} validation patients (`train.validation_fraction` = "
        f"{training['validation_fraction']:g} of the training patients, drawn by patient and "
        "stratified by label).",
        f"{training['validation_note'][0].upper()}{training['validation_note'][1:]}.",
    ]
    if report.privacy.private:
        accounted = report.history[kept - 1].epsilon if 0 < kept <= len(report.history) else None
        lines.append(
            f"ε = {number(report.privacy.epsilon)} covers {training['epsilon_covers']}"
            + (
                f" (ε accounted up to epoch {kept} alone, {number(accounted)}, is not the "
                "guarantee of a model chosen after all epochs)."
                if accounted is not None and kept < run
                else "."
            )
        )
    if report.audit is not None:
        models = report.audit.model_privacy
        bound = (
            f"; their ε, and so the audit's DP bounds, is that of {kept} epochs: "
            f"{number(models.epsilon)}"
            if models.private
            else ""
        )
        lines.append(
            f"The audit's models train for exactly {kept} epochs on their halves of the patients "
            f"(the kept epoch fixed, no validation split of their own){bound}."
        )
    return "## Training\n\n" + " ".join(lines)


def utility_section(report: RunReport) -> str:
    """Utility on the held-out patients, overall and per subgroup, with intervals and counts.

    Every value carries its bootstrap interval; a value that cannot be computed says why instead
    of showing NaN.
    """
    utility = report.utility
    overall = utility.overall
    header = ["patients", "records", *METRIC_NAMES]
    parts = [
        "## Utility on held-out patients\n",
        f"Each value is followed by its {utility.confidence:.0%} interval "
        f"({utility.interval_method}, {utility.n_resamples} resamples).\n",
        table(["", *header], [["all", *_metric_cells(overall)]]),
    ]
    parts += [f"\n- {note}" for note in utility.notes]
    if overall.auroc_per_class:
        names = report.data["cohort"].get("label_names") or [
            str(j) for j in range(len(overall.auroc_per_class))
        ]
        kind = "label" if report.data["cohort"].get("task") == "multilabel" else "class (vs rest)"
        parts += [
            f"\n**AUROC per {kind}**\n",
            table(
                [kind, "AUROC"],
                [
                    [name, _value_or_reason(value, "one value only among the test records")]
                    for name, value in zip(names, overall.auroc_per_class)
                ],
            ),
        ]
    for attribute, by_value in utility.subgroups.items():
        rows = [[value, *_metric_cells(metrics)] for value, metrics in by_value.items()]
        parts += [f"\n**By {attribute}**\n", table([attribute, *header], rows)]
    return "\n".join(parts)


def utility_console_lines(utility: UtilityReport) -> list[str]:
    """The console's utility line (values with intervals) and the small-test-split warning.

    Example:
        >>> m = UtilityMetrics(0.8, 0.6, 0.7, 0.65, n_patients=40, n_records=50,
        ...     auroc_ci=(0.7, 0.9))
        >>> utility_console_lines(UtilityReport(overall=m, subgroups={}))[0][:48]
        'utility      AUROC = 0.800 [0.700, 0.900], AUPRC'
    """
    overall = utility.overall
    names = {"auroc": "AUROC", "auprc": "AUPRC", "accuracy": "accuracy"}
    names["balanced_accuracy"] = "balanced accuracy"
    cells = [
        f"{label} = {cell}" if cell[0].isdigit() else f"{label} {cell}"
        for label, cell in ((names[name], metric_cell(overall, name)) for name in METRIC_NAMES)
    ]
    lines = [
        f"utility      {', '.join(cells)} ({utility.confidence:.0%} intervals over "
        f"{overall.n_patients} test patients)"
    ]
    lines += [
        f"warning      {note.removeprefix('WARNING:').strip()}"
        for note in utility.notes
        if note.startswith("WARNING")
    ]
    return lines


def data_section(report: RunReport) -> str:
    """Sizes of the cohort and its patient-level split."""
    rows = [
        [
            name,
            s["n_patients"],
            s["n_records"],
            s["max_records_per_patient"],
            ", ".join(f"{label}: {count}" for label, count in s["label_counts"].items()),
        ]
        for name, s in report.data.items()
    ]
    cohort = report.data["cohort"]
    facts = ["Splits are drawn over patients: no patient has records on both sides."]
    if cohort.get("record_attributes"):
        facts.append(
            "Record-level subgroups (" + ", ".join(cohort["record_attributes"]) + ") vary between "
            "a patient's records; their utility rows count the records with that value."
        )
    if cohort.get("task") == "multilabel":
        facts.append(
            "Multi-label task: utility is macro-averaged over labels, and the audit's membership "
            "signal for a record is the mean logit-scaled confidence over its positive labels "
            "(over all labels for a record with none)."
        )
    facts += cohort.get("notes", [])
    return (
        "## Data\n\n"
        + table(["", "patients", "records", "max records/patient", "labels"], rows)
        + "\n\n"
        + "\n".join(f"- {fact}" for fact in facts)
    )


def run_section(report: RunReport) -> str:
    """Timings and library versions."""
    timing_rows = [
        [name.removesuffix("_seconds"), f"{seconds:.1f} s"]
        for name, seconds in report.timings.items()
    ]
    versions = ", ".join(f"{name} {ver}" for name, ver in report.versions.items())
    training = report.training
    how = ""
    if training:
        frontend = f", fixed front end {training['frontend']}" if training.get("frontend") else ""
        how = (
            f"\n\nTrained on {training['device']} with {training['intra_op_threads']} intra-op "
            f"thread(s); {training['model_parameters']:,} trainable parameters; Opacus "
            f"grad_sample_mode {training['grad_sample_mode']}{frontend}."
        )
    return (
        "## Run\n\n"
        + table(["stage", "wall time"], timing_rows)
        + how
        + f"\n\nVersions: {versions}."
    )


def render_report(
    report: RunReport, *, audit_sections: list[str], dp_audit_sections: list[str] = ()
) -> str:
    """The whole ``report.md``: with an audit, its headline and subgroup tables come first.

    The audits of the DP implementation follow the privacy budget they test.
    """
    title = f"# dptrain report: {report.data['cohort']['name']}"
    sections = [
        title,
        *audit_sections[:2],
        privacy_section(report),
        *dp_audit_sections,
        *([section] if (section := training_section(report)) else []),
        utility_section(report),
        *audit_sections[2:],
        data_section(report),
        run_section(report),
    ]
    return "\n\n".join(sections) + "\n"


def _metric_cells(metrics: UtilityMetrics) -> list[str]:
    """Counts, then each metric as ``value [low, high]`` or the reason it has no value."""
    return [str(metrics.n_patients), str(metrics.n_records)] + [
        metric_cell(metrics, name) for name in METRIC_NAMES
    ]


def metric_cell(metrics: UtilityMetrics, name: str) -> str:
    """One metric with its interval, e.g. ``0.812 [0.760, 0.861]``; never NaN.

    Example:
        >>> m = UtilityMetrics(float("nan"), 0.5, 0.75, 0.5, n_patients=4, n_records=4,
        ...     accuracy_ci=(0.5, 1.0), not_computable={"auroc": "only class '0'"})
        >>> metric_cell(m, "auroc"), metric_cell(m, "accuracy")
        ("not computable: only class '0'", '0.750 [0.500, 1.000]')
    """
    value = getattr(metrics, name)
    reasons = metrics.not_computable
    if value is None or math.isnan(value):
        return f"not computable: {reasons.get(name, 'undefined for these records')}"
    low, high = getattr(metrics, f"{name}_ci", (math.nan, math.nan))
    if math.isnan(low):
        reason = reasons.get(f"{name}_ci")
        return f"{number(value)} (no interval: {reason})" if reason else number(value)
    return f"{number(value)} [{number(low)}, {number(high)}]"


def _value_or_reason(value: float, reason: str) -> str:
    return f"not computable: {reason}" if math.isnan(value) else number(value)
