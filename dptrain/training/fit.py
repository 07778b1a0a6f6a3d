"""The one training function: the deployed model and every audit reference model come from here.

Reference models must copy the target's recipe exactly; sharing this function makes that true by
construction. ``privacy.mode = none`` runs the same path without `make_private`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dptrain.data.cohort import Cohort, Task
from dptrain.data.preprocessing import Standardizer
from dptrain.errors import DataError
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import (
    PrivacyConfig,
    PrivacySpend,
    calibrate_noise,
    epsilon_spent,
    rdp_epsilon_curve,
)
from dptrain.privacy.engine import TrainingParts, make_private
from dptrain.training.config import TrainConfig
from dptrain.training.loop import RecordLoss, TensorRecords, already_batched, train_epochs

log = logging.getLogger(__name__)
PREDICT_BATCH_SIZE = 4096


@dataclass(frozen=True)
class EpochLog:
    """One epoch of a run, as the tracker and the report see it.

    Attributes:
        epoch: 1-based epoch number.
        loss: Mean training loss.
        epsilon_rdp: RDP ε spent after this epoch (infinite when not private).
    """

    epoch: int
    loss: float
    epsilon_rdp: float


@dataclass(frozen=True)
class TrainedModel:
    """A trained classifier with what it cost in privacy and time.

    Attributes:
        module: The plain torch module (Opacus hooks removed), in eval mode.
        standardizer: Preprocessing fitted on this model's training records.
        privacy: The privacy guarantee of the training run.
        history: One `EpochLog` per epoch.
        task: The cohort's task (decides how logits become probabilities).
        accountant_state: The Opacus accountant's ``state_dict()`` (empty when not private).
        wall_seconds: Wall time of the training loop.
    """

    module: nn.Module
    standardizer: Standardizer
    privacy: PrivacySpend
    history: tuple[EpochLog, ...]
    task: Task
    accountant_state: dict = field(default_factory=dict)
    wall_seconds: float = 0.0

    def predict_logits(self, features: np.ndarray) -> np.ndarray:
        """``(n_records, n_outputs)`` float64 logits for raw (unstandardised) features."""
        inputs = torch.from_numpy(self.standardizer.transform(features))
        with torch.no_grad():
            chunks = [
                self.module(inputs[start : start + PREDICT_BATCH_SIZE])
                for start in range(0, len(inputs), PREDICT_BATCH_SIZE)
            ]
        return torch.cat(chunks).double().numpy()

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax), or per-label probabilities (sigmoid) for multilabel."""
        logits = torch.from_numpy(self.predict_logits(features))
        if self.task == "multilabel":
            return torch.sigmoid(logits).numpy()
        return torch.softmax(logits, dim=1).numpy()


def fit(
    *,
    cohort: Cohort,
    model_factory: ModelFactory,
    privacy: PrivacyConfig,
    train: TrainConfig,
    seed: int,
    noise_multiplier: float | None = None,
    progress: bool = False,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainedModel:
    """Trains one model on all records of ``cohort`` with the recipe (model, privacy, train).

    Seeds the model initialisation, Poisson sampling, dropout and DP noise from ``seed`` without
    touching the caller's global torch RNG.

    Args:
        cohort: The training patients.
        model_factory: Builds the model for the record shape and number of outputs.
        privacy: Privacy config (mode, ε target, δ, clipping, accountant, grad sample mode).
        train: Optimisation recipe.
        seed: Seed of everything random in this run.
        noise_multiplier: σ already calibrated for this recipe and training-set size (the audit
            calibrates once for its K models); None calibrates here. The reported ε is always
            accounted from the σ actually used.
        progress: Show a progress bar over epochs.
        on_epoch: Called after every epoch (e.g. to log to a tracker).

    Returns:
        The trained model.

    Raises:
        DataError: If the cohort has no records.
        ConfigError: For a δ ≥ 1/N or a budget that cannot be reached.
    """
    if cohort.n_records == 0:
        raise DataError(f"cannot train on an empty cohort {cohort.name!r}")
    standardizer = Standardizer.fit(cohort.features)
    features = torch.from_numpy(standardizer.transform(cohort.features))
    labels = torch.from_numpy(cohort.labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = model_factory.build(tuple(features.shape[1:]), cohort.n_classes)
        criterion = RecordLoss(
            multilabel=cohort.task == "multilabel",
            class_weights=_class_weights(cohort, train.class_weights),
        )
        optimizer = train.make_optimizer(module.parameters())
        data_loader = DataLoader(
            TensorRecords(features, labels),
            batch_size=train.batch_size,
            shuffle=True,
            collate_fn=already_batched,
            generator=torch.Generator().manual_seed(seed),
        )
        plan = _privacy_plan(privacy, cohort, train.batch_size, train.epochs, noise_multiplier)
        if plan.steps != train.epochs * len(data_loader):
            raise RuntimeError(f"planned {plan.steps} steps, loader gives {len(data_loader)}/epoch")
        parts = TrainingParts(module, optimizer, criterion, data_loader)
        if privacy.private:
            parts = make_private(
                parts,
                noise_multiplier=plan.noise_multiplier,
                max_grad_norm=privacy.max_grad_norm,
                grad_sample_mode=privacy.grad_sample_mode,
                accountant=privacy.accountant,
                noise_seed=seed + 1,
            )

        history: list[EpochLog] = []
        bar = tqdm(total=train.epochs, desc="training", unit="epoch", disable=not progress)

        def record_epoch(epoch: int, loss: float) -> None:
            entry = EpochLog(epoch=epoch + 1, loss=loss, epsilon_rdp=plan.epsilon_curve[epoch])
            history.append(entry)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", eps=f"{entry.epsilon_rdp:.2f}")
            if on_epoch is not None:
                on_epoch(entry)

        started = time.perf_counter()
        try:
            train_epochs(
                parts,
                epochs=train.epochs,
                max_physical_batch_size=train.max_physical_batch_size,
                private=privacy.private,
                on_epoch=record_epoch,
            )
        finally:
            bar.close()
        wall_seconds = time.perf_counter() - started

    accountant_state: dict = {}
    if parts.engine is not None:
        recorded = parts.engine.accountant.history
        expected = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
        if recorded != expected:
            raise RuntimeError(f"accountant recorded {recorded}, planned {expected}")
        accountant_state = parts.engine.accountant.state_dict()
        parts.module.to_standard_module()  # removes Opacus' hooks from ``module``
    module.eval()
    return TrainedModel(
        module=module,
        standardizer=standardizer,
        privacy=plan.spend(),
        history=tuple(history),
        task=cohort.task,
        accountant_state=accountant_state,
        wall_seconds=wall_seconds,
    )


@dataclass(frozen=True)
class _PrivacyPlan:
    """σ, q and steps fixed before training, so ε per epoch is known in advance."""

    privacy: PrivacyConfig
    n_units: int
    max_records_per_patient: int
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    epochs: int
    epsilon_curve: tuple[float, ...]

    def spend(self) -> PrivacySpend:
        private = self.privacy.private
        epsilon = math.inf
        if private:
            epsilon = epsilon_spent(
                noise_multiplier=self.noise_multiplier,
                sample_rate=self.sample_rate,
                steps=self.steps,
                delta=self.delta,
                accountant=self.privacy.accountant,
            )
        return PrivacySpend(
            private=private,
            unit="record",
            epsilon=epsilon,
            epsilon_rdp=self.epsilon_curve[-1],
            epsilon_target=self.privacy.epsilon if private else math.inf,
            delta=self.delta,
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps,
            epochs=self.epochs,
            max_grad_norm=self.privacy.max_grad_norm if private else math.inf,
            accountant=self.privacy.accountant,
            n_units=self.n_units,
            max_records_per_patient=self.max_records_per_patient,
        )


def recipe_noise_multiplier(
    privacy: PrivacyConfig, *, n_records: int, batch_size: int, epochs: int
) -> float:
    """σ that the recipe gets for a training set of ``n_records`` (Opacus' calibration, cached).

    Uses the sampling rate Opacus derives from the loader, q = 1 / ceil(N / batch_size), and
    steps = epochs / q, exactly as `make_private_with_epsilon` does.
    """
    batches = math.ceil(n_records / batch_size)
    return calibrate_noise(
        epsilon=privacy.epsilon,
        delta=privacy.resolve_delta(n_records),
        sample_rate=1 / batches,
        steps=epochs * batches,
        accountant=privacy.accountant,
    )


def _privacy_plan(
    privacy: PrivacyConfig,
    cohort: Cohort,
    batch_size: int,
    epochs: int,
    calibrated_noise: float | None,
) -> _PrivacyPlan:
    n_units = cohort.n_records
    batches_per_epoch = math.ceil(n_units / batch_size)
    sample_rate = 1 / batches_per_epoch  # what Opacus' DPDataLoader and accountant use
    steps = epochs * batches_per_epoch
    delta = privacy.resolve_delta(n_units)
    noise_multiplier, curve = 0.0, (math.inf,) * epochs
    if privacy.private:
        noise_multiplier = calibrated_noise or recipe_noise_multiplier(
            privacy, n_records=n_units, batch_size=batch_size, epochs=epochs
        )
        curve = rdp_epsilon_curve(
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=tuple((epoch + 1) * batches_per_epoch for epoch in range(epochs)),
            delta=delta,
        )
    return _PrivacyPlan(
        privacy=privacy,
        n_units=n_units,
        max_records_per_patient=int(cohort.records_per_patient.max()),
        delta=delta,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        epochs=epochs,
        epsilon_curve=curve,
    )


def _class_weights(cohort: Cohort, scheme: str) -> torch.Tensor | None:
    """``n / (C n_c)`` per class (multilabel: negatives / positives per label, as pos_weight)."""
    if scheme == "none":
        return None
    if cohort.task == "multilabel":
        positives = cohort.labels.sum(axis=0).astype(np.float64)
        weights = (cohort.n_records - positives) / np.maximum(positives, 1.0)
    else:
        counts = np.bincount(cohort.labels, minlength=cohort.n_classes).astype(np.float64)
        weights = cohort.n_records / (cohort.n_classes * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)
