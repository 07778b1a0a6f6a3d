"""The one training function: the deployed model and every audit reference model come from here.

Reference models must copy the target's recipe exactly; sharing this function makes that true by
construction. ``privacy.mode = none`` runs the same path without `make_private`. With
``train.early_stopping`` validation patients outside the training cohort score every epoch and the
best epoch's weights are kept (`dptrain.training.selection`); every epoch still runs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dptrain.data.cohort import Cohort, Task
from dptrain.data.preprocessing import FittedPreprocessing
from dptrain.data.records import Records
from dptrain.errors import ConfigError, DataError
from dptrain.models import ModelFactory, resolve_grad_sample_mode
from dptrain.privacy.accounting import PrivacyConfig, PrivacySpend
from dptrain.privacy.engine import TrainingParts, make_private
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.config import TrainConfig
from dptrain.training.device import resolve_device
from dptrain.training.loop import (
    ParameterAverage,
    RecordLoss,
    already_batched,
    module_logits,
    record_dataset,
    train_epochs,
)
from dptrain.training.patients import PatientLoss, PatientRecords
from dptrain.training.resume import TrainingCheckpoints, training_fingerprint
from dptrain.training.selection import EpochSelection

log = logging.getLogger(__name__)
MULTIPLICITY_MODES = ("hooks", "functorch")


@dataclass(frozen=True)
class EpochLog:
    """One epoch of a run, as the tracker and the report see it.

    Attributes:
        epoch: 1-based epoch number.
        loss: Mean training loss.
        epsilon_rdp: RDP ε spent after this epoch (infinite when not private), for comparison.
        epsilon: ε spent after this epoch from the run's configured accountant (PRV by default),
            the curve that ends at the headline ε (infinite when not private).
        validation: The early-stopping metric (``train.validation_metric``) on the validation
            patients after this epoch; None without early stopping.
    """

    epoch: int
    loss: float
    epsilon_rdp: float
    epsilon: float = math.nan
    validation: float | None = None


@dataclass(frozen=True)
class TrainedModel:
    """A trained classifier with its preprocessing and what it cost in privacy and time.

    Attributes:
        module: The plain torch module (Opacus hooks removed), in eval mode, on ``device``.
        preprocessing: The data's preprocessing fitted on this model's training records; applied
            to every record the model is asked about.
        privacy: The privacy guarantee of the training run.
        history: One `EpochLog` per epoch.
        task: The cohort's task (decides how logits become probabilities).
        grad_sample_mode: The Opacus per-sample gradient mode that ran (``none`` when not
            private).
        device: Where the model trained and predicts (``cpu`` or ``cuda``).
        accountant_state: The Opacus accountant's ``state_dict()`` (empty when not private).
        wall_seconds: Wall time of the training loop.
        kept_epoch: The epoch whose weights ``module`` holds: the best on the validation patients
            with early stopping, else the last.
        validation_metric: The metric that chose ``kept_epoch`` (``loss``, ``auroc``); empty
            without early stopping.
        validation_score: That metric at ``kept_epoch`` (NaN without early stopping).
        validation_patients: Patients that chose the epoch (outside the training data; 0
            without early stopping).
    """

    module: nn.Module
    preprocessing: FittedPreprocessing
    privacy: PrivacySpend
    history: tuple[EpochLog, ...]
    task: Task
    grad_sample_mode: str = "none"
    device: str = "cpu"
    accountant_state: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    kept_epoch: int = 0
    validation_metric: str = ""
    validation_score: float = math.nan
    validation_patients: int = 0

    @property
    def epochs_run(self) -> int:
        """Epochs trained (all of them run; early stopping only chooses the one kept)."""
        return len(self.history)

    def predict_logits(self, records: Records) -> np.ndarray:
        """``(n_records, n_outputs)`` float64 logits for raw records (in memory or lazy)."""
        with torch.no_grad():
            logits = module_logits(self.module, self.preprocessing, records, device=self.device)
        return logits.double().numpy()

    def predict_proba(self, records: Records) -> np.ndarray:
        """Class probabilities (softmax), or per-label probabilities (sigmoid) for multilabel."""
        logits = torch.from_numpy(self.predict_logits(records))
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
    plan: PrivacyPlan | None = None,
    progress: bool = False,
    on_epoch: Callable[[EpochLog], None] | None = None,
    private_parts_hook: Callable[[TrainingParts], None] | None = None,
    state_path: Path | None = None,
    validation: Cohort | None = None,
) -> TrainedModel:
    """Trains one model on all records of ``cohort`` with the recipe (model, privacy, train).

    Seeds the model initialisation, Poisson sampling, augmentation, dropout and DP noise from
    ``seed`` without touching the caller's global torch RNG.

    Args:
        cohort: The training patients; its preprocessing is fitted on their records.
        model_factory: Builds the model for the record shape and number of outputs.
        privacy: Privacy config (mode, ε target, δ, clipping, accountant, grad sample mode).
        train: Optimisation recipe.
        seed: Seed of everything random in this run.
        plan: The privacy plan for this training-set size (the audit plans once for its K
            models); None plans here. The reported ε is always accounted from the plan's σ.
        progress: Show a progress bar over epochs.
        on_epoch: Called after every epoch (e.g. to log to a tracker).
        private_parts_hook: Called once with the private training parts (Opacus' model,
            optimiser and Poisson loader) before the first step; the white-box audit attaches its
            gradient canaries to the optimiser here, so audited runs take this one training path.
        state_path: Where to keep the resumable training state (``<run dir>/training_state.pt``)
            every ``train.checkpoint_every`` epochs; a state saved there by a run with the same
            recipe, seed and data is continued from (`dptrain.training.resume`). The file stays
            after training (a kill during the audit resumes with no epoch to redo); the caller
            removes it once the run is complete. None (the audit's models) keeps none.
        validation: The patients that choose the epoch kept under ``train.early_stopping``
            (`dptrain.training.selection`); they must not be in ``cohort``, and are given
            exactly when ``train.early_stopping`` is on.

    Returns:
        The trained model.

    Raises:
        DataError: If the cohort has no records.
        ConfigError: For a δ ≥ 1/N, a budget that cannot be reached, a plan made for another
            training set, a grad sample mode the model does not support, or validation patients
            without ``train.early_stopping`` (or the reverse).
    """
    if cohort.n_records == 0:
        raise DataError(f"cannot train on an empty cohort {cohort.name!r}")
    if train.early_stopping != (validation is not None):
        raise ConfigError(
            "train.early_stopping needs validation patients (and they are used only with it): "
            f"early_stopping={train.early_stopping}, validation given: {validation is not None}"
        )
    # A caller training several sets of one cohort (the audit) resolves unit=auto once, on the
    # whole cohort; here it is resolved on the training set.
    privacy = privacy.for_cohort(int(cohort.records_per_patient.max()))
    per_patient = privacy.unit == "patient"
    n_units = cohort.n_patients if per_patient else cohort.n_records
    plan = plan or PrivacyPlan.for_training_set(
        privacy,
        n_units=n_units,
        batch_size=train.batch_size,
        epochs=train.epochs,
        max_records_per_patient=int(cohort.records_per_patient.max()),
    )
    if plan.n_units != n_units or plan.unit != privacy.unit or plan.privacy != privacy:
        raise ConfigError(
            f"the privacy plan is for {plan.n_units} {plan.unit}s, the cohort has {n_units} "
            f"{privacy.unit}s"
        )
    grad_sample_mode = _grad_sample_mode(model_factory, privacy, train)
    device = resolve_device(train.device)
    preprocessing = cohort.preprocessing.fit(cohort.features)
    if train.augment_multiplicity > 1 and not getattr(preprocessing, "augmentations", ()):
        raise ConfigError(
            "train.augment_multiplicity > 1 needs augmentations: set data.augment (e.g. [hflip])"
        )
    if validation is not None and np.isin(validation.patients, cohort.patients).any():
        raise DataError("validation patients must not be among the training patients")
    dataset = record_dataset(cohort.features, torch.from_numpy(cohort.labels), preprocessing)
    class_weights = _class_weights(cohort, train.class_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = model_factory.build(dataset.input_shape, cohort.n_classes).to(device)
        criterion = RecordLoss(
            multilabel=cohort.task == "multilabel", class_weights=class_weights
        ).to(device)
        optimizer = train.make_optimizer(module.parameters())
        if per_patient:
            # The loader's items are patients: Opacus' Poisson sampler then draws patients.
            dataset = PatientRecords(
                dataset,
                cohort.record_patient,
                n_patients=cohort.n_patients,
                max_records=privacy.max_records_per_patient or 0,
                generator=torch.Generator().manual_seed(seed + 3),
            )
            criterion = PatientLoss(criterion)
        patient_generator = getattr(dataset, "generator", None)
        data_loader = DataLoader(
            dataset,
            batch_size=train.batch_size,
            shuffle=True,
            collate_fn=already_batched,
            generator=torch.Generator().manual_seed(seed),
        )
        if plan.steps != train.epochs * len(data_loader):
            raise RuntimeError(f"planned {plan.steps} steps, loader gives {len(data_loader)}/epoch")
        parts = TrainingParts(module, optimizer, criterion, data_loader)
        if privacy.private:
            parts = make_private(
                parts,
                noise_multiplier=plan.noise_multiplier,
                max_grad_norm=privacy.max_grad_norm,
                grad_sample_mode=grad_sample_mode,
                accountant=privacy.accountant,
                noise_seed=seed + 1,
                device=device,
                unit=privacy.unit,
            )
            if private_parts_hook is not None:
                private_parts_hook(parts)
        average = ParameterAverage(module, train.ema_decay) if train.ema_decay else None
        augment_generator = torch.Generator().manual_seed(seed + 2)
        selection = None
        if validation is not None:
            selection = EpochSelection(
                validation=validation,
                metric=train.validation_metric,
                module=module,
                preprocessing=preprocessing,
                class_weights=class_weights,
                device=device,
                average=average,
            )
        checkpoints = None
        if state_path is not None and train.checkpoint_every > 0:
            checkpoints = TrainingCheckpoints(
                path=state_path,
                every=train.checkpoint_every,
                epochs=train.epochs,
                fingerprint=training_fingerprint(
                    cohort=cohort,
                    model_factory=model_factory,
                    train=train,
                    plan=plan,
                    seed=seed,
                    device=device,
                    validation=validation,
                ),
                module=module,
                parts=parts,
                generators=[augment_generator, patient_generator],
                average=average,
                selection=selection,
            )
        resumed = checkpoints.restore() if checkpoints is not None else None

        history: list[EpochLog] = []
        bar = tqdm(total=train.epochs, desc="training", unit="epoch", disable=not progress)

        def record_epoch(
            epoch: int, loss: float, *, restored: bool = False, score: float | None = None
        ) -> None:
            if selection is not None and not restored:
                score = selection.update(epoch + 1)
            entry = EpochLog(
                epoch=epoch + 1,
                loss=loss,
                epsilon_rdp=plan.epsilon_rdp_curve[epoch],
                epsilon=plan.epsilon_curve[epoch],
                validation=score,
            )
            history.append(entry)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", eps=f"{entry.epsilon:.2f}")
            if on_epoch is not None:  # a resumed run replays its restored epochs to the tracker
                on_epoch(entry)
            if checkpoints is not None and not restored and checkpoints.due(epoch + 1):
                checkpoints.save(
                    epoch + 1,
                    [(e.epoch, e.loss, e.epsilon_rdp, e.epsilon, e.validation) for e in history],
                )

        for epoch, loss, _, _, score in resumed.history if resumed is not None else ():
            record_epoch(epoch - 1, loss, restored=True, score=score)

        started = time.perf_counter()
        try:
            train_epochs(
                parts,
                epochs=train.epochs,
                max_physical_batch_size=train.max_physical_batch_size,
                private=privacy.private,
                on_epoch=record_epoch,
                device=device,
                augment=_augmenter(preprocessing, augment_generator),
                augment_multiplicity=train.augment_multiplicity,
                first_epoch=resumed.epoch if resumed is not None else 0,
                average=average,
            )
        finally:
            bar.close()
        wall_seconds = time.perf_counter() - started

    accountant_state: dict = {}
    if parts.engine is not None:
        recorded = parts.engine.accountant.history
        if recorded != plan.accountant_history():
            raise RuntimeError(
                f"accountant recorded {recorded}, planned {plan.accountant_history()}"
            )
        accountant_state = parts.engine.accountant.state_dict()
        parts.module.to_standard_module()  # removes Opacus' hooks from ``module``
    kept_epoch = len(history)
    if selection is not None:
        kept_epoch = selection.keep_best() or kept_epoch  # 0: no epoch scored (all NaN)
        log.info(
            "early stopping: kept epoch %d of %d (validation %s %.4f on %d patients)",
            kept_epoch,
            len(history),
            train.validation_metric,
            selection.best_score,
            validation.n_patients,
        )
    module.eval()
    return TrainedModel(
        module=module,
        preprocessing=preprocessing,
        privacy=plan.spend(),
        history=tuple(history),
        task=cohort.task,
        grad_sample_mode=grad_sample_mode if privacy.private else "none",
        device=str(device),
        accountant_state=accountant_state,
        wall_seconds=wall_seconds,
        kept_epoch=kept_epoch,
        validation_metric=train.validation_metric if selection is not None else "",
        validation_score=selection.best_score if selection is not None else math.nan,
        validation_patients=validation.n_patients if validation is not None else 0,
    )


def _grad_sample_mode(
    model_factory: ModelFactory, privacy: PrivacyConfig, train: TrainConfig
) -> str:
    """The Opacus mode to run: the model's measured default for ``auto``, else the one asked.

    Augmentation multiplicity averages a record's k views before clipping by accumulating
    per-sample gradients over k forward passes, which Opacus' hook-based modes do (the
    tied-parameter mechanism) and ghost clipping and expanded weights do not; ``auto`` then picks
    the model's first verified mode that can. Patient-level DP-SGD sums a patient's per-record
    gradients before clipping, so it too needs them materialised (hooks or functorch).
    """
    requested = privacy.grad_sample_mode
    if requested == "auto" and (train.augment_multiplicity > 1 or privacy.unit == "patient"):
        requested = next(
            (m for m in model_factory.grad_sample_modes if m in MULTIPLICITY_MODES), requested
        )
    mode = resolve_grad_sample_mode(model_factory, requested)
    if privacy.private and train.augment_multiplicity > 1 and mode not in MULTIPLICITY_MODES:
        raise ConfigError(
            f"train.augment_multiplicity > 1 needs privacy.grad_sample_mode in "
            f"{list(MULTIPLICITY_MODES)}, got {mode}"
        )
    if privacy.private and privacy.unit == "patient" and mode not in MULTIPLICITY_MODES:
        raise ConfigError(
            f"privacy.unit=patient needs privacy.grad_sample_mode in "
            f"{['auto', *MULTIPLICITY_MODES]} and a model verified for one of them, got {mode}"
        )
    return mode


def _augmenter(
    preprocessing: FittedPreprocessing, generator: torch.Generator
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The data's training-only augmentation drawing from ``generator``, or None without one."""
    if not getattr(preprocessing, "augmentations", ()):
        return None
    return lambda batch: preprocessing.augment(batch.cpu(), generator).to(batch.device)


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
