"""How far the per-patient ranking can be trusted: split-half reliability over model pairs.

The K models are split into two halves, complementary pairs kept together (so each half is a
complete, smaller audit: every patient IN and OUT equally often); each half ranks the patients by
their AUC, and Spearman's ρ between the two rankings is the reliability of a K/2-model audit. The
Spearman–Brown formula 2ρ/(1 + ρ) projects it to the full K (what two independent audits of this
size would agree on). Averaged over several random splits, since one split is itself noisy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from dptrain.audit.metrics import record_vulnerability
from dptrain.audit.paired import check_complementary_pairs
from dptrain.audit.patients import aggregate_by_patient


@dataclass(frozen=True)
class SplitHalfReliability:
    """Agreement of two disjoint halves of the audit on the per-patient ranking.

    Attributes:
        half_rho: Mean Spearman ρ between the halves' patient AUCs (NaN below 2 pairs per half).
        full_rho: Spearman–Brown projection to all K models, 2ρ/(1 + ρ).
        num_splits: Random splits averaged.
        pairs_per_half: Model pairs in the smaller half.
    """

    half_rho: float
    full_rho: float
    num_splits: int
    pairs_per_half: int


def spearman_brown(rho: float, factor: float = 2.0) -> float:
    """Reliability of a test ``factor`` times as long: factor·ρ / (1 + (factor − 1)·ρ).

    Example:
        >>> spearman_brown(0.5)
        0.6666666666666666
    """
    return factor * rho / (1 + (factor - 1) * rho)


def split_half_reliability(
    signals: np.ndarray,
    record_membership: np.ndarray,
    record_patient: np.ndarray,
    *,
    n_patients: int,
    aggregation: str = "max",
    num_splits: int = 10,
    rng: np.random.Generator,
) -> SplitHalfReliability:
    """Spearman ρ between the patient AUCs of two halves of the model pairs, and for all K.

    Args:
        signals: ``(K, n_records)`` signals, models in complementary pairs.
        record_membership: ``(K, n_records)`` bool membership.
        record_patient: ``(n_records,)`` patient index of every record.
        n_patients: Number of patients.
        aggregation: ``max`` or ``mean`` over a patient's records, as for the reported AUC.
        num_splits: Random splits of the pairs to average over.
        rng: Source of the splits.

    Returns:
        The reliability (NaN with fewer than 4 pairs, i.e. K < 8).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> halves = rng.random((16, 300)) < 0.5
        >>> members = np.repeat(halves, 2, axis=0)
        >>> members[1::2] = ~members[1::2]
        >>> effect = rng.uniform(0, 2, 300)  # patients differ in how much they leak
        >>> signals = rng.normal(size=(32, 300)) + effect * members
        >>> fit = split_half_reliability(signals, members, np.arange(300), n_patients=300,
        ...     rng=rng)
        >>> fit.pairs_per_half, bool(0.5 < fit.half_rho < fit.full_rho < 1)
        (8, True)
    """
    check_complementary_pairs(record_membership)
    n_pairs = len(signals) // 2
    half = n_pairs // 2
    if half < 2:
        return SplitHalfReliability(float("nan"), float("nan"), 0, half)
    rhos = []
    for _ in range(num_splits):
        order = rng.permutation(n_pairs)
        aucs = []
        for pairs in (order[:half], order[half:]):
            models = np.sort(np.concatenate((2 * pairs, 2 * pairs + 1)))
            record_auc = record_vulnerability(signals[models], record_membership[models]).auc
            aucs.append(
                aggregate_by_patient(
                    record_auc, record_patient, n_patients=n_patients, how=aggregation
                )
            )
        valid = ~np.isnan(aucs[0]) & ~np.isnan(aucs[1])
        if valid.sum() >= 3:
            rhos.append(spearmanr(aucs[0][valid], aucs[1][valid]).statistic)
    rho = float(np.mean(rhos)) if rhos else float("nan")
    return SplitHalfReliability(
        half_rho=rho,
        full_rho=spearman_brown(rho) if rho > -1 else float("nan"),
        num_splits=len(rhos),
        pairs_per_half=half,
    )
