"""Hydra's and OmegaConf's errors as one line naming the key, the option or the file, and the fix.

Hydra reports a typo'd key, a wrong type, an unknown group option or an unparsable override over
several lines (with a config search path and a hint to set ``HYDRA_FULL_ERROR``) and exits with
status 1. The CLI turns each into the project's one-line form instead.
"""

from __future__ import annotations

import dataclasses
import typing

from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
# What a missing mandatory value means, by key name (the group's own yaml leaves it ``???``).
REQUIRED = {
    "path": "point it at the data file, e.g. data.path=/data/visits.csv",
    "id_column": (
        "name the column holding each row's patient id, e.g. data.id_column=patient_id "
        "(or data.id_column=null if every row is a different patient)"
    ),
    "label_columns": "name the outcome column(s) as a list, e.g. data.label_columns=[died]",
    "path_column": "name the column holding each image's file path, e.g. data.path_column=path",
    "name": "name the data set, e.g. data.name=dermamnist",
}


def hydra_error_message(
    error: BaseException, *, arguments: list[str], app_started: bool
) -> str | None:
    """One line for an error a user can fix, or None for a bug (which keeps its traceback).

    Args:
        error: What Hydra raised (with ``HYDRA_FULL_ERROR`` set, it raises instead of printing).
        arguments: The command-line arguments, to name an override that does not parse.
        app_started: Whether the app ran; an ``OSError`` before it comes from the run directory.

    Example:
        >>> hydra_error_message(KeyError("x"), arguments=[], app_started=True) is None
        True
    """
    from dptrain.errors import DptrainError

    if isinstance(error, DptrainError):
        return str(error)
    if isinstance(error, MissingConfigException):
        return _missing_option(error)
    if isinstance(error, OverrideParseException):
        return _unparsable(error, arguments)
    if isinstance(error, ConfigCompositionException):
        cause = error.__cause__
        if isinstance(cause, OmegaConfBaseException):
            return config_value_message(cause)
        return _first_lines(error).replace("\\'", "'")
    if isinstance(error, OmegaConfBaseException):
        return config_value_message(error)
    if isinstance(error, OSError) and not app_started:
        target = error.filename or "the run directory"
        return (
            f"hydra.run.dir: cannot create the run directory {target} ({error.strerror or error}); "
            "point hydra.run.dir at a folder you can write to"
        )
    return None


def config_value_message(error: OmegaConfBaseException) -> str:
    """One line for an OmegaConf error about a key: unknown, wrong type, or missing.

    Example:
        >>> from omegaconf import OmegaConf
        >>> try:
        ...     OmegaConf.create({"seed": "???"}).seed
        ... except Exception as error:
        ...     print(config_value_message(error))
        seed is required and has no value: set it, e.g. seed=...
    """
    key = str(getattr(error, "full_key", "") or "")
    schema = getattr(error, "object_type", None)
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, MissingMandatoryValue):
        leaf = key.rsplit(".", 1)[-1]
        what = REQUIRED.get(leaf, f"set it, e.g. {key}=...")
        return f"{key} is required and has no value: {what}"
    if isinstance(error, (ConfigAttributeError, ConfigKeyError)):
        parent, _, leaf = key.rpartition(".")
        valid = _field_names(schema)
        if not parent:
            return (
                f"unknown config key {leaf!r}; top-level keys: {valid} (a group is chosen with "
                "group=option, e.g. data=table)"
            )
        return f"unknown config key {key}; valid keys of {parent}: {valid}"
    if isinstance(error, ValidationError):
        expected = _field_type(schema, key.rsplit(".", 1)[-1])
        hint = f" ({key} is {expected})" if expected else ""
        if expected and expected.startswith(("list", "List")):
            hint += f"; write a list, e.g. {key}=[a,b]"
        return f"{key}: {reason}{hint}"
    return f"{key}: {reason}" if key else reason


def _missing_option(error: MissingConfigException) -> str:
    missing = str(error.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    if not group or error.options is None:
        return _first_lines(error)
    return f"unknown option {group}={option}; valid options of {group}: {', '.join(error.options)}"


def _unparsable(error: OverrideParseException, arguments: list[str]) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    bad = next((a for a in arguments if not a.startswith("-") and not _parses(parser, a)), None)
    named = f" {bad!r}" if bad else ""
    if bad and "=" not in bad:
        fix = f"write it as key=value, e.g. {bad}=..."
    else:
        key, value = bad.split("=", 1) if bad else ("data.path", "~/data/visits.csv")
        fix = f"quote a value with special characters, e.g. '{key}=\"{value}\"'"
    return f"cannot parse the override{named}: {_first_lines(error)}; {fix} (grammar: {GRAMMAR})"


def _parses(parser, argument: str) -> bool:
    try:
        parser.parse_override(argument)
    except HydraException:
        return False
    return True


def _first_lines(error: BaseException) -> str:
    """The message's lines joined, without Hydra's search path and documentation pointers."""
    lines = []
    for line in str(error).splitlines():
        line = line.strip()
        if line.startswith(("Config search path", "See https", "Set the environment")):
            break
        if line and not line.startswith("^"):
            lines.append(line.rstrip("."))
    return "; ".join(lines)


def _field_names(schema) -> list[str]:
    if schema is None or not dataclasses.is_dataclass(schema):
        return []
    return sorted(field.name for field in dataclasses.fields(schema))


def _field_type(schema, name: str) -> str:
    if schema is None or not dataclasses.is_dataclass(schema):
        return ""
    try:
        hints = typing.get_type_hints(schema)
    except Exception:  # an annotation that does not resolve: fall back to the written one
        hints = {field.name: field.type for field in dataclasses.fields(schema)}
    hint = hints.get(name)
    if hint is None:
        return ""
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")
