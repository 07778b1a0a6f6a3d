"""The run's flat summary: one dict of named numbers that every reader takes its figures from.

``results.json`` carries it as ``summary``; the trackers log it; a sweep report compares runs by it.
Keys are ``group/name`` (``privacy/epsilon``, ``utility/auroc``, ``train/kept_epoch``,
``audit/patient_auc_max``,
``subgroup/<attribute>=<value>/share_above_<t>``, ``dp_audit/<name>/epsilon_lower_bound``,
``dp_audit/<name>/fdp_one_run`` and ``.../fdp_one_run_mu``);
values are numbers, or the strings and booleans that identify the run (unit, private, seed).
Undefined numbers are None in ``results.json``, never NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dptrain.audit.result import AuditResult
from dptrain.audit.subgroups import WHOLE_COHORT

if TYPE_CHECKING:
    from dptrain.reporting.results import RunReport


def run_summary(report: RunReport) -> dict[str, Any]:
    """Budget, utility, measured leakage, subgroups and DP audits of one run, flat."""
    spend, overall = report.privacy, report.utility.overall
    summary: dict[str, Any] = {
        "run/seed": report.config.get("seed"),
        "privacy/private": spend.private,
        "privacy/unit": spend.unit,
        "privacy/epsilon": spend.epsilon,
        "privacy/epsilon_rdp": spend.epsilon_rdp,
        "privacy/epsilon_target": spend.epsilon_target,
        "privacy/delta": spend.delta,
        "privacy/noise_multiplier": spend.noise_multiplier,
        "privacy/sample_rate": spend.sample_rate,
        "privacy/steps": float(spend.steps),
        "privacy/max_records_per_patient": float(spend.max_records_per_patient),
        "utility/auroc": overall.auroc,
        "utility/auprc": overall.auprc,
        "utility/accuracy": overall.accuracy,
        "utility/balanced_accuracy": overall.balanced_accuracy,
    }
    summary |= training_metrics(report.training)
    if report.audit is not None:
        summary |= audit_headline_metrics(report.audit)
        summary |= subgroup_metrics(report.audit)
        summary |= memorisation_metrics(report.audit)
        summary |= attribute_inference_metrics(report.audit)
        summary |= knowledge_metrics(report.audit)
        summary |= harm_metrics(report.audit)
    for row in report.dp_audits:
        if row.applicable:
            summary[f"dp_audit/{row.name}/epsilon_lower_bound"] = row.epsilon_lower_bound
            summary |= {
                f"dp_audit/{row.name}/{key}": row.secondary[key]
                for key in DP_AUDIT_SECONDARY_KEYS
                if key in row.secondary
            }
    return summary


# Secondary DP-audit bounds the summary carries beside each headline: Mahloujifar et al.'s
# one-run μ-GDP bound (rigorous) and its ε at δ (under a Gaussian trade-off curve).
DP_AUDIT_SECONDARY_KEYS = ("fdp_one_run", "fdp_one_run_mu")


TRAINING_KEYS = (
    "early_stopping",
    "epochs_run",
    "kept_epoch",
    "validation_patients",
    "validation_metric",
    "validation_score",
)


def training_metrics(training: dict[str, Any]) -> dict[str, Any]:
    """Which baseline ran: ``train/early_stopping``, ``train/epochs_run``, ``train/kept_epoch``.

    With early stopping also ``train/validation_patients`` (kept out of the DP data, not covered
    by ε), ``train/validation_metric`` and ``train/validation_score`` (at the kept epoch). Empty
    for results written before these facts were recorded.
    """
    return {f"train/{key}": training[key] for key in TRAINING_KEYS if key in training}


def numeric_summary(report: RunReport) -> dict[str, float]:
    """The summary's numbers only (what metric trackers accept)."""
    return {
        key: float(value)
        for key, value in run_summary(report).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def subgroup_metrics(audit: AuditResult) -> dict[str, float]:
    """Per subgroup: patients, median and max patient AUC, share above each risk threshold."""
    metrics = {}
    for row in audit.subgroups:
        if row.attribute == "all patients":
            continue
        prefix = f"subgroup/{row.attribute}={row.value}"
        metrics[f"{prefix}/n_patients"] = float(row.n_patients)
        metrics[f"{prefix}/patient_auc_median"] = row.median_auc
        metrics[f"{prefix}/patient_auc_max"] = row.max_auc
        for threshold, share in zip(row.thresholds, row.share_above):
            metrics[f"{prefix}/share_above_{threshold:g}"] = float(share)
    return metrics


def memorisation_metrics(audit: AuditResult) -> dict[str, float]:
    """Exposed patients memorised vs predictable from the population, cohort and subgroups.

    Keys: ``audit/memorised_above_<t>``, ``audit/memorised_floor_above_<t>`` (mean null count),
    ``audit/predictable_exposed_above_<t>``, and per subgroup
    ``subgroup/<attribute>=<value>/memorised_above_<t>``; empty for results made before the split
    existed.
    """
    split = audit.memorisation
    if split is None:
        return {}
    metrics = {"audit/predictable_confidence": split.predictable_confidence}
    for row in split.rows:
        whole = row.attribute == WHOLE_COHORT
        prefix = "audit" if whole else f"subgroup/{row.attribute}={row.value}"
        for index, threshold in enumerate(row.thresholds):
            metrics[f"{prefix}/memorised_above_{threshold:g}"] = float(row.memorised[index])
            metrics[f"{prefix}/predictable_exposed_above_{threshold:g}"] = float(
                row.predictable_exposed[index]
            )
            if whole:
                metrics[f"{prefix}/memorised_floor_above_{threshold:g}"] = float(
                    row.memorised_floor[index]
                )
    return metrics


def attribute_inference_metrics(audit: AuditResult) -> dict[str, float]:
    """Per sensitive attribute: accuracy on members and non-members, member advantage.

    Keys ``attribute/<name>/{member_accuracy,nonmember_accuracy,advantage,advantage_lower,
    advantage_upper,majority_accuracy}``; empty without attribute inference.
    """
    metrics = {}
    for result in audit.attribute_inference:
        overall, prefix = result.overall, f"attribute/{result.attribute}"
        metrics[f"{prefix}/member_accuracy"] = overall.member_accuracy
        metrics[f"{prefix}/nonmember_accuracy"] = overall.nonmember_accuracy
        metrics[f"{prefix}/advantage"] = overall.advantage
        metrics[f"{prefix}/advantage_lower"] = float(overall.advantage_interval[0])
        metrics[f"{prefix}/advantage_upper"] = float(overall.advantage_interval[1])
        metrics[f"{prefix}/majority_accuracy"] = result.majority_accuracy
    return metrics


def knowledge_metrics(audit: AuditResult) -> dict[str, float]:
    """Per knowledge level: patient AUC median/max and the exposed share, cohort and subgroups.

    Keys ``knowledge/<level>/{patient_auc_median,patient_auc_p99,patient_auc_max}``,
    ``knowledge/<level>/share_above_<t>`` and
    ``knowledge/<level>/<attribute>=<value>/share_above_<t>``; empty without knowledge levels.
    """
    curve = audit.knowledge
    if curve is None:
        return {}
    metrics = {}
    for result in curve.levels:
        prefix = f"knowledge/{result.level}"
        metrics[f"{prefix}/patient_auc_median"] = result.median_auc
        metrics[f"{prefix}/patient_auc_p99"] = result.p99_auc
        metrics[f"{prefix}/patient_auc_max"] = result.max_auc
        for row in result.rows:
            subgroup = f"{prefix}/{row.attribute}={row.value}"
            group = prefix if row.attribute == WHOLE_COHORT else subgroup
            for index, threshold in enumerate(curve.thresholds):
                share = float(row.exposed[index] / row.n_patients) if row.n_patients else None
                metrics[f"{group}/share_above_{threshold:g}"] = share
    return metrics


def harm_metrics(audit: AuditResult) -> dict[str, float]:
    """Severity × exposed share per subgroup: ``harm/<attribute>=<value>/weighted_share``."""
    if audit.harm is None:
        return {}
    return {
        f"harm/{row.attribute}={row.value}/weighted_share": row.weighted for row in audit.harm.rows
    }


def audit_headline_metrics(audit: AuditResult) -> dict[str, float]:
    """Summary metrics of the audit for trackers and sweeps."""
    best = next(attack for attack in audit.attacks if attack.name == audit.best_attack)
    patients = audit.patients
    metrics = {
        "audit/num_models": float(audit.num_models),
        "audit/best_attack_auc": best.metrics.auc,
        "audit/epsilon_lower_bound": audit.epsilon_lower_bound.epsilon,
        "audit/dp_max_auc_record": audit.bounds.record.max_auc,
        "audit/dp_max_auc_patient": audit.bounds.patient.max_auc,
        "audit/dp_epsilon_patient": audit.bounds.patient_epsilon,
        "audit/patient_auc_median": patients.median_auc,
        "audit/patient_auc_p99": patients.p99_auc,
        "audit/patient_auc_max": patients.max_auc,
    }
    for rate, tpr in zip(best.metrics.fpr_targets, best.metrics.tpr_at_fpr):
        metrics[f"audit/best_attack_tpr_at_fpr_{rate:g}"] = float(tpr)
    for threshold, count, sure in zip(
        patients.thresholds, patients.exposed, patients.exposed_lower_bound
    ):
        metrics[f"audit/patients_auc_above_{threshold:g}"] = float(count)
        metrics[f"audit/patients_lower_bound_above_{threshold:g}"] = float(sure)
    for attack in audit.attacks:
        metrics[f"audit/{attack.name}_auc"] = attack.metrics.auc
    floor = audit.null_floor
    metrics["audit/null_best_attack_auc"] = floor.band(floor.attack_auc)[0]
    metrics["audit/null_patient_auc_median"] = floor.band(floor.median_auc)[0]
    metrics["audit/null_patient_auc_p99"] = floor.band(floor.p99_auc)[0]
    metrics["audit/null_patient_auc_max"] = floor.band(floor.max_auc)[0]
    metrics["audit/null_fdr_list_empty_share"] = floor.fdr_list_empty_share
    metrics["audit/patients_exposed_fdr"] = float(audit.exposure.n_exposed)
    metrics["audit/reliability_split_half"] = audit.reliability.half_rho
    metrics["audit/reliability_full"] = audit.reliability.full_rho
    shares = audit.deconvolution
    for index, threshold in enumerate(floor.thresholds):
        null_share = floor.band(floor.share_above[:, index])[0]
        metrics[f"audit/null_share_above_{threshold:g}"] = null_share
        metrics[f"audit/estimated_share_above_{threshold:g}"] = float(shares.share_above[index])
        metrics[f"audit/estimated_share_above_{threshold:g}_lower"] = float(
            shares.share_lower[index]
        )
        metrics[f"audit/estimated_share_above_{threshold:g}_upper"] = float(
            shares.share_upper[index]
        )
        metrics[f"audit/estimated_share_above_{threshold:g}_model_sd"] = float(
            shares.model_sd[index]
        )
    return metrics
