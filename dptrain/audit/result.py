"""What the leave-many-out audit established, as plain result types, and its DP-implied bounds.

The types are what the report, ``results.json``, the trackers and the sweep report read; the
audit's procedure is in `dptrain.audit.run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dptrain.audit.attribute import AttributeInference
from dptrain.audit.epsilon import EpsilonLowerBound
from dptrain.audit.fdr import PatientExposure
from dptrain.audit.harm import HarmRanking
from dptrain.audit.knowledge import KnowledgeCurve
from dptrain.audit.memorisation import MemorisationSplit
from dptrain.audit.metrics import AttackMetrics, AucInterval, RecordVulnerability
from dptrain.audit.null import NullFloor
from dptrain.audit.patients import PatientRisk
from dptrain.audit.reliability import SplitHalfReliability
from dptrain.audit.shrinkage import RiskDeconvolution
from dptrain.audit.subgroups import SubgroupRisk
from dptrain.privacy.accounting import PrivacySpend
from dptrain.privacy.bounds import (
    AttackBound,
    dp_sgd_attack_bound,
    dp_sgd_epsilon,
    group_privacy_attack_bound,
    single_pair_attack_bound,
)

NOT_IN_JSON = {"json": False}
# Below this p-value the number of patients above the DP bound is reported as evidence of a
# broken guarantee rather than chance.
VIOLATION_EVIDENCE = 0.01  # arrays too large for results.json: written to CSV / NPZ instead


@dataclass(frozen=True)
class AttackResult:
    """One attack's success over all (model, patient) pairs, members positive.

    Attributes:
        name: Attack name (``loss``, ``lira``, ``lira_offline``, ``rmia``).
        metrics: ROC AUC, TPR at the target FPRs, balanced accuracy, ROC curve.
        auc_interval: Bootstrap confidence interval of the AUC, resampling patients.
        epsilon_lower_bound: Empirical ε lower bound at the audit's δ.
        variant: Which variant ran, where an attack has several (LiRA: ``fixed variance`` or
            ``per-record variance``); empty otherwise.
    """

    name: str
    metrics: AttackMetrics
    auc_interval: AucInterval
    epsilon_lower_bound: EpsilonLowerBound
    variant: str = ""


@dataclass(frozen=True)
class DPBounds:
    """What the audit models' DP guarantee allows any membership attack to achieve.

    Attributes:
        record: Limit for one record, from the whole privacy profile δ(ε); for a patient-level
            run (``privacy.unit=patient``) not applicable: method ``not-applicable``, AUC 1.
        patient: Limit for a patient with ``group_size`` records (equal to ``record`` if 1), from
            the exact mixture-of-Gaussians accounting of their records' Poisson sampling; for a
            patient-level run the plain bound of (σ, q, steps) over patients, for any patient.
        single_pair: Limit from the single (ε, δ) pair alone, to show how much the profile adds.
        group_size: Largest number of records of one patient in the pool.
        patient_epsilon: ε at the run's δ for a patient with ``group_size`` records.
        classic_group_privacy: For ``group_size`` > 1, the looser limit of textbook group privacy
            over the profile, δ_k(kε) = δ(ε)(e^{kε} − 1)/(e^ε − 1), for comparison; else None.
    """

    record: AttackBound
    patient: AttackBound
    single_pair: AttackBound
    group_size: int
    patient_epsilon: float
    classic_group_privacy: AttackBound | None


@dataclass(frozen=True)
class PatientSummary:
    """Headline numbers of the per-patient risk.

    Attributes:
        n_patients: Patients audited.
        median_auc: Median patient AUC.
        p99_auc: 99th percentile of patient AUC.
        max_auc: Largest patient AUC.
        max_auc_standard_error: Standard error of the largest patient AUC.
        thresholds: ``(n_thresholds,)`` AUC thresholds.
        exposed: ``(n_thresholds,)`` patients whose AUC exceeds each threshold.
        exposed_lower_bound: ``(n_thresholds,)`` patients whose lower confidence bound exceeds it.
        above_dp_bound: Patients whose lower bound exceeds the DP-implied patient-level maximum
            AUC. Each lower bound fails with probability 1 − confidence, so among thousands of
            patients some exceed the bound by chance even when the guarantee holds.
        above_dp_bound_p_value: Probability of at least ``above_dp_bound`` such patients if every
            patient's true AUC sat exactly at the bound (Binomial(n, 1 − confidence) tail); a
            small value is evidence that the guarantee does not hold (or that the audit's
            assumptions fail), a large one is chance.
    """

    n_patients: int
    median_auc: float
    p99_auc: float
    max_auc: float
    max_auc_standard_error: float
    thresholds: np.ndarray
    exposed: np.ndarray
    exposed_lower_bound: np.ndarray
    above_dp_bound: int
    above_dp_bound_p_value: float


@dataclass(frozen=True)
class AuditResult:
    """Everything the audit measured, as plain data.

    Attributes:
        num_models: K.
        pool_patients: Patients in the audit pool (the whole cohort).
        pool_records: Records in the audit pool.
        model_training_patients: ``(K,)`` patients each model trained on.
        model_privacy: The privacy guarantee of the audit models (shared recipe; model 0's).
        attacks: One result per attack.
        best_attack: Name of the attack with the highest AUC.
        epsilon_lower_bound: The largest empirical ε lower bound over attacks (Bonferroni-corrected
            for the choice of attack).
        bounds: DP-implied limits at record and patient level.
        patients: Headline numbers of the per-patient risk.
        subgroups: Risk per subgroup value, the whole cohort first.
        warnings: Caveats the report must show (too few models, vacuous bounds).
        timings: Wall seconds of the audit's stages.
        null_floor: Every headline figure recomputed on re-labelled signals without a membership
            effect: what this K and these patients give by chance.
        exposure: Per-patient p-values and the patients detectably exposed at the audit's FDR.
        deconvolution: Estimated distribution of true patient AUC: share above each threshold
            with an interval, and shrunken per-patient AUCs.
        reliability: Split-half reliability of the per-patient ranking.
        patient_risk: Per-patient risk (written to ``patient_risk.csv``).
        record_vulnerability: Per-record AUCs (written to ``audit_arrays.npz``).
        membership: ``(K, n_patients)`` bool masks (written to ``audit_arrays.npz``).
        signals: ``(K, n_records)`` float64 signals (written to ``audit_arrays.npz``).
        record_patient: ``(n_records,)`` int64 patient index of every record (likewise).
        stopping_reason: Why the audit has K models: ``fixed K`` or, for ``num_models=auto``,
            the rule that stopped it (`dptrain.audit.auto`).
        models_reused: Models loaded from the run directory's saved signals, not trained.
        memorisation: Exposed patients split into memorised and predictable from the population
            (`dptrain.audit.memorisation`); None in results made before it existed.
        attribute_inference: One result per ``audit.sensitive_attributes`` entry: the
            lowest-loss attacker's accuracy on members and non-members and its advantage
            (`dptrain.audit.attribute`); empty when none is configured.
        knowledge: Exposure against each partial-knowledge attacker of ``audit.knowledge``
            (`dptrain.audit.knowledge`); None when none is configured.
        harm: Subgroups ranked by severity × exposed share (`dptrain.audit.harm`); None without
            ``audit.severity``.
    """

    num_models: int
    pool_patients: int
    pool_records: int
    model_training_patients: np.ndarray
    model_privacy: PrivacySpend
    attacks: tuple[AttackResult, ...]
    best_attack: str
    epsilon_lower_bound: EpsilonLowerBound
    bounds: DPBounds
    patients: PatientSummary
    subgroups: tuple[SubgroupRisk, ...]
    warnings: tuple[str, ...]
    timings: dict[str, float]
    null_floor: NullFloor
    exposure: PatientExposure
    deconvolution: RiskDeconvolution
    reliability: SplitHalfReliability
    patient_risk: PatientRisk = field(metadata=NOT_IN_JSON)
    record_vulnerability: RecordVulnerability = field(metadata=NOT_IN_JSON)
    membership: np.ndarray = field(metadata=NOT_IN_JSON)
    signals: np.ndarray = field(metadata=NOT_IN_JSON)
    record_patient: np.ndarray = field(metadata=NOT_IN_JSON)
    stopping_reason: str = ""
    models_reused: int = 0
    memorisation: MemorisationSplit | None = None
    attribute_inference: tuple[AttributeInference, ...] = ()
    knowledge: KnowledgeCurve | None = None
    harm: HarmRanking | None = None


def dp_bounds(spend: PrivacySpend, *, group_size: int) -> DPBounds:
    """DP-implied limits of the audit models, at record level and for the largest patient.

    With ``spend.unit == "patient"`` the models ran patient-level DP-SGD: a unit is a whole
    patient, so the plain bound of (σ, q, steps) is the patient's whatever its number of records,
    with no group privacy. No record-level bound is stated then (method ``not-applicable``, AUC
    1): removing one record of a patient who stays in changes that patient's clipped gradient,
    which is not the add/remove-one-unit change the accounting covers.
    """
    run = {
        "noise_multiplier": spend.noise_multiplier if spend.private else None,
        "sample_rate": spend.sample_rate,
        "steps": spend.steps,
    }
    if spend.unit == "patient":
        patient = dp_sgd_attack_bound(**run)
        return DPBounds(
            record=_not_applicable_bound(patient.fpr) if spend.private else patient,
            patient=patient,
            single_pair=(
                single_pair_attack_bound(epsilon=spend.epsilon, delta=spend.delta)
                if spend.private
                else patient
            ),
            group_size=group_size,
            patient_epsilon=spend.epsilon,
            classic_group_privacy=None,
        )
    record = dp_sgd_attack_bound(**run)
    patient, classic, patient_epsilon = record, None, spend.epsilon
    if group_size > 1:
        patient = dp_sgd_attack_bound(**run, group_size=group_size)
        patient_epsilon = dp_sgd_epsilon(**run, delta=spend.delta, group_size=group_size)
        if spend.private:
            classic = group_privacy_attack_bound(**run, group_size=group_size)
    single_pair = (
        single_pair_attack_bound(epsilon=spend.epsilon, delta=spend.delta)
        if spend.private
        else record
    )
    return DPBounds(
        record=record,
        patient=patient,
        single_pair=single_pair,
        group_size=group_size,
        patient_epsilon=patient_epsilon,
        classic_group_privacy=classic,
    )


def _not_applicable_bound(fpr: np.ndarray) -> AttackBound:
    """A record-level "bound" that states nothing (AUC 1), for patient-level runs."""
    return AttackBound(
        fpr=fpr, max_tpr=np.ones_like(fpr), max_auc=1.0, group_size=1, method="not-applicable"
    )
