"""Memorisation or generalisation: was an exposed patient learned, or is their label predictable?

A high per-patient attack AUC says that the models trained on a patient score them differently
from the models that did not. That is a membership leak when the models learned the patient
specifically (Feldman's memorisation: the OUT models, which never saw them, get them wrong). It is
not one in the sense a patient cares about when any model already predicts the patient's label
from the population: then what a member's model reveals about them (their label) a model without
them reveals too, and a confident IN score is the population's pattern, sharpened.

The control is the *population baseline* of every patient: the mean probability that the OUT
models (those that never saw the patient) give the patient's true label, p̄_OUT = mean over OUT
models of p_y = σ(φ) (φ = log p_y − log(1 − p_y) is the audit's signal, so no model is queried
again). For a patient whose risk is their most exposed record's (``patient_aggregation=max``) the
baseline is that record's; with ``mean`` it is the mean over their records.

**Rule.** An exposed patient (patient AUC above a risk threshold) is *predictable from the
population* when p̄_OUT ≥ τ (``audit.predictable_confidence``, default 0.8: models that never saw
the patient put at least 80 % on the true label, i.e. they classify the patient correctly and
confidently), else *memorised*. τ is an absolute confidence rather than a percentile of the
cohort, so it means the same on every data set and a cohort in which nobody is predictable has no
predictable patients; a percentile would call a fixed share predictable whatever the models do.
Only memorised patients are counted as membership leaks.

Every subgroup figure has a Clopper–Pearson interval over the subgroup's patients, and the number
of memorised exposed patients has a noise floor: the same count on the run's signals with the
membership effect removed and the pairs re-labelled (`dptrain.audit.null`'s method), since with
few models many patients exceed a threshold by chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from dptrain.audit.epsilon import clopper_pearson_lower, clopper_pearson_upper
from dptrain.audit.null import null_relabellings
from dptrain.audit.patients import aggregate_by_patient
from dptrain.audit.subgroups import WHOLE_COHORT
from dptrain.errors import ConfigError

NOT_IN_JSON = {"json": False}
MEMORISED = "memorised"
PREDICTABLE = "predictable from the population"
NOT_EXPOSED = "not exposed"


@dataclass(frozen=True)
class MemorisationRow:
    """Exposed patients of one subgroup (or the whole cohort), split by the population baseline.

    Shares are of the subgroup's patients, with two-sided Clopper–Pearson intervals.

    Attributes:
        attribute: Subgroup attribute (``all patients`` for the cohort row).
        value: Attribute value.
        n_patients: Patients in the subgroup.
        predictable: Patients whose p̄_OUT ≥ τ, exposed or not.
        predictable_interval: ``(2,)`` interval of the share ``predictable / n_patients``.
        median_out_confidence: Median p̄_OUT of the subgroup.
        thresholds: ``(n_thresholds,)`` patient AUC thresholds.
        exposed: ``(n_thresholds,)`` patients with AUC above each threshold.
        memorised: ``(n_thresholds,)`` exposed patients with p̄_OUT < τ (membership leaks).
        memorised_interval: ``(n_thresholds, 2)`` interval of the share ``memorised / n``.
        predictable_exposed: ``(n_thresholds,)`` exposed patients with p̄_OUT ≥ τ (not leaks).
        predictable_exposed_interval: ``(n_thresholds, 2)`` its share's interval.
        memorised_floor: ``(n_thresholds,)`` mean of ``memorised`` over the null repeats.
        memorised_floor_upper: ``(n_thresholds,)`` its ``level`` quantile (a count: the
            smallest repeat's count at or above the quantile).
        fdr_memorised: Patients on the audit's FDR list with p̄_OUT < τ (None without a list).
        fdr_predictable: Patients on the FDR list with p̄_OUT ≥ τ.
    """

    attribute: str
    value: str
    n_patients: int
    predictable: int
    predictable_interval: np.ndarray
    median_out_confidence: float
    thresholds: np.ndarray
    exposed: np.ndarray
    memorised: np.ndarray
    memorised_interval: np.ndarray
    predictable_exposed: np.ndarray
    predictable_exposed_interval: np.ndarray
    memorised_floor: np.ndarray
    memorised_floor_upper: np.ndarray
    fdr_memorised: int | None = None
    fdr_predictable: int | None = None


@dataclass(frozen=True)
class MemorisationSplit:
    """The memorised-vs-predictable split of exposed patients, per subgroup.

    Attributes:
        predictable_confidence: τ: a patient with p̄_OUT ≥ τ is predictable from the population.
        confidence: Two-sided confidence of the intervals.
        repeats: Null re-labellings behind the floors.
        level: Quantile of the repeats given as the floor's upper end.
        aggregation: How a patient's baseline is taken from their records (``max``: the most
            exposed record's; ``mean``: the mean over records).
        rows: The whole cohort first, then every value of every subgroup attribute.
        out_confidence: ``(n_patients,)`` float64 p̄_OUT of every patient.
        category: ``(n_patients,)`` str at the lowest threshold: ``memorised``,
            ``predictable from the population`` or ``not exposed`` (``patient_risk.csv``-sized).
    """

    predictable_confidence: float
    confidence: float
    repeats: int
    level: float
    aggregation: str
    rows: tuple[MemorisationRow, ...]
    out_confidence: np.ndarray = field(metadata=NOT_IN_JSON)
    category: np.ndarray = field(metadata=NOT_IN_JSON)

    @property
    def cohort(self) -> MemorisationRow:
        """The whole-cohort row."""
        return self.rows[0]


def out_model_confidence(signals: np.ndarray, record_membership: np.ndarray) -> np.ndarray:
    """Mean probability of the true label under the models that did not train on each record.

    Args:
        signals: ``(K, n_records)`` signal φ = log p_y − log(1 − p_y).
        record_membership: ``(K, n_records)`` bool membership.

    Returns:
        ``(n_records,)`` float64 mean of σ(φ) over OUT models (NaN without OUT models).

    Example:
        >>> signals = np.array([[0.0, 5.0], [np.log(3.0), -5.0]])
        >>> members = np.array([[True, False], [False, True]])
        >>> out_model_confidence(signals, members).round(3).tolist()
        [0.75, 0.993]
    """
    outside = ~np.asarray(record_membership, dtype=bool)
    probability = expit(np.asarray(signals, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(outside, probability, 0.0).sum(axis=0) / outside.sum(axis=0)


def patient_baseline(
    record_confidence: np.ndarray,
    record_auc: np.ndarray,
    record_patient: np.ndarray,
    *,
    n_patients: int,
    how: str,
) -> np.ndarray:
    """Each patient's population baseline, from the records their risk comes from.

    With ``max`` a patient's AUC is their most exposed record's, so their baseline is that
    record's; with ``mean`` it is the mean over their records.

    Example:
        >>> patient_baseline(np.array([0.9, 0.2, 0.6]), np.array([0.5, 0.95, 0.7]),
        ...     np.array([0, 0, 1]), n_patients=2, how="max").tolist()
        [0.2, 0.6]
    """
    if how == "mean":
        return aggregate_by_patient(
            record_confidence, record_patient, n_patients=n_patients, how="mean"
        )
    filled = np.where(np.isnan(record_auc), -np.inf, record_auc)
    order = np.lexsort((-filled, record_patient))  # by patient, most exposed record first
    first = np.r_[True, record_patient[order][1:] != record_patient[order][:-1]]
    baseline = np.full(n_patients, np.nan)
    baseline[record_patient[order][first]] = record_confidence[order][first]
    return baseline


def memorisation_split(
    *,
    signals: np.ndarray,
    membership: np.ndarray,
    record_patient: np.ndarray,
    patient_labels: np.ndarray,
    record_auc: np.ndarray,
    patient_auc: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    thresholds: tuple[float, ...],
    predictable_confidence: float,
    aggregation: str = "max",
    fdr_exposed: np.ndarray | None = None,
    confidence: float = 0.95,
    repeats: int = 20,
    level: float = 0.95,
    seed: int = 0,
) -> MemorisationSplit:
    """Splits the exposed patients into memorised and predictable, per subgroup, with floors.

    Args:
        signals: ``(K, n_records)`` float64 signals, models in complementary pairs.
        membership: ``(K, n_patients)`` bool membership.
        record_patient: ``(n_records,)`` patient index of every record.
        patient_labels: ``(n_patients,)`` label strata of the design (for the null's masks).
        record_auc: ``(n_records,)`` per-record attack AUC.
        patient_auc: ``(n_patients,)`` per-patient attack AUC.
        attributes: Subgroup name -> ``(n_patients,)`` value.
        thresholds: Patient AUC thresholds above which a patient is exposed.
        predictable_confidence: τ in (0.5, 1).
        aggregation: ``max`` or ``mean``, as the patient AUC was aggregated.
        fdr_exposed: ``(n_patients,)`` bool, the audit's FDR list, to split too.
        confidence: Two-sided confidence of the intervals.
        repeats: Null re-labellings for the floors (≥ 1).
        level: Upper quantile of the floors.
        seed: Seed of the null's re-labellings.

    Returns:
        The split.

    Raises:
        ConfigError: If τ or the repeats are out of range.
    """
    if not 0.5 < predictable_confidence < 1:
        raise ConfigError(
            f"audit.predictable_confidence must be in (0.5, 1), got {predictable_confidence}"
        )
    if repeats < 1:
        raise ConfigError(f"audit.null_repeats must be >= 1, got {repeats}")
    n_patients = membership.shape[1]
    record_membership = membership[:, record_patient]
    baseline = patient_baseline(
        out_model_confidence(signals, record_membership),
        record_auc,
        record_patient,
        n_patients=n_patients,
        how=aggregation,
    )
    predictable = baseline >= predictable_confidence
    limits = np.asarray(thresholds, dtype=np.float64)
    null_auc = _null_patient_auc(
        signals, membership, record_patient, patient_labels, aggregation, repeats, seed
    )
    groups = [(WHOLE_COHORT, WHOLE_COHORT, np.ones(n_patients, dtype=bool))]
    for attribute, values in attributes.items():
        groups += [(attribute, str(value), values == value) for value in np.unique(values)]
    rows = tuple(
        _row(
            attribute,
            value,
            members,
            patient_auc=patient_auc,
            baseline=baseline,
            predictable=predictable,
            null_auc=null_auc,
            limits=limits,
            fdr_exposed=fdr_exposed,
            confidence=confidence,
            level=level,
        )
        for attribute, value, members in groups
    )
    with np.errstate(invalid="ignore"):
        exposed = patient_auc > limits[0] if limits.size else np.zeros(n_patients, dtype=bool)
    category = np.where(exposed, np.where(predictable, PREDICTABLE, MEMORISED), NOT_EXPOSED)
    return MemorisationSplit(
        predictable_confidence=predictable_confidence,
        confidence=confidence,
        repeats=repeats,
        level=level,
        aggregation=aggregation,
        rows=rows,
        out_confidence=baseline,
        category=category,
    )


def proportion_interval(successes: np.ndarray, trials: int, *, confidence: float) -> np.ndarray:
    """Two-sided Clopper–Pearson interval of ``successes / trials``, shape ``(..., 2)``.

    Example:
        >>> proportion_interval(np.array([0, 10]), 10, confidence=0.95).round(3).tolist()
        [[0.0, 0.308], [0.692, 1.0]]
    """
    if trials == 0:
        return np.full((*np.shape(successes), 2), np.nan)
    one_sided = (1 + confidence) / 2
    return np.stack(
        [
            clopper_pearson_lower(successes, trials, confidence=one_sided),
            clopper_pearson_upper(successes, trials, confidence=one_sided),
        ],
        axis=-1,
    )


def _null_patient_auc(
    signals: np.ndarray,
    membership: np.ndarray,
    record_patient: np.ndarray,
    patient_labels: np.ndarray,
    aggregation: str,
    repeats: int,
    seed: int,
) -> np.ndarray:
    """``(repeats, n_patients)`` patient AUCs on membership-free, re-labelled signals."""
    relabellings = null_relabellings(
        signals=signals,
        membership=membership,
        record_patient=record_patient,
        patient_labels=patient_labels,
        aggregation=aggregation,
        repeats=repeats,
        rng=np.random.default_rng([seed, 0x6D656D6F]),  # "memo": apart from the other streams
    )
    return np.stack([auc for _, _, auc in relabellings])


def _row(
    attribute: str,
    value: str,
    members: np.ndarray,
    *,
    patient_auc: np.ndarray,
    baseline: np.ndarray,
    predictable: np.ndarray,
    null_auc: np.ndarray,
    limits: np.ndarray,
    fdr_exposed: np.ndarray | None,
    confidence: float,
    level: float,
) -> MemorisationRow:
    n = int(members.sum())
    learned = members & ~predictable
    with np.errstate(invalid="ignore"):
        exposed = patient_auc[members, None] > limits
        memorised = (patient_auc[learned, None] > limits).sum(axis=0)
        floor = (null_auc[:, learned, None] > limits).sum(axis=1)
    predictable_exposed = exposed.sum(axis=0) - memorised
    n_predictable = int(predictable[members].sum())
    return MemorisationRow(
        attribute=attribute,
        value=value,
        n_patients=n,
        predictable=n_predictable,
        predictable_interval=proportion_interval(
            np.asarray(n_predictable), n, confidence=confidence
        ),
        median_out_confidence=float(np.nanmedian(baseline[members])) if n else float("nan"),
        thresholds=limits,
        exposed=exposed.sum(axis=0),
        memorised=memorised,
        memorised_interval=proportion_interval(memorised, n, confidence=confidence),
        predictable_exposed=predictable_exposed,
        predictable_exposed_interval=proportion_interval(
            predictable_exposed, n, confidence=confidence
        ),
        memorised_floor=floor.mean(axis=0).astype(np.float64),
        memorised_floor_upper=np.quantile(floor, level, axis=0, method="higher").astype(np.float64),
        fdr_memorised=None if fdr_exposed is None else int(np.sum(fdr_exposed & learned)),
        fdr_predictable=(
            None if fdr_exposed is None else int(np.sum(fdr_exposed & members & predictable))
        ),
    )
