"""Membership-attack metrics computed from attack scores and per-record signals.

Inputs are flat arrays: ``scores`` (n,) float and ``is_member`` (n,) bool, one entry per
(model, patient) pair, or per-record signal matrices (one row per model). Members are the positive
class and a higher score means "more likely a member". Empirical ε lower bounds from the same
scores are in `dptrain.audit.epsilon`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata
from scipy.stats import t as student_t
from sklearn.metrics import roc_auc_score, roc_curve

from dptrain.audit.paired import pair_sides
from dptrain.errors import ConfigError

# Added to every per-record variance: a record whose signal is constant across its IN (or OUT)
# models would otherwise divide by zero. 1e-12 is far below any real spread of logit-scaled
# confidences, so it only decides the degenerate case: equal means give AUC 0.5, distinct means 1.
_VARIANCE_FLOOR = 1e-12

# The ROC curve returned for plots and JSON is thinned to at most this many points, kept on a grid
# that is log-spaced in FPR (down to 1e-6) as well as linear, so the low-FPR end survives.
_MAX_ROC_POINTS = 2000


@dataclass(frozen=True)
class RecordVulnerability:
    """Per-record vulnerability: how well a LiRA-style attack separates a record's IN from OUT.

    Attributes:
        auc: Binormal AUC Φ((μ_in − μ_out)/√(σ_in² + σ_out²)); NaN with < 2 IN or < 2 OUT models.
        standard_error: Delta-method standard error of ``auc``.
        lower_bound: One-sided lower confidence bound on the AUC (probit scale, mapped back).
        num_in: Number of models that trained on the record.
        num_out: Number of models that did not.
        confidence: Confidence level of ``lower_bound``.
    """

    auc: np.ndarray  # (n_records,) float64
    standard_error: np.ndarray  # (n_records,) float64
    lower_bound: np.ndarray  # (n_records,) float64
    num_in: np.ndarray  # (n_records,) int64
    num_out: np.ndarray  # (n_records,) int64
    confidence: float


@dataclass(frozen=True)
class AttackMetrics:
    """Summary of one membership attack's scores.

    Attributes:
        auc: ROC AUC.
        fpr_targets: The FPRs at which TPR is reported.
        tpr_at_fpr: TPR at each target FPR on the ROC interpolated over tied scores (see
            `tpr_at_fpr`).
        balanced_accuracy: Max over thresholds of (TPR + 1 − FPR)/2.
        roc_fpr: ROC curve FPRs, thinned to ≤ ~2000 points, low-FPR end kept.
        roc_tpr: ROC curve TPRs at ``roc_fpr``.
        n_members: Number of member scores.
        n_nonmembers: Number of non-member scores.
    """

    auc: float
    fpr_targets: np.ndarray  # (n_targets,) float64
    tpr_at_fpr: np.ndarray  # (n_targets,) float64
    balanced_accuracy: float
    roc_fpr: np.ndarray  # (n_roc,) float64, non-decreasing from 0 to 1
    roc_tpr: np.ndarray  # (n_roc,) float64
    n_members: int
    n_nonmembers: int


@dataclass(frozen=True)
class AucInterval:
    """Percentile-bootstrap confidence interval for the attack AUC.

    Attributes:
        auc: AUC of the full sample.
        lower: Lower end of the interval.
        upper: Upper end of the interval.
        confidence: Two-sided confidence level.
        num_bootstrap: Number of resamples.
        num_clusters: Number of resampled units (groups, or scores without groups).
    """

    auc: float
    lower: float
    upper: float
    confidence: float
    num_bootstrap: int
    num_clusters: int


def record_vulnerability(
    signals: np.ndarray, membership: np.ndarray, *, confidence: float = 0.95
) -> RecordVulnerability:
    """Per-record binormal attack AUC across K models, with a standard error and lower bound.

    A record's signal φ is roughly normal across the models that trained on it (IN) and those
    that did not (OUT), so the AUC of the best test for that one record is
    Φ((μ_in − μ_out)/√(σ_in² + σ_out²)) (Knolle et al.). Its standard error comes from the delta
    method with Var(μ̂_in − μ̂_out) ≈ σ_in²/n_in + σ_out²/n_out and Var(σ̂²) ≈ 2σ⁴/(n − 1) (with
    complementary pairs, the audit's design, both also carry the pairs' covariance); the lower
    bound is taken on the probit scale, where the estimate is closer to normal, with a Student-t
    quantile for the few-models case, and mapped back with Φ so it stays in [0, 1]. Vectorised
    over records with masked sums.

    Args:
        signals: ``(K, n_records)`` float, the signal of each record under each model.
        membership: ``(K, n_records)`` bool, whether the record was in that model's training set.
        confidence: One-sided confidence level of the lower bound, in (0, 1).

    Returns:
        Per-record AUC, standard error and lower bound (NaN with < 2 IN or < 2 OUT models).

    Raises:
        ConfigError: If shapes differ, signals are not finite, or confidence is out of range.

    Example:
        >>> signals = np.array([[0.0, 1.0], [2.0, 1.0], [3.0, 1.0], [1.0, 1.0]])
        >>> membership = np.array([[0, 0], [1, 1], [1, 1], [0, 0]], dtype=bool)
        >>> vulnerability = record_vulnerability(signals, membership)
        >>> [round(float(a), 3) for a in vulnerability.auc]  # Φ(2) and equal means
        [0.977, 0.5]
    """
    check_confidence(confidence)
    values = np.asarray(signals, dtype=np.float64)
    mask = np.asarray(membership)
    if values.ndim != 2 or mask.shape != values.shape:
        raise ConfigError(
            f"signals and membership must be (K, n_records) of one shape, got {values.shape} "
            f"and {mask.shape}"
        )
    if mask.dtype != np.bool_:
        raise ConfigError(f"membership must be bool, got dtype {mask.dtype}")
    if not np.all(np.isfinite(values)):
        raise ConfigError(f"signals must be finite, got {np.sum(~np.isfinite(values))} non-finite")
    num_in, mean_in, var_in = _masked_moments(values, mask)
    num_out, mean_out, var_out = _masked_moments(values, ~mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = var_in + var_out
        z = (mean_in - mean_out) / np.sqrt(spread)
        var_mean_diff = var_in / num_in + var_out / num_out
        var_spread = 2 * var_in**2 / (num_in - 1) + 2 * var_out**2 / (num_out - 1)
        if _complementary_pairs(mask):
            # Models 2j and 2j + 1 trained on complementary halves: their signals on a record
            # correlate (−0.37 on ACTG 175, −0.61 at ε = 8), so the independent-sides variances
            # above understate the standard error (by 17 % and 27 % there). With c the pair
            # covariance: Var(μ̂_in − μ̂_out) = (σ_in² + σ_out² − 2c)/n and
            # Var(σ̂_in² + σ̂_out²) = 2(σ_in⁴ + σ_out⁴ + 2c²)/(n − 1), n = K/2 pairs.
            inside, outside = pair_sides(values, mask)
            inside, outside = inside - mean_in, outside - mean_out
            n_pairs = inside.shape[0]
            covariance = np.sum(inside * outside, axis=0) / (n_pairs - 1)
            var_mean_diff = np.maximum(spread - 2 * covariance, _VARIANCE_FLOOR) / n_pairs
            var_spread = var_spread + 4 * covariance**2 / (n_pairs - 1)
        z_se = np.sqrt(var_mean_diff / spread + z**2 * var_spread / (4 * spread**2))
    enough = (num_in >= 2) & (num_out >= 2)
    z, z_se = np.where(enough, z, np.nan), np.where(enough, z_se, np.nan)
    return RecordVulnerability(
        auc=norm.cdf(z),
        standard_error=norm.pdf(z) * z_se,
        lower_bound=norm.cdf(z - _critical_value(confidence, num_in, num_out) * z_se),
        num_in=num_in,
        num_out=num_out,
        confidence=confidence,
    )


def attack_metrics(
    scores: np.ndarray, is_member: np.ndarray, *, fpr_targets: tuple[float, ...] = (0.001, 0.01)
) -> AttackMetrics:
    """ROC AUC, TPR at low FPRs, best balanced accuracy and the ROC curve of an attack.

    TPR at a low FPR is what matters for privacy (confidently identifying a few members), which
    the AUC averages away; both are reported. TPR at a target is read off the exact empirical ROC
    (as is the balanced accuracy) before the curve is thinned for storage, interpolating over
    tied scores as the AUC does (ties count one half).

    Args:
        scores: ``(n,)`` attack scores, higher = more likely member.
        is_member: ``(n,)`` bool, true membership.
        fpr_targets: FPRs in (0, 1) at which to report the TPR.

    Returns:
        The metrics.

    Raises:
        ConfigError: If inputs are malformed, a class is missing, or a target is out of range.

    Example:
        >>> metrics = attack_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool))
        >>> metrics.auc, metrics.balanced_accuracy, metrics.n_members
        (0.75, 0.75, 2)
    """
    values, members = check_scores(scores, is_member)
    targets = np.asarray(fpr_targets, dtype=np.float64).reshape(-1)
    if not np.all((targets > 0) & (targets < 1)):
        raise ConfigError(f"fpr_targets must be in (0, 1), got {fpr_targets}")
    fpr, tpr, _ = roc_curve(members, values, drop_intermediate=False)
    tpr_at_targets = tpr_at_fpr(fpr, tpr, targets)
    balanced_accuracy = float(np.max(tpr + 1 - fpr) / 2)
    if fpr.size > _MAX_ROC_POINTS:
        # On each grid FPR keep the ROC point with the largest TPR (top of the vertical step).
        half = _MAX_ROC_POINTS // 2 - 1
        grid = np.concatenate((np.logspace(-6, 0, half), np.linspace(0, 1, half)))
        keep = np.searchsorted(fpr, grid, side="right") - 1
        keep = np.unique(np.concatenate(([0, fpr.size - 1], keep)))
        fpr, tpr = fpr[keep], tpr[keep]
    return AttackMetrics(
        auc=float(roc_auc_score(members, values)),
        fpr_targets=targets,
        tpr_at_fpr=tpr_at_targets,
        balanced_accuracy=balanced_accuracy,
        roc_fpr=fpr,
        roc_tpr=tpr,
        n_members=int(members.sum()),
        n_nonmembers=int((~members).sum()),
    )


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """TPR at each target FPR on an exact ROC curve, interpolated over tied scores.

    ``roc_curve`` puts all tied scores behind one threshold, so a block of tied members and
    non-members is one diagonal step of the curve. Reading "the largest TPR with FPR ≤ target"
    then drops the whole block whenever it straddles the target: RMIA's scores tie at exactly
    1.0 for every record above its population's largest ratio, and its TPR at 0.1 % FPR jumped
    between about 1 % and 0 with the population seed. On the diagonal the TPR is the expected TPR
    of breaking the ties at random (and the same convention as the AUC's half-counted ties).
    Where no tie straddles a target the two readings agree.

    Args:
        fpr: ``(n_points,)`` non-decreasing FPRs of the ROC, one point per distinct threshold.
        tpr: ``(n_points,)`` TPRs at those points.
        targets: ``(n_targets,)`` FPRs in [0, 1].

    Returns:
        ``(n_targets,)`` TPRs.

    Example:
        >>> # two non-members and two members tied on top, then the rest: one diagonal step
        >>> fpr, tpr = np.array([0.0, 0.02, 1.0]), np.array([0.0, 0.04, 1.0])
        >>> tpr_at_fpr(fpr, tpr, np.array([0.01])).round(6).tolist()
        [0.02]
    """
    below = np.searchsorted(fpr, targets, side="right") - 1  # top of the last step ≤ target
    above = np.minimum(below + 1, fpr.size - 1)
    gap = fpr[above] - fpr[below]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(gap > 0, (targets - fpr[below]) / gap, 0.0)
    return tpr[below] + fraction * (tpr[above] - tpr[below])


def auc_confidence_interval(
    scores: np.ndarray,
    is_member: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    confidence: float = 0.95,
    num_bootstrap: int = 200,
    rng: np.random.Generator,
) -> AucInterval:
    """Percentile-bootstrap interval for the attack AUC, resampling whole groups if given.

    The (model, patient) pairs of one patient are correlated (same records, same difficulty), so
    resampling pairs independently understates the uncertainty; with ``groups`` the bootstrap draws
    whole patients (a cluster bootstrap). Each resample's AUC is the Mann–Whitney statistic on the
    resample's multiplicities over the tie-ranked scores (``scipy.stats.rankdata``), O(n) per
    resample: 200 resamples of 100k scores take well under a second. Resamples without a member or
    without a non-member are skipped.

    Args:
        scores: ``(n,)`` attack scores, higher = more likely member.
        is_member: ``(n,)`` bool, true membership.
        groups: ``(n,)`` cluster label of each score (e.g. patient id), or None for independent
            scores.
        confidence: Two-sided confidence level, in (0, 1).
        num_bootstrap: Number of resamples.
        rng: Source of randomness for the resampling.

    Returns:
        The full-sample AUC and the interval.

    Raises:
        ConfigError: If inputs are malformed or an option is out of range.

    Example:
        >>> scores = np.concatenate((np.arange(50.0), np.arange(50.0) + 25))
        >>> members = np.arange(100) >= 50
        >>> interval = auc_confidence_interval(scores, members, rng=np.random.default_rng(0))
        >>> round(interval.auc, 3), interval.lower < interval.auc < interval.upper < 1
        (0.875, True)
    """
    values, members = check_scores(scores, is_member)
    check_confidence(confidence)
    if not is_positive_int(num_bootstrap):
        raise ConfigError(f"num_bootstrap must be a positive integer, got {num_bootstrap}")
    if groups is None:
        cluster = np.arange(values.size)
    else:
        labels = np.asarray(groups)
        if labels.shape != values.shape:
            raise ConfigError(f"groups must have shape {values.shape}, got {labels.shape}")
        cluster = np.unique(labels, return_inverse=True)[1].reshape(-1)
    num_clusters = int(cluster.max()) + 1
    ties = rankdata(values, method="dense").astype(np.int64) - 1
    num_ties = int(ties.max()) + 1
    aucs = np.empty(num_bootstrap)
    for b in range(num_bootstrap):
        drawn = np.bincount(rng.integers(0, num_clusters, num_clusters), minlength=num_clusters)
        aucs[b] = _weighted_auc(ties, members, drawn[cluster], num_ties)
    alpha = 1 - confidence
    lower, upper = np.nanquantile(aucs, [alpha / 2, 1 - alpha / 2])
    return AucInterval(
        auc=_weighted_auc(ties, members, np.ones(values.size), num_ties),
        lower=float(lower),
        upper=float(upper),
        confidence=confidence,
        num_bootstrap=num_bootstrap,
        num_clusters=num_clusters,
    )


def check_confidence(confidence: float) -> None:
    """Raises `ConfigError` unless ``confidence`` is in (0, 1)."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an integer ≥ 1 (and not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def check_scores(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validates flat attack scores and bool membership with both classes present."""
    values = np.asarray(scores, dtype=np.float64)
    members = np.asarray(is_member)
    if values.ndim != 1 or members.shape != values.shape:
        raise ConfigError(
            f"scores and is_member must be (n,) of one shape, got {values.shape} and "
            f"{members.shape}"
        )
    if members.dtype != np.bool_:
        raise ConfigError(f"is_member must be bool, got dtype {members.dtype}")
    if not np.all(np.isfinite(values)):
        raise ConfigError(f"scores must be finite, got {np.sum(~np.isfinite(values))} non-finite")
    if members.all() or not members.any():
        raise ConfigError(
            f"need both members and non-members, got {members.sum()} of {members.size} members"
        )
    return values, members


def _critical_value(confidence: float, num_in: np.ndarray, num_out: np.ndarray) -> np.ndarray:
    """One-sided Student-t critical value with min(n_in, n_out) − 1 degrees of freedom.

    With few models the variances are estimated from a handful of values and the normal quantile
    would make the bound far too tight (K = 4: 1.64 instead of 6.31); with K = 256 the two agree
    to 1%.
    """
    degrees = np.maximum(np.minimum(num_in, num_out) - 1, 1)
    return student_t.ppf(confidence, degrees)


def _complementary_pairs(mask: np.ndarray) -> bool:
    """Whether models 2j and 2j + 1 see every record on opposite sides (the audit's design)."""
    return mask.shape[0] % 2 == 0 and bool(np.array_equal(mask[1::2], ~mask[0::2]))


def _masked_moments(
    values: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column count, mean and unbiased variance (+ floor) of the masked entries."""
    count = mask.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(mask, values, 0.0).sum(axis=0) / count
        var = np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0) / (count - 1)
    return count.astype(np.int64), mean, var + _VARIANCE_FLOOR


def _weighted_auc(
    ties: np.ndarray, members: np.ndarray, weights: np.ndarray, num_ties: int
) -> float:
    """Mann–Whitney AUC of scores with multiplicities ``weights``; ``ties`` are dense ranks."""
    pos = np.bincount(ties, weights=weights * members, minlength=num_ties)
    neg = np.bincount(ties, weights=weights * ~members, minlength=num_ties)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float(pos @ (below + 0.5 * neg) / (total_pos * total_neg))
