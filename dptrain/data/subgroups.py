"""Subgroup columns as report-safe labels: bands, quartiles, merged small groups.

Every loader that reads subgroup attributes (tables, image folders, PTB-XL) encodes them here, so
no patient's exact value (an age, a BMI) and no group of fewer than ``min_subgroup_size`` patients
ever reaches a report, a results file or a tracker.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd

from dptrain.errors import ConfigError, DataError

# A numeric subgroup column with more distinct values than this, and no bins, is continuous: it is
# binned at its quantiles rather than reported value by value (one "subgroup" per patient).
MAX_SUBGROUP_LEVELS = 10
SUBGROUP_QUANTILES = (0.25, 0.5, 0.75)


def encode_subgroup(
    values: pd.Series,
    *,
    column: str,
    edges: list[float] | None,
    value_names: dict[str, str],
    patient_ids: np.ndarray,
    minimum: int,
    notes: list[str],
) -> np.ndarray:
    """A subgroup column as report-safe strings, one per row.

    Banded at ``edges`` when given; a continuous column without edges is banded at its rounded
    quartiles (said in ``notes``), so that no patient's exact value is ever written; values are
    then renamed by ``value_names`` and those held by fewer than ``minimum`` patients merged.
    """
    if edges is not None:
        values = subgroup_bands(values, edges, column)
    elif is_continuous(values):
        quartiles = quantile_edges(values)
        notes.append(
            f"Subgroup column {column!r} is continuous ({values.nunique()} distinct values): "
            f"binned at the quartiles of its rows into {', '.join(band_labels(quartiles))} (edges "
            "rounded to 2 significant digits, outer bands open so that no patient's value is "
            f"shown); set data.subgroup_bins.{column} for other edges."
        )
        values = open_bands(values, quartiles)
    else:
        values = values.map(value_string)
    strings = values.map(lambda v: value_names.get(v, v)).to_numpy(dtype=str)
    return merge_small_subgroups(strings, patient_ids, column=column, minimum=minimum, notes=notes)


def check_subgroup_bins(bins: dict[str, list[float]]) -> None:
    """Refuses bin edges that are fewer than two or not increasing (``data.subgroup_bins``).

    Example:
        >>> check_subgroup_bins({"age": [0, 50, 120]})
    """
    for column, edges in bins.items():
        if len(edges) < 2 or any(low >= high for low, high in pairwise(edges)):
            raise ConfigError(
                f"data.subgroup_bins.{column} must be at least two strictly increasing edges, "
                f"got {list(edges)}; sort them and remove repeated edges"
            )


def subgroup_bands(values: pd.Series, edges: list[float], column: str) -> pd.Series:
    """Numeric subgroup values as bands ``lo-hi`` (left-closed), ``missing`` for NaN.

    Raises:
        DataError: If some values fall outside the edges (they would silently become ``missing``).

    Example:
        >>> subgroup_bands(pd.Series([25, 61, None]), [0, 50, 120], "age").tolist()
        ['0-50', '50-120', 'missing']
    """
    if not pd.api.types.is_numeric_dtype(values):
        raise DataError(f"data.subgroup_bins.{column}: column {column!r} is not numeric")
    outside = values.notna() & ((values < edges[0]) | (values >= edges[-1]))
    if outside.any():
        low, high = values.min(), values.max()
        raise DataError(
            f"data.subgroup_bins.{column}: {int(outside.sum())} row(s) have {column} outside "
            f"[{value_string(edges[0])}, {value_string(edges[-1])}) (the data run from "
            f"{value_string(low)} to {value_string(high)}); widen the first or last edge to "
            "cover them (bins are left-closed)"
        )
    labels = [f"{value_string(lo)}-{value_string(hi)}" for lo, hi in pairwise(edges)]
    bands = pd.cut(values, bins=edges, labels=labels, right=False)
    return bands.astype(object).where(bands.notna(), "missing").astype(str)


def value_string(value: object) -> str:
    """A subgroup value as text: ``missing`` for NaN, no ``.0`` on whole floats.

    Example:
        >>> value_string(1.0), value_string(float("nan")), value_string("F")
        ('1', 'missing', 'F')
    """
    if isinstance(value, float):
        if np.isnan(value):
            return "missing"
        if value == int(value):
            return str(int(value))
    return str(value)


def is_continuous(values: pd.Series) -> bool:
    """Whether a subgroup column is numeric with more than `MAX_SUBGROUP_LEVELS` distinct values.

    Example:
        >>> is_continuous(pd.Series(np.arange(11.0))), is_continuous(pd.Series([0, 1] * 9))
        (True, False)
    """
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return bool(numeric and values.nunique() > MAX_SUBGROUP_LEVELS)


def quantile_edges(values: pd.Series, digits: int = 2) -> list[float]:
    """Inner band edges at the column's quartiles, rounded to ``digits`` significant digits.

    Rounding keeps an edge from being some patient's exact value; more digits are used only when
    rounding would merge distinct quartiles.

    Example:
        >>> quantile_edges(pd.Series([18.3, 21.7, 24.87, 26.1, 29.94, 33.2, 41.05]))
        [23.0, 26.0, 32.0]
    """
    quartiles = np.unique(np.nanquantile(values.to_numpy(dtype=float), SUBGROUP_QUANTILES))
    for precision in range(digits, 16):
        edges = sorted({float(f"{edge:.{precision}g}") for edge in quartiles})
        if len(edges) == len(quartiles):
            return edges
    return [float(edge) for edge in quartiles]


def open_bands(values: pd.Series, edges: list[float]) -> pd.Series:
    """Values as left-closed bands between ``edges``, the outer two open: ``<23``, ``≥32``.

    Example:
        >>> open_bands(pd.Series([10.0, 25.0, 90.0, None]), [23.0, 32.0]).tolist()
        ['<23', '23-32', '≥32', 'missing']
    """
    bands = pd.cut(values, bins=[-np.inf, *edges, np.inf], labels=band_labels(edges), right=False)
    return bands.astype(object).where(bands.notna(), "missing").astype(str)


def band_labels(edges: list[float]) -> list[str]:
    """The labels of `open_bands`, lowest band first."""
    names = [value_string(edge) for edge in edges]
    return [f"<{names[0]}", *(f"{low}-{high}" for low, high in pairwise(names)), f"≥{names[-1]}"]


def merge_small_subgroups(
    values: np.ndarray, patient_ids: np.ndarray, *, column: str, minimum: int, notes: list[str]
) -> np.ndarray:
    """Merges the values held by fewer than ``minimum`` patients into ``other (n < minimum)``.

    A subgroup of one or two patients puts their value, and their metrics, in every table; the
    note says how many values were merged, never which.

    Example:
        >>> notes = []
        >>> merge_small_subgroups(np.array(["F", "M", "M", "X"]), np.array(["a", "b", "c", "d"]),
        ...     column="sex", minimum=2, notes=notes).tolist()
        ['other (n < 2)', 'M', 'M', 'other (n < 2)']
    """
    if minimum <= 1:
        return values
    patients = pd.Series(patient_ids).groupby(values).nunique()
    small = patients.index[patients < minimum]
    if len(small) == 0:
        return values
    label = f"other (n < {minimum})"
    merged = np.isin(values, small)
    notes.append(
        f"Subgroup column {column!r}: {len(small)} value(s) held by fewer than {minimum} "
        f"patients each are reported together as {label!r} "
        f"({len(np.unique(patient_ids[merged]))} patients; data.min_subgroup_size={minimum})."
    )
    return np.where(merged, label, values)
