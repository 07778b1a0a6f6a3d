"""What the membership-inference audit does: how many models, which attacks, how to read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dptrain.audit.executors import EXECUTOR_NAMES
from dptrain.audit.harm import SEVERITY_WEIGHTS
from dptrain.errors import ConfigError

AUDIT_MODES = ("leave_many_out", "canary", "whitebox", "none")
# Audits of the DP implementation (`dptrain.audit.dp_audits`), by `audit.mode` or `audit.dp_audits`.
DP_AUDIT_NAMES = ("canary", "whitebox")
CANARY_KINDS = ("mislabel", "ood", "both")
ATTACK_NAMES = ("loss", "lira", "lira_offline", "rmia")
PATIENT_AGGREGATIONS = ("max", "mean")
# `lira_fixed_variance: auto` uses one pooled variance below this K. Carlini et al. (2022,
# "Membership inference attacks from first principles") fit a global variance when few shadow
# models exist, because a per-record variance from a handful of signals is noisy; the per-record
# variance pays off from a few dozen models on. Each LiRA target here has K/2 − 1 references per
# side (its complementary partner is left out), so K = 64 gives 31 per side. Measured on ACTG 175
# at K = 16 (issue 7): online AUC 0.580 fixed vs 0.565 per record, TPR at 0.1 % FPR 0.50 % vs
# 0.23 %. experiments/bench_patient_risk_stability.py prints both variants' AUC at each K: on
# ACTG 175 the pooled variance won at every K from 16 to 256, non-private and at ε = 8 (e.g.
# 0.614 vs 0.612 at K = 256, 0.603 vs 0.596 at K = 64), so `auto` pools up to K = 256 and leaves
# per-record variances to the larger audits where Carlini et al. find them stronger.
LIRA_FIXED_VARIANCE_BELOW = 512
_BOOL_WORDS = {"true": True, "false": False}


@dataclass
class AuditConfig:
    """The audits of a run: the leave-many-out membership audit and the DP-implementation audits.

    Attributes:
        mode: ``leave_many_out`` (train ``num_models`` models on random halves of the patients),
            ``canary`` or ``whitebox`` (only that audit of the DP implementation, see
            `dptrain.audit.dp_audits`), or ``none`` (skip auditing).
        num_models: K, even; each patient is in the training set of exactly K/2 models. More models
            give each patient more IN/OUT observations and less noisy per-patient risk (on ACTG
            175 the largest patient AUC at ε = 8 is 0.86 with K = 64 and 0.74 with K = 256, most
            of the difference being noise). 256 keeps the default run under a minute on 2 cores.
            ``auto`` grows the audit in rounds of ``auto_round_models`` until the per-patient
            answer is stable or the budget is spent (`dptrain.audit.auto`); the report says why
            it stopped.
        auto_round_models: Models added per round by ``num_models=auto`` (and the first round's
            size); even.
        auto_tolerance: ``auto`` stops when the Spearman–Brown reliability of the per-patient
            ranking changes by less than this between rounds.
        max_models: ``auto`` never grows past this K.
        max_minutes: ``auto`` starts no round that would end past this much wall time.
        attacks: Attacks to run, from ``loss``, ``lira`` (online), ``lira_offline``, ``rmia``.
        lira_fixed_variance: LiRA's variance: ``true`` (one pooled variance per side), ``false``
            (one per record) or ``auto`` (pooled below K = 512, `LIRA_FIXED_VARIANCE_BELOW`); the
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
        workers: Processes training audit models in parallel; 0 means one per CPU core. With
            ``executor=ray`` the CPUs of a local Ray started for the audit (0: all); with
            ``executor=submitit`` the jobs running at once (0: no limit).
        executor: Where the audit's models train: ``local`` (process pool), ``ray`` (Ray tasks;
            ``pip install 'dptrain[ray]'``) or ``submitit`` (SLURM through submitit;
            ``pip install 'dptrain[slurm]'``). Same signals on each.
        ray_address: Ray cluster to join (``auto``, ``ray://head:10001``); empty starts a local
            Ray for the audit.
        submitit_folder: submitit's job folder, on a file system the nodes share; empty means
            ``<run dir>/submitit``.
        submitit_cluster: ``slurm``, ``local`` (subprocesses on this machine) or ``debug``;
            empty lets submitit detect SLURM.
        slurm_partition: SLURM partition of the jobs (empty: the cluster's default).
        slurm_time_minutes: Time limit of each model's job.
        slurm_cpus_per_task: CPUs of each model's job.
        dp_audits: DP-implementation audits run besides the mode's (``canary``, ``whitebox``);
            each trains one extra model on the training split with the run's recipe.
        num_canaries: m for the DP audits; None takes each audit's default (canary: a quarter of
            the training patients, at most 1,000; white box: up to 4,000 gradient
            coordinates).
        canary_kind: ``mislabel`` (held-out records with a wrong label), ``ood``
            (out-of-distribution inputs) or ``both``, for the black-box canary audit.
        dp_audit_confidence: Confidence of the DP audits' ε lower bounds.
        whitebox_runs: Models the white-box audit trains, each with fresh canaries, pooled
            (1 by default; ``auto``: as many as its plan says reach half the accountant's ε,
            at most 64; on the default MLP 8 to 16 at ε = 2 to 8).
        slurm_options: Further submitit parameters, passed through as they are (e.g.
            ``+audit.slurm_options.slurm_mem=8G``).
        null_repeats: Re-labellings of the model pairs behind the noise floor of every headline
            figure (`dptrain.audit.null`); 20 give its mean to about ±0.01 AUC at a cost of
            seconds, against minutes for training the models.
        fdr: False-discovery rate of the list of detectably exposed patients
            (Benjamini–Hochberg over per-patient p-values).
        predictable_confidence: τ of the memorisation control (`dptrain.audit.memorisation`): an
            exposed patient whose true label the models that never saw them predict with mean
            probability ≥ τ is "predictable from the population", not a membership leak; below
            τ they are "memorised".
        sensitive_attributes: Binary (or one-hot categorical) input features whose value an
            attacker tries to infer from the models (`dptrain.audit.attribute`): each audit
            model also scores the pool with each candidate value, one extra forward pass per
            value. The default config takes them from ``data.sensitive_attributes``; empty
            skips attribute inference.
        knowledge: Partial-knowledge attackers (`dptrain.audit.knowledge`): each level is
            ``all``, feature groups joined by ``+`` (tables: ``demographics+labs``), or record
            parts joined by ``+`` (images: ``center:0.5``, ``lowres:7``; signals:
            ``leads:I+II``, ``window:0-2.5``; `dptrain.audit.knowledge_regions`); the attacker
            queries each model with the unknown part set to the population's, one extra forward
            pass per level other than ``all``. Empty skips it.
        feature_groups: Group name -> data columns, for ``knowledge``; the default config takes
            them from ``data.feature_groups``.
        severity: Attribute (or ``label``) -> {value -> ``low``, ``medium`` or ``high``}, the
            harm of a leak in that subgroup (`dptrain.audit.harm`); the default config takes it
            from ``data.severity``. Empty skips the harm ranking.
        value_names: The data's raw value -> reported name per subgroup attribute, so that
            ``severity`` may name raw values (``hemo: {"1": high}``).
    """

    mode: str = "leave_many_out"
    num_models: Any = 256  # an even int or "auto" (Hydra has no int | str)
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
    auto_round_models: int = 16
    auto_tolerance: float = 0.02
    max_models: int = 256
    max_minutes: float = 30.0
    executor: str = "local"
    ray_address: str = ""
    submitit_folder: str = ""
    submitit_cluster: str = ""
    slurm_partition: str = ""
    slurm_time_minutes: int = 60
    slurm_cpus_per_task: int = 1
    slurm_options: dict[str, Any] = field(default_factory=dict)
    dp_audits: list[str] = field(default_factory=list)
    num_canaries: int | None = None
    canary_kind: str = "mislabel"
    dp_audit_confidence: float = 0.95
    whitebox_runs: Any = 1  # a positive int or "auto" (Hydra has no int | str)
    predictable_confidence: float = 0.8
    sensitive_attributes: list[str] = field(default_factory=list)
    knowledge: list[str] = field(default_factory=list)
    feature_groups: dict[str, list[str]] = field(default_factory=dict)
    severity: dict[str, dict[str, str]] = field(default_factory=dict)
    value_names: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lira_fixed_variance = _bool_or_auto(self.lira_fixed_variance)
        self.num_models = _even_or_auto(self.num_models)
        self.whitebox_runs = _positive_or_auto(self.whitebox_runs)
        if self.mode not in AUDIT_MODES:
            raise ConfigError(f"audit.mode must be one of {list(AUDIT_MODES)}, got {self.mode!r}")
        for name in ("auto_round_models", "max_models"):
            value = getattr(self, name)
            if isinstance(value, bool) or value < 2 or value % 2:
                raise ConfigError(f"audit.{name} must be an even number >= 2, got {value}")
        if self.auto_round_models > self.max_models:
            raise ConfigError(
                f"audit.auto_round_models ({self.auto_round_models}) must be <= audit.max_models "
                f"({self.max_models})"
            )
        if not self.auto_tolerance >= 0:
            raise ConfigError(f"audit.auto_tolerance must be >= 0, got {self.auto_tolerance}")
        if not self.max_minutes > 0:
            raise ConfigError(f"audit.max_minutes must be > 0, got {self.max_minutes}")
        if self.executor not in EXECUTOR_NAMES:
            raise ConfigError(
                f"audit.executor must be one of {list(EXECUTOR_NAMES)}, got {self.executor!r}"
            )
        if self.slurm_time_minutes < 1 or self.slurm_cpus_per_task < 1:
            raise ConfigError(
                "audit.slurm_time_minutes and audit.slurm_cpus_per_task must be >= 1, got "
                f"{self.slurm_time_minutes} and {self.slurm_cpus_per_task}"
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
        unknown = [name for name in self.dp_audits if name not in DP_AUDIT_NAMES]
        if unknown:
            raise ConfigError(
                f"audit.dp_audits must name audits from {list(DP_AUDIT_NAMES)}, got {unknown}"
            )
        if self.num_canaries is not None and self.num_canaries < 2:
            raise ConfigError(
                f"audit.num_canaries must be >= 2 (null: the audit's default), "
                f"got {self.num_canaries}"
            )
        if self.canary_kind not in CANARY_KINDS:
            raise ConfigError(
                f"audit.canary_kind must be one of {list(CANARY_KINDS)}, got {self.canary_kind!r}"
            )
        if not 0.5 < self.predictable_confidence < 1:
            raise ConfigError(
                "audit.predictable_confidence must be in (0.5, 1), got "
                f"{self.predictable_confidence}"
            )
        if len(set(self.sensitive_attributes)) != len(self.sensitive_attributes):
            raise ConfigError(
                "audit.sensitive_attributes must not repeat a name, got "
                f"{list(self.sensitive_attributes)}"
            )
        if len(set(self.knowledge)) != len(self.knowledge) or not all(
            part for level in self.knowledge for part in str(level).split("+")
        ):
            raise ConfigError(
                "audit.knowledge must name distinct levels, each `all` or groups joined by `+`, "
                f"got {list(self.knowledge)}"
            )
        for attribute, by_value in self.severity.items():
            for value, level in by_value.items():
                if level not in SEVERITY_WEIGHTS:
                    raise ConfigError(
                        f"audit.severity.{attribute}.{value} must be one of "
                        f"{list(SEVERITY_WEIGHTS)}, got {level!r}"
                    )
        if not 0 < self.dp_audit_confidence < 1:
            raise ConfigError(
                f"audit.dp_audit_confidence must be in (0, 1), got {self.dp_audit_confidence}"
            )

    @property
    def enabled(self) -> bool:
        """Whether the run audits at all."""
        return self.mode != "none" or bool(self.dp_audits)

    @property
    def leave_many_out(self) -> bool:
        """Whether the run trains the K models of the leave-many-out membership audit."""
        return self.mode == "leave_many_out"

    @property
    def dp_audit_names(self) -> list[str]:
        """The DP-implementation audits to run: the mode's, then ``dp_audits``, each once."""
        names = [self.mode] if self.mode in DP_AUDIT_NAMES else []
        return names + [name for name in self.dp_audits if name not in names]

    @property
    def auto_models(self) -> bool:
        """Whether K is chosen by growing the audit until it is stable (``num_models=auto``)."""
        return self.num_models == "auto"

    def lira_uses_fixed_variance(self, num_models: int) -> bool:
        """Whether LiRA pools its variance for an audit of ``num_models`` models.

        Example:
            >>> config = AuditConfig()
            >>> config.lira_uses_fixed_variance(16), config.lira_uses_fixed_variance(512)
            (True, False)
        """
        if self.lira_fixed_variance == "auto":
            return num_models < LIRA_FIXED_VARIANCE_BELOW
        return bool(self.lira_fixed_variance)


def _even_or_auto(value: Any) -> int | str:
    """An even K >= 2 (int or digits) or ``auto``; anything else is a config error."""
    if value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 2 or value % 2:
        raise ConfigError(f"audit.num_models must be an even number >= 2 or auto, got {value!r}")
    return value


def _positive_or_auto(value: Any) -> int | str:
    """A run count >= 1 (int or digits) or ``auto``; anything else is a config error."""
    if value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"audit.whitebox_runs must be an integer >= 1 or auto, got {value!r}")
    return value


def _bool_or_auto(value: Any) -> bool | str:
    """``true``/``false`` (bool or word) or ``auto``; anything else is a config error."""
    if isinstance(value, bool) or value == "auto":
        return value
    if isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    raise ConfigError(f"audit.lira_fixed_variance must be true, false or auto, got {value!r}")
