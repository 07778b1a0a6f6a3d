import numpy as np
import pytest

from dptrain.data.cohort import Cohort
from dptrain.errors import DataError


def make_cohort() -> Cohort:
    return Cohort.from_records(
        name="toy",
        features=np.arange(12, dtype=np.float32).reshape(6, 2),
        labels=np.array([0, 1, 1, 0, 0, 1]),
        patient_ids=np.array([7, 7, 3, 9, 9, 9]),
        attributes={"sex": {7: "F", 3: "M", 9: "F"}},
    )


def test_patients_in_order_of_first_appearance_with_record_map():
    cohort = make_cohort()
    assert cohort.patients.tolist() == ["7", "3", "9"]
    assert cohort.record_patient.tolist() == [0, 0, 1, 2, 2, 2]
    assert cohort.patient_ids.tolist() == ["7", "7", "3", "9", "9", "9"]
    assert cohort.records_per_patient.tolist() == [2, 1, 3]
    assert cohort.attributes["sex"].tolist() == ["F", "M", "F"]


def test_subset_keeps_all_and_only_the_records_of_the_chosen_patients():
    cohort = make_cohort()
    subset = cohort.subset_by_patients(np.array([2, 0]))
    assert subset.patients.tolist() == ["9", "7"]
    assert subset.n_records == 5
    assert sorted(subset.patient_ids.tolist()) == ["7", "7", "9", "9", "9"]
    assert subset.attributes["sex"].tolist() == ["F", "F"]
    # features travel with their record
    assert subset.features[subset.patient_ids == "7"][:, 0].tolist() == [0.0, 2.0]


def test_record_mask_expands_patient_masks_for_many_models():
    cohort = make_cohort()
    masks = np.array([[True, False, False], [False, True, True]])
    assert cohort.record_mask(masks).tolist() == [
        [True, True, False, False, False, False],
        [False, False, True, True, True, True],
    ]


def test_patient_label_is_the_majority_label_ties_to_the_larger_class():
    cohort = make_cohort()  # patient 7: labels 0,1 (tie -> 1); 3: 1; 9: 0,0,1 -> 0
    assert cohort.patient_labels.tolist() == [1, 1, 0]


def test_task_inferred_from_labels():
    common = {"name": "t", "features": np.zeros((3, 1)), "patient_ids": [1, 2, 3]}
    assert Cohort.from_records(labels=[0, 1, 0], **common).task == "binary"
    assert Cohort.from_records(labels=[0, 2, 1], **common).task == "multiclass"
    multilabel = Cohort.from_records(labels=[[0, 1], [1, 1], [0, 0]], **common)
    assert multilabel.task == "multilabel" and multilabel.n_classes == 2


def test_summary_has_counts_but_no_feature_values():
    summary = make_cohort().summary()
    assert summary["n_patients"] == 3 and summary["n_records"] == 6
    assert summary["max_records_per_patient"] == 3
    assert summary["label_counts"] == {"0": 3, "1": 3}
    assert "features" not in summary and "11.0" not in str(summary)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(DataError, match="one row per record"):
        Cohort(
            name="bad",
            features=np.zeros((3, 1)),
            labels=np.zeros(2, dtype=np.int64),
            patients=np.array(["a"]),
            record_patient=np.zeros(3, dtype=np.int64),
        )
