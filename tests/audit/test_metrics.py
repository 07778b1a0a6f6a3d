import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from scipy.stats import t as student_t
from sklearn.metrics import roc_auc_score, roc_curve

from dptrain.audit.metrics import (
    attack_metrics,
    auc_confidence_interval,
    record_vulnerability,
    tpr_at_fpr,
)
from dptrain.errors import ConfigError

from .scores import gaussian_scores

AUC_N1_VS_N0 = norm.cdf(1 / np.sqrt(2))  # AUC of N(1, 1) vs N(0, 1): ≈ 0.760


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
        critical = student_t.ppf(0.9, min(ins.size, outs.size) - 1)  # small-sample quantile
        lower = norm.cdf(z - critical * np.sqrt(var_z))
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


def test_record_vulnerability_with_correlated_complementary_pairs_keeps_its_confidence():
    """The audit's pairs train on complementary halves, so a pair's two signals on a record
    correlate; the standard error must carry that (the independent-sides formula's 95 % lower
    bound exceeded a true AUC of 0.5 for 8.5 % of records at c = −0.5, K = 64)."""
    from tests.audit.simulate import simulate_audit

    signals, _, record_membership = simulate_audit(
        num_models=64, true_z=np.zeros(4000), seed=1, pair_correlation=-0.5
    )
    paired = record_vulnerability(signals, record_membership)
    assert 0.035 < np.mean(paired.lower_bound > 0.5) < 0.065
    # The same models listed so that no two neighbours are complementary: independent sides.
    order = np.r_[0:64:2, 1:64:2]
    unpaired = record_vulnerability(signals[order], record_membership[order])
    np.testing.assert_allclose(unpaired.auc, paired.auc)
    assert np.mean(unpaired.lower_bound > 0.5) > 0.07
    assert np.mean(paired.standard_error / unpaired.standard_error) > 1.15  # √1.5 = 1.22


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


def test_tpr_at_fpr_interpolates_over_a_block_of_tied_top_scores():
    """RMIA's artefact: 10 non-members and 20 members tie at 1.0, above everything else.

    Of 1,000 non-members and 100 members, the tied block is the ROC's first step, a diagonal
    from (0, 0) to (0.01, 0.2); at FPR 0.1 % the expected TPR of breaking ties at random is 0.02,
    where reading the largest TPR with FPR ≤ 0.1 % gives 0.
    """
    rng = np.random.default_rng(0)
    members = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    scores = np.r_[np.ones(20), rng.uniform(0, 0.9, 80), np.ones(10), rng.uniform(0, 0.9, 990)]
    metrics = attack_metrics(scores, members, fpr_targets=(0.001, 0.005, 0.01))
    np.testing.assert_allclose(metrics.tpr_at_fpr, [0.02, 0.1, 0.2])
    # the randomised test "member if tied and U < 0.1" has on average FPR 0.1 % and TPR 0.02
    tied = scores == 1
    picked = tied & (rng.random((4000, 1100)) < 0.1)
    assert picked[:, ~members].mean() == pytest.approx(0.001, rel=0.05)
    assert picked[:, members].mean() == pytest.approx(0.02, rel=0.05)


def test_tpr_at_fpr_without_ties_is_the_step_reading():
    fpr, tpr = np.array([0.0, 0.0, 0.5, 0.5, 1.0]), np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(
        tpr_at_fpr(fpr, tpr, np.array([0.0, 0.25, 0.5, 1.0])), [0.5, 0.5, 1.0, 1.0]
    )
