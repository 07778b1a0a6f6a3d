"""The paired view of the audit's design: models 2j and 2j + 1 see every patient on opposite sides.

`balanced_membership_masks` trains model ``2j`` on a random half of the patients and model
``2j + 1`` on the other half, independently for each pair j. For one record, the K/2 pair
differences d_j = φ(IN model of pair j) − φ(OUT model of pair j) are then independent draws, and if
training on the record does not change its signal (no membership effect) swapping the two models of
a pair changes nothing: each d_j is symmetric about 0. That symmetry is what the null floor
(re-labelling pairs), the per-patient tests and the reliability split build on.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

from dptrain.errors import DataError

# Added to the variance of the pair differences, like metrics' per-record variance floor: a record
# whose differences are all equal would otherwise divide by zero.
_VARIANCE_FLOOR = 1e-12


def check_complementary_pairs(membership: np.ndarray) -> None:
    """Raises `DataError` unless models ``2j`` and ``2j + 1`` have complementary training sets.

    Args:
        membership: ``(K, n_patients)`` (or ``(K, n_records)``) bool membership masks.

    Example:
        >>> check_complementary_pairs(np.array([[1, 0], [0, 1]], dtype=bool))
        >>> check_complementary_pairs(np.array([[1, 0], [1, 0]], dtype=bool))
        Traceback (most recent call last):
        ...
        dptrain.errors.DataError: membership must come in complementary pairs ...: pair 0 is not
    """
    mask = np.asarray(membership, dtype=bool)
    if mask.ndim != 2 or len(mask) % 2:
        raise DataError(f"membership must be (K, n) with K even, got shape {mask.shape}")
    broken = np.flatnonzero(np.any(mask[0::2] == mask[1::2], axis=1))
    if broken.size:
        raise DataError(
            "membership must come in complementary pairs (model 2j + 1 trains on the patients "
            f"model 2j leaves out): pair {int(broken[0])} is not"
        )


def pair_sides(signals: np.ndarray, record_membership: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """φ under each pair's IN model and under its OUT model, per record.

    Args:
        signals: ``(K, n_records)`` float signals, models in complementary pairs.
        record_membership: ``(K, n_records)`` bool membership of every record.

    Returns:
        Two ``(K/2, n_records)`` float64 arrays: the IN sides and the OUT sides.

    Example:
        >>> signals = np.array([[3.0, 1.0], [1.0, 2.0]])
        >>> inside, outside = pair_sides(signals, np.array([[1, 0], [0, 1]], dtype=bool))
        >>> inside.tolist(), outside.tolist()
        ([[3.0, 2.0]], [[1.0, 1.0]])
    """
    check_complementary_pairs(record_membership)
    values = np.asarray(signals, dtype=np.float64)
    first, second = values[0::2], values[1::2]
    inside = record_membership[0::2]
    return np.where(inside, first, second), np.where(inside, second, first)


def pair_differences(signals: np.ndarray, record_membership: np.ndarray) -> np.ndarray:
    """φ under each pair's IN model minus φ under its OUT model, per record.

    Args:
        signals: ``(K, n_records)`` float signals, models in complementary pairs.
        record_membership: ``(K, n_records)`` bool membership of every record.

    Returns:
        ``(K/2, n_records)`` float64 differences d_j.

    Example:
        >>> signals = np.array([[3.0, 1.0], [1.0, 2.0]])
        >>> pair_differences(signals, np.array([[1, 0], [0, 1]], dtype=bool)).tolist()
        [[2.0, 1.0]]
    """
    inside, outside = pair_sides(signals, record_membership)
    return inside - outside


def paired_t(differences: np.ndarray) -> tuple[np.ndarray, int]:
    """One-sample t statistic of every record's pair differences, and its degrees of freedom.

    t = d̄ / (s_d / √n) with n = K/2 pairs. Under Gaussian differences it is noncentral t with
    n − 1 degrees of freedom and noncentrality √n · μ_d/σ_d; μ_d/σ_d = Φ⁻¹(AUC) of the record's
    IN-vs-OUT comparison when a pair's two signals are independent, so t is the record's binormal
    AUC on the probit scale, times √n. NaN with fewer than 2 pairs.

    Args:
        differences: ``(n_pairs, n_records)`` pair differences.

    Returns:
        ``(n_records,)`` t statistics and the degrees of freedom n − 1.

    Example:
        >>> t, dof = paired_t(np.array([[1.0], [2.0], [3.0]]))
        >>> round(float(t[0]), 4), dof  # mean 2, sd 1, n 3
        (3.4641, 2)
    """
    values = np.asarray(differences, dtype=np.float64)
    n_pairs = values.shape[0]
    if n_pairs < 2:
        return np.full(values.shape[1], np.nan), 0
    mean = values.mean(axis=0)
    variance = values.var(axis=0, ddof=1) + _VARIANCE_FLOOR
    return mean / np.sqrt(variance / n_pairs), n_pairs - 1


def unpaired_scale(inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Per record, σ_d / √(σ_IN² + σ_OUT²): the factor from the paired effect to the audit's AUC.

    The paired t measures μ_d/σ_d; the audit's per-record AUC
    (`dptrain.audit.metrics.record_vulnerability`) is Φ(μ_d / √(σ_IN² + σ_OUT²)), the attacker's:
    the target model and an OUT model are independent. Within a pair they are not (complementary
    halves: ACTG 175's IN and OUT signals correlate at −0.37 non-private and −0.61 at ε = 8), so σ_d
    is the larger and the paired scale alone understated the share above 0.8 (3.8 % for 5.0 % on
    ACTG 175, 25.5 % for 28.2 % on BreastMNIST, at K = 256). Estimated per record: pooling it across
    records biases the leaky ones, whose IN and OUT sides correlate less (BreastMNIST: Spearman 0.70
    with the AUC).

    Args:
        inside: ``(K/2, n_records)`` IN sides of the pairs (`dptrain.audit.paired.pair_sides`).
        outside: ``(K/2, n_records)`` OUT sides.

    Returns:
        ``(n_records,)`` factors (1 where the sides do not vary; NaN below 2 pairs). Both
        variances carry `paired_t`'s floor, so constant differences do not give a factor of 0.

    Example:
        >>> inside = np.array([[1.0], [2.0], [3.0]])
        >>> round(float(unpaired_scale(inside, -inside)[0]), 4)  # anti-correlated: σ_d = 2σ
        1.4142
    """
    if inside.shape[0] < 2:
        return np.full(inside.shape[1], np.nan)
    paired = np.var(inside - outside, axis=0, ddof=1) + _VARIANCE_FLOOR
    unpaired = np.var(inside, axis=0, ddof=1) + np.var(outside, axis=0, ddof=1) + _VARIANCE_FLOOR
    return np.sqrt(paired / unpaired)


def record_p_values(t_statistics: np.ndarray, dof: int) -> np.ndarray:
    """One-sided p-values of H0 "no membership effect" against "members score higher".

    Under H0 each pair difference is symmetric about 0 whatever the signal's distribution (the
    two models of a pair are exchangeable); the Student-t reference is exact for Gaussian
    differences, and for symmetric heavy-tailed ones the t-test is conservative in the tail
    (Efron 1969, "Student's t-test under symmetry conditions"). The audit checks the tail on its
    own signals: the null floor counts how many patients the FDR list would flag on re-labelled
    signals.

    Args:
        t_statistics: ``(n_records,)`` paired t statistics.
        dof: Degrees of freedom (K/2 − 1); 0 gives NaN p-values.

    Returns:
        ``(n_records,)`` p-values (NaN where t is NaN).
    """
    if dof < 1:
        return np.full(np.shape(t_statistics), np.nan)
    return student_t.sf(t_statistics, dof)


def patient_p_values(
    record_p: np.ndarray, record_patient: np.ndarray, *, n_patients: int
) -> np.ndarray:
    """Each patient's p-value: the smallest of their records' p-values, Bonferroni-corrected.

    A patient is exposed if any of their records is, so their test is the minimum over records;
    multiplying by the number of records keeps it valid whatever the dependence between records
    (records of one patient share every model and every membership decision).

    Args:
        record_p: ``(n_records,)`` per-record p-values (NaN: untestable).
        record_patient: ``(n_records,)`` patient index of every record.
        n_patients: Number of patients.

    Returns:
        ``(n_patients,)`` p-values in [0, 1] (NaN if none of the patient's records is testable).

    Example:
        >>> patient_p_values(np.array([0.01, 0.2, 0.5]), np.array([0, 0, 1]), n_patients=2)
        array([0.02, 0.5 ])
    """
    p = np.asarray(record_p, dtype=np.float64)
    smallest = np.full(n_patients, np.inf)
    np.fmin.at(smallest, record_patient, np.where(np.isnan(p), np.inf, p))
    counts = np.bincount(record_patient, weights=~np.isnan(p), minlength=n_patients)
    tested = counts > 0
    return np.where(tested, np.minimum(np.where(tested, smallest, 0.0) * counts, 1.0), np.nan)


def remove_membership_effect(
    signals: np.ndarray,
    record_membership: np.ndarray,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Signals with each record's IN and OUT sides moved to the record's midpoint.

    Subtracting each side's own mean (and adding back the midpoint of the two means, so attacks
    that use a record's level still see it) removes everything membership does to the mean while
    keeping what the audit's noise really looks like: each record's spread on each side, heavy
    tails, correlation between models.

    Moved exactly to the midpoint, a record's K/2 pair differences become residuals that sum to
    zero, which no record without a membership effect has: re-labelled, their signs agree far more
    often than chance (with 2 pairs, half the time, and then t is infinite), and the null floor of
    the FDR list said it was non-empty in every re-labelling at K = 4 and in 22 % at K = 8 on pure
    noise. With ``rng``, each record keeps a chance difference between its sides instead, drawn
    from N(0, s²/(K/2)) with s² the variance of its pair differences: the spread the mean
    difference has when nothing leaks, so the differences are again independent with the record's
    own variance (exactly so for Gaussian ones).

    Args:
        signals: ``(K, n_records)`` signals.
        record_membership: ``(K, n_records)`` bool membership of every record.
        rng: Source of the chance differences (None: both sides exactly at the midpoint).

    Returns:
        ``(K, n_records)`` float64 signals whose IN and OUT means agree for every record (or
        differ by chance alone).

    Example:
        >>> signals = np.array([[5.0], [1.0], [7.0], [3.0]])
        >>> members = np.array([[1], [0], [1], [0]], dtype=bool)
        >>> remove_membership_effect(signals, members).ravel().tolist()
        [3.0, 3.0, 5.0, 5.0]
    """
    values = np.asarray(signals, dtype=np.float64)
    mask = np.asarray(record_membership, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = np.where(mask, values, 0.0).sum(axis=0) / mask.sum(axis=0)
        mean_out = np.where(~mask, values, 0.0).sum(axis=0) / (~mask).sum(axis=0)
    mean_in, mean_out = np.nan_to_num(mean_in), np.nan_to_num(mean_out)
    midpoint = (mean_in + mean_out) / 2
    if rng is not None and len(values) >= 4:  # a spread needs two pairs
        differences = pair_differences(values, mask)
        spread = differences.std(axis=0, ddof=1) / np.sqrt(len(differences))
        midpoint = midpoint + np.where(mask, 0.5, -0.5) * (
            spread * rng.standard_normal(spread.size)
        )
    return values - np.where(mask, mean_in, mean_out) + midpoint
