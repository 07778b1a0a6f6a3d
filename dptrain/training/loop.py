"""The training loop, private or not: the same few lines, so a baseline differs only in privacy."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from opacus.utils.batch_memory_manager import BatchMemoryManager
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dptrain.data.preprocessing import FittedPreprocessing
from dptrain.data.records import LazyRecords, Records, chunks
from dptrain.privacy.engine import TrainingParts

PREDICT_BATCH_SIZE = 4096


class TensorRecords(Dataset):
    """Records held as a tensor, fetched a whole batch at a time, transformed per batch if asked.

    ``__getitems__`` lets the DataLoader index one batch with one tensor operation instead of
    collating records one by one, which dominates step time for small tabular models. Images stay
    uint8 here and become float32 only batch by batch (``transform``).
    """

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.features = features
        self.labels = labels
        self.transform = transform

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input."""
        return tuple(self._inputs(self.features[:1]).shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._inputs(self.features[index : index + 1])[0], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self._inputs(self.features[index]), self.labels[index]

    def _inputs(self, batch: torch.Tensor) -> torch.Tensor:
        return batch if self.transform is None else self.transform(batch)


class LazyRecordsDataset(TensorRecords):
    """Records read from disk batch by batch (`LazyRecords`), then transformed."""

    def __init__(
        self,
        records: LazyRecords,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        super().__init__(torch.empty(0), labels, transform)
        self.records = records

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input."""
        return tuple(self.__getitems__([0])[0].shape[1:])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        features, labels = self.__getitems__([index])
        return features[0], labels[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = torch.from_numpy(self.records.read(np.asarray(indices, dtype=np.int64)))
        return self.transform(batch), self.labels[torch.as_tensor(indices, dtype=torch.long)]


def record_dataset(
    records: Records, labels: torch.Tensor, preprocessing: FittedPreprocessing
) -> TensorRecords:
    """The training dataset of a cohort's records under its fitted preprocessing.

    Float inputs (tables, signals) are transformed once, up front: the result is as large as the
    input. uint8 inputs (images) stay uint8 and are transformed per batch, and lazy records are
    read per batch, so memory stays at the size of the raw data.
    """
    if isinstance(records, np.ndarray):
        raw = torch.from_numpy(records)
        if raw.is_floating_point():
            return TensorRecords(preprocessing.transform(raw), labels)
        return TensorRecords(raw, labels, preprocessing.transform)
    return LazyRecordsDataset(records, labels, preprocessing.transform)


def module_logits(
    module: nn.Module,
    preprocessing: FittedPreprocessing,
    records: Records,
    *,
    device: torch.device | str,
) -> torch.Tensor:
    """``(n_records, n_outputs)`` float32 logits on the CPU for raw records, batch by batch.

    Call it under ``torch.no_grad()`` and with the module in eval mode.
    """
    outputs = [
        module(preprocessing.transform(torch.from_numpy(chunk)).to(device)).cpu()
        for chunk in chunks(records, PREDICT_BATCH_SIZE)
    ]
    return torch.cat(outputs)


def already_batched(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate function for `TensorRecords`: its batches arrive stacked."""
    return batch


class RecordLoss(nn.Module):
    """Per-record loss with class weights, reduced by a plain mean over the batch.

    A plain mean (not PyTorch's weighted mean) keeps the gradient scale the same under DP-SGD, where
    Opacus divides the clipped sum by the expected batch size, and without it. Ghost clipping sets
    ``reduction`` to ``none`` to get one loss per record.
    """

    def __init__(self, *, multilabel: bool, class_weights: torch.Tensor | None) -> None:
        super().__init__()
        self.multilabel = multilabel
        self.reduction = "mean"
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The batch's loss (``mean``) or one loss per record (``none``)."""
        if self.multilabel:
            per_label = F.binary_cross_entropy_with_logits(
                logits, labels.float(), pos_weight=self.class_weights, reduction="none"
            )
            per_record = per_label.mean(dim=1)
        else:
            per_record = F.cross_entropy(
                logits, labels, weight=self.class_weights, reduction="none"
            )
        return per_record.mean() if self.reduction == "mean" else per_record


@contextmanager
def physical_batches(
    data_loader: DataLoader,
    *,
    optimizer: torch.optim.Optimizer,
    max_physical_batch_size: int,
    private: bool,
) -> Iterator[DataLoader]:
    """Yields a loader whose batches fit in memory.

    Under DP, Opacus' BatchMemoryManager splits Poisson-sampled logical batches and tells the
    optimiser where each one ends, so a logical batch still makes exactly one noisy step.
    """
    if not private:
        yield data_loader
        return
    with BatchMemoryManager(
        data_loader=data_loader,
        max_physical_batch_size=max_physical_batch_size,
        optimizer=optimizer,
    ) as memory_safe_loader:
        yield memory_safe_loader


def train_epochs(
    parts: TrainingParts,
    *,
    epochs: int,
    max_physical_batch_size: int,
    private: bool,
    on_epoch: Callable[[int, float], None],
    device: torch.device | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    augment_multiplicity: int = 1,
    ema_decay: float = 0.0,
    first_epoch: int = 0,
    average: ParameterAverage | None = None,
) -> None:
    """Runs epochs ``first_epoch..epochs-1`` and reports each one's mean loss to ``on_epoch``.

    Args:
        parts: Model, optimiser, loss and loader, plain or made private by Opacus.
        epochs: Number of epochs.
        max_physical_batch_size: Largest batch through the model at once (DP only).
        private: Whether the parts are private.
        on_epoch: Called with (epoch index, mean loss) after each epoch.
        device: Where the model is; batches are moved there.
        augment: One random training view of a batch; None trains on the records as they are.
        augment_multiplicity: Views per record per step; their losses are averaged, and Opacus
            accumulates the per-sample gradients of the k forward passes into one per record
            before clipping.
        ema_decay: Decay of the parameters' moving average (0: none); the module ends with it.
        first_epoch: The 0-based epoch to start from (a resumed run's epochs done).
        average: The moving average to continue (a resumed run's, or one the caller checkpoints);
            None starts one when ``ema_decay`` > 0.
    """
    module, optimizer, criterion = parts.module, parts.optimizer, parts.criterion
    device = device or torch.device("cpu")
    views = augment_multiplicity if augment is not None else 1
    if average is None and ema_decay:
        average = ParameterAverage(module, ema_decay)
    module.train()
    with warnings.catch_warnings():
        # Opacus' hooks fire on module outputs because the inputs need no gradient: expected.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(first_epoch, epochs):
            losses = []
            with physical_batches(
                parts.data_loader,
                optimizer=optimizer,
                max_physical_batch_size=max_physical_batch_size,
                private=private,
            ) as loader:
                for batch in loader:
                    features, labels = batch[0].to(device), batch[1].to(device)
                    # Patient-level batches carry each record's patient (`PatientRecords`).
                    record_patient = batch[2].to(device) if len(batch) > 2 else None
                    optimizer.zero_grad(set_to_none=True)
                    if record_patient is not None and private:
                        # A `PatientDPOptimizer` must know each record's patient: without it,
                        # it would clip records, not patients (so no fallback here).
                        n_patients = int(record_patient.max()) + 1 if len(record_patient) else 0
                        optimizer.set_batch_patients(record_patient, n_patients)
                    loss = batch_loss(
                        module, criterion, features, labels, augment, views, record_patient
                    )
                    loss.backward()
                    optimizer.step()
                    if average is not None and not getattr(
                        optimizer, "_is_last_step_skipped", False
                    ):
                        average.update()
                    if len(labels):
                        losses.append(loss.item())
            on_epoch(epoch, float(np.mean(losses)) if losses else float("nan"))
    if average is not None:
        average.copy_to_module()


def batch_loss(
    module: nn.Module,
    criterion: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    augment: Callable[[torch.Tensor], torch.Tensor] | None,
    views: int,
    record_patient: torch.Tensor | None = None,
) -> torch.Tensor:
    """The batch's loss; with augmentation, the mean over ``views`` random views of the batch.

    The views are k separate forward passes of the same records: Opacus' hooks count the passes
    and sum each record's per-sample gradients over them before clipping (its tied-parameter
    mechanism), so a record's clipped gradient is that of its mean loss over its views. With
    ``record_patient`` (patient-level batches) the criterion also gets each record's patient.
    """
    extra = () if record_patient is None else (record_patient,)
    if augment is None:
        return criterion(module(features), labels, *extra)
    return sum(criterion(module(augment(features)), labels, *extra) for _ in range(views)) / views


class ParameterAverage:
    """An exponential moving average of a module's parameters, updated after every real step."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.parameters = [p for p in module.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.parameters]

    @torch.no_grad()
    def update(self) -> None:
        """Average ← decay · average + (1 − decay) · parameters."""
        for average, parameter in zip(self.average, self.parameters):
            average.mul_(self.decay).add_(parameter.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def copy_to_module(self) -> None:
        """Puts the average into the module's parameters."""
        for average, parameter in zip(self.average, self.parameters):
            parameter.copy_(average)
