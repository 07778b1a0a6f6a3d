import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import binom, norm
from sklearn.metrics import roc_auc_score, roc_curve

from dptrain.audit.metrics import (
    attack_metrics,
    auc_confidence_interval,
    clopper_pearson_lower,
    clopper_pearson_upper,
    epsilon_lower_bound,
    one_run_epsilon_lower_bound,
    record_vulnerability,
)
from dptrain.errors import ConfigError

AUC_N1_VS_N0 = norm.cdf(1 / np.sqrt(2))  # AUC of N(1, 1) vs N(0, 1): ≈ 0.760


def gdp_epsilon(mu: float, delta: float) -> float:
    """ε at δ of μ-GDP (Dong et al. 2019, Cor. 2.13): the true ε of N(μ, 1) vs N(0, 1)."""

    def gap(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    return brentq(gap, 0.0, 100.0)


def gaussian_scores(rng, *, n_each: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    members = np.repeat([True, False], n_each)
    return rng.normal(size=2 * n_each) + shift * members, members


# --- record_vulnerability ---------------------------------------------------------------------


def test_record_vulnerability_matches_naive_loop():
    rng = np.random.default_rng(0)
    signals = rng.normal(size=(12, 40)) + rng.normal(size=40)
    membership = rng.random((12, 40)) < 0.5
    membership[:, 0] = [True] * 11 + [False]  # one OUT model only: undefined
    membership[:, 1] = [True] * 2 + [False] * 10  # exactly two IN models: defined
    result = record_vulnerability(signals, membership, confidence=0.9)
    for r in range(40):
        ins, outs = signals[membership[:, r], r], signals[~membership[:, r], r]
        assert result.num_in[r] == ins.size and result.num_out[r] == outs.size
        if min(ins.size, outs.size) < 2:
            assert np.isnan([result.auc[r], result.standard_error[r], result.lower_bound[r]]).all()
            continue
        v_in, v_out = ins.var(ddof=1), outs.var(ddof=1)
        d, s2 = ins.mean() - outs.mean(), v_in + v_out
        z = d / np.sqrt(s2)
        var_z = (v_in / ins.size + v_out / outs.size) / s2 + d**2 / (4 * s2**3) * (
            2 * v_in**2 / (ins.size - 1) + 2 * v_out**2 / (outs.size - 1)
        )
        assert result.auc[r] == pytest.approx(norm.cdf(z), rel=1e-9)
        assert result.standard_error[r] == pytest.approx(norm.pdf(z) * np.sqrt(var_z), rel=1e-6)
        lower = norm.cdf(z - norm.ppf(0.9) * np.sqrt(var_z))
        assert result.lower_bound[r] == pytest.approx(lower, rel=1e-6)
    assert result.auc.dtype == np.float64 and result.num_in.dtype == np.int64
    assert result.confidence == 0.9


def test_record_vulnerability_recovers_known_binormal_auc():
    rng = np.random.default_rng(1)
    k, n = 400, 300
    membership = rng.random((k, n)) < 0.5
    signals = rng.normal(size=(k, n)) + membership  # IN ~ N(1, 1), OUT ~ N(0, 1)
    result = record_vulnerability(signals, membership)
    z = (result.auc - AUC_N1_VS_N0) / result.standard_error
    assert np.all(np.abs(z) < 4.5)
    assert np.mean(result.auc) == pytest.approx(AUC_N1_VS_N0, abs=0.005)
    # The delta-method SE matches the spread of the estimates across records.
    assert np.std(result.auc) == pytest.approx(np.mean(result.standard_error), rel=0.15)
    coverage = np.mean(result.lower_bound <= AUC_N1_VS_N0)
    assert 0.9 <= coverage <= 0.99
    assert np.all(result.lower_bound <= result.auc)


def test_record_vulnerability_guards_zero_variance():
    signals = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 2.0], [3.0, 2.0]])
    membership = np.array([[1, 1], [1, 1], [0, 0], [0, 0]], dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = record_vulnerability(signals, membership)
    np.testing.assert_allclose(result.auc, [0.0, 0.5])  # IN below OUT; identical
    assert np.all(np.isfinite(result.lower_bound))


@pytest.mark.parametrize(
    ("signals", "membership", "message"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3), bool), "must be .K, n_records. of one shape"),
        (np.zeros(3), np.zeros(3, bool), "must be .K, n_records. of one shape"),
        (np.zeros((3, 2)), np.zeros((3, 2)), "membership must be bool, got dtype float64"),
        (np.full((3, 2), np.nan), np.zeros((3, 2), bool), "signals must be finite, got 6"),
    ],
)
def test_record_vulnerability_rejects_bad_inputs(signals, membership, message):
    with pytest.raises(ConfigError, match=message):
        record_vulnerability(signals, membership)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shift=st.floats(-3, 3),
    confidence=st.floats(0.5, 0.999),
)
def test_record_vulnerability_stays_in_unit_interval(seed, shift, confidence):
    rng = np.random.default_rng(seed)
    membership = rng.random((8, 20)) < 0.5
    signals = rng.normal(size=(8, 20)) + shift * membership
    result = record_vulnerability(signals, membership, confidence=confidence)
    defined = ~np.isnan(result.auc)
    assert np.all((result.auc[defined] >= 0) & (result.auc[defined] <= 1))
    assert np.all(result.lower_bound[defined] <= result.auc[defined] + 1e-12)
    assert np.all(result.lower_bound[defined] >= 0)


# --- attack_metrics ---------------------------------------------------------------------------


def test_attack_metrics_hand_example():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    members = np.array([False, False, True, True])
    metrics = attack_metrics(scores, members, fpr_targets=(0.4, 0.5))
    assert metrics.auc == 0.75
    np.testing.assert_array_equal(metrics.tpr_at_fpr, [0.5, 1.0])
    np.testing.assert_array_equal(metrics.fpr_targets, [0.4, 0.5])
    assert metrics.balanced_accuracy == 0.75
    assert (metrics.n_members, metrics.n_nonmembers) == (2, 2)


def test_label_flip_gives_one_minus_auc():
    rng = np.random.default_rng(2)
    scores, members = gaussian_scores(rng, n_each=500, shift=0.7)
    assert attack_metrics(scores, ~members).auc == pytest.approx(
        1 - attack_metrics(scores, members).auc, abs=1e-12
    )


def test_perfect_separation():
    scores = np.arange(4000.0)
    metrics = attack_metrics(scores, scores >= 2000)
    assert metrics.auc == 1.0 and metrics.balanced_accuracy == 1.0
    np.testing.assert_array_equal(metrics.tpr_at_fpr, [1.0, 1.0])


def test_identical_distributions_give_chance_auc():
    rng = np.random.default_rng(3)
    scores, members = gaussian_scores(rng, n_each=10_000, shift=0.0)
    metrics = attack_metrics(scores, members)
    assert metrics.auc == pytest.approx(0.5, abs=0.015)
    assert np.all(metrics.tpr_at_fpr < 0.03)


def test_roc_is_thinned_but_keeps_low_fpr_end_and_exact_tpr_targets():
    rng = np.random.default_rng(4)
    scores, members = gaussian_scores(rng, n_each=25_000, shift=1.0)
    metrics = attack_metrics(scores, members, fpr_targets=(1e-4, 0.001, 0.01, 0.1))
    full_fpr, full_tpr, _ = roc_curve(members, scores, drop_intermediate=False)
    assert metrics.roc_fpr.size <= 2000 < full_fpr.size
    assert (metrics.roc_fpr[0], metrics.roc_tpr[0]) == (0.0, 0.0)
    assert (metrics.roc_fpr[-1], metrics.roc_tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(metrics.roc_fpr) >= 0) and np.all(np.diff(metrics.roc_tpr) >= 0)
    lowest = np.unique(full_fpr)[1:6]  # the first few non-zero FPRs survive thinning
    assert np.all(np.isin(lowest, metrics.roc_fpr))
    for target, tpr in zip(metrics.fpr_targets, metrics.tpr_at_fpr, strict=True):
        assert tpr == full_tpr[full_fpr <= target].max()


@pytest.mark.parametrize(
    ("scores", "members", "kwargs", "message"),
    [
        (np.zeros(3), np.zeros(4, bool), {}, r"must be \(n,\) of one shape"),
        (np.zeros(3), np.array([0, 1, 1]), {}, "is_member must be bool, got dtype int64"),
        (np.array([0.0, np.inf]), np.array([True, False]), {}, "scores must be finite, got 1"),
        (np.zeros(3), np.ones(3, bool), {}, "need both members and non-members, got 3 of 3"),
        (np.zeros(2), np.array([True, False]), {"fpr_targets": (0.0,)}, r"fpr_targets .*\(0.0,\)"),
    ],
)
def test_attack_metrics_rejects_bad_inputs(scores, members, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        attack_metrics(scores, members, **kwargs)


@settings(max_examples=40, deadline=None)
@given(
    scores=st.lists(st.floats(-5, 5), min_size=4, max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_attack_metrics_are_in_range(scores, seed):
    values = np.array(scores)
    members = np.random.default_rng(seed).permutation(np.arange(values.size) % 2 == 0)
    metrics = attack_metrics(values, members)
    assert 0 <= metrics.auc <= 1 and 0.5 <= metrics.balanced_accuracy <= 1
    assert np.all((metrics.tpr_at_fpr >= 0) & (metrics.tpr_at_fpr <= 1))


# --- auc_confidence_interval ------------------------------------------------------------------


def test_interval_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(5)
    scores, members = gaussian_scores(rng, n_each=300, shift=0.5)
    scores = np.round(scores, 1)
    interval = auc_confidence_interval(scores, members, num_bootstrap=10, rng=rng)
    assert interval.auc == pytest.approx(roc_auc_score(members, scores), abs=1e-12)


def test_bootstrap_agrees_with_naive_resampling():
    rng = np.random.default_rng(6)
    scores, members = gaussian_scores(rng, n_each=500, shift=0.5)
    fast = auc_confidence_interval(scores, members, num_bootstrap=400, rng=rng)
    naive = []
    for _ in range(400):
        index = rng.integers(0, scores.size, scores.size)
        naive.append(roc_auc_score(members[index], scores[index]))
    lower, upper = np.quantile(naive, [0.025, 0.975])
    assert fast.lower == pytest.approx(lower, abs=0.01)
    assert fast.upper == pytest.approx(upper, abs=0.01)
    assert (fast.num_bootstrap, fast.num_clusters, fast.confidence) == (400, 1000, 0.95)


def test_interval_covers_chance_for_same_distribution_and_excludes_it_when_separated():
    rng = np.random.default_rng(7)
    same = auc_confidence_interval(*gaussian_scores(rng, n_each=2000, shift=0.0), rng=rng)
    assert same.lower < 0.5 < same.upper
    apart = auc_confidence_interval(*gaussian_scores(rng, n_each=2000, shift=0.3), rng=rng)
    assert 0.5 < apart.lower < apart.auc < apart.upper


def test_cluster_bootstrap_is_wider_for_correlated_groups():
    # Some patients are far more exposed than others, so which patients a resample draws moves
    # the AUC much more than which of their 20 (model, patient) pairs it draws.
    rng = np.random.default_rng(8)
    n_patients, pairs = 200, 20
    exposure = rng.exponential(1.0, size=n_patients)
    groups = np.repeat(np.arange(n_patients), pairs)
    members = rng.random(groups.size) < 0.5
    scores = rng.normal(size=groups.size) + exposure[groups] * members
    iid = auc_confidence_interval(scores, members, rng=rng)
    cluster = auc_confidence_interval(scores, members, groups=groups, rng=rng)
    assert cluster.num_clusters == n_patients
    assert cluster.upper - cluster.lower > 1.3 * (iid.upper - iid.lower)


def test_bootstrap_of_100k_scores_is_fast():
    import time

    rng = np.random.default_rng(9)
    scores, members = gaussian_scores(rng, n_each=50_000, shift=0.2)
    start = time.perf_counter()
    auc_confidence_interval(scores, members, groups=np.arange(scores.size) // 10, rng=rng)
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.5}, r"confidence must be in \(0, 1\), got 1.5"),
        ({"num_bootstrap": 0}, "num_bootstrap must be a positive integer, got 0"),
        ({"groups": np.zeros(3)}, r"groups must have shape \(4,\), got \(3,\)"),
    ],
)
def test_interval_rejects_bad_options(kwargs, message):
    scores, members = np.arange(4.0), np.array([True, False, True, False])
    with pytest.raises(ConfigError, match=message):
        auc_confidence_interval(scores, members, rng=np.random.default_rng(0), **kwargs)


# --- Clopper–Pearson and ε lower bounds ---------------------------------------------------------


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


# --- Steinke et al. one-run bound -------------------------------------------------------------


def test_one_run_perfect_guesses_match_closed_form():
    # δ = 0 and r correct guesses of r: p-value = (e^ε/(1+e^ε))^r, so ε = logit((α/m)^(1/r)).
    scores = np.arange(200.0)
    bound = one_run_epsilon_lower_bound(scores, scores >= 100, delta=0.0, confidence=0.95)
    alpha = 0.05 / bound.num_thresholds
    assert bound.epsilon == pytest.approx(logit(alpha ** (1 / 100)), abs=1e-5)
    assert (bound.num_guesses, bound.num_correct, bound.num_canaries) == (100, 100, 200)
    assert bound.threshold == 100.0


def test_one_run_bound_solves_the_binomial_tail_equation():
    rng = np.random.default_rng(14)
    members = rng.random(1000) < 0.5  # randomised canaries
    scores = rng.normal(size=1000) + 2.0 * members
    bound = one_run_epsilon_lower_bound(scores, members, delta=0.0)
    p_value = binom.sf(bound.num_correct - 1, bound.num_guesses, expit(bound.epsilon))
    assert p_value == pytest.approx(0.05 / bound.num_thresholds, rel=1e-4)
    with_delta = one_run_epsilon_lower_bound(scores, members, delta=1e-4)
    assert with_delta.epsilon < bound.epsilon  # the δ term only weakens the evidence


def test_one_run_bound_is_valid_for_gaussian_dp_and_zero_without_signal():
    rng = np.random.default_rng(15)
    members = rng.random(4000) < 0.5
    for mu in (0.0, 2.0):
        scores = rng.normal(size=4000) + mu * members
        bound = one_run_epsilon_lower_bound(scores, members, delta=1e-5)
        if mu == 0:
            assert bound.epsilon < 0.3
        else:
            assert 0.5 < bound.epsilon < gdp_epsilon(mu, 1e-5)


def test_one_run_rejects_bad_delta():
    with pytest.raises(ConfigError, match=r"delta must be in \[0, 1\), got -0.1"):
        one_run_epsilon_lower_bound(np.arange(4.0), np.arange(4) < 2, delta=-0.1)
