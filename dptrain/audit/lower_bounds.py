"""The arithmetic behind the auditor's ε lower bounds: one run, Gaussian DP, planned tests.

- One run (Steinke, Nasr & Jagielski 2023, Theorem 5.2 / Algorithm 1): the probability that an
  ε-DP run lets a guesser get at least v of r guesses right about m independently included
  canaries, and the largest ε that probability does not refute.
- One run, f-DP (Mahloujifar, Melis & Chaudhuri 2024, "Auditing f-Differential Privacy in One
  Run", arXiv:2410.22235): the same guesses tested against a whole trade-off curve, here the
  Gaussian G_μ, by the paper's recursion over the number of correct guesses; the largest μ it
  refutes (`gdp_one_run_mu`).
- Gaussian DP (Dong et al. 2019, Cor. 2.13): the ε of μ-GDP at δ, and back.
- Planned tests: the exact distribution of the likelihood-ratio score of T Poisson-subsampled
  Gaussian steps, for members and non-members (`subsampled_gaussian_scores`), and the
  Clopper–Pearson bound each threshold reaches at the expected counts (`PlannedScores`). It picks
  a threshold before any score is seen, and says what m canaries can show at best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri
from scipy.stats import binom, norm

from dptrain.audit.epsilon import _eps_from_rates, clopper_pearson_lower, clopper_pearson_upper
from dptrain.audit.metrics import check_confidence
from dptrain.errors import ConfigError

MAX_EPSILON_SEARCH = 100.0
# The f-DP one-run search reports μ-GDP refuted up to this μ at most (ε ≈ 1250 at δ = 1e-5).
MAX_GDP_MU = 50.0
# Grid points per refinement pass of the μ search, and the width it stops at.
_MU_GRID = 32
_MU_TOLERANCE = 1e-4
# Per-step privacy-loss ranges cover all but this much of the step's mass (both classes).
_TAIL_MASS = 1e-30
# Planned thresholds whose non-member tail is below this cannot be resolved by any audit.
_MIN_PLANNED_FPR = 1e-12
_MAX_PLANNED_THRESHOLDS = 4000
_MAX_GRID = 1 << 23


def one_run_p_value(
    *, num_canaries: int, num_guesses: int, num_correct: int, epsilon: float, delta: float
) -> float:
    """P[≥ v of r guesses correct] for an (ε, δ)-DP mechanism (Steinke et al. 2023, Thm 5.2).

    Under ε-DP the number of correct guesses is dominated by Binomial(r, e^ε / (1 + e^ε)); δ adds
    2mδ · max_i P[v − i ≤ Binomial < v] / i (their Algorithm 2, as in jax_privacy).

    Args:
        num_canaries: m.
        num_guesses: r ≤ m.
        num_correct: v ≤ r.
        epsilon: ε ≥ 0 of the claim.
        delta: δ of the claim.

    Returns:
        The p-value, in [0, 1].

    Example:
        >>> round(one_run_p_value(num_canaries=10, num_guesses=10, num_correct=10, epsilon=0.0,
        ...     delta=0.0), 6)  # ten fair coins all right
        0.000977
    """
    if not 0 <= num_correct <= num_guesses <= num_canaries:
        raise ConfigError(
            f"need 0 <= correct <= guesses <= canaries, got {num_correct}, {num_guesses}, "
            f"{num_canaries}"
        )
    if num_correct == 0:
        return 1.0
    q = 1 / (1 + math.exp(-epsilon))
    tail = float(binom.sf(num_correct - 1, num_guesses, q))
    if delta == 0:
        return tail
    i = np.arange(1, num_correct + 1)
    between = binom.sf(num_correct - i - 1, num_guesses, q) - tail  # P[v − i ≤ X < v]
    spread = float(np.max(between / i))
    return min(tail + spread * delta * 2 * num_canaries, 1.0)


def one_run_epsilon(
    *, num_canaries: int, num_guesses: int, num_correct: int, delta: float, alpha: float
) -> float:
    """The largest ε whose (ε, δ)-DP claim the guesses refute at significance ``alpha``.

    Args:
        num_canaries: m.
        num_guesses: r.
        num_correct: v.
        delta: δ of the claim.
        alpha: Significance (1 − confidence).

    Returns:
        ε ≥ 0 (0 when even ε = 0 is not refuted).

    Example:
        >>> # r = v = 100, δ = 0: the bound solves q^100 = 0.05 for q = e^ε / (1 + e^ε)
        >>> round(one_run_epsilon(num_canaries=1000, num_guesses=100, num_correct=100, delta=0.0,
        ...     alpha=0.05), 3)
        3.493
    """

    def p_value(epsilon: float) -> float:
        return one_run_p_value(
            num_canaries=num_canaries,
            num_guesses=num_guesses,
            num_correct=num_correct,
            epsilon=epsilon,
            delta=delta,
        )

    if num_guesses == 0 or p_value(0.0) > alpha:
        return 0.0
    high = 1.0
    while p_value(high) <= alpha:
        if high >= MAX_EPSILON_SEARCH:
            return MAX_EPSILON_SEARCH
        high *= 2
    return float(brentq(lambda eps: alpha - p_value(eps), 0.0, high, xtol=1e-6))


def gdp_one_run_refutes(
    *,
    num_canaries: int,
    num_guesses: np.ndarray | int,
    num_correct: np.ndarray | int,
    mu: np.ndarray | float,
    alpha: float,
) -> np.ndarray:
    """Whether v of r guesses refute μ-GDP at significance ``alpha`` (Mahloujifar et al. 2024).

    The paper's one-run analysis for a guesser that abstains (the recursion its reference
    implementations cite as Algorithm 3: ``audit_rh_with_cap`` in Meta's PrivacyGuard,
    ``_epsilon_one_run_fdp`` in jax_privacy), for the Gaussian trade-off curve G_μ, whose
    inverse blow-up is f̄⁻¹(x) = G_μ(1 − x) = Φ(Φ⁻¹(x) − μ). With m canaries included
    independently with probability ½ and a guesser that always makes r guesses, let N be its
    number of correct guesses and, for i ≤ v, r_i and h_i the correct and the wrong guesses
    made in runs with N ≥ i, averaged over the m canaries (so r₀ + h₀ = r/m). Flipping one
    canary turns a correct guess with N ≥ i + 1 into a wrong one with N ≥ i, so f-DP and
    Jensen's inequality (f̄⁻¹ is convex) give h_i ≥ f̄⁻¹(r_{i+1}); the runs with N = i add i
    correct and r − i wrong guesses, so r_i − r_{i+1} = i/(r − i) · (h_i − h_{i+1}). Starting
    from r_v = τ·v/m and h_v = τ·(r − v)/m and taking the smallest h_i allowed at each step,

        h_i = max(h_{i+1}, f̄⁻¹(r_{i+1})),  r_i = r_{i+1} + i/(r − i) · (h_i − h_{i+1}),

    the paper's theorem says that r₀ + h₀ > r/m implies P[N ≥ v] < τ under μ-GDP: with
    τ = ``alpha`` the observation refutes μ-GDP at that significance. Both r_i and h_i only grow
    as i falls, so each case stops as soon as r_i + h_i passes r/m (refuted) or h stops growing
    (a fixed point: not refuted); all cases run together, vectorised, so one call takes a
    hundred or so numpy steps where the paper's loop takes v Python iterations per case (a
    whole audit of 4,000 canaries, 16 guess counts, takes about 10 ms).

    Args:
        num_canaries: m.
        num_guesses: r, each in [v, m]; broadcast against the other arrays.
        num_correct: v.
        mu: μ ≥ 0 of the claims tested.
        alpha: Significance τ, in (0, 1).

    Returns:
        Bool array of the broadcast shape: True where μ-GDP is refuted.

    Raises:
        ConfigError: For counts or a significance out of range.

    Example:
        >>> gdp_one_run_refutes(num_canaries=1000, num_guesses=100, num_correct=95,
        ...     mu=np.array([0.5, 1.0, 2.0]), alpha=0.05).tolist()
        [True, False, False]
    """
    guesses, correct, mus = np.broadcast_arrays(
        np.asarray(num_guesses, dtype=np.float64),
        np.asarray(num_correct, dtype=np.int64),
        np.asarray(mu, dtype=np.float64),
    )
    if np.any((correct < 0) | (correct > guesses) | (guesses > num_canaries)):
        raise ConfigError(
            f"need 0 <= correct <= guesses <= canaries ({num_canaries}), got correct "
            f"{np.asarray(num_correct).tolist()} of guesses {np.asarray(num_guesses).tolist()}"
        )
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if np.any(mus < 0):
        raise ConfigError(f"mu must be >= 0, got {np.asarray(mu).tolist()}")
    refuted = np.zeros(guesses.size, dtype=bool)
    cases = np.flatnonzero(correct.ravel() > 0)  # v = 0: r₀ + h₀ = τ·r/m, never refuted
    guesses, mus = guesses.ravel()[cases], mus.ravel()[cases]
    index = correct.ravel()[cases] - 1.0  # i of the next step, from v − 1 down to 0
    right = alpha * (index + 1) / num_canaries  # r_v
    wrong = alpha * (guesses - index - 1) / num_canaries  # h_v
    budget = guesses / num_canaries
    while cases.size:
        inverse_blow_up = ndtr(ndtri(np.minimum(right, 1.0)) - mus)  # f̄⁻¹(r_{i+1})
        growth = np.maximum(inverse_blow_up - wrong, 0.0)  # h_i − h_{i+1}
        right = right + index / (guesses - index) * growth
        wrong = wrong + growth
        over = right + wrong > budget
        refuted[cases[over]] = True
        index = index - 1
        going = ~over & (growth > 0) & (index >= 0)
        cases, right, wrong, index, guesses, mus, budget = (
            values[going] for values in (cases, right, wrong, index, guesses, mus, budget)
        )
    return refuted.reshape(correct.shape)


def gdp_one_run_mu(
    *,
    num_canaries: int,
    num_guesses: np.ndarray | int,
    num_correct: np.ndarray | int,
    alpha: float,
) -> np.ndarray:
    """The largest μ whose μ-GDP claim v of r guesses refute at significance ``alpha``.

    The empirical privacy of Mahloujifar et al. (2024) in the Gaussian family: the refuting set
    of `gdp_one_run_refutes` is an interval [0, μ̂) (a smaller μ is a stronger claim; checked
    numerically in ``tests/audit/test_fdp_one_run.py``), and μ̂ is
    found by refining a grid of 32 points on the bracket until it is 10⁻⁴ wide, every case at
    once. The lower end of the last bracket is returned, a μ that is refuted itself, so μ̂ errs
    low. Under μ*-GDP, μ̂ > μ* only when μ* is refuted, which happens with probability below
    ``alpha``.

    Args:
        num_canaries: m.
        num_guesses: r (array-like; broadcast against ``num_correct``).
        num_correct: v.
        alpha: Significance, in (0, 1).

    Returns:
        μ̂ ≥ 0 of the broadcast shape (0 where not even μ = 0 is refuted; at most 50).

    Example:
        >>> # 95 of 100 guesses right among 1000 canaries refute 0.78-GDP, not 0.79-GDP
        >>> round(float(gdp_one_run_mu(num_canaries=1000, num_guesses=100, num_correct=95,
        ...     alpha=0.05)), 2)
        0.79
    """
    guesses, correct = np.broadcast_arrays(np.asarray(num_guesses), np.asarray(num_correct))
    guesses, correct = guesses.ravel(), correct.ravel()
    low, high = np.zeros(guesses.size), np.full(guesses.size, MAX_GDP_MU)
    refuted = gdp_one_run_refutes(
        num_canaries=num_canaries, num_guesses=guesses, num_correct=correct, mu=0.0, alpha=alpha
    )
    grid = np.linspace(0.0, 1.0, _MU_GRID)
    while np.any(wide := refuted & (high - low > _MU_TOLERANCE)):
        cases = np.flatnonzero(wide)
        mus = low[cases, None] + (high - low)[cases, None] * grid  # low[cases] is refuted
        refutes = gdp_one_run_refutes(
            num_canaries=num_canaries,
            num_guesses=guesses[cases, None],
            num_correct=correct[cases, None],
            mu=mus,
            alpha=alpha,
        )
        last = _MU_GRID - 1 - np.argmax(refutes[:, ::-1], axis=1)  # largest refuted point
        rows = np.arange(cases.size)
        low[cases] = mus[rows, last]
        high[cases] = mus[rows, np.minimum(last + 1, _MU_GRID - 1)]
    return np.where(refuted, low, 0.0).reshape(np.broadcast(num_guesses, num_correct).shape)


def gdp_epsilon(mu: float, delta: float) -> float:
    """ε at δ of μ-GDP (Dong et al. 2019, Cor. 2.13): the ε of N(μ, 1) vs N(0, 1).

    Args:
        mu: μ ≥ 0.
        delta: δ in (0, 1).

    Returns:
        The smallest ε with δ(ε) ≤ delta (0 when mu-GDP already gives δ(0) ≤ delta).

    Example:
        >>> round(gdp_epsilon(1.0, 1e-5), 3)
        4.377
    """
    if mu <= 0:
        return 0.0

    def log_delta_gap(eps: float) -> float:
        upper = norm.logcdf(-eps / mu + mu / 2)
        lower = eps + norm.logcdf(-eps / mu - mu / 2)
        return upper + math.log1p(-math.exp(min(lower - upper, 0.0))) - math.log(delta)

    if log_delta_gap(0.0) <= 0:
        return 0.0
    high = 1.0
    while log_delta_gap(high) > 0:
        high *= 2
        if high > 1e6:
            return math.inf
    return float(brentq(log_delta_gap, 0.0, high, xtol=1e-9))


def gdp_mu(epsilon: float, delta: float) -> float:
    """The μ whose μ-GDP has ε at δ equal to ``epsilon`` (inverse of `gdp_epsilon`).

    Example:
        >>> round(gdp_mu(gdp_epsilon(1.5, 1e-5), 1e-5), 6)
        1.5
    """
    if epsilon <= 0:
        return 0.0
    high = 1.0
    while gdp_epsilon(high, delta) < epsilon:
        high *= 2
    return float(brentq(lambda mu: gdp_epsilon(mu, delta) - epsilon, 1e-9, high, xtol=1e-10))


@dataclass(frozen=True)
class PlannedScores:
    """A score's tails for members and non-members under a planned mechanism, per threshold.

    Attributes:
        thresholds: ``(n,)`` float64 ascending thresholds (test: member if score ≥ threshold).
        tpr: ``(n,)`` float64, P[a member's score ≥ threshold] (non-increasing).
        fpr: ``(n,)`` float64, P[a non-member's score ≥ threshold] (non-increasing).
    """

    thresholds: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    fpr: np.ndarray = field(repr=False)

    def epsilon_at_expected_counts(
        self, *, n_in: int, n_out: int, delta: float, confidence: float
    ) -> np.ndarray:
        """``(n,)`` the Clopper–Pearson ε bound of each threshold at its expected counts.

        The arithmetic of `dptrain.audit.epsilon.epsilon_at_threshold` (the two intervals share
        1 − confidence) applied to round(n_in · TPR) and round(n_out · FPR): about the median
        bound an audit of n_in members and n_out non-members reaches with that threshold.
        """
        check_confidence(confidence)
        if n_in < 1 or n_out < 1:
            raise ConfigError(f"need >= 1 member and non-member, got {n_in} and {n_out}")
        significance = (1 - confidence) / 2
        tpr_lower = clopper_pearson_lower(
            np.round(self.tpr * n_in), n_in, confidence=1 - significance
        )
        fpr_upper = clopper_pearson_upper(
            np.round(self.fpr * n_out), n_out, confidence=1 - significance
        )
        return np.maximum(_eps_from_rates(tpr_lower, fpr_upper, delta=delta), 0.0)

    def best_threshold(
        self, *, n_in: int, n_out: int, delta: float, confidence: float
    ) -> tuple[float, float]:
        """The threshold with the largest bound at the expected counts, and that bound.

        The bound is what the optimal test reaches (about half the time) with these sample
        sizes: the ceiling of an audit that observes these scores.
        """
        epsilon = self.epsilon_at_expected_counts(
            n_in=n_in, n_out=n_out, delta=delta, confidence=confidence
        )
        best = int(np.argmax(epsilon))
        return float(self.thresholds[best]), float(epsilon[best])


def subsampled_gaussian_scores(
    *, noise_multiplier: float, sample_rate: float, steps: int, spacing: float = 0.01
) -> PlannedScores:
    """Exact tails of the likelihood-ratio score of T Poisson-subsampled Gaussian steps.

    A member's step is N(1, σ²) with probability q and N(0, σ²) otherwise; a non-member's is
    N(0, σ²). The score is the sum over steps of the per-step privacy loss
    L(y) = log(1 − q + q·exp((y − ½)/σ²)), which is increasing in y, so its per-step distribution
    follows from the Gaussian CDF at L's inverse. It is discretised on a grid of ``spacing``
    (each step's loss rounded to the nearest point) and composed over T steps by FFT, as privacy
    loss distribution accountants do; rounding moves the total by about spacing·√(T/12).

    Args:
        noise_multiplier: σ > 0, in units of the clipping norm.
        sample_rate: q in (0, 1].
        steps: T ≥ 1.
        spacing: Grid step of the per-step loss (widened if the grid would pass 2²³ points).

    Returns:
        The tails at up to 4000 thresholds, from where the non-member tail is 1 to where it
        drops below 10⁻¹².

    Raises:
        ConfigError: For a parameter out of range.

    Example:
        >>> planned = subsampled_gaussian_scores(noise_multiplier=1.0, sample_rate=1.0, steps=1)
        >>> i = int(np.searchsorted(planned.thresholds, 0.0))  # score ≥ 0 ⟺ y ≥ ½
        >>> round(float(planned.tpr[i]), 2), round(float(planned.fpr[i]), 2)  # Φ(½), Φ(−½)
        (0.69, 0.31)
    """
    if not noise_multiplier > 0:
        raise ConfigError(f"noise_multiplier must be > 0, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps}")
    if not spacing > 0:
        raise ConfigError(f"spacing must be > 0, got {spacing}")
    sigma, q = float(noise_multiplier), float(sample_rate)
    z = float(norm.isf(_TAIL_MASS))
    low, high = _step_loss(np.array([-z * sigma, 1 + z * sigma]), sigma, q)
    spacing = max(spacing, (high - low) * steps / _MAX_GRID)
    n = math.ceil((high - low) / spacing) + 1
    edges = low + spacing * (np.arange(1, n) - 0.5)  # between neighbouring grid points
    y = _step_loss_inverse(edges, sigma, q)
    out_cdf = np.concatenate(([0.0], norm.cdf(y / sigma), [1.0]))
    in_cdf = (1 - q) * out_cdf + q * np.concatenate(([0.0], norm.cdf((y - 1) / sigma), [1.0]))
    size = steps * (n - 1) + 1
    n_fft = 1 << math.ceil(math.log2(size))
    tails = []
    for cdf in (in_cdf, out_cdf):
        mass = np.fft.irfft(np.fft.rfft(np.diff(cdf), n_fft) ** steps, n_fft)[:size]
        mass = np.clip(mass, 0.0, None)  # FFT round-off, ~1e-16
        tails.append(np.minimum(np.cumsum(mass[::-1])[::-1] / mass.sum(), 1.0))
    tpr, fpr = tails
    # Grid point j holds the totals rounded to it: score ≥ its lower half-way point.
    thresholds = steps * low + spacing * (np.arange(size) - 0.5)
    keep = np.flatnonzero(fpr >= _MIN_PLANNED_FPR)
    keep = keep[np.unique(np.linspace(0, keep.size - 1, _MAX_PLANNED_THRESHOLDS).astype(int))]
    return PlannedScores(thresholds=thresholds[keep], tpr=tpr[keep], fpr=fpr[keep])


def _step_loss(y: np.ndarray, sigma: float, q: float) -> np.ndarray:
    """L(y) = log(1 − q + q·exp((y − ½)/σ²)), one step's privacy loss (log-likelihood ratio)."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-q), math.log(q) + (y - 0.5) / sigma**2)


def _step_loss_inverse(loss: np.ndarray, sigma: float, q: float) -> np.ndarray:
    """The y with L(y) = loss; −∞ at or below L's floor log(1 − q)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        # log(e^loss − (1 − q)) = loss + log(1 − (1 − q)·e^(−loss))
        excess = loss + np.log1p(-(1 - q) * np.exp(-loss))
    y = sigma**2 * (excess - math.log(q)) + 0.5
    return np.where(np.isnan(y), -np.inf, y)
