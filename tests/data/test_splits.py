import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dptrain.data.cohort import Cohort
from dptrain.data.splits import SplitConfig, balanced_membership_masks, split_by_patient
from dptrain.errors import ConfigError, DataError


def cohort_from(records_per_patient: list[int], labels_seed: int) -> Cohort:
    rng = np.random.default_rng(labels_seed)
    patient_ids = np.repeat(np.arange(len(records_per_patient)), records_per_patient)
    return Cohort.from_records(
        name="p",
        features=rng.normal(size=(len(patient_ids), 2)),
        labels=rng.integers(0, 2, size=len(patient_ids)),
        patient_ids=patient_ids,
    )


@settings(max_examples=40, deadline=None)
@given(
    records=st.lists(st.integers(1, 5), min_size=4, max_size=60),
    fraction=st.floats(0.1, 0.9),
    seed=st.integers(0, 2**16),
)
def test_no_patient_in_two_splits_and_every_record_in_one(records, fraction, seed):
    cohort = cohort_from(records, seed)
    n_test = round(fraction * cohort.n_patients)
    if n_test in (0, cohort.n_patients):
        with pytest.raises(DataError, match="empty split"):
            split_by_patient(cohort, test_fraction=fraction, seed=seed)
        return
    split = split_by_patient(cohort, test_fraction=fraction, seed=seed)
    assert not set(split.train.patients) & set(split.test.patients)
    assert split.train.n_records + split.test.n_records == cohort.n_records
    assert split.test.n_patients == n_test
    again = split_by_patient(cohort, test_fraction=fraction, seed=seed)
    assert again.test.patients.tolist() == split.test.patients.tolist()


def test_split_is_stratified_by_patient_label():
    cohort = cohort_from([1] * 1000, labels_seed=0)
    split = split_by_patient(cohort, test_fraction=0.2, seed=1)
    assert abs(split.train.labels.mean() - split.test.labels.mean()) < 0.01


def test_split_config_validates_fraction():
    with pytest.raises(ConfigError, match=r"split.test_fraction must be in \(0, 1\), got 1.5"):
        SplitConfig(test_fraction=1.5)


@settings(max_examples=30, deadline=None)
@given(
    n_patients=st.integers(2, 80),
    pairs=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_membership_masks_are_balanced_and_complementary(n_patients, pairs, seed):
    labels = np.random.default_rng(seed).integers(0, 3, size=n_patients)
    masks = balanced_membership_masks(patient_labels=labels, num_models=2 * pairs, seed=seed)
    assert masks.shape == (2 * pairs, n_patients)
    assert (masks.sum(axis=0) == pairs).all()  # every patient IN in exactly K/2 models
    assert (masks[0::2] ^ masks[1::2]).all()  # pairs are complements
    sizes = masks.sum(axis=1)
    assert sizes.max() - sizes.min() <= len(np.unique(labels))
    again = balanced_membership_masks(patient_labels=labels, num_models=2 * pairs, seed=seed)
    assert (again == masks).all()


def test_membership_masks_are_random_halves_per_stratum():
    labels = np.array([0] * 50 + [1] * 10)
    masks = balanced_membership_masks(patient_labels=labels, num_models=40, seed=0)
    assert (masks[:, 50:].sum(axis=1) == 5).all()
    assert len({tuple(row) for row in masks}) == 40  # no two models train on the same half


def test_odd_number_of_models_is_rejected():
    with pytest.raises(ConfigError, match="even number"):
        balanced_membership_masks(patient_labels=np.zeros(4, int), num_models=3, seed=0)
