"""How a table's columns became model inputs, as plain data a checkpoint carries to new tables.

A table becomes features in two stages. The *encoding* is fixed by the whole table when it is
read: which columns are inputs, which are numbers and which are one-hot encoded categories with
which levels, in which order the resulting features come. The *standardisation* (median fill,
centring, scaling) is fitted on each training split (`dptrain.data.preprocessing.Standardizer`).
`FeatureEncoding` is the first stage; `EncodedStandardize` is a table's preprocessing spec, which
hands the encoding to the fitted preprocessing so that the deployed model's checkpoint can carry
it, and `FeatureEncoding.encode` reproduces the training features exactly on a new table
(whatever its column order, with extra columns ignored).

Category levels are matched by value, not by spelling: ``1``, ``1.0`` and ``"1"`` are one level,
so a category column read as integers in one file and as floats (because of a blank) in another
encodes the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dptrain.data.preprocessing import Standardize, Standardizer
from dptrain.data.records import Records, read
from dptrain.errors import DataError

log = logging.getLogger(__name__)
ENCODING_VERSION = 1
MISSING_VALUES = (
    "numeric blanks are filled with the training split's median (checkpoint preprocessing 'fill'); "
    "a blank or unseen category level gives an all-zero one-hot block"
)


def level_key(value: object) -> str | None:
    """The value of a category cell as matched across files; None for a missing cell.

    Example:
        >>> level_key(1), level_key(1.0), level_key("1"), level_key(float("nan")), level_key(True)
        ('1', '1', '1', None, 'True')
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


@dataclass(frozen=True)
class EncodingReport:
    """What `FeatureEncoding.encode` had to do to a new table's cells.

    Attributes:
        unknown_levels: Category column -> number of rows with a level the model never saw
            (encoded as an all-zero one-hot block, like a blank).
        text_as_missing: Numeric column -> number of text cells read as missing
            (``data.stray_text=missing`` at training).
    """

    unknown_levels: dict[str, int] = field(default_factory=dict)
    text_as_missing: dict[str, int] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        """One line per column that needed it, for a log or the console."""
        lines = [
            f"column {column!r}: {count} row(s) with a level not seen in training, encoded as "
            "all zeros (like a blank)"
            for column, count in self.unknown_levels.items()
        ]
        lines += [
            f"column {column!r}: {count} text cell(s) read as missing (imputed)"
            for column, count in self.text_as_missing.items()
        ]
        return lines


@dataclass(frozen=True)
class FeatureEncoding:
    """How a table's columns became the model's input features.

    Attributes:
        columns: The input columns as the training table had them, in its order.
        numeric_columns: The columns read as numbers (missing values imputed later).
        categorical_levels: Category column -> its levels (`level_key` strings), one-hot encoded.
        features: One ``(column, level)`` per model input in order; level None for a number.
        feature_names: One name per model input (``x0``, ``site=north``), as in the cohort.
        id_column: The patient id column (None when every row was its own patient).
        label_columns: The label column(s) of the training table (not needed to predict).
        class_names: One name per model output, in order.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        label_mapping: Label value as written -> class index (empty for multilabel).
        stray_text: ``error`` or ``missing``: what text in a numeric column means.
        source: The training table's file name (for messages).
    """

    columns: tuple[str, ...]
    numeric_columns: tuple[str, ...]
    categorical_levels: tuple[tuple[str, tuple[str, ...]], ...]
    features: tuple[tuple[str, str | None], ...]
    feature_names: tuple[str, ...]
    id_column: str | None
    label_columns: tuple[str, ...]
    class_names: tuple[str, ...]
    task: str
    label_mapping: tuple[tuple[str, int], ...] = ()
    stray_text: str = "error"
    source: str = ""

    @classmethod
    def describe(
        cls,
        inputs: pd.DataFrame,
        *,
        categorical: list[str],
        feature_names: tuple[str, ...],
        **attributes: Any,
    ) -> FeatureEncoding:
        """The encoding of ``inputs`` as `pd.get_dummies` one-hot encodes ``categorical``.

        Args:
            inputs: The raw input columns of the training table, in order.
            categorical: The columns that were one-hot encoded.
            feature_names: The features the table gave (checked against this description).
            **attributes: The remaining fields (``id_column``, ``class_names``, ...).

        Raises:
            DataError: If the described features are not the ones the table gave (a bug).

        Example:
            >>> table = pd.DataFrame({"x": [1.0, 2.0], "site": ["b", "a"]})
            >>> encoding = FeatureEncoding.describe(
            ...     table, categorical=["site"], feature_names=("x", "site=a", "site=b"),
            ...     id_column=None, label_columns=("y",), class_names=("0", "1"), task="binary")
            >>> encoding.features
            (('x', None), ('site', 'a'), ('site', 'b'))
        """
        numeric = [c for c in inputs.columns if c not in categorical]
        levels, features, described = [], [(c, None) for c in numeric], list(numeric)
        for column in categorical:
            categories = pd.Categorical(inputs[column]).categories  # get_dummies' levels, in order
            keys = tuple(level_key(value) for value in categories)
            if len(set(keys)) != len(keys):
                raise DataError(
                    f"categorical column {column!r} has levels that differ only in type (e.g. 1 "
                    "and '1'); write the column with one type"
                )
            levels.append((column, keys))
            features += [(column, key) for key in keys]
            described += [f"{column}={value}" for value in categories]  # get_dummies' names
        if described != list(feature_names):
            raise DataError(
                f"internal: the feature encoding {described[:4]} does not match the table's "
                f"features {list(feature_names)[:4]}; please report this"
            )
        return cls(
            columns=tuple(inputs.columns),
            numeric_columns=tuple(numeric),
            categorical_levels=tuple(levels),
            features=tuple(features),
            feature_names=tuple(feature_names),
            **attributes,
        )

    def encode(self, table: pd.DataFrame, *, source: str) -> tuple[np.ndarray, EncodingReport]:
        """A new table's rows as ``(n_rows, n_features)`` float32 model inputs (NaN = missing).

        Columns are found by name (any order; extra columns are ignored).

        Args:
            table: The new table.
            source: Its file name, for messages.

        Returns:
            The features, and what had to be done to unknown levels and stray text.

        Raises:
            DataError: For missing input columns, text in a numeric column (unless the model was
                trained with ``data.stray_text=missing``) or infinite values.

        Example:
            >>> encoding = FeatureEncoding.describe(
            ...     pd.DataFrame({"x": [1.0], "site": ["a"]}), categorical=["site"],
            ...     feature_names=("x", "site=a"), id_column=None, label_columns=("y",),
            ...     class_names=("0", "1"), task="binary")
            >>> features, report = encoding.encode(
            ...     pd.DataFrame({"site": ["a", "z"], "x": [3, None]}), source="new.csv")
            >>> features.tolist(), report.unknown_levels
            ([[3.0, 1.0], [nan, 0.0]], {'site': 1})
        """
        missing = [column for column in self.columns if column not in table.columns]
        if missing:
            shown = ", ".join(map(repr, missing[:8])) + (", ..." if len(missing) > 8 else "")
            raise DataError(
                f"{source} lacks {len(missing)} feature column(s) the model was trained on: "
                f"{shown}; add them (blank cells are imputed)"
            )
        blocks: dict[tuple[str, str | None], np.ndarray] = {}
        text_as_missing: dict[str, int] = {}
        for column in self.numeric_columns:
            blocks[(column, None)] = self._numeric(table[column], column, source, text_as_missing)
        unknown: dict[str, int] = {}
        for column, levels in self.categorical_levels:
            keys = table[column].map(level_key)
            for level in levels:
                blocks[(column, level)] = (keys == level).to_numpy(dtype=np.float32)
            unseen = int((keys.notna() & ~keys.isin(levels)).sum())
            if unseen:
                unknown[column] = unseen
        if not self.features:
            return np.zeros((len(table), 0), np.float32), EncodingReport(unknown, text_as_missing)
        features = np.stack([blocks[source_] for source_ in self.features], axis=1)
        return features.astype(np.float32, copy=False), EncodingReport(unknown, text_as_missing)

    def _numeric(
        self, values: pd.Series, column: str, source: str, text_as_missing: dict[str, int]
    ) -> np.ndarray:
        if not pd.api.types.is_numeric_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce")
            text = values.notna() & numbers.isna()
            if text.any():
                tokens = sorted(set(values[text].map(str)))[:5]
                if self.stray_text != "missing":
                    raise DataError(
                        f"column {column!r} of {source} is numeric in the model but holds "
                        f"{int(text.sum())} text cell(s) {tokens}; blank them (blanks are imputed)"
                    )
                text_as_missing[column] = int(text.sum())
            values = numbers
        with np.errstate(over="ignore"):  # beyond float32 becomes inf: refused below
            array = values.astype(np.float32).to_numpy(dtype=np.float32, na_value=np.nan)
        infinite = int(np.isinf(array).sum())
        if infinite:
            raise DataError(
                f"column {column!r} of {source} has {infinite} row(s) with an infinite value or "
                "one beyond float32's range (~3.4e38); fix or blank them (blanks are imputed)"
            )
        return array

    def to_plain(self) -> dict[str, Any]:
        """The encoding as JSON-able values (what the checkpoint stores).

        Example:
            >>> encoding = FeatureEncoding.describe(
            ...     pd.DataFrame({"site": ["a"]}), categorical=["site"], feature_names=("site=a",),
            ...     id_column="id", label_columns=("y",), class_names=("0", "1"), task="binary")
            >>> FeatureEncoding.from_plain(encoding.to_plain()) == encoding
            True
        """
        return {
            "version": ENCODING_VERSION,
            "columns": list(self.columns),
            "numeric_columns": list(self.numeric_columns),
            "categorical_levels": {
                column: list(levels) for column, levels in self.categorical_levels
            },
            "features": [[column, level] for column, level in self.features],
            "feature_names": list(self.feature_names),
            "id_column": self.id_column,
            "label_columns": list(self.label_columns),
            "class_names": list(self.class_names),
            "task": self.task,
            "label_mapping": dict(self.label_mapping),
            "stray_text": self.stray_text,
            "source": self.source,
            "missing_values": MISSING_VALUES,
        }

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> FeatureEncoding:
        """The encoding from `to_plain`'s values.

        Raises:
            DataError: For a description of a newer, unknown version.
        """
        if plain.get("version") != ENCODING_VERSION:
            raise DataError(
                f"feature encoding version {plain.get('version')!r} is not known to this dptrain "
                f"(it reads version {ENCODING_VERSION}); upgrade dptrain"
            )
        return cls(
            columns=tuple(plain["columns"]),
            numeric_columns=tuple(plain["numeric_columns"]),
            categorical_levels=tuple(
                (column, tuple(levels)) for column, levels in plain["categorical_levels"].items()
            ),
            features=tuple((column, level) for column, level in plain["features"]),
            feature_names=tuple(plain["feature_names"]),
            id_column=plain["id_column"],
            label_columns=tuple(plain["label_columns"]),
            class_names=tuple(plain["class_names"]),
            task=plain["task"],
            label_mapping=tuple(plain["label_mapping"].items()),
            stray_text=plain["stray_text"],
            source=plain["source"],
        )


@dataclass(frozen=True)
class EncodedStandardizer(Standardizer):
    """A table's fitted preprocessing: the `Standardizer`, plus the encoding it applies after.

    Attributes:
        encoding: How the table's columns became the features being standardised.
    """

    encoding: FeatureEncoding | None = field(default=None, repr=False)


@dataclass(frozen=True)
class EncodedStandardize(Standardize):
    """A table's preprocessing spec: `Standardize`, carrying the table's `FeatureEncoding`.

    Attributes:
        encoding: How the table's columns became features; travels to the fitted preprocessing.
    """

    encoding: FeatureEncoding | None = field(default=None, repr=False)

    def fit(self, records: Records) -> EncodedStandardizer:
        """Fits the `Standardizer` on the training records and attaches the encoding."""
        fitted = Standardizer.fit(read(records))
        return EncodedStandardizer(
            fill=fitted.fill, center=fitted.center, scale=fitted.scale, encoding=self.encoding
        )
