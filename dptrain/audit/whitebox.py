"""White-box audit of DP-SGD with Dirac gradient canaries (Nasr et al. 2023, "Tight Auditing").

m gradient canaries, each a per-sample gradient that is zero except for ``gradient_norm`` · C on
one parameter coordinate of its own, are included in the training set independently with
probability ½. On every step each included canary is Poisson-sampled at the data loader's rate and
its gradient row is handed to the real Opacus optimiser beside the batch's rows, so Opacus clips it
and noises the sum exactly as it does for records (`dptrain.audit.gradient_canaries`). The
auditor sees every step's noisy gradient sum (all intermediate updates are released by DP-SGD) and
knows the batch's own clipped sum, so each step leaves y = (noisy sum − batch sum) / C on a
canary's coordinate: N(1, σ²) on the steps where the canary was sampled, N(0, σ²) otherwise, if the
implementation is correct.

Because each canary has its own coordinate, the canaries' noise is independent and their scores
are m independent trials of the full T-step mechanism: the Clopper–Pearson bound applies, and is
the headline (`WhiteboxAuditResult.epsilon_lower_bound`). Two scores make three tests, with the
significance split over them (3/5, 1/5, 1/5; a union bound): the likelihood ratio of the T steps
under the planned (σ, q) (Neyman–Pearson optimal for a correct implementation) at a planned
threshold, the same score at the best of a grid of thresholds (Bonferroni-corrected: a broken
implementation moves the best threshold away from the plan, e.g. a sampler drawing more than q),
and the sum of squared step-to-step changes, which exposes noise that repeats across steps.

The planned threshold is not searched: σ, q and T are fixed before training, so the score's
exact distributions for included and excluded canaries follow from the plan
(`dptrain.audit.lower_bounds.subsampled_gaussian_scores`), and so does the threshold with the
largest Clopper–Pearson bound at the expected counts (`dptrain.audit.auditor.PlannedThreshold`).
No audited score enters the choice, so no multiple-testing correction is owed. The same
computation gives the ceiling, ``epsilon_reachable``: what the optimal test reaches (about half
the time) with this many canaries. It is far below the accountant's ε under subsampling, and
grows only with more canaries; one model holds at most one canary per coordinate, so ``runs``
trains several models with fresh canaries and pools them (``runs="auto"``: as many as the plan
says reach half the accountant's ε).

The canaries enter `dptrain.training.fit.fit` itself, through its ``private_parts_hook``, so the
audited model trains on the one training path. Ghost clipping never
materialises per-sample gradients, so a ghost recipe is audited in the model's first verified
per-sample mode (hooks for the MLP): the same clipping and noise arithmetic in Opacus' optimiser.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from dptrain.audit.auditor import AuditSummary, PlannedThreshold, ScoreAuditor
from dptrain.audit.epsilon import EpsilonLowerBound
from dptrain.audit.gradient_canaries import (
    PER_SAMPLE_MODES,
    CanaryState,
    CanaryTrace,
    attach_dirac_canaries,
)
from dptrain.audit.lower_bounds import PlannedScores, subsampled_gaussian_scores
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import PrivacyConfig, PrivacySpend
from dptrain.privacy.engine import TrainingParts
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit

DEFAULT_NUM_CANARIES = 4000
# Shares of the significance: likelihood ratio at the planned threshold, the same score at the
# best of a grid, step differences at the best of a grid.
PLANNED_SHARE, SEARCHED_SHARE, STEP_DIFFERENCE_SHARE = 0.6, 0.2, 0.2
# runs="auto" trains at most this many models.
MAX_AUTO_RUNS = 64


@dataclass(frozen=True)
class WhiteboxAuditResult:
    """The white-box audit of a training recipe (one or several runs), against the accountant's ε.

    Attributes:
        epsilon_lower_bound: The headline: the largest Clopper–Pearson bound of three tests
            (the likelihood ratio at its planned threshold with 3/5 of the significance; the
            likelihood ratio and the step differences each at the best of a grid,
            Bonferroni-corrected, with 1/5), so it holds with ``confidence``.
        epsilon_reachable: The likelihood ratio's bound at the expected counts of its planned
            threshold under a correct implementation: what these canaries reach about half the
            time, and the most a correct run's audit can be expected to show.
        epsilon_gaussian_dp: The larger Gaussian-DP bound of the two scores (assumes a Gaussian
            trade-off curve; Nasr et al. 2023's estimate).
        epsilon_one_run: The larger Steinke et al. one-run bound of the two scores.
        mu_fdp_one_run: The larger Mahloujifar et al. one-run μ-GDP bound of the two scores
            (rigorous; the two tests share the significance as the headline's do).
        epsilon_fdp_one_run: ε at δ of that μ (an (ε, δ) bound only if the trade-off curve is
            Gaussian, so not part of the headline).
        epsilon_accountant: The ε the accountant claims for the run.
        delta: δ of every bound and of the claim.
        confidence: Confidence level of the bounds together.
        likelihood_ratio: Metrics and bounds of the likelihood-ratio score.
        likelihood_ratio_searched: The likelihood ratio's bound at the best of a grid.
        step_difference: Metrics and bounds of the step-difference score.
        num_canaries: m, over all runs.
        num_runs: Training runs (models) whose canaries are pooled.
        runs_for_half_epsilon: The fewest runs of this size whose ``epsilon_reachable`` is at
            least half the accountant's ε (planned before training; None beyond 64 runs).
        num_steps: T, noisy steps.
        noise_multiplier: σ the plan calibrated.
        sample_rate: q the plan (and the accountant) assume.
        gradient_norm: Each canary's gradient norm before clipping, in units of C.
        in_step_mean: Mean projection on steps where a canary was sampled (1 if correct).
        in_step_std: Its standard deviation (σ if correct).
        out_step_mean: Mean projection on the other steps (0 if correct).
        out_step_std: Its standard deviation (σ if correct).
        grad_sample_mode: The Opacus mode the audited run used.
        trace: The per-step projections behind the scores.
    """

    epsilon_lower_bound: float
    epsilon_reachable: float
    epsilon_gaussian_dp: float
    epsilon_one_run: float
    mu_fdp_one_run: float
    epsilon_fdp_one_run: float
    epsilon_accountant: float
    delta: float
    confidence: float
    likelihood_ratio: AuditSummary
    likelihood_ratio_searched: EpsilonLowerBound
    step_difference: AuditSummary
    num_canaries: int
    num_runs: int
    runs_for_half_epsilon: int | None
    num_steps: int
    noise_multiplier: float
    sample_rate: float
    gradient_norm: float
    in_step_mean: float
    in_step_std: float
    out_step_mean: float
    out_step_std: float
    grad_sample_mode: str
    trace: CanaryTrace = field(repr=False)

    @property
    def violates_claim(self) -> bool:
        """Whether the audit refutes the accountant's ε (at the confidence)."""
        return self.epsilon_lower_bound > self.epsilon_accountant


def whitebox_audit(
    *,
    cohort: Cohort,
    model_factory: ModelFactory,
    privacy: PrivacyConfig,
    train: TrainConfig,
    seed: int,
    num_canaries: int | None = None,
    runs: int | Literal["auto"] = 1,
    gradient_norm: float = 10.0,
    confidence: float = 0.95,
    auto_target: float = 0.5,
    tamper: Callable[[TrainingParts], None] | None = None,
) -> WhiteboxAuditResult:
    """Trains models with `fit` and Dirac gradient canaries, and bounds ε from the updates.

    Args:
        cohort: The training cohort (the run's training split).
        model_factory: The model recipe.
        privacy: The privacy recipe (must be private); a ghost-clipping mode is audited in the
            model's first verified per-sample mode. Record- and patient-level runs both work: a
            canary is a one-record unit, sampled at the loader's rate.
        train: The training recipe.
        seed: Seed of the first run and its canaries; later runs' seeds derive from it.
        num_canaries: m per run; None takes min(4000, the parameter coordinates).
        runs: Training runs whose canaries are pooled (independent trials across runs too), or
            ``"auto"``: after the first run, as many as the plan says reach ``auto_target`` × the
            accountant's ε at the expected counts (at most 64).
        gradient_norm: Canary gradient norm before clipping, in units of C; above 1 so that a
            run that forgets to clip adds more than C.
        confidence: Confidence of the bounds.
        auto_target: The fraction of the accountant's ε that ``runs="auto"`` plans to reach.
        tamper: Test hook: called on the private training parts before the canaries are
            attached (e.g. to break the optimiser in a known way). Never used in real audits.

    Returns:
        The bounds against the accountant's ε, and the pooled trace behind them.

    Raises:
        ConfigError: If ``privacy`` is not private, the model has no per-sample mode or
            ``runs`` is neither a positive integer nor ``"auto"``.
    """
    if not privacy.private:
        raise ConfigError("the white-box audit needs privacy.mode=dp (it audits the DP optimiser)")
    if runs != "auto" and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 1):
        raise ConfigError(f"white-box runs must be a positive integer or 'auto', got {runs!r}")
    mode = _per_sample_mode(model_factory, privacy)
    audited = dataclasses.replace(privacy, grad_sample_mode=mode)
    traces: list[CanaryTrace] = []
    planned_runs = 1 if runs == "auto" else runs
    while len(traces) < planned_runs:
        trace, spend = _run_with_canaries(
            cohort=cohort,
            model_factory=model_factory,
            privacy=audited,
            train=train,
            seed=seed,
            run=len(traces),
            num_canaries=num_canaries,
            gradient_norm=gradient_norm,
            tamper=tamper,
        )
        traces.append(trace)
        if runs == "auto" and len(traces) == 1:
            planned_runs = (
                runs_to_reach(
                    _planned(spend.noise_multiplier, spend.sample_rate, trace.projections.shape[1]),
                    canaries_per_run=trace.included.size,
                    target_epsilon=auto_target * spend.epsilon,
                    delta=spend.delta,
                    confidence=_share(PLANNED_SHARE, confidence),
                )
                or MAX_AUTO_RUNS
            )
    return audit_trace(
        CanaryTrace.pooled(traces),
        noise_multiplier=spend.noise_multiplier,
        sample_rate=spend.sample_rate,
        epsilon_accountant=spend.epsilon,
        delta=spend.delta,
        confidence=confidence,
        gradient_norm=gradient_norm,
        grad_sample_mode=mode,
        canaries_per_run=traces[0].included.size,
    )


def _run_with_canaries(
    *,
    cohort: Cohort,
    model_factory: ModelFactory,
    privacy: PrivacyConfig,
    train: TrainConfig,
    seed: int,
    run: int,
    num_canaries: int | None,
    gradient_norm: float,
    tamper: Callable[[TrainingParts], None] | None,
) -> tuple[CanaryTrace, PrivacySpend]:
    """One `fit` with fresh canaries: run 0 uses ``seed``, run r > 0 a seed derived from it."""
    rng = np.random.default_rng([seed, 0x57B0] if run == 0 else [seed, 0x57B0, run])
    run_seed = seed if run == 0 else int(np.random.SeedSequence([seed, run]).generate_state(1)[0])
    attached: list[TrainingParts] = []

    def with_canaries(private: TrainingParts) -> None:
        if tamper is not None:
            tamper(private)
        n_coordinates = sum(p.numel() for p in private.optimizer.params)
        count = num_canaries or min(DEFAULT_NUM_CANARIES, n_coordinates)
        attach_dirac_canaries(private, num_canaries=count, gradient_norm=gradient_norm, rng=rng)
        attached.append(private)

    trained = fit(
        cohort=cohort,
        model_factory=model_factory,
        privacy=privacy,
        train=train,
        seed=run_seed,
        private_parts_hook=with_canaries,
    )
    state: CanaryState = attached[0].optimizer._canaries
    return state.trace(), trained.privacy


def runs_to_reach(
    planned: PlannedScores,
    *,
    canaries_per_run: int,
    target_epsilon: float,
    delta: float,
    confidence: float,
    max_runs: int = MAX_AUTO_RUNS,
) -> int | None:
    """The fewest runs whose pooled canaries reach ``target_epsilon`` at the expected counts.

    Args:
        planned: The likelihood-ratio score's tails under the plan.
        canaries_per_run: m per run (half expected in, half out).
        target_epsilon: The bound to reach.
        delta: δ of the bound.
        confidence: Confidence of the likelihood-ratio bound.
        max_runs: Runs searched.

    Returns:
        The number of runs, or None if ``max_runs`` runs do not reach the target.
    """
    for runs in range(1, max_runs + 1):
        m = runs * canaries_per_run
        _, reachable = planned.best_threshold(
            n_in=m // 2, n_out=m - m // 2, delta=delta, confidence=confidence
        )
        if reachable >= target_epsilon:
            return runs
    return None


def audit_trace(
    trace: CanaryTrace,
    *,
    noise_multiplier: float,
    sample_rate: float,
    epsilon_accountant: float,
    delta: float,
    confidence: float = 0.95,
    gradient_norm: float = 10.0,
    grad_sample_mode: str = "hooks",
    canaries_per_run: int | None = None,
) -> WhiteboxAuditResult:
    """The bounds of a canary trace, scored under the planned σ and q.

    The likelihood ratio is bounded at the threshold the plan (σ, q, T and the class sizes)
    makes best, chosen before its scores are looked at, and at the best of a grid; the step
    differences at the best of a grid; searches are paid for with a Bonferroni correction.

    Args:
        trace: Per-step projections of the canaries (of one run or pooled runs).
        noise_multiplier: The planned σ (the likelihood ratio assumes it).
        sample_rate: The planned q (likewise).
        epsilon_accountant: The claim audited.
        delta: δ of the claim.
        confidence: Confidence of the bounds together (split 3/5, 1/5, 1/5 over the tests).
        gradient_norm: Recorded in the result.
        grad_sample_mode: Recorded in the result.
        canaries_per_run: m per run, for ``runs_for_half_epsilon``; None: all of the trace.

    Returns:
        The audit result.
    """
    num_steps = int(trace.projections.shape[1])
    planned = _planned(noise_multiplier, sample_rate, num_steps)
    ratio_confidence = _share(PLANNED_SHARE, confidence)
    ratio = ScoreAuditor.from_membership(
        likelihood_ratio_scores(
            trace.projections, noise_multiplier=noise_multiplier, sample_rate=sample_rate
        ),
        trace.included,
    )
    summaries = [
        ratio.summary(
            delta=delta,
            confidence=ratio_confidence,
            clopper_pearson_strategy=PlannedThreshold(planned),
        ),
        ScoreAuditor.from_membership(
            step_difference_scores(trace.projections), trace.included
        ).summary(delta=delta, confidence=_share(STEP_DIFFERENCE_SHARE, confidence)),
    ]
    searched = ratio.epsilon_clopper_pearson(
        delta=delta, confidence=_share(SEARCHED_SHARE, confidence)
    )
    _, reachable = planned.best_threshold(
        n_in=ratio.in_scores.size,
        n_out=ratio.out_scores.size,
        delta=delta,
        confidence=ratio_confidence,
    )
    fdp_one_run = max((s.fdp_one_run for s in summaries), key=lambda bound: bound.mu)
    num_runs = 1 if trace.run is None else int(trace.run.max()) + 1
    inside = trace.projections[trace.sampled]
    outside = trace.projections[~trace.sampled]
    return WhiteboxAuditResult(
        epsilon_lower_bound=max(searched.epsilon, *(s.clopper_pearson.epsilon for s in summaries)),
        epsilon_reachable=reachable,
        epsilon_gaussian_dp=max(s.gaussian_dp.epsilon for s in summaries),
        epsilon_one_run=max(s.one_run.epsilon for s in summaries),
        mu_fdp_one_run=fdp_one_run.mu,
        epsilon_fdp_one_run=fdp_one_run.epsilon,
        epsilon_accountant=epsilon_accountant,
        delta=delta,
        confidence=confidence,
        likelihood_ratio=summaries[0],
        likelihood_ratio_searched=searched,
        step_difference=summaries[1],
        num_canaries=int(trace.included.size),
        num_runs=num_runs,
        runs_for_half_epsilon=runs_to_reach(
            planned,
            canaries_per_run=canaries_per_run or int(trace.included.size),
            target_epsilon=epsilon_accountant / 2,
            delta=delta,
            confidence=ratio_confidence,
        ),
        num_steps=num_steps,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        gradient_norm=gradient_norm,
        in_step_mean=float(inside.mean()) if inside.size else float("nan"),
        in_step_std=float(inside.std()) if inside.size > 1 else float("nan"),
        out_step_mean=float(outside.mean()),
        out_step_std=float(outside.std()),
        grad_sample_mode=grad_sample_mode,
        trace=trace,
    )


def _share(share: float, confidence: float) -> float:
    """The confidence of a test given ``share`` of the significance 1 − confidence."""
    return 1 - share * (1 - confidence)


@lru_cache(maxsize=16)
def _planned(noise_multiplier: float, sample_rate: float, steps: int) -> PlannedScores:
    """The likelihood-ratio score's tails under the plan (cached: every run shares the plan)."""
    return subsampled_gaussian_scores(
        noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps
    )


def likelihood_ratio_scores(
    projections: np.ndarray, *, noise_multiplier: float, sample_rate: float
) -> np.ndarray:
    """Log-likelihood ratio of each canary's T steps: sampled at rate q (shift 1) vs absent.

    Each step is N(1, σ²) with probability q and N(0, σ²) otherwise when the canary is in, and
    N(0, σ²) when it is out; log φ_σ(y − 1)/φ_σ(y) = (y − ½)/σ².

    Args:
        projections: ``(n_canaries, n_steps)`` projections in units of C.
        noise_multiplier: σ > 0.
        sample_rate: q in (0, 1].

    Returns:
        ``(n_canaries,)`` scores, higher = more likely in.

    Example:
        >>> scores = likelihood_ratio_scores(np.array([[1.0, 1.0], [0.0, 0.0]]),
        ...     noise_multiplier=1.0, sample_rate=1.0)
        >>> scores.tolist()  # (1 − ½) · 2 and (0 − ½) · 2
        [1.0, -1.0]
    """
    if not noise_multiplier > 0:
        raise ConfigError(f"noise_multiplier must be > 0, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
    log_ratio = (projections - 0.5) / noise_multiplier**2
    with np.errstate(divide="ignore"):
        per_step = np.logaddexp(np.log1p(-sample_rate), np.log(sample_rate) + log_ratio)
    return per_step.sum(axis=1)


def step_difference_scores(projections: np.ndarray) -> np.ndarray:
    """Sum of squared changes between consecutive steps: exposes noise that repeats across steps.

    With fresh noise every step the changes are N(·, 2σ²) in and out and this score barely
    separates them. Noise that repeats cancels in the differences, leaving exactly 0 for an absent
    canary and 1 each time a present canary enters or leaves the batch, so in-canaries score
    higher.

    Args:
        projections: ``(n_canaries, n_steps)`` projections in units of C.

    Returns:
        ``(n_canaries,)`` scores, higher = more likely in.

    Example:
        >>> step_difference_scores(np.array([[0.5, 1.5, 0.5], [0.5, 0.5, 0.5]])).tolist()
        [2.0, 0.0]
    """
    return (np.diff(projections, axis=1) ** 2).sum(axis=1)


def _per_sample_mode(model_factory: ModelFactory, privacy: PrivacyConfig) -> str:
    """The recipe's mode if it materialises per-sample gradients, else the model's first one."""
    from dptrain.models import resolve_grad_sample_mode

    mode = resolve_grad_sample_mode(model_factory, privacy.grad_sample_mode)
    if mode in PER_SAMPLE_MODES:
        return mode
    verified = getattr(model_factory, "grad_sample_modes", PER_SAMPLE_MODES)
    for candidate in verified:
        if candidate in PER_SAMPLE_MODES:
            return candidate
    raise ConfigError(
        f"the white-box audit needs a per-sample gradient mode {list(PER_SAMPLE_MODES)}; the "
        f"model is verified for {list(verified)}"
    )
