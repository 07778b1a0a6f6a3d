"""Harm weighting: which sensitive groups carry the exposed tail, ranked by severity × exposure.

A leak is worse for some patients than for others: disclosing that a trial participant is a
haemophiliac or injects drugs harms them more than disclosing a blood pressure. The data config
names a severity per subgroup value (``data.severity``: attribute -> {value -> low, medium or
high}; the reserved attribute ``label`` rates the classes), with weights 1, 2 and 3; unrated
subgroups count as low. Every subgroup is ranked by its weight times its exposed share (patients
with a per-patient AUC above the first risk threshold), whose two-sided Clopper–Pearson interval
scales with it; and a sensitive subgroup (rated medium or high) "carries the exposed tail" when
its exposed share is detectably above the cohort's: the lower end of its interval exceeds the
cohort's exposed share. Only subgroup labels are reported, never raw values.

Patients are ranked too, but only those on the audit's FDR-controlled exposure list (their
exposure is statistically established, `dptrain.audit.fdr`): by their severity weight (the highest
rating among their subgroups and class) times their attack advantage's lower bound,
``2 · AUC_lower − 1`` clipped at 0, so a confidently exposed haemophiliac outranks a marginally
exposed one and both outrank an unrated patient with the same evidence. The ranking goes to
``patient_risk.csv`` (``severity``, ``rated_as``, ``harm_score``, ``harm_rank``); the report shows
the top of it by rank, subgroup label and risk only, never by id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from dptrain.audit.memorisation import proportion_interval
from dptrain.errors import ConfigError

SEVERITY_WEIGHTS = {"low": 1, "medium": 2, "high": 3}
LABEL = "label"
UNRATED = "low"
NOT_IN_JSON = {"json": False}
TOP_PATIENTS = 10  # exposed patients the report lists by harm (patient_risk.csv has them all)


def severity_weight(level: str) -> int:
    """The weight of a severity level (``low`` 1, ``medium`` 2, ``high`` 3).

    Raises:
        ConfigError: For an unknown level.

    Example:
        >>> severity_weight("high")
        3
    """
    if level not in SEVERITY_WEIGHTS:
        raise ConfigError(f"severity must be one of {list(SEVERITY_WEIGHTS)}, got {level!r}")
    return SEVERITY_WEIGHTS[level]


@dataclass(frozen=True)
class HarmRow:
    """One subgroup's harm-weighted exposure.

    Attributes:
        attribute: Subgroup attribute (``label`` for a class).
        value: Subgroup value, as the report names it.
        severity: ``low``, ``medium`` or ``high`` (``low`` when unrated).
        rated: Whether the data config rates this subgroup.
        n_patients: Patients in the subgroup.
        exposed: Patients above the threshold.
        exposed_interval: ``(2,)`` Clopper–Pearson interval of ``exposed / n_patients``.
        weighted: Severity weight × exposed share.
        weighted_interval: ``(2,)`` weight × the share's interval.
        share_of_exposed: The subgroup's share of all exposed patients (NaN if none is).
        share_of_cohort: The subgroup's share of all patients.
        carries_tail: Rated medium or high, and its exposed share's lower bound is above the
            cohort's exposed share.
    """

    attribute: str
    value: str
    severity: str
    rated: bool
    n_patients: int
    exposed: int
    exposed_interval: np.ndarray
    weighted: float
    weighted_interval: np.ndarray
    share_of_exposed: float
    share_of_cohort: float
    carries_tail: bool


@dataclass(frozen=True)
class PatientHarm:
    """One FDR-exposed patient's place in the harm ranking (no id: the report shows these).

    Attributes:
        rank: 1 for the most harmful.
        severity: The patient's highest severity (``low`` when unrated).
        rated_as: The subgroup that gives it (``hemo = hemophilia``), empty when unrated.
        auc: The patient's attack AUC.
        auc_lower: Its one-sided lower confidence bound.
        score: Weight × max(0, 2 · ``auc_lower`` − 1).
    """

    rank: int
    severity: str
    rated_as: str
    auc: float
    auc_lower: float
    score: float


@dataclass(frozen=True)
class HarmRanking:
    """Subgroups ranked by severity × exposed share, highest first.

    Attributes:
        threshold: Patient AUC above which a patient counts as exposed.
        confidence: Two-sided confidence of the intervals.
        exposed_patients: Exposed patients in the cohort.
        cohort_share: Exposed share of the whole cohort.
        rows: Every subgroup value, ranked (ties broken by the share's lower bound).
        top_patients: The highest-ranked FDR-exposed patients (at most `TOP_PATIENTS`), without
            ids: the report's per-patient ranking.
        patient_severity: ``(n_patients,)`` str, each patient's highest severity.
        patient_rated_as: ``(n_patients,)`` str, the subgroup (``attribute = value``) that gives
            it, empty when unrated.
        patient_score: ``(n_patients,)`` float64, weight × max(0, 2 · AUC lower bound − 1); NaN
            when no lower bound was given.
        patient_rank: ``(n_patients,)`` int64, 1 for the most harmful FDR-exposed patient, 0 for
            patients not on the FDR list.
    """

    threshold: float
    confidence: float
    exposed_patients: int
    cohort_share: float
    rows: tuple[HarmRow, ...]
    top_patients: tuple[PatientHarm, ...] = ()
    patient_severity: np.ndarray = field(default=None, metadata=NOT_IN_JSON)
    patient_rated_as: np.ndarray = field(default=None, metadata=NOT_IN_JSON)
    patient_score: np.ndarray = field(default=None, metadata=NOT_IN_JSON)
    patient_rank: np.ndarray = field(default=None, metadata=NOT_IN_JSON)

    @property
    def tail_groups(self) -> tuple[HarmRow, ...]:
        """Sensitive subgroups that carry the exposed tail, in rank order."""
        return tuple(row for row in self.rows if row.carries_tail)


def harm_ranking(
    *,
    patient_auc: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    patient_labels: np.ndarray | None,
    class_names: tuple[str, ...],
    severity: Mapping[str, Mapping[str, str]],
    value_names: Mapping[str, Mapping[str, str]],
    threshold: float,
    confidence: float,
    patient_lower_bound: np.ndarray | None = None,
    patient_exposed: np.ndarray | None = None,
) -> HarmRanking:
    """Ranks every subgroup value (and class) by severity × exposed share, and exposed patients.

    Args:
        patient_auc: ``(n_patients,)`` per-patient attack AUC.
        attributes: Subgroup name -> ``(n_patients,)`` report-safe value.
        patient_labels: ``(n_patients,)`` class index of every patient; None (multilabel
            tasks, where a patient has no single class) adds no class rows.
        class_names: Name of each class.
        severity: Attribute (or ``label``) -> {value -> severity}; a value is a subgroup's
            reported name, or its raw value when ``value_names`` renames it (``"1"`` for
            ``hemophilia``); for ``label`` a class name or index.
        value_names: The data config's raw value -> reported name per attribute.
        threshold: Patient AUC above which a patient is exposed.
        confidence: Two-sided confidence of the intervals.
        patient_lower_bound: ``(n_patients,)`` one-sided lower bound of each patient's AUC;
            None ranks no patient.
        patient_exposed: ``(n_patients,)`` bool, the FDR-controlled exposure list; only these
            patients are ranked. None ranks no patient.

    Returns:
        The ranking.

    Raises:
        ConfigError: If a rated attribute or value does not exist, or a severity is unknown.

    Example:
        >>> ranking = harm_ranking(patient_auc=np.array([0.9, 0.5, 0.95, 0.5]),
        ...     attributes={"hiv": np.array(["yes", "no", "yes", "no"])},
        ...     patient_labels=np.zeros(4, int), class_names=("a", "b"),
        ...     severity={"hiv": {"1": "high"}}, value_names={"hiv": {"1": "yes"}},
        ...     threshold=0.8, confidence=0.95)
        >>> [(row.value, row.weighted) for row in ranking.rows][:2]
        [('yes', 3.0), ('a', 0.5)]
    """
    groups = {name: np.asarray(values).astype(str) for name, values in attributes.items()}
    if patient_labels is not None:
        labels = np.asarray(patient_labels, dtype=np.int64)
        groups[LABEL] = np.asarray(class_names, dtype=str)[labels]
    rated = _resolve(severity, groups, value_names, class_names)
    with np.errstate(invalid="ignore"):
        exposed = np.asarray(patient_auc) > threshold
    n_exposed = int(exposed.sum())
    cohort_share = n_exposed / len(exposed) if len(exposed) else float("nan")
    rows = []
    for attribute, values in groups.items():
        for value in np.unique(values):
            members = values == value
            n, hits = int(members.sum()), int(exposed[members].sum())
            level = rated.get((attribute, str(value)), UNRATED)
            weight = SEVERITY_WEIGHTS[level]
            interval = proportion_interval(np.asarray(hits), n, confidence=confidence)
            rows.append(
                HarmRow(
                    attribute=attribute,
                    value=str(value),
                    severity=level,
                    rated=(attribute, str(value)) in rated,
                    n_patients=n,
                    exposed=hits,
                    exposed_interval=interval,
                    weighted=weight * hits / n,
                    weighted_interval=weight * interval,
                    share_of_exposed=hits / n_exposed if n_exposed else float("nan"),
                    share_of_cohort=n / len(values),
                    carries_tail=bool(weight > 1 and interval[0] > cohort_share),
                )
            )
    rows.sort(key=lambda row: (-row.weighted, -row.weighted_interval[0], not row.rated))
    severity_of, rated_as = _patient_severity(groups, rated, len(exposed))
    weight = np.array([SEVERITY_WEIGHTS[level] for level in severity_of], dtype=np.float64)
    score, rank, top = _rank_patients(
        weight, severity_of, rated_as, np.asarray(patient_auc), patient_lower_bound, patient_exposed
    )
    return HarmRanking(
        threshold=float(threshold),
        confidence=confidence,
        exposed_patients=n_exposed,
        cohort_share=cohort_share,
        rows=tuple(rows),
        top_patients=top,
        patient_severity=severity_of,
        patient_rated_as=rated_as,
        patient_score=score,
        patient_rank=rank,
    )


def _patient_severity(
    groups: Mapping[str, np.ndarray], rated: Mapping[tuple[str, str], str], n_patients: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each patient's highest severity and the subgroup giving it (first rated one on ties)."""
    best = np.zeros(n_patients, dtype=np.int64)
    severity = np.full(n_patients, UNRATED, dtype=object)
    source = np.full(n_patients, "", dtype=object)
    for (attribute, value), level in rated.items():
        weight = SEVERITY_WEIGHTS[level]
        members = (groups[attribute] == value) & (weight > best)
        best[members] = weight
        severity[members] = level
        source[members] = f"{attribute} = {value}"
    return severity.astype(str), source.astype(str)


def _rank_patients(
    weight: np.ndarray,
    severity: np.ndarray,
    rated_as: np.ndarray,
    auc: np.ndarray,
    lower_bound: np.ndarray | None,
    exposed: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, tuple[PatientHarm, ...]]:
    """Harm scores, ranks (0 = not on the FDR list) and the report's top patients."""
    n_patients = len(weight)
    rank = np.zeros(n_patients, dtype=np.int64)
    if lower_bound is None or exposed is None:
        return np.full(n_patients, np.nan), rank, ()
    lower = np.asarray(lower_bound, dtype=np.float64)
    score = weight * np.clip(2 * np.nan_to_num(lower, nan=0.5) - 1, 0, None)
    listed = np.flatnonzero(np.asarray(exposed, dtype=bool))
    # Highest score first; then the heavier rating, the larger AUC, the cohort order.
    order = listed[np.lexsort((listed, -auc[listed], -weight[listed], -score[listed]))]
    rank[order] = np.arange(1, len(order) + 1)
    top = tuple(
        PatientHarm(
            rank=int(rank[i]),
            severity=str(severity[i]),
            rated_as=str(rated_as[i]),
            auc=float(auc[i]),
            auc_lower=float(lower[i]),
            score=float(score[i]),
        )
        for i in order[:TOP_PATIENTS]
    )
    return score, rank, top


def _resolve(
    severity: Mapping[str, Mapping[str, str]],
    groups: Mapping[str, np.ndarray],
    value_names: Mapping[str, Mapping[str, str]],
    class_names: tuple[str, ...],
) -> dict[tuple[str, str], str]:
    """(attribute, reported value) -> severity, checking every rated name exists."""
    rated = {}
    for attribute, by_value in severity.items():
        if attribute not in groups:
            raise ConfigError(
                f"severity: {attribute!r} is not a subgroup attribute (data.subgroup_columns "
                f"{sorted(set(groups) - {LABEL})}) or {LABEL!r}"
            )
        present = set(groups[attribute].tolist())
        for raw, level in by_value.items():
            name = str(value_names.get(attribute, {}).get(str(raw), raw))
            if attribute == LABEL and str(raw).isdigit() and int(raw) < len(class_names):
                name = class_names[int(raw)]
            if name not in present:
                raise ConfigError(
                    f"severity.{attribute}: value {raw!r} is not one of its subgroups "
                    f"{sorted(present)}"
                )
            severity_weight(level)
            rated[(attribute, name)] = level
    return rated
