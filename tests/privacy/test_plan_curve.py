"""The per-epoch ε curve comes from the configured accountant and ends at the headline ε."""

import pytest

from dptrain.privacy.accounting import PrivacyConfig, epsilon_spent
from dptrain.privacy.plan import PrivacyPlan, accountant_epsilon_curve


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_every_epoch_matches_the_accountant_and_the_last_is_the_headline(accountant):
    plan = PrivacyPlan.for_training_set(
        PrivacyConfig(epsilon=4.0, accountant=accountant), n_units=500, batch_size=50, epochs=4
    )
    spend = plan.spend()
    assert plan.epsilon_curve[-1] == spend.epsilon  # what trackers plot ends at the headline
    assert plan.epsilon_rdp_curve[-1] == spend.epsilon_rdp
    for epoch, epsilon in enumerate(plan.epsilon_curve):
        reference = epsilon_spent(
            noise_multiplier=plan.noise_multiplier,
            sample_rate=plan.sample_rate,
            steps=(epoch + 1) * plan.steps_per_epoch,
            delta=plan.delta,
            accountant=accountant,
        )
        assert epsilon == pytest.approx(reference, abs=1e-3)  # one accountant call per epoch
    assert list(plan.epsilon_curve) == sorted(plan.epsilon_curve)


def test_prv_curve_is_below_the_rdp_curve_it_replaces():
    plan = PrivacyPlan.for_training_set(
        PrivacyConfig(epsilon=8.0), n_units=1000, batch_size=100, epochs=3
    )
    assert plan.privacy.accountant == "prv"
    assert all(p < r for p, r in zip(plan.epsilon_curve, plan.epsilon_rdp_curve))
    assert plan.epsilon_curve[-1] <= 8.0 < plan.epsilon_rdp_curve[-1]


def test_a_long_curve_costs_little_and_matches_opacus_at_uneven_steps():
    steps = (7, 30, 31, 100)  # gaps of every parity, as the shared-FFT composition handles them
    curve = accountant_epsilon_curve(
        noise_multiplier=1.1, sample_rate=0.05, steps=steps, delta=1e-5, accountant="prv"
    )
    reference = [
        epsilon_spent(
            noise_multiplier=1.1, sample_rate=0.05, steps=count, delta=1e-5, accountant="prv"
        )
        for count in steps
    ]
    assert curve == pytest.approx(reference, abs=1e-3)
