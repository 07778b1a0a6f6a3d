"""Mahloujifar et al. (2024) one-run f-DP bound: the recursion, its validity and its power.

The simulated mechanism is exactly μ-GDP per canary: m canaries each included with probability ½,
and the output holds one score per canary, N(μ, 1) when included and N(0, 1) otherwise.
"""

import numpy as np
import pytest
from scipy.special import ndtr, ndtri
from scipy.stats import binom

from dptrain.audit.auditor import (
    FixedThreshold,
    PlannedThreshold,
    ScoreAuditor,
    SplitSample,
    gdp_epsilon,
    gdp_one_run_mu,
    gdp_one_run_refutes,
)
from dptrain.audit.lower_bounds import subsampled_gaussian_scores
from dptrain.errors import ConfigError

DELTA = 1e-5


def naive_refutes(m: int, r: int, v: int, mu: float, alpha: float) -> bool:
    """The paper's recursion with abstentions as written: v Python steps, no early stop."""
    right, wrong = alpha * v / m, alpha * (r - v) / m
    for i in range(v - 1, -1, -1):
        new_wrong = max(wrong, float(ndtr(ndtri(min(right, 1.0)) - mu)))
        right = right + i / (r - i) * (new_wrong - wrong)
        wrong = new_wrong
    return right + wrong > r / m


def gaussian_mechanism(seed: int, *, mu: float, m: int) -> ScoreAuditor:
    rng = np.random.default_rng(seed)
    members = rng.random(m) < 0.5
    return ScoreAuditor.from_membership(rng.normal(size=m) + mu * members, members)


def test_the_vectorised_recursion_matches_the_papers_loop():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(150):
        m = int(rng.integers(10, 600))
        r = int(rng.integers(1, m + 1))
        cases.append((m, r, int(rng.integers(r // 2, r + 1)), float(rng.uniform(0.0, 3.0))))
    for m, r, v, mu in cases:
        got = gdp_one_run_refutes(num_canaries=m, num_guesses=r, num_correct=v, mu=mu, alpha=0.05)
        assert bool(got) == naive_refutes(m, r, v, mu, 0.05), (m, r, v, mu)


def test_at_mu_zero_the_test_is_never_more_liberal_than_the_exact_binomial_test():
    # 0-GDP: each guess is a fair coin, so N ~ Binomial(r, ½); the smallest v the recursion
    # refutes must have a binomial tail ≤ α, and it is at most one guess above the exact test's.
    for r in (10, 100, 1000):
        v = np.arange(r + 1)
        refuted = gdp_one_run_refutes(
            num_canaries=2000, num_guesses=r, num_correct=v, mu=0.0, alpha=0.05
        )
        smallest = int(v[refuted].min())
        exact = int(v[binom.sf(v - 1, r, 0.5) <= 0.05].min())
        assert exact <= smallest <= exact + 1
        assert refuted[smallest:].all()  # more correct guesses never refute less


def test_refutation_is_an_interval_of_mu_and_the_search_finds_its_end():
    mus = np.linspace(0.0, 3.0, 301)
    for r, v in ((100, 95), (400, 300), (2000, 1400)):
        refuted = gdp_one_run_refutes(
            num_canaries=4000, num_guesses=r, num_correct=v, mu=mus, alpha=0.01
        )
        assert refuted[0] and not refuted[-1]
        assert not np.any(np.diff(refuted.astype(int)) > 0)  # [0, μ̂) then nothing
        mu_hat = float(gdp_one_run_mu(num_canaries=4000, num_guesses=r, num_correct=v, alpha=0.01))
        assert mus[refuted].max() <= mu_hat < mus[refuted].max() + 0.01


def test_the_bound_stays_below_the_true_mu_and_beats_steinke():
    # Each bound fails (μ̂ > μ) with probability ≤ 5 %; at μ = 1, m = 4000, 200 seeds gave
    # μ̂ in [0.47, 0.77] (median 0.57, never above μ), so a failure here would take an error far
    # larger than the 5 %, not bad luck. The f-DP ε beat Steinke's in 200 of 200 seeds (median
    # 2.33 against 1.76; the true ε is 4.38).
    mu = 1.0
    for seed in range(4):
        auditor = gaussian_mechanism(seed, mu=mu, m=4000)
        fdp = auditor.epsilon_fdp_one_run(delta=DELTA)
        steinke = auditor.epsilon_one_run(delta=DELTA)
        assert 0.4 * mu < fdp.mu < mu
        assert fdp.epsilon == pytest.approx(gdp_epsilon(fdp.mu, DELTA))
        assert steinke.epsilon < fdp.epsilon < gdp_epsilon(mu, DELTA)
        assert fdp.num_correct <= fdp.num_guesses <= fdp.num_canaries == 4000
        assert fdp.num_candidates == 16 and fdp.mu <= fdp.ceiling_mu


def test_without_signal_the_bound_is_zero_in_nearly_every_seed():
    # μ = 0: μ̂ > 0 has probability ≤ 5 % per seed (3.0 % over 200 seeds at m = 4000). Allowing
    # 3 of 30 seeds, a correct implementation fails with probability ≤ 6 % at the worst-case 5 %
    # and 1.1 % at the measured 3 %; the fixed seeds below give 2 (the test is deterministic).
    nonzero = sum(
        gaussian_mechanism(seed, mu=0.0, m=4000).epsilon_fdp_one_run(delta=DELTA).mu > 0
        for seed in range(30)
    )
    assert nonzero <= 3


def test_a_perfect_attack_reaches_the_ceiling_and_strategies_are_honoured():
    scores = np.arange(1000.0)
    auditor = ScoreAuditor.from_membership(scores, scores >= 500)
    searched = auditor.epsilon_fdp_one_run(delta=DELTA)
    assert searched.num_correct == searched.num_guesses
    assert searched.mu == pytest.approx(searched.ceiling_mu) and searched.mu > 1.5
    fixed = auditor.epsilon_fdp_one_run(delta=DELTA, strategy=FixedThreshold(num_guesses=100))
    assert (fixed.num_guesses_in, fixed.num_guesses_out, fixed.num_correct) == (100, 0, 100)
    assert fixed.num_candidates == 1 and fixed.num_abstentions == 900
    split = [
        auditor.epsilon_fdp_one_run(delta=DELTA, strategy=SplitSample(seed=1)) for _ in range(2)
    ]
    assert split[0] == split[1] and split[0].num_canaries == 500
    planned = PlannedThreshold(
        subsampled_gaussian_scores(noise_multiplier=1.0, sample_rate=1.0, steps=1)
    )
    with pytest.raises(ConfigError, match=r"guesses by rank"):
        auditor.epsilon_fdp_one_run(delta=DELTA, strategy=planned)


def test_the_summary_carries_the_bound():
    summary = gaussian_mechanism(0, mu=2.0, m=2000).summary(delta=DELTA)
    assert summary.fdp_one_run.mu > 0.5
    assert summary.fdp_one_run.epsilon > summary.one_run.epsilon


def test_bad_counts_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"need 0 <= correct <= guesses <= canaries \(5\)"):
        gdp_one_run_refutes(num_canaries=5, num_guesses=6, num_correct=1, mu=1.0, alpha=0.05)
    with pytest.raises(ConfigError, match=r"alpha must be in \(0, 1\), got 1.5"):
        gdp_one_run_mu(num_canaries=5, num_guesses=4, num_correct=1, alpha=1.5)
    with pytest.raises(ConfigError, match=r"mu must be >= 0"):
        gdp_one_run_refutes(num_canaries=5, num_guesses=4, num_correct=1, mu=-1.0, alpha=0.05)
