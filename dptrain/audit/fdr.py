"""Patients detectably exposed: per-patient tests, controlled for false discoveries.

With thousands of patients, "AUC above 0.8" flags many patients by chance alone (the null floor
shows how many). The list that ``patient_risk.csv`` flags is instead the patients whose evidence of
membership leakage survives the Benjamini–Hochberg procedure at a chosen false-discovery rate: in
expectation at most that share of the listed patients leak nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dptrain.audit.paired import pair_differences, paired_t, patient_p_values, record_p_values
from dptrain.errors import ConfigError

NOT_IN_JSON = {"json": False}

TEST_DESCRIPTION = (
    "one-sided paired t-test of each record's K/2 pair differences φ(IN) − φ(OUT), smallest "
    "p-value over the patient's records × their number of records (Bonferroni)"
)


@dataclass(frozen=True)
class PatientExposure:
    """Every patient's evidence of membership leakage and the FDR-controlled list.

    Attributes:
        rate: Target false-discovery rate of the list.
        n_tested: Patients with a p-value (all of them from K = 4 on).
        n_exposed: Patients on the list (q-value ≤ ``rate``).
        test: How the per-patient p-values are computed.
        p_value: ``(n_patients,)`` float64 per-patient p-value (NaN: untestable).
        q_value: ``(n_patients,)`` float64 Benjamini–Hochberg adjusted p-value.
        exposed: ``(n_patients,)`` bool, on the list.
        record_t: ``(n_records,)`` float64 paired t statistic of every record.
        dof: Degrees of freedom of the t statistics (K/2 − 1).
    """

    rate: float
    n_tested: int
    n_exposed: int
    test: str
    p_value: np.ndarray = field(metadata=NOT_IN_JSON)
    q_value: np.ndarray = field(metadata=NOT_IN_JSON)
    exposed: np.ndarray = field(metadata=NOT_IN_JSON)
    record_t: np.ndarray = field(metadata=NOT_IN_JSON)
    dof: int = 0


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaN entries are not tested.

    q_(i) = min over k ≥ i of m · p_(k) / k for the sorted p-values of the m tested hypotheses;
    rejecting every q ≤ α controls the false-discovery rate at α for independent or positively
    dependent tests (Benjamini & Hochberg 1995; Benjamini & Yekutieli 2001).

    Args:
        p_values: ``(n,)`` p-values in [0, 1] or NaN.

    Returns:
        ``(n,)`` q-values in [0, 1], NaN where the p-value is.

    Example:
        >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03, np.nan, 0.5])).round(3).tolist()
        [0.04, 0.053, 0.053, nan, 0.5]
    """
    p = np.asarray(p_values, dtype=np.float64)
    tested = np.flatnonzero(~np.isnan(p))
    q = np.full(p.shape, np.nan)
    if tested.size == 0:
        return q
    order = tested[np.argsort(p[tested], kind="stable")]
    ranks = np.arange(1, order.size + 1)
    adjusted = np.minimum.accumulate((p[order] * order.size / ranks)[::-1])[::-1]
    q[order] = np.minimum(adjusted, 1.0)
    return q


def patient_exposure(
    signals: np.ndarray,
    record_membership: np.ndarray,
    record_patient: np.ndarray,
    *,
    n_patients: int,
    rate: float = 0.05,
) -> PatientExposure:
    """Per-patient p-values, q-values and the list of patients exposed at FDR ``rate``.

    Each record is tested on its own K/2 pair differences (see `dptrain.audit.paired`), which
    are independent across pairs by design and symmetric about 0 when the record does not leak;
    the patient's p-value is the Bonferroni-corrected minimum over their records.

    Args:
        signals: ``(K, n_records)`` signals, models in complementary pairs.
        record_membership: ``(K, n_records)`` bool membership.
        record_patient: ``(n_records,)`` patient index of every record.
        n_patients: Number of patients.
        rate: False-discovery rate, in (0, 1).

    Returns:
        The per-patient evidence and the list.

    Raises:
        ConfigError: If ``rate`` is out of range.
        DataError: If the models are not in complementary pairs.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> halves = rng.random((8, 200)) < 0.5
        >>> members = np.repeat(halves, 2, axis=0)
        >>> members[1::2] = ~members[1::2]
        >>> leaks = np.arange(200) < 20  # the first 20 records leak strongly
        >>> signals = rng.normal(size=(16, 200)) + 3.0 * (members & leaks)
        >>> found = patient_exposure(signals, members, np.arange(200), n_patients=200)
        >>> found.n_exposed >= 15, bool(found.exposed[20:].sum() <= 2)
        (True, True)
    """
    if not 0 < rate < 1:
        raise ConfigError(f"audit.fdr must be in (0, 1), got {rate}")
    t, dof = paired_t(pair_differences(signals, record_membership))
    p = patient_p_values(record_p_values(t, dof), record_patient, n_patients=n_patients)
    q = benjamini_hochberg(p)
    exposed = np.nan_to_num(q, nan=1.0) <= rate
    return PatientExposure(
        rate=rate,
        n_tested=int(np.sum(~np.isnan(p))),
        n_exposed=int(exposed.sum()),
        test=TEST_DESCRIPTION,
        p_value=p,
        q_value=q,
        exposed=exposed,
        record_t=t,
        dof=dof,
    )
