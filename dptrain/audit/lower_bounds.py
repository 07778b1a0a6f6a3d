"""The arithmetic behind two of the auditor's ε lower bounds: one run, and Gaussian DP.

- One run (Steinke, Nasr & Jagielski 2023, Theorem 5.2 / Algorithm 1): the probability that an
  ε-DP run lets a guesser get at least v of r guesses right about m independently included
  canaries, and the largest ε that probability does not refute.
- Gaussian DP (Dong et al. 2019, Cor. 2.13): the ε of μ-GDP at δ, and back.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binom, norm

from dptrain.errors import ConfigError

MAX_EPSILON_SEARCH = 100.0


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
