"""Privacy accounting: what to ask for (config), the noise that buys it, and what was spent.

Calibration and accounting are pure functions of (ε, δ, q, steps) or (σ, q, steps, δ) and cost
seconds with the PRV accountant, so they are cached: the K models of an audit share one recipe and
pay for one calibration.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from opacus.accountants import create_accountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.utils import get_noise_multiplier

from dptrain.errors import ConfigError

PRIVACY_MODES = ("dp", "none")
# Above this ε the DP-implied attack bounds are vacuous and σ calibration slows (ε = 1e9 ran for
# 15 minutes): such budgets are refused in favour of the non-private baseline.
MAX_EPSILON = 100.0
ACCOUNTANTS = ("prv", "rdp")
GRAD_SAMPLE_MODES = ("auto", "ghost", "hooks", "functorch", "ew")
PRIVACY_UNITS = ("auto", "record", "patient")
# Patient-level DP-SGD sums each patient's per-record gradients before clipping, so it needs the
# per-sample gradients materialised: ghost clipping (norms only) and expanded weights cannot.
PATIENT_GRAD_SAMPLE_MODES = ("auto", "hooks", "functorch")
# Rényi orders for the cheap per-epoch curve; Opacus' own default set.
RDP_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


@dataclass
class PrivacyConfig:
    """The privacy a training run must give, and the DP-SGD knobs that are not the budget.

    Attributes:
        mode: ``dp`` (DP-SGD to the target budget) or ``none`` (the non-private baseline on the
            same code path).
        epsilon: Target ε; the noise multiplier is calibrated to reach it at the last step.
            ``inf`` is the non-private baseline (``mode`` becomes ``none``) on the same recipe.
        delta: Target δ; None picks ``min(1e-5, 1 / (10 N))`` for N training records. A δ ≥ 1/N is
            rejected: it would allow publishing a record outright.
        max_grad_norm: Per-sample gradient clipping norm C.
        accountant: ``prv`` (tight; the reported ε) or ``rdp``; the other is reported beside it.
        grad_sample_mode: Opacus per-sample gradient mode: ``auto`` (the model's fastest mode
            verified correct by its per-sample-gradient test: ghost clipping for the MLP, hooks for
            the image CNNs), ``ghost``, ``hooks``, ``functorch`` or ``ew``.
        unit: What ε protects: ``record`` (one record; a patient with k records only through group
            privacy), ``patient`` (patient-level DP-SGD: patients are Poisson-sampled and each
            patient's summed gradient is clipped to C, so ε covers all of a patient's records) or
            ``auto`` (the default: ``patient`` when some patient has several records, ``record``
            when every patient has one, where the two are the same guarantee; see `for_cohort`).
        max_records_per_patient: With ``unit=patient``, the most records of one patient used in a
            step (more are subsampled per step, seeded); None uses them all. The cap bounds
            compute and changes utility, never the guarantee: a patient's gradient is clipped to C
            however many of its records enter it.
    """

    mode: str = "dp"
    epsilon: float = 8.0
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "auto"
    unit: str = "auto"
    max_records_per_patient: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in PRIVACY_MODES:
            raise ConfigError(
                f"privacy.mode must be one of {list(PRIVACY_MODES)}, got {self.mode!r}"
            )
        if self.epsilon == math.inf:
            # ε = ∞ is the non-private baseline on the same recipe, so a sweep can end in it.
            self.mode = "none"
        if not self.epsilon > 0:
            raise ConfigError(
                f"privacy.epsilon must be > 0 (inf: the non-private baseline), got {self.epsilon}"
            )
        if self.private and self.epsilon > MAX_EPSILON:
            raise ConfigError(
                f"privacy.epsilon={self.epsilon:g} is above {MAX_EPSILON:g}, where the guarantee "
                "limits no attack (and calibrating σ takes ever longer); use privacy=none for a "
                "non-private baseline"
            )
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta must be in (0, 1), got {self.delta}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"privacy.max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"privacy.accountant must be one of {list(ACCOUNTANTS)}, got {self.accountant!r}"
            )
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ConfigError(
                f"privacy.grad_sample_mode must be one of {list(GRAD_SAMPLE_MODES)}, "
                f"got {self.grad_sample_mode!r}"
            )
        if self.unit not in PRIVACY_UNITS:
            raise ConfigError(
                f"privacy.unit must be one of {list(PRIVACY_UNITS)}, got {self.unit!r}"
            )
        if self.unit == "patient" and self.grad_sample_mode not in PATIENT_GRAD_SAMPLE_MODES:
            raise ConfigError(
                f"privacy.unit=patient needs privacy.grad_sample_mode in "
                f"{list(PATIENT_GRAD_SAMPLE_MODES)}, got {self.grad_sample_mode!r}"
            )
        if self.max_records_per_patient is not None and self.max_records_per_patient < 1:
            raise ConfigError(
                f"privacy.max_records_per_patient must be >= 1 record (null: no cap), "
                f"got {self.max_records_per_patient}"
            )

    def for_cohort(self, max_records_per_patient: int) -> PrivacyConfig:
        """This config with ``unit=auto`` resolved for a cohort whose largest patient has k records.

        ``auto`` protects the patient, the unit a hospital must protect, whenever a patient has
        several records (measured on the MIMIC-IV demo admissions at ε = 8: ε per patient 8.0
        instead of 674 through group privacy, for test AUROC 0.70 instead of 0.74). When every
        patient has one record the two units give the same guarantee with the same σ, q and steps,
        and ``record`` keeps the faster per-sample gradient modes (ghost clipping). The
        non-private baseline resolves the same way, so an ε sweep up to ``inf`` changes only the
        noise, never the sampling or the loss.

        Example:
            >>> PrivacyConfig().for_cohort(3).unit, PrivacyConfig().for_cohort(1).unit
            ('patient', 'record')
        """
        if self.unit != "auto":
            return self
        unit = "patient" if max_records_per_patient > 1 else "record"
        if unit == "patient" and self.grad_sample_mode not in PATIENT_GRAD_SAMPLE_MODES:
            raise ConfigError(
                f"privacy.unit=auto protects patients (some have {max_records_per_patient} "
                f"records), which needs privacy.grad_sample_mode in "
                f"{list(PATIENT_GRAD_SAMPLE_MODES)}, got {self.grad_sample_mode!r}; or set "
                "privacy.unit=record"
            )
        return dataclasses.replace(self, unit=unit)

    @property
    def private(self) -> bool:
        """Whether training adds noise at all."""
        return self.mode == "dp"

    def resolve_delta(self, n_units: int, unit: str = "record") -> float:
        """The δ to use for ``n_units`` privacy units (records or patients), checked against 1/N.

        Example:
            >>> PrivacyConfig().resolve_delta(1711)
            1e-05
        """
        if self.delta is None:
            return min(1e-5, 10 ** math.floor(math.log10(1 / (10 * n_units))))
        if self.delta >= 1 / n_units:
            raise ConfigError(
                f"privacy.delta={self.delta:g} is not below 1/N = {1 / n_units:.3g} for "
                f"N = {n_units} training {unit}s; choose e.g. privacy.delta=1e-5 or leave it unset"
            )
        return self.delta


@dataclass(frozen=True)
class PrivacySpend:
    """What a training run's privacy guarantee is, stated with its unit.

    Attributes:
        private: False for the non-private baseline (then ε is infinite).
        unit: What one neighbouring-data-set change is: ``record`` (a patient with k records is
            covered by group privacy over k records) or ``patient`` (all of one patient's records).
        epsilon: ε spent, from the configured accountant (infinite when not private).
        epsilon_rdp: ε from the RDP accountant, for comparison with other tools.
        epsilon_target: The ε the noise was calibrated to.
        delta: δ of the guarantee.
        noise_multiplier: σ, noise standard deviation over the clipping norm.
        sample_rate: Poisson sampling rate q of each record per step.
        steps: Number of noisy steps.
        epochs: Number of passes over the data.
        max_grad_norm: Clipping norm C.
        accountant: The accountant behind ``epsilon``.
        n_units: Number of privacy units (records or patients) in the training set.
        max_records_per_patient: Largest k, for the patient-level reading of ε.
    """

    private: bool
    unit: str
    epsilon: float
    epsilon_rdp: float
    epsilon_target: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    epochs: int
    max_grad_norm: float
    accountant: str
    n_units: int
    max_records_per_patient: int


@lru_cache(maxsize=64)
def calibrate_noise(
    *, epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """The smallest σ (to Opacus' bisection tolerance) whose ε after ``steps`` is ≤ ``epsilon``.

    This is the calibration `PrivacyEngine.make_private_with_epsilon` performs, cached.

    Raises:
        ConfigError: If no σ up to Opacus' maximum reaches the budget.
    """
    try:
        with _quiet_rdp_order_warning():
            noise_multiplier = get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
    except ValueError as error:
        raise ConfigError(
            f"privacy.epsilon={epsilon} cannot be reached with δ={delta:g}, q={sample_rate:.3g} "
            f"and {steps} steps ({error}); raise privacy.epsilon or lower train.epochs"
        ) from error
    return float(noise_multiplier)


@lru_cache(maxsize=256)
def epsilon_spent(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str
) -> float:
    """ε after ``steps`` Poisson-subsampled Gaussian steps, from an Opacus accountant."""
    if steps == 0:
        return 0.0
    ledger = create_accountant(mechanism=accountant)
    ledger.history = [(noise_multiplier, sample_rate, steps)]
    with _quiet_rdp_order_warning():
        return float(ledger.get_epsilon(delta=delta))


@lru_cache(maxsize=64)
def rdp_epsilon_curve(
    *, noise_multiplier: float, sample_rate: float, steps: tuple[int, ...], delta: float
) -> tuple[float, ...]:
    """RDP ε after each step count in ``steps``, from one RDP evaluation (RDP adds up over steps).

    Cheap enough to log ε after every epoch; the headline ε comes from `epsilon_spent`.

    Example:
        >>> curve = rdp_epsilon_curve(noise_multiplier=1.0, sample_rate=0.1, steps=(10, 100),
        ...     delta=1e-5)
        >>> curve[0] < curve[1]
        True
    """
    one_step = compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ORDERS)
    )
    with _quiet_rdp_order_warning():
        return tuple(
            float(get_privacy_spent(orders=list(RDP_ORDERS), rdp=one_step * count, delta=delta)[0])
            if count
            else 0.0
            for count in steps
        )


@contextmanager
def _quiet_rdp_order_warning() -> Iterator[None]:
    """Silences Opacus' "optimal order is the largest alpha" warning.

    It fires early in training (small ε: the best Rényi order is the largest one, so the RDP ε is
    slightly loose) and inside the PRV accountant's domain search; neither changes a reported ε.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        yield
