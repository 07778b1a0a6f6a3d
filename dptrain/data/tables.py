"""EHR tables (CSV or Parquet) into a `Cohort`: one row per record, a patient id column, labels.

Checks are eager and name the offending column and file, because a wrong label column or a missing
patient id silently breaks every privacy statement that follows (membership is per patient).
"""

from __future__ import annotations

import codecs
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dptrain.data.cohort import Cohort
from dptrain.data.subgroups import check_subgroup_bins, encode_subgroup, value_string
from dptrain.data.table_encoding import EncodedStandardize, FeatureEncoding
from dptrain.data.table_files import SEPARATORS, read_table
from dptrain.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class TableDataConfig:
    """Where a table is and what its columns mean.

    Attributes:
        path: CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) file.
        id_column: Column with the patient id of each row; several rows may share one patient.
            None (``data.id_column=null``) when every row is a different patient.
        label_columns: One column (binary or multiclass, integer codes) or several 0/1 columns
            (multilabel).
        positive_label: For a binary label column written as text or codes (``dead``/``alive``):
            the value that means the positive class; every other value is the negative class.
        name: Data set name for reports.
        feature_columns: Input columns; empty means every column that is not the id, a label,
            or excluded.
        categorical_columns: Columns to one-hot encode even if numeric (e.g. a treatment arm code).
            Non-numeric feature columns are always one-hot encoded.
        exclude_columns: Columns that must never be inputs (outcome-derived, follow-up, row index).
        subgroup_columns: Per-patient attributes to report utility and leakage by.
        subgroup_bins: Numeric subgroup column -> bin edges, e.g. ``age: [0, 30, 40, 50, 120]``.
            A numeric subgroup column without bins and with more than 10 distinct values (BMI,
            a lab value) is binned at its quartiles, so no patient's exact value is reported.
        min_subgroup_size: Subgroup values held by fewer patients than this are merged into one
            ``other (n < k)`` group (1 keeps every value), so no tiny group is reported.
        value_names: Subgroup column -> {raw value -> readable name}, e.g. ``gender: {"0": F}``.
        class_names: Readable names of the label values in sorted order (optional).
        encoding: Text encoding of a CSV file (``utf-8``; ``latin-1`` for many older exports).
        separator: CSV field separator: a character or ``comma``, ``semicolon``, ``tab``,
            ``pipe``; empty means by suffix (tab for ``.tsv``, else comma).
        stray_text: What to do with a few text tokens (``unk``, ``n/a``) in an otherwise numeric
            column: ``error`` (refuse, naming them) or ``missing`` (read them as missing values,
            counted in the report).
        sensitive_attributes: Binary or one-hot categorical feature columns whose disclosure would
            harm a patient (HIV risk factors, a psychiatric diagnosis); the leave-many-out audit
            infers each from its models (``audit.sensitive_attributes`` defaults to this list).
        feature_groups: Group name -> input columns, what a partial-knowledge attacker may know
            (``demographics: [age, race]``; `dptrain.audit.knowledge`).
        knowledge: Knowledge levels the audit evaluates by default (``audit.knowledge``):
            ``all`` or groups joined by ``+``.
        severity: Subgroup attribute (or ``label``) -> {value -> ``low``/``medium``/``high``},
            the harm of a leak there (``audit.severity`` defaults to this; `dptrain.audit.harm`).
    """

    path: str
    id_column: str | None
    label_columns: list[str]
    name: str = "table"
    positive_label: str = ""
    feature_columns: list[str] = field(default_factory=list)
    categorical_columns: list[str] = field(default_factory=list)
    exclude_columns: list[str] = field(default_factory=list)
    subgroup_columns: list[str] = field(default_factory=list)
    subgroup_bins: dict[str, list[Any]] = field(default_factory=dict)
    value_names: dict[str, dict[str, str]] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    encoding: str = "utf-8"
    separator: str = ""
    stray_text: str = "error"
    min_subgroup_size: int = 5
    sensitive_attributes: list[str] = field(default_factory=list)
    feature_groups: dict[str, list[str]] = field(default_factory=dict)
    knowledge: list[str] = field(default_factory=list)
    severity: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.label_columns:
            raise ConfigError("data.label_columns is empty: name the label column, e.g. [cens]")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(
                f"data.encoding: unknown encoding {self.encoding!r}; use e.g. utf-8 or latin-1"
            ) from None
        if len(SEPARATORS.get(self.separator, self.separator)) > 1:
            raise ConfigError(
                f"data.separator must be one character or one of {sorted(SEPARATORS)}, "
                f"got {self.separator!r}"
            )
        if self.stray_text not in STRAY_TEXT:
            raise ConfigError(
                f"data.stray_text must be one of {list(STRAY_TEXT)}, got {self.stray_text!r}"
            )
        if isinstance(self.min_subgroup_size, bool) or not (
            isinstance(self.min_subgroup_size, int) and self.min_subgroup_size >= 1
        ):
            raise ConfigError(
                "data.min_subgroup_size must be an integer >= 1 (patients), got "
                f"{self.min_subgroup_size!r}"
            )
        if self.positive_label and len(self.label_columns) > 1:
            raise ConfigError(
                "data.positive_label applies to one label column; multilabel columns are 0/1"
            )
        self.subgroup_bins = {
            column: _edges(column, edges) for column, edges in self.subgroup_bins.items()
        }
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


def _edges(column: str, edges: list[Any]) -> list[float]:
    """Bin edges as floats (``[0, 40, 120]`` as written on a command line is fine)."""
    try:
        return [float(edge) for edge in edges]
    except (TypeError, ValueError):
        raise ConfigError(
            f"data.subgroup_bins.{column} must be a list of numbers, got {list(edges)}"
        ) from None


STRAY_TEXT = ("error", "missing")
# A column whose non-missing values are at least this share numbers is numeric with stray text.
MOSTLY_NUMERIC = 0.8


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
    frame = read_table(config.path, encoding=config.encoding, separator=config.separator)
    source = Path(config.path).name
    if config.id_column is not None:
        require_columns(frame, [config.id_column], "data.id_column", source)
    require_columns(frame, config.label_columns, "data.label_columns", source)
    require_columns(frame, config.subgroup_columns, "data.subgroup_columns", source)
    require_columns(frame, config.exclude_columns, "data.exclude_columns", source)
    if frame.empty:
        raise DataError(f"data.path: {source} has a header but no rows")
    patient_ids = _patient_ids(frame, config, source)

    labels, class_names, task = _encode_labels(frame, config, source)
    notes: list[str] = []
    feature_frame = _feature_frame(frame, config, source, notes)
    _refuse_non_finite(feature_frame, source)
    attributes, record_attributes = _subgroups(frame, patient_ids, config, notes)
    if config.id_column is None:
        notes.insert(0, "Each row is its own patient (data.id_column=null).")
    return Cohort.from_records(
        name=config.name,
        features=feature_frame.to_numpy(dtype=np.float32, na_value=np.nan),
        labels=labels,
        patient_ids=patient_ids,
        attributes=attributes,
        record_attributes=record_attributes,
        feature_names=tuple(feature_frame.columns),
        class_names=class_names,
        task=task,
        preprocessing=EncodedStandardize(
            encoding=feature_encoding(frame, config, feature_frame, class_names, task)
        ),
        notes=(*_label_notes(frame, config, class_names, task), *notes),
    )


def feature_encoding(
    frame: pd.DataFrame,
    config: TableDataConfig,
    features: pd.DataFrame,
    class_names: tuple[str, ...],
    task: str,
) -> FeatureEncoding:
    """How ``frame``'s columns became ``features``, as the checkpoint carries it to new tables."""
    source = Path(config.path).name
    columns = feature_columns(frame, config, source)
    categorical = [
        column
        for column in columns
        if column_kind(frame[column], column in config.categorical_columns)[0] == "categorical"
    ]
    if task == "multilabel":
        mapping: dict[str, int] = {}
    elif config.positive_label:
        values = set(frame[config.label_columns[0]].map(value_string))
        mapping = {value: int(value == config.positive_label) for value in sorted(values)}
    else:
        values = np.unique(frame[config.label_columns[0]].to_numpy(dtype=np.int64))
        mapping = {str(value): index for index, value in enumerate(values.tolist())}
    return FeatureEncoding.describe(
        frame[columns],
        categorical=categorical,
        feature_names=tuple(features.columns),
        id_column=config.id_column,
        label_columns=tuple(config.label_columns),
        class_names=tuple(class_names),
        task=task,
        label_mapping=tuple(mapping.items()),
        stray_text=config.stray_text,
        source=source,
    )


def _patient_ids(frame: pd.DataFrame, config: TableDataConfig, source: str) -> np.ndarray:
    """Each row's patient id as a string; the row number when every row is its own patient."""
    if config.id_column is None:
        return np.array([f"row{index + 1}" for index in range(len(frame))])
    missing_ids = frame[config.id_column].isna()
    if missing_ids.any():
        raise DataError(
            f"data.id_column: {int(missing_ids.sum())} rows of {source} have no patient id in "
            f"column {config.id_column!r} (give every record the id of its patient)"
        )
    return _id_strings(frame[config.id_column])


def _label_notes(
    frame: pd.DataFrame, config: TableDataConfig, class_names: tuple[str, ...], task: str
) -> tuple[str, ...]:
    """The label mapping in words, for the report (values as written -> class indices)."""
    if task == "multilabel":
        return (f"Multi-label task over the 0/1 columns {', '.join(config.label_columns)}.",)
    if config.positive_label:
        column = config.label_columns[0]
        others = sorted(set(frame[column].map(value_string)) - {config.positive_label})
        return (
            f"Labels of column {column!r}: {config.positive_label!r} → class 1 ({class_names[1]}), "
            f"{', '.join(map(repr, others))} → class 0 ({class_names[0]}) "
            "(data.positive_label).",
        )
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
        if config.positive_label:
            return _positive_labels(values, config, source)
        if not pd.api.types.is_numeric_dtype(values):  # bools count as numeric
            raise DataError(
                f"data.label_columns: column {column!r} of {source} is not numeric (e.g. "
                f"{values.iloc[0]!r}); name the positive value (data.positive_label="
                f"{values.iloc[0]}) or encode the labels as integers 0..C-1"
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


def _positive_labels(
    values: pd.Series, config: TableDataConfig, source: str
) -> tuple[np.ndarray, tuple[str, ...], str]:
    """Binary labels from a column with two values, one of them named as positive."""
    column, positive = config.label_columns[0], config.positive_label
    text = values.map(value_string)
    distinct = sorted(set(text))
    if positive not in distinct or len(distinct) != 2:
        raise DataError(
            f"data.positive_label={positive!r}: column {column!r} of {source} holds "
            f"{len(distinct)} values {distinct[:6]}; a positive label needs exactly two values, "
            "one of them the positive label"
        )
    (negative,) = set(distinct) - {positive}
    names = tuple(config.class_names) or (negative, positive)
    if len(names) != 2:
        raise ConfigError(f"data.class_names has {len(names)} names for 2 classes")
    return (text == positive).to_numpy(dtype=np.int64), names, "binary"


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


def feature_columns(frame: pd.DataFrame, config: TableDataConfig, source: str) -> list[str]:
    """The input columns: ``data.feature_columns``, or every column not the id, a label or excluded.

    Raises:
        DataError: For a listed column the table does not have.
        ConfigError: For a feature that is the id, a label or excluded, or for no features at all.
    """
    not_inputs = {config.id_column, *config.label_columns, *config.exclude_columns} - {None}
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
    return columns


def column_kind(values: pd.Series, categorical: bool = False) -> tuple[str, pd.Series | None]:
    """How a feature column is read: ``numeric``, ``categorical`` (one-hot) or ``stray text``.

    A text column whose non-missing values are mostly numbers (at least `MOSTLY_NUMERIC`) is a
    numeric column with a few stray tokens (``unk``, ``n/a``), not a category per distinct number.

    Returns:
        The kind, and for ``stray text`` the mask of the text cells (else None).

    Example:
        >>> kind, text = column_kind(pd.Series(["1.5", "2", "unk", "4", "5"]))
        >>> kind, text.tolist()
        ('stray text', [False, False, True, False, False])
    """
    if categorical:
        return "categorical", None
    if pd.api.types.is_numeric_dtype(values):  # bools count as numeric
        return "numeric", None
    present = values.notna()
    text = present & pd.to_numeric(values.where(present), errors="coerce").isna()
    if not present.any() or not text.any():
        return "numeric", None  # numbers stored as text (or an empty column)
    if 1 - text.sum() / present.sum() >= MOSTLY_NUMERIC:
        return "stray text", text
    return "categorical", None


def _feature_frame(
    frame: pd.DataFrame, config: TableDataConfig, source: str, notes: list[str]
) -> pd.DataFrame:
    columns = feature_columns(frame, config, source)
    features = frame[columns].copy()
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": []}
    for column in columns:
        kind, text = column_kind(features[column], column in config.categorical_columns)
        if text is not None:
            tokens = sorted(set(features[column][text].map(str)))
            count = int(text.sum())
            if config.stray_text == "error":
                raise DataError(
                    f"column {column!r} of {source} is numeric except {count} row(s) holding "
                    f"{tokens[:5]}; blank those cells, read them as missing with "
                    "data.stray_text=missing, or one-hot encode it with data.categorical_columns"
                )
            notes.append(
                f"Column {column!r}: {count} text value(s) {tokens[:5]} read as missing "
                "(data.stray_text=missing)."
            )
            kind = "numeric"
        if kind == "numeric" and not pd.api.types.is_numeric_dtype(features[column]):
            features[column] = pd.to_numeric(features[column], errors="coerce")
        kinds[kind].append(column)
    categorical = kinds["categorical"]
    levels = {c: int(features[c].nunique()) for c in categorical}
    log.info(
        "%s: %d numeric feature columns, %d one-hot encoded: %s",
        source,
        len(kinds["numeric"]),
        len(categorical),
        ", ".join(f"{c} ({n} levels)" for c, n in levels.items()) or "none",
    )
    notes.append(
        f"Feature columns: {len(kinds['numeric'])} numeric, {len(categorical)} one-hot encoded"
        + (f" ({', '.join(f'{c}: {n} levels' for c, n in levels.items())})." if levels else ".")
    )
    if categorical:
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


def _subgroups(
    frame: pd.DataFrame, patient_ids: np.ndarray, config: TableDataConfig, notes: list[str]
) -> tuple[dict[str, dict[str, str]], dict[str, np.ndarray]]:
    """Subgroup values per patient, or per record for a column that varies within a patient.

    Collapsing a varying column (a transplant status that changes over follow-up) to one row per
    patient would make whole subgroups disappear, so it is reported per record instead.
    """
    attributes: dict[str, dict[str, str]] = {}
    record_attributes: dict[str, np.ndarray] = {}
    for column in config.subgroup_columns:
        values = encode_subgroup(
            frame[column],
            column=column,
            edges=config.subgroup_bins.get(column),
            value_names=config.value_names.get(column, {}),
            patient_ids=patient_ids,
            minimum=config.min_subgroup_size,
            notes=notes,
        )
        per_patient = pd.Series(values).groupby(patient_ids).nunique()
        varying = int((per_patient > 1).sum())
        if varying:
            record_attributes[column] = values
            notes.append(
                f"Subgroup column {column!r} varies between the rows of {varying} patient(s): "
                "it is reported per record."
            )
        else:
            attributes[column] = dict(zip(patient_ids, values))
    return attributes, record_attributes
