"""Utility on held-out patients, overall and per subgroup, with intervals and counts.

Subgroup counts travel with every metric: a per-subgroup AUROC from twelve patients means little,
and the report must let the reader see that. Every metric also carries a 95 % percentile bootstrap
interval over test patients (`dptrain.training.bootstrap`: a patient is resampled with all of
their records), and a metric that is undefined says why instead of being NaN in a table.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize

from dptrain.data.cohort import Cohort, Task
from dptrain.errors import DataError
from dptrain.training.bootstrap import bootstrap_intervals

METRIC_NAMES = ("auroc", "auprc", "accuracy", "balanced_accuracy")
CONFIDENCE = 0.95
N_RESAMPLES = 1000
INTERVAL_METHOD = "percentile bootstrap over test patients, all records of a drawn patient kept"
# Below these sizes the test split gets a warning. With fewer than 10 patients in a class an AUROC's
# standard error is typically 0.05-0.1 (Hanley & McNeil 1982), so its 95 % interval spans ±0.1-0.2
# and a difference between runs means little; 100 patients keep an accuracy's interval within
# about ±0.1. External-validation guidance asks for more (≥ 100 events, Collins et al. 2016): these
# are floors below which the numbers are close to uninformative, not targets.
MIN_TEST_PATIENTS = 100
MIN_TEST_PATIENTS_PER_CLASS = 10
# A bootstrap over fewer patients than this gives intervals that are too narrow to mean anything.
MIN_INTERVAL_PATIENTS = 10


@dataclass(frozen=True)
class UtilityMetrics:
    """Classification metrics on one set of patients, with intervals and the reasons for gaps.

    Attributes:
        auroc: ROC AUC (binary; macro one-vs-rest for multiclass; macro over labels for multilabel).
        auprc: Average precision, averaged the same way.
        accuracy: Share of records with the arg-max class (multilabel: per label, averaged).
        balanced_accuracy: Mean per-class recall (multilabel: averaged over labels).
        n_patients: Number of patients.
        n_records: Number of records.
        auroc_per_class: One AUROC per label (multilabel) or per class, one-vs-rest
            (multiclass); empty for binary tasks, whose AUROC is already the one class's.
        auroc_ci, auprc_ci, accuracy_ci, balanced_accuracy_ci: ``(low, high)`` bootstrap
            interval at `UtilityReport.confidence`; ``(nan, nan)`` where none (see
            ``not_computable``).
        patients_per_class: Patients with at least one record of each class (multilabel: with a
            positive record for each label).
        not_computable: metric (or ``metric_ci`` for an interval) -> why it has no value here,
            e.g. ``"only class 'event' among these records"``.
    """

    auroc: float
    auprc: float
    accuracy: float
    balanced_accuracy: float
    n_patients: int
    n_records: int
    auroc_per_class: tuple[float, ...] = ()
    auroc_ci: tuple[float, float] = (np.nan, np.nan)
    auprc_ci: tuple[float, float] = (np.nan, np.nan)
    accuracy_ci: tuple[float, float] = (np.nan, np.nan)
    balanced_accuracy_ci: tuple[float, float] = (np.nan, np.nan)
    patients_per_class: tuple[int, ...] = ()
    not_computable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UtilityReport:
    """Utility overall and for every value of every subgroup attribute.

    Attributes:
        overall: Metrics on all test patients.
        subgroups: attribute -> value -> metrics on the test patients with that value.
        confidence: Level of every interval.
        n_resamples: Bootstrap resamples behind every interval.
        interval_method: How intervals were computed, in words.
        notes: Warnings about the test split (too few patients or too few of a class).
    """

    overall: UtilityMetrics
    subgroups: dict[str, dict[str, UtilityMetrics]]
    confidence: float = CONFIDENCE
    n_resamples: int = N_RESAMPLES
    interval_method: str = INTERVAL_METHOD
    notes: tuple[str, ...] = ()


def utility_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    task: Task,
    n_patients: int | None = None,
    record_patient: np.ndarray | None = None,
    class_names: tuple[str, ...] = (),
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int | np.random.SeedSequence = 0,
) -> UtilityMetrics:
    """Computes the four metrics for one set of records, with patient-bootstrap intervals.

    Args:
        labels: ``(n,)`` class indices or ``(n, L)`` 0/1 labels.
        probabilities: ``(n, C)`` class probabilities or ``(n, L)`` label probabilities.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        n_patients: Number of patients behind the records (reported); counted from
            ``record_patient`` when omitted.
        record_patient: ``(n,)`` the patient of each record: the unit the bootstrap resamples.
            Without it there are no intervals (the records' patients are unknown).
        class_names: Class (or label) names for the reasons a metric is not computable.
        n_resamples: Bootstrap resamples (0: no intervals).
        confidence: Two-sided level of the intervals.
        seed: Seed of the resamples.

    Returns:
        The metrics; AUROC/AUPRC are NaN, with a reason, when only one class is present.

    Example:
        >>> m = utility_metrics(np.array([0, 1, 1, 0]),
        ...     np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]]), task="binary",
        ...     n_patients=4)
        >>> m.auroc, m.accuracy
        (0.75, 0.75)
    """
    if n_patients is None:
        if record_patient is None:
            raise ValueError("utility_metrics needs n_patients or record_patient")
        n_patients = len(np.unique(record_patient))
    point = _point_metrics(labels, probabilities, task)
    reasons = {
        name: reason
        for name, reason in _undefined_reasons(labels, task, class_names).items()
        if np.isnan(point[name])
    }
    intervals: dict[str, tuple[float, float]] = {}
    if record_patient is not None and n_resamples > 0:
        if n_patients < MIN_INTERVAL_PATIENTS:
            reasons |= {
                f"{name}_ci": f"{n_patients} patient(s) < {MIN_INTERVAL_PATIENTS} to resample"
                for name in METRIC_NAMES
            }
        else:
            intervals, gaps = bootstrap_intervals(
                labels,
                probabilities,
                task=task,
                record_patient=record_patient,
                n_resamples=n_resamples,
                confidence=confidence,
                rng=np.random.default_rng(seed),
            )
            reasons |= {f"{name}_ci": reason for name, reason in gaps.items()}
    for name in METRIC_NAMES:  # no interval around a value that is not there
        if name in reasons:
            intervals.pop(name, None)
            reasons[f"{name}_ci"] = reasons[name]
    return UtilityMetrics(
        **point,
        n_patients=int(n_patients),
        n_records=len(labels),
        **{f"{name}_ci": intervals.get(name, (np.nan, np.nan)) for name in METRIC_NAMES},
        patients_per_class=_patients_per_class(labels, task, record_patient),
        not_computable=reasons,
    )


def _point_metrics(labels: np.ndarray, probabilities: np.ndarray, task: Task) -> dict:
    """The point estimates, from scikit-learn; NaN where a metric is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single-class subsets: NaN is the answer, not a warning
        if task == "multilabel":
            predictions = (probabilities >= 0.5).astype(np.int64)
            per_label = [
                (
                    _safe(roc_auc_score, labels[:, j], probabilities[:, j]),
                    _safe(average_precision_score, labels[:, j], probabilities[:, j]),
                    accuracy_score(labels[:, j], predictions[:, j]),
                    balanced_accuracy_score(labels[:, j], predictions[:, j]),
                )
                for j in range(labels.shape[1])
            ]
            auroc, auprc, accuracy, balanced = np.nanmean(np.array(per_label), axis=0)
            per_class = tuple(float(row[0]) for row in per_label)
        else:
            predictions = probabilities.argmax(axis=1)
            accuracy = accuracy_score(labels, predictions)
            balanced = balanced_accuracy_score(labels, predictions)
            per_class = ()
            if task == "binary":
                auroc = _safe(roc_auc_score, labels, probabilities[:, 1])
                auprc = _safe(average_precision_score, labels, probabilities[:, 1])
            else:
                classes = np.arange(probabilities.shape[1])
                onehot = label_binarize(labels, classes=classes)
                auroc = _safe(roc_auc_score, onehot, probabilities, average="macro")
                auprc = _safe(average_precision_score, onehot, probabilities, average="macro")
                per_class = tuple(
                    _safe(roc_auc_score, onehot[:, j], probabilities[:, j]) for j in classes
                )
    return {
        "auroc": float(auroc),
        "auprc": float(auprc),
        "accuracy": float(accuracy),
        "balanced_accuracy": float(balanced),
        "auroc_per_class": per_class,
    }


def _undefined_reasons(labels: np.ndarray, task: Task, class_names: tuple[str, ...]) -> dict:
    """Why AUROC and AUPRC would be undefined on these labels, in words."""
    if task == "multilabel":
        reason = "no label has both positive and negative records here"
    else:
        present = np.unique(labels)
        name = class_names[present[0]] if len(class_names) > present[0] else str(present[0])
        if len(present) < 2:
            reason = f"only class {name!r} among these {len(labels)} record(s)"
        else:
            n_classes = max(len(class_names), int(labels.max()) + 1)
            absent = [
                class_names[c] if c < len(class_names) else str(c)
                for c in range(n_classes)
                if c not in present
            ]
            reason = (
                f"class(es) {', '.join(map(repr, absent))} have no records here (one-vs-rest "
                "needs every class)"
                if absent
                else "undefined for these records"
            )
    return {"auroc": reason, "auprc": reason}


def _patients_per_class(
    labels: np.ndarray, task: Task, record_patient: np.ndarray | None
) -> tuple[int, ...]:
    """Patients with a record of each class (multilabel: a positive record of each label)."""
    patients = np.arange(len(labels)) if record_patient is None else np.asarray(record_patient)
    if task == "multilabel":
        return tuple(len(np.unique(patients[labels[:, j] == 1])) for j in range(labels.shape[1]))
    n_classes = max(int(labels.max(initial=0)) + 1, 2)
    return tuple(len(np.unique(patients[labels == c])) for c in range(n_classes))


def check_test_split(test: Cohort) -> None:
    """Refuses a test split on which AUROC and AUPRC cannot be computed at all.

    Raises:
        DataError: If every test record has the same class (multilabel: if no label has both
            values), naming the minimum: a test patient of each class.
    """
    if test.task == "multilabel":
        if not any(len(np.unique(test.labels[:, j])) > 1 for j in range(test.labels.shape[1])):
            raise DataError(
                f"the test split ({test.n_patients} patients) has no label with both positive "
                "and negative records, so no AUROC or AUPRC can be computed; it needs at least "
                "one test patient with and one without a label: raise split.test_fraction or "
                "use more patients"
            )
        return
    present = np.unique(test.labels)
    if len(present) < 2:
        name = test.class_names[present[0]] if len(test.class_names) > present[0] else present[0]
        raise DataError(
            f"the test split has {test.n_patients} patient(s) whose records are all class "
            f"{name!r}, so AUROC and AUPRC cannot be computed; they need at least one test "
            f"patient of each of {test.n_classes} classes: raise split.test_fraction or use "
            "more patients"
        )


def evaluate(
    cohort: Cohort,
    probabilities: np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> UtilityReport:
    """Utility of predictions on a (test) cohort, overall and per subgroup value, with intervals.

    Subgroups are patient attributes (sex, age band) and record attributes (view, device): a
    record-level subgroup's metrics use the records with that value, and its patient count is the
    number of patients with at least one such record. Each interval resamples the patients of the
    set it describes (all test patients, or a subgroup's), each with an independent seed drawn
    from ``seed``.

    Args:
        cohort: The held-out patients.
        probabilities: ``(n_records, n_outputs)`` model probabilities for the cohort's records.
        n_resamples: Bootstrap resamples per interval.
        confidence: Two-sided level of the intervals.
        seed: Seed of the bootstrap.

    Returns:
        The utility report, with warnings when the test split is small.
    """
    streams = iter(np.random.SeedSequence(seed).spawn(1 + _n_subgroups(cohort)))
    options = {
        "task": cohort.task,
        "class_names": cohort.class_names,
        "n_resamples": n_resamples,
        "confidence": confidence,
    }
    overall = utility_metrics(
        cohort.labels,
        probabilities,
        n_patients=cohort.n_patients,
        record_patient=cohort.record_patient,
        seed=next(streams),
        **options,
    )
    record_values = {
        attribute: values[cohort.record_patient] for attribute, values in cohort.attributes.items()
    } | dict(cohort.record_attributes)
    subgroups: dict[str, dict[str, UtilityMetrics]] = {}
    for attribute, values in record_values.items():
        subgroups[attribute] = {}
        for value in sorted(np.unique(values), key=subgroup_order):
            members = values == value
            subgroups[attribute][str(value)] = utility_metrics(
                cohort.labels[members],
                probabilities[members],
                record_patient=cohort.record_patient[members],
                seed=next(streams),
                **options,
            )
    return UtilityReport(
        overall=overall,
        subgroups=subgroups,
        confidence=confidence,
        n_resamples=n_resamples,
        notes=small_test_split_notes(overall, cohort),
    )


def small_test_split_notes(overall: UtilityMetrics, cohort: Cohort) -> tuple[str, ...]:
    """A warning when the test split has fewer patients, or patients of a class, than the floors.

    Example:
        >>> m = UtilityMetrics(0.8, 0.7, 0.9, 0.8, n_patients=20, n_records=20,
        ...     patients_per_class=(17, 3))
        >>> toy = Cohort.from_records(name="t", features=np.zeros((2, 1)), labels=[0, 1],
        ...     patient_ids=["a", "b"], class_names=("alive", "dead"))
        >>> print(small_test_split_notes(m, toy)[0][:67])
        WARNING: the test split is small (20 patients; 3 with class 'dead')
    """
    kind = "label" if cohort.task == "multilabel" else "class"
    names = cohort.class_names or tuple(str(c) for c in range(len(overall.patients_per_class)))
    rare = [
        f"{count} with {kind} {name!r}"
        for name, count in zip(names, overall.patients_per_class)
        if count < MIN_TEST_PATIENTS_PER_CLASS
    ]
    if overall.n_patients >= MIN_TEST_PATIENTS and not rare:
        return ()
    return (
        f"WARNING: the test split is small ({overall.n_patients} patients"
        + (f"; {', '.join(rare)}" if rare else "")
        + f"): utility intervals are wide and the point values unreliable. dptrain warns below "
        f"{MIN_TEST_PATIENTS} test patients or {MIN_TEST_PATIENTS_PER_CLASS} test patients per "
        f"{kind}; use more patients or a larger split.test_fraction.",
    )


def subgroup_order(value: str) -> tuple:
    """Sort key of subgroup values: bands (``<39``, ``39-54``, ``≥73``) by their lower edge.

    Example:
        >>> sorted(["54-73", "<39", "missing", "≥73", "39-54"], key=subgroup_order)
        ['<39', '39-54', '54-73', '≥73', 'missing']
    """
    if value.startswith("<"):
        return (0, -np.inf, value)
    low = value.removeprefix("≥").split("-", 1)[0]
    try:
        return (0, float(low), value)
    except ValueError:
        return (1, 0.0, value)


def _n_subgroups(cohort: Cohort) -> int:
    """Number of (attribute, value) subgroups of a cohort."""
    return sum(len(np.unique(v)) for v in cohort.attributes.values()) + sum(
        len(np.unique(v)) for v in cohort.record_attributes.values()
    )


def _safe(metric, labels: np.ndarray, scores: np.ndarray, **options) -> float:
    """A score metric, or NaN where it is undefined (a single class among the labels)."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    try:
        return float(metric(labels, scores, **options))
    except ValueError:  # e.g. a class absent from a multiclass subset
        return float("nan")
