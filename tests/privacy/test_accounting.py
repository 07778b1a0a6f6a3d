import math

import pytest
from opacus.accountants import RDPAccountant

from dptrain.errors import ConfigError
from dptrain.privacy.accounting import (
    PrivacyConfig,
    calibrate_noise,
    epsilon_spent,
    rdp_epsilon_curve,
)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"epsilon": 0.0},
            r"privacy\.epsilon must be > 0 \(inf: the non-private baseline\), got 0\.0",
        ),
        ({"epsilon": -1.0}, r"got -1.0"),
        ({"epsilon": -math.inf}, r"got -inf"),
        ({"epsilon": math.nan}, r"got nan"),
        ({"delta": 0.0}, r"privacy.delta must be in \(0, 1\), got 0.0"),
        ({"delta": 1.5}, r"got 1.5"),
        ({"max_grad_norm": 0.0}, r"privacy.max_grad_norm must be > 0"),
        ({"accountant": "gdp"}, r"privacy.accountant must be one of \['prv', 'rdp'\]"),
        ({"grad_sample_mode": "fast"}, r"privacy.grad_sample_mode must be one of"),
        ({"mode": "maybe"}, r"privacy.mode must be one of"),
    ],
)
def test_invalid_privacy_settings_fail_with_the_field_named(changes, message):
    with pytest.raises(ConfigError, match=message):
        PrivacyConfig(**changes)


def test_infinite_epsilon_is_the_non_private_baseline():
    baseline = PrivacyConfig(epsilon=math.inf, accountant="rdp")
    assert baseline.mode == "none" and not baseline.private
    assert baseline.accountant == "rdp" and baseline.unit == "auto"  # the rest of the recipe kept


def test_default_delta_is_well_below_one_over_n():
    for n in (50, 1711, 200_000):
        delta = PrivacyConfig().resolve_delta(n)
        assert delta <= min(1e-5, 0.1 / n)


def test_delta_at_or_above_one_over_n_is_rejected():
    with pytest.raises(
        ConfigError, match=r"privacy.delta=0.01 is not below 1/N = 0.01 for N = 100"
    ):
        PrivacyConfig(delta=0.01).resolve_delta(100)
    assert PrivacyConfig(delta=0.001).resolve_delta(100) == 0.001


def test_calibrated_noise_spends_at_most_the_target():
    sigma = calibrate_noise(epsilon=2.0, delta=1e-5, sample_rate=0.1, steps=100, accountant="prv")
    spent = epsilon_spent(
        noise_multiplier=sigma, sample_rate=0.1, steps=100, delta=1e-5, accountant="prv"
    )
    assert 1.95 <= spent <= 2.0
    # a slightly smaller sigma would overspend: the calibration is tight
    assert (
        epsilon_spent(
            noise_multiplier=sigma * 0.95, sample_rate=0.1, steps=100, delta=1e-5, accountant="prv"
        )
        > 2.0
    )


def test_unreachable_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot be reached"):
        calibrate_noise(epsilon=1e-9, delta=1e-12, sample_rate=1.0, steps=10**6, accountant="rdp")


def test_rdp_curve_matches_opacus_rdp_accountant_and_grows():
    curve = rdp_epsilon_curve(
        noise_multiplier=1.2, sample_rate=0.05, steps=(20, 40, 60), delta=1e-5
    )
    accountant = RDPAccountant()
    accountant.history = [(1.2, 0.05, 60)]
    assert curve[0] < curve[1] < curve[2]
    assert curve[2] == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=1e-9)


def test_an_absurd_budget_is_refused_before_any_calibration_pointing_to_the_baseline():
    from dptrain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"above 100.*privacy=none"):
        PrivacyConfig(epsilon=1e9)  # used to spend 15 minutes in σ calibration
    assert PrivacyConfig(epsilon=100.0).epsilon == 100.0
    assert PrivacyConfig(mode="none", epsilon=1e9).private is False  # the baseline ignores ε
