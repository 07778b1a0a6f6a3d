"""Reading a table file (CSV or Parquet) as written, with one-line errors for what goes wrong.

A CSV is read with its encoding and separator (``data.encoding``, ``data.separator``); a repeated
header, an empty file, a wrong encoding, a file read as a single column because its separator is
another, or a non-Parquet file named ``.parquet`` are each refused naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from dptrain.errors import DataError

SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}


def read_table(path: str | Path, *, encoding: str = "utf-8", separator: str = "") -> pd.DataFrame:
    r"""Reads a CSV or Parquet file, with a one-line error if it cannot be read as one table.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "t.csv"
        ...     _ = path.write_text("id;y\n1;0\n")
        ...     read_table(path, separator="semicolon").columns.tolist()
        ['id', 'y']
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"data.path: file not found: {path} (point data.path at a CSV or Parquet file)"
        )
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return _read_parquet(path)
    if suffixes.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        default = "\t" if suffixes.endswith(".tsv") else ","
        return _read_csv(path, encoding, SEPARATORS.get(separator, separator) or default)
    raise DataError(f"data.path: {path} is neither CSV nor Parquet (use .csv, .tsv or .parquet)")


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        names = pq.read_schema(path).names
    except UnicodeDecodeError as error:
        raise DataError(
            f"data.path: {path.name} has a column name that is not UTF-8 text ({error.reason} at "
            f"byte {error.start}); rename its columns and write the file again"
        ) from error
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(
            f"data.path: {path.name} is not a readable Parquet file ({_first_line(error)}); "
            "if it is CSV text, give it a .csv name"
        ) from error
    _refuse_duplicates(names, path)
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise DataError(
            f"data.path: cannot read {path.name} as Parquet ({_first_line(error)}); re-export it"
        ) from error


def _read_csv(path: Path, encoding: str, separator: str) -> pd.DataFrame:
    options = {"sep": separator, "encoding": encoding}
    try:
        # pandas renames a repeated header to "x.1", which would turn a second copy of a label
        # column into a feature: read the header as written first.
        header = pd.read_csv(path, nrows=1, header=None, dtype=str, **options)
        _refuse_duplicates(header.iloc[0], path)
        frame = pd.read_csv(path, **options)
    except pd.errors.EmptyDataError as error:
        raise DataError(f"data.path: {path.name} is empty (no header, no rows)") from error
    except UnicodeDecodeError as error:
        if path.read_bytes()[:4] == b"PAR1":
            raise DataError(
                f"data.path: {path.name} is a Parquet file, not CSV text; give it a .parquet name"
            ) from error
        raise DataError(
            f"data.path: {path.name} is not {encoding} text (byte {error.object[error.start]:#04x} "
            f"at offset {error.start}); give its encoding, e.g. data.encoding=latin-1"
        ) from error
    except (pd.errors.ParserError, OSError) as error:  # ragged rows, a broken .gz
        raise DataError(
            f"data.path: cannot read {path.name} as CSV ({_first_line(error)}); check its "
            "separator (data.separator) and that every row has the header's number of fields"
        ) from error
    if frame.shape[1] == 1:
        _hint_separator(str(frame.columns[0]), path, separator)
    return frame


def _hint_separator(header: str, path: Path, separator: str) -> None:
    """Refuses a file read as one column whose header holds another separator."""
    for name, candidate in SEPARATORS.items():
        if candidate != separator and candidate in header:
            raise DataError(
                f"data.path: {path.name} was read as one column {header[:60]!r}; it looks "
                f"{name}-separated: set data.separator={name}"
            )


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _refuse_duplicates(names, path: Path) -> None:
    seen: set[str] = set()
    for name in map(str, names):
        if name in seen:
            raise DataError(
                f"data.path: {path.name} has the column {name!r} twice; rename or drop one copy "
                "(pandas would silently rename it and use it as a feature)"
            )
        seen.add(name)
