"""Input checks and reference-group sums shared by the attacks' ``fit`` and ``score``.

Kept apart from the attacks' package ``__init__`` (which imports every attack) so that each
attack module can import them without a cycle.
"""

from __future__ import annotations

import numpy as np

from dptrain.errors import DataError


def check_signals(
    signals: np.ndarray, membership: np.ndarray, *, min_models: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and coerce the auditor's inputs, shared by every attack's ``fit``.

    Args:
        signals: φ of each record under each model, shape (K, n_records).
        membership: Whether each record was in each model's training set, shape (K, n_records).
        min_models: Smallest K the attack can use (reference-model attacks need K ≥ 2, so every
            target keeps at least one reference).

    Returns:
        ``(signals, membership)`` as float64 and bool arrays of shape (K, n_records).

    Raises:
        DataError: On wrong shapes, too few models, non-finite signals or non-0/1 membership.

    Example:
        >>> s, m = check_signals([[0.5, -1.0]], [[1, 0]])
        >>> s.dtype, m.tolist()
        (dtype('float64'), [[True, False]])
    """
    signals = np.asarray(signals, dtype=np.float64)
    membership = np.asarray(membership)
    if signals.ndim != 2 or signals.shape[1] == 0:
        raise DataError(f"signals must have shape (K, n_records), got {signals.shape}")
    if membership.shape != signals.shape:
        raise DataError(
            f"membership shape {membership.shape} must equal signals shape {signals.shape}"
        )
    if signals.shape[0] < min_models:
        raise DataError(f"this attack needs at least {min_models} models, got {signals.shape[0]}")
    if not np.all(np.isfinite(signals)):
        raise DataError("signals contain NaN or inf; compute them with true_label_confidence")
    if not np.all((membership == 0) | (membership == 1)):
        raise DataError("membership must be boolean (or 0/1)")
    return signals, membership.astype(bool)


def check_target_signals(target_signals: np.ndarray, n_records: int) -> np.ndarray:
    """Validate one new target model's signals against the fitted number of records.

    Args:
        target_signals: φ of each record under the new target model, shape (n_records,).
        n_records: Number of records the attack was fitted on.

    Returns:
        The signals as a float64 array of shape (n_records,).

    Raises:
        DataError: On a wrong shape or non-finite values.

    Example:
        >>> check_target_signals([0.5, -1.0], 2).shape
        (2,)
    """
    target_signals = np.asarray(target_signals, dtype=np.float64)
    if target_signals.shape != (n_records,):
        raise DataError(
            f"target_signals must have shape ({n_records},), got {target_signals.shape}"
        )
    if not np.all(np.isfinite(target_signals)):
        raise DataError("target_signals contain NaN or inf")
    return target_signals


def check_groups(groups: np.ndarray | None, n_models: int, *, min_groups: int = 2) -> np.ndarray:
    """Validate the reference groups of an attack's ``fit`` and relabel them 0..G − 1.

    For target model k, a reference attack uses as references only the models whose group
    differs from ``groups[k]``. The audit draws training sets in complementary pairs (model 2j
    trains on a random half of the patients, model 2j + 1 on the other half), so the partner of
    the target must be excluded too: with leave-one-*model*-out references a member of the target
    has K/2 − 1 IN and K/2 OUT references and a non-member K/2 and K/2 − 1, and that imbalance
    alone separates members from non-members. ``groups = np.arange(K) // 2`` gives every record
    K/2 − 1 IN and K/2 − 1 OUT references whatever the target's membership.

    Args:
        groups: Integer group label per model, shape (K,), or None for one group per model
            (leave-one-model-out).
        n_models: Number of models K.
        min_groups: Fewest distinct labels allowed; 2 for reference attacks, so that every target
            keeps at least one reference model.

    Returns:
        Group codes 0..G − 1 (in the order of the sorted labels), shape (K,), int64.

    Raises:
        DataError: On a wrong shape, non-integer labels or too few distinct groups.

    Example:
        >>> check_groups(np.array([7, 7, 3, 3, 9]), 5).tolist()
        [1, 1, 0, 0, 2]
        >>> check_groups(None, 3).tolist()
        [0, 1, 2]
        >>> check_groups(np.zeros(4, dtype=int), 4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dptrain.errors.DataError: groups need at least 2 distinct labels ..., got 1
    """
    if groups is None:
        return np.arange(n_models)
    groups = np.asarray(groups)
    if groups.shape != (n_models,):
        raise DataError(
            f"groups must have shape ({n_models},), one label per model, got {groups.shape}"
        )
    if not np.issubdtype(groups.dtype, np.integer):
        raise DataError(f"groups must be integer labels, got dtype {groups.dtype}")
    labels, codes = np.unique(groups, return_inverse=True)
    if labels.size < min_groups:
        raise DataError(
            f"groups need at least {min_groups} distinct labels so every target keeps a "
            f"reference model, got {labels.size}"
        )
    return codes.reshape(n_models).astype(np.int64)


def sum_other_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per target model k, the sum of ``values`` over the models outside k's group.

    The total over all K models minus the sum over k's own group, so the cost is O(K · n)
    whatever the groups. With one model per group (``groups = arange(K)``) the result is
    bitwise ``values.sum(axis=0) - values``, the leave-one-model-out totals.

    Args:
        values: One term per (model, record), shape (K, n).
        groups: Group codes 0..G − 1 from :func:`check_groups`, shape (K,).

    Returns:
        Sums over each target's references, shape (K, n).

    Example:
        >>> values = np.array([[1.0], [2.0], [4.0], [8.0]])
        >>> sum_other_groups(values, np.array([0, 0, 1, 1])).ravel().tolist()
        [12.0, 12.0, 3.0, 3.0]
    """
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    group_sums = np.add.reduceat(values[order], starts, axis=0)
    return values.sum(axis=0) - group_sums[groups]
