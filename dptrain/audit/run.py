"""The leave-many-out membership-inference audit of a training recipe.

K models train on random halves of the patients with the target's exact recipe; every model is in
turn the target and the others its references. Attacks score every (model, record) pair; scores
are aggregated to (model, patient) pairs for the aggregate metrics, and each record's IN/OUT signal
distributions across the K models give its own attack AUC, aggregated to a per-patient risk.
Beside the measurements: what the DP guarantee allows, from the models' whole privacy profile.

With early stopping the target's validation patients chose its kept epoch E*; the K models train
for exactly E* epochs on their whole halves (σ planned for all ``train.epochs``, no validation
split of their own: `dptrain.audit.reference`), so every patient a membership row marks IN was
trained on, and the DP bounds use the ε of those E* epochs. The pool is the whole cohort; the
target's validation (and test) patients are pool patients like any other, IN or OUT only by the
audit's masks.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
from scipy.stats import binom
from sklearn.metrics import roc_auc_score

from dptrain.audit.attacks import make_attack
from dptrain.audit.attribute import (
    AttributeProbe,
    attribute_probes,
    infer_attributes,
)
from dptrain.audit.auditor import BestThresholdBonferroni, ScoreAuditor
from dptrain.audit.auto import StoppingRule, grow_audit
from dptrain.audit.config import AuditConfig
from dptrain.audit.executors import make_executor
from dptrain.audit.fdr import patient_exposure
from dptrain.audit.harm import harm_ranking
from dptrain.audit.knowledge import (
    KnowledgeLevel,
    knowledge_curve,
    knowledge_levels,
)
from dptrain.audit.memorisation import memorisation_split
from dptrain.audit.metrics import (
    attack_metrics,
    auc_confidence_interval,
    record_vulnerability,
)
from dptrain.audit.null import NullFloor, null_floor
from dptrain.audit.patients import PatientRisk, aggregate_by_patient, patient_risk
from dptrain.audit.reference import Recipe, ReferenceModelOutput, train_reference_models
from dptrain.audit.reliability import split_half_reliability
from dptrain.audit.result import (  # noqa: F401 (re-exported: the audit's result types)
    NOT_IN_JSON,
    VIOLATION_EVIDENCE,
    AttackResult,
    AuditResult,
    DPBounds,
    PatientSummary,
    dp_bounds,
)
from dptrain.audit.shrinkage import deconvolve_patient_auc
from dptrain.audit.store import ModelStore
from dptrain.audit.subgroups import record_subgroup_risk, subgroup_risk
from dptrain.data.cohort import Cohort
from dptrain.data.splits import balanced_membership_masks
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import PrivacyConfig, PrivacySpend
from dptrain.training.config import TrainConfig
from dptrain.training.device import uses_cuda

log = logging.getLogger(__name__)


def run_audit(
    *,
    cohort: Cohort,
    model_factory: ModelFactory,
    privacy: PrivacyConfig,
    train: TrainConfig,
    audit: AuditConfig,
    seed: int,
    progress: bool = False,
    output_dir: Path | None = None,
    kept_epochs: int | None = None,
    knowledge: tuple[KnowledgeLevel, ...] | None = None,
) -> AuditResult:
    """Trains the K audit models with the recipe, attacks them, and measures per-patient risk.

    The models train on ``audit.executor``. With ``output_dir``, each model's signals are saved
    to ``<output_dir>/audit_models/model_<k>.npz`` as it finishes, and models already saved there
    under the same recipe, data, seed and membership are loaded instead of retrained: re-running
    in the same directory resumes an interrupted audit, or extends a finished one to a larger K
    (the masks' first rows do not depend on K). With ``num_models=auto`` the audit grows in
    rounds until it is stable or its budget is spent (`dptrain.audit.auto`).

    Args:
        cohort: The audit pool: every patient of the data set.
        model_factory: The target's model builder.
        privacy: The target's privacy config.
        train: The target's training recipe.
        audit: Audit settings.
        seed: Seed of the membership masks, the models and the attacks.
        progress: Show a progress bar over models.
        output_dir: The run directory, where the models' signals are saved; None keeps them in
            memory only.
        kept_epochs: With ``train.early_stopping``, the target's kept epoch E*: every model
            trains exactly E* epochs (required then; None otherwise).
        knowledge: ``audit.knowledge`` already resolved (`knowledge.run_knowledge_levels`, as a
            run does before training); None resolves it here on ``cohort``.

    Returns:
        The audit result.

    Raises:
        ConfigError: If the executor's optional dependency is not installed, or a sensitive
            attribute is not a binary or one-hot input feature.
    """
    started = time.perf_counter()
    probes = attribute_probes(cohort, audit.sensitive_attributes)
    levels = knowledge
    if levels is None:
        levels = knowledge_levels(
            cohort, levels=audit.knowledge, feature_groups=audit.feature_groups
        )
    membership = balanced_membership_masks(
        patient_labels=cohort.patient_labels,
        num_models=audit.max_models if audit.auto_models else audit.num_models,
        seed=seed,
    )
    # unit=auto is resolved once on the whole pool, so every audit model has the same unit.
    privacy = privacy.for_cohort(int(cohort.records_per_patient.max()))
    recipe = Recipe(
        model_factory=model_factory, privacy=privacy, train=train, kept_epochs=kept_epochs
    )
    store = ModelStore.in_run_dir(output_dir) if output_dir is not None else None
    outputs: list[ReferenceModelOutput] = []
    executor = make_executor(
        audit, run_dir=None if output_dir is None else Path(output_dir), gpu=uses_cuda(train.device)
    )
    with executor:

        def train_models(indices: range) -> np.ndarray:
            trained = train_reference_models(
                pool=cohort,
                membership=membership,
                recipe=recipe,
                seed=seed,
                progress=progress,
                indices=indices,
                executor=executor,
                store=store,
                probes=probes,
                knowledge=levels,
            )
            outputs.extend(trained)
            return np.stack([output.signals for output in trained])

        if audit.auto_models:
            signals, _, reason = grow_audit(
                train_models=train_models,
                membership=membership,
                cohort=cohort,
                rule=StoppingRule.from_audit(audit),
                fdr=audit.fdr,
                aggregation=audit.patient_aggregation,
                seed=seed,
            )
            membership = membership[: len(signals)]
            log.info("audit: stopped at K = %d (%s)", len(signals), reason)
        else:
            signals = train_models(range(len(membership)))
            reason = f"fixed K: audit.num_models = {audit.num_models}"
    trained = [output.train_seconds for output in outputs if not output.reused]
    timings = {
        "train_models_seconds": time.perf_counter() - started,
        "model_train_loop_seconds_mean": float(np.mean(trained)) if trained else math.nan,
    }
    result = analyse_signals(
        signals=signals,
        membership=membership,
        cohort=cohort,
        model_privacy=outputs[0].privacy,
        audit=audit,
        seed=seed,
        timings=timings,
        probes=probes,
        attribute_signals=(
            np.stack([output.attribute_signals for output in outputs[: len(signals)]])
            if probes
            else None
        ),
        knowledge=levels,
        knowledge_signals=(
            np.stack([output.knowledge_signals for output in outputs[: len(signals)]])
            if any(not level.full for level in levels)
            else None
        ),
    )
    return dataclasses.replace(
        result,
        stopping_reason=reason,
        models_reused=sum(output.reused for output in outputs),
    )


def analyse_signals(
    *,
    signals: np.ndarray,
    membership: np.ndarray,
    cohort: Cohort,
    model_privacy: PrivacySpend,
    audit: AuditConfig,
    seed: int,
    timings: dict[str, float] | None = None,
    probes: tuple[AttributeProbe, ...] = (),
    attribute_signals: np.ndarray | None = None,
    knowledge: tuple[KnowledgeLevel, ...] = (),
    knowledge_signals: np.ndarray | None = None,
) -> AuditResult:
    """Attacks, per-patient risk, subgroups and DP bounds from the audit models' signals alone.

    The auditor consumes arrays, not models: this is the whole audit after training, so it can be
    re-run (or tested) on stored signals and masks.

    Args:
        signals: ``(K, n_records)`` float64 signal φ of every record under every model.
        membership: ``(K, n_patients)`` bool, the patients each model trained on; models ``2j`` and
            ``2j + 1`` are complementary halves (see `balanced_membership_masks`).
        cohort: The audit pool the records and patients come from.
        model_privacy: The privacy guarantee of the audit models.
        audit: Audit settings.
        seed: Seed of the attacks' and bootstrap's randomness.
        timings: Wall seconds of earlier stages, to carry into the result.
        probes: Sensitive attributes to infer (`dptrain.audit.attribute.attribute_probes`).
        attribute_signals: ``(K, n_candidates, n_records)`` float64 φ under each probe's
            candidate values, probes in order; required with ``probes``.
        knowledge: Partial-knowledge attackers (`dptrain.audit.knowledge.knowledge_levels`).
        knowledge_signals: ``(K, n_partial_levels, n_records)`` float64 φ of the imputed records;
            required with a level other than ``all``.

    Returns:
        The audit result.

    Raises:
        ValueError: If ``probes`` (or ``knowledge``) come without matching signals.
    """
    timings = dict(timings or {})
    stage = time.perf_counter()
    record_membership = cohort.record_mask(membership)
    attacks = _run_attacks(
        signals, record_membership, membership, cohort, audit, seed, model_privacy.delta
    )
    timings["attacks_seconds"] = time.perf_counter() - stage

    stage = time.perf_counter()
    vulnerability = record_vulnerability(signals, record_membership, confidence=audit.confidence)
    risk = patient_risk(vulnerability, cohort, how=audit.patient_aggregation)
    bounds = dp_bounds(model_privacy, group_size=int(cohort.records_per_patient.max()))
    timings["risk_and_bounds_seconds"] = time.perf_counter() - stage

    best = max(attacks, key=lambda attack: attack.metrics.auc)
    strongest = max(attacks, key=lambda attack: attack.epsilon_lower_bound.epsilon)
    patients = _patient_summary(risk, bounds, thresholds=tuple(audit.risk_thresholds))

    stage = time.perf_counter()
    thresholds = tuple(audit.risk_thresholds)
    record_patient, n_patients = cohort.record_patient, cohort.n_patients
    exposure = patient_exposure(
        signals, record_membership, record_patient, n_patients=n_patients, rate=audit.fdr
    )
    floor = null_floor(
        signals=signals,
        membership=membership,
        record_patient=record_patient,
        patient_labels=cohort.patient_labels,
        thresholds=thresholds,
        repeats=audit.null_repeats,
        seed=seed,
        fdr_rate=audit.fdr,
        aggregation=audit.patient_aggregation,
        level=audit.confidence,
        attack_auc=_attack_auc_on(best.name, cohort, audit, seed),
        attack_name=best.name,
    )
    timings["null_floor_seconds"] = time.perf_counter() - stage
    stage = time.perf_counter()
    deconvolution = deconvolve_patient_auc(
        signals=signals,
        record_membership=record_membership,
        record_patient=record_patient,
        n_patients=n_patients,
        thresholds=thresholds,
        confidence=audit.confidence,
        rng=np.random.default_rng([seed, 0x65627368]),
    )
    reliability = split_half_reliability(
        signals,
        record_membership,
        record_patient,
        n_patients=n_patients,
        aggregation=audit.patient_aggregation,
        rng=np.random.default_rng([seed, 0x72656C69]),
    )
    timings["deconvolution_and_reliability_seconds"] = time.perf_counter() - stage
    stage = time.perf_counter()
    memorisation = memorisation_split(
        signals=signals,
        membership=membership,
        record_patient=record_patient,
        patient_labels=cohort.patient_labels,
        record_auc=vulnerability.auc,
        patient_auc=risk.auc,
        attributes=dict(cohort.attributes),
        thresholds=thresholds,
        predictable_confidence=audit.predictable_confidence,
        aggregation=audit.patient_aggregation,
        fdr_exposed=exposure.exposed,
        confidence=audit.confidence,
        repeats=audit.null_repeats,
        level=floor.level,
        seed=seed,
    )
    timings["memorisation_seconds"] = time.perf_counter() - stage
    stage = time.perf_counter()
    inferred = infer_attributes(
        probes=probes,
        attribute_signals=attribute_signals,
        membership=membership,
        features=cohort.features,
        record_patient=cohort.record_patient,
        confidence=audit.confidence,
        seed=seed,
    )
    if probes:
        timings["attribute_inference_seconds"] = time.perf_counter() - stage
    stage = time.perf_counter()
    curve = knowledge_curve(
        levels=knowledge,
        signals=signals,
        knowledge_signals=knowledge_signals,
        membership=membership,
        cohort=cohort,
        thresholds=thresholds,
        aggregation=audit.patient_aggregation,
        confidence=audit.confidence,
        repeats=audit.null_repeats,
        seed=seed,
    )
    if knowledge:
        timings["knowledge_seconds"] = time.perf_counter() - stage
    harm = None
    if audit.severity and thresholds:
        harm = harm_ranking(
            patient_auc=risk.auc,
            attributes=dict(cohort.attributes),
            patient_labels=None if cohort.task == "multilabel" else cohort.patient_labels,
            class_names=cohort.class_names,
            severity=audit.severity,
            value_names=audit.value_names,
            threshold=thresholds[0],
            confidence=audit.confidence,
            patient_lower_bound=risk.lower_bound,
            patient_exposed=exposure.exposed,
        )
    return AuditResult(
        num_models=len(membership),
        pool_patients=cohort.n_patients,
        pool_records=cohort.n_records,
        model_training_patients=membership.sum(axis=1),
        model_privacy=model_privacy,
        attacks=tuple(attacks),
        best_attack=best.name,
        epsilon_lower_bound=strongest.epsilon_lower_bound,
        bounds=bounds,
        patients=patients,
        subgroups=tuple(
            subgroup_risk(
                risk,
                thresholds=thresholds,
                exposure=exposure,
                deconvolution=deconvolution,
            )
            + record_subgroup_risk(
                vulnerability,
                record_patient=cohort.record_patient,
                record_attributes=dict(cohort.record_attributes),
                thresholds=thresholds,
                how=audit.patient_aggregation,
            )
        ),
        warnings=tuple(_warnings(audit, len(membership), bounds, risk, patients, floor)),
        timings=timings,
        null_floor=floor,
        exposure=exposure,
        deconvolution=deconvolution,
        reliability=reliability,
        patient_risk=risk,
        record_vulnerability=vulnerability,
        membership=membership,
        signals=signals,
        record_patient=cohort.record_patient,
        memorisation=memorisation,
        attribute_inference=inferred,
        knowledge=curve,
        harm=harm,
    )


def _run_attacks(
    signals: np.ndarray,
    record_membership: np.ndarray,
    membership: np.ndarray,
    cohort: Cohort,
    audit: AuditConfig,
    seed: int,
    delta: float,
) -> list[AttackResult]:
    """Fits every configured attack and measures it over (model, patient) pairs."""
    is_member = membership.ravel()
    patient_of_pair = np.tile(np.arange(cohort.n_patients), len(membership))
    # A target's complementary partner is no reference: with it left in, how many references hold a
    # record IN would depend on the target's own membership and leak it through the design.
    model_pairs = np.arange(len(membership)) // 2
    # The ε bound is taken over all attacks, so each gets its share of the error probability.
    attack_confidence = 1 - (1 - audit.confidence) / len(audit.attacks)
    results = []
    for offset, name in enumerate(audit.attacks):
        attack_name, options = _attack_options(name, audit, seed, len(membership))
        attack = make_attack(attack_name, **options)
        record_scores = attack.fit(signals, record_membership, groups=model_pairs).scores_
        scores = aggregate_by_patient(
            record_scores,
            cohort.record_patient,
            n_patients=cohort.n_patients,
            how=audit.patient_aggregation,
        ).ravel()
        rng = np.random.default_rng([seed, offset])
        results.append(
            AttackResult(
                name=name,
                metrics=attack_metrics(scores, is_member, fpr_targets=tuple(audit.fpr_targets)),
                auc_interval=auc_confidence_interval(
                    scores, is_member, groups=patient_of_pair, confidence=audit.confidence, rng=rng
                ),
                epsilon_lower_bound=ScoreAuditor.from_membership(
                    scores, is_member
                ).epsilon_clopper_pearson(
                    delta=delta, confidence=attack_confidence, strategy=BestThresholdBonferroni()
                ),
                variant=_variant(options),
            )
        )
        log.info("audit: %s AUC %.3f", name, results[-1].metrics.auc)
    return results


def _attack_options(name: str, audit: AuditConfig, seed: int, num_models: int) -> tuple[str, dict]:
    """Maps a configured attack name to a registry name and its options."""
    if name == "loss":
        return "loss", {}
    if name in ("lira", "lira_offline"):
        fixed = audit.lira_uses_fixed_variance(num_models)
        return "lira", {"online": name == "lira", "fixed_variance": fixed}
    return "rmia", {
        "offline_a": audit.rmia_offline_a,
        "gamma": audit.rmia_gamma,
        "num_population": audit.rmia_num_population,
        "seed": seed,
    }


def _variant(options: dict) -> str:
    if "fixed_variance" not in options:
        return ""
    return "fixed variance" if options["fixed_variance"] else "per-record variance"


def _attack_auc_on(name: str, cohort: Cohort, audit: AuditConfig, seed: int):
    """``(signals, membership) -> AUC`` of one configured attack, as `_run_attacks` measures it.

    Re-running the run's best attack on the null is cheap (every attack is vectorised over
    models and records; about 0.1 s at K = 256 and 2,000 patients), so its floor is its own
    rather than a cheaper proxy's. The choice of the best among the attacks is not re-made on the
    null.
    """

    def auc(signals: np.ndarray, membership: np.ndarray) -> float:
        attack_name, options = _attack_options(name, audit, seed, len(membership))
        record_scores = (
            make_attack(attack_name, **options)
            .fit(signals, cohort.record_mask(membership), groups=np.arange(len(membership)) // 2)
            .scores_
        )
        scores = aggregate_by_patient(
            record_scores,
            cohort.record_patient,
            n_patients=cohort.n_patients,
            how=audit.patient_aggregation,
        )
        return float(roc_auc_score(membership.ravel(), scores.ravel()))

    return auc


def _patient_summary(
    risk: PatientRisk, bounds: DPBounds, *, thresholds: tuple[float, ...]
) -> PatientSummary:
    auc, lower = risk.auc, risk.lower_bound
    valid = ~np.isnan(auc)
    worst = int(np.nanargmax(auc)) if valid.any() else 0
    limits = np.asarray(thresholds, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        above_bound = (
            int(np.sum(lower > bounds.patient.max_auc)) if not bounds.patient.vacuous else 0
        )
        return PatientSummary(
            n_patients=len(auc),
            median_auc=float(np.nanmedian(auc)) if valid.any() else math.nan,
            p99_auc=float(np.nanpercentile(auc, 99)) if valid.any() else math.nan,
            max_auc=float(auc[worst]) if valid.any() else math.nan,
            max_auc_standard_error=float(risk.standard_error[worst]) if valid.any() else math.nan,
            thresholds=limits,
            exposed=(auc[:, None] > limits).sum(axis=0),
            exposed_lower_bound=(lower[:, None] > limits).sum(axis=0),
            above_dp_bound=above_bound,
            above_dp_bound_p_value=float(binom.sf(above_bound - 1, len(auc), 1 - risk.confidence)),
        )


# One-sided binomial p-value below which the null's FDR false alarms are more than chance.
FALSE_ALARM_EVIDENCE = 0.01


def null_false_alarm_warning(floor: NullFloor, rate: float) -> str | None:
    """A caveat if the FDR list fired on the null more often than its rate allows, else None.

    On signals without a membership effect a list that keeps its false-discovery rate is
    non-empty in at most ``rate`` of the re-labellings (exactly that for independent tests), so
    the count of non-empty ones is at most Binomial(R, rate). Only a count that this explains
    with probability below `FALSE_ALARM_EVIDENCE` warns: a fixed cut at 10 % of 20 repeats, used
    before, fired on 7.5 % of audits whose list keeps its rate (README command 1 showed it with 4
    of 20, on signals whose list was empty in 95 % of 300 re-labellings).
    """
    if floor.repeats < 10:
        return None
    alarms = int(np.sum(floor.exposed_fdr > 0))
    chance = float(binom.sf(alarms - 1, floor.repeats, rate)) if alarms else 1.0
    if chance >= FALSE_ALARM_EVIDENCE:
        return None
    return (
        f"On signals without any membership effect the FDR list was non-empty in {alarms} of "
        f"{floor.repeats} re-labellings (expected at most about {rate:.0%}; chance alone gives "
        f"this many with p = {chance:.2g}): the per-patient p-values' t reference looks "
        "optimistic for these signals, so read the list of exposed patients with caution."
    )


def _warnings(
    audit: AuditConfig,
    num_models: int,
    bounds: DPBounds,
    risk: PatientRisk,
    patients: PatientSummary,
    floor: NullFloor,
) -> list[str]:
    """Caveats that change how the numbers may be read."""
    messages = []
    false_alarm = null_false_alarm_warning(floor, audit.fdr)
    if false_alarm:
        messages.append(false_alarm)
    if num_models < audit.min_models_for_patients:
        typical = float(np.nanmedian(risk.standard_error)) if len(risk.standard_error) else math.nan
        messages.append(
            f"Only K = {num_models} models: each patient has {num_models // 2} IN and "
            f"{num_models // 2} OUT observations, so per-patient AUCs are noisy (median "
            f"standard error {typical:.2f}) and the largest ones are inflated by chance. Use "
            f"audit.num_models >= {audit.min_models_for_patients} for per-patient conclusions."
        )
    if bounds.group_size > 1 and bounds.patient.vacuous and not bounds.record.vacuous:
        messages.append(
            f"The patient-level DP bound is vacuous: for a patient with {bounds.group_size} "
            "records the record-level guarantee allows an attack AUC of up to "
            f"{bounds.patient.max_auc:.3f}, i.e. it promises nothing for such patients."
        )
    if patients.above_dp_bound_p_value < VIOLATION_EVIDENCE:
        messages.append(
            f"{patients.above_dp_bound} patients have a lower confidence bound above the "
            f"DP-implied maximum AUC ({bounds.patient.max_auc:.3f}): more than chance explains "
            f"(p = {patients.above_dp_bound_p_value:.2g}). The guarantee may not hold as stated: "
            "check for data outside the DP mechanism (e.g. a patient's records in several splits) "
            "or a modified training loop."
        )
    if bounds.record.vacuous and bounds.record.method not in ("non-private", "not-applicable"):
        messages.append(
            "The record-level DP bound is vacuous (maximum attack AUC "
            f"{bounds.record.max_auc:.3f}): at this ε the guarantee does not limit membership "
            "inference."
        )
    return messages
