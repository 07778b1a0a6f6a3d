"""EHR tables (CSV or Parquet) into a `Cohort`: one row per record, a patient id column, labels.

Checks are eager and name the offending column and file, because a wrong label column or a missing
patient id silently breaks every privacy statement that follows (membership is per patient).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class TableDataConfig:
    """Where a table is and what its columns mean.

    Attributes:
        path: CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) file.
        id_column: Column with the patient id of each row; several rows may share one patient.
        label_columns: One column (binary or multiclass, integer codes) or several 0/1 columns
            (multilabel).
        name: Data set name for reports.
        feature_columns: Input columns; empty means every column that is not the id, a label,
            or excluded.
        categorical_columns: Columns to one-hot encode even if numeric (e.g. a treatment arm code).
            Non-numeric feature columns are always one-hot encoded.
        exclude_columns: Columns that must never be inputs (outcome-derived, follow-up, row index).
        subgroup_columns: Per-patient attributes to report utility and leakage by.
        subgroup_bins: Numeric subgroup column -> bin edges, e.g. ``age: [0, 30, 40, 50, 120]``.
        value_names: Subgroup column -> {raw value -> readable name}, e.g. ``gender: {"0": F}``.
        class_names: Readable names of the label values in sorted order (optional).
    """

    path: str
    id_column: str
    label_columns: list[str]
    name: str = "table"
    feature_columns: list[str] = field(default_factory=list)
    categorical_columns: list[str] = field(default_factory=list)
    exclude_columns: list[str] = field(default_factory=list)
    subgroup_columns: list[str] = field(default_factory=list)
    subgroup_bins: dict[str, list[float]] = field(default_factory=dict)
    value_names: dict[str, dict[str, str]] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.label_columns:
            raise ConfigError("data.label_columns is empty: name the label column, e.g. [cens]")
        check_subgroup_bins(self.subgroup_bins)
        unused = sorted(set(self.subgroup_bins) - set(self.subgroup_columns))
        if unused:
            raise ConfigError(
                f"data.subgroup_bins.{unused[0]}: {unused[0]!r} is not a subgroup column; add it "
                f"to data.subgroup_columns or drop its bins"
            )

    def load(self) -> Cohort:
        """Reads the table and returns its cohort (see `load_table`)."""
        return load_table(self)


def read_table(path: str | Path) -> pd.DataFrame:
    """Reads a CSV or Parquet file, with a one-line error if it is missing or of unknown type."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"data.path: file not found: {path} (point data.path at a CSV or Parquet file)"
        )
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        _refuse_duplicates(pq.read_schema(path).names, path)
        return pd.read_parquet(path)
    if suffixes.endswith((".csv", ".csv.gz", ".tsv")):
        separator = "\t" if suffixes.endswith(".tsv") else ","
        # pandas renames a repeated header to "x.1", which would turn a second copy of a label
        # column into a feature: read the header as written first.
        try:
            header = pd.read_csv(path, sep=separator, nrows=1, header=None, dtype=str)
        except pd.errors.EmptyDataError as error:
            raise DataError(f"data.path: {path.name} is empty (no header, no rows)") from error
        _refuse_duplicates(header.iloc[0], path)
        return pd.read_csv(path, sep=separator)
    raise DataError(f"data.path: {path} is neither CSV nor Parquet (use .csv, .tsv or .parquet)")


def _refuse_duplicates(names, path: Path) -> None:
    seen: set[str] = set()
    for name in map(str, names):
        if name in seen:
            raise DataError(
                f"data.path: {path.name} has the column {name!r} twice; rename or drop one copy "
                "(pandas would silently rename it and use it as a feature)"
            )
        seen.add(name)


def load_table(config: TableDataConfig) -> Cohort:
    """Turns a table into a cohort: checks ids and labels, encodes features, bands subgroups.

    Features keep NaN for missing values: imputation and scaling are fitted later on the training
    split only. Subgroup attributes are per patient; a patient whose rows disagree gets the value
    of their first row.

    Args:
        config: The table's location and column roles.

    Returns:
        The cohort.

    Raises:
        DataError: For a missing file or column, missing ids, missing or non-numeric labels.
    """
    frame = read_table(config.path)
    source = Path(config.path).name
    require_columns(frame, [config.id_column], "data.id_column", source)
    require_columns(frame, config.label_columns, "data.label_columns", source)
    require_columns(frame, config.subgroup_columns, "data.subgroup_columns", source)
    require_columns(frame, config.exclude_columns, "data.exclude_columns", source)

    missing_ids = frame[config.id_column].isna()
    if missing_ids.any():
        raise DataError(
            f"data.id_column: {int(missing_ids.sum())} rows of {source} have no patient id in "
            f"column {config.id_column!r} (give every record the id of its patient)"
        )
    if frame.empty:
        raise DataError(f"data.path: {source} has no rows")

    labels, class_names, task = _encode_labels(frame, config, source)
    feature_frame = _feature_frame(frame, config, source)
    _refuse_non_finite(feature_frame, source)
    patient_ids = _id_strings(frame[config.id_column])
    attributes = _patient_attributes(frame, patient_ids, config)
    return Cohort.from_records(
        name=config.name,
        features=feature_frame.to_numpy(dtype=np.float32, na_value=np.nan),
        labels=labels,
        patient_ids=patient_ids,
        attributes=attributes,
        feature_names=tuple(feature_frame.columns),
        class_names=class_names,
        task=task,
        notes=_label_notes(frame, config, class_names, task),
    )


def _label_notes(
    frame: pd.DataFrame, config: TableDataConfig, class_names: tuple[str, ...], task: str
) -> tuple[str, ...]:
    """The label mapping in words, for the report (values as written -> class indices)."""
    if task == "multilabel":
        return (f"Multi-label task over the 0/1 columns {', '.join(config.label_columns)}.",)
    values = np.unique(frame[config.label_columns[0]].to_numpy(dtype=np.int64))
    mapping = ", ".join(
        f"{value} → class {index} ({name})" if name != str(value) else f"{value} → class {index}"
        for index, (value, name) in enumerate(zip(values, class_names))
    )
    return (f"Labels of column {config.label_columns[0]!r}: {mapping}.",)


def require_columns(frame: pd.DataFrame, columns: list[str], field_name: str, source: str) -> None:
    """Raises a one-line `DataError` naming the first of ``columns`` missing from ``frame``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:12])) + (", ..." if frame.shape[1] > 12 else "")
        raise DataError(
            f"{field_name}: column {missing[0]!r} not in {source} (its columns: {shown})"
        )


def _encode_labels(
    frame: pd.DataFrame, config: TableDataConfig, source: str
) -> tuple[np.ndarray, tuple[str, ...], str]:
    columns = config.label_columns
    for column in columns:
        values = frame[column]
        if values.isna().any():
            raise DataError(
                f"data.label_columns: column {column!r} of {source} has {int(values.isna().sum())} "
                "missing labels (drop or fill those rows first)"
            )
        if not pd.api.types.is_numeric_dtype(values):  # bools count as numeric
            raise DataError(
                f"data.label_columns: column {column!r} of {source} is not numeric (e.g. "
                f"{values.iloc[0]!r}); encode the labels as integers 0..C-1"
            )
        numeric = values.to_numpy(dtype=np.float64)
        if not np.all(numeric == np.round(numeric)):
            raise DataError(
                f"data.label_columns: column {column!r} of {source} has non-integer labels; "
                "encode classes as integers 0..C-1"
            )
    if len(columns) > 1:
        labels = frame[columns].to_numpy(dtype=np.int64)
        if not np.isin(labels, (0, 1)).all():
            raise DataError(
                f"data.label_columns: multilabel columns of {source} must hold only 0 and 1"
            )
        return labels, tuple(config.class_names or columns), "multilabel"
    return encode_classes(frame[columns[0]], columns[0], source, config.class_names)


def encode_classes(
    values: pd.Series, column: str, source: str, class_names: list[str]
) -> tuple[np.ndarray, tuple[str, ...], str]:
    """Integer class codes as indices 0..C-1 of their sorted values, with names and task.

    Example:
        >>> encode_classes(pd.Series([3, 5, 3]), "y", "t.csv", [])
        (array([0, 1, 0]), ('3', '5'), 'binary')
    """
    classes, labels = np.unique(values.to_numpy(dtype=np.int64), return_inverse=True)
    if len(classes) > 20 and len(classes) > len(values) / 2:
        raise DataError(
            f"data.label_columns: column {column!r} of {source} has {len(classes)} classes for "
            f"{len(values)} rows, which looks like an id or a measurement, not a label; name the "
            "outcome column"
        )
    if len(classes) < 2:
        raise DataError(
            f"data.label_columns: column {column!r} of {source} has a single class "
            f"({classes[0]}); a classifier needs at least two"
        )
    names = tuple(class_names) or tuple(str(c) for c in classes)
    if len(names) != len(classes):
        raise ConfigError(
            f"data.class_names has {len(names)} names for {len(classes)} classes {classes.tolist()}"
        )
    return labels.astype(np.int64), names, "binary" if len(classes) == 2 else "multiclass"


def _feature_frame(frame: pd.DataFrame, config: TableDataConfig, source: str) -> pd.DataFrame:
    not_inputs = {config.id_column, *config.label_columns, *config.exclude_columns}
    if config.feature_columns:
        require_columns(frame, config.feature_columns, "data.feature_columns", source)
        leaking = sorted(not_inputs & set(config.feature_columns))
        if leaking:
            raise ConfigError(
                f"data.feature_columns includes {leaking[0]!r}, which is the id, a label or "
                "excluded; remove it from the features"
            )
        columns = list(config.feature_columns)
    else:
        columns = [c for c in frame.columns if c not in not_inputs]
    if not columns:
        raise ConfigError(f"data.feature_columns: no feature columns left in {source}")
    require_columns(frame, config.categorical_columns, "data.categorical_columns", source)
    features = frame[columns]
    categorical = [
        c
        for c in columns
        if c in config.categorical_columns or not pd.api.types.is_numeric_dtype(features[c])
    ]
    if categorical:
        log.info("one-hot encoding %d categorical columns: %s", len(categorical), categorical)
        # A missing category becomes an all-zero one-hot row, so nothing needs imputing.
        features = pd.get_dummies(
            features, columns=categorical, prefix_sep="=", dtype=np.float32, dummy_na=False
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf: refused right after
        return features.astype(np.float32)


def _refuse_non_finite(features: pd.DataFrame, source: str) -> None:
    """Refuses infinite values (and values too large for float32, which become infinite).

    A single one makes every loss NaN, and the run would report NaN utility as if complete.
    """
    with np.errstate(over="ignore"):  # an overflow to inf is what is being looked for
        values = features.to_numpy(dtype=np.float32, na_value=np.nan)
    infinite = np.isinf(values).sum(axis=0)
    if infinite.any():
        column = int(np.flatnonzero(infinite)[0])
        raise DataError(
            f"{source}: feature column {features.columns[column]!r} has {int(infinite[column])} "
            "row(s) with an infinite value or one beyond float32's range (~3.4e38); fix or blank "
            "them (blanks are imputed), or exclude the column with data.exclude_columns"
        )


def _id_strings(ids: pd.Series) -> np.ndarray:
    """Patient ids as strings, without a spurious ``.0`` when a reader made integer ids float."""
    if pd.api.types.is_float_dtype(ids) and np.all(ids == np.round(ids)):
        ids = ids.astype(np.int64)
    return ids.astype(str).to_numpy()


def _patient_attributes(
    frame: pd.DataFrame, patient_ids: np.ndarray, config: TableDataConfig
) -> dict[str, dict[str, str]]:
    first_rows = frame.assign(_patient=patient_ids).drop_duplicates("_patient", keep="first")
    attributes = {}
    for column in config.subgroup_columns:
        values = first_rows[column]
        if column in config.subgroup_bins:
            values = subgroup_bands(values, config.subgroup_bins[column], column)
        else:
            values = values.map(value_string)
        names = config.value_names.get(column, {})
        values = values.map(lambda v, names=names: names.get(v, v))
        attributes[column] = dict(zip(first_rows["_patient"], values))
    return attributes


def check_subgroup_bins(bins: dict[str, list[float]]) -> None:
    """Refuses bin edges that are fewer than two or not increasing (``data.subgroup_bins``).

    Example:
        >>> check_subgroup_bins({"age": [0, 50, 120]})
    """
    for column, edges in bins.items():
        if len(edges) < 2 or any(low >= high for low, high in pairwise(edges)):
            raise ConfigError(
                f"data.subgroup_bins.{column} must be at least two strictly increasing edges, "
                f"got {list(edges)}"
            )


def subgroup_bands(values: pd.Series, edges: list[float], column: str) -> pd.Series:
    """Numeric subgroup values as bands ``lo-hi`` (left-closed), ``missing`` outside or NaN.

    Example:
        >>> subgroup_bands(pd.Series([25, 61, None]), [0, 50, 120], "age").tolist()
        ['0-50', '50-120', 'missing']
    """
    if not pd.api.types.is_numeric_dtype(values):
        raise DataError(f"data.subgroup_bins.{column}: column {column!r} is not numeric")
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
