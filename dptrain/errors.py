"""The project's exceptions: bad configuration and bad data, each with a one-line, actionable fix.

The CLI prints these without a traceback (unless ``hydra.verbose`` is set); anything else is a bug
and keeps its traceback.
"""


class DptrainError(Exception):
    """Base class for errors a user can fix: the message names the field or file and the fix."""


class ConfigError(DptrainError, ValueError):
    """A configuration value is invalid (out of range, unknown name, inconsistent with another)."""


class DataError(DptrainError, ValueError):
    """Input data is missing or malformed (missing file or column, NaN labels, empty split)."""
