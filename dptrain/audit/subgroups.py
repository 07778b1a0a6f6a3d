"""Leakage per subgroup: are some patients (a minority, a rare diagnosis) more exposed than others?

Underrepresented groups are often at higher risk, and an aggregate over the cohort hides that; so
every value of every subgroup attribute gets the same summary as the whole cohort, side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dptrain.audit.fdr import PatientExposure, benjamini_hochberg
from dptrain.audit.metrics import RecordVulnerability
from dptrain.audit.patients import PatientRisk, aggregate_by_patient
from dptrain.audit.shrinkage import RiskDeconvolution

WHOLE_COHORT = "all patients"


@dataclass(frozen=True)
class SubgroupRisk:
    """Distribution of patient AUC in one subgroup (or the whole cohort).

    Attributes:
        attribute: Subgroup attribute (``all patients`` for the cohort row).
        value: Attribute value.
        n_patients: Patients in the subgroup.
        median_auc: Median patient AUC.
        p95_auc: 95th percentile of patient AUC.
        max_auc: Largest patient AUC.
        thresholds: ``(n_thresholds,)`` AUC thresholds.
        share_above: ``(n_thresholds,)`` share of patients whose AUC exceeds each threshold.
        share_above_lower_bound: ``(n_thresholds,)`` the same on the lower confidence bound: the
            share that is exposed beyond reasonable doubt.
        exposed_fdr: Patients of the subgroup on the cohort-wide FDR list (None without p-values).
        exposed_fdr_within: Patients on the subgroup's own list (Benjamini–Hochberg over the
            subgroup's p-values alone, FDR controlled within the subgroup).
        estimated_share_above: ``(n_thresholds,)`` empirical-Bayes estimate of the share whose
            true AUC exceeds each threshold (mean posterior probability; None without it).
        estimated_share_lower: ``(n_thresholds,)`` lower end of its interval (patients and model
            pairs, `dptrain.audit.shrinkage.RiskDeconvolution.share_of`).
        estimated_share_upper: ``(n_thresholds,)`` upper end.
    """

    attribute: str
    value: str
    n_patients: int
    median_auc: float
    p95_auc: float
    max_auc: float
    thresholds: np.ndarray
    share_above: np.ndarray
    share_above_lower_bound: np.ndarray
    exposed_fdr: int | None = None
    exposed_fdr_within: int | None = None
    estimated_share_above: np.ndarray | None = None
    estimated_share_lower: np.ndarray | None = None
    estimated_share_upper: np.ndarray | None = None


def subgroup_risk(
    risk: PatientRisk,
    *,
    thresholds: tuple[float, ...],
    exposure: PatientExposure | None = None,
    deconvolution: RiskDeconvolution | None = None,
) -> list[SubgroupRisk]:
    """The whole cohort first, then every value of every attribute.

    Args:
        risk: Per-patient risk with subgroup attributes.
        thresholds: AUC thresholds at which shares of exposed patients are counted.
        exposure: Per-patient p-values and the cohort-wide FDR list, to count per subgroup.
        deconvolution: The empirical-Bayes fit (`dptrain.audit.shrinkage`), for each subgroup's
            estimated share and its interval.

    Returns:
        One `SubgroupRisk` per row.

    Example:
        >>> risk = PatientRisk(patient_ids=np.array(["a", "b"]), auc=np.array([0.5, 0.95]),
        ...     standard_error=np.zeros(2), lower_bound=np.array([0.4, 0.85]),
        ...     n_records=np.ones(2, int), attributes={"sex": np.array(["F", "M"])},
        ...     aggregation="max", confidence=0.95)
        >>> [(r.value, r.share_above.tolist()) for r in subgroup_risk(risk, thresholds=(0.9,))]
        [('all patients', [0.5]), ('F', [0.0]), ('M', [1.0])]
    """
    everyone = np.ones(len(risk.auc), dtype=bool)
    extra = {"exposure": exposure, "deconvolution": deconvolution}
    rows = [_summarise(risk, everyone, WHOLE_COHORT, WHOLE_COHORT, thresholds, **extra)]
    for attribute, values in risk.attributes.items():
        for value in np.unique(values):
            rows.append(
                _summarise(risk, values == value, attribute, str(value), thresholds, **extra)
            )
    return rows


def record_subgroup_risk(
    vulnerability: RecordVulnerability,
    *,
    record_patient: np.ndarray,
    record_attributes: dict[str, np.ndarray],
    thresholds: tuple[float, ...],
    how: str = "max",
) -> list[SubgroupRisk]:
    """Leakage by record-level metadata (view, device): patients' risk through those records only.

    For each value of a record attribute, a patient's AUC aggregates (``how``) the AUCs of their
    records with that value; the row covers the patients who have at least one such record. The
    attribute is shown as ``<name> (records)``.

    Example:
        >>> vulnerability = RecordVulnerability(auc=np.array([0.9, 0.5, 0.6]),
        ...     standard_error=np.zeros(3), lower_bound=np.array([0.8, 0.4, 0.5]),
        ...     num_in=np.ones(3, int), num_out=np.ones(3, int), confidence=0.95)
        >>> rows = record_subgroup_risk(vulnerability, record_patient=np.array([0, 0, 1]),
        ...     record_attributes={"view": np.array(["AP", "PA", "PA"])}, thresholds=(0.8,))
        >>> [(r.value, r.n_patients, r.max_auc) for r in rows]
        [('AP', 1, 0.9), ('PA', 2, 0.6)]
    """
    rows = []
    for attribute, values in record_attributes.items():
        for value in np.unique(values):
            records = values == value
            patients, local = np.unique(record_patient[records], return_inverse=True)
            aggregate = {"record_patient": local, "n_patients": len(patients), "how": how}
            risk = PatientRisk(
                patient_ids=patients.astype(str),
                auc=aggregate_by_patient(vulnerability.auc[records], **aggregate),
                standard_error=np.full(len(patients), np.nan),
                lower_bound=aggregate_by_patient(vulnerability.lower_bound[records], **aggregate),
                n_records=np.bincount(local, minlength=len(patients)),
                attributes={},
                aggregation=how,
                confidence=vulnerability.confidence,
            )
            everyone = np.ones(len(patients), dtype=bool)
            rows.append(
                _summarise(
                    risk,
                    everyone,
                    f"{attribute} (records)",
                    str(value),
                    thresholds,
                    exposure=None,
                    deconvolution=None,
                )
            )
    return rows


def _summarise(
    risk: PatientRisk,
    members: np.ndarray,
    attribute: str,
    value: str,
    thresholds: tuple[float, ...],
    *,
    exposure: PatientExposure | None,
    deconvolution: RiskDeconvolution | None,
) -> SubgroupRisk:
    auc, lower = risk.auc[members], risk.lower_bound[members]
    limits = np.asarray(thresholds, dtype=np.float64)
    valid = ~np.isnan(auc)
    with np.errstate(invalid="ignore"):
        share = (
            (auc[valid, None] > limits).mean(axis=0)
            if valid.any()
            else np.full(len(limits), np.nan)
        )
        share_lower = (
            (lower[valid, None] > limits).mean(axis=0)
            if valid.any()
            else np.full(len(limits), np.nan)
        )
    return SubgroupRisk(
        attribute=attribute,
        value=value,
        n_patients=int(members.sum()),
        median_auc=float(np.nanmedian(auc)) if valid.any() else float("nan"),
        p95_auc=float(np.nanpercentile(auc, 95)) if valid.any() else float("nan"),
        max_auc=float(np.nanmax(auc)) if valid.any() else float("nan"),
        thresholds=limits,
        share_above=share,
        share_above_lower_bound=share_lower,
        exposed_fdr=None if exposure is None else int(exposure.exposed[members].sum()),
        exposed_fdr_within=None if exposure is None else _own_list(exposure, members),
        **_estimated_share(deconvolution, members),
    )


def _estimated_share(deconvolution: RiskDeconvolution | None, members: np.ndarray) -> dict:
    if deconvolution is None:
        return {}
    estimate = deconvolution.share_of(members)
    return {
        "estimated_share_above": estimate.share,
        "estimated_share_lower": estimate.lower,
        "estimated_share_upper": estimate.upper,
    }


def _own_list(exposure: PatientExposure, members: np.ndarray) -> int:
    """Size of the subgroup's own Benjamini–Hochberg list at the cohort's rate."""
    q = benjamini_hochberg(exposure.p_value[members])
    return int(np.sum(np.nan_to_num(q, nan=1.0) <= exposure.rate))
