import numpy as np
import pytest

from dptrain.audit.metrics import RecordVulnerability
from dptrain.audit.patients import aggregate_by_patient, patient_risk
from dptrain.audit.subgroups import subgroup_risk
from dptrain.data.cohort import Cohort


def cohort_with_visits() -> Cohort:
    # patient a: 3 records, b: 1, c: 2
    return Cohort.from_records(
        name="visits",
        features=np.zeros((6, 1)),
        labels=[0, 1, 0, 1, 0, 1],
        patient_ids=["a", "a", "b", "a", "c", "c"],
        attributes={"sex": {"a": "F", "b": "M", "c": "M"}},
    )


def vulnerability(auc, se, lower) -> RecordVulnerability:
    n = len(auc)
    return RecordVulnerability(
        auc=np.array(auc),
        standard_error=np.array(se),
        lower_bound=np.array(lower),
        num_in=np.full(n, 4),
        num_out=np.full(n, 4),
        confidence=0.95,
    )


def test_patient_risk_is_the_max_over_their_records():
    cohort = cohort_with_visits()
    risk = patient_risk(
        vulnerability(
            [0.6, 0.9, 0.55, 0.7, 0.5, 0.8],
            [0.1, 0.02, 0.1, 0.1, 0.1, 0.05],
            [0.4, 0.85, 0.4, 0.65, 0.3, 0.7],
        ),
        cohort,
    )
    assert risk.patient_ids.tolist() == ["a", "b", "c"]
    assert risk.auc.tolist() == [0.9, 0.55, 0.8]
    assert risk.standard_error.tolist() == [0.02, 0.1, 0.05]  # of the patient's worst record
    assert risk.lower_bound.tolist() == [0.85, 0.4, 0.7]
    assert risk.n_records.tolist() == [3, 1, 2]


def test_mean_aggregation_and_nan_records():
    cohort = cohort_with_visits()
    risk = patient_risk(
        vulnerability([0.6, np.nan, 0.5, 0.8, 0.5, 0.7], [0.1] * 6, [0.5] * 6), cohort, how="mean"
    )
    assert risk.auc == pytest.approx([0.7, 0.5, 0.6])
    assert (risk.lower_bound <= risk.auc).all()


def test_aggregate_by_patient_for_many_models():
    scores = np.array([[1.0, 5.0, 2.0, 0.0], [3.0, 1.0, 1.0, 7.0]])
    record_patient = np.array([0, 1, 0, 1])
    assert aggregate_by_patient(scores, record_patient, n_patients=2).tolist() == [[2, 5], [3, 7]]
    assert aggregate_by_patient(scores, record_patient, n_patients=2, how="mean").tolist() == [
        [1.5, 2.5],
        [2.0, 4.0],
    ]


def test_subgroups_compare_with_the_whole_cohort():
    cohort = cohort_with_visits()
    risk = patient_risk(
        vulnerability(
            [0.6, 0.97, 0.55, 0.7, 0.5, 0.8], [0.01] * 6, [0.5, 0.96, 0.5, 0.6, 0.4, 0.7]
        ),
        cohort,
    )
    rows = subgroup_risk(risk, thresholds=(0.9, 0.95))
    everyone, female, male = rows
    assert (everyone.value, everyone.n_patients) == ("all patients", 3)
    assert (female.value, female.n_patients, female.share_above.tolist()) == ("F", 1, [1.0, 1.0])
    assert male.share_above.tolist() == [0.0, 0.0]
    assert female.share_above_lower_bound.tolist() == [1.0, 1.0]
    assert everyone.share_above.tolist() == pytest.approx([1 / 3, 1 / 3])
