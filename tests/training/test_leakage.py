"""Label leakage is pointed at loudly, by column, and clean runs say nothing."""

import numpy as np

from dptrain.data.cohort import Cohort
from dptrain.training.evaluate import UtilityMetrics, UtilityReport
from dptrain.training.leakage import label_leakage_notes, single_feature_auroc


def cohort_with(leaky: bool) -> Cohort:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    features = rng.normal(size=(300, 3)).astype(np.float32)
    features[:, 1] += 0.5 * labels  # a real, moderate predictor
    if leaky:
        features[:, 2] = labels * 30 + rng.integers(0, 29, 300)  # e.g. follow-up days
    features[::7, 0] = np.nan
    return Cohort.from_records(
        name="toy",
        features=features,
        labels=labels,
        patient_ids=np.arange(300),
        feature_names=("age", "site=B", "lenfoll"),
    )


def utility(auroc: float) -> UtilityReport:
    metrics = UtilityMetrics(auroc, 0.5, 0.5, 0.5, n_patients=60, n_records=60)
    return UtilityReport(overall=metrics, subgroups={})


def test_a_single_outcome_derived_column_is_named_with_its_fix():
    notes = label_leakage_notes(cohort_with(leaky=True), utility(0.9))
    assert len(notes) == 1 and "'lenfoll' alone predicts the label (AUROC 1.000" in notes[0]
    assert notes[0].endswith("data.exclude_columns=[lenfoll]")


def test_clean_data_gives_no_warning_and_a_too_good_auroc_does():
    clean = cohort_with(leaky=False)
    assert label_leakage_notes(clean, utility(0.8)) == ()
    (note,) = label_leakage_notes(clean, utility(0.995))
    assert note.startswith("WARNING: test AUROC 0.995 is too good")


def test_single_feature_auroc_folds_and_skips_missing_and_constant_columns():
    x = np.array([[3.0, 1.0, np.nan], [2.0, 1.0, np.nan], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    scores = single_feature_auroc(x, np.array([0, 0, 1, 1]))
    assert scores.tolist() == [1.0, 0.5, 0.5]  # falling with the label counts; one class left
