"""The noise floor of every headline figure, from the run's own signals and no retraining.

Per-patient AUCs from K models are noisy, and the largest of thousands of noisy AUCs is large even
when nothing leaks (pure noise, 2,000 patients: a maximum of about 0.94 at K = 16 and 0.63 at
K = 256). To say what part of a figure is leakage, the audit recomputes every headline figure on
signals in which membership has no effect but everything else is as measured, R times:

1. *Remove the membership effect*: each record's IN and OUT signals are shifted to the record's
   midpoint, up to the chance difference a record without an effect would show
   (`remove_membership_effect`). Re-labelling raw signals would not do: a leaky record's
   re-labelled sides would each mix true IN and OUT signals, and that mixture's spread makes the
   floor rise with the very leakage it is compared with (about √2 times the pure-noise spread on
   the probit scale for a strongly leaky record).
2. *Re-label the pairs*: a fresh draw of the design (`balanced_membership_masks` with a new seed)
   swaps, independently for each pair and each patient, which of models 2j and 2j + 1 counts as
   IN. The design is kept exactly (complementary pairs, every patient IN in K/2 models, every
   model on half of each label stratum) and the new labels are independent of the true ones.

The floor is then the distribution of each figure over the R repeats; reports show its mean and
upper quantile beside the measured figure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from dptrain.audit.fdr import patient_exposure
from dptrain.audit.metrics import record_vulnerability
from dptrain.audit.paired import remove_membership_effect
from dptrain.audit.patients import aggregate_by_patient
from dptrain.data.splits import balanced_membership_masks
from dptrain.errors import ConfigError

METHOD = (
    "membership effect removed (each record's IN and OUT signals moved to its midpoint, up to a "
    "chance difference), then "
    "the pairs re-labelled by a fresh draw of the design"
)


@dataclass(frozen=True)
class NullFloor:
    """Headline figures recomputed R times on signals without a membership effect.

    Attributes:
        repeats: R.
        attack: The attack re-run on the null signals (the run's best), or "" if none was.
        level: Quantile of the repeats reported as the floor's upper end (e.g. 0.95).
        method: How the null signals were made.
        attack_auc: ``(R,)`` aggregate AUC of ``attack`` over (model, patient) pairs.
        median_auc: ``(R,)`` median patient AUC.
        p99_auc: ``(R,)`` 99th percentile of patient AUC.
        max_auc: ``(R,)`` largest patient AUC.
        thresholds: ``(n_thresholds,)`` AUC thresholds.
        share_above: ``(R, n_thresholds)`` share of patients with AUC above each threshold.
        exposed_fdr: ``(R,)`` size of the FDR-controlled list (should be 0 in most repeats).
    """

    repeats: int
    attack: str
    level: float
    method: str
    attack_auc: np.ndarray
    median_auc: np.ndarray
    p99_auc: np.ndarray
    max_auc: np.ndarray
    thresholds: np.ndarray
    share_above: np.ndarray
    exposed_fdr: np.ndarray

    def band(self, values: np.ndarray) -> tuple[float, float]:
        """Mean and ``level`` quantile of one figure over the repeats (NaN if none)."""
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[~np.isnan(finite)]
        if finite.size == 0:
            return float("nan"), float("nan")
        return float(finite.mean()), float(np.quantile(finite, self.level, axis=0))

    @property
    def fdr_list_empty_share(self) -> float:
        """Share of repeats whose FDR list is empty (the list's false alarms on this run)."""
        return float(np.mean(self.exposed_fdr == 0)) if self.repeats else float("nan")


def null_relabellings(
    *,
    signals: np.ndarray,
    membership: np.ndarray,
    record_patient: np.ndarray,
    patient_labels: np.ndarray,
    aggregation: str,
    repeats: int,
    rng: np.random.Generator,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The null's re-labellings: membership-free signals under fresh random complementary masks.

    Yields, ``repeats`` times, ``(null_signals, fake_membership, patient_auc)``: the ``(K,
    n_records)`` signals with each record's IN and OUT moved to their midpoint, up to a fresh
    chance difference each time (`remove_membership_effect`), a ``(K, n_patients)`` balanced mask
    drawn from ``rng``, and the ``(n_patients,)`` patient AUCs under it. Every figure that needs a
    noise floor is computed from these.
    """
    for _ in range(repeats):
        null_signals = remove_membership_effect(signals, membership[:, record_patient], rng=rng)
        fake = balanced_membership_masks(
            patient_labels=patient_labels,
            num_models=len(membership),
            seed=int(rng.integers(2**32)),
        )
        record_auc = record_vulnerability(null_signals, fake[:, record_patient]).auc
        yield (
            null_signals,
            fake,
            aggregate_by_patient(
                record_auc, record_patient, n_patients=membership.shape[1], how=aggregation
            ),
        )


def null_floor(
    *,
    signals: np.ndarray,
    membership: np.ndarray,
    record_patient: np.ndarray,
    patient_labels: np.ndarray,
    thresholds: tuple[float, ...],
    repeats: int,
    seed: int,
    fdr_rate: float = 0.05,
    aggregation: str = "max",
    level: float = 0.95,
    attack_auc: Callable[[np.ndarray, np.ndarray], float] | None = None,
    attack_name: str = "",
) -> NullFloor:
    """Recomputes the headline figures on ``repeats`` re-labellings of membership-free signals.

    Args:
        signals: ``(K, n_records)`` signals, models in complementary pairs.
        membership: ``(K, n_patients)`` bool true membership.
        record_patient: ``(n_records,)`` patient index of every record.
        patient_labels: ``(n_patients,)`` label strata of the design.
        thresholds: Patient AUC thresholds.
        repeats: R, ≥ 1.
        seed: Seed of the re-labellings.
        fdr_rate: False-discovery rate of the list counted on the null.
        aggregation: ``max`` or ``mean`` over a patient's records.
        level: Upper quantile reported with the mean, in (0, 1).
        attack_auc: ``(null_signals, null_membership) -> AUC`` of the attack whose aggregate AUC
            gets a floor too; None skips it (its entries are NaN).
        attack_name: Name of that attack, for the report.

    Returns:
        The floor.

    Raises:
        ConfigError: If ``repeats`` < 1 or ``level`` is out of range.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> masks = balanced_membership_masks(patient_labels=np.zeros(500, int), num_models=16,
        ...     seed=0)
        >>> floor = null_floor(signals=rng.normal(size=(16, 500)), membership=masks,
        ...     record_patient=np.arange(500), patient_labels=np.zeros(500, int),
        ...     thresholds=(0.8,), repeats=3, seed=1)
        >>> 0.85 < floor.band(floor.max_auc)[0] < 0.97  # the largest of 500 noisy AUCs
        True
    """
    if repeats < 1:
        raise ConfigError(f"audit.null_repeats must be >= 1, got {repeats}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    n_patients = membership.shape[1]
    limits = np.asarray(thresholds, dtype=np.float64)
    rng = np.random.default_rng([seed, 0x6E756C6C])  # "null": apart from the attacks' streams
    figures = {name: np.full(repeats, np.nan) for name in ("attack", "median", "p99", "max")}
    share_above = np.full((repeats, limits.size), np.nan)
    exposed = np.zeros(repeats, dtype=np.int64)
    relabellings = null_relabellings(
        signals=signals,
        membership=membership,
        record_patient=record_patient,
        patient_labels=patient_labels,
        aggregation=aggregation,
        repeats=repeats,
        rng=rng,
    )
    for repeat, (null_signals, fake, auc) in enumerate(relabellings):
        fake_records = fake[:, record_patient]
        valid = auc[~np.isnan(auc)]
        if valid.size:
            figures["median"][repeat] = np.median(valid)
            figures["p99"][repeat] = np.percentile(valid, 99)
            figures["max"][repeat] = valid.max()
            share_above[repeat] = (valid[:, None] > limits).mean(axis=0)
        exposed[repeat] = patient_exposure(
            null_signals, fake_records, record_patient, n_patients=n_patients, rate=fdr_rate
        ).n_exposed
        if attack_auc is not None:
            figures["attack"][repeat] = attack_auc(null_signals, fake)
    return NullFloor(
        repeats=repeats,
        attack=attack_name if attack_auc is not None else "",
        level=level,
        method=METHOD,
        attack_auc=figures["attack"],
        median_auc=figures["median"],
        p99_auc=figures["p99"],
        max_auc=figures["max"],
        thresholds=limits,
        share_above=share_above,
        exposed_fdr=exposed,
    )
