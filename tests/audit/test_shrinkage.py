"""Empirical-Bayes share of patients at risk: recovers a planted share, the same at every K."""

import numpy as np
from scipy.stats import norm, spearmanr

from dptrain.audit.paired import pair_differences, paired_t
from dptrain.audit.shrinkage import deconvolve_patient_auc, deconvolve_t_statistics
from tests.audit.simulate import simulate_audit

N_PATIENTS, PLANTED = 1500, 0.10


def deconvolve(num_models, true_z, seed, *, record_patient=None, num_bootstrap=30, **simulation):
    """The audit's fit to a simulated audit (`simulate_audit` options in ``simulation``), and
    the raw AUCs Φ(t/√(K/2))."""
    signals, _, record_membership = simulate_audit(
        num_models=num_models,
        true_z=true_z,
        seed=seed,
        record_patient=record_patient,
        **simulation,
    )
    t, dof = paired_t(pair_differences(signals, record_membership))
    record_patient = np.arange(len(true_z)) if record_patient is None else record_patient
    fit = deconvolve_patient_auc(
        signals=signals,
        record_membership=record_membership,
        record_patient=record_patient,
        n_patients=int(record_patient.max()) + 1,
        thresholds=(0.8, 0.9),
        num_bootstrap=num_bootstrap,
        rng=np.random.default_rng(seed),
    )
    return fit, norm.cdf(t / np.sqrt(dof + 1))


def fit_on_the_paired_scale(signals, record_membership):
    """The fit to the paired t statistics read as Φ(μ_d/σ_d) (no per-record factor), and the t's."""
    t, dof = paired_t(pair_differences(signals, record_membership))
    fit = deconvolve_t_statistics(
        t_statistics=t,
        dof=dof,
        n_pairs=dof + 1,
        record_patient=np.arange(t.size),
        n_patients=t.size,
        thresholds=(0.8,),
        num_bootstrap=0,
        rng=np.random.default_rng(0),
    )
    return fit, t


def test_planted_share_is_recovered_within_its_interval_and_is_stable_across_k():
    """10 % of patients at true AUC 0.98, the rest at 0.5: raw shares above 0.8 are inflated."""
    true_z = np.where(np.arange(N_PATIENTS) < PLANTED * N_PATIENTS, 2.0, 0.0)
    estimates = {}
    for num_models in (16, 64):
        fit, raw_auc = deconvolve(num_models, true_z, seed=num_models)
        for index in range(2):
            assert fit.share_lower[index] <= PLANTED <= fit.share_upper[index], num_models
        estimates[num_models] = fit.share_above[0]
        if num_models == 16:
            assert np.mean(raw_auc > 0.8) > PLANTED + 0.015  # raw shares are inflated by noise
    assert abs(estimates[16] - estimates[64]) < 0.02


def test_without_leakage_the_estimated_share_is_near_zero_and_auc_shrinks_to_one_half():
    fit, raw_auc = deconvolve(16, np.zeros(N_PATIENTS), seed=3)
    assert raw_auc.max() > 0.9  # the noisiest raw estimates look alarming
    assert fit.share_above[0] < 0.01 and fit.share_upper[0] < 0.03
    assert np.max(fit.shrunken_auc) < 0.65
    # On one scale (the paired t's), shrinking keeps the order; each record's own factor to the
    # audit's AUC scale then moves records past each other only a little.
    assert spearmanr(fit.shrunken_auc, raw_auc).statistic > 0.9
    signals, _, record_membership = simulate_audit(num_models=16, true_z=np.zeros(300), seed=3)
    one_scale, t = fit_on_the_paired_scale(signals, record_membership)
    assert np.all(np.diff(one_scale.shrunken_auc[np.argsort(t)]) >= -1e-9)


def test_a_patient_is_at_risk_if_any_of_their_records_is():
    """The prior is fitted per record, so grouping records into patients only combines them."""
    true_z = np.where(np.arange(400) % 5 == 0, 1.5, 0.0)
    signals, _, record_membership = simulate_audit(num_models=32, true_z=true_z, seed=4)
    fits = [
        deconvolve_patient_auc(
            signals=signals,
            record_membership=record_membership,
            record_patient=record_patient,
            n_patients=record_patient.max() + 1,
            thresholds=(0.8, 0.9),
            num_bootstrap=0,
            rng=np.random.default_rng(0),
        )
        for record_patient in (np.arange(400), np.arange(400) // 2)
    ]
    alone, grouped = fits
    tails = alone.tail_probability.reshape(200, 2, 2)
    np.testing.assert_allclose(
        grouped.tail_probability, 1 - (1 - tails[:, 0]) * (1 - tails[:, 1]), atol=1e-9
    )
    assert np.all(grouped.shrunken_auc >= alone.shrunken_auc.reshape(200, 2).max(axis=1) - 1e-9)
    assert np.isnan(grouped.share_lower).all()  # no bootstrap, no interval


def test_too_few_pairs_give_an_undefined_estimate():
    fit = deconvolve_patient_auc(
        signals=np.zeros((2, 5)),
        record_membership=np.array([[True] * 5, [False] * 5]),
        record_patient=np.arange(5),
        n_patients=5,
        thresholds=(0.8,),
        rng=np.random.default_rng(0),
    )
    assert np.isnan(fit.share_above).all() and np.isnan(fit.shrunken_auc).all()
    assert fit.num_bootstrap == 0
    # Two pairs give an estimate (1 dof) but no jackknife over pairs, so no interval.
    fit, _ = deconvolve(4, np.zeros(50), seed=0, num_bootstrap=5)
    assert np.isfinite(fit.share_above).all() and np.isnan(fit.share_lower).all()
    assert fit.jackknife_groups == 0


def realistic_true_z(n_records, seed):
    """ACTG 175's shape: AUCs falling off steeply above 0.5 and a few memorised records at ≈ 1."""
    rng = np.random.default_rng(seed)
    bulk = norm.ppf(0.5 + rng.exponential(0.06, n_records).clip(max=0.45))
    return np.where(rng.random(n_records) < 0.97, bulk, rng.uniform(2.5, 5.0, n_records))


def test_a_realistic_share_is_recovered_at_k_16_and_k_256_within_one_point():
    true_z = realistic_true_z(2000, seed=7)
    planted = np.mean(true_z > norm.ppf(0.8))  # 3.7 %
    estimates = {}
    for num_models in (16, 256):
        fit, _ = deconvolve(num_models, true_z, seed=num_models, num_bootstrap=20)
        assert fit.share_lower[0] <= planted <= fit.share_upper[0], num_models
        assert fit.jackknife_groups == min(num_models // 2, 16)
        estimates[num_models] = fit.share_above[0]
    assert abs(estimates[16] - estimates[256]) < 0.01


def test_the_smoothing_penalty_fades_with_more_records():
    """With many records the estimate at K = 16 converges to the truth.

    A penalty charged per record (as an earlier version did) never fades: on this shape it kept
    the K = 16 estimate 0.5 points above the truth however many records there were, and on ACTG
    175's real signals 1.4 points below what K = 128 reads.
    """
    true_z = realistic_true_z(6000, seed=7)
    fit, _ = deconvolve(16, true_z, seed=1, num_bootstrap=0)
    assert abs(fit.share_above[0] - np.mean(true_z > norm.ppf(0.8))) < 0.003


def test_the_likelihood_is_the_exact_noncentral_t_density_where_scipy_gives_it():
    """At K = 64 (31 dof) the normal that used to stand in was off by 0.15 in log density."""
    from scipy.stats import nct

    from dptrain.audit.shrinkage import _GRID_Z, _likelihood

    t = np.array([-1.0, 0.0, 3.0, 8.0])
    likelihood = _likelihood(t, 31, 32)
    exact = nct.pdf(t[:, None], 31, np.sqrt(32) * _GRID_Z[None, :])
    np.testing.assert_allclose(
        likelihood, exact / exact.max(axis=1, keepdims=True), rtol=1e-6, atol=1e-9
    )


def test_the_share_is_read_on_the_audits_auc_scale_when_a_pairs_models_correlate():
    """Complementary halves make a pair's two signals on a record correlate (−0.37 on ACTG 175):
    the paired differences then vary more than an IN and an independent OUT model do, and their
    effect size alone (the estimator before its per-record factor) understates true AUCs."""
    # 30 % of records spread evenly over AUC 0.5-0.98: 17.3 % above 0.8, many of them near it.
    true_z = np.where(np.arange(2000) % 10 < 3, np.linspace(0.0, 2.0, 2000), 0.0)
    planted = np.mean(true_z > norm.ppf(0.8))
    fit, _ = deconvolve(64, true_z, seed=5, num_bootstrap=20, pair_correlation=-0.5)
    signals, _, record_membership = simulate_audit(
        num_models=64, true_z=true_z, seed=5, pair_correlation=-0.5
    )
    assert abs(fit.share_above[0] - planted) < 0.01  # 17.6 %
    assert fit.share_lower[0] <= planted <= fit.share_upper[0]
    paired_scale, _ = fit_on_the_paired_scale(signals, record_membership)
    assert paired_scale.share_above[0] < planted - 0.015  # 15.2 %


def test_the_interval_covers_when_models_leak_together():
    """Models of one recipe differ in how much they overfit, on every record at once, so the
    records of one audit move together with its few models: a bootstrap over patients cannot see
    that, the jackknife over model pairs does. Eight independent K = 16 audits of the same
    patients: their estimates scatter by about the jackknife's standard error (which is
    conservative, Efron–Stein) and every interval covers the true share."""
    true_z = realistic_true_z(1000, seed=7)
    sd = 0.4
    truth = np.mean(true_z / np.sqrt(1 + true_z**2 * sd**2) > norm.ppf(0.8))
    estimates, model_sd, covered = [], [], 0
    for seed in range(8):
        fit, _ = deconvolve(
            16, true_z, 100 + seed, num_bootstrap=20, pair_correlation=-0.4, model_leak_sd=sd
        )
        assert fit.jackknife_groups == 8
        estimates.append(fit.share_above[0])
        model_sd.append(fit.model_sd[0])
        covered += fit.share_lower[0] <= truth <= fit.share_upper[0]
    assert covered == 8
    assert 0.7 < np.mean(model_sd) / np.std(estimates, ddof=1) < 4.0


def test_a_subgroup_reads_its_own_share_and_interval_from_the_cohorts_fit():
    """Leakage planted in a minority: 300 of 1,500 patients, a third of them at AUC 0.98."""
    minority = np.arange(N_PATIENTS) < 300
    true_z = np.where(minority & (np.arange(N_PATIENTS) % 3 == 0), 2.0, 0.0)
    fit, _ = deconvolve(32, true_z, seed=2, num_bootstrap=30, pair_correlation=-0.3)
    everyone = fit.share_of(np.ones(N_PATIENTS, dtype=bool))
    np.testing.assert_allclose(everyone.share, fit.share_above)
    np.testing.assert_allclose(everyone.lower, fit.share_lower)
    np.testing.assert_allclose(everyone.upper, fit.share_upper)
    small, large = fit.share_of(minority), fit.share_of(~minority)
    assert small.lower[0] <= 1 / 3 <= small.upper[0]
    assert large.share[0] < 0.01 and large.upper[0] < 0.02
    assert small.upper[0] - small.lower[0] > fit.share_upper[0] - fit.share_lower[0]
    assert np.all(small.model_sd > 0) and np.isnan(fit.share_of(minority & False).share).all()
