"""What the attacker learns beyond membership, as ``report.md`` sections.

Memorisation or generalisation, attribute inference, what a partial-knowledge attacker achieves,
and harm-weighted exposure.

Renderers only: every figure and interval was decided in `dptrain.audit.memorisation`,
`dptrain.audit.attribute`, `dptrain.audit.knowledge` and `dptrain.audit.harm`.
"""

from __future__ import annotations

import numpy as np

from dptrain.audit.result import AuditResult
from dptrain.reporting.markdown import number, percent, table, threshold_index


def memorisation_section(audit: AuditResult) -> str:
    """Exposed patients split into memorised (membership leaks) and predictable from the population.

    Raises:
        ValueError: If the audit has no memorisation split.
    """
    split = audit.memorisation
    if split is None:
        raise ValueError("this audit result has no memorisation split")
    cohort, tau = split.cohort, split.predictable_confidence
    if not len(cohort.thresholds):
        return "## Memorisation or generalisation\n\nNo risk thresholds are configured."
    level = f"{split.confidence:.0%}"
    floor_header = f"noise floor of memorised: mean ({split.level:.0%} of re-labellings below)"
    by_threshold = [
        [
            f"AUC > {threshold:g}",
            int(cohort.exposed[index]),
            _share_cell(cohort.memorised[index], cohort.memorised_interval[index], cohort),
            _memorised_floor_cell(cohort, index),
            _share_cell(
                cohort.predictable_exposed[index],
                cohort.predictable_exposed_interval[index],
                cohort,
            ),
        ]
        for index, threshold in enumerate(cohort.thresholds)
    ]
    first = 0
    threshold = cohort.thresholds[first]
    by_subgroup = [
        [
            row.attribute,
            row.value,
            row.n_patients,
            _share_cell(row.predictable, row.predictable_interval, row),
            number(row.median_out_confidence),
            int(row.exposed[first]),
            _share_cell(row.memorised[first], row.memorised_interval[first], row),
            _memorised_floor_cell(row, first),
            _share_cell(
                row.predictable_exposed[first], row.predictable_exposed_interval[first], row
            ),
            "n/a" if row.fdr_memorised is None else f"{row.fdr_memorised} / {row.fdr_predictable}",
        ]
        for row in split.rows
    ]
    return (
        "## Memorisation or generalisation\n\n"
        "A high patient AUC is a membership leak when the models learned the patient "
        "specifically. Beside it stands the population baseline: the mean probability p̄_OUT "
        "that the models which never saw the patient give the patient's true label ("
        + (
            "of the patient's most exposed record"
            if split.aggregation == "max"
            else "mean over the patient's records"
        )
        + f"). An exposed patient with p̄_OUT ≥ {tau:g} is **predictable from the population**: "
        "any model predicts their label, so a confident score under the models that trained on "
        "them is the population's pattern, and they are **not counted as membership leaks**. An "
        f"exposed patient with p̄_OUT < {tau:g} is **memorised**: the models without them get "
        "them wrong or unsure, and the models with them learned them. Shares are of all the "
        f"row's patients with {level} Clopper–Pearson intervals; the floor is the memorised count "
        "on this run's signals with the membership effect removed and the model pairs "
        f"re-labelled ({split.repeats} times): what chance gives at K = {audit.num_models}.\n\n"
        + _memorisation_verdict(split)
        + "\n\n"
        + table(
            [
                "all patients",
                "exposed",
                "memorised (leaks)",
                floor_header,
                "predictable from the population (not leaks)",
            ],
            by_threshold,
        )
        + f"\n\nBy subgroup, exposed meaning patient AUC > {threshold:g}:\n\n"
        + table(
            [
                "attribute",
                "value",
                "patients",
                f"predictable (p̄_OUT ≥ {tau:g}), exposed or not",
                "median p̄_OUT",
                "exposed",
                "memorised",
                "floor of memorised",
                "predictable exposed",
                f"FDR {audit.exposure.rate:.0%} list: memorised / predictable",
            ],
            by_subgroup,
        )
    )


def _memorisation_verdict(split) -> str:
    cohort = split.cohort
    threshold, exposed = cohort.thresholds[0], int(cohort.exposed[0])
    memorised, predictable = int(cohort.memorised[0]), int(cohort.predictable_exposed[0])
    upper = cohort.memorised_floor_upper[0]
    chance = (
        f"within its noise floor ({upper:.0f}): no evidence of memorisation beyond chance at this K"
        if memorised <= upper
        else f"above its noise floor ({upper:.0f})"
    )
    listed = ""
    if cohort.fdr_memorised is not None:
        listed = (
            f" Of the patients on the FDR list, {cohort.fdr_memorised} are memorised and "
            f"{cohort.fdr_predictable} predictable from the population."
        )
    return (
        f"**{memorised} of the {exposed} patients with AUC > {threshold:g} are memorised**, "
        f"{chance}; {predictable} are predictable from the population." + listed
    )


def _memorised_floor_cell(row, index: int) -> str:
    mean, upper = float(row.memorised_floor[index]), float(row.memorised_floor_upper[index])
    return "n/a" if np.isnan(mean) else f"{mean:.1f} ({upper:.0f})"


def _share_cell(count: float, interval: np.ndarray, row) -> str:
    if not row.n_patients:
        return f"{int(count)}"
    return (
        f"{int(count)} ({percent(count / row.n_patients)} [{percent(interval[0])}, "
        f"{percent(interval[1])}])"
    )


def attribute_inference_section(audit: AuditResult) -> str:
    """The attribute-inference attacker's accuracy on members vs non-members, per attribute."""
    results = audit.attribute_inference
    first = results[0]
    rows = []
    for result in results:
        for row in result.rows:
            rows.append(
                [
                    result.attribute,
                    "all patients" if row.true_value == "all" else f"= {row.true_value}",
                    row.n_patients,
                    _interval_cell(row.member_accuracy, row.member_interval),
                    _interval_cell(row.nonmember_accuracy, row.nonmember_interval),
                    _interval_cell(row.advantage, row.advantage_interval),
                    number(result.majority_accuracy) if row.true_value == "all" else "",
                ]
            )
    verdicts = []
    for result in results:
        overall = result.overall
        lower, upper = overall.advantage_interval
        if lower > 0:
            verdict = "the models reveal it for their own patients more than for others"
        elif upper < 0:
            verdict = "the attacker does worse on members (no evidence of a leak)"
        else:
            verdict = "no detectable member advantage (the interval includes 0)"
        verdicts.append(
            f"- **{result.attribute}**: member advantage {number(overall.advantage)} "
            f"[{number(lower)}, {number(upper)}]: {verdict}."
        )
    return (
        "## Attribute inference\n\n"
        f"Attacker: {first.attacker}. Members are the positive class: each model's accuracy on "
        "the patients it trained on is compared with its accuracy on those it did not, and in "
        "every complementary model pair each patient is a member of one model and a non-member "
        "of the other, so the member advantage is a paired difference per patient, averaged "
        "over patients. Accuracy on non-members is what the population's correlations alone "
        "give an attacker; the advantage is what training on the patient adds. Intervals: "
        f"{first.confidence:.0%} percentile bootstrap over patients ({first.num_bootstrap} "
        "resamples). The majority guess is the accuracy of always guessing the commonest value, "
        "without any model.\n\n"
        + "\n".join(verdicts)
        + "\n\n"
        + table(
            [
                "attribute",
                "patients with value",
                "patients",
                "accuracy on members",
                "accuracy on non-members",
                "member advantage",
                "majority guess",
            ],
            rows,
        )
    )


def knowledge_section(audit: AuditResult) -> str:
    """Exposure against each partial-knowledge attacker, for the cohort and per subgroup."""
    curve = audit.knowledge
    index = threshold_index(curve.thresholds, 0.8)
    index = 0 if index is None else index
    limit = f"{curve.thresholds[index]:g}" if len(curve.thresholds) else "–"
    overall = [
        [
            f"{result.level}" + (" (the audit's attacker)" if not result.imputed_features else ""),
            ", ".join(result.known_groups) or "–",
            result.imputed_features,
            number(result.median_auc),
            number(result.p99_auc),
            number(result.max_auc),
            _knowledge_share(result.cohort, index),
            number(float(result.cohort.exposed_floor[index]), 1) if limit != "–" else "–",
        ]
        for result in curve.levels
    ]
    by_subgroup = [
        [
            f"{row.attribute} = {row.value}",
            row.n_patients,
            *[_knowledge_share(result.rows[position], index) for result in curve.levels],
        ]
        for position, row in enumerate(curve.levels[0].rows)
        if position > 0
    ]
    return (
        "## What the attacker knows\n\n"
        "The audit's attacker holds each patient's whole record and label. A real one usually "
        "knows less: each level below names what the attacker knows (feature groups of a table; "
        "regions of an image or a signal: a centre crop, a thumbnail, leads, a time window), "
        "and the record they query every audit model with has the rest imputed "
        f"({curve.imputation}). Each level's per-patient AUC is computed exactly as the full "
        f"audit's. Exposed: patients with AUC > {limit}, share with its {curve.confidence:.0%} "
        f"Clopper–Pearson interval; floor: mean count over {curve.repeats} re-labellings without "
        "a membership effect.\n\n"
        + table(
            [
                "attacker knows",
                "known",
                "imputed inputs",
                "median patient AUC",
                "p99",
                "max",
                f"exposed (AUC > {limit})",
                "floor",
            ],
            overall,
        )
        + "\n\n"
        + (
            table(
                ["subgroup", "patients", *[f"exposed, knows {r.level}" for r in curve.levels]],
                by_subgroup,
            )
            if by_subgroup
            else "The data set has no subgroup attributes: no per-subgroup curve."
        )
    )


def _knowledge_share(row, index: int) -> str:
    if not len(row.exposed) or not row.n_patients:
        return "–"
    share = row.exposed[index] / row.n_patients
    low, high = row.exposed_interval[index]
    return f"{int(row.exposed[index])} ({percent(share)} [{percent(low)}, {percent(high)}])"


def harm_section(audit: AuditResult) -> str:
    """Subgroups ranked by severity × exposed share, and the sensitive groups in the tail."""
    ranking = audit.harm
    tail = ranking.tail_groups
    if ranking.exposed_patients == 0:
        verdict = f"No patient has AUC > {ranking.threshold:g}: no subgroup carries exposure."
    elif tail:
        verdict = "Sensitive groups carrying the exposed tail (exposed share detectably above " + (
            f"the cohort's {percent(ranking.cohort_share)}: its interval's lower end is above "
            "it): "
            + "; ".join(
                f"**{row.attribute} = {row.value}** ({row.severity}: "
                f"{percent(row.share_of_exposed)} of exposed vs {percent(row.share_of_cohort)} "
                "of patients)"
                for row in tail
            )
            + "."
        )
    else:
        verdict = (
            "No sensitive group (rated medium or high) is detectably over-represented among the "
            f"exposed patients (none has an exposed share whose interval lies above the cohort's "
            f"{percent(ranking.cohort_share)})."
        )
    rows = [
        [
            rank,
            f"{row.attribute} = {row.value}",
            row.severity if row.rated else "low (unrated)",
            row.n_patients,
            _interval_cell(row.exposed / row.n_patients, row.exposed_interval),
            _interval_cell(row.weighted, row.weighted_interval),
            percent(row.share_of_exposed) if ranking.exposed_patients else "–",
        ]
        for rank, row in enumerate(ranking.rows, start=1)
    ]
    return (
        "## Harm-weighted exposure\n\n"
        "Some leaks harm more than others: the data config rates subgroups low, medium or high "
        "(weights 1, 2, 3; unrated ones count as low). Subgroups are ranked by weight × exposed "
        f"share (patients with AUC > {ranking.threshold:g}; {ranking.confidence:.0%} "
        "Clopper–Pearson interval, scaled by the weight). Only subgroup labels are shown.\n\n"
        + verdict
        + "\n\n"
        + table(
            [
                "rank",
                "subgroup",
                "severity",
                "patients",
                "exposed share",
                "severity × share",
                "share of exposed",
            ],
            rows,
        )
        + _patient_harm_table(ranking)
    )


def _patient_harm_table(ranking) -> str:
    """The FDR-exposed patients ranked by severity × advantage, by rank only (ids in the CSV)."""
    if ranking.patient_rank is None or not ranking.top_patients:
        return ""
    listed = int((ranking.patient_rank > 0).sum())
    rows = [
        [
            patient.rank,
            patient.severity,
            patient.rated_as or "–",
            number(patient.auc),
            number(patient.auc_lower),
            number(patient.score),
        ]
        for patient in ranking.top_patients
    ]
    return (
        f"\n\n**Exposed patients by harm** ({listed} on the FDR-controlled exposure list; the "
        f"first {len(rows)} shown): severity weight × attack advantage's lower bound "
        "(2 · AUC lower bound − 1). Ids are in `patient_risk.csv` (column `harm_rank`), never in "
        "this report.\n\n"
        + table(
            ["harm rank", "severity", "rated as", "AUC", "AUC lower bound", "severity × advantage"],
            rows,
        )
    )


def _interval_cell(value: float, interval: np.ndarray) -> str:
    return f"{number(value)} [{number(float(interval[0]))}, {number(float(interval[1]))}]"
