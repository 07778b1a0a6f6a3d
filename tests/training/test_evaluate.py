import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from dptrain.data.cohort import Cohort
from dptrain.training.evaluate import evaluate, utility_metrics


def test_binary_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    positive = np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1)
    probabilities = np.column_stack([1 - positive, positive])
    metrics = utility_metrics(labels, probabilities, task="binary", n_patients=100)
    assert metrics.auroc == roc_auc_score(labels, positive)
    assert metrics.auprc == average_precision_score(labels, positive)
    assert metrics.balanced_accuracy == balanced_accuracy_score(labels, positive >= 0.5)
    assert (metrics.n_patients, metrics.n_records) == (100, 300)


def test_single_class_subset_gives_nan_not_an_error():
    metrics = utility_metrics(np.zeros(4, int), np.full((4, 2), 0.5), task="binary", n_patients=4)
    assert math.isnan(metrics.auroc) and math.isnan(metrics.auprc)
    assert metrics.accuracy == 1.0


def test_subgroups_are_per_patient_attribute_with_counts():
    cohort = Cohort.from_records(
        name="t",
        features=np.zeros((5, 1)),
        labels=[0, 1, 0, 1, 1],
        patient_ids=["a", "a", "b", "c", "c"],
        attributes={"sex": {"a": "F", "b": "M", "c": "M"}},
    )
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.4, 0.6]])
    report = evaluate(cohort, probabilities)
    assert report.overall.n_records == 5 and report.overall.auroc == 1.0
    female, male = report.subgroups["sex"]["F"], report.subgroups["sex"]["M"]
    assert (female.n_patients, female.n_records) == (1, 2)
    assert (male.n_patients, male.n_records) == (2, 3)
    assert male.accuracy == 1.0


def test_multiclass_and_multilabel_metrics_are_macro_averages():
    labels = np.array([0, 1, 2, 2])
    probabilities = np.eye(3)[labels] * 0.8 + 0.2 / 3
    multiclass = utility_metrics(labels, probabilities, task="multiclass", n_patients=4)
    assert multiclass.auroc == 1.0 and multiclass.accuracy == 1.0
    multilabel = utility_metrics(
        np.array([[1, 0], [0, 1], [1, 1]]),
        np.array([[0.9, 0.2], [0.1, 0.7], [0.6, 0.4]]),
        task="multilabel",
        n_patients=3,
    )
    assert multilabel.auroc == 1.0
    assert multilabel.accuracy == (1.0 + 2 / 3) / 2


def test_auroc_per_label_and_per_class_beside_the_macro_average():
    multilabel = utility_metrics(
        np.array([[1, 0], [0, 1], [1, 0], [0, 1]]),
        np.array([[0.9, 0.2], [0.1, 0.7], [0.6, 0.9], [0.7, 0.8]]),
        task="multilabel",
        n_patients=4,
    )
    assert multilabel.auroc_per_class == (0.75, 0.5)
    assert multilabel.auroc == pytest.approx(np.mean(multilabel.auroc_per_class))
    labels = np.array([0, 1, 2, 2])
    multiclass = utility_metrics(
        labels, np.eye(3)[labels] * 0.8 + 0.2 / 3, task="multiclass", n_patients=4
    )
    assert multiclass.auroc_per_class == (1.0, 1.0, 1.0)
    binary = utility_metrics(
        np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]), task="binary", n_patients=2
    )
    assert binary.auroc_per_class == ()
