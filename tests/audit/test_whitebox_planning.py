"""The planned white-box test: exact score tails, planned threshold, ceiling, pooled runs."""

import numpy as np
import pytest
from scipy.stats import norm

from dptrain.audit.auditor import PlannedThreshold, ScoreAuditor
from dptrain.audit.epsilon import epsilon_at_threshold
from dptrain.audit.gradient_canaries import CanaryTrace
from dptrain.audit.lower_bounds import subsampled_gaussian_scores
from dptrain.audit.whitebox import (
    PLANNED_SHARE,
    audit_trace,
    likelihood_ratio_scores,
    runs_to_reach,
    whitebox_audit,
)
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig, epsilon_spent
from dptrain.training.config import TrainConfig

DELTA = 1e-5


def simulated_trace(seed: int, *, m: int, steps: int, sigma: float, q: float) -> CanaryTrace:
    """A correct DP-SGD's canary trace: N(1, σ²) on sampled steps, N(0, σ²) elsewhere."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    sampled = included[:, None] & (rng.random((m, steps)) < q)
    return CanaryTrace(
        projections=sampled + sigma * rng.standard_normal((m, steps)),
        sampled=sampled,
        included=included,
        coordinates=np.arange(m),
        sample_rate=q,
    )


def test_planned_tails_match_a_simulation_of_the_subsampled_gaussian():
    sigma, q, steps = 1.5, 0.2, 30
    planned = subsampled_gaussian_scores(noise_multiplier=sigma, sample_rate=q, steps=steps)
    trace = simulated_trace(1, m=100_000, steps=steps, sigma=sigma, q=q)
    scores = likelihood_ratio_scores(trace.projections, noise_multiplier=sigma, sample_rate=q)
    members, others = scores[trace.included], scores[~trace.included]
    for level in (-1.0, 0.0, 1.0, 2.0):
        i = int(np.searchsorted(planned.thresholds, level))
        threshold = planned.thresholds[i]
        # Binomial standard errors at n = 50,000 are at most 0.0023.
        assert planned.tpr[i] == pytest.approx((members >= threshold).mean(), abs=0.01)
        assert planned.fpr[i] == pytest.approx((others >= threshold).mean(), abs=0.01)
    assert np.all(np.diff(planned.thresholds) > 0)
    assert np.all(np.diff(planned.fpr) <= 0) and np.all(planned.tpr >= planned.fpr)


def test_without_subsampling_the_score_is_gaussian():
    # q = 1: the score is (Σy − T/2)/σ², N(±T/(2σ²), T/σ²) for members and non-members.
    sigma, steps = 2.0, 16
    planned = subsampled_gaussian_scores(noise_multiplier=sigma, sample_rate=1.0, steps=steps)
    mean, sd = steps / (2 * sigma**2), np.sqrt(steps) / sigma
    np.testing.assert_allclose(planned.tpr, norm.sf(planned.thresholds, mean, sd), atol=2e-3)
    np.testing.assert_allclose(planned.fpr, norm.sf(planned.thresholds, -mean, sd), atol=2e-3)


def test_bad_plans_are_refused():
    with pytest.raises(ConfigError, match=r"sample_rate must be in \(0, 1\], got 0"):
        subsampled_gaussian_scores(noise_multiplier=1.0, sample_rate=0.0, steps=1)
    with pytest.raises(ConfigError, match=r"steps must be a positive integer, got 0"):
        subsampled_gaussian_scores(noise_multiplier=1.0, sample_rate=0.5, steps=0)


def test_the_ceiling_grows_with_canaries_and_stays_below_the_accountants_epsilon():
    sigma, q, steps = 1.2, 0.1, 100
    planned = subsampled_gaussian_scores(noise_multiplier=sigma, sample_rate=q, steps=steps)
    claim = epsilon_spent(
        noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA, accountant="prv"
    )
    reachable = [
        planned.best_threshold(n_in=n, n_out=n, delta=DELTA, confidence=0.95)[1]
        for n in (500, 5_000, 50_000, 500_000)
    ]
    assert np.all(np.diff(reachable) > 0)
    assert 0 < reachable[0] and reachable[-1] < claim
    target = reachable[1]
    assert runs_to_reach(
        planned, canaries_per_run=1_000, target_epsilon=target, delta=DELTA, confidence=0.95
    ) == pytest.approx(10, abs=1)
    assert (
        runs_to_reach(
            planned, canaries_per_run=10, target_epsilon=claim, delta=DELTA, confidence=0.95
        )
        is None
    )


def test_the_planned_threshold_ignores_the_scores_and_pays_nothing():
    sigma, q, steps = 1.0, 0.2, 20
    planned = PlannedThreshold(
        subsampled_gaussian_scores(noise_multiplier=sigma, sample_rate=q, steps=steps)
    )
    trace = simulated_trace(2, m=4_000, steps=steps, sigma=sigma, q=q)
    scores = likelihood_ratio_scores(trace.projections, noise_multiplier=sigma, sample_rate=q)
    auditor = ScoreAuditor.from_membership(scores, trace.included)
    shuffled = ScoreAuditor(-auditor.in_scores, auditor.out_scores[::-1] + 5.0)
    bounds = [a.epsilon_clopper_pearson(delta=DELTA, strategy=planned) for a in (auditor, shuffled)]
    assert bounds[0].threshold == bounds[1].threshold  # same class sizes, same threshold
    assert bounds[0].correction == "planned" and bounds[0].num_thresholds == 1
    direct = epsilon_at_threshold(
        auditor.scores, auditor.is_member, threshold=bounds[0].threshold, delta=DELTA
    )
    assert bounds[0].epsilon == direct.epsilon
    gdp = auditor.epsilon_gaussian_dp(delta=DELTA, strategy=planned)
    assert gdp.threshold == bounds[0].threshold
    with pytest.raises(ConfigError, match=r"one-run bound guesses by rank"):
        auditor.epsilon_one_run(delta=DELTA, strategy=planned)


def test_the_ceiling_is_what_correct_audits_reach_half_the_time():
    sigma, q, steps, m = 1.0, 0.2, 20, 4_000
    planned = subsampled_gaussian_scores(noise_multiplier=sigma, sample_rate=q, steps=steps)
    at_plan, searched, reachable = [], [], []
    for seed in range(20):
        trace = simulated_trace(seed, m=m, steps=steps, sigma=sigma, q=q)
        scores = likelihood_ratio_scores(trace.projections, noise_multiplier=sigma, sample_rate=q)
        auditor = ScoreAuditor.from_membership(scores, trace.included)
        at_plan.append(
            auditor.epsilon_clopper_pearson(delta=DELTA, strategy=PlannedThreshold(planned))
        )
        searched.append(auditor.epsilon_clopper_pearson(delta=DELTA).epsilon)
        n_in, n_out = auditor.in_scores.size, auditor.out_scores.size
        reachable.append(
            planned.best_threshold(n_in=n_in, n_out=n_out, delta=DELTA, confidence=0.95)[1]
        )
    bounds = np.array([bound.epsilon for bound in at_plan])
    assert np.median(bounds) == pytest.approx(np.median(reachable), abs=0.1)
    # The planned threshold beats the searched one when the plan holds.
    assert np.median(bounds) > np.median(searched) + 0.2


def test_the_headline_is_the_largest_of_three_tests_at_their_shares():
    sigma, q, steps = 1.0, 0.2, 20
    result = audit_trace(
        simulated_trace(5, m=2_000, steps=steps, sigma=sigma, q=q),
        noise_multiplier=sigma,
        sample_rate=q,
        epsilon_accountant=10.0,
        delta=DELTA,
        confidence=0.95,
    )
    tests = (
        result.likelihood_ratio.clopper_pearson,
        result.likelihood_ratio_searched,
        result.step_difference.clopper_pearson,
    )
    assert result.epsilon_lower_bound == max(bound.epsilon for bound in tests)
    assert [bound.confidence for bound in tests] == pytest.approx([0.97, 0.99, 0.99])
    assert [bound.correction for bound in tests] == ["planned", "bonferroni", "bonferroni"]


def test_pooled_runs_are_audited_as_one_set_of_independent_canaries():
    sigma, q, steps = 1.0, 0.2, 20
    traces = [simulated_trace(seed, m=1_000, steps=steps, sigma=sigma, q=q) for seed in (3, 4)]
    pooled = CanaryTrace.pooled(traces)
    assert pooled.projections.shape == (2_000, steps) and pooled.run.tolist().count(1) == 1_000
    result = audit_trace(
        pooled,
        noise_multiplier=sigma,
        sample_rate=q,
        epsilon_accountant=4.0,
        delta=DELTA,
        canaries_per_run=1_000,
    )
    single = audit_trace(
        traces[0], noise_multiplier=sigma, sample_rate=q, epsilon_accountant=4.0, delta=DELTA
    )
    assert (result.num_runs, result.num_canaries, single.num_runs) == (2, 2_000, 1)
    assert result.epsilon_reachable > single.epsilon_reachable
    assert result.runs_for_half_epsilon == single.runs_for_half_epsilon


@pytest.mark.usefixtures("one_torch_thread")
def test_auto_runs_train_as_many_models_as_the_plan_needs_with_fresh_canaries():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 6)).astype(np.float32)
    cohort = Cohort.from_records(
        name="toy",
        features=features,
        labels=(features[:, 0] > 0).astype(np.int64),
        patient_ids=np.arange(400),
    )
    recipe = {
        "cohort": cohort,
        "model_factory": MLPConfig(hidden=[16]),
        "privacy": PrivacyConfig(epsilon=4.0, delta=1e-4),
        "train": TrainConfig(epochs=2, batch_size=50),
        "seed": 0,
        "num_canaries": 100,
    }
    result = whitebox_audit(**recipe, runs="auto", auto_target=0.2)
    planned = subsampled_gaussian_scores(
        noise_multiplier=result.noise_multiplier,
        sample_rate=result.sample_rate,
        steps=result.num_steps,
    )
    confidence = 1 - PLANNED_SHARE * (1 - result.confidence)
    needed = runs_to_reach(
        planned,
        canaries_per_run=100,
        target_epsilon=0.2 * result.epsilon_accountant,
        delta=result.delta,
        confidence=confidence,
    )
    assert result.num_runs == needed > 1 and result.num_canaries == 100 * needed
    assert result.epsilon_reachable >= 0.2 * result.epsilon_accountant
    # Each run drew its own canaries: the runs' coordinates and inclusions differ.
    first, second = (result.trace.run == run for run in (0, 1))
    assert not np.array_equal(result.trace.included[first], result.trace.included[second])
    assert not np.array_equal(result.trace.coordinates[first], result.trace.coordinates[second])
    with pytest.raises(ConfigError, match=r"runs must be a positive integer or 'auto', got 0"):
        whitebox_audit(**recipe, runs=0)
