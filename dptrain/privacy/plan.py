"""The privacy plan: q, steps, σ and the ε curve of one training run, fixed before it starts.

`fit` and the audit both ask `PrivacyPlan.for_training_set` for the plan of a training set of a
given size, so the audit never re-derives σ: its K models of one or two sizes share the plan the
calibration cache holds. The plan carries its privacy unit: ``record`` (a unit is one record and a
patient with k records is covered by group privacy) or ``patient`` (units are patients: patients
are Poisson-sampled, the batch size counts patients, and δ and σ are resolved for N patients).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from opacus.accountants.analysis.prv import (
    DiscretePRV,
    Domain,
    PoissonSubsampledGaussianPRV,
    TruncatedPrivacyRandomVariable,
    compute_safe_domain_size,
    discretize,
)
from scipy.fft import irfft, next_fast_len, rfft

from dptrain.errors import ConfigError
from dptrain.privacy.accounting import (
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
        epsilon_curve: ε after each epoch from the configured accountant (PRV by default); its
            last point is the spend's headline ε (infinite when not private).
        epsilon_rdp_curve: RDP ε after each epoch, for comparison (looser than PRV).

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
    epsilon_rdp_curve: tuple[float, ...]

    @classmethod
    def for_training_set(
        cls,
        privacy: PrivacyConfig,
        *,
        n_units: int,
        batch_size: int,
        epochs: int,
        max_records_per_patient: int = 1,
    ) -> PrivacyPlan:
        """The plan for a training set of ``n_units`` privacy units (σ calibrated and cached).

        Args:
            privacy: Target (ε, δ), accountant and clipping.
            n_units: Training-set size in privacy units (records, or patients).
            batch_size: Expected logical batch size in privacy units.
            epochs: Passes over the data.
            max_records_per_patient: Largest k, carried into the spend; it also resolves
                ``privacy.unit=auto`` (`PrivacyConfig.for_cohort`), so a caller planning for
                several training sets of one cohort resolves the unit once, on the whole cohort.

        Returns:
            The plan.

        Raises:
            ConfigError: For an empty training set, a patient-level batch larger
                than the training set, δ ≥ 1/N or an unreachable ε.
        """
        privacy = privacy.for_cohort(max_records_per_patient)
        unit = privacy.unit
        if n_units < 1:
            raise ConfigError("the training set is empty: no privacy plan for 0 units")
        if unit == "patient" and batch_size > n_units:
            # q = batch / N would exceed 1: no Poisson rate samples that many patients per step.
            raise ConfigError(
                f"train.batch_size={batch_size} expected patients per batch is more than the "
                f"{n_units} training patients of patient-level DP-SGD; lower train.batch_size "
                "(or set privacy.unit=record for ε per record)"
            )
        steps_per_epoch = math.ceil(n_units / batch_size)
        sample_rate = 1 / steps_per_epoch  # what Opacus' DPDataLoader and accountant use
        steps = epochs * steps_per_epoch
        delta = privacy.resolve_delta(n_units, unit=unit)
        noise_multiplier, curve, rdp_curve = 0.0, (math.inf,) * epochs, (math.inf,) * epochs
        if privacy.private:
            noise_multiplier = calibrate_noise(
                epsilon=privacy.epsilon,
                delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=privacy.accountant,
            )
            epoch_steps = tuple((epoch + 1) * steps_per_epoch for epoch in range(epochs))
            rdp_curve = rdp_epsilon_curve(
                noise_multiplier=noise_multiplier,
                sample_rate=sample_rate,
                steps=epoch_steps,
                delta=delta,
            )
            curve = accountant_epsilon_curve(
                noise_multiplier=noise_multiplier,
                sample_rate=sample_rate,
                steps=epoch_steps,
                delta=delta,
                accountant=privacy.accountant,
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
            epsilon_rdp_curve=rdp_curve,
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
            epsilon_rdp=self.epsilon_rdp_curve[-1],
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


# Opacus' defaults for `PRVAccountant.get_epsilon`: the headline ε is computed with these.
PRV_EPSILON_ERROR = 0.01
PRV_DELTA_ERROR_SHARE = 1e-3


@lru_cache(maxsize=64)
def accountant_epsilon_curve(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: tuple[int, ...],
    delta: float,
    accountant: str,
) -> tuple[float, ...]:
    """ε after each step count in ``steps`` from ``accountant``; the last is `epsilon_spent`'s.

    Trackers plot this curve beside the headline ε, so both must come from one accountant (an
    RDP curve ends above a PRV headline: 8.8 for a target of 8). One PRV evaluation per epoch
    would cost ~0.3 s each; instead the PRV is discretised and Fourier-transformed once, on the
    domain Opacus would use for the largest step count (finer and wider than each smaller count
    needs, so every point is still an upper bound within ``PRV_EPSILON_ERROR``), and composed
    per epoch as Opacus' ``compose_heterogeneous`` does.
    The last point is `epsilon_spent` itself (cached), so it equals the spend's ε exactly.

    Example:
        >>> curve = accountant_epsilon_curve(noise_multiplier=1.0, sample_rate=0.1,
        ...     steps=(10, 20), delta=1e-5, accountant="prv")
        >>> curve[-1] == epsilon_spent(noise_multiplier=1.0, sample_rate=0.1, steps=20,
        ...     delta=1e-5, accountant="prv") and curve[0] < curve[1]
        True
    """
    final = epsilon_spent(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps[-1],
        delta=delta,
        accountant=accountant,
    )
    if accountant != "prv":  # RDP: one evaluation per step count is cheap
        earlier = rdp_epsilon_curve(
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps[:-1],
            delta=delta,
        )
        return (*earlier, final)
    delta_error = delta * PRV_DELTA_ERROR_SHARE
    prv = PoissonSubsampledGaussianPRV(sample_rate, noise_multiplier)
    largest = max(steps)
    with warnings.catch_warnings():  # the domain's RDP bound; it does not change the ε
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        size = compute_safe_domain_size(
            prvs=[prv],
            max_self_compositions=[largest],
            eps_error=PRV_EPSILON_ERROR,
            delta_error=delta_error,
        )
    mesh = PRV_EPSILON_ERROR / math.sqrt(largest * math.log(12 / delta_error) / 2)
    # Opacus' grid shape (t = (i - n/2 + 1) * mesh), widened to an FFT-friendly even length n:
    # a wider domain is still safe, and an awkward n (a large prime factor) makes FFTs 10x slower.
    length = 2 * math.ceil(size / mesh) + 2
    while (fast := next_fast_len(length)) % 2:
        length = fast + 1
    domain = Domain(t_min=-(fast // 2 - 1) * mesh, t_max=fast // 2 * mesh, size=fast)
    truncated = TruncatedPrivacyRandomVariable(prv, domain.t_min, domain.t_max)
    spectrum = rfft(discretize(truncated, domain).pmf)
    # `compose_heterogeneous` for one PRV, with one FFT for all epochs and the spectrum's power
    # advanced epoch by epoch (a complex power of the whole array per epoch costs more).
    power, composed_steps, gap_powers = np.ones_like(spectrum), 0, {}
    earlier = []
    for count in steps[:-1]:
        if count == 0:
            earlier.append(0.0)
            continue
        gap = count - composed_steps
        if gap not in gap_powers:
            gap_powers[gap] = spectrum**gap
        power, composed_steps = power * gap_powers[gap], count
        shift = count - 1 + (fast // 2 if count % 2 == 0 else 0)
        composed = DiscretePRV(pmf=np.roll(irfft(power, fast), shift), domain=domain)
        earlier.append(float(composed.compute_epsilon(delta, delta_error, PRV_EPSILON_ERROR)[2]))
    return (*earlier, final)
