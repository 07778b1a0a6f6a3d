"""Data with patients: the `Cohort` type, loaders for each modality, patient-level splits."""

from pathlib import Path

from dptrain.errors import DataError

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_path(file_name: str) -> str:
    """Path of a data file shipped inside the package (see ``builtin/NOTICE.md``).

    Example:
        >>> Path(builtin_path("ACTG175.csv")).is_file()
        True
    """
    path = BUILTIN_DIR / file_name
    if not path.is_file():
        shipped = sorted(p.name for p in BUILTIN_DIR.glob("*.csv"))
        raise DataError(f"no built-in data file {file_name!r} (shipped: {', '.join(shipped)})")
    return str(path)
