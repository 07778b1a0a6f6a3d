"""What the membership-inference audit does: how many models, which attacks, how to read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dptrain.errors import ConfigError

AUDIT_MODES = ("leave_many_out", "none")
ATTACK_NAMES = ("loss", "lira", "lira_offline", "rmia")
PATIENT_AGGREGATIONS = ("max", "mean")
# `lira_fixed_variance: auto` uses one pooled variance below this K. Carlini et al. (2022,
# "Membership inference attacks from first principles") fit a global variance when few shadow
# models exist, because a per-record variance from a handful of signals is noisy; the per-record
# variance pays off from a few dozen models on. Each LiRA target here has K/2 − 1 references per
# side (its complementary partner is left out), so K = 64 gives 31 per side. Measured on ACTG 175
# at K = 16 (issue 7): online AUC 0.580 fixed vs 0.565 per record, TPR at 0.1 % FPR 0.50 % vs
# 0.23 %. experiments/bench_patient_risk_stability.py prints both variants' AUC at each K.
LIRA_FIXED_VARIANCE_BELOW = 64
_BOOL_WORDS = {"true": True, "false": False}


@dataclass
class AuditConfig:
    """The leave-many-out audit of the training recipe.

    Attributes:
        mode: ``leave_many_out`` (train ``num_models`` models on random halves of the patients) or
            ``none`` (skip the audit).
        num_models: K, even; each patient is in the training set of exactly K/2 models. More models
            give each patient more IN/OUT observations and less noisy per-patient risk (on ACTG
            175 the largest patient AUC at ε = 8 is 0.86 with K = 64 and 0.74 with K = 256, most
            of the difference being noise). 256 keeps the default run under a minute on 2 cores.
        attacks: Attacks to run, from ``loss``, ``lira`` (online), ``lira_offline``, ``rmia``.
        lira_fixed_variance: LiRA's variance: ``true`` (one pooled variance per side), ``false``
            (one per record) or ``auto`` (pooled below K = 64, `LIRA_FIXED_VARIANCE_BELOW`); the
            variant that ran is named in the report.
        rmia_offline_a: RMIA's offline coefficient a (Zarifzadeh et al. 2024).
        rmia_gamma: RMIA's likelihood-ratio threshold γ.
        rmia_num_population: Number of population records z per target model in RMIA.
        patient_aggregation: ``max`` (a patient is as exposed as their most exposed record) or
            ``mean`` over the patient's records.
        fpr_targets: False-positive rates at which TPR is reported.
        confidence: Confidence level of per-patient lower bounds and ε lower bounds.
        risk_thresholds: Patient AUC thresholds at which exposed patients are counted.
        min_models_for_patients: Below this K the report warns that per-patient numbers are noisy.
        workers: Processes training audit models in parallel; 0 means one per CPU core.
        null_repeats: Re-labellings of the model pairs behind the noise floor of every headline
            figure (`dptrain.audit.null`); 20 give its mean to about ±0.01 AUC at a cost of
            seconds, against minutes for training the models.
        fdr: False-discovery rate of the list of detectably exposed patients
            (Benjamini–Hochberg over per-patient p-values).
    """

    mode: str = "leave_many_out"
    num_models: int = 256
    attacks: list[str] = field(default_factory=lambda: list(ATTACK_NAMES))
    lira_fixed_variance: Any = "auto"  # true, false or "auto" (Hydra has no bool | str)
    rmia_offline_a: float = 0.3
    rmia_gamma: float = 1.0
    rmia_num_population: int = 1000
    patient_aggregation: str = "max"
    fpr_targets: list[float] = field(default_factory=lambda: [0.001, 0.01])
    confidence: float = 0.95
    risk_thresholds: list[float] = field(default_factory=lambda: [0.8, 0.9, 0.95])
    min_models_for_patients: int = 32
    workers: int = 0
    null_repeats: int = 20
    fdr: float = 0.05

    def __post_init__(self) -> None:
        self.lira_fixed_variance = _bool_or_auto(self.lira_fixed_variance)
        if self.mode not in AUDIT_MODES:
            raise ConfigError(f"audit.mode must be one of {list(AUDIT_MODES)}, got {self.mode!r}")
        if self.num_models < 2 or self.num_models % 2:
            raise ConfigError(
                f"audit.num_models must be an even number >= 2, got {self.num_models}"
            )
        unknown = [name for name in self.attacks if name not in ATTACK_NAMES]
        if unknown or not self.attacks:
            raise ConfigError(
                f"audit.attacks must be a non-empty list from {list(ATTACK_NAMES)}, "
                f"got {list(self.attacks)}"
            )
        if self.patient_aggregation not in PATIENT_AGGREGATIONS:
            raise ConfigError(
                f"audit.patient_aggregation must be one of {list(PATIENT_AGGREGATIONS)}, "
                f"got {self.patient_aggregation!r}"
            )
        if not all(0 < rate < 1 for rate in self.fpr_targets):
            raise ConfigError(f"audit.fpr_targets must be in (0, 1), got {list(self.fpr_targets)}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"audit.confidence must be in (0, 1), got {self.confidence}")
        if not all(0.5 <= value < 1 for value in self.risk_thresholds):
            raise ConfigError(
                f"audit.risk_thresholds must be in [0.5, 1), got {list(self.risk_thresholds)}"
            )
        if self.workers < 0:
            raise ConfigError(f"audit.workers must be >= 0, got {self.workers}")
        if isinstance(self.null_repeats, bool) or self.null_repeats < 1:
            raise ConfigError(f"audit.null_repeats must be >= 1, got {self.null_repeats}")
        if not 0 < self.fdr < 1:
            raise ConfigError(f"audit.fdr must be in (0, 1), got {self.fdr}")

    @property
    def enabled(self) -> bool:
        """Whether the run audits at all."""
        return self.mode != "none"

    def lira_uses_fixed_variance(self, num_models: int) -> bool:
        """Whether LiRA pools its variance for an audit of ``num_models`` models.

        Example:
            >>> config = AuditConfig()
            >>> config.lira_uses_fixed_variance(16), config.lira_uses_fixed_variance(256)
            (True, False)
        """
        if self.lira_fixed_variance == "auto":
            return num_models < LIRA_FIXED_VARIANCE_BELOW
        return bool(self.lira_fixed_variance)


def _bool_or_auto(value: Any) -> bool | str:
    """``true``/``false`` (bool or word) or ``auto``; anything else is a config error."""
    if isinstance(value, bool) or value == "auto":
        return value
    if isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    raise ConfigError(f"audit.lira_fixed_variance must be true, false or auto, got {value!r}")
