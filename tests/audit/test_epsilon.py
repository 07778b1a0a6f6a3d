import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from dptrain.audit.epsilon import clopper_pearson_lower, clopper_pearson_upper, epsilon_lower_bound
from dptrain.errors import ConfigError

from .scores import gaussian_scores, gdp_epsilon


@pytest.mark.parametrize("n", [1, 10, 1000])
def test_clopper_pearson_closed_forms(n):
    alpha = 0.05
    assert clopper_pearson_upper(0, n, confidence=1 - alpha) == pytest.approx(1 - alpha ** (1 / n))
    assert clopper_pearson_lower(n, n, confidence=1 - alpha) == pytest.approx(alpha ** (1 / n))
    assert clopper_pearson_lower(0, n, confidence=0.95) == 0.0
    assert clopper_pearson_upper(n, n, confidence=0.95) == 1.0


@pytest.mark.parametrize(
    ("successes", "trials", "message"),
    [
        (5, 4, r"successes must be integers in \[0, 4\], got 5"),
        (-1, 4, r"successes must be integers in \[0, 4\], got -1"),
        (1.5, 4, r"successes must be integers in \[0, 4\], got 1.5"),
        (0, 0, "trials must be a positive integer, got 0"),
    ],
)
def test_clopper_pearson_rejects_bad_counts(successes, trials, message):
    for bound in (clopper_pearson_lower, clopper_pearson_upper):
        with pytest.raises(ConfigError, match=message):
            bound(successes, trials, confidence=0.95)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), n=st.integers(1, 500), confidence=st.floats(0.5, 0.9999))
def test_clopper_pearson_brackets_the_rate_and_matches_binomial_tails(data, n, confidence):
    k = data.draw(st.integers(0, n))
    lower = float(clopper_pearson_lower(k, n, confidence=confidence))
    upper = float(clopper_pearson_upper(k, n, confidence=confidence))
    assert 0 <= lower <= k / n <= upper <= 1
    if k < n:  # P(X ≤ k | upper) = 1 − confidence
        assert binom.cdf(k, n, upper) == pytest.approx(1 - confidence, rel=1e-6, abs=1e-12)
    if k > 0:  # P(X ≥ k | lower) = 1 − confidence
        assert binom.sf(k - 1, n, lower) == pytest.approx(1 - confidence, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("delta", [0.0, 1e-5])
def test_perfect_separation_reaches_the_hand_computed_ceiling(delta):
    scores = np.arange(2000.0)
    bound = epsilon_lower_bound(scores, scores >= 1000, delta=delta, confidence=0.95)
    alpha = 0.05 / (2 * bound.num_thresholds)
    tpr_lb, fpr_ub = alpha ** (1 / 1000), 1 - alpha ** (1 / 1000)
    ceiling = max(np.log((tpr_lb - delta) / fpr_ub), np.log((1 - delta - fpr_ub) / (1 - tpr_lb)))
    assert bound.ceiling == pytest.approx(ceiling, rel=1e-9)
    assert bound.epsilon == pytest.approx(bound.ceiling, rel=1e-12)
    assert bound.threshold == 1000.0 and bound.correction == "bonferroni"
    assert bound.tpr_lower == pytest.approx(tpr_lb) and bound.fpr_upper == pytest.approx(fpr_ub)
    assert 1 < bound.num_thresholds <= 64


def test_same_distribution_gives_no_evidence():
    rng = np.random.default_rng(10)
    scores, members = gaussian_scores(rng, n_each=2000, shift=0.0)
    assert epsilon_lower_bound(scores, members, delta=1e-5).epsilon < 0.2
    split = epsilon_lower_bound(scores, members, delta=1e-5, correction="split", rng=rng)
    assert split.epsilon < 0.3


@pytest.mark.parametrize(("mu", "seed"), [(1.0, 11), (2.0, 12), (4.0, 13)])
def test_bound_stays_below_true_epsilon_of_gaussian_dp_pair(mu, seed):
    # N(μ, 1) vs N(0, 1) is exactly μ-GDP, so no valid bound may exceed its ε at δ.
    delta = 1e-5
    rng = np.random.default_rng(seed)
    scores, members = gaussian_scores(rng, n_each=20_000, shift=mu)
    true_eps = gdp_epsilon(mu, delta)
    for correction in ("bonferroni", "split"):
        bound = epsilon_lower_bound(scores, members, delta=delta, correction=correction, rng=rng)
        assert 0.5 < bound.epsilon < true_eps
        assert bound.epsilon <= bound.ceiling


def test_split_correction_with_perfect_separation_reaches_its_ceiling():
    scores = np.arange(400.0)
    bound = epsilon_lower_bound(
        scores, scores >= 200, delta=0.0, correction="split", rng=np.random.default_rng(0)
    )
    # Evaluated on 100 members and 100 non-members with α split over the two intervals.
    alpha = 0.05 / 2
    assert bound.ceiling == pytest.approx(np.log(alpha ** (1 / 100) / (1 - alpha ** (1 / 100))))
    assert bound.epsilon == pytest.approx(bound.ceiling)
    assert bound.correction == "split"


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_each=st.integers(2, 300),
    shift=st.floats(0, 6),
    delta=st.sampled_from([0.0, 1e-5, 1e-2]),
    confidence=st.floats(0.5, 0.99),
)
def test_bound_is_below_ceiling_and_monotone(seed, n_each, shift, delta, confidence):
    scores, members = gaussian_scores(np.random.default_rng(seed), n_each=n_each, shift=shift)
    bound = epsilon_lower_bound(scores, members, delta=delta, confidence=confidence)
    stricter = epsilon_lower_bound(scores, members, delta=delta, confidence=(1 + confidence) / 2)
    larger_delta = epsilon_lower_bound(scores, members, delta=delta + 0.05, confidence=confidence)
    assert 0 <= bound.epsilon <= bound.ceiling + 1e-12
    assert stricter.epsilon <= bound.epsilon + 1e-12
    assert larger_delta.epsilon <= bound.epsilon + 1e-12
    assert bound.num_thresholds <= 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delta": 1.0}, r"delta must be in \[0, 1\), got 1.0"),
        ({"confidence": 0.0}, r"confidence must be in \(0, 1\), got 0.0"),
        ({"correction": "holm"}, "correction must be 'bonferroni' or 'split', got 'holm'"),
        ({"correction": "split"}, "correction='split' needs rng, got None"),
        ({"max_thresholds": 0}, "max_thresholds must be a positive integer, got 0"),
    ],
)
def test_epsilon_bound_rejects_bad_options(kwargs, message):
    scores, members = np.arange(4.0), np.array([True, False, True, False])
    with pytest.raises(ConfigError, match=message):
        epsilon_lower_bound(scores, members, **({"delta": 0.0} | kwargs))


def test_split_needs_two_of_each_class():
    with pytest.raises(ConfigError, match="needs >= 2 members and >= 2 non-members, got 1 and 3"):
        epsilon_lower_bound(
            np.arange(4.0),
            np.array([True, False, False, False]),
            delta=0.0,
            correction="split",
            rng=np.random.default_rng(0),
        )


def test_tied_scores_give_a_bound_that_ignores_their_order_and_matches_the_counts():
    """Scores in {0, 1} only (a block of ties on each side): the bound is the test 'score ≥ 1'.

    60 of 100 members and 5 of 100 non-members score 1; the candidates collapse to the two
    distinct values, each a deterministic test, and the answer follows from Clopper–Pearson.
    """
    members = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    scores = np.r_[np.ones(60), np.zeros(40), np.ones(5), np.zeros(95)]
    bound = epsilon_lower_bound(scores, members, delta=0.0, confidence=0.95)
    significance = 0.05 / (2 * bound.num_thresholds)
    tpr_lower = clopper_pearson_lower(60, 100, confidence=1 - significance)
    fpr_upper = clopper_pearson_upper(5, 100, confidence=1 - significance)
    expected = max(np.log(tpr_lower / fpr_upper), np.log((1 - fpr_upper) / (1 - tpr_lower)))
    assert bound.threshold == 1.0 and bound.num_thresholds == 2
    assert bound.epsilon == pytest.approx(float(expected))
    order = np.random.default_rng(0).permutation(200)
    shuffled = epsilon_lower_bound(scores[order], members[order], delta=0.0, confidence=0.95)
    assert shuffled == bound
