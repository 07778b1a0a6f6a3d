"""Black-box canary audit in one training run (Steinke, Nasr & Jagielski 2023).

m canary records, each its own patient, are each put in the training set independently with
probability ½; one model trains with `dptrain.training.fit.fit` (the path of every run) and scores
every canary by the margin of the canary's label in its logits. Guessing "in" for the highest and
"out" for the lowest margins, abstaining on the rest, gives the one-run ε lower bound, valid in a
single run because the inclusions are independent (unlike the balanced halves of the
leave-many-out audit). The same guesses also give Mahloujifar et al.'s (2024) f-DP one-run bound
on the μ of Gaussian DP, reported beside it.

Canaries are made to be memorised (Aerni et al. 2024, "Evaluations of machine learning privacy
defenses are misleading"): ``mislabel`` takes one record of each of m held-out patients and gives
it a wrong label; ``ood`` draws records far outside the data (tables and signals: the feature means
plus 4 standard deviations of noise; images: uniform noise) with random labels; ``both`` makes
half of each. The canaries' source patients are removed from the training set, so their true
records cannot vouch for the canaries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from dptrain.audit.auditor import AuditSummary, ScoreAuditor
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError, DataError
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

CANARY_KINDS = ("mislabel", "ood", "both")
CANARY_ATTRIBUTE_VALUE = "canary"
DEFAULT_MAX_CANARIES = 1000
OOD_SCALE = 4.0


@dataclass(frozen=True)
class CanarySet:
    """m canary records and whether each is in the training set.

    Attributes:
        features: ``(m, *record_shape)`` the canaries' raw records.
        labels: ``(m,)`` int64 (or ``(m, n_labels)`` multilabel) the labels they are trained on.
        included: ``(m,)`` bool, in the training set (independent, probability ½).
        kinds: ``(m,)`` str, ``mislabel`` or ``ood``.
        source_patients: ``(n_source,)`` int64 patients of the cohort held out to make the
            mislabelled canaries.
    """

    features: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    included: np.ndarray = field(repr=False)
    kinds: np.ndarray = field(repr=False)
    source_patients: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class CanaryAuditResult:
    """The one-run canary audit of a training recipe, against the accountant's ε.

    Attributes:
        epsilon_lower_bound: The headline: Steinke et al.'s one-run bound (valid in one run).
        mu_fdp_one_run: Mahloujifar et al.'s one-run lower bound on μ (μ-GDP refuted below it;
            valid in one run).
        epsilon_fdp_one_run: ε at δ of that μ: an (ε, δ) lower bound only if the trade-off
            curve is Gaussian, so never the headline.
        epsilon_gaussian_dp: Gaussian-DP bound from the same scores (assumes a Gaussian
            trade-off curve and treats canaries as independent trials: an estimate).
        epsilon_clopper_pearson: The (ε, δ) bound for independent trials (an indication here).
        epsilon_accountant: The ε the accountant claims for the run.
        delta: δ of the bounds and of the claim.
        confidence: Confidence level of each bound.
        summary: AUROC, TPR at FPR and every bound in full.
        num_canaries: m.
        num_included: Canaries in the training set.
        num_guesses: Canaries the one-run bound guessed on (top half "in", bottom half "out").
        num_abstentions: Canaries it abstained on (m − guesses).
        num_correct: Correct guesses.
        kind: ``mislabel``, ``ood`` or ``both``.
        canaries: The canaries and their inclusions.
        scores: ``(m,)`` label margins of the canaries under the trained model.
    """

    epsilon_lower_bound: float
    mu_fdp_one_run: float
    epsilon_fdp_one_run: float
    epsilon_gaussian_dp: float
    epsilon_clopper_pearson: float
    epsilon_accountant: float
    delta: float
    confidence: float
    summary: AuditSummary
    num_canaries: int
    num_included: int
    num_guesses: int
    num_abstentions: int
    num_correct: int
    kind: str
    canaries: CanarySet = field(repr=False)
    scores: np.ndarray = field(repr=False)

    @property
    def violates_claim(self) -> bool:
        """Whether the audit refutes the accountant's ε (at the confidence)."""
        return self.epsilon_lower_bound > self.epsilon_accountant


def make_canaries(
    cohort: Cohort, *, num_canaries: int, kind: str, rng: np.random.Generator
) -> CanarySet:
    """Draws m canaries from (and for) ``cohort`` and their independent inclusions.

    Args:
        cohort: The cohort the run trains on; mislabelled canaries are records of its patients.
        num_canaries: m ≥ 2, at most half the cohort's patients when mislabelled canaries are
            asked for.
        kind: ``mislabel``, ``ood`` or ``both``.
        rng: Draws patients, records, labels and inclusions.

    Returns:
        The canaries.

    Raises:
        ConfigError: For an unknown kind or m out of range.
        DataError: For records not held in memory.

    Example:
        >>> cohort = Cohort.from_records(name="toy", features=np.eye(40, 3, dtype=np.float32),
        ...     labels=np.arange(40) % 2, patient_ids=np.arange(40))
        >>> canaries = make_canaries(cohort, num_canaries=10, kind="both",
        ...     rng=np.random.default_rng(0))
        >>> canaries.features.shape, sorted(set(canaries.kinds.tolist()))
        ((10, 3), ['mislabel', 'ood'])
    """
    if kind not in CANARY_KINDS:
        raise ConfigError(f"canary kind must be one of {list(CANARY_KINDS)}, got {kind!r}")
    if not isinstance(cohort.features, np.ndarray):
        raise DataError("canary audits need records in memory, not lazy records")
    n_mislabel = {"mislabel": num_canaries, "ood": 0, "both": num_canaries // 2}[kind]
    if num_canaries < 2 or n_mislabel > cohort.n_patients // 2:
        raise ConfigError(
            f"audit.num_canaries must be >= 2 and mislabelled canaries at most half the "
            f"{cohort.n_patients} patients, got {num_canaries}"
        )
    source = np.sort(rng.choice(cohort.n_patients, size=n_mislabel, replace=False))
    records = np.array(
        [rng.choice(np.flatnonzero(cohort.record_patient == p)) for p in source], dtype=np.int64
    )
    n_ood = num_canaries - n_mislabel
    features = np.concatenate(
        (cohort.features[records], _ood_records(cohort.features, n_ood, rng))
    ).astype(cohort.features.dtype, copy=False)
    labels = np.concatenate(
        (_wrong_labels(cohort, cohort.labels[records], rng), _random_labels(cohort, n_ood, rng))
    )
    return CanarySet(
        features=features,
        labels=labels,
        included=rng.random(num_canaries) < 0.5,
        kinds=np.repeat(["mislabel", "ood"], [n_mislabel, n_ood]),
        source_patients=source,
    )


def cohort_with_canaries(cohort: Cohort, canaries: CanarySet) -> Cohort:
    """The training cohort: ``cohort`` less the canaries' source patients, plus the included ones.

    Each included canary is a one-record patient ``canary-<i>`` whose attributes are ``canary``.
    """
    keep = np.setdiff1d(np.arange(cohort.n_patients), canaries.source_patients)
    base = cohort.subset_by_patients(keep)
    chosen = np.flatnonzero(canaries.included)
    k = chosen.size
    patients = np.array([f"canary-{i}" for i in chosen])
    if np.isin(patients, base.patients).any():
        raise DataError("the cohort already has patients named canary-<i>")
    return dataclasses.replace(
        base,
        features=np.concatenate((base.features, canaries.features[chosen])),
        labels=np.concatenate((base.labels, canaries.labels[chosen])),
        patients=np.concatenate((base.patients, patients)),
        record_patient=np.concatenate(
            (base.record_patient, base.n_patients + np.arange(k, dtype=np.int64))
        ),
        attributes={
            name: np.concatenate((values, np.full(k, CANARY_ATTRIBUTE_VALUE)))
            for name, values in base.attributes.items()
        },
        record_attributes={
            name: np.concatenate((values, np.full(k, CANARY_ATTRIBUTE_VALUE)))
            for name, values in base.record_attributes.items()
        },
        official_split=(
            None
            if base.official_split is None
            else np.concatenate((base.official_split, np.full(k, "train")))
        ),
    )


def label_margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(m,)`` logit of each record's label minus the log-sum-exp of the others.

    The logit-scaled confidence of LiRA; multilabel: the sum over labels of the signed logits.

    Example:
        >>> label_margins(np.array([[0.0, 2.0], [1.0, 0.0]]), np.array([1, 1])).tolist()
        [2.0, -1.0]
    """
    if labels.ndim == 2:
        return ((2 * labels - 1) * logits).sum(axis=1)
    rows = np.arange(len(labels))
    others = logits.copy()
    others[rows, labels] = -np.inf
    return logits[rows, labels] - logsumexp(others, axis=1)


def canary_audit(
    *,
    cohort: Cohort,
    model_factory: ModelFactory,
    privacy: PrivacyConfig,
    train: TrainConfig,
    seed: int,
    num_canaries: int | None = None,
    kind: str = "mislabel",
    confidence: float = 0.95,
) -> CanaryAuditResult:
    """Trains one model with m canaries (each in with probability ½) and bounds ε from it.

    Args:
        cohort: The cohort the run trains on (its training split).
        model_factory: The model recipe.
        privacy: The privacy recipe (``none`` gives the non-private baseline).
        train: The training recipe.
        seed: Seed of the canaries and the run.
        num_canaries: m; None takes min(1000, a quarter of the patients).
        kind: ``mislabel``, ``ood`` or ``both``.
        confidence: Confidence of each bound.

    Returns:
        The bounds against the accountant's ε, with the canaries and their scores.

    Raises:
        ConfigError: For an unknown kind or m out of range.
        DataError: For lazy records.
    """
    from dptrain.training.fit import fit

    rng = np.random.default_rng([seed, 0xCA7A])
    count = num_canaries or min(DEFAULT_MAX_CANARIES, cohort.n_patients // 4)
    canaries = make_canaries(cohort, num_canaries=count, kind=kind, rng=rng)
    trained = fit(
        cohort=cohort_with_canaries(cohort, canaries),
        model_factory=model_factory,
        privacy=privacy,
        train=train,
        seed=seed,
    )
    scores = label_margins(trained.predict_logits(canaries.features), canaries.labels)
    delta = trained.privacy.delta
    summary = ScoreAuditor.from_membership(scores, canaries.included).summary(
        delta=delta, confidence=confidence
    )
    return CanaryAuditResult(
        epsilon_lower_bound=summary.one_run.epsilon,
        mu_fdp_one_run=summary.fdp_one_run.mu,
        epsilon_fdp_one_run=summary.fdp_one_run.epsilon,
        epsilon_gaussian_dp=summary.gaussian_dp.epsilon,
        epsilon_clopper_pearson=summary.clopper_pearson.epsilon,
        epsilon_accountant=trained.privacy.epsilon,
        delta=delta,
        confidence=confidence,
        summary=summary,
        num_canaries=count,
        num_included=int(canaries.included.sum()),
        num_guesses=summary.one_run.num_guesses,
        num_abstentions=summary.one_run.num_abstentions,
        num_correct=summary.one_run.num_correct,
        kind=kind,
        canaries=canaries,
        scores=scores,
    )


def _wrong_labels(cohort: Cohort, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each label moved to another class at random (multilabel: every label flipped)."""
    if labels.ndim == 2:
        return 1 - labels
    return (labels + rng.integers(1, cohort.n_classes, size=len(labels))) % cohort.n_classes


def _random_labels(cohort: Cohort, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random labels of the cohort's shape."""
    if cohort.labels.ndim == 2:
        return rng.integers(0, 2, size=(n, cohort.labels.shape[1]), dtype=np.int64)
    return rng.integers(0, cohort.n_classes, size=n, dtype=np.int64)


def _ood_records(features: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Records far from the data: uniform noise for uint8, mean ± 4 sd of noise otherwise."""
    shape = (n, *features.shape[1:])
    if features.dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    mean = np.nan_to_num(np.nanmean(features, axis=0))
    spread = np.nan_to_num(np.nanstd(features, axis=0), nan=1.0)
    spread = np.where(spread > 0, spread, 1.0)
    return (mean + OOD_SCALE * spread * rng.standard_normal(shape)).astype(features.dtype)
