"""The audit's part of ``report.md``, its headline metrics and its console lines.

The report opens with one table that puts the privacy budget (what the DP guarantee allows an
attacker) beside the measured leakage (what attacks achieved), aggregate and per patient, and
beside each measured figure its noise floor: the same figure on the run's own signals with the
membership effect removed and the model pairs re-labelled. A per-patient figure never appears
beside the DP bound without its floor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dptrain.audit.result import VIOLATION_EVIDENCE, AttackResult, AuditResult
from dptrain.audit.shrinkage import RiskDeconvolution
from dptrain.audit.subgroups import SubgroupRisk
from dptrain.privacy.accounting import PrivacySpend
from dptrain.reporting.attacker_markdown import (
    attribute_inference_section,
    harm_section,
    knowledge_section,
    memorisation_section,
)
from dptrain.reporting.markdown import number, percent, table, threshold_index
from dptrain.reporting.results import RunReport


def audit_console_lines(report: RunReport) -> list[str]:
    """Three lines: what the budget allows, what the audit measured, what it means per patient."""
    audit, spend = report.audit, report.privacy
    bounds, patients = audit.bounds, audit.patients
    best = _attack(audit, audit.best_attack)
    high = threshold_index(patients.thresholds, 0.9)
    if spend.private and spend.unit == "patient":
        budget = (
            f"budget       ε = {spend.epsilon:.2f} per patient allows attack AUC ≤ "
            f"{bounds.patient.max_auc:.3f} per patient, whatever its number of records"
        )
    elif spend.private:
        budget = (
            f"budget       ε = {spend.epsilon:.2f} allows attack AUC ≤ {bounds.record.max_auc:.3f} "
            f"per record, ≤ {bounds.patient.max_auc:.3f} per patient "
            f"(k ≤ {bounds.group_size} records)"
        )
    else:
        budget = (
            "budget       none: the non-private model's leakage is not limited by any guarantee"
        )
    exposed = ""
    if high is not None:
        exposed = (
            f", {int(patients.exposed[high])} patients above AUC 0.9 "
            f"({int(patients.exposed_lower_bound[high])} on the lower bound)"
        )
    leakage = (
        f"leakage      {audit.best_attack} AUC = {best.metrics.auc:.3f}, TPR@"
        f"{best.metrics.fpr_targets[0]:.1%} FPR = {best.metrics.tpr_at_fpr[0]:.3f}, "
        f"ε ≥ {audit.epsilon_lower_bound.epsilon:.2f}"
        + (
            f" (2ε = {2 * audit.bounds.patient_epsilon:.2f} allowed: IN/OUT swap a patient)"
            if audit.model_privacy.private
            else ""
        )
        + "; patient AUC p99 = "
        f"{patients.p99_auc:.3f}, max = {patients.max_auc:.3f}{exposed} (K = {audit.num_models})"
    )
    floor, shares = audit.null_floor, audit.deconvolution
    first = 0 if len(shares.thresholds) else None
    estimate = ""
    if first is not None:
        estimate = (
            f"; est. share true AUC > {shares.thresholds[first]:g} = "
            f"{percent(shares.share_above[first])} [{percent(shares.share_lower[first])}, "
            f"{percent(shares.share_upper[first])}]"
        )
    per_patient = (
        f"patients     noise floor p99 = {floor.band(floor.p99_auc)[0]:.3f}, max = "
        f"{floor.band(floor.max_auc)[0]:.3f}; {audit.exposure.n_exposed} detectably exposed at "
        f"FDR {audit.exposure.rate:.0%}{estimate}; ranking reliability ρ = "
        f"{audit.reliability.full_rho:.2f}"
    )
    return [budget, leakage, per_patient]


def audit_sections(report: RunReport, *, images: dict[str, Path]) -> list[str]:
    """The headline table (first in the report), then subgroups, attacks, figures and notes."""
    audit = report.audit
    return [
        headline_section(report),
        subgroup_section(audit),
        *([memorisation_section(audit)] if audit.memorisation is not None else []),
        *([attribute_inference_section(audit)] if audit.attribute_inference else []),
        *([knowledge_section(audit)] if audit.knowledge is not None else []),
        *([harm_section(audit)] if audit.harm is not None else []),
        attacks_section(audit),
        figures_section(images),
        notes_section(report),
    ]


def headline_section(report: RunReport) -> str:
    """Budget beside measurement, aggregate and per patient."""
    audit, spend = report.audit, report.privacy
    bounds, patients, best = audit.bounds, audit.patients, _attack(audit, audit.best_attack)
    confidence = f"{audit.patient_risk.confidence:.0%}"
    # Membership is per patient: with several records per patient the patient-level bound applies.
    for_patients = f" (k = {bounds.group_size} records)" if bounds.group_size > 1 else ""
    if spend.unit == "patient":
        for_patients = " (per patient)"
    floor, shares, exposure = audit.null_floor, audit.deconvolution, audit.exposure
    rows = [
        [*_budget_row(spend, audit, confidence), "—"],
        *(
            [
                f"ε, {row.name} audit of the DP implementation",
                f"{number(spend.epsilon, 2)} (accountant)" if spend.private else "∞ (no DP)",
                f"≥ {number(row.epsilon_lower_bound, 2)} ({row.confidence:.0%}; "
                + ("refutes the claim" if row.violates_claim else "consistent")
                + ")",
                "—",
            ]
            for row in report.dp_audits
            if row.applicable
        ),
        [
            "attack AUC, all model-patient pairs",
            _allowed(bounds.patient, spend.private) + for_patients,
            f"{number(best.metrics.auc)} [{number(best.auc_interval.lower)}, "
            f"{number(best.auc_interval.upper)}] ({best.name})",
            _floor(floor, floor.attack_auc),
        ],
        [
            "attack AUC, per patient",
            _allowed(bounds.patient, spend.private) + for_patients,
            f"median {number(patients.median_auc)}, 99th percentile {number(patients.p99_auc)}, "
            f"max {number(patients.max_auc)} ± {number(patients.max_auc_standard_error, 2)}",
            f"median {_floor(floor, floor.median_auc)}, 99th percentile "
            f"{_floor(floor, floor.p99_auc)}, max {_floor(floor, floor.max_auc)}",
        ],
    ]
    for rate, tpr in zip(best.metrics.fpr_targets, best.metrics.tpr_at_fpr):
        allowed = number(float(bounds.patient.max_tpr_at(rate))) if spend.private else "1"
        rows.append([f"TPR at {rate:.1%} FPR", allowed, number(float(tpr)), "—"])
    for index, (threshold, count, sure) in enumerate(
        zip(patients.thresholds, patients.exposed, patients.exposed_lower_bound)
    ):
        excluded = spend.private and bounds.patient.max_auc <= threshold
        mean, upper = floor.band(floor.share_above[:, index])
        rows.append(
            [
                f"patients with AUC > {threshold:g}",
                "none" if excluded else "not excluded",
                f"{int(count)} of {patients.n_patients} ({int(sure)} on the {confidence} "
                "lower bound)",
                f"{_count(mean, patients.n_patients)} ({_count(upper, patients.n_patients)})",
            ]
        )
    for index, threshold in enumerate(shares.thresholds):
        excluded = spend.private and bounds.patient.max_auc <= threshold
        rows.append(
            [
                f"estimated share with true AUC > {threshold:g} (empirical Bayes)",
                "0" if excluded else "not excluded",
                f"{percent(shares.share_above[index])} [{percent(shares.share_lower[index])}, "
                f"{percent(shares.share_upper[index])}]",
                "0 (no membership effect)",
            ]
        )
    rows.append(
        [
            f"patients detectably exposed (FDR {exposure.rate:.0%})",
            "—",
            f"{exposure.n_exposed} of {exposure.n_tested}",
            f"list empty in {floor.fdr_list_empty_share:.0%} of {floor.repeats} re-labellings",
        ]
    )
    header = [
        "",
        "allowed by the DP guarantee",
        f"measured (audit, K = {audit.num_models})",
        f"noise floor: mean ({floor.level:.0%} of re-labellings below)",
    ]
    return (
        "## Privacy budget vs measured leakage\n\n"
        + table(header, rows)
        + "\n\nAllowed values come from the audit models' whole privacy profile δ(ε) (PLD "
        "accounting of σ, q and steps); the single (ε, δ) pair alone would allow an AUC of "
        f"{number(bounds.single_pair.max_auc)}. Members are the positive class throughout. "
        "The noise floor is each figure recomputed on this run's signals with the membership "
        f"effect removed and the model pairs re-labelled at random ({floor.repeats} times): what "
        f"K = {audit.num_models} models and {patients.n_patients} patients show by chance. A "
        "measured figure near its floor is not evidence of leakage."
        + "\n\n"
        + reliability_sentence(audit)
        + "".join(f"\n\n> **Warning.** {message}" for message in audit.warnings)
    )


def reliability_sentence(audit: AuditResult) -> str:
    """What the split-half reliability means for reading one patient's numbers."""
    reliability = audit.reliability
    exposure = audit.exposure
    listed = (
        f"The {exposure.n_exposed} patients on the FDR list are those with evidence of leakage "
        f"that holds up across {audit.num_models} models (at most {exposure.rate:.0%} of them "
        "expected to be false alarms); shrunken AUCs in `patient_risk.csv` pull each noisy "
        "estimate toward the cohort by its uncertainty."
    )
    if np.isnan(reliability.full_rho):
        return (
            f"**Reading individual patients.** With K = {audit.num_models} models the ranking's "
            "reliability cannot be measured (it needs at least 4 model pairs per half). " + listed
        )
    rho = reliability.full_rho
    if rho < 0.5:
        verdict = (
            "individual patients' AUCs and ranks are mostly noise: do not single out patients by "
            "their AUC or rank"
        )
    elif rho < 0.75:
        verdict = (
            "individual ranks are only roughly reproducible: a patient's AUC says more about "
            "their neighbourhood in the ranking than their exact place"
        )
    elif rho < 0.9:
        verdict = "individual ranks are fairly reproducible"
    else:
        verdict = "individual ranks are highly reproducible"
    return (
        f"**Reading individual patients.** Two disjoint halves of the models rank patients with "
        f"Spearman ρ = {number(reliability.half_rho, 2)}; for all {audit.num_models} models "
        f"(Spearman–Brown) ρ = {number(rho, 2)}, roughly the agreement of two independent audits "
        f"of this size: {verdict}. " + listed
    )


def _floor(floor, values: np.ndarray) -> str:
    mean, upper = floor.band(values)
    return f"{number(mean)} ({number(upper)})"


def _count(share: float, total: int) -> str:
    return "n/a" if np.isnan(share) else f"{share * total:.0f}"


def _budget_row(spend: PrivacySpend, audit: AuditResult, confidence: str) -> list[str]:
    lower = audit.epsilon_lower_bound
    bounds = audit.bounds
    measured = (
        f"≥ {number(lower.epsilon, 2)} (empirical lower bound, {confidence} over all attacks; "
        f"this audit could show at most {number(lower.ceiling, 2)})"
    )
    if spend.private:
        # A patient's IN and OUT halves differ by a substitution (the halves have fixed sizes):
        # a removal and an addition, which (ε, δ)-DP bounds by 2ε (group privacy of two).
        allowed = 2 * bounds.patient_epsilon
        measured += (
            f"; the audit's IN and OUT halves differ by one patient swapped for another, which "
            f"the audit models' guarantee bounds by 2ε = {number(allowed, 2)}"
            + (
                " — ABOVE it: the DP implementation or its accounting may be wrong; audit it "
                "with audit.dp_audits=[canary,whitebox]"
                if lower.epsilon > allowed
                else ""
            )
        )
    budget = f"{number(spend.epsilon, 2)} (δ = {spend.delta:g})" if spend.private else "∞ (no DP)"
    if spend.private and spend.unit == "patient":
        budget += " per patient"
    elif spend.private and bounds.group_size > 1:
        budget += (
            f" per record; {number(bounds.patient_epsilon, 2)} for a patient with "
            f"{bounds.group_size} records"
        )
    return ["ε", budget, measured]


def _allowed(bound, private: bool) -> str:
    if not private:
        return "1 (no guarantee)"
    return number(bound.max_auc) + (" (vacuous)" if bound.vacuous else "")


def subgroup_section(audit: AuditResult) -> str:
    """Patient risk per subgroup value beside the whole cohort."""
    thresholds = audit.patients.thresholds
    rate = audit.exposure.rate
    header = ["attribute", "value", "patients", "median AUC", "p95 AUC", "max AUC"]
    header += [f"> {t:g}" for t in thresholds] + [f"> {thresholds[-1]:g} (lower bound)"]
    header += [f"est. true AUC > {thresholds[0]:g}", f"FDR {rate:.0%} list", "own FDR list"]
    rows = [
        [
            row.attribute,
            row.value,
            row.n_patients,
            number(row.median_auc),
            number(row.p95_auc),
            number(row.max_auc),
            *[f"{share:.1%}" for share in row.share_above],
            f"{row.share_above_lower_bound[-1]:.1%}",
            _estimated(row),
            "n/a" if row.exposed_fdr is None else row.exposed_fdr,
            "n/a" if row.exposed_fdr_within is None else row.exposed_fdr_within,
        ]
        for row in audit.subgroups
    ]
    return (
        "## Leakage by subgroup\n\nShare of patients whose per-patient attack AUC exceeds each "
        "threshold; small subgroups have noisy shares (see the patient counts). The estimated "
        "share is the empirical-Bayes one (noise removed), with its "
        f"{audit.deconvolution.confidence:.0%} interval over patients and model pairs; the FDR "
        "list columns count the "
        "subgroup's patients on the cohort-wide list and on the subgroup's own list (FDR "
        f"{rate:.0%} within the subgroup).\n\n" + table(header, rows)
    )


def _estimated(row: SubgroupRisk) -> str:
    """A subgroup's estimated share at the first threshold, with its interval."""
    if row.estimated_share_above is None:
        return "n/a"
    share = percent(row.estimated_share_above[0])
    if row.estimated_share_lower is None or np.isnan(row.estimated_share_lower[0]):
        return share
    lower, upper = row.estimated_share_lower[0], row.estimated_share_upper[0]
    return f"{share} [{percent(lower)}, {percent(upper)}]"


def attacks_section(audit: AuditResult) -> str:
    """Every attack's aggregate numbers."""
    rates = audit.attacks[0].metrics.fpr_targets
    header = ["attack", "AUC", f"{audit.attacks[0].auc_interval.confidence:.0%} interval"]
    header += [f"TPR @ {rate:.1%} FPR" for rate in rates] + ["balanced acc.", "ε lower bound"]
    rows = [
        [
            f"{attack.name} ({attack.variant})" if attack.variant else attack.name,
            number(attack.metrics.auc),
            f"[{number(attack.auc_interval.lower)}, {number(attack.auc_interval.upper)}]",
            *[number(float(tpr)) for tpr in attack.metrics.tpr_at_fpr],
            number(attack.metrics.balanced_accuracy),
            number(attack.epsilon_lower_bound.epsilon, 2),
        ]
        for attack in audit.attacks
    ]
    return (
        "## Attacks\n\n"
        + table(header, rows)
        + "\n\nTPR at a low FPR is read off the ROC interpolated over tied scores (the expected "
        "TPR of breaking ties at random), so blocks of tied scores, such as RMIA's many exact "
        "1.0s, do not make it jump."
    )


def figures_section(images: dict[str, Path]) -> str:
    """Links to the figures (relative paths: the report sits beside them)."""
    return "## Figures\n\n" + "\n".join(
        f"![{name.replace('_', ' ')}]({Path(path).name})" for name, path in images.items()
    )


def notes_section(report: RunReport) -> str:
    """How the audit was done, so the numbers can be read correctly."""
    audit = report.audit
    model_spend = audit.model_privacy
    sizes = audit.model_training_patients
    lines = [
        f"- Leave-many-out audit: {audit.num_models} models, each trained with the target's recipe "
        f"on a random half of the {audit.pool_patients} patients "
        f"({int(sizes.min())}–{int(sizes.max())} patients per model, all records of a patient in "
        f"or out together); every patient is in exactly {audit.num_models // 2} models. Each model "
        "is in turn the target; the others, less its complementary half, are its references.",
        *_stopping_line(audit),
        f"- Audit models: σ = {number(model_spend.noise_multiplier)}, "
        f"q = {number(model_spend.sample_rate, 4)}, {model_spend.steps} steps, "
        f"ε = {number(model_spend.epsilon, 2)}"
        if model_spend.private
        else "- Audit models: non-private, like the target.",
        f"- Per-patient AUC: binormal AUC of the record's signal φ = log p_y − log(1 − p_y) across "
        f"the models with and without it, {audit.patient_risk.aggregation} over the patient's "
        f"records; lower bounds are one-sided {audit.patient_risk.confidence:.0%} bounds.",
        "- Empirical ε lower bound: Clopper–Pearson bounds on TPR and FPR, Bonferroni-corrected "
        "for the choice of threshold and of attack. It treats model-patient pairs as independent "
        "trials, which they are not quite (pairs share models and patients): read it as an "
        "indication, not a proof. A patient's IN and OUT halves differ by a substitution (one "
        "patient for another: a removal and an addition), so the guarantee it is compared with "
        "is 2ε; the rigorous tests of ε itself are the DP audits "
        "(audit.dp_audits=[canary,whitebox]).",
        *_group_privacy_note(audit),
        _above_bound_note(audit),
        f"- Noise floor: {audit.null_floor.method}, {audit.null_floor.repeats} times; the "
        f"aggregate AUC's floor re-runs {audit.null_floor.attack or 'no attack'} on the null.",
        f"- Per-patient p-values: {audit.exposure.test}; the list of detectably exposed patients "
        f"is Benjamini–Hochberg at FDR {audit.exposure.rate:.0%}.",
        "- Estimated share at risk: empirical-Bayes deconvolution (a smooth prior of the true "
        "AUC fitted to the per-record paired t statistics, whose noise is known: noncentral t; "
        "each record read on the AUC's scale by its IN-OUT correlation within pairs); "
        f"{audit.deconvolution.confidence:.0%} interval: percentile bootstrap over patients "
        f"({audit.deconvolution.num_bootstrap} resamples) widened by the models' own variation "
        f"(delete-a-group jackknife over model pairs, {_jackknife(audit.deconvolution)}).",
        f"- Reliability: Spearman ρ between the patient AUCs of two disjoint halves of the model "
        f"pairs (pairs kept together), mean of {audit.reliability.num_splits} random splits, and "
        "its Spearman–Brown projection to all models.",
        "- Files: `patient_risk.csv` (one row per patient), `audit_arrays.npz` (masks, signals, "
        "per-record AUCs).",
    ]
    return "## How the audit was done\n\n" + "\n".join(lines)


def _stopping_line(audit: AuditResult) -> list[str]:
    """Why the audit has K models (and how many were reused from saved signals)."""
    if not audit.stopping_reason:
        return []
    reused = (
        f"; {audit.models_reused} of them loaded from the run directory's saved signals"
        if audit.models_reused
        else ""
    )
    return [f"- Number of models: K = {audit.num_models} ({audit.stopping_reason}){reused}."]


def _above_bound_note(audit: AuditResult) -> str:
    patients, confidence = audit.patients, audit.patient_risk.confidence
    chance = (1 - confidence) * patients.n_patients
    verdict = (
        "more than chance explains: see the warning above"
        if patients.above_dp_bound_p_value < VIOLATION_EVIDENCE
        else "consistent with chance"
    )
    return (
        f"- Patients whose lower bound exceeds the DP-implied patient maximum: "
        f"{patients.above_dp_bound} of {patients.n_patients}. Each one-sided {confidence:.0%} "
        f"bound fails with probability {1 - confidence:.0%}, so up to about {chance:.0f} would by "
        f"chance if every patient sat at the bound (p = {patients.above_dp_bound_p_value:.2g}): "
        f"{verdict}. "
        "Per-patient point estimates above the bound are expected with many patients and few "
        "models; compare the lower bounds."
    )


def _jackknife(deconvolution: RiskDeconvolution) -> str:
    """The jackknife's groups and standard errors, in words."""
    if not deconvolution.jackknife_groups:
        return "not possible below 3 pairs: no interval"
    errors = ", ".join(
        f"{percent(error)} at {threshold:g}"
        for threshold, error in zip(deconvolution.thresholds, deconvolution.model_sd, strict=True)
    )
    return f"{deconvolution.jackknife_groups} groups; standard error {errors}"


def _group_privacy_note(audit: AuditResult) -> list[str]:
    classic = audit.bounds.classic_group_privacy
    if classic is None:
        return []
    return [
        f"- Patient-level bound for k = {audit.bounds.group_size} records: the exact accounting of "
        "their Poisson-sampled records (a mixture of Gaussians) allows an AUC of "
        f"{number(audit.bounds.patient.max_auc)}; textbook group privacy over the record-level "
        f"profile would allow {number(classic.max_auc)}."
    ]


def _attack(audit: AuditResult, name: str) -> AttackResult:
    return next(attack for attack in audit.attacks if attack.name == name)
