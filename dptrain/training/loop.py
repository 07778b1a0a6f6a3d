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

from dptrain.privacy.engine import TrainingParts


class TensorRecords(Dataset):
    """Records held as tensors, fetched a whole batch at a time.

    ``__getitems__`` lets the DataLoader index one batch with one tensor operation instead of
    collating records one by one, which dominates step time for small tabular models.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.features[index], self.labels[index]


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
) -> None:
    """Runs ``epochs`` passes and reports each epoch's mean training loss to ``on_epoch``.

    Args:
        parts: Model, optimiser, loss and loader, plain or made private by Opacus.
        epochs: Number of epochs.
        max_physical_batch_size: Largest batch through the model at once (DP only).
        private: Whether the parts are private.
        on_epoch: Called with (epoch index, mean loss) after each epoch.
    """
    module, optimizer, criterion = parts.module, parts.optimizer, parts.criterion
    module.train()
    with warnings.catch_warnings():
        # Opacus' hooks fire on module outputs because the inputs need no gradient: expected.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(epochs):
            losses = []
            with physical_batches(
                parts.data_loader,
                optimizer=optimizer,
                max_physical_batch_size=max_physical_batch_size,
                private=private,
            ) as loader:
                for features, labels in loader:
                    optimizer.zero_grad(set_to_none=True)
                    loss = criterion(module(features), labels)
                    loss.backward()
                    optimizer.step()
                    if len(labels):
                        losses.append(loss.item())
            on_epoch(epoch, float(np.mean(losses)) if losses else float("nan"))
