"""The training data and loss of patient-level DP-SGD: a patient is one sample.

Opacus' Poisson loader samples the items of a dataset; `PatientRecords` makes those items patients,
so the loader samples patients at rate q = 1 / ceil(patients / batch size). A batch is the sampled
patients' records, concatenated, with each record's patient. `PatientLoss` averages the records'
losses within each patient and then over patients, so a patient's gradient is that of its mean
loss whatever its number of records, and `dptrain.privacy.patient.PatientDPOptimizer` clips it as
one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dptrain.training.loop import RecordLoss, TensorRecords


class PatientRecords(Dataset):
    """Patients as dataset items: item i is patient i's records (at most ``max_records`` of them).

    ``__getitems__`` fetches a batch of patients with one indexing of the records and returns
    ``(features, labels, record_patient)``: the patients' records concatenated and the
    ``(n_records,)`` int64 position in the batch of each record's patient, the patient index the
    optimiser sums per-record gradients by.

    Args:
        records: The record-level training dataset.
        record_patient: ``(n_records,)`` int64 patient of each record, in ``0 .. n_patients-1``.
        n_patients: Patients in the training set (each has at least one record).
        max_records: Most records of one patient per step (0: all). A patient with more has
            ``max_records`` of them drawn without replacement every time it is sampled, from
            ``generator``, so runs are reproducible and every record is used over the epochs.
        generator: Random source of the subsampling.
    """

    def __init__(
        self,
        records: TensorRecords,
        record_patient: np.ndarray,
        *,
        n_patients: int,
        max_records: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.records = records
        self.max_records = max_records
        self.generator = generator or torch.Generator().manual_seed(0)
        order = np.argsort(record_patient, kind="stable")
        counts = np.bincount(record_patient, minlength=n_patients)
        if (counts == 0).any():
            raise ValueError(f"patient {int(np.argmin(counts))} has no records")
        self.patient_records = [
            torch.from_numpy(block) for block in np.split(order, np.cumsum(counts)[:-1])
        ]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input."""
        return self.records.input_shape

    def __len__(self) -> int:
        return len(self.patient_records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        chosen = [self._records_of(patient) for patient in indices]
        counts = torch.tensor([len(rows) for rows in chosen], dtype=torch.long)
        rows = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)
        features, labels = self.records.__getitems__(rows.tolist())
        record_patient = torch.repeat_interleave(torch.arange(len(chosen)), counts)
        return features, labels, record_patient

    def _records_of(self, patient: int) -> torch.Tensor:
        rows = self.patient_records[patient]
        if self.max_records and len(rows) > self.max_records:
            keep = torch.randperm(len(rows), generator=self.generator)[: self.max_records]
            rows = rows[keep.sort().values]
        return rows


class PatientLoss(nn.Module):
    """The mean over the batch's patients of each patient's mean record loss.

    A patient's gradient is then that of its mean loss whatever its number of records. Under DP,
    Opacus computes per-record gradients of this loss and `PatientDPOptimizer` sums them per
    patient (undoing the scale Opacus' ``mean`` reduction puts on them), so each patient's
    clipped gradient is exactly the gradient of its mean loss.

    Args:
        record_loss: The per-record loss (class weights, multilabel); set to no reduction.
    """

    def __init__(self, record_loss: RecordLoss) -> None:
        super().__init__()
        record_loss.reduction = "none"
        self.record_loss = record_loss

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, record_patient: torch.Tensor
    ) -> torch.Tensor:
        """The batch's loss; zero (with a gradient path) for an empty batch."""
        per_record = self.record_loss(logits, labels)
        counts = torch.bincount(record_patient)
        weighted = per_record / counts[record_patient].to(per_record.dtype)
        return weighted.sum() / max(len(counts), 1)
