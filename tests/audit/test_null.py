"""The noise floor: pure-noise figures from the run's own signals, whatever their leakage."""

import numpy as np
import pytest

from dptrain.audit.metrics import record_vulnerability
from dptrain.audit.null import null_floor
from dptrain.audit.patients import aggregate_by_patient
from tests.audit.simulate import simulate_audit

N_PATIENTS = 2000


def floor_of(signals, membership, *, repeats=3, attack_auc=None, seed=1):
    return null_floor(
        signals=signals,
        membership=membership,
        record_patient=np.arange(signals.shape[1]),
        patient_labels=np.zeros(membership.shape[1], dtype=np.int64),
        thresholds=(0.8, 0.9),
        repeats=repeats,
        seed=seed,
        attack_auc=attack_auc,
        attack_name="toy",
    )


@pytest.mark.parametrize(("num_models", "expected_max"), [(16, 0.94), (64, 0.74), (128, 0.67)])
def test_floor_matches_the_pure_noise_simulation(num_models, expected_max):
    """Issue 7's pure-noise maxima for ~2,000 patients: 0.94 (K=16), 0.74 (64), 0.67 (128)."""
    signals, membership, _ = simulate_audit(
        num_models=num_models, true_z=np.zeros(N_PATIENTS), seed=0
    )
    floor = floor_of(signals, membership)
    assert floor.band(floor.max_auc)[0] == pytest.approx(expected_max, abs=0.03)
    assert floor.band(floor.median_auc)[0] == pytest.approx(0.5, abs=0.01)
    assert floor.max_auc.shape == (3,) and floor.share_above.shape == (3, 2)
    assert np.all(floor.share_above[:, 0] >= floor.share_above[:, 1])


def test_floor_of_leaky_signals_is_the_pure_noise_floor():
    """The membership effect is removed before re-labelling: leakage does not raise the floor."""
    true_z = np.where(np.arange(N_PATIENTS) < 1000, 2.0, 0.0)  # half the patients leak a lot
    leaky, membership, record_membership = simulate_audit(num_models=32, true_z=true_z, seed=2)
    noise, noise_membership, _ = simulate_audit(num_models=32, true_z=np.zeros(N_PATIENTS), seed=3)
    leaky_floor = floor_of(leaky, membership)
    noise_floor = floor_of(noise, noise_membership)
    for figure in ("p99_auc", "max_auc"):
        assert leaky_floor.band(getattr(leaky_floor, figure))[0] == pytest.approx(
            noise_floor.band(getattr(noise_floor, figure))[0], abs=0.02
        )
    # Re-labelling the raw signals instead mixes true IN and OUT on each side: a higher floor.
    rng = np.random.default_rng(0)
    swap = np.repeat(rng.random((16, N_PATIENTS)) < 0.5, 2, axis=0)
    naive = record_vulnerability(leaky, record_membership ^ swap).auc
    naive_p99 = np.percentile(
        aggregate_by_patient(naive, np.arange(N_PATIENTS), n_patients=N_PATIENTS), 99
    )
    assert naive_p99 > leaky_floor.band(leaky_floor.p99_auc)[0] + 0.03


def test_attack_floor_sits_at_chance_and_the_list_stays_empty():
    true_z = np.where(np.arange(N_PATIENTS) < 200, 2.0, 0.0)
    signals, membership, _ = simulate_audit(num_models=16, true_z=true_z, seed=4)
    seen = []

    def attack_auc(null_signals, null_membership):
        seen.append(null_membership)
        in_mean = np.where(null_membership, null_signals, 0).sum(0) / null_membership.sum(0)
        out_mean = np.where(~null_membership, null_signals, 0).sum(0) / (~null_membership).sum(0)
        return float(np.mean(in_mean > out_mean))  # share of records whose IN side looks higher

    floor = floor_of(signals, membership, repeats=5, attack_auc=attack_auc)
    assert floor.attack == "toy" and floor.attack_auc.shape == (5,)
    assert floor.band(floor.attack_auc)[0] == pytest.approx(0.5, abs=0.03)
    assert floor.fdr_list_empty_share >= 0.8
    # every re-labelling keeps complementary pairs and differs from the truth and each other
    for fake in seen:
        assert np.all(fake[0::2] == ~fake[1::2])
        assert 0.4 < np.mean(fake == membership) < 0.6
    assert not np.array_equal(seen[0], seen[1])


def test_floor_is_reproducible_under_its_seed():
    signals, membership, _ = simulate_audit(num_models=8, true_z=np.zeros(300), seed=5)
    first, again = floor_of(signals, membership, seed=7), floor_of(signals, membership, seed=7)
    other = floor_of(signals, membership, seed=8)
    np.testing.assert_array_equal(first.max_auc, again.max_auc)
    assert not np.array_equal(first.max_auc, other.max_auc)


@pytest.mark.parametrize("num_models", [4, 8])
def test_the_fdr_list_floor_holds_its_rate_at_small_k(num_models):
    """Pure noise: the FDR list must be empty in about 95 % of re-labellings at any K.

    Moving each record's sides exactly to the midpoint left pair differences that sum to zero;
    re-labelled, their signs agreed far too often and the floor said the list was non-empty in
    every re-labelling at K = 4 (22 % at K = 8).
    """
    empty = []
    for seed in range(4):  # the floor is conditional on the signals: pool four sets of them
        signals, membership, _ = simulate_audit(
            num_models=num_models, true_z=np.zeros(500), seed=num_models + seed
        )
        floor = floor_of(signals, membership, repeats=100, seed=1)
        empty.append(floor.fdr_list_empty_share)
    assert np.mean(empty) >= 0.95 - 2.5 * np.sqrt(0.05 * 0.95 / 400)


def test_the_false_alarm_warning_needs_more_than_chance():
    """Binomial(20, 5 %): 4 non-empty lists happen by chance (p = 0.016), 5 hardly (p = 0.003)."""
    from dataclasses import replace

    from dptrain.audit.run import null_false_alarm_warning

    signals, membership, _ = simulate_audit(num_models=16, true_z=np.zeros(200), seed=9)
    floor = floor_of(signals, membership, repeats=20)
    for alarms, warns in ((0, False), (4, False), (5, True), (20, True)):
        lists = np.r_[np.ones(alarms, dtype=np.int64), np.zeros(20 - alarms, dtype=np.int64)]
        message = null_false_alarm_warning(replace(floor, exposed_fdr=lists), 0.05)
        assert (message is not None) == warns, alarms
    assert "5 of 20" in null_false_alarm_warning(
        replace(floor, exposed_fdr=np.r_[[1] * 5, [0] * 15]), 0.05
    )
    few = replace(floor, repeats=5, exposed_fdr=np.ones(5, dtype=np.int64))
    assert null_false_alarm_warning(few, 0.05) is None
