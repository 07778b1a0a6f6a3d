import itertools

import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant
from scipy.stats import binom, norm

from dptrain.errors import ConfigError
from dptrain.privacy import bounds
from dptrain.privacy.bounds import (
    VACUOUS_AUC,
    AttackBound,
    dp_sgd_attack_bound,
    group_privacy_attack_bound,
    privacy_profile,
    single_pair_attack_bound,
)

# The ε = 8 run of the brief: batch 256 of 1711 records, 30 epochs (T = int(30 / q) = 200 steps).
# SIGMA_EPS8 is opacus.accountants.utils.get_noise_multiplier(target_epsilon=8, target_delta=1e-5,
# sample_rate=Q, epochs=30, accountant="prv"), hard-coded because that search takes ~2 s.
Q = 256 / 1711
STEPS = 200
SIGMA_EPS8 = 1.497802734375


def assert_valid_bound(bound: AttackBound) -> None:
    assert bound.fpr[0] == 0.0 and bound.fpr[-1] == 1.0
    assert np.all(np.diff(bound.fpr) > 0)
    assert bound.fpr[1] <= 1e-6  # dense near 0
    assert bound.max_tpr.shape == bound.fpr.shape
    assert np.all(bound.max_tpr >= bound.fpr) and np.all(bound.max_tpr <= 1.0)
    assert np.all(np.diff(bound.max_tpr) >= -1e-12)
    assert 0.5 - 1e-9 <= bound.max_auc <= 1.0


def test_single_pair_zero_epsilon_zero_delta_is_random_guessing():
    bound = single_pair_attack_bound(epsilon=0.0, delta=0.0)
    np.testing.assert_allclose(bound.max_tpr, bound.fpr, atol=1e-15)
    assert bound.max_auc == pytest.approx(0.5, abs=1e-12)
    assert bound.method == "single-pair" and bound.group_size == 1 and not bound.vacuous


@pytest.mark.parametrize(
    ("epsilon", "delta", "fpr", "expected"),
    [
        (np.log(3), 0.0, 0.1, 0.3),  # e^ε·FPR
        (np.log(3), 0.0, 0.5, 1 - 0.5 / 3),  # 1 − e^−ε·(1 − FPR)
        (1.0, 0.1, 0.05, np.e * 0.05 + 0.1),
        (1.0, 0.1, 0.6, 1 - np.exp(-1) * (1 - 0.1 - 0.6)),
        (2.0, 0.5, 0.0, 0.5),  # δ alone at FPR = 0
    ],
)
def test_single_pair_matches_closed_form(epsilon, delta, fpr, expected):
    bound = single_pair_attack_bound(epsilon=epsilon, delta=delta)
    assert bound.max_tpr_at(fpr) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0, 5.0])
def test_pure_gaussian_mechanism_matches_exact_tradeoff(sigma):
    # q = 1, T = 1: the Gaussian mechanism, whose tradeoff is TPR = Φ(Φ⁻¹(FPR) + 1/σ).
    bound = dp_sgd_attack_bound(noise_multiplier=sigma, sample_rate=1.0, steps=1)
    exact = norm.cdf(norm.ppf(bound.fpr) + 1 / sigma)
    assert np.all(bound.max_tpr >= exact - 1e-9)  # a valid (upper) bound ...
    np.testing.assert_allclose(bound.max_tpr, exact, atol=1e-4)  # ... and a tight one
    assert bound.max_auc == pytest.approx(norm.cdf(1 / (sigma * np.sqrt(2))), abs=1e-4)
    assert bound.method == "pld"
    assert_valid_bound(bound)


def test_group_with_full_sampling_is_gaussian_with_sensitivity_k():
    # q = 1: all k records are always in the batch, so the group's sensitivity is exactly k.
    bound = dp_sgd_attack_bound(noise_multiplier=4.0, sample_rate=1.0, steps=1, group_size=2)
    assert bound.method == "pld-mixture" and bound.group_size == 2
    assert bound.max_auc == pytest.approx(norm.cdf(2 / (4.0 * np.sqrt(2))), abs=1e-4)


def test_profile_delta_at_calibrated_epsilon_matches_calibration_target():
    accountant = PRVAccountant()
    accountant.history = [(SIGMA_EPS8, Q, STEPS)]
    epsilon = accountant.get_epsilon(delta=1e-5)  # an independent accountant's ε for this σ
    assert epsilon == pytest.approx(8.0, abs=0.02)
    delta = privacy_profile(
        noise_multiplier=SIGMA_EPS8, sample_rate=Q, steps=STEPS, epsilons=np.array([epsilon])
    )
    assert delta.shape == (1,)
    assert delta[0] == pytest.approx(1e-5, rel=0.05)


def test_profile_is_a_decreasing_delta_curve():
    epsilons = np.linspace(0, 10, 21)
    delta = privacy_profile(noise_multiplier=1.0, sample_rate=0.1, steps=50, epsilons=epsilons)
    assert np.all(np.diff(delta) <= 0) and np.all((delta >= 0) & (delta <= 1))
    # Exact Gaussian mechanism profile: δ(ε) = Φ(−εσ + 1/2σ) − e^ε Φ(−εσ − 1/2σ), σ = 1.
    exact = norm.cdf(-epsilons[:5] + 0.5) - np.exp(epsilons[:5]) * norm.cdf(-epsilons[:5] - 0.5)
    gaussian = privacy_profile(
        noise_multiplier=1.0, sample_rate=1.0, steps=1, epsilons=epsilons[:5]
    )
    np.testing.assert_allclose(gaussian, exact, rtol=1e-3)


def test_mixture_with_one_record_equals_plain_subsampled_gaussian():
    sigma, q, steps = 1.2, 0.05, 100
    epsilons = np.linspace(0, 6, 13)
    plain = privacy_profile(noise_multiplier=sigma, sample_rate=q, steps=steps, epsilons=epsilons)
    counts = np.arange(2)
    mixture = pld_lib.from_mixture_gaussian_mechanism(
        sigma,
        sensitivities=counts.astype(float),
        sampling_probs=binom.pmf(counts, 1, q),
        value_discretization_interval=2e-3,
    ).self_compose(steps)
    # Equal down to the PLDs' truncated tail mass (~1e-15).
    np.testing.assert_allclose(
        plain, mixture.get_delta_for_epsilon(epsilons), rtol=1e-3, atol=1e-13
    )


@pytest.mark.parametrize(("sigma", "q", "steps", "k"), [(1.5, Q, STEPS, 2), (3.0, 0.05, 300, 4)])
def test_mixture_never_looser_than_group_privacy(sigma, q, steps, k):
    kwargs = dict(noise_multiplier=sigma, sample_rate=q, steps=steps, group_size=k)
    mixture = dp_sgd_attack_bound(**kwargs)
    group = group_privacy_attack_bound(**kwargs)
    assert group.method == "group-privacy" and group.group_size == k
    assert np.all(mixture.max_tpr <= group.max_tpr + 1e-9)
    assert mixture.max_auc <= group.max_auc
    assert_valid_bound(mixture)
    assert_valid_bound(group)


def test_group_privacy_for_one_record_is_the_record_bound():
    kwargs = dict(noise_multiplier=2.0, sample_rate=0.1, steps=100)
    group = group_privacy_attack_bound(group_size=1, **kwargs)
    record = dp_sgd_attack_bound(**kwargs)
    np.testing.assert_allclose(group.max_tpr, record.max_tpr, atol=1e-12)


def test_more_noise_means_smaller_max_auc():
    aucs = [
        dp_sgd_attack_bound(noise_multiplier=s, sample_rate=0.05, steps=300).max_auc
        for s in (0.8, 1.2, 2.0, 4.0)
    ]
    assert all(a > b for a, b in itertools.pairwise(aucs))


def test_bigger_group_means_larger_max_auc():
    aucs = [
        dp_sgd_attack_bound(noise_multiplier=5.0, sample_rate=0.05, steps=100, group_size=k).max_auc
        for k in (1, 2, 3, 5)
    ]
    assert all(a < b for a, b in itertools.pairwise(aucs))
    assert aucs[-1] < VACUOUS_AUC


def test_profile_at_epsilon_8_is_far_tighter_than_the_single_pair():
    profile = dp_sgd_attack_bound(noise_multiplier=SIGMA_EPS8, sample_rate=Q, steps=STEPS)
    pair = single_pair_attack_bound(epsilon=8.0, delta=1e-5)
    assert 0.80 < profile.max_auc < 0.90 and not profile.vacuous
    assert pair.max_auc > 0.999 and pair.vacuous
    assert np.all(profile.max_tpr <= pair.max_tpr + 1e-9)  # the profile contains the pair


@pytest.mark.parametrize("sigma", [0.0, None])
def test_non_private_training_is_vacuous_without_accounting(sigma, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the accountant must not be called")

    monkeypatch.setattr(bounds.pld_lib, "from_gaussian_mechanism", fail)
    monkeypatch.setattr(bounds.pld_lib, "from_mixture_gaussian_mechanism", fail)
    for bound in (
        dp_sgd_attack_bound(noise_multiplier=sigma, sample_rate=0.1, steps=10, group_size=3),
        group_privacy_attack_bound(noise_multiplier=sigma, sample_rate=0.1, steps=10, group_size=3),
    ):
        assert bound.method == "non-private" and bound.group_size == 3
        assert np.all(bound.max_tpr == 1.0) and bound.max_auc == 1.0 and bound.vacuous
    delta = privacy_profile(
        noise_multiplier=sigma, sample_rate=0.1, steps=10, epsilons=np.array([0.0, 5.0])
    )
    np.testing.assert_array_equal(delta, [1.0, 1.0])


def test_max_tpr_at_interpolates_scalars_and_arrays():
    bound = single_pair_attack_bound(epsilon=np.log(2), delta=0.0)
    assert isinstance(bound.max_tpr_at(0.2), float)
    np.testing.assert_allclose(bound.max_tpr_at(np.array([0.0, 0.2, 1.0])), [0.0, 0.4, 1.0])
    with pytest.raises(ConfigError, match="fpr must be in"):
        bound.max_tpr_at(1.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(noise_multiplier=-1.0), "noise_multiplier must be >= 0 .*got -1.0"),
        (dict(noise_multiplier=float("nan")), "noise_multiplier .*got nan"),
        (dict(sample_rate=0.0), r"sample_rate must be in \(0, 1\], got 0.0"),
        (dict(sample_rate=1.5), r"sample_rate must be in \(0, 1\], got 1.5"),
        (dict(steps=0), "steps must be a positive integer, got 0"),
        (dict(steps=2.5), "steps must be a positive integer, got 2.5"),
        (dict(group_size=0), "group_size must be a positive integer, got 0"),
    ],
)
def test_bad_run_arguments_raise_config_error(kwargs, message):
    run = dict(noise_multiplier=1.0, sample_rate=0.1, steps=10) | kwargs
    with pytest.raises(ConfigError, match=message):
        dp_sgd_attack_bound(**run)
    with pytest.raises(ConfigError, match=message):
        privacy_profile(**run, epsilons=np.array([1.0]))


def test_bad_pair_and_epsilons_raise_config_error():
    with pytest.raises(ConfigError, match=r"epsilon must be in .*got -1"):
        single_pair_attack_bound(epsilon=-1, delta=0.0)
    with pytest.raises(ConfigError, match=r"delta must be in \[0, 1\], got 2"):
        single_pair_attack_bound(epsilon=1.0, delta=2)
    with pytest.raises(ConfigError, match="epsilons must be finite and >= 0"):
        privacy_profile(noise_multiplier=1.0, sample_rate=0.1, steps=1, epsilons=np.array([-1.0]))


@settings(max_examples=40, deadline=None)
@given(
    epsilon=st.floats(0.0, 20.0),
    delta=st.floats(0.0, 0.5),
    extra_epsilon=st.floats(0.0, 2.0),
    extra_delta=st.floats(0.0, 0.1),
)
def test_single_pair_bounds_are_valid_and_monotone(epsilon, delta, extra_epsilon, extra_delta):
    bound = single_pair_attack_bound(epsilon=epsilon, delta=delta)
    looser = single_pair_attack_bound(epsilon=epsilon + extra_epsilon, delta=delta + extra_delta)
    assert_valid_bound(bound)
    assert np.all(bound.max_tpr <= looser.max_tpr + 1e-12)
    assert bound.max_auc <= looser.max_auc + 1e-12


# ------------------------------------------------ the mixture at thousands of records per patient


def exact_mixture_profile(sigma, q, steps, k, epsilons, interval):
    """All k + 1 components, nothing dropped: the computation before truncation."""
    counts = np.arange(k + 1)
    pld = pld_lib.from_mixture_gaussian_mechanism(
        sigma,
        sensitivities=counts.astype(float),
        sampling_probs=binom.pmf(counts, k, q),
        value_discretization_interval=interval,
    ).self_compose(steps)
    return np.asarray(pld.get_delta_for_epsilon(epsilons))


def test_mixture_components_drop_only_tails_below_the_budget():
    components = bounds._mixture_components(5000, 0.01, 1e-16)
    counts = components.counts
    assert len(counts) < 200 and np.all(np.diff(counts) == 1)
    assert counts[0] > 0 and counts[-1] < 5000  # both tails dropped around k q = 50
    assert 0 < components.tail_mass <= 1e-16
    dropped = binom.cdf(counts[0] - 1, 5000, 0.01) + binom.sf(counts[-1], 5000, 0.01)
    assert components.tail_mass == pytest.approx(dropped, rel=1e-6)
    assert components.weights.sum() == pytest.approx(1.0, abs=1e-12)
    small = bounds._mixture_components(4, 0.1, 1e-16)  # nothing negligible: the exact mixture
    assert small.counts.tolist() == [0, 1, 2, 3, 4] and small.tail_mass == 0.0


@pytest.mark.parametrize("run_tail_mass", [1e-14, 1e-3])
def test_truncated_mixture_is_an_upper_bound_on_the_exact_mixture(run_tail_mass):
    # k = 40, q = 0.05: j concentrates on 0..8, so a tail budget drops most of the 41 components.
    # 1e-3 is far above the default, to show the tail correction keeps the profile an upper bound.
    sigma, q, steps, k = 3.0, 0.05, 20, 40
    epsilons = np.linspace(0.0, 4.0, 17)
    profile = bounds._composed_pld(
        noise_multiplier=sigma,
        sample_rate=q,
        steps=steps,
        group_size=k,
        run_tail_mass=run_tail_mass,
    )
    kept = bounds._mixture_components(k, q, run_tail_mass / steps)
    assert len(kept.counts) <= 25 and kept.tail_mass > 0
    interval = bounds._VALUE_DISCRETIZATION_PER_RECORD * kept.counts[-1]
    exact = exact_mixture_profile(sigma, q, steps, k, epsilons, interval)
    truncated = profile.get_delta_for_epsilon(epsilons)
    assert np.all(truncated >= exact - 1e-12)  # never below the exact profile ...
    slack = steps * kept.tail_mass
    assert np.all(truncated <= exact * (1 + 1e-3) + 2 * slack + 1e-12)  # ... and no looser
    if run_tail_mass == 1e-14:
        np.testing.assert_allclose(truncated, exact, rtol=1e-3, atol=1e-12)


def test_patient_bound_at_thousands_of_records_is_fast_valid_and_monotone():
    import time

    started = time.perf_counter()
    kwargs = dict(noise_multiplier=2.0, sample_rate=2e-4, steps=500)
    big = dp_sgd_attack_bound(**kwargs, group_size=5000)
    bigger = dp_sgd_attack_bound(**kwargs, group_size=5200)
    huge_q = dp_sgd_attack_bound(noise_multiplier=1.0, sample_rate=0.05, steps=400, group_size=5000)
    assert time.perf_counter() - started < 10.0  # was minutes with 5,001 components
    for bound in (big, bigger, huge_q):
        assert_valid_bound(bound)
        assert bound.method == "pld-mixture"
    assert big.group_size == 5000
    assert np.all(big.max_tpr <= bigger.max_tpr + 2e-3)
    assert big.max_auc <= bigger.max_auc + 1e-3
    assert huge_q.vacuous
    record = dp_sgd_attack_bound(**kwargs)
    assert record.max_auc < big.max_auc
