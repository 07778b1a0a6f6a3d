"""The privacy plan: q, steps, σ and the ε curve of one training run, fixed before it starts.

`fit` and the audit both ask `PrivacyPlan.for_training_set` for the plan of a training set of a
given size, so the audit never re-derives σ: its K models of one or two sizes share the plan the
calibration cache holds. The plan carries its privacy unit: ``record`` (a unit is one record and a
patient with k records is covered by group privacy) or ``patient`` (units are patients: patients
are Poisson-sampled, the batch size counts patients, and δ and σ are resolved for N patients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dptrain.errors import ConfigError
from dptrain.privacy.accounting import (
    PRIVACY_UNITS,
    PrivacyConfig,
    PrivacySpend,
    calibrate_noise,
    epsilon_spent,
    rdp_epsilon_curve,
)


@dataclass(frozen=True)
class PrivacyPlan:
    """σ, q and steps of one training run, and the ε they give after every epoch.

    Attributes:
        privacy: The privacy config the plan implements.
        unit: What a neighbouring data set changes: ``record`` or ``patient``.
        n_units: Privacy units in the training set (records or patients).
        max_records_per_patient: Largest number of records of one patient, for the patient-level
            reading of a record-level ε.
        batch_size: Expected logical batch size, in units (records, or patients).
        epochs: Passes over the data.
        delta: δ of the guarantee (resolved against 1/N, N in units).
        noise_multiplier: σ (0 when not private).
        sample_rate: Poisson sampling rate q = 1 / ceil(N / batch size), the rate Opacus' loader
            and accountant use.
        steps: Noisy steps, epochs / q.
        steps_per_epoch: Steps in one epoch.
        epsilon_curve: RDP ε after each epoch (infinite when not private).

    Example:
        >>> plan = PrivacyPlan.for_training_set(PrivacyConfig(epsilon=8.0), n_units=1000,
        ...     batch_size=100, epochs=2)
        >>> plan.sample_rate, plan.steps, round(plan.noise_multiplier, 2) > 0
        (0.1, 20, True)
    """

    privacy: PrivacyConfig
    unit: str
    n_units: int
    max_records_per_patient: int
    batch_size: int
    epochs: int
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    steps_per_epoch: int
    epsilon_curve: tuple[float, ...]

    @classmethod
    def for_training_set(
        cls,
        privacy: PrivacyConfig,
        *,
        n_units: int,
        batch_size: int,
        epochs: int,
        unit: str | None = None,
        max_records_per_patient: int = 1,
    ) -> PrivacyPlan:
        """The plan for a training set of ``n_units`` privacy units (σ calibrated and cached).

        Args:
            privacy: Target (ε, δ), accountant and clipping.
            n_units: Training-set size in privacy units (records, or patients).
            batch_size: Expected logical batch size in privacy units.
            epochs: Passes over the data.
            unit: The privacy unit, ``record`` or ``patient``; None takes ``privacy.unit``.
            max_records_per_patient: Largest k, carried into the spend.

        Returns:
            The plan.

        Raises:
            ConfigError: For an unknown unit, an empty training set, a patient-level batch larger
                than the training set, δ ≥ 1/N or an unreachable ε.
        """
        unit = privacy.unit if unit is None else unit
        if unit not in PRIVACY_UNITS:
            raise ConfigError(f"privacy unit must be one of {list(PRIVACY_UNITS)}, got {unit!r}")
        if n_units < 1:
            raise ConfigError("the training set is empty: no privacy plan for 0 units")
        if unit == "patient" and batch_size > n_units:
            # q = batch / N would exceed 1: no Poisson rate samples that many patients per step.
            raise ConfigError(
                f"train.batch_size={batch_size} expected patients per batch is more than the "
                f"{n_units} training patients; lower train.batch_size"
            )
        steps_per_epoch = math.ceil(n_units / batch_size)
        sample_rate = 1 / steps_per_epoch  # what Opacus' DPDataLoader and accountant use
        steps = epochs * steps_per_epoch
        delta = privacy.resolve_delta(n_units, unit=unit)
        noise_multiplier, curve = 0.0, (math.inf,) * epochs
        if privacy.private:
            noise_multiplier = calibrate_noise(
                epsilon=privacy.epsilon,
                delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=privacy.accountant,
            )
            curve = rdp_epsilon_curve(
                noise_multiplier=noise_multiplier,
                sample_rate=sample_rate,
                steps=tuple((epoch + 1) * steps_per_epoch for epoch in range(epochs)),
                delta=delta,
            )
        return cls(
            privacy=privacy,
            unit=unit,
            n_units=n_units,
            max_records_per_patient=max_records_per_patient,
            batch_size=batch_size,
            epochs=epochs,
            delta=delta,
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps,
            steps_per_epoch=steps_per_epoch,
            epsilon_curve=curve,
        )

    def accountant_history(self) -> list[tuple[float, float, int]]:
        """What Opacus' accountant must have recorded after the run: one (σ, q, steps) entry."""
        return [(self.noise_multiplier, self.sample_rate, self.steps)]

    def spend(self) -> PrivacySpend:
        """The guarantee of a run that followed the plan, with ε from the configured accountant."""
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
            unit=self.unit,
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
