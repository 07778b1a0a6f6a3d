"""How many patients are truly at risk: empirical-Bayes deconvolution of per-patient AUCs.

A patient's measured AUC is their true AUC plus estimation noise, and the share of measured AUCs
above 0.8 mixes the two: it falls with K as the noise shrinks (14.5 % at K = 16, 5.4 % at K = 128
on ACTG 175), while the share of lower bounds above 0.8 rises. Neither estimates the share of
patients whose *true* AUC is above 0.8. Deconvolution does (Efron 2016, "Empirical Bayes
deconvolution estimates"; Koenker & Mizera 2014): fit the distribution g of true values that,
blurred by each estimate's known noise, best explains the estimates, then read shares off g and
shrink each patient's estimate toward it (posterior mean).

Model, per record: the paired t statistic t of its K/2 pair differences (`dptrain.audit.paired`)
is noncentral t with K/2 − 1 degrees of freedom and noncentrality √(K/2) · z_d, where
z_d = μ_d/σ_d (exact for Gaussian differences). The audit's per-record AUC, the attacker's, is
Φ(μ_d / √(σ_IN² + σ_OUT²)): a pair's two models are trained on complementary halves, so their
signals on a record are negatively correlated and σ_d is larger than √(σ_IN² + σ_OUT²); each
record's true AUC is therefore Φ(ρ_r · z_d), with ρ_r = σ_d/√(σ_IN² + σ_OUT²) estimated from its
own pairs (`unpaired_scale`). An earlier version read Φ(z_d) as the true AUC and understated the
share above 0.8 (3.8 % for 5.0 % on ACTG 175 at K = 256). Each record's own variance is used:
pooling variances across records (Smyth 2004's moderated t) sharpened K = 16 on ACTG 175 (13 of
16 disjoint K = 16 audits within 1 point of K = 256, against 8) but biased it upward where a
record's spread grows with its leakage (BreastMNIST ε = 8: 4 of 16, against 13), so it is not
used (experiments/bench_patient_risk_stability.py prints both).

g is a prior on a grid of z whose log-density is a cubic B-spline in AUC, fitted by penalised
maximum likelihood (Efron's g-modelling with a P-spline penalty on second differences of the
coefficients). The unpenalised nonparametric MLE was tried first and rejected: at K = 16 its
likelihood is so flat that the share above 0.8 drifted from 11 % to 16 % between 100 and 10,000
EM iterations while the log-likelihood moved by 2. The penalty is a fixed prior on the total
log-likelihood, so the data outweigh it as records accumulate; charged per record it never faded
and biased small-K estimates (see ``_PENALTY``). A patient's true AUC is the largest of their
records' (records independent given g), so their posterior is that of a maximum.

The interval has two sources of error. Which patients: a percentile bootstrap over patients (g
refitted on each resample). Which models: the same patients audited by another K models give
another estimate, and not only through each record's own noise, which the likelihood knows.
Models of one recipe differ in how much they leak, together on every record (on ACTG 175 the
mean standardised difference of the top tenth of records varies between pairs with sd 0.14 where
independent records would give 0.07), so the records of a small audit move together and its
estimate scatters between disjoint K = 16 audits of the same patients about twice as much as
independent records would make it (sd 1.0 point against 0.5). The patient bootstrap cannot see
that: its 95 % interval covered the K = 256 estimate in 13 of 16 disjoint K = 16 audits of ACTG
175. Pairs are independent and identically distributed given the patients, so a delete-a-group
jackknife over pairs (Efron & Stein 1981: its variance is conservative in expectation) measures
the model component, ``model_sd``; each end of the interval is the bootstrap's half-width and
z · ``model_sd`` added in quadrature: 16 of 16 (experiments/bench_patient_risk_stability.py).
Each record's own noise enters both parts, so the interval errs on the wide side (jackknife sd
1.3 points against the blocks' 1.0 at K = 16; equal from K = 32). Every resample's and
jackknife fit's per-patient tail probabilities are kept, so a subgroup reads its own share and
interval from the same fit (`RiskDeconvolution.share_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.interpolate import BSpline
from scipy.optimize import minimize
from scipy.special import gammaln
from scipy.stats import nct, norm
from threadpoolctl import threadpool_limits

from dptrain.audit.metrics import check_confidence
from dptrain.audit.paired import pair_sides, paired_t, unpaired_scale

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
# At most this many jackknife groups of model pairs (each left out in turn): one pair per group up
# to K = 32, then groups of K/32 pairs, so the model component costs at most 16 refits.
_JACKKNIFE_GROUPS = 16


@dataclass(frozen=True)
class RiskDeconvolution:
    """The estimated distribution of true per-patient AUC and what it implies.

    Attributes:
        thresholds: ``(n_thresholds,)`` AUC thresholds.
        share_above: ``(n_thresholds,)`` estimated share of patients whose true AUC exceeds each.
        share_lower: ``(n_thresholds,)`` lower end of its interval (patients and model pairs).
        share_upper: ``(n_thresholds,)`` upper end.
        confidence: Two-sided confidence of the interval.
        num_bootstrap: Bootstrap resamples of patients.
        model_sd: ``(n_thresholds,)`` jackknife standard error of ``share_above`` over model
            pairs (NaN when not measured: fewer than 3 pairs, or no interval asked for).
        jackknife_groups: Groups of model pairs left out in turn (0: not measured).
        grid_auc: ``(n_grid,)`` support of the fitted prior, as AUC.
        prior: ``(n_grid,)`` fitted prior mass of a record's true AUC on ``grid_auc`` (the
            prior of z_d carried to the AUC scale by every record's factor, and averaged).
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
    model_sd: np.ndarray
    jackknife_groups: int
    grid_auc: np.ndarray
    prior: np.ndarray
    shrunken_auc: np.ndarray = field(metadata=NOT_IN_JSON)
    tail_probability: np.ndarray = field(metadata=NOT_IN_JSON)
    bootstrap_weights: np.ndarray = field(metadata=NOT_IN_JSON)
    bootstrap_tails: np.ndarray = field(metadata=NOT_IN_JSON)
    jackknife_tails: np.ndarray = field(metadata=NOT_IN_JSON)

    def share_of(self, members: np.ndarray) -> ShareEstimate:
        """The share of the ``members`` (bool mask over patients) above each threshold.

        With the audit's interval: the cohort's bootstrap draws and jackknife fits read on the
        subset (the prior stays the cohort's).
        """
        chosen = np.asarray(members, dtype=bool) & ~np.isnan(self.tail_probability[:, 0])
        if not chosen.any():
            missing = np.full(self.thresholds.size, np.nan)
            return ShareEstimate(missing, missing, missing, missing)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = self.tail_probability[chosen].mean(axis=0)
            lower, upper = _percentiles(
                _bootstrap_shares(self.bootstrap_weights, self.bootstrap_tails, chosen),
                self.confidence,
            )
            if self.jackknife_groups:
                left_out = np.nanmean(self.jackknife_tails[:, chosen], axis=1)
                model_sd = np.sqrt((self.jackknife_groups - 1) * np.var(left_out, axis=0))
            else:
                model_sd = np.full(share.size, np.nan)
        spread = norm.ppf(0.5 + self.confidence / 2) * model_sd
        return ShareEstimate(
            share=share,
            lower=np.maximum(0.0, share - np.hypot(share - lower, spread)),
            upper=np.minimum(1.0, share + np.hypot(upper - share, spread)),
            model_sd=model_sd,
        )


@dataclass(frozen=True)
class ShareEstimate:
    """The estimated share of a group of patients above each threshold, with its interval.

    Attributes:
        share: ``(n_thresholds,)`` mean posterior probability of the true AUC exceeding each.
        lower: ``(n_thresholds,)`` lower end of the interval (patients and model pairs; NaN
            without the jackknife).
        upper: ``(n_thresholds,)`` upper end.
        model_sd: ``(n_thresholds,)`` jackknife standard error over model pairs.
    """

    share: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    model_sd: np.ndarray


def deconvolve_patient_auc(
    *,
    signals: np.ndarray,
    record_membership: np.ndarray,
    record_patient: np.ndarray,
    n_patients: int,
    thresholds: tuple[float, ...],
    confidence: float = 0.95,
    num_bootstrap: int = 100,
    rng: np.random.Generator,
) -> RiskDeconvolution:
    """The audit's estimate from its signals, with an interval over patients and model pairs.

    Fitted to the records' paired t statistics and read on the audit's AUC scale
    (`deconvolve_t_statistics` with `unpaired_scale`).

    Args:
        signals: ``(K, n_records)`` signals, models in complementary pairs.
        record_membership: ``(K, n_records)`` bool membership of every record.
        record_patient: ``(n_records,)`` patient index of every record.
        n_patients: Number of patients.
        thresholds: AUC thresholds in (0.5, 1).
        confidence: Two-sided confidence of the interval.
        num_bootstrap: Bootstrap resamples of patients (0: no interval, and no jackknife).
        rng: Source of the bootstrap's randomness.

    Returns:
        The deconvolution; with fewer than 3 pairs the model component cannot be measured and
        the interval is NaN.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> true_z = np.where(np.arange(1000) < 200, 1.5, 0.0)  # 20 % at AUC 0.93
        >>> inside = np.tile([True, False], (1000, 8)).T  # 8 pairs
        >>> signals = rng.normal(size=(16, 1000)) + np.sqrt(2) * true_z * inside
        >>> fit = deconvolve_patient_auc(signals=signals, record_membership=inside,
        ...     record_patient=np.arange(1000), n_patients=1000, thresholds=(0.8,),
        ...     num_bootstrap=20, rng=rng)
        >>> bool(fit.share_lower[0] < 0.2 < fit.share_upper[0]), fit.jackknife_groups
        (True, 8)
    """
    inside, outside = pair_sides(signals, record_membership)
    common = {
        "record_patient": record_patient,
        "n_patients": n_patients,
        "thresholds": thresholds,
        "confidence": confidence,
    }

    def fit(pairs: np.ndarray, bootstrap: int) -> RiskDeconvolution:
        t, dof = paired_t(inside[pairs] - outside[pairs])
        return deconvolve_t_statistics(
            t_statistics=t,
            dof=dof,
            n_pairs=dof + 1,
            scale=unpaired_scale(inside[pairs], outside[pairs]),
            num_bootstrap=bootstrap,
            rng=rng,
            **common,
        )

    n_pairs = inside.shape[0]
    estimate = fit(np.arange(n_pairs), num_bootstrap)
    if not num_bootstrap or np.isnan(estimate.share_above).all():
        return estimate
    groups = np.array_split(np.arange(n_pairs), min(n_pairs, _JACKKNIFE_GROUPS))
    if n_pairs - max(len(group) for group in groups) < 2:
        missing = np.full(estimate.thresholds.size, np.nan)
        return replace(estimate, share_lower=missing, share_upper=missing)
    # Delete-a-group jackknife, v = (G − 1)/G · Σ_g (θ₍g₎ − θ̄)², on every patient's tail
    # probabilities, so that any group of patients can read its own (`RiskDeconvolution.share_of`).
    left_out = np.stack(
        [
            fit(np.setdiff1d(np.arange(n_pairs), group), 0).tail_probability.astype(np.float32)
            for group in groups
        ]
    )
    with_models = replace(estimate, jackknife_tails=left_out, jackknife_groups=len(groups))
    everyone = with_models.share_of(np.ones(n_patients, dtype=bool))
    return replace(
        with_models,
        share_lower=everyone.lower,
        share_upper=everyone.upper,
        model_sd=everyone.model_sd,
    )


def deconvolve_t_statistics(
    *,
    t_statistics: np.ndarray,
    dof: float,
    n_pairs: int,
    record_patient: np.ndarray,
    n_patients: int,
    thresholds: tuple[float, ...],
    scale: np.ndarray | None = None,
    confidence: float = 0.95,
    num_bootstrap: int = 100,
    rng: np.random.Generator,
) -> RiskDeconvolution:
    """Fits the prior of true record AUC and returns shares above thresholds and shrunken AUCs.

    The prior is fitted to the t statistics' effect sizes z_d = μ_d/σ_d; a record's true AUC is
    Φ(scale · z_d). Its interval is over patients only (`deconvolve_patient_auc` adds the pairs).

    Args:
        t_statistics: ``(n_records,)`` paired t statistics (`dptrain.audit.paired.paired_t`).
        dof: Their degrees of freedom (K/2 − 1 for `paired_t`); below 1 the result is all NaN.
        n_pairs: Pair differences per record, K/2 (the noncentrality is √(K/2) · z).
        record_patient: ``(n_records,)`` patient index of every record.
        n_patients: Number of patients.
        thresholds: AUC thresholds in (0.5, 1).
        scale: ``(n_records,)`` positive factors from z_d to the AUC's probit (`unpaired_scale`);
            None: 1, the AUC of the paired differences.
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
        >>> fit = deconvolve_t_statistics(t_statistics=t, dof=31, n_pairs=32,
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
    factor = np.ones(t.size) if scale is None else np.asarray(scale, dtype=np.float64)
    factor = factor[testable]
    if not np.all(np.isfinite(factor) & (factor > 0)):
        raise ValueError("scale must be positive and finite for every record with a t statistic")
    with threadpool_limits(limits=1, user_api="blas"):
        # Thousands of small matrix-vector products: BLAS threads only contend (0.4 s a fit with
        # them on a busy 2-core machine, 5 ms without).
        return _deconvolve(
            likelihood, factor, patient_of, n_patients, limits, confidence, num_bootstrap, rng
        )


def _deconvolve(
    likelihood: np.ndarray,
    scale: np.ndarray,
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
    tails, shrunken = _patient_posteriors(likelihood, prior, scale, patient_of, n_patients, limits)
    has_records = np.bincount(patient_of, minlength=n_patients) > 0
    share = tails[has_records].mean(axis=0)

    # Every resample's weights and tail probabilities are kept (float32: 1.2 MB per 1,000
    # patients and threshold at 100 resamples), so any group of patients reads its own interval.
    weights = np.zeros((num_bootstrap, n_patients), dtype=np.float32)
    boot_tails = np.zeros((num_bootstrap, n_patients, limits.size), dtype=np.float32)
    counted = np.flatnonzero(has_records)
    for b in range(num_bootstrap):
        weights[b] = np.bincount(rng.choice(counted, counted.size), minlength=n_patients)
        refitted = _fit_prior(
            likelihood, weights[b, patient_of].astype(np.float64), basis, penalty, coefficients
        )
        boot_tails[b], _ = _patient_posteriors(
            likelihood, _prior(basis, refitted), scale, patient_of, n_patients, limits
        )
    lower, upper = _percentiles(_bootstrap_shares(weights, boot_tails, has_records), confidence)
    return RiskDeconvolution(
        thresholds=limits,
        share_above=share,
        share_lower=lower,
        share_upper=upper,
        confidence=confidence,
        num_bootstrap=num_bootstrap,
        model_sd=np.full(limits.size, np.nan),
        jackknife_groups=0,
        grid_auc=norm.cdf(_GRID_Z),
        prior=_scaled_prior(prior, scale),
        shrunken_auc=np.where(has_records, shrunken, np.nan),
        tail_probability=np.where(has_records[:, None], tails, np.nan),
        bootstrap_weights=weights,
        bootstrap_tails=boot_tails,
        jackknife_tails=np.zeros((0, n_patients, limits.size), dtype=np.float32),
    )


def _bootstrap_shares(weights: np.ndarray, tails: np.ndarray, members: np.ndarray) -> np.ndarray:
    """(n_resamples, n_thresholds) share of the members above each threshold in each resample."""
    chosen = weights[:, members].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("bp,bpt->bt", chosen, tails[:, members]) / chosen.sum(axis=1)[:, None]


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided percentile interval of bootstrap draws (NaN without any)."""
    alpha = 1 - confidence
    finite = np.isfinite(draws).all(axis=1)
    if not finite.any():
        missing = np.full(draws.shape[1], np.nan)
        return missing, missing
    lower, upper = np.quantile(draws[finite], [alpha / 2, 1 - alpha / 2], axis=0)
    return lower, upper


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


def _cdf_at(cumulative: np.ndarray, scale: np.ndarray, z: np.ndarray) -> np.ndarray:
    """P(scale_r · z_d ≤ z) per record, from (n_records, n_grid) cumulative masses on the grid."""
    below = np.searchsorted(_GRID_Z, z / scale[:, None], side="right") - 1
    return np.where(below >= 0, np.take_along_axis(cumulative, np.maximum(below, 0), axis=1), 0.0)


def _patient_posteriors(
    likelihood: np.ndarray,
    prior: np.ndarray,
    scale: np.ndarray,
    patient_of: np.ndarray,
    n_patients: int,
    limits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: P(true AUC > each limit) and the posterior mean of the true AUC (the max)."""
    posterior = likelihood * prior
    posterior /= np.maximum(posterior.sum(axis=1, keepdims=True), 1e-300)
    cumulative = np.cumsum(posterior, axis=1)

    def patient_cdf(z: np.ndarray) -> np.ndarray:
        # log P(true z_r ≤ z) per record, summed over a patient's records: the max's log CDF.
        log_cdf = np.log(np.clip(_cdf_at(cumulative, scale, z), 1e-300, 1.0))
        total = np.zeros((n_patients, log_cdf.shape[1]))
        np.add.at(total, patient_of, log_cdf)
        return np.exp(total)

    tails = 1.0 - patient_cdf(np.broadcast_to(norm.ppf(limits), (scale.size, limits.size)))
    # The posterior mean of Φ(max), its mass placed at the grid point above (exact at scale 1).
    cdf = patient_cdf(np.broadcast_to(_GRID_Z, (scale.size, _GRID_Z.size)))
    cdf[:, -1] = 1.0
    mass = np.diff(cdf, axis=1, prepend=0.0)
    return tails, mass @ norm.cdf(_GRID_Z)


def _scaled_prior(prior: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The fitted prior of z_d carried to the AUC scale: its mixture over the records' scales."""
    cumulative = np.broadcast_to(np.cumsum(prior), (scale.size, prior.size))
    cdf = _cdf_at(cumulative, scale, np.broadcast_to(_GRID_Z, (scale.size, _GRID_Z.size)))
    cdf[:, -1] = 1.0
    return np.diff(cdf, axis=1, prepend=0.0).mean(axis=0)


def _undefined(limits: np.ndarray, n_patients: int, confidence: float) -> RiskDeconvolution:
    missing = np.full(limits.size, np.nan)
    return RiskDeconvolution(
        thresholds=limits,
        share_above=missing,
        share_lower=missing,
        share_upper=missing,
        confidence=confidence,
        num_bootstrap=0,
        model_sd=missing,
        jackknife_groups=0,
        grid_auc=norm.cdf(_GRID_Z),
        prior=np.full(_GRID_Z.size, np.nan),
        shrunken_auc=np.full(n_patients, np.nan),
        tail_probability=np.full((n_patients, limits.size), np.nan),
        bootstrap_weights=np.zeros((0, n_patients), dtype=np.float32),
        bootstrap_tails=np.zeros((0, n_patients, limits.size), dtype=np.float32),
        jackknife_tails=np.zeros((0, n_patients, limits.size), dtype=np.float32),
    )
