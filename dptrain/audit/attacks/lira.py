"""The Likelihood Ratio Attack (LiRA) of Carlini et al. (2022), leave-one-group-out."""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError

from dptrain.audit.attacks.inputs import (
    check_groups,
    check_signals,
    check_target_signals,
    sum_other_groups,
)
from dptrain.errors import ConfigError, DataError

__all__ = ["LiRA"]

# Smallest variance a Gaussian fit may have: identical reference signals (e.g. a saturated model)
# would otherwise divide by zero. Tiny on the φ scale, so it never changes a genuine fit.
_MIN_VARIANCE = 1e-12


class LiRA:
    """Per-record Gaussian likelihood-ratio test on φ (Carlini et al. 2022, Algorithm 1).

    For target model k and record x, the references are the other K − 1 models, or with
    ``fit(..., groups=...)`` the models outside k's group (see below). Their φ(x) splits into IN
    (x was in the reference's training set) and OUT; LiRA fits one Gaussian to each side, so every
    record is judged against its own difficulty instead of one global threshold.

    * Online: score = log N(φ_k; μ_in, σ²_in) − log N(φ_k; μ_out, σ²_out), the log of the
      likelihood ratio Λ of Algorithm 1.
    * Offline: only OUT references; score = (φ_k − μ_out) / σ_out, the one-sided test of the
      offline attack (the paper reports Φ of this z-score, a monotone transform, so ROC curves
      are identical; the z-score keeps resolution where Φ rounds to 1).

    Members score higher in both. The reference code (tensorflow/privacy
    ``research/mi_lira_2021/plot.py``) fits the centre with the median; here it is the mean, the
    maximum-likelihood Gaussian fit, which the leave-group-out totals can compute in O(K · n).

    Variance and fallbacks, per target and side (IN / OUT):

    * ``fixed_variance=True``: one pooled within-record variance,
      Σ_x Σ_refs (φ − μ_x)² / Σ_x (n_x − 1), shared by all records. Carlini et al. recommend a
      global variance when few reference models exist (per-record variances from a handful of
      values are noisy). Unlike ``np.std`` over all values in the reference code, pooling around
      each record's own mean keeps the spread *between* records out of σ.
    * A record with fewer than 2 references on a side uses that pooled variance; one with none
      also uses the side's global mean (over all records' reference signals) as μ.
    * If no record has 2 references on a side (K = 2), the pooled variance is replaced by the
      variance of all that side's reference signals around the global mean.
    * Variances are floored at 1e-12.

    Why ``groups``: the audit trains models in complementary pairs (model 2j on a random half of
    the patients, model 2j + 1 on the other half). Leaving only the target out, a member of the
    target then has K/2 − 1 IN and K/2 OUT references and a non-member K/2 IN and K/2 − 1 OUT, so
    the reference counts, and with them which fallbacks above apply, depend on the target's
    membership: with K = 4 or 8 that alone gives AUC > 0.5 and a high TPR at low FPR from
    signals that carry no membership information. ``groups = np.arange(K) // 2`` also drops the
    target's partner, leaving every record K/2 − 1 references on each side.

    Args:
        online: Use IN and OUT references (True) or OUT only (False).
        fixed_variance: Share one variance per side across records instead of per-record ones.

    Attributes:
        scores_: Leave-one-group-out scores, shape (K, n_records): row k scores model k against
            the models outside its group (the other K − 1 models when ``groups`` is None).
        signals_: The fitted φ, shape (K, n_records), kept as references for :meth:`score`.
        membership_: The fitted membership, shape (K, n_records).

    Raises:
        ConfigError: If an option is not a bool.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> membership = rng.random((8, 300)) < 0.5
        >>> signals = rng.normal(0, 2, 300) + 2.0 * membership + rng.normal(0, 0.5, (8, 300))
        >>> attack = LiRA().fit(signals, membership)
        >>> attack.scores_.shape
        (8, 300)
        >>> bool(attack.scores_[membership].mean() > attack.scores_[~membership].mean())
        True
        >>> attack.score(signals[0]).shape
        (300,)

        Complementary pairs, each target scored without its partner:

        >>> pairs = np.repeat(rng.random((4, 300)) < 0.5, 2, axis=0)
        >>> pairs[1::2] = ~pairs[1::2]
        >>> signals = rng.normal(0, 2, 300) + 2.0 * pairs + rng.normal(0, 0.5, (8, 300))
        >>> attack = LiRA().fit(signals, pairs, groups=np.arange(8) // 2)
        >>> bool(attack.scores_[pairs].mean() > attack.scores_[~pairs].mean())
        True
    """

    def __init__(self, *, online: bool = True, fixed_variance: bool = False) -> None:
        for name, value in (("online", online), ("fixed_variance", fixed_variance)):
            if not isinstance(value, bool):
                raise ConfigError(f"lira {name} must be true or false, got {value!r}")
        self.online = online
        self.fixed_variance = fixed_variance

    def fit(
        self,
        signals: np.ndarray,
        membership: np.ndarray,
        *,
        groups: np.ndarray | None = None,
    ) -> LiRA:
        """Score every model as the target against the models outside its group.

        Args:
            signals: φ of each record under each model, shape (K, n_records), K ≥ 2.
            membership: Training-set membership, shape (K, n_records).
            groups: Integer group label per model, shape (K,), at least two distinct labels;
                target k's references are the models with a label other than ``groups[k]``.
                ``np.arange(K) // 2`` for complementary pairs of training sets; None (default)
                puts every model in its own group (leave-one-model-out).

        Returns:
            self, fitted.

        Raises:
            DataError: On bad inputs or groups, or if a target has no reference signal at all on
                a side the attack needs.
        """
        signals, membership = check_signals(signals, membership, min_models=2)
        codes = check_groups(groups, signals.shape[0])
        scores = self._scores(signals, membership, signals, groups=codes)
        self.signals_, self.membership_, self.scores_ = signals, membership, scores
        return self

    def score(self, target_signals: np.ndarray) -> np.ndarray:
        """Score a new target model with all K fitted models as references.

        Args:
            target_signals: φ of each record under the new target model, shape (n_records,).

        Returns:
            Membership scores, shape (n_records,), float64.
        """
        if not hasattr(self, "scores_"):
            raise NotFittedError("LiRA is not fitted; call fit(signals, membership) first")
        target = check_target_signals(target_signals, self.signals_.shape[1])
        scores = self._scores(self.signals_, self.membership_, target[None, :], groups=None)
        return scores[0]

    def _scores(
        self,
        signals: np.ndarray,
        membership: np.ndarray,
        targets: np.ndarray,
        *,
        groups: np.ndarray | None,
    ) -> np.ndarray:
        """Scores of ``targets`` (T, n): T = K leaving each target's group out, else T = 1.

        ``groups`` holds the group codes of the K fitted models (targets are those models); None
        scores one new target against all K models.
        """
        # Centring each record on its mean over all models is only a shift (it cancels in every
        # difference below); it keeps the sum-of-squares variance free of cancellation.
        shift = signals.mean(axis=0)
        centred = targets - shift
        mean_out, var_out = self._side_fit(signals, ~membership, shift, groups, "OUT")
        if not self.online:
            return (centred - mean_out) / np.sqrt(var_out)
        mean_in, var_in = self._side_fit(signals, membership, shift, groups, "IN")
        return 0.5 * (
            np.log(var_out)
            - np.log(var_in)
            + (centred - mean_out) ** 2 / var_out
            - (centred - mean_in) ** 2 / var_in
        )

    def _side_fit(
        self,
        signals: np.ndarray,
        side: np.ndarray,
        shift: np.ndarray,
        groups: np.ndarray | None,
        label: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian mean (centred scale) and variance per (target, record) for one side.

        Totals over all K models are computed once; with ``groups`` the contribution of each
        target's group is subtracted, giving (K, n) statistics of its references.
        """
        raw = np.where(side, signals, 0.0)
        centred = np.where(side, signals - shift, 0.0)
        sums = [side.astype(np.float64), raw, raw**2, centred, centred**2]
        if groups is not None:
            count, raw1, raw2, s1, s2 = (sum_other_groups(term, groups) for term in sums)
        else:
            count, raw1, raw2, s1, s2 = (term.sum(axis=0, keepdims=True) for term in sums)
        count = np.rint(count)
        total = count.sum(axis=1, keepdims=True)
        if np.any(total == 0):
            raise DataError(f"lira needs at least one {label} reference signal for every target")
        global_mean = raw1.sum(axis=1, keepdims=True) / total
        global_var = raw2.sum(axis=1, keepdims=True) / total - global_mean**2

        safe_count = np.maximum(count, 1.0)
        mean = np.where(count > 0, s1 / safe_count, global_mean - shift)
        within_ss = np.maximum(s2 - s1**2 / safe_count, 0.0)
        dof = np.maximum(count - 1.0, 0.0)
        pooled_dof = dof.sum(axis=1, keepdims=True)
        pooled = np.where(
            pooled_dof > 0,
            within_ss.sum(axis=1, keepdims=True) / np.maximum(pooled_dof, 1.0),
            global_var,
        )
        if self.fixed_variance:
            var = np.broadcast_to(pooled, mean.shape)
        else:
            var = np.where(count >= 2, within_ss / np.maximum(dof, 1.0), pooled)
        return mean, np.maximum(var, _MIN_VARIANCE)
