"""The one dataset type every modality loads into: records that belong to patients.

Membership is a property of the patient, not of a record, so a `Cohort` keeps, beside the inputs and
labels, the patient each record belongs to and the subgroup attributes of every patient. Splits,
audit membership masks and per-patient leakage are all drawn over ``patients`` and expanded to
records through ``record_patient``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dptrain.data.preprocessing import Preprocessing, Standardize
from dptrain.data.records import LazyRecords, Records, chunks, record_shape, take
from dptrain.errors import DataError

Task = Literal["binary", "multiclass", "multilabel"]


@dataclass(frozen=True)
class Cohort:
    """Records with labels, the patient of every record, and patient- and record-level attributes.

    Attributes:
        name: A short name of the data set, used in reports.
        features: ``(n_records, *record_shape)`` inputs of any modality, in memory or lazy
            (`LazyRecords`): tables float32 (NaN marks a missing value), images uint8
            ``(C, H, W)`` until a batch is formed, signals float32 ``(leads, samples)``.
        labels: ``(n_records,)`` int64 class indices (binary, multiclass) or
            ``(n_records, n_labels)`` int64 in {0, 1} (multilabel).
        patients: ``(n_patients,)`` str, each patient's id as the user gave it, unique.
        record_patient: ``(n_records,)`` int64 index into ``patients``.
        attributes: subgroup name -> ``(n_patients,)`` str value per patient (e.g. ``"sex"``).
        feature_names: one name per feature column (tables) or an empty tuple (signals, images).
        class_names: one name per class (binary, multiclass) or per label (multilabel).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        record_attributes: subgroup name -> ``(n_records,)`` str value per record, for metadata
            that varies between a patient's records (view, body site, device, acquisition year).
        preprocessing: How records become model inputs, fitted on each training split
            (`Standardize` for tables and signals, `ImageNormalize` for images).
        notes: Facts about the data the report must state (e.g. "each image is its own patient").
        official_split: ``(n_patients,)`` str ``train`` / ``val`` / ``test`` where the data set
            comes with its own split (MedMNIST, PTB-XL folds), else None.

    Example:
        >>> cohort = Cohort.from_records(
        ...     name="toy", features=np.zeros((3, 2), np.float32), labels=np.array([0, 1, 1]),
        ...     patient_ids=np.array(["a", "a", "b"]), attributes={"sex": {"a": "F", "b": "M"}},
        ... )
        >>> cohort.n_patients, cohort.n_records, cohort.records_per_patient.tolist()
        (2, 3, [2, 1])
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    patients: np.ndarray
    record_patient: np.ndarray
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    task: Task = "binary"
    record_attributes: Mapping[str, np.ndarray] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Standardize)
    notes: tuple[str, ...] = ()
    official_split: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_records = len(self.features)
        if len(self.labels) != n_records or len(self.record_patient) != n_records:
            raise DataError(
                f"cohort {self.name!r}: features ({n_records}), labels ({len(self.labels)}) and "
                f"patient ids ({len(self.record_patient)}) must have one row per record"
            )
        for attribute, values in self.attributes.items():
            if len(values) != len(self.patients):
                raise DataError(
                    f"cohort {self.name!r}: attribute {attribute!r} has {len(values)} values for "
                    f"{len(self.patients)} patients"
                )
        if self.official_split is not None and len(self.official_split) != len(self.patients):
            raise DataError(f"cohort {self.name!r}: official_split needs one value per patient")
        for attribute, values in self.record_attributes.items():
            if len(values) != n_records:
                raise DataError(
                    f"cohort {self.name!r}: record attribute {attribute!r} has {len(values)} "
                    f"values for {n_records} records"
                )
            if attribute in self.attributes:
                raise DataError(
                    f"cohort {self.name!r}: {attribute!r} is both a patient and a record attribute"
                )

    @classmethod
    def from_records(
        cls,
        *,
        name: str,
        features: np.ndarray,
        labels: np.ndarray,
        patient_ids: np.ndarray,
        attributes: Mapping[str, Mapping[str, str]] | None = None,
        feature_names: tuple[str, ...] = (),
        class_names: tuple[str, ...] = (),
        task: Task | None = None,
        record_attributes: Mapping[str, np.ndarray] | None = None,
        preprocessing: Preprocessing | None = None,
        notes: tuple[str, ...] = (),
        official_split: Mapping[str, str] | None = None,
    ) -> Cohort:
        """Builds a cohort from per-record patient ids (any hashable ids, kept as strings).

        Args:
            name: Data set name.
            features: ``(n_records, ...)`` inputs: floating arrays become float32, uint8 arrays
                and `LazyRecords` are kept as they are.
            labels: ``(n_records,)`` class indices or ``(n_records, n_labels)`` 0/1 labels.
            patient_ids: ``(n_records,)`` the patient of each record.
            attributes: subgroup name -> {patient id -> value}.
            feature_names: Names of the feature columns.
            class_names: Names of the classes; default ``("0", "1", ...)``.
            task: Inferred from the labels when omitted.
            record_attributes: subgroup name -> ``(n_records,)`` value of every record.
            preprocessing: The modality's preprocessing; default `Standardize` (tables).
            notes: Facts about the data for the report.
            official_split: patient id -> ``train`` / ``val`` / ``test``, the data set's own split.

        Returns:
            The cohort, patients in order of first appearance.
        """
        ids = np.asarray(patient_ids).astype(str)
        patients, first_index, record_patient = np.unique(
            ids, return_index=True, return_inverse=True
        )
        order = np.argsort(first_index, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        patients, record_patient = patients[order], rank[record_patient].astype(np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if task is None:
            task = "multilabel" if labels.ndim == 2 else "binary"
            if labels.ndim == 1 and labels.size and labels.max() > 1:
                task = "multiclass"
        if not class_names:
            n_classes = labels.shape[1] if labels.ndim == 2 else max(int(labels.max()) + 1, 2)
            class_names = tuple(str(c) for c in range(n_classes))
        patient_attributes = {}
        for attribute, by_patient in (attributes or {}).items():
            by_id = {str(patient): str(value) for patient, value in by_patient.items()}
            patient_attributes[attribute] = np.array([by_id[p] for p in patients])
        return cls(
            name=name,
            features=_as_records(features),
            labels=labels,
            patients=patients,
            record_patient=record_patient,
            attributes=patient_attributes,
            feature_names=tuple(feature_names),
            class_names=tuple(class_names),
            task=task,
            record_attributes={
                attribute: np.asarray(values).astype(str)
                for attribute, values in (record_attributes or {}).items()
            },
            preprocessing=preprocessing or Standardize(),
            notes=tuple(notes),
            official_split=(
                None
                if official_split is None
                else np.array([str(official_split[p]) for p in patients])
            ),
        )

    @property
    def n_records(self) -> int:
        """Number of records (rows, images, ECGs)."""
        return len(self.features)

    @property
    def n_patients(self) -> int:
        """Number of distinct patients."""
        return len(self.patients)

    @property
    def n_classes(self) -> int:
        """Number of model outputs: classes, or labels for multilabel tasks."""
        return len(self.class_names)

    @property
    def patient_ids(self) -> np.ndarray:
        """``(n_records,)`` str: the patient id of every record."""
        return self.patients[self.record_patient]

    @property
    def records_per_patient(self) -> np.ndarray:
        """``(n_patients,)`` int64: how many records each patient has."""
        return np.bincount(self.record_patient, minlength=self.n_patients)

    @property
    def patient_labels(self) -> np.ndarray:
        """``(n_patients,)`` int64: a label per patient for stratified splits.

        A patient's label is their most frequent class (multilabel: whether they have any positive
        label at all), ties to the larger class, so that rare positive patients spread over splits.
        """
        if self.task == "multilabel":
            per_record = self.labels.any(axis=1).astype(np.int64)
        else:
            per_record = self.labels
        n_values = max(int(per_record.max(initial=0)) + 1, 2)
        counts = np.zeros((self.n_patients, n_values), dtype=np.int64)
        np.add.at(counts, (self.record_patient, per_record), 1)
        return (n_values - 1 - np.argmax(counts[:, ::-1], axis=1)).astype(np.int64)

    def record_mask(self, patient_mask: np.ndarray) -> np.ndarray:
        """Expands a patient mask ``(..., n_patients)`` to a record mask ``(..., n_records)``."""
        return np.asarray(patient_mask)[..., self.record_patient]

    def subset_by_patients(self, patient_indices: np.ndarray) -> Cohort:
        """The cohort restricted to some patients, with all of their records and nothing else.

        Args:
            patient_indices: ``(k,)`` int indices into ``patients``; order is kept.

        Returns:
            A new cohort whose ``patients`` are ``self.patients[patient_indices]``.
        """
        patient_indices = np.asarray(patient_indices, dtype=np.int64)
        new_index = np.full(self.n_patients, -1, dtype=np.int64)
        new_index[patient_indices] = np.arange(len(patient_indices))
        kept_records = np.flatnonzero(new_index[self.record_patient] >= 0)
        return dataclasses.replace(
            self,
            features=take(self.features, kept_records),
            labels=self.labels[kept_records],
            patients=self.patients[patient_indices],
            record_patient=new_index[self.record_patient[kept_records]],
            attributes={k: v[patient_indices] for k, v in self.attributes.items()},
            record_attributes={k: v[kept_records] for k, v in self.record_attributes.items()},
            official_split=(
                None if self.official_split is None else self.official_split[patient_indices]
            ),
        )

    def content_digest(self) -> str:
        """SHA-256 of what a model learns from: records, labels, patients and preprocessing.

        Files are named by configs whose contents may change; this digest keys saved audit models
        and training checkpoints by content instead. Lazy records are read in chunks.
        """
        digest = hashlib.sha256()
        for part in (self.name, self.task, repr(self.preprocessing), str(self.n_records)):
            digest.update(part.encode())
        for chunk in chunks(self.features, 4096):
            digest.update(np.ascontiguousarray(chunk).tobytes())
        for array in (self.labels, self.record_patient):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\n".join(map(str, self.patients)).encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, object]:
        """Counts for reports: never a feature value, only sizes, label counts and attributes."""
        if self.task == "multilabel":
            label_counts = dict(zip(self.class_names, self.labels.sum(axis=0).tolist()))
        else:
            counts = np.bincount(self.labels, minlength=self.n_classes)
            label_counts = dict(zip(self.class_names, counts.tolist()))
        per_patient = self.records_per_patient
        return {
            "name": self.name,
            "task": self.task,
            "n_patients": self.n_patients,
            "n_records": self.n_records,
            "max_records_per_patient": int(per_patient.max(initial=0)),
            "patients_with_several_records": int((per_patient > 1).sum()),
            "feature_shape": list(record_shape(self.features)),
            "dtype": str(self.features.dtype),
            "lazy": isinstance(self.features, LazyRecords),
            "preprocessing": self.preprocessing.kind,
            "label_counts": label_counts,
            "label_names": list(self.class_names),
            "attributes": sorted(self.attributes),
            "record_attributes": sorted(self.record_attributes),
            "notes": list(self.notes),
        }


def _as_records(features: Records) -> Records:
    """Float arrays as float32, uint8 arrays and lazy records as given; anything else refused."""
    if isinstance(features, LazyRecords) and not isinstance(features, np.ndarray):
        return features
    array = np.asarray(features)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return array.astype(np.float32)
    raise DataError(
        f"record inputs must be numeric (float or uint8), got dtype {array.dtype}; "
        "encode text columns as categories first"
    )
