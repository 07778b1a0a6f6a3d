"""Per-patient p-values and the FDR list: finds planted leaky patients, stays empty on noise."""

import numpy as np
import pytest

from dptrain.audit.fdr import benjamini_hochberg, patient_exposure
from dptrain.audit.paired import (
    check_complementary_pairs,
    pair_differences,
    paired_t,
    patient_p_values,
)
from dptrain.errors import ConfigError, DataError
from tests.audit.simulate import simulate_audit


def naive_bh_rejections(p_values, rate):
    """Step-up rule by hand: reject the k smallest, k the largest with p_(k) ≤ k·rate/m."""
    order = np.argsort(p_values)
    m = len(p_values)
    passing = [k for k in range(1, m + 1) if p_values[order[k - 1]] <= k * rate / m]
    rejected = np.zeros(m, dtype=bool)
    if passing:
        rejected[order[: max(passing)]] = True
    return rejected


@pytest.mark.parametrize("seed", range(5))
def test_q_values_reject_what_the_step_up_rule_rejects(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate((rng.uniform(size=180), rng.uniform(0, 0.002, size=20)))
    q = benjamini_hochberg(p)
    for rate in (0.01, 0.05, 0.2):
        np.testing.assert_array_equal(q <= rate, naive_bh_rejections(p, rate))
    assert np.all(q >= p * (1 - 1e-12)) and np.all(q <= 1)


def test_paired_t_matches_a_loop_over_records():
    rng = np.random.default_rng(0)
    signals, _, record_membership = simulate_audit(
        num_models=12, true_z=rng.uniform(0, 1, 50), seed=0
    )
    t, dof = paired_t(pair_differences(signals, record_membership))
    assert dof == 5
    for record in range(50):
        d = [
            signals[2 * j, record] - signals[2 * j + 1, record]
            if record_membership[2 * j, record]
            else signals[2 * j + 1, record] - signals[2 * j, record]
            for j in range(6)
        ]
        assert t[record] == pytest.approx(np.mean(d) / (np.std(d, ddof=1) / np.sqrt(6)))


def test_a_patient_is_tested_on_their_most_exposed_record_with_bonferroni():
    p = patient_p_values(np.array([0.3, 0.001, 0.02, np.nan]), np.array([0, 0, 1, 2]), n_patients=3)
    np.testing.assert_allclose(p, [0.002, 0.02, np.nan])


def test_planted_leaky_patients_are_found_at_the_stated_false_discovery_rate():
    """200 leaky patients (true AUC 0.92) among 1,800 null ones, 20 independent audits at K = 32."""
    n_patients, leaky = 2000, np.arange(2000) < 200
    proportions, recalls = [], []
    for seed in range(20):
        signals, _, record_membership = simulate_audit(
            num_models=32, true_z=np.where(leaky, 1.4, 0.0), seed=seed
        )
        found = patient_exposure(
            signals, record_membership, np.arange(n_patients), n_patients=n_patients, rate=0.05
        )
        proportions.append(np.sum(found.exposed & ~leaky) / max(found.n_exposed, 1))
        recalls.append(np.mean(found.exposed[leaky]))
    assert np.mean(proportions) <= 0.05 * 0.9 + 0.01  # E[FDP] ≤ rate · m0/m, plus MC slack
    assert np.mean(recalls) > 0.9


def test_patients_with_several_records_keep_the_rate():
    """Patients of 1-3 records, one leaky record each among the leaky patients."""
    rng = np.random.default_rng(1)
    record_patient = np.sort(rng.integers(0, 600, 1200))
    record_patient = np.unique(record_patient, return_inverse=True)[1]
    n_patients = int(record_patient.max()) + 1
    leaky_patient = np.arange(n_patients) < 60
    first_record = np.r_[True, record_patient[1:] != record_patient[:-1]]
    true_z = np.where(first_record & leaky_patient[record_patient], 2.0, 0.0)
    proportions = []
    for seed in range(20):
        signals, _, record_membership = simulate_audit(
            num_models=32, true_z=true_z, seed=seed, record_patient=record_patient
        )
        found = patient_exposure(signals, record_membership, record_patient, n_patients=n_patients)
        proportions.append(np.sum(found.exposed & ~leaky_patient) / max(found.n_exposed, 1))
        assert np.mean(found.exposed[leaky_patient]) > 0.8
    assert np.mean(proportions) <= 0.05


@pytest.mark.parametrize("noise", ["gaussian", "heavy-tailed"])
def test_without_membership_effect_the_list_is_empty_in_95_percent_of_seeds(noise):
    """Global null: BH's chance of any discovery is at most the rate (5 %)."""
    n_patients, num_models, seeds = 300, 16, 1000
    rng = np.random.default_rng(0 if noise == "gaussian" else 1)
    empty = 0
    for seed in range(seeds):
        _, _, record_membership = simulate_audit(
            num_models=num_models, true_z=np.zeros(n_patients), seed=seed
        )
        if noise == "gaussian":
            signals = rng.normal(size=(num_models, n_patients))
        else:
            signals = rng.standard_t(2, size=(num_models, n_patients))
        found = patient_exposure(
            signals, record_membership, np.arange(n_patients), n_patients=n_patients
        )
        empty += found.n_exposed == 0
    standard_error = np.sqrt(0.05 * 0.95 / seeds)
    assert empty / seeds >= 0.95 - 2.5 * standard_error  # 0.933: 95 % within sampling error


def test_bad_rate_and_broken_pairs_are_rejected():
    signals, _, record_membership = simulate_audit(num_models=4, true_z=np.zeros(10), seed=0)
    with pytest.raises(ConfigError, match=r"audit\.fdr must be in"):
        patient_exposure(signals, record_membership, np.arange(10), n_patients=10, rate=0.0)
    broken = record_membership.copy()
    broken[1] = broken[0]
    with pytest.raises(DataError, match="pair 0 is not"):
        check_complementary_pairs(broken)


def test_a_few_records_with_outlying_variance_keep_the_rate():
    """2 % of records with 5× the others' spread, no membership effect, K = 16.

    The list tests each record on its own variance. Pooling variances across records (Smyth
    2004's moderated t, tried here) shrinks these records' variances too far: it flagged someone
    in 8.8 % of these null audits, against 4.3 % on each record's own variance.
    """
    n_patients, seeds, empty = 300, 400, 0
    rng = np.random.default_rng(5)
    for seed in range(seeds):
        _, _, record_membership = simulate_audit(
            num_models=16, true_z=np.zeros(n_patients), seed=seed
        )
        spread = np.where(rng.random(n_patients) < 0.02, 5.0, 1.0)
        signals = rng.normal(size=(16, n_patients)) * spread
        found = patient_exposure(
            signals, record_membership, np.arange(n_patients), n_patients=n_patients
        )
        empty += found.n_exposed == 0
    assert empty / seeds >= 0.95 - 2.5 * np.sqrt(0.05 * 0.95 / seeds)
