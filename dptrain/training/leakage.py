"""Label leakage: a feature that alone predicts the label, or a test AUROC too good to be true.

An outcome-derived column left among the features (a follow-up time, a discharge code) makes a
model look excellent and means nothing: in the reported case a forgotten `lenfoll` raised the test
AUROC from 0.821 to 0.895. These checks cannot prove leakage, only point at it loudly, naming the
column and the fix. They read the training split only (the test split stays untouched) and never
print feature values.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from dptrain.data.cohort import Cohort
from dptrain.training.evaluate import UtilityReport

# A single column separating the classes this well on its own is almost never a real predictor.
SINGLE_FEATURE_AUROC = 0.99
# A test AUROC at or above this is checked for leakage before it is believed.
SUSPICIOUS_TEST_AUROC = 0.99
# Tables only: beyond this many inputs (pixels, samples) single inputs are not columns.
MAX_COLUMNS = 2000


def single_feature_auroc(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(n_features,)`` AUROC of each feature alone for a binary label, folded to ≥ 0.5.

    Missing values are left out feature by feature; a constant feature scores 0.5.

    Example:
        >>> x = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
        >>> single_feature_auroc(x, np.array([0, 0, 1, 1])).tolist()
        [1.0, 0.5]
    """
    scores = np.full(features.shape[1], 0.5)
    for column in range(features.shape[1]):
        values = features[:, column].astype(np.float64)
        known = np.isfinite(values)
        kept = labels[known]
        if known.sum() < 2 or len(np.unique(kept)) < 2 or np.ptp(values[known]) == 0:
            continue
        auc = roc_auc_score(kept, values[known])
        scores[column] = max(auc, 1.0 - auc)
    return scores


def label_leakage_notes(train: Cohort, utility: UtilityReport) -> tuple[str, ...]:
    """Warnings (``WARNING: ...``) when an input alone predicts the label, or test AUROC ≥ 0.99.

    Single inputs are checked on the training split; images and signals (no named columns) are
    left out. Empty for a clean run.
    """
    notes = []
    tabular = train.features.ndim == 2 and 0 < train.features.shape[1] <= MAX_COLUMNS
    if tabular and train.task == "binary" and train.feature_names:
        scores = single_feature_auroc(np.asarray(train.features), np.asarray(train.labels))
        for column in np.flatnonzero(scores >= SINGLE_FEATURE_AUROC):
            name = str(train.feature_names[column])
            source = name.split("=", 1)[0]  # a one-hot input names its column
            notes.append(
                f"WARNING: possible label leakage: the input {name!r} alone predicts the label "
                f"(AUROC {scores[column]:.3f} on the training split). If column {source!r} is "
                f"recorded after or from the outcome, exclude it: data.exclude_columns=[{source}]"
            )
    auroc = utility.overall.auroc
    if auroc is not None and np.isfinite(auroc) and auroc >= SUSPICIOUS_TEST_AUROC:
        notes.append(
            f"WARNING: test AUROC {auroc:.3f} is too good to be believed without a check for label "
            "leakage (an outcome-derived input, a duplicated label column, the same patient in "
            "both splits); run `dptrain --check-data` and review the inputs"
        )
    return tuple(notes)
