"""Bootstrap intervals over test patients, the reasons a metric is missing, small-split checks."""

import json
import time

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    roc_auc_score,
)

from dptrain.data.cohort import Cohort
from dptrain.errors import DataError
from dptrain.reporting.results import to_plain
from dptrain.training.bootstrap import bootstrap_intervals, weighted_metrics
from dptrain.training.evaluate import (
    MIN_TEST_PATIENTS,
    check_test_split,
    evaluate,
    utility_metrics,
)


def _binary(n: int, seed: int = 0, ties: bool = True):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    positive = np.clip(labels * 0.3 + rng.random(n) * 0.7, 0, 1)
    if ties:
        positive = positive.round(1)  # many tied scores: ties must count half
    return labels, np.column_stack([1 - positive, positive])


def test_weighted_metrics_equal_scikit_learn_with_sample_weights():
    rng = np.random.default_rng(1)
    labels, probabilities = _binary(200)
    weights = rng.integers(0, 4, size=(200, 6)).astype(float)
    metrics = weighted_metrics(labels, probabilities, weights, task="binary")
    predictions = probabilities.argmax(axis=1)
    for b in range(6):
        w = weights[:, b]
        assert metrics["auroc"][b] == pytest.approx(
            roc_auc_score(labels, probabilities[:, 1], sample_weight=w)
        )
        assert metrics["auprc"][b] == pytest.approx(
            average_precision_score(labels, probabilities[:, 1], sample_weight=w)
        )
        assert metrics["accuracy"][b] == pytest.approx(
            accuracy_score(labels, predictions, sample_weight=w)
        )
        assert metrics["balanced_accuracy"][b] == pytest.approx(
            balanced_accuracy_score(labels, predictions, sample_weight=w)
        )


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_unit_weights_reproduce_the_point_estimates(task):
    rng = np.random.default_rng(2)
    if task == "multiclass":
        labels = rng.integers(0, 3, 150)
        probabilities = rng.dirichlet(np.ones(3), 150) + np.eye(3)[labels] * 0.3
        probabilities /= probabilities.sum(axis=1, keepdims=True)
    else:
        labels = rng.integers(0, 2, (150, 3))
        probabilities = np.clip(labels * 0.4 + rng.random((150, 3)) * 0.6, 0, 1)
    point = utility_metrics(labels, probabilities, task=task, n_patients=150)
    weighted = weighted_metrics(labels, probabilities, np.ones((150, 1)), task=task)
    for name in ("auroc", "auprc", "accuracy", "balanced_accuracy"):
        assert weighted[name][0] == pytest.approx(getattr(point, name)), name


def test_bootstrap_matches_a_naive_loop_over_resampled_patients():
    labels, probabilities = _binary(90, seed=3)
    record_patient = np.repeat(np.arange(30), 3)  # three records per patient
    intervals, reasons = bootstrap_intervals(
        labels,
        probabilities,
        task="binary",
        record_patient=record_patient,
        n_resamples=200,
        confidence=0.9,
        rng=np.random.default_rng(7),
    )
    assert reasons == {}
    drawn = np.random.default_rng(7).integers(0, 30, size=(200, 30))  # the same draws
    naive = []
    for patients in drawn:
        records = np.concatenate([np.flatnonzero(record_patient == p) for p in patients])
        naive.append(roc_auc_score(labels[records], probabilities[records, 1]))
    assert intervals["auroc"] == pytest.approx(tuple(np.percentile(naive, [5, 95])))


def test_patients_not_records_are_resampled():
    """Copies of a patient's record move together: the interval is that of one record each."""
    labels, probabilities = _binary(60, seed=4, ties=False)
    options = {"task": "binary", "n_resamples": 400, "seed": 5}
    single = utility_metrics(labels, probabilities, record_patient=np.arange(60), **options)
    copies = utility_metrics(
        np.repeat(labels, 4),
        np.repeat(probabilities, 4, axis=0),
        record_patient=np.repeat(np.arange(60), 4),
        **options,
    )
    as_if_independent = utility_metrics(
        np.repeat(labels, 4),
        np.repeat(probabilities, 4, axis=0),
        record_patient=np.arange(240),
        **options,
    )
    assert copies.auroc_ci == pytest.approx(single.auroc_ci)
    width = single.auroc_ci[1] - single.auroc_ci[0]
    assert as_if_independent.auroc_ci[1] - as_if_independent.auroc_ci[0] < 0.7 * width


def test_intervals_are_seeded_contain_the_estimate_and_shrink_with_patients():
    small_labels, small_probabilities = _binary(60, seed=6)
    large_labels, large_probabilities = _binary(2000, seed=6)
    small = utility_metrics(
        small_labels, small_probabilities, task="binary", record_patient=np.arange(60), seed=1
    )
    again = utility_metrics(
        small_labels, small_probabilities, task="binary", record_patient=np.arange(60), seed=1
    )
    other = utility_metrics(
        small_labels, small_probabilities, task="binary", record_patient=np.arange(60), seed=2
    )
    large = utility_metrics(
        large_labels, large_probabilities, task="binary", record_patient=np.arange(2000), seed=1
    )
    assert small.auroc_ci == again.auroc_ci != other.auroc_ci
    for name in ("auroc", "auprc", "accuracy", "balanced_accuracy"):
        low, high = getattr(small, f"{name}_ci")
        assert low <= getattr(small, name) <= high, name
    assert np.diff(large.auroc_ci)[0] < 0.5 * np.diff(small.auroc_ci)[0]


def test_a_thousand_resamples_of_thousands_of_records_are_fast():
    labels, probabilities = _binary(3000, seed=8)
    started = time.perf_counter()
    metrics = utility_metrics(
        labels, probabilities, task="binary", record_patient=np.repeat(np.arange(1000), 3)
    )
    assert time.perf_counter() - started < 3.0  # ~0.3 s alone; generous for a shared machine
    assert not np.isnan(metrics.auroc_ci).any()


def test_undefined_metrics_say_why_and_tiny_sets_get_no_interval():
    one_class = utility_metrics(
        np.zeros(12, int),
        np.full((12, 2), 0.5),
        task="binary",
        record_patient=np.arange(12),
        class_names=("alive", "dead"),
    )
    assert np.isnan(one_class.auroc) and "only class 'alive'" in one_class.not_computable["auroc"]
    assert "auroc_ci" in one_class.not_computable and np.isnan(one_class.auroc_ci).all()
    assert not np.isnan(one_class.accuracy_ci).any()  # accuracy is defined with one class
    tiny = utility_metrics(
        np.array([0, 1, 0]), np.full((3, 2), 0.5), task="binary", record_patient=np.arange(3)
    )
    assert "3 patient(s) < 10 to resample" in tiny.not_computable["auroc_ci"]
    rare = utility_metrics(  # one positive patient: most resamples have no positive
        np.r_[np.zeros(39, int), 1],
        np.column_stack([np.linspace(1, 0, 40), np.linspace(0, 1, 40)]),
        task="binary",
        record_patient=np.arange(40),
    )
    assert rare.auroc == 1.0 and "of patient resamples" in rare.not_computable["auroc_ci"]
    absent = utility_metrics(
        np.array([0, 1, 0, 1]),
        np.full((4, 3), 1 / 3),
        task="multiclass",
        n_patients=4,
        class_names=("a", "b", "c"),
    )
    assert "'c' have no records" in absent.not_computable["auroc"]


def _cohort(labels, patients, sex=None):
    ids = [f"p{p}" for p in patients]
    attributes = None if sex is None else {"sex": dict(zip(ids, sex))}
    return Cohort.from_records(
        name="t",
        features=np.zeros((len(labels), 1)),
        labels=labels,
        patient_ids=ids,
        attributes=attributes,
        class_names=("alive", "dead"),
    )


def test_small_test_split_is_warned_with_counts_per_class():
    labels = np.r_[np.zeros(37, int), np.ones(3, int)]
    cohort = _cohort(labels, range(40), sex=["F", "M"] * 20)
    report = evaluate(cohort, np.column_stack([1 - labels * 0.7, labels * 0.7]))
    assert len(report.notes) == 1 and report.notes[0].startswith("WARNING")
    assert "40 patients; 3 with class 'dead'" in report.notes[0]
    assert str(MIN_TEST_PATIENTS) in report.notes[0]
    assert report.overall.patients_per_class == (37, 3)
    assert set(report.subgroups["sex"]) == {"F", "M"}
    plain = to_plain(report)  # results.json: intervals beside values, never a NaN literal
    json.dumps(plain, allow_nan=False)
    assert plain["overall"]["auroc"] == 1.0 and len(plain["overall"]["auroc_ci"]) == 2
    large = np.r_[np.zeros(80, int), np.ones(40, int)]
    assert evaluate(_cohort(large, range(120)), np.column_stack([1 - large, large])).notes == ()


def test_a_test_split_with_one_class_is_refused_with_the_minimum():
    with pytest.raises(DataError, match=r"all class 'alive'.*at least one test patient of each"):
        check_test_split(_cohort(np.zeros(3, int), [0, 0, 1]))
    check_test_split(_cohort(np.array([0, 1]), [0, 0]))  # one patient, both classes: computable
