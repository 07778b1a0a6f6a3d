"""The global-threshold (LOSS) baseline of Yeom et al. (2018)."""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError

from dptrain.audit.attacks.inputs import check_groups, check_signals, check_target_signals

__all__ = ["LossAttack"]


class LossAttack:
    """Score each record by its own confidence φ, with one threshold shared by all records.

    Yeom et al. (2018, "Privacy Risk in Machine Learning: Analyzing the Connection to
    Overfitting") predict "member" when the loss is below a global threshold; φ is a decreasing
    function of the cross-entropy loss, so φ itself is the score (members positive, higher φ =
    more likely member). No reference model is used, so the attack cannot tell a record that is
    easy for every model from one the target memorised; it is the baseline LiRA and RMIA must
    beat, and on a well-generalising model its AUC sits near 0.5.

    Attributes:
        scores_: Membership scores, shape (K, n_records): row k scores model k as the target
            (here simply its signals).
        n_records_: Number of records the attack was fitted on.

    Example:
        >>> signals = np.array([[2.0, -1.0], [0.5, 1.5]])
        >>> attack = LossAttack().fit(signals, np.array([[1, 0], [0, 1]]))
        >>> attack.scores_.tolist()
        [[2.0, -1.0], [0.5, 1.5]]
        >>> attack.score(np.array([0.3, -0.2])).tolist()
        [0.3, -0.2]
    """

    def fit(
        self,
        signals: np.ndarray,
        membership: np.ndarray,
        *,
        groups: np.ndarray | None = None,
    ) -> LossAttack:
        """Store the signals as the scores (``membership`` and ``groups`` are only validated).

        Args:
            signals: φ of each record under each model, shape (K, n_records).
            membership: Training-set membership, shape (K, n_records); unused by the score.
            groups: Integer group label per model, shape (K,), or None; accepted for the same
                call as the reference attacks and unused, since no reference model is used.

        Returns:
            self, fitted.

        Raises:
            DataError: On bad inputs, or ``groups`` of the wrong shape or type.
        """
        signals, _ = check_signals(signals, membership)
        check_groups(groups, signals.shape[0], min_groups=1)
        self.scores_ = signals.copy()
        self.n_records_ = signals.shape[1]
        return self

    def score(self, target_signals: np.ndarray) -> np.ndarray:
        """Score a new target model: its own φ.

        Args:
            target_signals: φ of each record under the new target model, shape (n_records,).

        Returns:
            Membership scores, shape (n_records,), float64.
        """
        if not hasattr(self, "scores_"):
            raise NotFittedError("LossAttack is not fitted; call fit(signals, membership) first")
        return check_target_signals(target_signals, self.n_records_).copy()
