"""Split-half reliability of the per-patient ranking."""

import numpy as np
import pytest

from dptrain.audit.reliability import spearman_brown, split_half_reliability
from dptrain.errors import DataError
from tests.audit.simulate import simulate_audit


def reliability(num_models, true_z, seed=0):
    signals, _, record_membership = simulate_audit(num_models=num_models, true_z=true_z, seed=seed)
    n = len(true_z)
    return split_half_reliability(
        signals, record_membership, np.arange(n), n_patients=n, rng=np.random.default_rng(seed)
    )


def test_patients_who_differ_in_leakage_are_ranked_alike_by_both_halves():
    true_z = np.random.default_rng(0).uniform(0, 2, 500)
    fit = reliability(32, true_z)
    assert fit.pairs_per_half == 8 and fit.num_splits == 10
    assert 0.6 < fit.half_rho < fit.full_rho < 1
    assert fit.full_rho == pytest.approx(spearman_brown(fit.half_rho))


def test_pure_noise_has_no_reliability_and_more_models_help_a_real_spread():
    assert abs(reliability(32, np.zeros(500)).half_rho) < 0.1
    true_z = np.random.default_rng(1).uniform(0, 0.6, 500)
    assert reliability(16, true_z).half_rho < reliability(64, true_z).half_rho


def test_reliability_needs_two_pairs_per_half_and_complementary_pairs():
    assert np.isnan(reliability(6, np.zeros(50)).full_rho)
    signals, _, record_membership = simulate_audit(num_models=8, true_z=np.zeros(50), seed=0)
    broken = record_membership[[0, 2, 1, 3, 4, 5, 6, 7]]
    with pytest.raises(DataError, match="complementary pairs"):
        split_half_reliability(
            signals, broken, np.arange(50), n_patients=50, rng=np.random.default_rng(0)
        )


def test_spearman_brown_is_the_reliability_of_a_longer_test():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(0.25, factor=4) == pytest.approx(0.5714285714)
