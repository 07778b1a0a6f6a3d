"""The Robust Membership Inference Attack (RMIA) of Zarifzadeh et al. (2024), one group out."""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import expit, log_expit
from sklearn.exceptions import NotFittedError

from dptrain.audit.attacks.inputs import (
    check_groups,
    check_signals,
    check_target_signals,
    sum_other_groups,
)
from dptrain.errors import ConfigError, DataError

__all__ = ["RMIA"]


class RMIA:
    """Pairwise likelihood-ratio test of a record against population records (RMIA).

    Zarifzadeh et al. (2024, "Low-Cost High-Power Membership Inference Attacks") compare the
    target's probability of the true label, p(x|θ) = sigmoid(φ), with its average over reference
    models p(x), and do the same for population records z that are not in the target's training
    set:

        LR_θ(x, z) = (p(x|θ) / p(x)) / (p(z|θ) / p(z)),   Score(x) = Pr_z[LR_θ(x, z) > γ].

    Dividing by p(z|θ)/p(z) calibrates x against how the target treats unseen data, which is
    what keeps the attack strong with few reference models. The strict ``> γ`` follows the
    authors' code (privacytrustlab/ml_privacy_meter); the paper writes ``≥``, equal with
    probability zero for continuous signals.

    Reference probability p(x), per target k over its references: the other K − 1 models, or
    with ``fit(..., groups=...)`` the models outside k's group:

    * online: the mean of p(x|θ') over all references (IN and OUT alike);
    * offline: ((1 + a)/2) · mean over OUT references + (1 − a)/2, the paper's linear
      approximation of the IN/OUT average from OUT models only (a = ``offline_a``). A record with
      no OUT reference uses the target's global mean over all OUT reference probabilities.

    Population: for each target, a seeded sample (without replacement) of up to
    ``num_population`` records that are not in its training set; p(z) uses the same rule and the
    same references as p(x).
    A record x drawn into its own population is excluded from its own comparison (it would only
    ever count as "not dominated" and bias non-members low by up to 1/``num_population``).

    Implementation: Score(x) only depends on r(x) = p(x|θ)/p(x) and the population's sorted
    ratios r(z), since LR > γ ⇔ log r(z) < log r(x) − log γ; one ``np.searchsorted`` per target
    costs O((n + n_z) log n_z) instead of an n × n_z matrix. Ratios are handled in log space so
    saturated models (p(x|θ) below 1e-308) stay ordered.

    Why ``groups``: the audit trains models in complementary pairs (model 2j on a random half of
    the patients, model 2j + 1 on the other half). Leaving only the target out, a member of the
    target has K/2 − 1 IN and K/2 OUT references and a non-member K/2 and K/2 − 1, so p(x) (and
    offline, how many OUT signals it averages) depends on the target's membership through the
    design alone. ``groups = np.arange(K) // 2`` also drops the target's partner from p(x) and
    p(z), leaving every record K/2 − 1 references on each side.

    Args:
        online: Average over all references (True) or use the offline approximation (False).
        offline_a: The offline coefficient a in [0, 1] (0.3 is the authors' default; 1 reduces
            p(x) to the plain OUT mean). Ignored when ``online``.
        gamma: Threshold γ > 0 on the pairwise likelihood ratio.
        num_population: Most population records z sampled per target, ≥ 1.
        seed: Seed (≥ 0) of the population sampling.

    Attributes:
        scores_: Leave-one-group-out scores in [0, 1], shape (K, n_records) (leave-one-model-out
            when ``groups`` is None).
        populations_: Per target k, the sorted record indices of its population sample.
        signals_: The fitted φ, shape (K, n_records), kept as references for :meth:`score`.
        membership_: The fitted membership, shape (K, n_records).

    Raises:
        ConfigError: If an option is out of range.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> membership = rng.random((8, 300)) < 0.5
        >>> signals = rng.normal(0, 2, 300) + 2.0 * membership + rng.normal(0, 0.5, (8, 300))
        >>> attack = RMIA(num_population=100, seed=1).fit(signals, membership)
        >>> attack.scores_.shape, [len(p) for p in attack.populations_][:2]
        ((8, 300), [100, 100])
        >>> bool(attack.scores_[membership].mean() > attack.scores_[~membership].mean())
        True
        >>> attack.score(signals[0]).shape
        (300,)
    """

    def __init__(
        self,
        *,
        online: bool = False,
        offline_a: float = 0.3,
        gamma: float = 1.0,
        num_population: int = 1000,
        seed: int = 0,
    ) -> None:
        if not isinstance(online, bool):
            raise ConfigError(f"rmia online must be true or false, got {online!r}")
        if not _is_real(offline_a) or not 0.0 <= offline_a <= 1.0:
            raise ConfigError(f"rmia offline_a must be in [0, 1], got {offline_a!r}")
        if not _is_real(gamma) or not 0.0 < gamma < np.inf:
            raise ConfigError(f"rmia gamma must be a finite number > 0, got {gamma!r}")
        if not _is_int(num_population) or num_population < 1:
            raise ConfigError(f"rmia num_population must be an integer ≥ 1, got {num_population!r}")
        if not _is_int(seed) or seed < 0:
            raise ConfigError(f"rmia seed must be an integer ≥ 0, got {seed!r}")
        self.online = online
        self.offline_a = offline_a
        self.gamma = gamma
        self.num_population = num_population
        self.seed = seed

    def fit(
        self,
        signals: np.ndarray,
        membership: np.ndarray,
        *,
        groups: np.ndarray | None = None,
    ) -> RMIA:
        """Score every model as the target against the models outside its group.

        Args:
            signals: φ of each record under each model, shape (K, n_records), K ≥ 2.
            membership: Training-set membership, shape (K, n_records).
            groups: Integer group label per model, shape (K,), at least two distinct labels;
                target k's references for p(x) and p(z) are the models with a label other than
                ``groups[k]``. ``np.arange(K) // 2`` for complementary pairs of training sets;
                None (default) puts every model in its own group (leave-one-model-out). The
                population stays the records outside target k's own training set.

        Returns:
            self, fitted.

        Raises:
            DataError: On bad inputs or groups, a target with fewer than 2 non-members, or
                (offline) a target whose references have no OUT signal at all.
        """
        signals, membership = check_signals(signals, membership, min_models=2)
        codes = check_groups(groups, signals.shape[0])
        n_non_members = (~membership).sum(axis=1)
        if n_non_members.min() < 2:
            k = int(n_non_members.argmin())
            raise DataError(
                f"rmia needs at least 2 non-member records per model to sample a population; "
                f"model {k} has {n_non_members[k]}"
            )
        log_ratio = log_expit(signals) - self._log_reference(signals, membership, groups=codes)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(2)[0])
        populations = [self._sample(rng, np.flatnonzero(~row)) for row in membership]
        scores = np.stack(
            [
                _pairwise_score(r, pop, self.gamma)
                for r, pop in zip(log_ratio, populations, strict=True)
            ]
        )
        self.signals_, self.membership_ = signals, membership
        self.populations_, self.scores_ = populations, scores
        return self

    def score(self, target_signals: np.ndarray) -> np.ndarray:
        """Score a new target model with all K fitted models as references.

        The new target's training set is unknown to the auditor, so its population is sampled
        from all records (seeded, and the same on every call); Score(x) is then the fraction of
        sampled records whose ratio x dominates.

        Args:
            target_signals: φ of each record under the new target model, shape (n_records,).

        Returns:
            Membership scores in [0, 1], shape (n_records,).
        """
        if not hasattr(self, "scores_"):
            raise NotFittedError("RMIA is not fitted; call fit(signals, membership) first")
        target = check_target_signals(target_signals, self.signals_.shape[1])
        reference = self._log_reference(self.signals_, self.membership_, groups=None)
        log_ratio = log_expit(target) - reference[0]
        rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(2)[1])
        population = self._sample(rng, np.arange(target.size))
        return _pairwise_score(log_ratio, population, self.gamma)

    def _sample(self, rng: np.random.Generator, candidates: np.ndarray) -> np.ndarray:
        size = min(self.num_population, candidates.size)
        return np.sort(rng.choice(candidates, size=size, replace=False))

    def _log_reference(
        self, signals: np.ndarray, membership: np.ndarray, *, groups: np.ndarray | None
    ) -> np.ndarray:
        """Log of p(x) per (target, record).

        (K, n) leaving each target's group out (``groups``: codes of the K models), or (1, n)
        over all K models when ``groups`` is None.
        """
        prob = expit(signals)
        weights = np.ones_like(prob) if self.online else (~membership).astype(np.float64)
        terms = [weights, weights * prob]
        if groups is not None:
            count, total = (sum_other_groups(term, groups) for term in terms)
        else:
            count, total = (term.sum(axis=0, keepdims=True) for term in terms)
        count = np.rint(count)
        if self.online:
            reference = total / count
        else:
            n_out = count.sum(axis=1, keepdims=True)
            if np.any(n_out == 0):
                raise DataError("offline rmia needs at least one OUT reference signal per target")
            global_out = total.sum(axis=1, keepdims=True) / n_out
            mean_out = np.where(count > 0, total / np.maximum(count, 1.0), global_out)
            a = self.offline_a
            reference = (1.0 + a) / 2.0 * mean_out + (1.0 - a) / 2.0
        return np.log(np.maximum(reference, np.finfo(np.float64).tiny))


def _pairwise_score(log_ratio: np.ndarray, population: np.ndarray, gamma: float) -> np.ndarray:
    """Fraction of population z ≠ x with LR(x, z) > γ, for one target; shapes (n,) → (n,)."""
    threshold = log_ratio - np.log(gamma)
    population_ratios = np.sort(log_ratio[population])
    dominated = np.searchsorted(population_ratios, threshold, side="left").astype(np.float64)
    in_population = np.zeros(log_ratio.size, dtype=bool)
    in_population[population] = True
    self_counted = in_population & (log_ratio < threshold)
    return (dominated - self_counted) / (population.size - in_population)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
