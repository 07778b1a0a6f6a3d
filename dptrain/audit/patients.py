"""From records back to patients: a patient is as exposed as their most exposed record.

Membership is decided per patient, so a patient's risk aggregates the risk of their records: the
maximum by default (Knolle et al.: one identifiable record identifies the patient), or the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from dptrain.audit.metrics import RecordVulnerability
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError


@dataclass(frozen=True)
class PatientRisk:
    """Every patient's membership-inference risk with its uncertainty.

    Attributes:
        patient_ids: ``(n_patients,)`` str, as the user gave them.
        auc: ``(n_patients,)`` float64 per-patient attack AUC (max or mean over their records).
        standard_error: ``(n_patients,)`` float64 standard error of ``auc``.
        lower_bound: ``(n_patients,)`` float64 one-sided lower confidence bound of ``auc``.
        n_records: ``(n_patients,)`` int64 records per patient.
        attributes: subgroup name -> ``(n_patients,)`` str value.
        aggregation: ``max`` or ``mean``.
        confidence: Confidence level of ``lower_bound``.
    """

    patient_ids: np.ndarray
    auc: np.ndarray
    standard_error: np.ndarray
    lower_bound: np.ndarray
    n_records: np.ndarray
    attributes: dict[str, np.ndarray]
    aggregation: str
    confidence: float


def aggregate_by_patient(
    values: np.ndarray, record_patient: np.ndarray, *, n_patients: int, how: str = "max"
) -> np.ndarray:
    """Reduces the last axis from records to patients (NaN-aware max or mean).

    Args:
        values: ``(..., n_records)`` per-record values (e.g. attack scores per model).
        record_patient: ``(n_records,)`` patient index of every record.
        n_patients: Number of patients; each must have at least one record.
        how: ``max`` or ``mean``.

    Returns:
        ``(..., n_patients)`` per-patient values.

    Example:
        >>> aggregate_by_patient(np.array([[1.0, 5.0, 2.0]]), np.array([0, 1, 0]), n_patients=2)
        array([[2., 5.]])
    """
    if how not in ("max", "mean"):
        raise ConfigError(f"audit.patient_aggregation must be 'max' or 'mean', got {how!r}")
    order = np.argsort(record_patient, kind="stable")
    counts = np.bincount(record_patient, minlength=n_patients)
    if np.any(counts == 0):
        raise ConfigError("every patient needs at least one record to aggregate over")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    ordered = np.asarray(values, dtype=np.float64)[..., order]
    if how == "max":
        return np.fmax.reduceat(ordered, starts, axis=-1)
    present = ~np.isnan(ordered)
    sums = np.add.reduceat(np.where(present, ordered, 0.0), starts, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / np.add.reduceat(present, starts, axis=-1)


def patient_risk(
    vulnerability: RecordVulnerability, cohort: Cohort, *, how: str = "max"
) -> PatientRisk:
    """Aggregates per-record vulnerability to per-patient risk.

    With ``max``, the AUC and its standard error are those of the patient's most exposed record,
    and the lower bound is the largest of the records' lower bounds (it is below the largest true
    AUC whenever the bound of that one record holds). With ``mean``, the standard error assumes
    independent records and the lower bound is a normal one around the mean.

    Args:
        vulnerability: Per-record AUCs of the cohort's records.
        cohort: The audit pool (patients and record-to-patient map).
        how: ``max`` or ``mean``.

    Returns:
        The per-patient risk.
    """
    record_patient, n_patients = cohort.record_patient, cohort.n_patients
    if how == "max":
        auc = aggregate_by_patient(vulnerability.auc, record_patient, n_patients=n_patients)
        lower = aggregate_by_patient(
            vulnerability.lower_bound, record_patient, n_patients=n_patients
        )
        worst = _argmax_record(vulnerability.auc, record_patient, n_patients)
        standard_error = np.where(worst >= 0, vulnerability.standard_error[worst], np.nan)
    else:
        auc = aggregate_by_patient(
            vulnerability.auc, record_patient, n_patients=n_patients, how=how
        )
        squared = aggregate_by_patient(
            vulnerability.standard_error**2, record_patient, n_patients=n_patients, how=how
        )
        standard_error = np.sqrt(squared / cohort.records_per_patient)
        lower = np.clip(auc - norm.ppf(vulnerability.confidence) * standard_error, 0.0, 1.0)
    return PatientRisk(
        patient_ids=cohort.patients,
        auc=auc,
        standard_error=standard_error,
        lower_bound=lower,
        n_records=cohort.records_per_patient,
        attributes=dict(cohort.attributes),
        aggregation=how,
        confidence=vulnerability.confidence,
    )


def _argmax_record(values: np.ndarray, record_patient: np.ndarray, n_patients: int) -> np.ndarray:
    """Index of each patient's record with the largest value (-1 if all are NaN)."""
    filled = np.where(np.isnan(values), -np.inf, values)
    order = np.lexsort((-filled, record_patient))  # by patient, largest value first
    first = np.full(n_patients, -1, dtype=np.int64)
    sorted_patients = record_patient[order]
    is_first = np.r_[True, sorted_patients[1:] != sorted_patients[:-1]]
    first[sorted_patients[is_first]] = order[is_first]
    return np.where(np.isneginf(filled[np.maximum(first, 0)]), -1, first)
