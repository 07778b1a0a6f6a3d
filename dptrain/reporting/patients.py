"""Per-patient risk as a table (``patient_risk.csv``) and the audit's arrays (``audit_arrays.npz``).

The table holds patient ids as the user gave them, subgroup values, record counts and risk
numbers, never a feature value. The arrays (membership masks, signals, per-record AUCs) let a
later analysis re-run attacks without retraining.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dptrain.audit.result import AuditResult
from dptrain.reporting.files import PATIENT_RISK_FILE

AUDIT_ARRAYS_FILE = "audit_arrays.npz"


def patient_risk_frame(audit: AuditResult) -> pd.DataFrame:
    """One row per patient, most exposed first.

    Args:
        audit: An `AuditResult`.

    Returns:
        Columns: patient_id, one per subgroup attribute, n_records, auc, standard_error,
        lower_bound (the one-sided confidence bound at the audit's confidence), shrunken_auc (the
        empirical-Bayes posterior mean of the true AUC), p_value and q_value (evidence of
        leakage, Benjamini–Hochberg adjusted) and exposed_fdr (on the list of patients detectably
        exposed at the audit's false-discovery rate). The flag to act on is exposed_fdr, not an
        AUC above a threshold. With severities configured (`dptrain.audit.harm`), also
        severity, rated_as, harm_score and harm_rank (1 = the most harmful FDR-exposed patient,
        empty for patients not on the FDR list).
    """
    risk = audit.patient_risk
    frame = pd.DataFrame({"patient_id": risk.patient_ids})
    for attribute, values in risk.attributes.items():
        frame[attribute] = values
    frame["n_records"] = risk.n_records
    frame["auc"] = risk.auc
    frame["standard_error"] = risk.standard_error
    frame["lower_bound"] = risk.lower_bound
    frame["shrunken_auc"] = audit.deconvolution.shrunken_auc
    frame["p_value"] = audit.exposure.p_value
    frame["q_value"] = audit.exposure.q_value
    frame["exposed_fdr"] = audit.exposure.exposed
    harm = audit.harm
    if harm is not None and harm.patient_rank is not None:
        frame["severity"] = harm.patient_severity
        frame["rated_as"] = harm.patient_rated_as
        frame["harm_score"] = harm.patient_score
        # Empty (NaN) when not on the FDR list: a float column, since trackers' tables take no
        # pandas NA (W&B refused the nullable-integer column).
        frame["harm_rank"] = np.where(harm.patient_rank > 0, harm.patient_rank, np.nan)
    return frame.sort_values("auc", ascending=False, kind="stable").reset_index(drop=True)


def write_patient_risk(audit: AuditResult, run_dir: Path) -> Path:
    """Writes ``patient_risk.csv`` and ``audit_arrays.npz``; returns the CSV's path."""
    run_dir = Path(run_dir)
    path = run_dir / PATIENT_RISK_FILE
    patient_risk_frame(audit).to_csv(path, index=False, float_format="%.6g")
    vulnerability = audit.record_vulnerability
    np.savez_compressed(
        run_dir / AUDIT_ARRAYS_FILE,
        patient_ids=audit.patient_risk.patient_ids,
        membership=audit.membership,
        signals=audit.signals,
        record_patient=audit.record_patient,
        record_auc=vulnerability.auc,
        record_standard_error=vulnerability.standard_error,
        record_lower_bound=vulnerability.lower_bound,
    )
    return path
