"""Patient-level splits and audit membership masks: drawn over patients, expanded to records.

No patient's records ever fall on both sides of a split, and in an audit a patient is in or out of a
model's training set with all of their records, because membership is a property of the patient.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class SplitConfig:
    """How the held-out test patients are chosen.

    Attributes:
        test_fraction: Share of patients held out to measure utility, stratified by label.
    """

    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"split.test_fraction must be in (0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class CohortSplit:
    """A cohort cut into training and test patients.

    Attributes:
        train: The training patients with all their records.
        test: The held-out patients with all their records.
        train_patients: ``(n_train_patients,)`` int64 indices into the full cohort's ``patients``.
        test_patients: ``(n_test_patients,)`` int64 indices into the full cohort's ``patients``.
    """

    train: Cohort
    test: Cohort
    train_patients: np.ndarray
    test_patients: np.ndarray


def split_by_patient(cohort: Cohort, *, test_fraction: float, seed: int) -> CohortSplit:
    """Splits patients into train and test, stratified by each patient's label, seeded.

    Falls back to an unstratified split (with a warning) when a class has too few patients to be
    on both sides.

    Args:
        cohort: The full cohort.
        test_fraction: Share of patients in the test split.
        seed: Seed of the split.

    Returns:
        The split.

    Raises:
        DataError: If either side would be empty.

    Example:
        >>> cohort = Cohort.from_records(name="toy", features=np.zeros((8, 1)),
        ...     labels=[0, 1] * 4, patient_ids=[0, 0, 1, 1, 2, 2, 3, 3])
        >>> split = split_by_patient(cohort, test_fraction=0.5, seed=0)
        >>> split.train.n_patients, split.test.n_patients
        (2, 2)
    """
    n_test = round(test_fraction * cohort.n_patients)
    if n_test == 0 or n_test == cohort.n_patients:
        raise DataError(
            f"split.test_fraction={test_fraction} leaves an empty split for "
            f"{cohort.n_patients} patients (change split.test_fraction or use more patients)"
        )
    patient_indices = np.arange(cohort.n_patients)
    try:
        train_patients, test_patients = train_test_split(
            patient_indices, test_size=n_test, random_state=seed, stratify=cohort.patient_labels
        )
    except ValueError:
        log.warning("too few patients per class to stratify the split; splitting unstratified")
        train_patients, test_patients = train_test_split(
            patient_indices, test_size=n_test, random_state=seed
        )
    train_patients, test_patients = np.sort(train_patients), np.sort(test_patients)
    return CohortSplit(
        train=cohort.subset_by_patients(train_patients),
        test=cohort.subset_by_patients(test_patients),
        train_patients=train_patients,
        test_patients=test_patients,
    )


def official_split(cohort: Cohort) -> CohortSplit:
    """The data set's own split: its ``train`` patients train, its ``test`` patients test.

    Validation patients (``val``) are in neither: nothing in a run selects a model on them. They
    stay in the audit pool, which is the whole cohort.

    Raises:
        ConfigError: If the data set has no official split.

    Example:
        >>> cohort = Cohort.from_records(name="toy", features=np.zeros((3, 1)), labels=[0, 1, 1],
        ...     patient_ids=["a", "b", "c"], official_split={"a": "train", "b": "val", "c": "test"})
        >>> split = official_split(cohort)
        >>> split.train.patients.tolist(), split.test.patients.tolist()
        (['a'], ['c'])
    """
    if cohort.official_split is None:
        raise ConfigError(
            f"data.split=official: {cohort.name!r} has no official split; use data.split=patient"
        )
    train_patients = np.flatnonzero(cohort.official_split == "train")
    test_patients = np.flatnonzero(cohort.official_split == "test")
    if len(train_patients) == 0 or len(test_patients) == 0:
        raise DataError(f"data.split=official: {cohort.name!r} has an empty train or test split")
    return CohortSplit(
        train=cohort.subset_by_patients(train_patients),
        test=cohort.subset_by_patients(test_patients),
        train_patients=train_patients,
        test_patients=test_patients,
    )


def balanced_membership_masks(
    *, patient_labels: np.ndarray, num_models: int, seed: int
) -> np.ndarray:
    """Random halves of the patients for the audit's models, in complementary pairs.

    Model ``2j`` trains on a random half of the patients (a half of every label stratum) and model
    ``2j + 1`` on the other half. So every patient is in exactly ``num_models / 2`` models and out
    of as many, which gives each patient the same number of IN and OUT observations, and all models
    train on the same number of patients (up to one per stratum).

    Args:
        patient_labels: ``(n_patients,)`` int label per patient, used as strata.
        num_models: Number of models K, even.
        seed: Seed of the masks.

    Returns:
        ``(num_models, n_patients)`` bool, True where the patient is in the model's training set.

    Example:
        >>> masks = balanced_membership_masks(patient_labels=np.array([0, 0, 1, 1]), num_models=4,
        ...     seed=0)
        >>> masks.sum(axis=0).tolist(), masks.sum(axis=1).tolist()
        ([2, 2, 2, 2], [2, 2, 2, 2])
    """
    if num_models < 2 or num_models % 2:
        raise ConfigError(f"audit.num_models must be an even number >= 2, got {num_models}")
    patient_labels = np.asarray(patient_labels)
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_models, len(patient_labels)), dtype=bool)
    for pair in range(num_models // 2):
        for stratum in np.unique(patient_labels):
            members = rng.permutation(np.flatnonzero(patient_labels == stratum))
            # Alternate which half gets the odd patient so model sizes stay balanced.
            half = (len(members) + (pair + int(stratum)) % 2) // 2
            masks[2 * pair, members[:half]] = True
        masks[2 * pair + 1] = ~masks[2 * pair]
    return masks
