"""The typed threshold strategies of `dptrain.audit.auditor.ScoreAuditor` and its bound records.

A strategy says how the threshold (or the number of one-run guesses) was chosen, and so what the
choice costs: `FixedThreshold` and `PlannedThreshold` are fixed before the scores are seen (no
correction), `BestThresholdBonferroni` searches a grid (significance divided over it), and
`SplitSample` chooses on one half and evaluates on the other. The records hold each bound with
everything needed to read it; `AuditSummary` holds every number of one audit's scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from dptrain.audit.epsilon import EpsilonLowerBound
from dptrain.audit.lower_bounds import PlannedScores
from dptrain.audit.metrics import is_positive_int
from dptrain.errors import ConfigError


@dataclass(frozen=True)
class FixedThreshold:
    """Use one threshold (or number of guesses) fixed before the scores were seen: no correction.

    Attributes:
        threshold: Member if score ≥ threshold (Clopper–Pearson and Gaussian-DP bounds).
        num_guesses: For the one-run bound: guess "in" for this many highest scores.
    """

    threshold: float = 0.0
    num_guesses: int = 0


@dataclass(frozen=True)
class BestThresholdBonferroni:
    """Search up to ``max_candidates`` thresholds and split the significance over all of them.

    Attributes:
        max_candidates: Candidate thresholds (quantiles geometric in both tails, see
            `dptrain.audit.epsilon.candidate_thresholds`) or guess counts searched.
    """

    max_candidates: int = 64

    def __post_init__(self) -> None:
        if not is_positive_int(self.max_candidates):
            raise ConfigError(
                f"max_candidates must be a positive integer, got {self.max_candidates}"
            )


@dataclass(frozen=True)
class SplitSample:
    """Choose the threshold on a random half of each class, evaluate it on the other half.

    Attributes:
        seed: Seed of the split.
    """

    seed: int = 0


@dataclass(frozen=True)
class PlannedThreshold:
    """Use the threshold that is best under the planned mechanism: fixed in advance, no correction.

    When the mechanism is planned (DP-SGD's σ, q and T are known before training), the scores'
    distributions for members and non-members follow from the plan alone, and so does the
    threshold whose Clopper–Pearson bound is largest at the expected counts
    (`PlannedScores.best_threshold`). The choice depends on the plan and the class sizes, never
    on the audited scores, so it is a fixed threshold: the bound needs no multiple-testing
    correction and holds at its confidence whatever the implementation really does (a broken one
    only moves the counts, which the bound then reports).

    Attributes:
        planned: The score's tails under the planned mechanism, e.g.
            `dptrain.audit.lower_bounds.subsampled_gaussian_scores`.
    """

    planned: PlannedScores = field(repr=False)

    def threshold(self, *, n_in: int, n_out: int, delta: float, confidence: float) -> float:
        """The planned threshold for n_in members and n_out non-members."""
        return self.planned.best_threshold(
            n_in=n_in, n_out=n_out, delta=delta, confidence=confidence
        )[0]


ThresholdStrategy = FixedThreshold | PlannedThreshold | BestThresholdBonferroni | SplitSample


@dataclass(frozen=True)
class GaussianDPBound:
    """A lower bound on the μ of μ-GDP, and the ε at δ it implies (under the GDP assumption).

    Attributes:
        mu: The largest μ refuted: no μ'-GDP mechanism with μ' < mu gives these counts (at the
            confidence).
        epsilon: ε at ``delta`` of mu-GDP (0 when mu is 0).
        delta: The δ of the conversion.
        fpr_upper: Clopper–Pearson upper bound on the FPR at the best threshold.
        fnr_upper: Clopper–Pearson upper bound on the FNR at the best threshold.
        threshold: The best threshold.
        confidence: Confidence level.
        strategy: How the threshold was chosen.
    """

    mu: float
    epsilon: float
    delta: float
    fpr_upper: float
    fnr_upper: float
    threshold: float
    confidence: float
    strategy: ThresholdStrategy


@dataclass(frozen=True)
class OneRunBound:
    """Steinke et al. (2023) one-run bound: guesses on the extreme scores, abstentions between.

    Attributes:
        epsilon: Largest ε such that P[≥ num_correct correct | (ε, δ)-DP] ≤ 1 − confidence (after
            the strategy's correction); 0 when nothing is refuted.
        num_canaries: m, canaries scored (each included independently with probability ½).
        num_guesses: r, canaries guessed (the top ``num_guesses_in`` "in", the bottom
            ``num_guesses_out`` "out"); m − r abstain.
        num_guesses_in: Highest-scoring canaries guessed "in".
        num_guesses_out: Lowest-scoring canaries guessed "out".
        num_correct: v, correct guesses.
        ceiling: The bound r correct guesses out of r would give (the most this audit can show).
        delta: δ of the refuted claim.
        confidence: Confidence level.
        num_candidates: Guess counts searched (the Bonferroni factor; 1 for a fixed choice).
    """

    epsilon: float
    num_canaries: int
    num_guesses: int
    num_guesses_in: int
    num_guesses_out: int
    num_correct: int
    ceiling: float
    delta: float
    confidence: float
    num_candidates: int

    @property
    def num_abstentions(self) -> int:
        """Canaries the auditor declined to guess (m − r)."""
        return self.num_canaries - self.num_guesses


@dataclass(frozen=True)
class FDPOneRunBound:
    """Mahloujifar et al. (2024) one-run bound on μ-GDP from the guesses of `OneRunBound`.

    Attributes:
        mu: Largest μ such that no μ'-GDP mechanism with μ' < mu gives num_correct or more
            correct guesses with probability above 1 − confidence (after the strategy's
            correction); 0 when nothing is refuted. Rigorous in one run.
        epsilon: ε at ``delta`` of mu-GDP: the (ε, δ) of the refuted Gaussian curve, an (ε, δ)
            lower bound only if the mechanism's trade-off curve is Gaussian.
        num_canaries: m, canaries scored (each included independently with probability ½).
        num_guesses: r, canaries guessed; m − r abstain.
        num_guesses_in: Highest-scoring canaries guessed "in".
        num_guesses_out: Lowest-scoring canaries guessed "out".
        num_correct: v, correct guesses.
        ceiling_mu: The μ bound r correct guesses out of r would give (the most this audit can
            show).
        delta: δ of the conversion to ε.
        confidence: Confidence level.
        num_candidates: Guess counts searched (the Bonferroni factor; 1 for a fixed choice).
    """

    mu: float
    epsilon: float
    num_canaries: int
    num_guesses: int
    num_guesses_in: int
    num_guesses_out: int
    num_correct: int
    ceiling_mu: float
    delta: float
    confidence: float
    num_candidates: int

    @property
    def num_abstentions(self) -> int:
        """Canaries the auditor declined to guess (m − r)."""
        return self.num_canaries - self.num_guesses


RankBound = TypeVar("RankBound", OneRunBound, FDPOneRunBound)


@dataclass(frozen=True)
class AuditSummary:
    """Every number of one audit's scores, computed once.

    Attributes:
        auroc: ROC AUC (ties count one half).
        fpr_targets: FPRs at which the TPR is reported.
        tpr_at_fpr: TPR at each target, interpolated over tied scores.
        clopper_pearson: The (ε, δ) bound for independent trials.
        one_run: The Steinke et al. one-run bound.
        fdp_one_run: The Mahloujifar et al. one-run μ-GDP bound and its ε.
        gaussian_dp: The μ-GDP bound and its ε.
        num_in: Member scores.
        num_out: Non-member scores.
    """

    auroc: float
    fpr_targets: np.ndarray  # (n_targets,) float64
    tpr_at_fpr: np.ndarray  # (n_targets,) float64
    clopper_pearson: EpsilonLowerBound
    one_run: OneRunBound
    fdp_one_run: FDPOneRunBound
    gaussian_dp: GaussianDPBound
    num_in: int
    num_out: int
