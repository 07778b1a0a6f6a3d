"""The training recipe besides privacy: epochs, batch sizes, optimiser, class weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dptrain.errors import ConfigError
from dptrain.training.device import DEVICES

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
CLASS_WEIGHTS = ("balanced", "none")
VALIDATION_METRICS = ("loss", "auroc")


@dataclass
class TrainConfig:
    """How to train; the audit's reference models copy it exactly.

    Attributes:
        epochs: Passes over the training data (expected, under Poisson sampling).
        batch_size: Logical (expected) batch size; q = 1 / ceil(N / batch_size). Counted in
            privacy units: records, or patients with ``privacy.unit=patient``.
        max_physical_batch_size: Largest batch put through the model at once; Opacus'
            BatchMemoryManager splits bigger logical batches (DP only). Patients, not records,
            with ``privacy.unit=patient`` (cap their records with
            ``privacy.max_records_per_patient``).
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr: Learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty.
        class_weights: ``balanced`` (loss weights n / (C n_c) from the training labels, never a
            weighted sampler, which would break the accountant's sampling assumption) or ``none``.
        augment_multiplicity: Views per record per step when the data configures augmentation:
            each record's gradient is the mean over k augmented views, taken before clipping
            (De et al. 2022), so the sensitivity is unchanged; 1 = one view.
        ema_decay: Exponential moving average of the parameters after every step (De et al.
            2022); the deployed model is the average. Post-processing of DP outputs, so it costs
            no privacy. 0 disables it.
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
        threads: Intra-op threads of the deployed model's training; 0 chooses by model size
            (one thread for tiny models, which lose to thread contention; the available cores
            for big ones; `dptrain.training.threads`). The audit's models always use one each.
        checkpoint_every: Epochs between the deployed model's training checkpoints
            (``<run dir>/training_state.pt``, also written after the last epoch), from which a
            killed run re-launched into its directory continues with the same numbers
            (`dptrain.training.resume`); 0 disables them.
        early_stopping: Keep the epoch that scores best on validation patients instead of the
            last one (`dptrain.training.selection`). The validation patients are a
            ``validation_fraction`` of the training patients, drawn by patient and stratified by
            label, and kept out of the DP training data: the privacy plan (N, q, δ) is for the
            patients that remain. Every one of ``epochs`` epochs still runs, so ε is the one
            planned for all of them; the validation patients choose only the epoch kept and are
            not covered by ε. The audit's models train for exactly the kept number of epochs.
        validation_fraction: Share of the training patients held out for ``early_stopping``
            (unused without it).
        validation_metric: What chooses the epoch: ``auroc`` (the utility metric the report
            leads with; highest wins) or ``loss`` (the training loss, class-weighted as in
            training, on the validation records; lowest wins). Ties keep the earlier epoch.
            AUROC by default: DP-SGD with Adam drifts to badly calibrated logits whose loss
            rises while their ranking improves (ACTG 175 at ε = 8: validation loss is lowest
            after epoch 1, test AUROC 0.69 there against 0.78 at the AUROC-chosen epoch).
    """

    epochs: int = 30
    batch_size: int = 256
    max_physical_batch_size: int = 1024
    optimizer: str = "adam"
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 0.0
    class_weights: str = "balanced"
    augment_multiplicity: int = 1
    ema_decay: float = 0.0
    device: str = "auto"
    threads: int = 0
    checkpoint_every: int = 1
    early_stopping: bool = False
    validation_fraction: float = 0.1
    validation_metric: str = "auroc"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_physical_batch_size", "augment_multiplicity"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"train.optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ConfigError(
                f"train.class_weights must be one of {list(CLASS_WEIGHTS)}, "
                f"got {self.class_weights!r}"
            )

        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if isinstance(self.threads, bool) or self.threads < 0:
            raise ConfigError(f"train.threads must be >= 0 (0 = by model size), got {self.threads}")
        if isinstance(self.checkpoint_every, bool) or self.checkpoint_every < 0:
            raise ConfigError(
                f"train.checkpoint_every must be >= 0 (0 = no checkpoints), got "
                f"{self.checkpoint_every}"
            )
        if not isinstance(self.early_stopping, bool):
            raise ConfigError(
                f"train.early_stopping must be true or false, got {self.early_stopping!r}"
            )
        if not 0 < self.validation_fraction <= 0.5:
            raise ConfigError(
                f"train.validation_fraction must be in (0, 0.5] (a share of the training "
                f"patients), got {self.validation_fraction}"
            )
        if self.validation_metric not in VALIDATION_METRICS:
            raise ConfigError(
                f"train.validation_metric must be one of {list(VALIDATION_METRICS)}, "
                f"got {self.validation_metric!r}"
            )
        if self.device not in DEVICES:
            raise ConfigError(f"train.device must be one of {list(DEVICES)}, got {self.device!r}")

    def make_optimizer(self, parameters) -> torch.optim.Optimizer:
        """The configured optimiser over ``parameters``."""
        options = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            options["momentum"] = self.momentum
        return OPTIMIZERS[self.optimizer](parameters, **options)
