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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dptrain.audit.memorisation import proportion_interval
from dptrain.errors import ConfigError

SEVERITY_WEIGHTS = {"low": 1, "medium": 2, "high": 3}
LABEL = "label"
UNRATED = "low"


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
class HarmRanking:
    """Subgroups ranked by severity × exposed share, highest first.

    Attributes:
        threshold: Patient AUC above which a patient counts as exposed.
        confidence: Two-sided confidence of the intervals.
        exposed_patients: Exposed patients in the cohort.
        cohort_share: Exposed share of the whole cohort.
        rows: Every subgroup value, ranked (ties broken by the share's lower bound).
    """

    threshold: float
    confidence: float
    exposed_patients: int
    cohort_share: float
    rows: tuple[HarmRow, ...]

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
) -> HarmRanking:
    """Ranks every subgroup value (and class) by severity × exposed share.

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
    return HarmRanking(
        threshold=float(threshold),
        confidence=confidence,
        exposed_patients=n_exposed,
        cohort_share=cohort_share,
        rows=tuple(rows),
    )


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
