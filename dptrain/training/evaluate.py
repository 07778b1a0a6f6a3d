"""Utility on held-out patients, overall and per subgroup, with scikit-learn metrics.

Subgroup counts travel with every metric: a per-subgroup AUROC from twelve patients means little,
and the report must let the reader see that.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize

from dptrain.data.cohort import Cohort, Task

METRIC_NAMES = ("auroc", "auprc", "accuracy", "balanced_accuracy")


@dataclass(frozen=True)
class UtilityMetrics:
    """Classification metrics on one set of patients (NaN where a metric is undefined).

    Attributes:
        auroc: ROC AUC (binary; macro one-vs-rest for multiclass; macro over labels for multilabel).
        auprc: Average precision, averaged the same way.
        accuracy: Share of records with the arg-max class (multilabel: per label, averaged).
        balanced_accuracy: Mean per-class recall (multilabel: averaged over labels).
        n_patients: Number of patients.
        n_records: Number of records.
        auroc_per_class: One AUROC per label (multilabel) or per class, one-vs-rest
            (multiclass); empty for binary tasks, whose AUROC is already the one class's.
    """

    auroc: float
    auprc: float
    accuracy: float
    balanced_accuracy: float
    n_patients: int
    n_records: int
    auroc_per_class: tuple[float, ...] = ()


@dataclass(frozen=True)
class UtilityReport:
    """Utility overall and for every value of every subgroup attribute.

    Attributes:
        overall: Metrics on all test patients.
        subgroups: attribute -> value -> metrics on the test patients with that value.
    """

    overall: UtilityMetrics
    subgroups: dict[str, dict[str, UtilityMetrics]]


def utility_metrics(
    labels: np.ndarray, probabilities: np.ndarray, *, task: Task, n_patients: int
) -> UtilityMetrics:
    """Computes the four metrics for one set of records.

    Args:
        labels: ``(n,)`` class indices or ``(n, L)`` 0/1 labels.
        probabilities: ``(n, C)`` class probabilities or ``(n, L)`` label probabilities.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        n_patients: Number of patients behind the records (reported, not used).

    Returns:
        The metrics; AUROC/AUPRC are NaN when only one class is present.

    Example:
        >>> m = utility_metrics(np.array([0, 1, 1, 0]),
        ...     np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]]), task="binary",
        ...     n_patients=4)
        >>> m.auroc, m.accuracy
        (0.75, 0.75)
    """
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
    return UtilityMetrics(
        auroc=float(auroc),
        auprc=float(auprc),
        accuracy=float(accuracy),
        balanced_accuracy=float(balanced),
        n_patients=int(n_patients),
        n_records=len(labels),
        auroc_per_class=per_class,
    )


def evaluate(cohort: Cohort, probabilities: np.ndarray) -> UtilityReport:
    """Utility of predictions on a (test) cohort, overall and per subgroup value.

    Subgroups are patient attributes (sex, age band) and record attributes (view, device): a
    record-level subgroup's metrics use the records with that value, and its patient count is the
    number of patients with at least one such record.

    Args:
        cohort: The held-out patients.
        probabilities: ``(n_records, n_outputs)`` model probabilities for the cohort's records.

    Returns:
        The utility report.
    """
    overall = utility_metrics(
        cohort.labels, probabilities, task=cohort.task, n_patients=cohort.n_patients
    )
    record_values = {
        attribute: values[cohort.record_patient] for attribute, values in cohort.attributes.items()
    } | dict(cohort.record_attributes)
    subgroups: dict[str, dict[str, UtilityMetrics]] = {}
    for attribute, values in record_values.items():
        subgroups[attribute] = {
            str(value): utility_metrics(
                cohort.labels[values == value],
                probabilities[values == value],
                task=cohort.task,
                n_patients=len(np.unique(cohort.record_patient[values == value])),
            )
            for value in np.unique(values)
        }
    return UtilityReport(overall=overall, subgroups=subgroups)


def _safe(metric, labels: np.ndarray, scores: np.ndarray, **options) -> float:
    """A score metric, or NaN where it is undefined (a single class among the labels)."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    try:
        return float(metric(labels, scores, **options))
    except ValueError:  # e.g. a class absent from a multiclass subset
        return float("nan")
