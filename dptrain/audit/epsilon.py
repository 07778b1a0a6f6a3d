"""Empirical ε lower bounds from a membership attack's scores (Clopper–Pearson, corrected).

Follows jax_privacy's ``auditing.py``: one-sided Clopper–Pearson bounds on TPR and FPR turn an
attack into a statistically valid lower bound on ε at a given δ (Jagielski et al. 2020; Nasr et al.
2021), with a correction for picking the threshold on the same data. The bound assumes the scored
examples are independent trials; in a leave-many-out audit, (model, patient) pairs share models
and patients, so there it is an indication rather than a proof.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from dptrain.audit.metrics import check_confidence, check_scores, is_positive_int
from dptrain.errors import ConfigError


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
        correction: How the threshold choice was paid for: "bonferroni", "split" or "fixed" (none).
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
    check_confidence(confidence)
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
    check_confidence(confidence)
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

    Tied scores (RMIA's many exact 1.0s) need no correction here, unlike the TPR at a target FPR:
    every candidate is a deterministic test "score ≥ threshold" that puts a block of tied scores
    on one side together, so its counts, and the bound, do not depend on how ties are ordered.
    Breaking ties at random would only add points on the block's diagonal, where TPR/FPR is
    monotone between the block's ends and fewer counts widen the Clopper–Pearson intervals.

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
    values, members = check_scores(scores, is_member)
    _check_options(confidence=confidence, delta=delta, max_thresholds=max_thresholds)
    alpha = 1 - confidence
    if correction == "bonferroni":
        thresholds = candidate_thresholds(values, members, max_thresholds)
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
        thresholds = candidate_thresholds(values[selection], members[selection], max_thresholds)
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


def epsilon_at_threshold(
    scores: np.ndarray,
    is_member: np.ndarray,
    *,
    threshold: float,
    delta: float,
    confidence: float = 0.95,
) -> EpsilonLowerBound:
    """The ε lower bound of one test "member if score ≥ threshold", fixed before seeing the scores.

    No selection to pay for: only the two intervals share 1 − confidence.

    Args:
        scores: ``(n,)`` attack scores, higher = more likely member.
        is_member: ``(n,)`` bool, true membership.
        threshold: The test's threshold.
        delta: The δ of the claim being tested, in [0, 1).
        confidence: Probability that the bound holds, in (0, 1).

    Returns:
        The bound (``correction`` is "fixed", ``num_thresholds`` 1).

    Raises:
        ConfigError: If inputs are malformed or an option is out of range.

    Example:
        >>> scores = np.arange(200.0)
        >>> round(epsilon_at_threshold(scores, scores >= 100, threshold=100.0, delta=0).epsilon, 2)
        3.28
    """
    values, members = check_scores(scores, is_member)
    _check_options(confidence=confidence, delta=delta, max_thresholds=1)
    significance = (1 - confidence) / 2
    chosen = np.array([float(threshold)])
    eps, tpr_lb, fpr_ub = _eps_at_thresholds(
        values, members, chosen, delta=delta, significance=significance
    )
    n_in, n_out = int(members.sum()), int((~members).sum())
    ceiling = _eps_from_rates(
        clopper_pearson_lower(n_in, n_in, confidence=1 - significance),
        clopper_pearson_upper(0, n_out, confidence=1 - significance),
        delta=delta,
    )
    return EpsilonLowerBound(
        epsilon=float(max(eps[0], 0.0)),
        ceiling=float(max(ceiling, 0.0)),
        threshold=float(threshold),
        tpr_lower=float(tpr_lb[0]),
        fpr_upper=float(fpr_ub[0]),
        confidence=confidence,
        correction="fixed",
        num_thresholds=1,
    )


def _check_counts(successes: int | np.ndarray, trials: int) -> np.ndarray:
    k = np.asarray(successes, dtype=np.float64)
    if not is_positive_int(trials):
        raise ConfigError(f"trials must be a positive integer, got {trials}")
    if not np.all((k >= 0) & (k <= trials) & (k == np.round(k))):
        raise ConfigError(f"successes must be integers in [0, {trials}], got {successes}")
    return k


def _check_options(*, confidence: float, delta: float, max_thresholds: int) -> None:
    check_confidence(confidence)
    if not 0 <= delta < 1:
        raise ConfigError(f"delta must be in [0, 1), got {delta}")
    if not is_positive_int(max_thresholds):
        raise ConfigError(f"max_thresholds must be a positive integer, got {max_thresholds}")


def candidate_thresholds(
    values: np.ndarray, members: np.ndarray, max_thresholds: int
) -> np.ndarray:
    """Up to ``max_thresholds`` pooled-score quantiles: the class split, then both tails.

    Shared with `dptrain.audit.auditor` so every bound searches the same thresholds.
    """
    ordered = np.sort(values)
    n = ordered.size
    positions = np.array([np.count_nonzero(~members)])  # where a perfect attack separates
    per_tail = (max_thresholds - 1) // 2
    if per_tail:
        tail = np.unique(np.round(np.geomspace(1, max(n // 2, 1), per_tail)).astype(np.int64))
        positions = np.concatenate((positions, n - tail, tail))
    return np.unique(ordered[np.clip(positions, 1, n - 1)])


def counts_at_thresholds(
    values: np.ndarray, members: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Members (true positives) and non-members (false positives) scoring ≥ each threshold.

    Returns:
        ``(n_thresholds,)`` int counts ``(tp, fp)``.
    """
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
    tp, fp = counts_at_thresholds(values, members, thresholds)
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
