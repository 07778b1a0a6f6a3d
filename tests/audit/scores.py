"""Synthetic attack scores with known answers, shared by the metric and ε-bound tests."""

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm


def gdp_epsilon(mu: float, delta: float) -> float:
    """ε at δ of μ-GDP (Dong et al. 2019, Cor. 2.13): the true ε of N(μ, 1) vs N(0, 1)."""

    def gap(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    return brentq(gap, 0.0, 100.0)


def gaussian_scores(rng, *, n_each: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    members = np.repeat([True, False], n_each)
    return rng.normal(size=2 * n_each) + shift * members, members
