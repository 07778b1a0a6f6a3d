"""Confidence intervals for utility metrics: a percentile bootstrap over patients, vectorised.

Records of one patient are not independent (a patient's visits share their illness), so the
bootstrap resamples *patients* with replacement and keeps all records of every resampled patient.
A resample is a vector of patient multiplicities; every metric is computed as a weighted metric
with those multiplicities as record weights, for all resamples at once: a ``(resamples, records)``
weight matrix and one sort of the scores replace a thousand scikit-learn calls, so 1000 resamples
of a few thousand records cost well under a second.

The weighted metrics equal scikit-learn's with ``sample_weight`` (tested against them), and with
unit weights the point estimates the report shows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

# Resamples of a metric whose value is undefined (a resample without one of the classes) are left
# out; below this share of defined resamples the interval is not given at all.
MIN_DEFINED_SHARE = 0.9
# Largest number of (resample, record) weights held in memory at once.
CHUNK_ELEMENTS = 2_000_000


def bootstrap_intervals(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    task: str,
    record_patient: np.ndarray,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """Percentile intervals of AUROC, AUPRC, accuracy and balanced accuracy over patient resamples.

    Args:
        labels: ``(n,)`` class indices or ``(n, L)`` 0/1 labels.
        probabilities: ``(n, C)`` class probabilities or ``(n, L)`` label probabilities.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        record_patient: ``(n,)`` the patient of each record (any labels; resampled as units).
        n_resamples: Bootstrap resamples.
        confidence: Two-sided level, e.g. 0.95 for the 2.5th and 97.5th percentiles.
        rng: Source of the resamples.

    Returns:
        metric -> (low, high) for the metrics with an interval, and metric -> reason for those
        without one (too few resamples where the metric is defined).

    Example:
        >>> labels = np.array([0, 1] * 20)
        >>> scores = np.linspace(0, 1, 40)
        >>> intervals, _ = bootstrap_intervals(labels, np.column_stack([1 - scores, scores]),
        ...     task="binary", record_patient=np.arange(40), n_resamples=200, confidence=0.95,
        ...     rng=np.random.default_rng(0))
        >>> low, high = intervals["auroc"]
        >>> bool(low < 0.525 < high)
        True
    """
    _, patient = np.unique(record_patient, return_inverse=True)
    n_patients = int(patient.max()) + 1
    chunk = max(1, min(n_resamples, CHUNK_ELEMENTS // max(len(labels), 1)))
    values: dict[str, list[np.ndarray]] = {}
    for weights in _resample_weights(patient, n_patients, n_resamples, chunk, rng):
        for name, metric in weighted_metrics(labels, probabilities, weights, task=task).items():
            values.setdefault(name, []).append(metric)
    tail = 100 * (1 - confidence) / 2
    intervals: dict[str, tuple[float, float]] = {}
    reasons: dict[str, str] = {}
    for name, parts in values.items():
        resampled = np.concatenate(parts)
        defined = np.isfinite(resampled)
        if defined.mean() < MIN_DEFINED_SHARE:
            reasons[name] = (
                f"defined in only {defined.mean():.0%} of patient resamples (a class is too rare "
                "to resample)"
            )
            continue
        low, high = np.percentile(resampled[defined], [tail, 100 - tail])
        intervals[name] = (float(low), float(high))
    return intervals, reasons


def _resample_weights(
    patient: np.ndarray, n_patients: int, n_resamples: int, chunk: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """``(n_records, chunk)`` record weights: how often each record's patient was drawn.

    Records are the rows so that sums over records (sorted by score) run over contiguous memory.
    """
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        drawn = rng.integers(0, n_patients, size=(size, n_patients))
        offsets = np.arange(size)[:, None] * n_patients
        counts = np.bincount((drawn + offsets).ravel(), minlength=size * n_patients)
        yield np.ascontiguousarray(counts.reshape(size, n_patients).T[patient], dtype=np.float64)
        done += size


def weighted_metrics(
    labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray, *, task: str
) -> dict[str, np.ndarray]:
    """The four utility metrics under each column of record weights, averaged as `utility_metrics`.

    Args:
        labels: ``(n,)`` class indices or ``(n, L)`` 0/1 labels.
        probabilities: ``(n, C)`` or ``(n, L)`` probabilities.
        weights: ``(n, b)`` non-negative record weights (one column per bootstrap resample).
        task: ``binary``, ``multiclass`` or ``multilabel``.

    Returns:
        metric -> ``(b,)`` values, NaN where a metric is undefined under a column's weights.
    """
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means: not defined here
        if task == "multilabel":
            per_label = [
                _binary_metrics(labels[:, j] == 1, probabilities[:, j], weights)
                for j in range(labels.shape[1])
            ]
            return {
                name: np.nanmean(np.stack([m[name] for m in per_label]), axis=0)
                for name in per_label[0]
            }
        correct = probabilities.argmax(axis=1) == labels
        recalls = [_recall(correct, labels == c, weights) for c in range(probabilities.shape[1])]
        metrics = {
            "accuracy": (correct @ weights) / weights.sum(axis=0),
            "balanced_accuracy": np.nanmean(np.stack(recalls), axis=0),
        }
        if task == "binary":
            metrics["auroc"], metrics["auprc"] = ranking_metrics(
                labels == 1, probabilities[:, 1], weights
            )
        else:  # macro one-vs-rest: undefined (as in scikit-learn) when any class is absent
            per_class = [
                ranking_metrics(labels == c, probabilities[:, c], weights)
                for c in range(probabilities.shape[1])
            ]
            metrics["auroc"] = np.mean([auroc for auroc, _ in per_class], axis=0)
            metrics["auprc"] = np.mean([auprc for _, auprc in per_class], axis=0)
    return metrics


def _recall(correct: np.ndarray, members: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted share of ``members`` predicted correctly; NaN without member weight."""
    return ((correct & members) @ weights) / (members @ weights)


def _binary_metrics(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> dict:
    """One label of a multilabel task: the binary metrics at threshold 0.5."""
    correct = (scores >= 0.5) == positive
    auroc, auprc = ranking_metrics(positive, scores, weights)
    return {
        "auroc": auroc,
        "auprc": auprc,
        "accuracy": (correct @ weights) / weights.sum(axis=0),
        "balanced_accuracy": np.nanmean(
            np.stack([_recall(correct, positive, weights), _recall(correct, ~positive, weights)]),
            axis=0,
        ),
    }


def ranking_metrics(
    positive: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision under each column of record weights, from one sort.

    AUC is the weighted Mann–Whitney statistic with ties counted half (what scikit-learn's
    trapezoidal ROC AUC equals); average precision is scikit-learn's step-wise sum of precision
    at each distinct score times the recall gained there. Both are undefined (NaN) under a column
    without positive or without negative weight, as `utility_metrics` treats a single-class set.

    Args:
        positive: ``(n,)`` bool, the positive records.
        scores: ``(n,)`` scores, higher meaning positive.
        weights: ``(n, b)`` record weights.

    Returns:
        ``(b,)`` AUCs and ``(b,)`` average precisions.

    Example:
        >>> auroc, auprc = ranking_metrics(np.array([False, True, True]),
        ...     np.array([0.1, 0.9, 0.1]), np.ones((3, 1)))
        >>> auroc.tolist(), auprc.round(4).tolist()
        ([0.75], [0.8333])
    """
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ordered_weights = weights[order]
    # (n_distinct_scores, b): positive and negative weight at each distinct score, ascending.
    pos = np.add.reduceat(ordered_weights * positive[order, None], starts, axis=0)
    neg = np.add.reduceat(ordered_weights, starts, axis=0) - pos
    total_positive, total_negative = pos.sum(axis=0), neg.sum(axis=0)
    defined = (total_positive > 0) & (total_negative > 0)

    negatives_below = np.cumsum(neg, axis=0) - neg
    concordant = (pos * (negatives_below + 0.5 * neg)).sum(axis=0)
    auroc = concordant / np.where(defined, total_positive * total_negative, 1)

    # Flagging every record scored at or above a distinct score, from the highest score down.
    true_positives = total_positive - np.cumsum(pos, axis=0) + pos
    flagged = true_positives + total_negative - np.cumsum(neg, axis=0) + neg
    precision = true_positives / np.where(flagged > 0, flagged, 1)
    auprc = (pos * precision).sum(axis=0) / np.where(defined, total_positive, 1)
    return np.where(defined, auroc, np.nan), np.where(defined, auprc, np.nan)
