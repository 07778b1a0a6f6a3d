"""Membership-attack metrics and empirical ε lower bounds, computed from attack scores.

Inputs are flat arrays: ``scores`` (n,) float and ``is_member`` (n,) bool, one entry per
(model, patient) pair, or per-record signal matrices (one row per model). Members are the positive
class and a higher score means "more likely a member".

The ε lower bounds follow jax_privacy's ``auditing.py``: one-sided Clopper–Pearson bounds on TPR
and FPR turn an attack into a statistically valid lower bound on ε at a given δ (Jagielski et al.
2020; Nasr et al. 2021), with a correction for picking the threshold on the same data; and the
one-run bound of Steinke, Nasr & Jagielski (2023), which counts correct guesses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import beta, binom, norm, rankdata
from sklearn.metrics import roc_auc_score, roc_curve

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
        tpr_at_fpr: Largest empirical TPR with FPR ≤ each target.
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


@dataclass(frozen=True)
class EpsilonLowerBound:
    """A lower bound on ε (at a given δ) that holds with the given confidence.

    Attributes:
        epsilon: The bound (≥ 0): any (ε', δ)-DP claim with ε' < epsilon is refuted.
        ceiling: The largest bound these sample sizes allow (a perfect attack would reach it).
        threshold: Score threshold (member if score ≥ threshold) that gave the bound.
        tpr_lower: Clopper–Pearson lower bound on the TPR at that threshold.
        fpr_upper: Clopper–Pearson upper bound on the FPR at that threshold.
        confidence: Confidence level of the bound.
        correction: How the threshold choice was paid for: "bonferroni" or "split".
        num_thresholds: Candidate thresholds searched.
    """

    epsilon: float
    ceiling: float
    threshold: float
    tpr_lower: float
    fpr_upper: float
    confidence: float
    correction: str
    num_thresholds: int


@dataclass(frozen=True)
class OneRunEpsilonLowerBound:
    """Steinke et al. (2023) one-run lower bound on ε from the correct "member" guesses.

    Attributes:
        epsilon: The bound (≥ 0).
        threshold: Guess "member" for scores ≥ threshold.
        num_guesses: Number of guesses at that threshold.
        num_correct: Number of those that are members.
        num_canaries: Total number of scored examples (members and non-members).
        confidence: Confidence level of the bound.
        num_thresholds: Candidate thresholds searched (Bonferroni-corrected).
    """

    epsilon: float
    threshold: float
    num_guesses: int
    num_correct: int
    num_canaries: int
    confidence: float
    num_thresholds: int


def record_vulnerability(
    signals: np.ndarray, membership: np.ndarray, *, confidence: float = 0.95
) -> RecordVulnerability:
    """Per-record binormal attack AUC across K models, with a standard error and lower bound.

    A record's signal φ is roughly normal across the models that trained on it (IN) and those
    that did not (OUT), so the AUC of the best test for that one record is
    Φ((μ_in − μ_out)/√(σ_in² + σ_out²)) (Knolle et al.). Its standard error comes from the delta
    method with Var(μ̂_in − μ̂_out) ≈ σ_in²/n_in + σ_out²/n_out and Var(σ̂²) ≈ 2σ⁴/(n − 1); the lower
    bound is taken on the probit scale, where the estimate is closer to normal, and mapped back
    with Φ so it stays in [0, 1]. Vectorised over records with masked sums.

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
    _check_confidence(confidence)
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
        z_se = np.sqrt(var_mean_diff / spread + z**2 * var_spread / (4 * spread**2))
    enough = (num_in >= 2) & (num_out >= 2)
    z, z_se = np.where(enough, z, np.nan), np.where(enough, z_se, np.nan)
    return RecordVulnerability(
        auc=norm.cdf(z),
        standard_error=norm.pdf(z) * z_se,
        lower_bound=norm.cdf(z - norm.ppf(confidence) * z_se),
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
    (as is the balanced accuracy) before the curve is thinned for storage.

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
    values, members = _check_scores(scores, is_member)
    targets = np.asarray(fpr_targets, dtype=np.float64).reshape(-1)
    if not np.all((targets > 0) & (targets < 1)):
        raise ConfigError(f"fpr_targets must be in (0, 1), got {fpr_targets}")
    fpr, tpr, _ = roc_curve(members, values, drop_intermediate=False)
    tpr_at_fpr = tpr[np.searchsorted(fpr, targets, side="right") - 1]
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
        tpr_at_fpr=tpr_at_fpr,
        balanced_accuracy=balanced_accuracy,
        roc_fpr=fpr,
        roc_tpr=tpr,
        n_members=int(members.sum()),
        n_nonmembers=int((~members).sum()),
    )


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
    values, members = _check_scores(scores, is_member)
    _check_confidence(confidence)
    if not _is_positive_int(num_bootstrap):
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


def clopper_pearson_lower(
    successes: int | np.ndarray, trials: int, *, confidence: float
) -> np.ndarray:
    """One-sided Clopper–Pearson lower bound on a binomial proportion.

    Exact (never anti-conservative), which matters for DP lower bounds: a normal approximation can
    over-claim at the small counts that low-FPR thresholds produce.

    Args:
        successes: Number(s) of successes, in [0, trials].
        trials: Number of trials, ≥ 1.
        confidence: Confidence level, in (0, 1).

    Returns:
        p such that P(X ≥ successes | X ~ Binom(trials, p)) = 1 − confidence (0 for no successes).

    Raises:
        ConfigError: If the counts or the confidence are out of range.

    Example:
        >>> round(float(clopper_pearson_lower(10, 10, confidence=0.95)), 4)  # 0.05^(1/10)
        0.7411
    """
    _check_confidence(confidence)
    k = _check_counts(successes, trials)
    with np.errstate(invalid="ignore"):
        return np.where(k > 0, beta.ppf(1 - confidence, k, trials - k + 1), 0.0)


def clopper_pearson_upper(
    successes: int | np.ndarray, trials: int, *, confidence: float
) -> np.ndarray:
    """One-sided Clopper–Pearson upper bound on a binomial proportion.

    Args:
        successes: Number(s) of successes, in [0, trials].
        trials: Number of trials, ≥ 1.
        confidence: Confidence level, in (0, 1).

    Returns:
        p such that P(X ≤ successes | X ~ Binom(trials, p)) = 1 − confidence (1 if all succeed).

    Raises:
        ConfigError: If the counts or the confidence are out of range.

    Example:
        >>> round(float(clopper_pearson_upper(0, 100, confidence=0.95)), 5)  # 1 − 0.05^(1/100)
        0.02951
    """
    _check_confidence(confidence)
    k = _check_counts(successes, trials)
    with np.errstate(invalid="ignore"):
        return np.where(k < trials, beta.ppf(confidence, k + 1, trials - k), 1.0)


def epsilon_lower_bound(
    scores: np.ndarray,
    is_member: np.ndarray,
    *,
    delta: float,
    confidence: float = 0.95,
    correction: str = "bonferroni",
    max_thresholds: int = 64,
    rng: np.random.Generator | None = None,
) -> EpsilonLowerBound:
    """Statistically valid lower bound on ε at δ from a threshold attack's scores.

    (ε, δ)-DP forces TPR ≤ e^ε·FPR + δ and TNR ≤ e^ε·FNR + δ for every test, so with one-sided
    Clopper–Pearson bounds TPR_lb and FPR_ub (FNR_ub = 1 − TPR_lb) every threshold gives
    ε ≥ max(log((TPR_lb − δ)/FPR_ub), log((1 − δ − FPR_ub)/FNR_ub)).

    Picking the best threshold on the same data must be paid for. "bonferroni" splits
    1 − confidence over the two intervals and up to ``max_thresholds`` candidate thresholds:
    quantiles of the pooled scores, geometric in both tails (where large ε live), plus the one at
    the non-member count (where a perfect attack separates the classes). "split" picks the
    threshold on a random half of each class and evaluates it on the other half. ``ceiling`` is
    what a perfect attack would give under the same correction: a bound can never exceed it, so it
    says how large an ε this audit could refute at all.

    Args:
        scores: ``(n,)`` attack scores, higher = more likely member.
        is_member: ``(n,)`` bool, true membership.
        delta: The δ of the claim being tested, in [0, 1).
        confidence: Probability that the bound holds, in (0, 1).
        correction: "bonferroni" or "split".
        max_thresholds: Most candidate thresholds to search, ≥ 1.
        rng: Source of randomness for the split (required for "split").

    Returns:
        The bound, its ceiling, and the threshold and rate bounds behind it.

    Raises:
        ConfigError: If inputs are malformed or an option is out of range.

    Example:
        >>> scores = np.arange(200.0)
        >>> members = scores >= 100  # a perfect attack
        >>> bound = epsilon_lower_bound(scores, members, delta=0.0)
        >>> round(bound.epsilon, 2), bound.epsilon == bound.ceiling
        (2.55, True)
    """
    values, members = _check_scores(scores, is_member)
    _check_options(confidence=confidence, delta=delta, max_thresholds=max_thresholds)
    alpha = 1 - confidence
    if correction == "bonferroni":
        thresholds = _candidate_thresholds(values, members, max_thresholds)
        chosen = thresholds
        evaluation = (values, members)
        significance = alpha / (2 * thresholds.size)
    elif correction == "split":
        if rng is None:
            raise ConfigError("correction='split' needs rng, got None")
        n_in = np.count_nonzero(members)
        if min(n_in, members.size - n_in) < 2:
            raise ConfigError(
                f"correction='split' needs >= 2 members and >= 2 non-members, got {n_in} and "
                f"{members.size - n_in}"
            )
        selection, held_out = _split_half(members, rng)
        thresholds = _candidate_thresholds(values[selection], members[selection], max_thresholds)
        candidate_eps, _, _ = _eps_at_thresholds(
            values[selection], members[selection], thresholds, delta=delta, significance=alpha / 2
        )
        chosen = thresholds[[int(np.argmax(candidate_eps))]]
        evaluation = (values[held_out], members[held_out])
        significance = alpha / 2
    else:
        raise ConfigError(f"correction must be 'bonferroni' or 'split', got {correction!r}")
    eps, tpr_lb, fpr_ub = _eps_at_thresholds(
        *evaluation, chosen, delta=delta, significance=significance
    )
    best = int(np.argmax(eps))
    n_in, n_out = int(evaluation[1].sum()), int((~evaluation[1]).sum())
    ceiling = _eps_from_rates(
        clopper_pearson_lower(n_in, n_in, confidence=1 - significance),
        clopper_pearson_upper(0, n_out, confidence=1 - significance),
        delta=delta,
    )
    return EpsilonLowerBound(
        epsilon=float(max(eps[best], 0.0)),
        ceiling=float(max(ceiling, 0.0)),
        threshold=float(chosen[best]),
        tpr_lower=float(tpr_lb[best]),
        fpr_upper=float(fpr_ub[best]),
        confidence=confidence,
        correction=correction,
        num_thresholds=int(thresholds.size),
    )


def one_run_epsilon_lower_bound(
    scores: np.ndarray,
    is_member: np.ndarray,
    *,
    delta: float,
    confidence: float = 0.95,
    max_thresholds: int = 64,
) -> OneRunEpsilonLowerBound:
    """Steinke, Nasr & Jagielski (2023) lower bound on ε from one training run.

    Valid only when each scored example was included in training by an independent fair coin
    flip (the paper's randomised canaries): then, under (ε, δ)-DP, the number of correct "member"
    guesses among r guesses is dominated by Binomial(r, e^ε/(1 + e^ε)) plus a δ term
    (Theorem 5.2, with 2m·δ for m canaries). Ported from jax_privacy's ``auditing.py``
    (``epsilon_one_run``, one-sided, Bonferroni over the candidate thresholds).

    Args:
        scores: ``(n,)`` attack scores, higher = more likely member.
        is_member: ``(n,)`` bool, true membership (drawn by fair coin flips).
        delta: The δ of the claim being tested, in [0, 1).
        confidence: Probability that the bound holds, in (0, 1).
        max_thresholds: Most candidate thresholds to search, ≥ 1.

    Returns:
        The bound and the guess counts behind it.

    Raises:
        ConfigError: If inputs are malformed or an option is out of range.

    Example:
        >>> scores = np.arange(200.0)
        >>> bound = one_run_epsilon_lower_bound(scores, scores >= 100, delta=0.0)
        >>> round(bound.epsilon, 2), bound.num_guesses, bound.num_correct
        (2.65, 100, 100)
    """
    values, members = _check_scores(scores, is_member)
    _check_options(confidence=confidence, delta=delta, max_thresholds=max_thresholds)
    thresholds = _candidate_thresholds(values, members, max_thresholds)
    num_correct, num_wrong = _counts_at(values, members, thresholds)
    num_guesses = num_correct + num_wrong
    significance = (1 - confidence) / thresholds.size
    eps = np.array(
        [
            _one_run_epsilon(
                num_canaries=values.size,
                num_guesses=int(r),
                num_correct=int(v),
                delta=delta,
                significance=significance,
            )
            for r, v in zip(num_guesses, num_correct, strict=True)
        ]
    )
    best = int(np.argmax(eps))
    return OneRunEpsilonLowerBound(
        epsilon=float(eps[best]),
        threshold=float(thresholds[best]),
        num_guesses=int(num_guesses[best]),
        num_correct=int(num_correct[best]),
        num_canaries=int(values.size),
        confidence=confidence,
        num_thresholds=int(thresholds.size),
    )


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_counts(successes: int | np.ndarray, trials: int) -> np.ndarray:
    k = np.asarray(successes, dtype=np.float64)
    if not _is_positive_int(trials):
        raise ConfigError(f"trials must be a positive integer, got {trials}")
    if not np.all((k >= 0) & (k <= trials) & (k == np.round(k))):
        raise ConfigError(f"successes must be integers in [0, {trials}], got {successes}")
    return k


def _check_options(*, confidence: float, delta: float, max_thresholds: int) -> None:
    _check_confidence(confidence)
    if not 0 <= delta < 1:
        raise ConfigError(f"delta must be in [0, 1), got {delta}")
    if not _is_positive_int(max_thresholds):
        raise ConfigError(f"max_thresholds must be a positive integer, got {max_thresholds}")


def _check_scores(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _candidate_thresholds(
    values: np.ndarray, members: np.ndarray, max_thresholds: int
) -> np.ndarray:
    """Up to ``max_thresholds`` pooled-score quantiles: the class split, then both tails."""
    ordered = np.sort(values)
    n = ordered.size
    positions = np.array([np.count_nonzero(~members)])  # where a perfect attack separates
    per_tail = (max_thresholds - 1) // 2
    if per_tail:
        tail = np.unique(np.round(np.geomspace(1, max(n // 2, 1), per_tail)).astype(np.int64))
        positions = np.concatenate((positions, n - tail, tail))
    return np.unique(ordered[np.clip(positions, 1, n - 1)])


def _counts_at(
    values: np.ndarray, members: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Members (true positives) and non-members (false positives) scoring ≥ each threshold."""
    member_scores = np.sort(values[members])
    other_scores = np.sort(values[~members])
    tp = member_scores.size - np.searchsorted(member_scores, thresholds, side="left")
    fp = other_scores.size - np.searchsorted(other_scores, thresholds, side="left")
    return tp, fp


def _eps_from_rates(tpr_lb: np.ndarray, fpr_ub: np.ndarray, *, delta: float) -> np.ndarray:
    """max(log((TPR_lb − δ)/FPR_ub), log((1 − δ − FPR_ub)/(1 − TPR_lb))), −inf where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = np.log(np.maximum(tpr_lb - delta, 0.0)) - np.log(fpr_ub)
        negative = np.log(np.maximum(1 - delta - fpr_ub, 0.0)) - np.log1p(-tpr_lb)
    return np.maximum(positive, negative)


def _eps_at_thresholds(
    values: np.ndarray,
    members: np.ndarray,
    thresholds: np.ndarray,
    *,
    delta: float,
    significance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ε lower bound, TPR lower and FPR upper bound at each threshold (member if ≥ threshold)."""
    tp, fp = _counts_at(values, members, thresholds)
    n_in = np.count_nonzero(members)
    tpr_lb = clopper_pearson_lower(tp, n_in, confidence=1 - significance)
    fpr_ub = clopper_pearson_upper(fp, members.size - n_in, confidence=1 - significance)
    return _eps_from_rates(tpr_lb, fpr_ub, delta=delta), tpr_lb, fpr_ub


def _split_half(members: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random half of each class, and of the rest."""
    selection = []
    for cls in (members, ~members):
        index = rng.permutation(np.flatnonzero(cls))
        selection.append(index[: index.size // 2])
    chosen = np.concatenate(selection)
    return chosen, np.setdiff1d(np.arange(members.size), chosen)


def _one_run_p_value(
    *, num_canaries: int, num_guesses: int, num_correct: int, epsilon: float, delta: float
) -> float:
    """P-value of ``num_correct`` of ``num_guesses`` under (ε, δ)-DP (Steinke et al., Thm 5.2)."""
    p = expit(epsilon)
    tail = binom.sf(num_correct - 1, num_guesses, p)
    if delta == 0 or num_correct == 0:
        return float(tail)
    shifts = np.arange(1, num_correct + 1)
    excess = binom.sf(num_correct - shifts - 1, num_guesses, p) - tail
    return float(min(tail + 2 * num_canaries * delta * np.max(excess / shifts), 1.0))


def _one_run_epsilon(
    *, num_canaries: int, num_guesses: int, num_correct: int, delta: float, significance: float
) -> float:
    """Largest ε whose (ε, δ) claim the guesses refute at ``significance`` (0 if none)."""

    def margin(epsilon: float) -> float:
        return significance - _one_run_p_value(
            num_canaries=num_canaries,
            num_guesses=num_guesses,
            num_correct=num_correct,
            epsilon=epsilon,
            delta=delta,
        )

    if num_guesses == 0 or margin(0.0) <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while margin(high) > 0:
        low, high = high, 2 * high
    return float(brentq(margin, low, high, xtol=1e-6))
