"""One auditor over (in, out) scores: AUROC, TPR at FPR and four empirical lower bounds.

Modelled on jax_privacy's ``CanaryScoreAuditor``: any audit that ends in one score per trial
(a canary, a (model, patient) pair, a gradient canary) hands the scores of members ("in", the
positive class) and non-members ("out") to `ScoreAuditor` and reads every metric from it, so the
leave-many-out, canary and white-box audits compute each number the same way.

The four bounds answer different questions:

- `ScoreAuditor.epsilon_clopper_pearson`: trials are independent (many runs, or canaries whose
  scores are independent given their inclusion); one-sided Clopper–Pearson bounds on TPR and FPR
  refute (ε, δ)-DP (Jagielski et al. 2020; Nasr et al. 2021). `dptrain.audit.epsilon` holds the
  arithmetic.
- `ScoreAuditor.epsilon_one_run`: m canaries included independently with probability ½ in one
  training run; guesses on the highest and lowest scores, abstaining on the rest (Steinke, Nasr &
  Jagielski 2023, "Privacy Auditing with One (1) Training Run", Theorem 5.2 / Algorithm 1 there).
  Valid without independence between the canaries' scores.
- `ScoreAuditor.epsilon_fdp_one_run`: the same one-run guesses tested against Gaussian trade-off
  curves instead of (ε, δ) (Mahloujifar, Melis & Chaudhuri 2024, "Auditing f-Differential Privacy
  in One Run", the recursion of `dptrain.audit.lower_bounds.gdp_one_run_refutes`): a rigorous lower
  bound on μ (no μ'-GDP with μ' below it), also valid without independence between the scores;
  its ε at δ is the ε of the refuted Gaussian curve, an (ε, δ) lower bound only if the curve is
  Gaussian, so it is reported beside the others, never as the headline.
- `ScoreAuditor.epsilon_gaussian_dp`: the largest μ whose Gaussian trade-off curve the
  Clopper–Pearson corners refute, converted to ε at δ (Dong et al. 2019, Cor. 2.13; the analysis of
  Nasr et al. 2023). A valid ε lower bound only under the assumption that the mechanism's trade-off
  curve is Gaussian (true for DP-SGD in the many-step limit); reported beside the others, never as
  the headline.

How the threshold (or the number of guesses) is chosen is paid for by a typed strategy:
`FixedThreshold` (chosen before the scores were seen), `PlannedThreshold` (the threshold the
planned mechanism makes best, also chosen before the scores were seen), `BestThresholdBonferroni`
(best of a grid, significance divided over the grid) or `SplitSample` (chosen on a random half,
evaluated on the other).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from dptrain.audit.audit_bounds import (
    AuditSummary,
    BestThresholdBonferroni,
    FDPOneRunBound,
    FixedThreshold,
    GaussianDPBound,
    OneRunBound,
    PlannedThreshold,
    RankBound,
    SplitSample,
    ThresholdStrategy,
)
from dptrain.audit.epsilon import (
    EpsilonLowerBound,
    candidate_thresholds,
    clopper_pearson_upper,
    counts_at_thresholds,
    epsilon_at_threshold,
    epsilon_lower_bound,
)
from dptrain.audit.lower_bounds import (  # noqa: F401 (re-exported: the auditor's arithmetic)
    MAX_EPSILON_SEARCH,
    PlannedScores,
    gdp_epsilon,
    gdp_mu,
    gdp_one_run_mu,
    gdp_one_run_refutes,
    one_run_epsilon,
    one_run_p_value,
)
from dptrain.audit.metrics import attack_metrics, check_confidence
from dptrain.errors import ConfigError


@dataclass(frozen=True)
class ScoreAuditor:
    """Metrics and ε lower bounds from the scores of members (in) and non-members (out).

    Higher scores must mean "more likely a member"; negate a loss before handing it over.

    Attributes:
        in_scores: ``(n_in,)`` float64 scores of members (the positive class).
        out_scores: ``(n_out,)`` float64 scores of non-members.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> auditor = ScoreAuditor(rng.normal(2.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000))
        >>> round(auditor.auroc(), 2)  # Φ(2 / √2)
        0.92
        >>> 0 < auditor.epsilon_clopper_pearson(delta=1e-5).epsilon < 4.4  # true ε of 2-GDP ≈ 4.4
        True
    """

    in_scores: np.ndarray = field(repr=False)
    out_scores: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("in_scores", "out_scores"):
            values = np.asarray(getattr(self, name), dtype=np.float64)
            if values.ndim != 1 or values.size == 0:
                raise ConfigError(
                    f"{name} must be a non-empty (n,) array, got shape {values.shape}"
                )
            if not np.all(np.isfinite(values)):
                raise ConfigError(f"{name} must be finite, got {np.sum(~np.isfinite(values))} not")
            object.__setattr__(self, name, values)

    @classmethod
    def from_membership(cls, scores: np.ndarray, is_member: np.ndarray) -> ScoreAuditor:
        """The auditor of flat ``(n,)`` scores and their ``(n,)`` bool membership."""
        values, members = np.asarray(scores, dtype=np.float64), np.asarray(is_member)
        if members.dtype != np.bool_ or members.shape != values.shape:
            raise ConfigError(
                f"is_member must be bool of the scores' shape {values.shape}, got "
                f"{members.dtype} {members.shape}"
            )
        return cls(values[members], values[~members])

    @property
    def scores(self) -> np.ndarray:
        """``(n_in + n_out,)`` the pooled scores, members first."""
        return np.concatenate((self.in_scores, self.out_scores))

    @property
    def is_member(self) -> np.ndarray:
        """``(n_in + n_out,)`` bool membership of `scores`."""
        return np.repeat([True, False], [self.in_scores.size, self.out_scores.size])

    def auroc(self) -> float:
        """Area under the ROC curve (ties count one half)."""
        return attack_metrics(self.scores, self.is_member).auc

    def tpr_at_fpr(self, fpr_targets: tuple[float, ...] = (0.001, 0.01)) -> np.ndarray:
        """``(n_targets,)`` TPR at each FPR in (0, 1), interpolated over tied scores."""
        return attack_metrics(self.scores, self.is_member, fpr_targets=fpr_targets).tpr_at_fpr

    def epsilon_clopper_pearson(
        self,
        *,
        delta: float,
        confidence: float = 0.95,
        strategy: ThresholdStrategy = BestThresholdBonferroni(),
    ) -> EpsilonLowerBound:
        """(ε, δ) lower bound for independent trials from Clopper–Pearson TPR and FPR bounds.

        Args:
            delta: δ of the claim being tested, in [0, 1).
            confidence: Probability that the bound holds.
            strategy: How the threshold is chosen and paid for.

        Returns:
            The bound (see `dptrain.audit.epsilon.epsilon_lower_bound`).

        Raises:
            ConfigError: For an unknown strategy or an option out of range.
        """
        scores, members = self.scores, self.is_member
        if isinstance(strategy, FixedThreshold):
            return epsilon_at_threshold(
                scores, members, threshold=strategy.threshold, delta=delta, confidence=confidence
            )
        if isinstance(strategy, PlannedThreshold):
            threshold = self._planned_threshold(strategy, delta=delta, confidence=confidence)
            bound = epsilon_at_threshold(
                scores, members, threshold=threshold, delta=delta, confidence=confidence
            )
            return dataclasses.replace(bound, correction="planned")
        if isinstance(strategy, BestThresholdBonferroni):
            return epsilon_lower_bound(
                scores,
                members,
                delta=delta,
                confidence=confidence,
                max_thresholds=strategy.max_candidates,
            )
        if isinstance(strategy, SplitSample):
            return epsilon_lower_bound(
                scores,
                members,
                delta=delta,
                confidence=confidence,
                correction="split",
                rng=np.random.default_rng(strategy.seed),
            )
        raise ConfigError(f"unknown threshold strategy {strategy!r}")

    def epsilon_gaussian_dp(
        self,
        *,
        delta: float,
        confidence: float = 0.95,
        strategy: ThresholdStrategy = BestThresholdBonferroni(),
    ) -> GaussianDPBound:
        """Lower bound on μ (μ-GDP) from Clopper–Pearson FPR/FNR bounds, and its ε at δ.

        μ-GDP forces FNR ≥ Φ(Φ⁻¹(1 − FPR) − μ) for every test, so upper bounds on FPR and FNR
        at a threshold refute every μ' < Φ⁻¹(1 − FPR_ub) − Φ⁻¹(FNR_ub) (Dong et al. 2019, Eq. 6).

        Args:
            delta: δ at which μ is converted to ε, in (0, 1).
            confidence: Probability that the μ bound holds.
            strategy: How the threshold is chosen and paid for.

        Returns:
            The μ bound and ε(μ, δ).

        Raises:
            ConfigError: For an unknown strategy or an option out of range.
        """
        check_confidence(confidence)
        if not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {delta}")
        alpha = 1 - confidence
        if isinstance(strategy, FixedThreshold | PlannedThreshold):
            thresholds = np.array(
                [
                    strategy.threshold
                    if isinstance(strategy, FixedThreshold)
                    else self._planned_threshold(strategy, delta=delta, confidence=confidence)
                ]
            )
            mu, fpr_ub, fnr_ub = self._gdp_mu(thresholds, alpha / 2)
        elif isinstance(strategy, BestThresholdBonferroni):
            thresholds = candidate_thresholds(self.scores, self.is_member, strategy.max_candidates)
            mu, fpr_ub, fnr_ub = self._gdp_mu(thresholds, alpha / (2 * thresholds.size))
        elif isinstance(strategy, SplitSample):
            selection, held_out = self._split(strategy.seed)
            thresholds = candidate_thresholds(
                selection.scores, selection.is_member, BestThresholdBonferroni().max_candidates
            )
            chosen, _, _ = selection._gdp_mu(thresholds, alpha / 2)
            thresholds = thresholds[[int(np.argmax(chosen))]]
            mu, fpr_ub, fnr_ub = held_out._gdp_mu(thresholds, alpha / 2)
        else:
            raise ConfigError(f"unknown threshold strategy {strategy!r}")
        best = int(np.argmax(mu))
        best_mu = float(max(mu[best], 0.0))
        return GaussianDPBound(
            mu=best_mu,
            epsilon=gdp_epsilon(best_mu, delta),
            delta=delta,
            fpr_upper=float(fpr_ub[best]),
            fnr_upper=float(fnr_ub[best]),
            threshold=float(thresholds[best]),
            confidence=confidence,
            strategy=strategy,
        )

    def epsilon_one_run(
        self,
        *,
        delta: float,
        confidence: float = 0.95,
        strategy: ThresholdStrategy = BestThresholdBonferroni(max_candidates=16),
    ) -> OneRunBound:
        """Steinke et al. (2023) one-run ε lower bound from guesses on the extreme scores.

        The m canaries must have been included independently with probability ½ each. Guessing
        "in" for the k highest and "out" for the k lowest scores (here symmetric, k₊ = k₋ = k;
        or k₊ = r, k₋ = 0 for a `FixedThreshold`), r = k₊ + k₋ guesses with v correct refute
        (ε, δ)-DP when P[v correct | (ε, δ)-DP] ≤ 1 − confidence (`one_run_p_value`).

        Args:
            delta: δ of the claim being tested, in [0, 1).
            confidence: Probability that the bound holds.
            strategy: `FixedThreshold` (its ``num_guesses`` highest scores guessed in),
                `BestThresholdBonferroni` (best of up to ``max_candidates`` k, geometric from 1
                to m/2, significance divided over them) or `SplitSample` (k chosen on half of
                the canaries, evaluated on the other half). `PlannedThreshold` is refused: the
                one-run bound guesses by rank, not by threshold.

        Returns:
            The bound with its guess counts.

        Raises:
            ConfigError: For an unknown strategy or an option out of range.
        """
        check_confidence(confidence)
        if not 0 <= delta < 1:
            raise ConfigError(f"delta must be in [0, 1), got {delta}")
        return self._by_rank(
            ScoreAuditor._one_run_at, strategy=strategy, delta=delta, alpha=1 - confidence
        )

    def epsilon_fdp_one_run(
        self,
        *,
        delta: float,
        confidence: float = 0.95,
        strategy: ThresholdStrategy = BestThresholdBonferroni(max_candidates=16),
    ) -> FDPOneRunBound:
        """Mahloujifar et al. (2024) one-run lower bound on μ-GDP, and its ε at δ.

        The guesses of `epsilon_one_run` (the k highest scores "in", the k lowest "out") tested
        against the Gaussian trade-off curve G_μ rather than (ε, δ)-DP
        (`dptrain.audit.lower_bounds.gdp_one_run_mu`). The m canaries must have been included
        independently with probability ½ each; the scores need not be independent.

        Args:
            delta: δ at which μ is converted to ε, in (0, 1).
            confidence: Probability that the μ bound holds.
            strategy: As for `epsilon_one_run`: `FixedThreshold` (its ``num_guesses`` highest
                scores guessed in), `BestThresholdBonferroni` (best of up to
                ``max_candidates`` k, significance divided over them) or `SplitSample`;
                `PlannedThreshold` is refused.

        Returns:
            The μ bound with its guess counts and ε(μ, δ).

        Raises:
            ConfigError: For an unknown strategy or an option out of range.
        """
        check_confidence(confidence)
        if not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {delta}")
        return self._by_rank(
            ScoreAuditor._fdp_one_run_at, strategy=strategy, delta=delta, alpha=1 - confidence
        )

    def summary(
        self,
        *,
        delta: float,
        confidence: float = 0.95,
        fpr_targets: tuple[float, ...] = (0.001, 0.01),
        clopper_pearson_strategy: ThresholdStrategy = BestThresholdBonferroni(),
    ) -> AuditSummary:
        """AUROC, TPR at the targets and the four bounds.

        The one-run (both analyses) and Gaussian-DP bounds use their default strategies,
        Clopper–Pearson uses ``clopper_pearson_strategy``. Each bound holds at ``confidence`` on
        its own.
        """
        metrics = attack_metrics(self.scores, self.is_member, fpr_targets=fpr_targets)
        return AuditSummary(
            auroc=metrics.auc,
            fpr_targets=metrics.fpr_targets,
            tpr_at_fpr=metrics.tpr_at_fpr,
            clopper_pearson=self.epsilon_clopper_pearson(
                delta=delta, confidence=confidence, strategy=clopper_pearson_strategy
            ),
            one_run=self.epsilon_one_run(delta=delta, confidence=confidence),
            fdp_one_run=self.epsilon_fdp_one_run(delta=max(delta, 1e-12), confidence=confidence),
            gaussian_dp=self.epsilon_gaussian_dp(delta=max(delta, 1e-12), confidence=confidence),
            num_in=self.in_scores.size,
            num_out=self.out_scores.size,
        )

    def _planned_threshold(
        self, strategy: PlannedThreshold, *, delta: float, confidence: float
    ) -> float:
        """The plan's best threshold for these class sizes (the sizes, not the scores)."""
        return strategy.threshold(
            n_in=self.in_scores.size,
            n_out=self.out_scores.size,
            delta=delta,
            confidence=confidence,
        )

    def _gdp_mu(
        self, thresholds: np.ndarray, significance: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """μ refuted at each threshold (either direction), with the FPR and FNR upper bounds."""
        tp, fp = counts_at_thresholds(self.scores, self.is_member, thresholds)
        n_in, n_out = self.in_scores.size, self.out_scores.size
        fpr_ub = clopper_pearson_upper(fp, n_out, confidence=1 - significance)
        fnr_ub = clopper_pearson_upper(n_in - tp, n_in, confidence=1 - significance)
        # Reversed test (member if score < threshold): the bound holds with D and D' swapped.
        tnr_ub = clopper_pearson_upper(n_out - fp, n_out, confidence=1 - significance)
        tpr_ub = clopper_pearson_upper(tp, n_in, confidence=1 - significance)
        forward = norm.isf(fpr_ub) - norm.ppf(fnr_ub)
        reverse = norm.isf(tpr_ub) - norm.ppf(tnr_ub)
        return np.maximum(forward, reverse), fpr_ub, fnr_ub

    def _by_rank(
        self,
        bound_at: Callable[..., RankBound],
        *,
        strategy: ThresholdStrategy,
        delta: float,
        alpha: float,
    ) -> RankBound:
        """A one-run bound (``bound_at``, over (k₊, k₋) guess counts) under a strategy."""
        if isinstance(strategy, FixedThreshold):
            if not 1 <= strategy.num_guesses <= self.scores.size:
                raise ConfigError(
                    f"num_guesses must be in [1, {self.scores.size}], got {strategy.num_guesses}"
                )
            return bound_at(self, [(strategy.num_guesses, 0)], delta=delta, alpha=alpha)
        if isinstance(strategy, BestThresholdBonferroni):
            grid = _guess_grid(self.scores.size, strategy.max_candidates)
            return bound_at(self, grid, delta=delta, alpha=alpha)
        if isinstance(strategy, SplitSample):
            selection, held_out = self._split(strategy.seed)
            grid = _guess_grid(selection.scores.size, BestThresholdBonferroni().max_candidates)
            chosen = bound_at(selection, grid, delta=delta, alpha=alpha, correct=False)
            fraction = held_out.scores.size / selection.scores.size
            k = max(1, round(chosen.num_guesses_in * fraction))
            return bound_at(held_out, [(k, k)], delta=delta, alpha=alpha)
        if isinstance(strategy, PlannedThreshold):
            raise ConfigError(
                "the one-run bound guesses by rank: use FixedThreshold(num_guesses=...) or "
                "BestThresholdBonferroni, not PlannedThreshold"
            )
        raise ConfigError(f"unknown threshold strategy {strategy!r}")

    def _one_run_at(
        self,
        guesses: list[tuple[int, int]],
        *,
        delta: float,
        alpha: float,
        correct: bool = True,
    ) -> OneRunBound:
        """The best one-run bound over (k₊, k₋) guess counts, Bonferroni-corrected if asked."""
        m = self.scores.size
        significance = alpha / len(guesses) if correct else alpha
        best: OneRunBound | None = None
        for (k_in, k_out), v in zip(guesses, self._num_correct(guesses)):
            r = k_in + k_out
            v = int(v)
            bound = OneRunBound(
                epsilon=one_run_epsilon(
                    num_canaries=m, num_guesses=r, num_correct=v, delta=delta, alpha=significance
                ),
                num_canaries=m,
                num_guesses=r,
                num_guesses_in=k_in,
                num_guesses_out=k_out,
                num_correct=v,
                ceiling=one_run_epsilon(
                    num_canaries=m, num_guesses=r, num_correct=r, delta=delta, alpha=significance
                ),
                delta=delta,
                confidence=1 - alpha,
                num_candidates=len(guesses) if correct else 1,
            )
            if best is None or bound.epsilon > best.epsilon:
                best = bound
        assert best is not None
        return best

    def _fdp_one_run_at(
        self,
        guesses: list[tuple[int, int]],
        *,
        delta: float,
        alpha: float,
        correct: bool = True,
    ) -> FDPOneRunBound:
        """The best μ-GDP bound over (k₊, k₋) guess counts, Bonferroni-corrected if asked."""
        m = self.scores.size
        significance = alpha / len(guesses) if correct else alpha
        num_guesses = np.array([k_in + k_out for k_in, k_out in guesses])
        num_correct = self._num_correct(guesses)
        # One vectorised search for every candidate and, in the same call, their ceilings.
        mus = gdp_one_run_mu(
            num_canaries=m,
            num_guesses=np.concatenate((num_guesses, num_guesses)),
            num_correct=np.concatenate((num_correct, num_guesses)),
            alpha=significance,
        )
        best = int(np.argmax(mus[: len(guesses)]))
        mu = float(mus[best])
        return FDPOneRunBound(
            mu=mu,
            epsilon=gdp_epsilon(mu, delta),
            num_canaries=m,
            num_guesses=int(num_guesses[best]),
            num_guesses_in=guesses[best][0],
            num_guesses_out=guesses[best][1],
            num_correct=int(num_correct[best]),
            ceiling_mu=float(mus[len(guesses) + best]),
            delta=delta,
            confidence=1 - alpha,
            num_candidates=len(guesses) if correct else 1,
        )

    def _num_correct(self, guesses: list[tuple[int, int]]) -> np.ndarray:
        """``(n_candidates,)`` correct guesses: "in" on the k₊ highest, "out" on the k₋ lowest."""
        members = self.is_member[np.argsort(self.scores, kind="stable")]  # ascending score
        in_from_top = np.concatenate(([0], np.cumsum(members[::-1])))
        out_from_bottom = np.concatenate(([0], np.cumsum(~members)))
        return np.array(
            [in_from_top[k_in] + out_from_bottom[k_out] for k_in, k_out in guesses],
            dtype=np.int64,
        )

    def _split(self, seed: int) -> tuple[ScoreAuditor, ScoreAuditor]:
        """Two auditors over random halves of each class (selection, evaluation)."""
        rng = np.random.default_rng(seed)
        halves: list[list[np.ndarray]] = [[], []]
        for values in (self.in_scores, self.out_scores):
            if values.size < 2:
                raise ConfigError(f"a split needs >= 2 scores per class, got {values.size}")
            shuffled = rng.permutation(values)
            halves[0].append(shuffled[: values.size // 2])
            halves[1].append(shuffled[values.size // 2 :])
        return ScoreAuditor(*halves[0]), ScoreAuditor(*halves[1])


def _guess_grid(m: int, max_candidates: int) -> list[tuple[int, int]]:
    """Symmetric guess counts (k, k), k geometric from 1 to m/2, at most ``max_candidates``."""
    top = max(m // 2, 1)
    ks = np.unique(np.round(np.geomspace(1, top, max_candidates)).astype(np.int64))
    return [(int(k), int(k)) for k in ks]
