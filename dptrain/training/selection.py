"""Early stopping: validation patients outside the DP data choose which epoch's weights to keep.

The non-private baseline overfits when it runs the DP recipe's fixed epochs without noise, so an
ε sweep would mix the effect of DP with that of regularisation. With ``train.early_stopping`` a
``train.validation_fraction`` of the training patients (by patient, label-stratified) is held out
of the training data, private or not, and after every epoch the model is scored on them; the
deployed model is the best epoch's.

What this costs in privacy, stated as the report states it:

- The validation patients are not in the DP training data: the privacy plan (N, q, δ < 1/N) is
  made for the patients that remain. They choose only the epoch kept and are not covered by ε.
- Every planned epoch runs (no patience), so the number of steps does not depend on the data and
  ε is the one planned for all of them. The kept epoch is chosen after seeing all epochs'
  scores, which depend on all epochs' models: the released model is post-processing of the whole
  run (plus data outside it), so the ε of all epochs run is its guarantee; the smaller ε
  accounted up to the kept epoch alone is not.
- The audit's models copy the recipe with the kept number of epochs fixed (`first_epochs`): the
  target's weights at its kept epoch E* are those of a run of E* epochs with the σ planned for
  all epochs, which is how each audit model trains on its half of the patients.

Scoring runs in eval mode without gradients and draws no random numbers, so a run's training
steps are the same bits with and without it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dptrain.data.cohort import Cohort
from dptrain.data.preprocessing import FittedPreprocessing
from dptrain.data.splits import split_by_patient
from dptrain.errors import ConfigError
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.evaluate import utility_metrics
from dptrain.training.loop import ParameterAverage, RecordLoss, module_logits

log = logging.getLogger(__name__)
# Below this many validation patients in a class the kept epoch is mostly chance: warned, not
# refused (the refusal is at one patient of each class, without which AUROC is undefined).
FEW_VALIDATION_PATIENTS_PER_CLASS = 10


@dataclass(frozen=True)
class ValidationSplit:
    """The training patients cut into those the model trains on and those that choose its epoch.

    Attributes:
        train: The patients in the (DP) training data, with all their records.
        validation: The validation patients, with all their records.
        train_patients: ``(n_train_patients,)`` int64 indices into the split cohort's patients.
        validation_patients: ``(n_validation_patients,)`` int64 indices, disjoint from
            ``train_patients``.
    """

    train: Cohort
    validation: Cohort
    train_patients: np.ndarray
    validation_patients: np.ndarray


def validation_split(cohort: Cohort, *, fraction: float, seed: int) -> ValidationSplit:
    """Holds out ``fraction`` of ``cohort``'s patients for epoch selection, stratified by label.

    Args:
        cohort: The training patients (the test patients are already out).
        fraction: ``train.validation_fraction``.
        seed: Seed of the split.

    Returns:
        The split; no patient is on both sides.

    Raises:
        ConfigError: If the fraction leaves no validation patient or no training patient, or
            either side lacks a class (a patient of each class on each side is the minimum).

    Example:
        >>> cohort = Cohort.from_records(name="toy", features=np.zeros((20, 1), np.float32),
        ...     labels=[0, 1] * 10, patient_ids=np.arange(20))
        >>> split = validation_split(cohort, fraction=0.2, seed=0)
        >>> split.train.n_patients, split.validation.n_patients
        (16, 4)
    """
    n_validation = round(fraction * cohort.n_patients)
    fix = "raise train.validation_fraction, use more patients or set train.early_stopping=false"
    if n_validation < 1 or n_validation >= cohort.n_patients:
        raise ConfigError(
            f"train.validation_fraction={fraction} gives {n_validation} validation patients of "
            f"{cohort.n_patients} training patients; early stopping needs at least one "
            f"validation patient of each class and some left to train on: {fix}"
        )
    split = split_by_patient(cohort, test_fraction=fraction, seed=seed)
    validation = split.test
    for side, part in (("validation", validation), ("remaining training", split.train)):
        missing = _missing_classes(cohort, part)
        if missing:
            raise ConfigError(
                f"train.validation_fraction={fraction}: the {part.n_patients} {side} patients "
                f"have no record of {', '.join(map(repr, missing))}; early stopping needs at "
                f"least one validation patient of each class and one left to train on: {fix}"
            )
    smallest = _smallest_class(validation)
    if smallest < FEW_VALIDATION_PATIENTS_PER_CLASS:
        log.warning(
            "early stopping: only %d validation patient(s) in the smallest class; the kept epoch "
            "is chosen on very little data",
            smallest,
        )
    return ValidationSplit(
        train=split.train,
        validation=validation,
        train_patients=split.train_patients,
        validation_patients=split.test_patients,
    )


def _missing_classes(cohort: Cohort, part: Cohort) -> list[str]:
    """Names of ``cohort``'s classes with no record in ``part`` (multilabel: no label has both)."""
    names = cohort.class_names
    if cohort.task == "multilabel":
        present = part.labels.any(axis=0) & ~part.labels.all(axis=0)
        return [] if present.any() else ["any label with both values"]
    wanted = np.unique(cohort.labels)
    have = set(np.unique(part.labels).tolist())
    return [names[c] if c < len(names) else str(c) for c in wanted if int(c) not in have]


def _smallest_class(validation: Cohort) -> int:
    """Validation patients in the smallest class (multilabel: with the rarest label)."""
    labels, patients = validation.labels, validation.record_patient
    if validation.task == "multilabel":
        columns = [labels[:, j] == 1 for j in range(labels.shape[1])]
    else:
        columns = [labels == c for c in np.unique(labels)]
    return min(len(np.unique(patients[column])) for column in columns if column.any())


def first_epochs(plan: PrivacyPlan, epochs: int) -> PrivacyPlan:
    """The plan of a run that trains only the first ``epochs`` of ``plan``: same σ, q and δ.

    How the audit's models copy an early-stopped recipe: σ stays the one calibrated for all
    planned epochs (as in the target run), and ε is accounted for the steps these models take.

    Example:
        >>> from dptrain.privacy.accounting import PrivacyConfig
        >>> plan = PrivacyPlan.for_training_set(PrivacyConfig(epsilon=8.0), n_units=1000,
        ...     batch_size=100, epochs=4)
        >>> short = first_epochs(plan, 2)
        >>> short.steps, short.noise_multiplier == plan.noise_multiplier
        (20, True)
        >>> short.spend().epsilon < plan.spend().epsilon
        True
    """
    if not 1 <= epochs <= plan.epochs:
        raise ValueError(f"cannot keep {epochs} of a plan's {plan.epochs} epochs")
    return dataclasses.replace(
        plan,
        epochs=epochs,
        steps=epochs * plan.steps_per_epoch,
        epsilon_curve=plan.epsilon_curve[:epochs],
        epsilon_rdp_curve=plan.epsilon_rdp_curve[:epochs],
    )


def validation_statement(n_patients: int) -> str:
    """What the validation patients are, for ``results.json`` and the report, in one sentence."""
    return (
        f"validation patients: {n_patients} patients kept out of the DP data; they choose only "
        "the epoch kept and are not covered by ε"
    )


class EpochSelection:
    """Scores the model on the validation patients after each epoch and keeps the best weights.

    The scored (and kept) weights are the ones that would be deployed after that epoch: the
    moving average's with ``train.ema_decay``. A higher AUROC or a lower loss wins; ties and
    undefined scores (NaN) never replace an earlier epoch.

    Args:
        validation: The validation patients.
        metric: ``loss`` or ``auroc`` (`dptrain.training.config.VALIDATION_METRICS`).
        module: The plain module being trained (its parameters are the ones Opacus updates).
        preprocessing: The training records' fitted preprocessing.
        class_weights: The training loss's class weights (the validation loss uses the same).
        device: Where the module is.
        average: The parameters' moving average, if the run keeps one.
    """

    def __init__(
        self,
        *,
        validation: Cohort,
        metric: str,
        module: nn.Module,
        preprocessing: FittedPreprocessing,
        class_weights: torch.Tensor | None,
        device: torch.device,
        average: ParameterAverage | None = None,
    ) -> None:
        self.validation = validation
        self.metric = metric
        self.module = module
        self.preprocessing = preprocessing
        self.device = device
        self.average = average
        self.criterion = RecordLoss(
            multilabel=validation.task == "multilabel", class_weights=class_weights
        ).to(device)
        self.labels = torch.from_numpy(validation.labels)
        self.best_epoch = 0
        self.best_score = math.nan
        self.best_weights: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int) -> float:
        """Scores the weights after ``epoch`` (1-based); keeps them if they are the best so far."""
        was_training = self.module.training
        self.module.eval()
        try:
            with self._deployed_weights(), torch.no_grad():
                score = self._score()
                if self.better(score):
                    self.best_epoch, self.best_score = epoch, score
                    self.best_weights = {
                        name: tensor.detach().clone()
                        for name, tensor in self.module.state_dict().items()
                    }
        finally:
            self.module.train(was_training)
        return score

    def better(self, score: float) -> bool:
        """Whether ``score`` beats the best so far (strictly: ties keep the earlier epoch)."""
        if math.isnan(score):
            return False
        if math.isnan(self.best_score):
            return True
        return score < self.best_score if self.metric == "loss" else score > self.best_score

    def keep_best(self) -> int:
        """Puts the best epoch's weights into the module; returns that epoch (0: none scored)."""
        if self.best_weights is not None:
            self.module.load_state_dict(self.best_weights)
        return self.best_epoch

    def state(self) -> dict[str, Any]:
        """The best-so-far epoch, score and weights, for the training checkpoint."""
        return {
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "best_weights": self.best_weights,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restores what `state` saved."""
        self.best_epoch = int(state["best_epoch"])
        self.best_score = float(state["best_score"])
        self.best_weights = state["best_weights"]

    def _score(self) -> float:
        logits = module_logits(
            self.module, self.preprocessing, self.validation.features, device=self.device
        )
        if self.metric == "loss":
            return float(self.criterion(logits.to(self.device), self.labels.to(self.device)))
        logits = logits.double()
        multilabel = self.validation.task == "multilabel"
        probabilities = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
        return utility_metrics(
            self.validation.labels,
            probabilities.numpy(),
            task=self.validation.task,
            n_patients=self.validation.n_patients,
            n_resamples=0,
        ).auroc

    @contextmanager
    def _deployed_weights(self) -> Iterator[None]:
        """The moving average's weights in the module for the duration (the live ones after)."""
        if self.average is None:
            yield
            return
        live = [parameter.detach().clone() for parameter in self.average.parameters]
        with torch.no_grad():
            for parameter, averaged in zip(self.average.parameters, self.average.average):
                parameter.copy_(averaged)
        try:
            yield
        finally:
            with torch.no_grad():
                for parameter, saved in zip(self.average.parameters, live):
                    parameter.copy_(saved)
