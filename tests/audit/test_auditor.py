import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from dptrain.audit.auditor import (
    BestThresholdBonferroni,
    FixedThreshold,
    ScoreAuditor,
    SplitSample,
    gdp_epsilon,
    gdp_mu,
    one_run_epsilon,
    one_run_p_value,
)
from dptrain.audit.epsilon import epsilon_at_threshold
from dptrain.errors import ConfigError

from .scores import gdp_epsilon as reference_gdp_epsilon

DELTA = 1e-5


def gaussian_auditor(seed: int, *, mu: float, n_each: int) -> ScoreAuditor:
    """Scores of the optimal test of the Gaussian mechanism with μ = sensitivity / σ."""
    rng = np.random.default_rng(seed)
    return ScoreAuditor(rng.normal(mu, 1.0, n_each), rng.normal(0.0, 1.0, n_each))


@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0])
def test_gdp_epsilon_matches_the_reference_and_inverts(mu):
    assert gdp_epsilon(mu, DELTA) == pytest.approx(reference_gdp_epsilon(mu, DELTA), rel=1e-6)
    assert gdp_mu(gdp_epsilon(mu, DELTA), DELTA) == pytest.approx(mu, rel=1e-6)
    assert gdp_epsilon(0.0, DELTA) == 0.0


@pytest.mark.parametrize("mu", [1.0, 2.0])
def test_gaussian_mechanism_bounds_stay_below_the_true_epsilon_and_are_not_trivial(mu):
    # Each bound fails with probability ≤ 5 %; the four seeds × three bounds all hold unless the
    # bounds are wrong (they sit well below the truth here, so a failure is far rarer than 5 %).
    true_epsilon = gdp_epsilon(mu, DELTA)
    for seed in range(4):
        auditor = gaussian_auditor(seed, mu=mu, n_each=5000)
        clopper_pearson = auditor.epsilon_clopper_pearson(delta=DELTA).epsilon
        gaussian = auditor.epsilon_gaussian_dp(delta=DELTA)
        one_run = auditor.epsilon_one_run(delta=DELTA).epsilon
        assert 0.3 * true_epsilon < clopper_pearson < true_epsilon
        assert 0.7 * mu < gaussian.mu < mu
        assert 0.5 * true_epsilon < gaussian.epsilon < true_epsilon
        assert 0.1 * true_epsilon < one_run < true_epsilon


def test_auroc_and_tpr_at_fpr_match_the_binormal_curve():
    auditor = gaussian_auditor(0, mu=1.0, n_each=20_000)
    assert auditor.auroc() == pytest.approx(norm.cdf(1 / math.sqrt(2)), abs=0.01)
    expected = norm.sf(norm.isf(np.array([0.01, 0.1])) - 1.0)
    np.testing.assert_allclose(auditor.tpr_at_fpr((0.01, 0.1)), expected, atol=0.02)


def test_tpr_at_fpr_interpolates_over_tied_scores():
    # Two members and two non-members tied on top: one diagonal step of the ROC.
    auditor = ScoreAuditor(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0]))
    assert auditor.tpr_at_fpr((0.25,)).tolist() == [0.25]
    assert auditor.auroc() == 0.5


def test_strategies_are_types_and_each_is_honoured():
    auditor = gaussian_auditor(1, mu=2.0, n_each=2000)
    fixed = auditor.epsilon_clopper_pearson(delta=DELTA, strategy=FixedThreshold(1.0))
    direct = epsilon_at_threshold(auditor.scores, auditor.is_member, threshold=1.0, delta=DELTA)
    assert fixed == direct and fixed.correction == "fixed"
    split = [
        auditor.epsilon_clopper_pearson(delta=DELTA, strategy=SplitSample(seed=3)) for _ in range(2)
    ]
    assert split[0] == split[1] and split[0].correction == "split"
    bonferroni = auditor.epsilon_clopper_pearson(
        delta=DELTA, strategy=BestThresholdBonferroni(max_candidates=8)
    )
    assert bonferroni.num_thresholds <= 8
    for method in (
        auditor.epsilon_clopper_pearson,
        auditor.epsilon_gaussian_dp,
        auditor.epsilon_one_run,
        auditor.epsilon_fdp_one_run,
    ):
        with pytest.raises(ConfigError, match=r"unknown threshold strategy"):
            method(delta=DELTA, strategy="bonferroni")
    with pytest.raises(ConfigError, match=r"max_candidates must be a positive integer, got 0"):
        BestThresholdBonferroni(max_candidates=0)


def test_a_fixed_threshold_pays_less_than_a_searched_one():
    scores = np.arange(400.0)
    auditor = ScoreAuditor.from_membership(scores, scores >= 200)
    fixed = auditor.epsilon_gaussian_dp(delta=DELTA, strategy=FixedThreshold(200.0))
    searched = auditor.epsilon_gaussian_dp(delta=DELTA)
    assert fixed.mu > searched.mu > 0
    assert fixed.threshold == 200.0


@pytest.mark.parametrize("r", [10, 100, 1000])
def test_one_run_all_correct_reaches_the_closed_form_maximum(r):
    # δ = 0: P[Bin(r, p) ≥ r] = p^r ≤ β gives p = β^(1/r) and ε = log(p / (1 − p)).
    p = 0.05 ** (1 / r)
    expected = math.log(p / (1 - p))
    got = one_run_epsilon(num_canaries=2 * r, num_guesses=r, num_correct=r, delta=0.0, alpha=0.05)
    assert got == pytest.approx(expected, abs=1e-5)
    # δ > 0 can only lower it.
    with_delta = one_run_epsilon(
        num_canaries=2 * r, num_guesses=r, num_correct=r, delta=1e-5, alpha=0.05
    )
    assert with_delta <= got


def naive_p_value(m, r, v, eps, delta):
    """Steinke et al. (2023) Algorithm 2 as written: a running sum of binomial masses."""
    q = 1 / (1 + math.exp(-eps))
    beta = binom.sf(v - 1, r, q)
    alpha, total = 0.0, 0.0
    for i in range(1, v + 1):
        total += binom.pmf(v - i, r, q)
        alpha = max(alpha, total / i)
    return min(beta + alpha * delta * 2 * m, 1.0)


@pytest.mark.parametrize(
    ("m", "r", "v", "eps", "delta"),
    [(1000, 100, 80, 1.0, 1e-5), (1000, 500, 400, 0.5, 1e-3), (50, 20, 20, 2.0, 0.0)],
)
def test_one_run_p_value_matches_the_papers_algorithm(m, r, v, eps, delta):
    got = one_run_p_value(num_canaries=m, num_guesses=r, num_correct=v, epsilon=eps, delta=delta)
    assert got == pytest.approx(naive_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15)


def test_one_run_bound_holds_under_randomized_response():
    # ε-DP randomized response on each canary's membership: the bound is valid with probability
    # ≥ 95 % per seed; over 40 seeds more than 8 failures has probability < 1 % (binomial).
    epsilon = 1.0
    failures = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        members = rng.random(1000) < 0.5
        truthful = rng.random(1000) < math.exp(epsilon) / (1 + math.exp(epsilon))
        scores = np.where(members == truthful, 1.0, -1.0) + 1e-3 * rng.random(1000)
        bound = ScoreAuditor.from_membership(scores, members).epsilon_one_run(delta=0.0)
        failures += bound.epsilon > epsilon
    assert failures <= 8
    assert bound.num_abstentions == bound.num_canaries - bound.num_guesses


def test_one_run_has_power_on_a_perfect_attack():
    scores = np.arange(1000.0)
    bound = ScoreAuditor.from_membership(scores, scores >= 500).epsilon_one_run(delta=DELTA)
    assert bound.num_correct == bound.num_guesses
    assert bound.epsilon == pytest.approx(bound.ceiling)
    assert bound.epsilon > 4
    fixed = ScoreAuditor.from_membership(scores, scores >= 500).epsilon_one_run(
        delta=DELTA, strategy=FixedThreshold(num_guesses=100)
    )
    assert (fixed.num_guesses_in, fixed.num_guesses_out, fixed.num_correct) == (100, 0, 100)
    assert fixed.num_candidates == 1


def test_bad_scores_are_refused():
    with pytest.raises(ConfigError, match=r"in_scores must be a non-empty \(n,\) array"):
        ScoreAuditor(np.array([]), np.array([1.0]))
    with pytest.raises(ConfigError, match=r"out_scores must be finite"):
        ScoreAuditor(np.array([1.0]), np.array([np.nan]))
    with pytest.raises(ConfigError, match=r"is_member must be bool"):
        ScoreAuditor.from_membership(np.zeros(3), np.array([0, 1, 0]))
    with pytest.raises(ConfigError, match=r"need 0 <= correct <= guesses <= canaries"):
        one_run_p_value(num_canaries=5, num_guesses=6, num_correct=1, epsilon=1.0, delta=0.0)
