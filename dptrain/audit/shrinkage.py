"""How many patients are truly at risk: empirical-Bayes deconvolution of per-patient AUCs.

A patient's measured AUC is their true AUC plus estimation noise, and the share of measured AUCs
above 0.8 mixes the two: it falls with K as the noise shrinks (14.5 % at K = 16, 5.4 % at K = 128
on ACTG 175), while the share of lower bounds above 0.8 rises. Neither estimates the share of
patients whose *true* AUC is above 0.8. Deconvolution does (Efron 2016, "Empirical Bayes
deconvolution estimates"; Koenker & Mizera 2014): fit the distribution g of true values that,
blurred by each estimate's known noise, best explains the estimates, then read shares off g and
shrink each patient's estimate toward it (posterior mean).

Model, per record: the paired t statistic t of its K/2 pair differences (`dptrain.audit.paired`)
is noncentral t with K/2 − 1 degrees of freedom and noncentrality √(K/2) · z, where
z = μ_d/σ_d = Φ⁻¹(true AUC) (exact for Gaussian differences; the AUC is the binormal one when a
pair's two signals are independent). Each record's own variance is used: pooling variances across
records (Smyth 2004's moderated t) sharpened K = 16 on ACTG 175 (13 of 16 disjoint K = 16 audits
within 1 point of K = 256, against 8) but biased it upward where a record's spread grows with its
leakage (BreastMNIST ε = 8: 4 of 16, against 13), so it is not used
(experiments/bench_patient_risk_stability.py prints both).

g is a prior on a grid of z whose log-density is a cubic B-spline in AUC, fitted by penalised
maximum likelihood (Efron's g-modelling with a P-spline penalty on second differences of the
coefficients). The unpenalised nonparametric MLE was tried first and rejected: at K = 16 its
likelihood is so flat that the share above 0.8 drifted from 11 % to 16 % between 100 and 10,000
EM iterations while the log-likelihood moved by 2. The penalty is a fixed prior on the total
log-likelihood, so the data outweigh it as records accumulate; charged per record it never faded
and biased small-K estimates (see ``_PENALTY``). A patient's true AUC is the largest of their
records' (records independent given g), so their posterior is that of a maximum. The interval is
a percentile bootstrap over patients (g refitted on each resample).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import BSpline
from scipy.optimize import minimize
from scipy.special import gammaln
from scipy.stats import nct, norm
from threadpoolctl import threadpool_limits

from dptrain.audit.metrics import check_confidence

NOT_IN_JSON = {"json": False}

# Grid of true z = Φ⁻¹(AUC): fine where thresholds live (AUC 0.16–0.998), coarse above, where
# non-private models put memorised records (AUC ≈ 1).
_GRID_Z = np.concatenate((np.arange(-1.0, 3.0, 0.05), np.arange(3.0, 8.01, 0.25)))
# From this many degrees of freedom on, the noncentral t is replaced by a normal of the same mean
# and variance (scipy's nct density fails there, and the two agree within 0.05 in log density where
# it matters); below, the normal stands in only where scipy's density underflows or fails. At
# 30-60 degrees of freedom (K = 62-122) the normal alone was off by 0.1-0.15 in log density at
# t = 3 with no effect, and by far more in the tails (t = 2 at noncentrality 11: −16 for −39).
_EXACT_DOF_BELOW = 200
# Knot spacing of the log-prior's B-spline basis, in AUC, and the weight λ of the penalty
# λ/2 · Σ (second differences of its coefficients)² on the *total* log-likelihood: a fixed
# Gaussian prior on the log-density's curvature (Efron 2016's c₀ = 1 convention), which the data
# outweigh as records accumulate. An earlier version charged the penalty per record (0.01 ×
# n_records, 21 on ACTG 175), so it never faded: at K = 16, where each record's likelihood is
# flat, it flattened the log-prior's steep fall above the bulk and read 2.2 % above 0.8 where
# K = 128 reads 3.5 % on the same signals (see tests/audit/test_shrinkage.py).
_KNOT_STEP_AUC = 0.05
_PENALTY = 1.0


@dataclass(frozen=True)
class RiskDeconvolution:
    """The estimated distribution of true per-patient AUC and what it implies.

    Attributes:
        thresholds: ``(n_thresholds,)`` AUC thresholds.
        share_above: ``(n_thresholds,)`` estimated share of patients whose true AUC exceeds each.
        share_lower: ``(n_thresholds,)`` lower end of its bootstrap interval.
        share_upper: ``(n_thresholds,)`` upper end.
        confidence: Two-sided confidence of the interval.
        num_bootstrap: Bootstrap resamples of patients.
        grid_auc: ``(n_grid,)`` support of the fitted prior, as AUC.
        prior: ``(n_grid,)`` fitted prior mass of a record's true AUC on ``grid_auc``.
        shrunken_auc: ``(n_patients,)`` posterior mean of each patient's true AUC.
        tail_probability: ``(n_patients, n_thresholds)`` posterior probability that the
            patient's true AUC exceeds each threshold.
    """

    thresholds: np.ndarray
    share_above: np.ndarray
    share_lower: np.ndarray
    share_upper: np.ndarray
    confidence: float
    num_bootstrap: int
    grid_auc: np.ndarray
    prior: np.ndarray
    shrunken_auc: np.ndarray = field(metadata=NOT_IN_JSON)
    tail_probability: np.ndarray = field(metadata=NOT_IN_JSON)


def deconvolve_patient_auc(
    *,
    t_statistics: np.ndarray,
    dof: float,
    n_pairs: int,
    record_patient: np.ndarray,
    n_patients: int,
    thresholds: tuple[float, ...],
    confidence: float = 0.95,
    num_bootstrap: int = 100,
    rng: np.random.Generator,
) -> RiskDeconvolution:
    """Fits the prior of true record AUC and returns shares above thresholds and shrunken AUCs.

    Args:
        t_statistics: ``(n_records,)`` paired t statistics (`dptrain.audit.paired.paired_t`).
        dof: Their degrees of freedom (K/2 − 1 for `paired_t`); below 1 the result is all NaN.
        n_pairs: Pair differences per record, K/2 (the noncentrality is √(K/2) · z).
        record_patient: ``(n_records,)`` patient index of every record.
        n_patients: Number of patients.
        thresholds: AUC thresholds in (0.5, 1).
        confidence: Two-sided confidence of the bootstrap interval.
        num_bootstrap: Bootstrap resamples of patients (0: no interval).
        rng: Source of the bootstrap's randomness.

    Returns:
        The deconvolution.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> true_z = np.where(np.arange(1000) < 200, 1.5, 0.0)  # 20 % at AUC 0.93
        >>> from scipy.stats import nct
        >>> t = nct.rvs(31, true_z * np.sqrt(32), random_state=rng)
        >>> fit = deconvolve_patient_auc(t_statistics=t, dof=31, n_pairs=32,
        ...     record_patient=np.arange(1000), n_patients=1000, thresholds=(0.8,),
        ...     num_bootstrap=20, rng=rng)
        >>> bool(abs(fit.share_above[0] - 0.2) < 0.04)
        True
    """
    check_confidence(confidence)
    limits = np.asarray(thresholds, dtype=np.float64)
    t = np.asarray(t_statistics, dtype=np.float64)
    testable = ~np.isnan(t)
    if dof < 1 or not testable.any():
        return _undefined(limits, n_patients, confidence)
    # Records that cannot be tested (none, with complementary pairs from K = 4) are left out.
    patient_of = np.asarray(record_patient)[testable]
    likelihood = _likelihood(t[testable], dof, n_pairs)
    with threadpool_limits(limits=1, user_api="blas"):
        # Thousands of small matrix-vector products: BLAS threads only contend (0.4 s a fit with
        # them on a busy 2-core machine, 5 ms without).
        return _deconvolve(
            likelihood, patient_of, n_patients, limits, confidence, num_bootstrap, rng
        )


def _deconvolve(
    likelihood: np.ndarray,
    patient_of: np.ndarray,
    n_patients: int,
    limits: np.ndarray,
    confidence: float,
    num_bootstrap: int,
    rng: np.random.Generator,
) -> RiskDeconvolution:
    basis, penalty = _basis()
    coefficients = _fit_prior(likelihood, np.ones(len(patient_of)), basis, penalty, None)
    prior = _prior(basis, coefficients)
    tails, shrunken = _patient_posteriors(likelihood, prior, patient_of, n_patients, limits)
    has_records = np.bincount(patient_of, minlength=n_patients) > 0
    share = tails[has_records].mean(axis=0)

    draws = np.full((num_bootstrap, limits.size), np.nan)
    counted = np.flatnonzero(has_records)
    for b in range(num_bootstrap):
        weights = np.bincount(rng.choice(counted, counted.size), minlength=n_patients).astype(
            np.float64
        )
        refitted = _fit_prior(likelihood, weights[patient_of], basis, penalty, coefficients)
        boot_tails, _ = _patient_posteriors(
            likelihood, _prior(basis, refitted), patient_of, n_patients, limits
        )
        draws[b] = weights @ boot_tails / weights.sum()
    alpha = 1 - confidence
    if num_bootstrap:
        lower, upper = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
    else:
        lower = upper = np.full(limits.size, np.nan)
    return RiskDeconvolution(
        thresholds=limits,
        share_above=share,
        share_lower=lower,
        share_upper=upper,
        confidence=confidence,
        num_bootstrap=num_bootstrap,
        grid_auc=norm.cdf(_GRID_Z),
        prior=prior,
        shrunken_auc=np.where(has_records, shrunken, np.nan),
        tail_probability=np.where(has_records[:, None], tails, np.nan),
    )


def _likelihood(t: np.ndarray, dof: float, n_pairs: int) -> np.ndarray:
    """(n_records, n_grid) density of each t under each grid z, scaled to a row maximum of 1."""
    noncentrality = np.sqrt(n_pairs) * _GRID_Z
    # A statistic beyond the grid's reach is as informative as one at its edge.
    t = np.clip(t, noncentrality[0] - 10, noncentrality[-1] + 10)
    # Mean and variance of the noncentral t (Johnson, Kotz & Balakrishnan, ch. 31), for the normal
    # that stands in where the exact density is not available.
    approximate = np.full((t.size, noncentrality.size), -np.inf)  # no variance below 3 dof
    if dof > 2:
        c = np.sqrt(dof / 2) * np.exp(gammaln((dof - 1) / 2) - gammaln(dof / 2))
        mean = noncentrality * c
        variance = dof * (1 + noncentrality**2) / (dof - 2) - mean**2
        approximate = norm.logpdf(t[:, None], mean[None, :], np.sqrt(variance)[None, :])
    log_density = approximate
    if dof < _EXACT_DOF_BELOW:
        try:
            with np.errstate(all="ignore"):
                exact = nct.logpdf(t[:, None], dof, noncentrality[None, :])
        except OverflowError:  # boost's gamma function, for extreme arguments
            exact = np.full_like(approximate, np.nan)
        log_density = np.where(np.isfinite(exact), exact, approximate)
    log_density = np.where(np.isfinite(log_density), log_density, -np.inf)
    peak = log_density.max(axis=1, keepdims=True)
    return np.exp(log_density - np.where(np.isfinite(peak), peak, 0.0))


def _basis() -> tuple[np.ndarray, np.ndarray]:
    """(n_grid, n_basis) cubic B-splines in AUC over the grid, and the penalty matrix D₂ᵀD₂."""
    auc = norm.cdf(_GRID_Z)
    low, high = auc[0], auc[-1] + 1e-9
    inner = np.arange(low, high, _KNOT_STEP_AUC)
    knots = np.r_[[low] * 3, inner, [high] * 4]
    basis = BSpline.design_matrix(auc, knots, 3).toarray()
    second = np.diff(np.eye(basis.shape[1]), 2, axis=0)
    return basis, second.T @ second


def _prior(basis: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    log_prior = basis @ coefficients
    prior = np.exp(log_prior - log_prior.max())
    return prior / prior.sum()


def _fit_prior(
    likelihood: np.ndarray,
    weights: np.ndarray,
    basis: np.ndarray,
    penalty: np.ndarray,
    start: np.ndarray | None,
) -> np.ndarray:
    """Coefficients maximising the weighted log marginal likelihood less the penalty.

    The objective is divided by the total weight (for the optimiser's scale only), so the penalty
    enters as ``_PENALTY / total``: its pull fades as records accumulate.
    """
    total = weights.sum()

    def objective(coefficients: np.ndarray) -> tuple[float, np.ndarray]:
        prior = _prior(basis, coefficients)
        marginal = np.maximum(likelihood @ prior, 1e-300)
        # Σ_i w_i · posterior_i, the expected grid counts; its gap to total · g is the score.
        expected = (likelihood.T @ (weights / marginal)) * prior
        value = -(weights @ np.log(marginal)) / total
        value += _PENALTY / (2 * total) * coefficients @ penalty @ coefficients
        gradient = -(basis.T @ (expected - total * prior)) / total
        return value, gradient + _PENALTY / total * penalty @ coefficients

    initial = np.zeros(basis.shape[1]) if start is None else start
    return minimize(objective, initial, jac=True, method="L-BFGS-B").x


def _patient_posteriors(
    likelihood: np.ndarray,
    prior: np.ndarray,
    patient_of: np.ndarray,
    n_patients: int,
    limits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: P(true AUC > each limit) and the posterior mean of the true AUC (the max)."""
    posterior = likelihood * prior
    posterior /= np.maximum(posterior.sum(axis=1, keepdims=True), 1e-300)
    # log P(z_r ≤ grid point) per record, summed over a patient's records: log CDF of the max.
    log_cdf = np.log(np.clip(np.cumsum(posterior, axis=1), 1e-300, 1.0))
    patient_log_cdf = np.zeros((n_patients, _GRID_Z.size))
    np.add.at(patient_log_cdf, patient_of, log_cdf)
    cdf = np.exp(patient_log_cdf)
    cdf[:, -1] = 1.0
    below = np.searchsorted(_GRID_Z, norm.ppf(limits), side="right") - 1
    tails = 1.0 - np.where(below >= 0, cdf[:, np.maximum(below, 0)], 0.0)
    mass = np.diff(cdf, axis=1, prepend=0.0)
    return tails, mass @ norm.cdf(_GRID_Z)


def _undefined(limits: np.ndarray, n_patients: int, confidence: float) -> RiskDeconvolution:
    missing = np.full(limits.size, np.nan)
    return RiskDeconvolution(
        thresholds=limits,
        share_above=missing,
        share_lower=missing,
        share_upper=missing,
        confidence=confidence,
        num_bootstrap=0,
        grid_auc=norm.cdf(_GRID_Z),
        prior=np.full(_GRID_Z.size, np.nan),
        shrunken_auc=np.full(n_patients, np.nan),
        tail_probability=np.full((n_patients, limits.size), np.nan),
    )
