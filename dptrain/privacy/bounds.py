"""What a DP-SGD guarantee implies for any membership-inference attack: max TPR per FPR, max AUC.

A run's privacy guarantee is a whole profile δ(ε), not one (ε, δ) pair. Each point of the profile
caps every membership test (Kairouz et al. 2015): TPR ≤ e^ε·FPR + δ(ε) and
TPR ≤ 1 − e^(−ε)·(1 − δ(ε) − FPR). The minimum over all ε is the tightest cap the guarantee gives,
and the area under it is the largest AUC any attack on the run can reach. The audit reports the
measured attack next to this ceiling: an attack clearly above it (beyond sampling error) means a
bug in training or accounting, and a ceiling near 1 means the guarantee promises nothing.

The profile comes from dp_accounting's privacy loss distributions (PLD) with pessimistic rounding,
so every δ(ε) is an upper bound and every ceiling is valid. Neighbouring datasets differ by adding
or removing one record (or one patient's group of records); the worse of both directions is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from scipy.integrate import trapezoid
from scipy.stats import binom

from dptrain.errors import ConfigError

VACUOUS_AUC = 0.99
"""A bound allowing an attack AUC at least this high promises nothing useful about membership."""

# The FPR grid: log-spaced from 1e-6 so the low-FPR regime (where attacks matter) is resolved, plus
# a linear grid for the bulk of the area under the curve.
_FPR_GRID = np.unique(np.concatenate(([0.0], np.logspace(-6.0, 0.0, 301), np.linspace(0, 1, 1001))))
_FPR_GRID.flags.writeable = False

# The ε grid spans [0, ε(δ = _DELTA_FLOOR)] in _NUM_EPSILONS steps: beyond that ε, δ(ε) only caps
# TPR at FPR below 1e-6. Capped at _MAX_EPSILON so e^ε stays finite (lines with ε > 500 only matter
# for FPR < e^-500).
_NUM_EPSILONS = 2000
_DELTA_FLOOR = 1e-12
_MAX_EPSILON = 500.0

# PLD grid step at σ ≥ 1 for one record. A step's privacy losses grow like the largest sensitivity
# in the mixture (k for a group of k, before truncation) and, below σ = 1, like 1/σ², so the step
# is scaled by that sensitivity·max(1, 1/σ²): the relative resolution stays the same while the
# grid (whose size sets the mixture PLD's construction and the composition cost) stays small.
_VALUE_DISCRETIZATION_PER_RECORD = 2e-3

# Mixture components (numbers j of a patient's records sampled in one step) whose binomial tails
# together weigh less than this over the whole run are dropped, and their mass is folded back into
# the profile as a stated upper bound (see `_mixture_components`). Far below _DELTA_FLOOR, so the
# bound moves by at most ~1e-14 in δ, while a patient with 5,000 records needs a few hundred
# components instead of 5,001.
_RUN_TAIL_MASS = 1e-14
_MAX_COMPOSED_POINTS = 2e5


@dataclass(frozen=True)
class AttackBound:
    """The DP-implied limit on every membership test: max TPR at each FPR, and max AUC.

    Attributes:
        fpr: False-positive rates, increasing, from 0 to 1, dense near 0.
        max_tpr: Largest TPR any attack can reach at each FPR (a concave curve above the diagonal).
        max_auc: Area under ``max_tpr``: the largest attack AUC the guarantee allows.
        group_size: Records per patient the bound covers (1 = record level).
        method: How it was derived: "pld", "pld-mixture", "group-privacy", "single-pair" or
            "non-private".
    """

    fpr: np.ndarray  # (n_points,) float64, increasing, in [0, 1], includes 0 and 1
    max_tpr: np.ndarray  # (n_points,) float64, same grid
    max_auc: float
    group_size: int
    method: str

    @property
    def vacuous(self) -> bool:
        """Whether the bound allows an attack AUC of at least ``VACUOUS_AUC``."""
        return self.max_auc >= VACUOUS_AUC

    def max_tpr_at(self, fpr: float | np.ndarray) -> float | np.ndarray:
        """Max TPR at arbitrary FPRs, linearly interpolated on the grid.

        The curve is concave, so the chord between grid points can undershoot it; on the default
        grid the gap is below 1e-3.

        Args:
            fpr: One FPR or an array of them, in [0, 1].

        Returns:
            A float for a scalar ``fpr``, else an array of ``fpr``'s shape.

        Raises:
            ConfigError: If an FPR is outside [0, 1].

        Example:
            >>> round(single_pair_attack_bound(epsilon=np.log(3), delta=0.0).max_tpr_at(0.1), 6)
            0.3
        """
        values = np.asarray(fpr, dtype=np.float64)
        if not np.all((values >= 0) & (values <= 1)):
            raise ConfigError(f"fpr must be in [0, 1], got {fpr}")
        tpr = np.interp(values, self.fpr, self.max_tpr)
        return float(tpr) if tpr.ndim == 0 else tpr


def dp_sgd_attack_bound(
    *, noise_multiplier: float | None, sample_rate: float, steps: int, group_size: int = 1
) -> AttackBound:
    """Limit on membership attacks against a DP-SGD run, from its whole privacy profile.

    For ``group_size`` k > 1 (a patient with k records, each Poisson-sampled independently with
    probability q), one step's sum of the patient's clipped gradients has norm ≤ j·C with
    j ~ Binomial(k, q). The step's exact dominating pair is then the scalar mixture
    N(0, σ²) vs Σ_j Binom(j; k, q)·N(j, σ²) (Choquette-Choo et al. 2023, Cor. 4.7), composed T
    times. That is much tighter than classic group privacy (``group_privacy_attack_bound``).

    For large k most of the k + 1 components weigh next to nothing (j concentrates around k q), so
    binomial tails of total mass τ per step (T τ = 1e-14 over the run) are dropped and the profile
    of the kept, renormalised mixture is corrected to stay an upper bound: δ(ε) ≤
    δ_kept(ε − T·ln(1/(1 − τ))) + T τ (see `_mixture_components`). Where nothing is dropped (small
    k) the computation is the exact mixture.

    Runtime on a 2-core CPU, T = 210 or 2000: 0.05–0.2 s for k = 1, 0.3–0.7 s for k = 8, about
    1–2 s for k = 5,000 (building the mixture PLD dominates; its grid step grows with the largest
    kept j to keep that fast). Against an 8× finer PLD grid the discretisation loosens max TPR by
    < 2e-3 and max AUC by < 1e-3.

    Args:
        noise_multiplier: σ, noise std over clipping norm; 0 or None for non-private training.
        sample_rate: Poisson sampling rate q of each record per step, in (0, 1].
        steps: Number of noisy steps T.
        group_size: Records per patient k; 1 gives the record-level bound.

    Returns:
        The bound; method "pld" for k = 1, "pld-mixture" for k > 1, "non-private" if σ is 0/None.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> bound = dp_sgd_attack_bound(noise_multiplier=1.0, sample_rate=1.0, steps=1)
        >>> round(bound.max_auc, 2), bound.vacuous  # exact: Φ(1/√2) ≈ 0.760
        (0.76, False)
    """
    _check_run(sample_rate=sample_rate, steps=steps, group_size=group_size)
    if _non_private(noise_multiplier):
        return _non_private_bound(group_size)
    pld = _composed_pld(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        group_size=group_size,
    )
    epsilons = _epsilon_grid(pld)
    deltas = np.asarray(pld.get_delta_for_epsilon(epsilons), dtype=np.float64)
    method = "pld" if group_size == 1 else "pld-mixture"
    return _bound_from_profile(epsilons, deltas, group_size=group_size, method=method)


def group_privacy_attack_bound(
    *, noise_multiplier: float | None, sample_rate: float, steps: int, group_size: int
) -> AttackBound:
    """Limit on attacks against a group of k records from classic group privacy.

    Every (ε, δ(ε)) of the record-level profile gives (kε, δ(ε)·(e^{kε} − 1)/(e^ε − 1)) for groups
    of k (the sum Σ_{i<k} e^{iε}·δ from chaining k neighbouring datasets). Kept as the textbook
    comparison point: ``dp_sgd_attack_bound`` with the mixture is never looser.

    Args:
        noise_multiplier: σ, noise std over clipping norm; 0 or None for non-private training.
        sample_rate: Poisson sampling rate q of each record per step, in (0, 1].
        steps: Number of noisy steps T.
        group_size: Records per patient k.

    Returns:
        The bound, method "group-privacy" (or "non-private").

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> kwargs = dict(noise_multiplier=2.0, sample_rate=1.0, steps=1)
        >>> one = group_privacy_attack_bound(group_size=1, **kwargs)
        >>> two = group_privacy_attack_bound(group_size=2, **kwargs)
        >>> round(one.max_auc, 2), round(two.max_auc, 2)  # exact for k = 2: Φ(1/√2) ≈ 0.76
        (0.64, 0.77)
    """
    _check_run(sample_rate=sample_rate, steps=steps, group_size=group_size)
    if _non_private(noise_multiplier):
        return _non_private_bound(group_size)
    pld = _composed_pld(
        noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, group_size=1
    )
    epsilons = _epsilon_grid(pld, max_epsilon=_MAX_EPSILON / group_size)
    deltas = np.asarray(pld.get_delta_for_epsilon(epsilons), dtype=np.float64)
    # (e^{kε} − 1)/(e^ε − 1), with its limit k at ε = 0.
    ratio = np.full_like(epsilons, float(group_size))
    positive = epsilons > 0
    ratio[positive] = np.expm1(group_size * epsilons[positive]) / np.expm1(epsilons[positive])
    return _bound_from_profile(
        group_size * epsilons,
        np.minimum(deltas * ratio, 1.0),
        group_size=group_size,
        method="group-privacy",
    )


def single_pair_attack_bound(*, epsilon: float, delta: float) -> AttackBound:
    """Limit on attacks implied by a single (ε, δ) pair, e.g. the one a run reports.

    Shows how much a single pair throws away: at ε = 8, δ = 1e-5 it allows an attack AUC of
    ≈ 0.9997, while the full profile of a DP-SGD run calibrated to that pair allows ≈ 0.85.

    Args:
        epsilon: ε ≥ 0.
        delta: δ in [0, 1].

    Returns:
        The bound, method "single-pair".

    Raises:
        ConfigError: If ε or δ is out of range.

    Example:
        >>> round(single_pair_attack_bound(epsilon=0.0, delta=0.0).max_auc, 6)
        0.5
        >>> round(single_pair_attack_bound(epsilon=8.0, delta=1e-5).max_auc, 4)
        0.9997
    """
    if not 0 <= epsilon <= _MAX_EPSILON:
        raise ConfigError(f"epsilon must be in [0, {_MAX_EPSILON}], got {epsilon}")
    if not 0 <= delta <= 1:
        raise ConfigError(f"delta must be in [0, 1], got {delta}")
    return _bound_from_profile(
        np.array([float(epsilon)]), np.array([float(delta)]), group_size=1, method="single-pair"
    )


def privacy_profile(
    *,
    noise_multiplier: float | None,
    sample_rate: float,
    steps: int,
    epsilons: np.ndarray,
    group_size: int = 1,
) -> np.ndarray:
    """The run's privacy profile δ(ε): the smallest δ with (ε, δ)-DP, at each given ε.

    Pessimistic PLD estimate, so each value is an upper bound (within the PLD's discretisation,
    see ``dp_sgd_attack_bound``). Non-private training has δ(ε) = 1 everywhere.

    Args:
        noise_multiplier: σ, noise std over clipping norm; 0 or None for non-private training.
        sample_rate: Poisson sampling rate q of each record per step, in (0, 1].
        steps: Number of noisy steps T.
        epsilons: ``(n,)`` ε values ≥ 0.
        group_size: Records per patient k (mixture-of-Gaussians accounting for k > 1).

    Returns:
        ``(n,)`` float64 δ(ε).

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> delta = privacy_profile(noise_multiplier=1.0, sample_rate=1.0, steps=1,
        ...     epsilons=np.array([0.0, 1.0]))
        >>> [round(float(d), 3) for d in delta]  # exact: 2Φ(1/2) − 1 = 0.383, 0.127
        [0.383, 0.127]
    """
    _check_run(sample_rate=sample_rate, steps=steps, group_size=group_size)
    eps = np.asarray(epsilons, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(eps) & (eps >= 0)):
        raise ConfigError(f"epsilons must be finite and >= 0, got {epsilons}")
    if _non_private(noise_multiplier):
        return np.ones_like(eps)
    pld = _composed_pld(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        group_size=group_size,
    )
    return np.asarray(pld.get_delta_for_epsilon(eps), dtype=np.float64).reshape(eps.shape)


def dp_sgd_epsilon(
    *,
    noise_multiplier: float | None,
    sample_rate: float,
    steps: int,
    delta: float,
    group_size: int = 1,
) -> float:
    """ε at ``delta`` of a DP-SGD run for a group of ``group_size`` records (a patient's records).

    The same PLD accounting as `dp_sgd_attack_bound` (mixture of Gaussians for k > 1), so the
    patient-level ε and the patient-level attack bound describe one guarantee. For k = 1 it agrees
    with Opacus' PRV accountant to its ε tolerance.

    Args:
        noise_multiplier: σ; 0 or None for non-private training (ε = ∞).
        sample_rate: Poisson sampling rate q of each record per step, in (0, 1].
        steps: Number of noisy steps T.
        delta: δ in (0, 1).
        group_size: Records per patient k.

    Returns:
        ε (infinite when not private).

    Example:
        >>> one = dp_sgd_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=100, delta=1e-5)
        >>> three = dp_sgd_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=100, delta=1e-5,
        ...     group_size=3)
        >>> one < three
        True
    """
    _check_run(sample_rate=sample_rate, steps=steps, group_size=group_size)
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if _non_private(noise_multiplier):
        return float("inf")
    pld = _composed_pld(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        group_size=group_size,
    )
    return float(pld.get_epsilon_for_delta(delta))


def _check_run(*, sample_rate: float, steps: int, group_size: int) -> None:
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
    for name, value in (("steps", steps), ("group_size", group_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")


def _non_private(noise_multiplier: float | None) -> bool:
    if noise_multiplier is None:
        return True
    if not noise_multiplier >= 0:
        raise ConfigError(f"noise_multiplier must be >= 0 (or None), got {noise_multiplier}")
    return noise_multiplier == 0


def _non_private_bound(group_size: int) -> AttackBound:
    return AttackBound(
        fpr=_FPR_GRID,
        max_tpr=np.ones_like(_FPR_GRID),
        max_auc=1.0,
        group_size=group_size,
        method="non-private",
    )


@dataclass(frozen=True)
class _MixtureComponents:
    """The kept part of the per-step mixture Σ_j Binom(j; k, q)·N(j, σ²).

    Attributes:
        counts: ``(m,)`` float64 sensitivities j kept, contiguous and increasing.
        weights: ``(m,)`` float64 their binomial probabilities, renormalised to sum to 1.
        tail_mass: τ, the binomial mass of the dropped j (both tails), per step.
    """

    counts: np.ndarray
    weights: np.ndarray
    tail_mass: float


def _mixture_components(
    group_size: int, sample_rate: float, tail_mass: float
) -> _MixtureComponents:
    """The components j of the group's mixture, both binomial tails up to ``tail_mass`` dropped.

    Why the kept mixture still gives an upper bound: write the step's mixture as
    Q = (1 − τ)·Q_kept + τ·Q_tail and P = N(0, σ²). Over T steps, (i) Q^T ≥ (1 − τ)^T·Q_kept^T
    pointwise, so P^T(S) − e^ε Q^T(S) ≤ P^T(S) − e^{ε − s} Q_kept^T(S) with s = T·ln(1/(1 − τ));
    (ii) TV(Q^T, Q_kept^T) ≤ T τ, so Q^T(S) − e^ε P^T(S) ≤ Q_kept^T(S) − e^ε P^T(S) + T τ. Hence
    in both directions δ(ε) ≤ δ_kept(ε − s) + T τ (`_Profile`).

    Example:
        >>> components = _mixture_components(5000, 0.01, 1e-16)
        >>> len(components.counts) < 200, components.tail_mass <= 1e-16
        (True, True)
    """
    counts = np.arange(group_size + 1)
    pmf = binom.pmf(counts, group_size, sample_rate)
    below = np.cumsum(pmf)  # mass of j' <= j
    above = np.cumsum(pmf[::-1])[::-1]  # mass of j' >= j
    low = int(np.searchsorted(below, tail_mass / 2, side="right"))  # drop j < low
    high = max(int(np.flatnonzero(above > tail_mass / 2)[-1]), low)  # drop j > high
    dropped = (below[low - 1] if low > 0 else 0.0) + (above[high + 1] if high < group_size else 0.0)
    kept = pmf[low : high + 1]
    return _MixtureComponents(
        counts=counts[low : high + 1].astype(np.float64),
        weights=kept / kept.sum(),
        tail_mass=float(dropped),
    )


@dataclass(frozen=True)
class _Profile:
    """A composed PLD with the correction for dropped mixture tails: δ(ε) ≤ δ_pld(ε − s) + slack.

    With nothing dropped (``epsilon_shift = delta_slack = 0``) it is the PLD itself.
    """

    pld: pld_lib.PrivacyLossDistribution
    epsilon_shift: float = 0.0
    delta_slack: float = 0.0

    def get_delta_for_epsilon(self, epsilons: float | np.ndarray) -> np.ndarray:
        """Upper bound on δ at each ε."""
        shifted = np.asarray(epsilons, dtype=np.float64) - self.epsilon_shift
        deltas = np.asarray(self.pld.get_delta_for_epsilon(shifted), dtype=np.float64)
        return np.minimum(deltas + self.delta_slack, 1.0)

    def get_epsilon_for_delta(self, delta: float) -> float:
        """Smallest ε whose corrected δ is at most ``delta`` (∞ if the slack alone exceeds it)."""
        if delta <= self.delta_slack:
            return math.inf
        return float(self.pld.get_epsilon_for_delta(delta - self.delta_slack)) + self.epsilon_shift


def _composed_pld(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    group_size: int,
    run_tail_mass: float = _RUN_TAIL_MASS,
) -> _Profile:
    """Privacy profile of T Poisson-subsampled Gaussian steps, for one record or k records."""
    scale = max(1.0, noise_multiplier**-2)
    if group_size == 1:
        step = pld_lib.from_gaussian_mechanism(
            noise_multiplier,
            sampling_prob=sample_rate,
            value_discretization_interval=_VALUE_DISCRETIZATION_PER_RECORD * scale,
        )
        return _Profile(step.self_compose(steps))
    components = _mixture_components(group_size, sample_rate, run_tail_mass / steps)
    interval = _VALUE_DISCRETIZATION_PER_RECORD * max(1.0, components.counts[-1]) * scale
    # Where a step's losses are huge (thousands of records, large q: E[j²]/2σ² >> 1), the composed
    # PLD spans ~T·E[j²]/2σ² and its grid would have tens of millions of points. A coarser grid
    # keeps it near _MAX_COMPOSED_POINTS; pessimistic rounding keeps every δ(ε) an upper bound,
    # and ε there is in the thousands, so the relative loss of precision is small.
    mean_square = float(np.dot(components.weights, components.counts**2))
    interval = max(interval, steps * mean_square / (2 * noise_multiplier**2) / _MAX_COMPOSED_POINTS)
    step = pld_lib.from_mixture_gaussian_mechanism(
        noise_multiplier,
        sensitivities=components.counts,
        sampling_probs=components.weights,
        value_discretization_interval=interval,
    )
    tail = components.tail_mass
    return _Profile(
        step.self_compose(steps),
        epsilon_shift=-steps * math.log1p(-tail) if tail > 0 else 0.0,
        delta_slack=min(steps * tail, 1.0),
    )


def _epsilon_grid(pld: _Profile, *, max_epsilon: float = _MAX_EPSILON) -> np.ndarray:
    top = min(pld.get_epsilon_for_delta(_DELTA_FLOOR), max_epsilon)
    return np.linspace(0.0, top, _NUM_EPSILONS)


def _bound_from_profile(
    epsilons: np.ndarray, deltas: np.ndarray, *, group_size: int, method: str
) -> AttackBound:
    """Envelope of the two tradeoff lines of every (ε, δ(ε)) on the grid, and its area."""
    fpr = _FPR_GRID[:, None]
    growth = np.exp(epsilons)[None, :]
    lines = np.minimum(growth * fpr + deltas[None, :], 1.0 - (1.0 - deltas[None, :] - fpr) / growth)
    max_tpr = np.clip(lines.min(axis=1), _FPR_GRID, 1.0)
    return AttackBound(
        fpr=_FPR_GRID,
        max_tpr=max_tpr,
        max_auc=float(trapezoid(max_tpr, _FPR_GRID)),
        group_size=group_size,
        method=method,
    )
