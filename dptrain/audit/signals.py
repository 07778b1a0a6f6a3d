"""Per-record membership signals: the logit-scaled confidence of the true label.

Carlini et al. (2022, "Membership Inference Attacks From First Principles") show that the
true-label confidence p_y is far from Gaussian across reference models, but its logit
φ = log p_y − log(1 − p_y) is close to Gaussian; every attack in :mod:`dptrain.audit.attacks`
consumes φ. Computing φ as ``log(p) − log(1 − p)`` from a softmax fails for confident models
(``1 − p`` rounds to 0 and φ becomes inf), so φ is computed from the logits directly.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from dptrain.errors import DataError

__all__ = ["true_label_confidence"]


def true_label_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logit-scaled confidence φ of each record's true label, computed stably from logits.

    Single-label (softmax) models: ``logits`` has shape (n, C) with C ≥ 2 and ``labels`` shape
    (n,) of class indices. Then p_y / (1 − p_y) = exp(z_y) / Σ_{j≠y} exp(z_j), so
    φ = z_y − logsumexp_{j≠y} z_j, which stays finite for any finite logits (Carlini et al. 2022
    compute the same quantity as log p_y − log Σ_{j≠y} p_j for the same reason).

    Multi-label (independent sigmoid) models: ``logits`` and ``labels`` both have shape (n, L),
    labels in {0, 1}. For a sigmoid output the logit of the true label's probability is the logit
    itself, so φ_l = z_l if y_l = 1 else −z_l. A record's signal is the mean φ_l over its positive
    classes (the findings a patient actually has, which memorisation concerns most); a record with
    no positive class uses the mean over all classes. A binary classifier with a single output
    logit is the case L = 1.

    Args:
        logits: Model outputs before the softmax / sigmoid, shape (n, C) or (n, L).
        labels: Class indices, shape (n,), for single-label; 0/1 indicators, shape (n, L), for
            multi-label.

    Returns:
        φ per record, shape (n,), float64.

    Raises:
        DataError: On mismatched shapes, non-finite logits, or labels out of range.

    Example:
        >>> logits = np.array([[2.0, 0.0, -1.0], [1e3, -1e3, 0.0]])
        >>> true_label_confidence(logits, np.array([0, 1])).round(3).tolist()
        [1.687, -2000.0]
        >>> multi = np.array([[3.0, -1.0], [3.0, -1.0]])
        >>> true_label_confidence(multi, np.array([[1, 0], [0, 0]])).tolist()
        [3.0, -1.0]
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise DataError(f"logits must have shape (n, C) with n ≥ 1, got {logits.shape}")
    if not np.all(np.isfinite(logits)):
        raise DataError("logits contain NaN or inf; check the model's forward pass")
    if labels.ndim == 1:
        return _single_label(logits, labels)
    if labels.shape == logits.shape:
        return _multi_label(logits, labels)
    raise DataError(
        f"labels must have shape ({logits.shape[0]},) or {logits.shape} to match logits "
        f"{logits.shape}, got {labels.shape}"
    )


def _single_label(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n, n_classes = logits.shape
    if n_classes < 2:
        raise DataError(f"single-label logits need C ≥ 2 classes, got {n_classes}")
    if labels.shape[0] != n or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"labels must be {n} integer class indices, got {labels.dtype} {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(
            f"labels must lie in [0, {n_classes - 1}], got {labels.min()}..{labels.max()}"
        )
    rows = np.arange(n)
    true_logit = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    return true_logit - logsumexp(others, axis=1)


def _multi_label(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if not np.all((labels == 0) | (labels == 1)):
        raise DataError("multi-label labels must be 0/1 indicators")
    positive = labels.astype(bool)
    per_class = np.where(positive, logits, -logits)
    n_positive = positive.sum(axis=1)
    mean_positive = (per_class * positive).sum(axis=1) / np.maximum(n_positive, 1)
    return np.where(n_positive > 0, mean_positive, per_class.mean(axis=1))
