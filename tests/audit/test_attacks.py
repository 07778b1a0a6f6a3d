import functools
import inspect

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score, roc_curve

from dptrain.audit.attacks import ATTACKS, RMIA, LiRA, LossAttack, make_attack
from dptrain.audit.attacks.inputs import check_groups, sum_other_groups
from dptrain.errors import ConfigError, DataError

LIRA_VARIANTS = [
    {"online": True, "fixed_variance": False},
    {"online": True, "fixed_variance": True},
    {"online": False, "fixed_variance": False},
    {"online": False, "fixed_variance": True},
]


def leaky(n_models, n_records, shift, seed, noise=0.5):
    """φ = record difficulty (random, so per-record calibration matters) + shift·IN + noise."""
    rng = np.random.default_rng(seed)
    membership = rng.random((n_models, n_records)) < 0.5
    difficulty = rng.normal(0.0, 2.0, n_records)
    noise = rng.normal(0.0, noise, (n_models, n_records))
    return difficulty + shift * membership + noise, membership


def paired_masks(n_models, n_records, rng):
    """The audit's design: model 2j trains on a random half, model 2j + 1 on the other half."""
    half = rng.random((n_models // 2, n_records)) < 0.5
    membership = np.empty((n_models, n_records), dtype=bool)
    membership[0::2], membership[1::2] = half, ~half
    return membership


def pair_groups(n_models):
    return np.arange(n_models) // 2


def auc(membership, scores):
    return roc_auc_score(membership.ravel(), scores.ravel())


def tpr_at_fpr(membership, scores, fpr=0.01):
    """Largest empirical TPR over thresholds whose FPR is at most ``fpr``."""
    fprs, tprs, _ = roc_curve(membership.ravel(), scores.ravel())
    return tprs[fprs <= fpr].max()


def reference_models(n_models, k, groups):
    if groups is None:
        return [j for j in range(n_models) if j != k]
    return [j for j in range(n_models) if groups[j] != groups[k]]


# --- naive references: explicit loops over targets, records and population records ----------


def naive_lira_one(target, ref_signals, ref_membership, online, fixed_variance):
    n = target.size

    def side(mask):
        values = [ref_signals[mask[:, i], i] for i in range(n)]
        pooled_values = np.concatenate(values)
        global_mean = pooled_values.mean()
        dof = sum(max(len(v) - 1, 0) for v in values)
        within = sum(((v - v.mean()) ** 2).sum() for v in values if len(v))
        pooled = within / dof if dof > 0 else pooled_values.var()
        means = np.array([v.mean() if len(v) else global_mean for v in values])
        variances = np.array(
            [pooled if fixed_variance or len(v) < 2 else v.var(ddof=1) for v in values]
        )
        return means, np.sqrt(np.maximum(variances, 1e-12))

    mean_out, std_out = side(~ref_membership)
    if not online:
        return (target - mean_out) / std_out
    mean_in, std_in = side(ref_membership)
    return norm.logpdf(target, mean_in, std_in) - norm.logpdf(target, mean_out, std_out)


def naive_lira(signals, membership, groups=None, **options):
    rows = []
    for k in range(signals.shape[0]):
        refs = reference_models(signals.shape[0], k, groups)
        rows.append(naive_lira_one(signals[k], signals[refs], membership[refs], **options))
    return np.array(rows)


def naive_rmia_one(target, ref_signals, ref_membership, population, online, offline_a, gamma):
    prob_target = 1.0 / (1.0 + np.exp(-target))
    prob_refs = 1.0 / (1.0 + np.exp(-ref_signals))
    out_all = prob_refs[~ref_membership]

    def reference(i):
        if online:
            return prob_refs[:, i].mean()
        out = prob_refs[~ref_membership[:, i], i]
        mean_out = out.mean() if out.size else out_all.mean()
        return (1 + offline_a) / 2 * mean_out + (1 - offline_a) / 2

    scores = np.empty(target.size)
    for x in range(target.size):
        ratio_x = prob_target[x] / reference(x)
        wins = [ratio_x / (prob_target[z] / reference(z)) > gamma for z in population if z != x]
        scores[x] = np.mean(wins)
    return scores


def naive_rmia(signals, membership, populations, groups=None, **options):
    rows = []
    for k in range(signals.shape[0]):
        refs = reference_models(signals.shape[0], k, groups)
        rows.append(
            naive_rmia_one(signals[k], signals[refs], membership[refs], populations[k], **options)
        )
    return np.array(rows)


# --- LiRA -------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", LIRA_VARIANTS)
@pytest.mark.parametrize("n_models", [2, 5])
def test_lira_matches_naive_loop(options, n_models):
    signals, membership = leaky(n_models, 40, 1.5, seed=n_models)
    attack = LiRA(**options).fit(signals, membership)
    in_counts = membership.sum(axis=0) - membership  # IN references per (target, record)
    assert np.any(in_counts < 2)  # the small-count fallbacks are exercised
    assert attack.scores_.shape == (n_models, 40)
    assert attack.scores_.dtype == np.float64
    expected = naive_lira(signals, membership, **options)
    np.testing.assert_allclose(attack.scores_, expected, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("options", LIRA_VARIANTS)
def test_lira_score_uses_all_fitted_models_as_references(options):
    signals, membership = leaky(7, 60, 1.5, seed=3)
    attack = LiRA(**options).fit(signals[:6], membership[:6])
    new_target = attack.score(signals[6])
    expected = naive_lira_one(signals[6], signals[:6], membership[:6], **options)
    np.testing.assert_allclose(new_target, expected, rtol=1e-7, atol=1e-7)
    # The same as target 6 of a fit on all seven models: it sees the other six.
    full = LiRA(**options).fit(signals, membership)
    np.testing.assert_allclose(new_target, full.scores_[6], rtol=1e-7, atol=1e-7)


def test_lira_online_beats_loss_on_leaky_signals():
    signals, membership = leaky(16, 500, 2.0, seed=0)
    lira_auc = auc(membership, LiRA().fit(signals, membership).scores_)
    loss_auc = auc(membership, LossAttack().fit(signals, membership).scores_)
    assert lira_auc > 0.95
    assert lira_auc > loss_auc + 0.1


@pytest.mark.parametrize("online", [True, False])
def test_lira_online_and_offline_work_with_eight_models(online):
    signals, membership = leaky(8, 500, 2.0, seed=1)
    assert auc(membership, LiRA(online=online).fit(signals, membership).scores_) > 0.9


@pytest.mark.parametrize("online", [True, False])
def test_lira_fixed_variance_works_with_four_models(online):
    signals, membership = leaky(4, 500, 2.0, seed=2)
    attack = LiRA(online=online, fixed_variance=True).fit(signals, membership)
    assert auc(membership, attack.scores_) > 0.9


def test_flipped_membership_flips_lira_online():
    signals, membership = leaky(8, 300, 2.0, seed=4)
    scores = LiRA().fit(signals, membership).scores_
    flipped = LiRA().fit(signals, ~membership).scores_
    np.testing.assert_allclose(flipped, -scores, rtol=1e-9, atol=1e-9)
    assert auc(membership, flipped) == pytest.approx(1.0 - auc(membership, scores))
    assert auc(membership, flipped) < 0.1


def test_lira_is_finite_for_constant_and_extreme_signals():
    membership = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=bool)
    for signals in (np.ones((4, 3)), np.array([[1e3, -1e3, 0.0]] * 4)):
        for options in LIRA_VARIANTS:
            assert np.all(np.isfinite(LiRA(**options).fit(signals, membership).scores_))


def test_lira_without_any_in_reference_raises():
    membership = np.zeros((3, 4), dtype=bool)
    membership[0] = True  # targets 1 and 2 still see model 0, but target 0 sees no IN signal
    with pytest.raises(DataError, match="IN reference"):
        LiRA().fit(np.zeros((3, 4)), membership)
    assert LiRA(online=False).fit(np.zeros((3, 4)), membership).scores_.shape == (3, 4)


# --- RMIA -------------------------------------------------------------------------------------


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("gamma", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("num_population", [8, 1000])
def test_rmia_matches_naive_double_loop(online, gamma, num_population):
    signals, membership = leaky(4, 30, 1.5, seed=5)
    attack = RMIA(online=online, offline_a=0.4, gamma=gamma, num_population=num_population)
    attack.fit(signals, membership)
    expected = naive_rmia(
        signals, membership, attack.populations_, online=online, offline_a=0.4, gamma=gamma
    )
    np.testing.assert_allclose(attack.scores_, expected, atol=1e-12)
    assert np.all((attack.scores_ >= 0) & (attack.scores_ <= 1))


def test_rmia_population_is_drawn_from_each_targets_non_members():
    signals, membership = leaky(6, 200, 1.0, seed=6)
    attack = RMIA(num_population=50).fit(signals, membership)
    assert len(attack.populations_) == 6
    for k, population in enumerate(attack.populations_):
        assert population.size == 50
        assert np.unique(population).size == 50
        assert not membership[k, population].any()
    small = RMIA(num_population=10_000).fit(signals, membership)
    for k, population in enumerate(small.populations_):
        np.testing.assert_array_equal(population, np.flatnonzero(~membership[k]))


@pytest.mark.parametrize("online", [True, False])
def test_rmia_score_uses_all_fitted_models_as_references(online):
    signals, membership = leaky(6, 40, 1.5, seed=7)
    attack = RMIA(online=online, num_population=1000).fit(signals[:5], membership[:5])
    expected = naive_rmia_one(
        signals[5], signals[:5], membership[:5], np.arange(40), online, 0.3, 1.0
    )
    np.testing.assert_allclose(attack.score(signals[5]), expected, atol=1e-12)


@pytest.mark.parametrize("online", [True, False])
def test_rmia_detects_leaky_signals_with_eight_models(online):
    signals, membership = leaky(8, 500, 2.0, seed=1)
    rmia_auc = auc(membership, RMIA(online=online).fit(signals, membership).scores_)
    loss_auc = auc(membership, LossAttack().fit(signals, membership).scores_)
    assert rmia_auc > 0.9
    assert rmia_auc > loss_auc + 0.1


def test_rmia_is_deterministic_under_a_seed():
    signals, membership = leaky(6, 300, 1.0, seed=8)
    first = RMIA(num_population=40, seed=3).fit(signals, membership)
    second = RMIA(num_population=40, seed=3).fit(signals, membership)
    other = RMIA(num_population=40, seed=4).fit(signals, membership)
    np.testing.assert_array_equal(first.scores_, second.scores_)
    np.testing.assert_array_equal(first.score(signals[0]), second.score(signals[0]))
    assert not np.array_equal(first.scores_, other.scores_)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(first.populations_, other.populations_, strict=True)
    )


def test_rmia_is_finite_for_extreme_signals():
    signals = np.array([[1e3, -1e3, 0.0, -800.0]] * 4)
    membership = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]], dtype=bool)
    for online in (True, False):
        attack = RMIA(online=online).fit(signals, membership)
        assert np.all(np.isfinite(attack.scores_))
        assert np.all(np.isfinite(attack.score(signals[0])))


def test_rmia_needs_two_non_members_per_target():
    membership = np.array([[1, 1, 0], [0, 0, 1]], dtype=bool)
    with pytest.raises(DataError, match="model 0 has 1"):
        RMIA().fit(np.zeros((2, 3)), membership)


# --- shared behaviour -------------------------------------------------------------------------


ALL_ATTACKS = [
    ("loss", {}),
    ("lira", {"online": True}),
    ("lira", {"online": False}),
    ("rmia", {"online": False}),
    ("rmia", {"online": True}),
]


@pytest.mark.parametrize(("name", "options"), ALL_ATTACKS)
def test_no_membership_effect_gives_chance_auc(name, options):
    signals, membership = leaky(16, 500, 0.0, seed=9)
    attack = make_attack(name, **options).fit(signals, membership)
    assert abs(auc(membership, attack.scores_) - 0.5) < 0.03


def test_loss_attack_scores_are_the_signals():
    signals, membership = leaky(3, 20, 1.0, seed=10)
    attack = LossAttack().fit(signals, membership)
    np.testing.assert_array_equal(attack.scores_, signals)
    assert attack.scores_ is not signals
    np.testing.assert_array_equal(attack.score(signals[1]), signals[1])


@pytest.mark.parametrize(("name", "options"), ALL_ATTACKS)
def test_bad_inputs_raise(name, options):
    attack = make_attack(name, **options)
    with pytest.raises(NotFittedError):
        attack.score(np.zeros(3))
    with pytest.raises(DataError):
        attack.fit(np.zeros((3, 4)), np.zeros((3, 5), dtype=bool))
    signals, membership = leaky(3, 10, 1.0, seed=12)
    attack.fit(signals, membership)
    with pytest.raises(DataError):
        attack.score(np.zeros(11))


@pytest.mark.parametrize("cls", [LiRA, RMIA])
def test_reference_attacks_need_two_models(cls):
    with pytest.raises(DataError, match="at least 2 models"):
        cls().fit(np.zeros((1, 4)), np.array([[1, 0, 0, 1]], dtype=bool))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: RMIA(offline_a=1.5), "rmia offline_a must be in [0, 1], got 1.5"),
        (lambda: RMIA(offline_a=-0.1), "rmia offline_a must be in [0, 1], got -0.1"),
        (lambda: RMIA(offline_a=float("nan")), "rmia offline_a must be in [0, 1], got nan"),
        (lambda: RMIA(gamma=0.0), "rmia gamma must be a finite number > 0, got 0.0"),
        (lambda: RMIA(gamma="1"), "rmia gamma must be a finite number > 0, got '1'"),
        (lambda: RMIA(num_population=0), "rmia num_population must be an integer ≥ 1, got 0"),
        (lambda: RMIA(num_population=2.5), "rmia num_population must be an integer ≥ 1, got 2.5"),
        (lambda: RMIA(seed=-1), "rmia seed must be an integer ≥ 0, got -1"),
        (lambda: RMIA(online="yes"), "rmia online must be true or false, got 'yes'"),
        (lambda: LiRA(online=1), "lira online must be true or false, got 1"),
        (lambda: LiRA(fixed_variance=None), "lira fixed_variance must be true or false, got None"),
    ],
)
def test_bad_options_raise_config_error(factory, message):
    with pytest.raises(ConfigError) as error:
        factory()
    assert str(error.value) == message


def test_make_attack_builds_configured_attacks():
    assert set(ATTACKS) == {"loss", "lira", "rmia"}
    assert isinstance(make_attack("loss"), LossAttack)
    lira = make_attack("lira", online=False, fixed_variance=True)
    assert isinstance(lira, LiRA)
    assert (lira.online, lira.fixed_variance) == (False, True)
    rmia = make_attack("rmia", online=True, offline_a=0.5, gamma=2.0, num_population=7, seed=9)
    assert (rmia.online, rmia.offline_a, rmia.gamma, rmia.num_population, rmia.seed) == (
        True,
        0.5,
        2.0,
        7,
        9,
    )
    with pytest.raises(ConfigError, match="unknown attack 'lira_online'; known attacks: loss"):
        make_attack("lira_online")
    with pytest.raises(ConfigError, match="lira does not take option"):
        make_attack("lira", gamma=1.0)
    with pytest.raises(ConfigError, match="known: none"):
        make_attack("loss", online=True)
    with pytest.raises(ConfigError, match="offline_a"):
        make_attack("rmia", offline_a=2)


# --- reference groups (complementary pairs) -----------------------------------------------------

ALL_VARIANTS = [
    ("loss", {}),
    *[("lira", options) for options in LIRA_VARIANTS],
    ("rmia", {"online": True}),
    ("rmia", {"online": False}),
]
REFERENCE_VARIANTS = ALL_VARIANTS[1:]


def grouped_design(design):
    """Small (signals, membership, groups) for the naive comparisons."""
    rng = np.random.default_rng(["pairs6", "pairs4", "uneven"].index(design))
    if design == "pairs6":  # the audit's design: 2 IN and 2 OUT references per record
        membership, groups = paired_masks(6, 40, rng), pair_groups(6)
    elif design == "pairs4":  # 1 IN and 1 OUT reference: every small-count fallback
        membership, groups = paired_masks(4, 40, rng), pair_groups(4)
    else:  # independent masks, uneven groups with arbitrary labels: mixed reference counts
        membership = rng.random((6, 40)) < 0.5
        groups = np.array([5, 5, 5, -2, -2, 9])
    noise = rng.normal(0.0, 0.5, membership.shape)
    return rng.normal(0.0, 2.0, 40) + 1.5 * membership + noise, membership, groups


def test_sum_other_groups_matches_explicit_sums():
    values = np.random.default_rng(18).normal(size=(7, 11))
    np.testing.assert_array_equal(
        sum_other_groups(values, np.arange(7)), values.sum(axis=0) - values
    )
    groups = check_groups(np.array([4, 1, 4, 4, 0, 1, 0]), 7)
    expected = [values[groups != groups[k]].sum(axis=0) for k in range(7)]
    np.testing.assert_allclose(sum_other_groups(values, groups), expected, rtol=1e-12)


@pytest.mark.parametrize(("name", "options"), ALL_VARIANTS)
def test_singleton_groups_reproduce_leave_one_model_out_exactly(name, options):
    signals, membership = leaky(6, 80, 1.5, seed=13)
    default = make_attack(name, **options).fit(signals, membership)
    for groups in (None, np.arange(6), 10 * np.arange(6)[::-1] - 3):
        attack = make_attack(name, **options).fit(signals, membership, groups=groups)
        np.testing.assert_array_equal(attack.scores_, default.scores_)
        np.testing.assert_array_equal(attack.score(signals[0]), default.score(signals[0]))


@pytest.mark.parametrize("design", ["pairs6", "pairs4", "uneven"])
@pytest.mark.parametrize("options", LIRA_VARIANTS)
def test_lira_group_exclusion_matches_naive_loop(options, design):
    signals, membership, groups = grouped_design(design)
    if design != "pairs6":  # some records fall back to the pooled variance or global mean
        in_counts = [membership[np.asarray(groups) != g].sum(axis=0) for g in groups]
        assert np.min(in_counts) < 2
    attack = LiRA(**options).fit(signals, membership, groups=groups)
    expected = naive_lira(signals, membership, groups, **options)
    np.testing.assert_allclose(attack.scores_, expected, rtol=1e-7, atol=1e-7)
    loo = LiRA(**options).fit(signals, membership).scores_
    assert not np.allclose(attack.scores_, loo)  # the partner really is left out


@pytest.mark.parametrize("design", ["pairs6", "pairs4", "uneven"])
@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("num_population", [8, 1000])
def test_rmia_group_exclusion_matches_naive_loop(online, design, num_population):
    signals, membership, groups = grouped_design(design)
    attack = RMIA(online=online, offline_a=0.4, num_population=num_population)
    attack.fit(signals, membership, groups=groups)
    for k, population in enumerate(attack.populations_):  # still the target's own non-members
        assert not membership[k, population].any()
    expected = naive_rmia(
        signals, membership, attack.populations_, groups, online=online, offline_a=0.4, gamma=1.0
    )
    np.testing.assert_allclose(attack.scores_, expected, atol=1e-12)


@functools.cache
def no_effect_pairs(n_models):
    """Complementary-pair masks; φ = record mean + noise, independent of membership."""
    rng = np.random.default_rng(n_models)
    membership = paired_masks(n_models, 4000, rng)
    signals = rng.normal(0.0, 2.0, 4000) + rng.normal(0.0, 0.5, (n_models, 4000))
    return signals, membership


@pytest.mark.parametrize("n_models", [4, 8])
@pytest.mark.parametrize(("name", "options"), ALL_VARIANTS)
def test_pair_groups_give_chance_on_complementary_masks(name, options, n_models):
    signals, membership = no_effect_pairs(n_models)
    attack = make_attack(name, **options).fit(signals, membership, groups=pair_groups(n_models))
    assert abs(auc(membership, attack.scores_) - 0.5) < 0.03
    assert tpr_at_fpr(membership, attack.scores_, 0.01) < 0.025


def test_leave_one_model_out_leaks_membership_through_complementary_masks():
    # Why ``groups`` exists: with only the target left out, a member has one IN reference fewer
    # than a non-member, and that alone is "detected" from signals with no membership effect.
    signals, membership = no_effect_pairs(4)
    online = LiRA().fit(signals, membership).scores_
    assert auc(membership, online) > 0.6
    assert tpr_at_fpr(membership, online, 0.01) > 0.1
    offline = LiRA(online=False).fit(signals, membership).scores_  # chance AUC, leaky tail
    assert tpr_at_fpr(membership, offline, 0.01) > 0.05


@pytest.mark.parametrize(("name", "options"), REFERENCE_VARIANTS)
def test_pair_groups_still_detect_leaky_signals(name, options):
    rng = np.random.default_rng(14)
    membership = paired_masks(8, 500, rng)
    signals = rng.normal(0.0, 2.0, 500) + 2.0 * membership + rng.normal(0.0, 0.5, (8, 500))
    attack = make_attack(name, **options).fit(signals, membership, groups=pair_groups(8))
    assert auc(membership, attack.scores_) > (0.9 if name == "lira" and options["online"] else 0.85)


@pytest.mark.parametrize(("name", "options"), REFERENCE_VARIANTS)
def test_score_uses_all_models_whatever_the_fit_groups(name, options):
    signals, membership = leaky(7, 60, 1.5, seed=15)
    grouped = make_attack(name, **options).fit(signals[:6], membership[:6], groups=pair_groups(6))
    plain = make_attack(name, **options).fit(signals[:6], membership[:6])
    np.testing.assert_array_equal(grouped.score(signals[6]), plain.score(signals[6]))


def test_lira_reference_check_sees_the_group_exclusion():
    membership = np.zeros((4, 5), dtype=bool)
    membership[0] = True  # group 0 (models 0, 1) holds every IN signal: targets 0, 1 see none
    membership[1, ::2] = True
    signals = np.random.default_rng(16).normal(size=(4, 5))
    assert LiRA().fit(signals, membership).scores_.shape == (4, 5)
    with pytest.raises(DataError, match="IN reference"):
        LiRA().fit(signals, membership, groups=np.array([0, 0, 1, 1]))


@pytest.mark.parametrize(("name", "options"), ALL_VARIANTS)
def test_bad_groups_raise_data_error(name, options):
    signals, membership = leaky(4, 10, 1.0, seed=17)
    attack = make_attack(name, **options)
    bad = [
        (np.arange(3), r"groups must have shape \(4,\), one label per model, got \(3,\)"),
        (np.zeros((4, 1), dtype=int), r"groups must have shape \(4,\)"),
        (np.arange(4) / 2, "groups must be integer labels, got dtype float64"),
        (np.ones(4, dtype=bool), "groups must be integer labels, got dtype bool"),
    ]
    if name != "loss":  # the baseline uses no reference, so one group is harmless there
        bad.append((np.zeros(4, dtype=int), "groups need at least 2 distinct labels"))
    for groups, message in bad:
        with pytest.raises(DataError, match=message):
            attack.fit(signals, membership, groups=groups)


@pytest.mark.parametrize("cls", [LossAttack, LiRA, RMIA])
def test_fit_takes_keyword_only_groups(cls):
    parameter = inspect.signature(cls.fit).parameters["groups"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is None
